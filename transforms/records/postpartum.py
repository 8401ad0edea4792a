"""Postpartum care: the home visit within 7 days of discharge (产后访视) and the 42-day check
(产后42天检查). One record type with `visit_kind`, because both examine the same things and
the 42-day check closes the pregnancy episode.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from transforms.records.base import (
    Between,
    Clinician,
    Coded,
    FeedBool,
    PastDate,
    Record,
    Referral,
    ValueModel,
    problem,
)
from transforms.records.lab import Observation
from transforms.records.pregnancy import BloodPressure
from transforms.records.quantities import AdultWeight, BodyTemperature, Haemoglobin

__all__ = ["ExamFinding", "PostpartumVisit"]

_NORMAL_WORDS = frozenset({"正常", "未见异常", "无异常", "未见明显异常", "无明显异常", "normal", "n"})
_ABNORMAL_WORDS = frozenset({"异常", "abnormal", "a"})

_KINDS: dict[str, str] = {
    "postpartum_visit": "postpartum_visit", "visit": "postpartum_visit",
    "产后访视": "postpartum_visit", "mch-pp": "postpartum_visit", "pp": "postpartum_visit",
    "check_42d": "check_42d", "42d": "check_42d", "产后42天检查": "check_42d",
    "产后42天健康检查": "check_42d", "mch-pp42": "check_42d", "pp42": "check_42d",
}  # fmt: skip


class ExamFinding(ValueModel):
    """检查结果 one examined item: normal / abnormal plus the text as written.

    Also accepted on input: the text alone. 正常 / 未见异常 / 无异常 are read as normal and
    异常 as abnormal; other text (e.g. 已复旧) is kept with the status left empty, since only
    a clinician or a code table can say what it means.
    """

    status: Literal["normal", "abnormal"] | None = Field(
        None, description="结论 normal 未见异常 / abnormal 异常"
    )
    text: str | None = Field(None, description="描述 the finding as written")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            word = data.strip().lower()
            if word in _NORMAL_WORDS:
                return {"status": "normal", "text": data.strip()}
            if word in _ABNORMAL_WORDS:
                return {"status": "abnormal", "text": data.strip()}
            return {"text": data.strip()}
        return data


class PostpartumVisit(Record):
    """产后访视/产后42天检查 a postpartum home visit or the 42-day check."""

    observations: list[Observation] = Field(
        default_factory=list,
        description="全部观察项 every item of the form as sent (OBX), so nothing the sender wrote is lost",
    )

    record_type: Literal["PostpartumVisit"] = Field("PostpartumVisit", description="记录类型 record type")
    visit_kind: Literal["postpartum_visit", "check_42d"] = Field(
        description="访视类型 postpartum_visit 产后访视 (within 7 days of discharge) or "
        "check_42d 产后42天检查"
    )
    visit_date: PastDate = Field(description="访视/检查日期 date of the visit")
    days_postpartum: Annotated[int, Between("days postpartum", 0, 120)] | None = Field(
        None, description="产后天数 days since delivery"
    )
    delivery_date: PastDate | None = Field(None, description="分娩日期 date of delivery")
    temperature: BodyTemperature | None = Field(None, description="体温 body temperature, Cel")
    blood_pressure: BloodPressure | None = Field(None, description="血压 blood pressure")
    weight: AdultWeight | None = Field(None, description="体重 weight, kg")
    hb: Haemoglobin | None = Field(None, description="血红蛋白 haemoglobin, g/L")
    breasts: ExamFinding | None = Field(None, description="乳房 breasts")
    lochia: ExamFinding | None = Field(None, description="恶露 lochia")
    uterus: ExamFinding | None = Field(None, description="子宫 uterus (involution)")
    wound: ExamFinding | None = Field(None, description="伤口 perineal or caesarean wound")
    mental_state: ExamFinding | None = Field(None, description="心理状况 mental state")
    classification: Coded | None = Field(
        None, description="分类 classification as sent, e.g. 1^已恢复 / 2^未恢复"
    )
    recovered: FeedBool | None = Field(
        None, description="已恢复 recovered (derived from classification 已恢复/未恢复 when not given)"
    )
    guidance: str | None = Field(None, description="指导 guidance given")
    referral: Referral | None = Field(None, description="转诊 referral")
    case_closed: FeedBool | None = Field(None, description="结案 the pregnancy episode is closed")
    clinician: Clinician | None = Field(None, description="访视医生 visiting clinician")

    @field_validator("visit_kind", mode="before")
    @classmethod
    def _kind_word(cls, value: Any) -> Any:
        if isinstance(value, str):
            kind = _KINDS.get(value.strip().lower())
            if kind is None:
                raise problem(
                    "visit_kind",
                    f"{value!r} is not a postpartum visit kind "
                    "(postpartum_visit 产后访视 or check_42d 产后42天检查)",
                )
            return kind
        return value

    @model_validator(mode="after")
    def _recovery(self) -> PostpartumVisit:
        if self.recovered is None and self.classification is not None:
            text = self.classification.display or ""
            if "未恢复" in text:
                self.recovered = False
            elif "已恢复" in text:
                self.recovered = True
        return self
