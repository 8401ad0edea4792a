"""The health-education catalogue (宣教目录): `mappings/education.yaml`, read with `file:line` errors.

    kind: education_catalogue
    version: 1
    items:
      - id: preg_t1_folic_acid
        title: 孕早期营养与叶酸补充          # what the notice shows
        link: https://wx.example-hospital.cn/edu/preg-t1-folic-acid   # the article or video
        format: article                   # or video
        audience: pregnant                # pregnant | postpartum | child_guardian
        window: [4, 12]                   # see WINDOW_UNITS
        source: 《孕产期保健工作规范》

A window is inclusive at both ends, in the unit of its audience: gestational weeks for
`pregnant`, days after delivery for `postpartum`, the child's age in whole months for
`child_guardian` (sent to the mother, her guardian).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from core.yaml_lines import Loc
from transforms.rules.tables import TableModel, read_table

__all__ = ["AUDIENCE_LABELS", "WINDOW_UNITS", "EducationCatalogue", "EducationItem", "load_catalogue"]

Audience = Literal["pregnant", "postpartum", "child_guardian"]

WINDOW_UNITS: dict[str, tuple[str, int]] = {
    # audience → (unit, the largest value a window may name)
    "pregnant": ("gestational weeks", 44),
    "postpartum": ("days after delivery", 42),  # follow-up ends at 产后42天
    "child_guardian": ("months of the child's age", 72),
}
AUDIENCE_LABELS = {"pregnant": "孕期", "postpartum": "产后", "child_guardian": "儿童保健"}
"""How a notice names the audience (a `phrase` key: at most 5 Chinese characters)."""


class EducationItem(TableModel):
    """One article or video, and when in a pregnancy or a child's life it is sent."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$", description="Stable id; the ledger keeps it.")
    title: str = Field(min_length=1, description="Title shown in the notice (Chinese).")
    link: str = Field(description="https link to the article or video.")
    format: Literal["article", "video"] = "article"
    audience: Audience
    window: tuple[int, int] = Field(description="[from, to], inclusive, in the audience's unit.")
    source: str = Field(min_length=1, description="The guideline the content follows.")

    @field_validator("link")
    @classmethod
    def _https(cls, value: str) -> str:
        if not re.fullmatch(r"https://[^\s/]+\.[^\s/]+(/\S*)?", value):
            raise ValueError(f"{value!r}: a link is an https:// address (WeChat opens only https)")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: tuple[int, int], info: ValidationInfo) -> tuple[int, int]:
        audience = info.data.get("audience")
        if audience is None:
            return value  # the audience is wrong: reported at its own line
        first, last = value
        unit, most = WINDOW_UNITS[audience]
        if not 0 <= first <= last <= most:
            raise ValueError(
                f"window {list(value)}: for {audience} it is [from, to] in {unit}, 0 ≤ from ≤ to ≤ {most}"
            )
        return value

    def covers(self, audience: str, value: int) -> bool:
        return self.audience == audience and self.window[0] <= value <= self.window[1]


class EducationCatalogue(TableModel):
    kind: Literal["education_catalogue"]
    version: int = Field(ge=1)
    items: list[EducationItem] = Field(min_length=1)

    def problems(self) -> list[tuple[Loc, str]]:
        seen: set[str] = set()
        found: list[tuple[Loc, str]] = []
        for i, item in enumerate(self.items):
            if item.id in seen:
                found.append((("items", i, "id"), f"id {item.id!r} is used twice"))
            seen.add(item.id)
        return found


def load_catalogue(path: Path) -> EducationCatalogue:
    """The catalogue at `path`; ConfigErrors name each wrong line."""
    return read_table(path, EducationCatalogue)
