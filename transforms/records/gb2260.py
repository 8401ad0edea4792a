"""GB/T 2260 administrative division codes: is an ID card's area code one that ever existed?

The first six digits of a 身份证号 are the county-level division where the number was issued.
Cards are not reissued when divisions merge or are renamed, so a code retired since (崇文区
110103, until 2010) is as valid on a card as a current one: every code the list ever held
counts as known. The list ships as ``data/gb2260/gb2260.csv``; its source and date are in
``data/gb2260/README.md``.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib.resources import files

__all__ = ["is_known_area"]


@cache
def _areas() -> frozenset[str]:
    """Every code in the list; read once from the package data."""
    text = files("transforms").joinpath("data", "gb2260", "gb2260.csv").read_text(encoding="utf-8")
    return frozenset(row["code"] for row in csv.DictReader(text.splitlines()))


def is_known_area(code: str) -> bool:
    """True when `code` (six digits) is a division code, current or retired."""
    return code in _areas()
