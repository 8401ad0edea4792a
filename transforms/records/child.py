"""Child health checks (儿童健康检查, 0–6 years) with optional derived growth z-scores.

Measurements are what the clinic recorded; `growth` holds z-scores and labels computed
from them (WHO 2006 now, WS/T 423-2022 behind the same shape later) so dashboards and
follow-up lists need not recompute. Its shape matches `transforms.growth.growth_assessment`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from transforms.derived import age_in_months
from transforms.growth import POSITION_WORDS
from transforms.records.base import (
    Between,
    Clinician,
    Flag,
    PassRefer,
    PastDate,
    Record,
    RecordModel,
    Referral,
    SexCode,
    ValueModel,
    problem,
)
from transforms.records.lab import Observation
from transforms.records.quantities import ChildHead, ChildLength, ChildWeight, Haemoglobin

__all__ = [
    "RECUMBENT_BEFORE_MONTHS",
    "ChildHealthExam",
    "GrowthAssessment",
    "GrowthFlag",
    "GrowthLabel",
    "child_anaemia",
]

RECUMBENT_BEFORE_MONTHS = 24
"""Length is measured lying before 24 months, height standing from 24 months."""

LYING_USUAL_BEFORE_MONTHS = 36
"""Chinese child-health practice measures 身长 lying until 3 years; lying later is unusual."""

# WHO haemoglobin cut-offs for anaemia (WHO/NMH/NHD/MNM/11.1, 2011): (from month, to month
# exclusive, anaemic below g/L). Under 6 months WHO sets none, so none is judged.
_ANAEMIA_BELOW_G_L: tuple[tuple[int, int, float], ...] = (
    (6, 60, 110.0),
    (60, 144, 115.0),
    (144, 180, 120.0),
)


def child_anaemia(hb_g_l: float | None, age_months: int | None) -> bool | None:
    """贫血 by WHO's cut-off for the age; None without Hb or outside 6 months–14 years."""
    if hb_g_l is None or age_months is None:
        return None
    for start, end, below in _ANAEMIA_BELOW_G_L:
        if start <= age_months < end:
            return hb_g_l < below
    return None


_DEV_PASS = {"pass", "通过", "正常", "p"}
_DEV_FAIL = {"fail", "未过", "未通过", "不通过", "可疑", "异常", "f"}
_POSITIONS = {word: "recumbent" if lying else "standing" for word, lying in POSITION_WORDS.items()}


class GrowthLabel(ValueModel):
    """生长评价 a growth label from a z-score (WHO 2006 under 5, WHO 2007 from 5 years)."""

    code: Literal["underweight", "stunting", "wasting", "thinness", "overweight", "obese"] = Field(
        description="评价 underweight 低体重, stunting 生长迟缓, wasting 消瘦 (weight-for-length/height, "
        "under 5), thinness 消瘦 (BMI-for-age, from 5 years), overweight 超重, obese 肥胖"
    )
    display: str | None = Field(None, description="中文 e.g. 重度低体重")
    severity: Literal["moderate", "severe"] | None = Field(
        None, description="程度 moderate (< −2 SD) or severe (< −3 SD); empty for overweight/obese"
    )
    indicator: str | None = Field(None, description="指标 the z-score it comes from, e.g. wfa_z")
    z: float | None = Field(None, allow_inf_nan=False, description="Z评分 the z-score")


class GrowthFlag(ValueModel):
    """数值可疑 a z-score WHO considers biologically implausible (likely a measuring error)."""

    code: str = Field(description="代码 e.g. implausible")
    display: str | None = Field(None, description="中文 e.g. 数值可疑，请核实测量")
    indicator: str | None = Field(None, description="指标 e.g. wfa_z")
    z: float | None = Field(None, allow_inf_nan=False, description="Z评分 the z-score")


class GrowthAssessment(RecordModel):
    """生长发育评价 derived z-scores and labels for one check (not sent by hospitals)."""

    standard: str = Field(description="标准 growth standard: WHO2006 (under 5), WHO2007 (from 61 months)")
    sex: SexCode | None = Field(None, description="性别 the sex the tables were chosen for")
    age_days: int | None = Field(None, ge=0, description="日龄 age in days at the check")
    length_cm_used: float | None = Field(
        None, description="计算用身长 length/height after the ±0.7 cm position adjustment, cm"
    )
    length_adjustment_cm: float | None = Field(None, description="体位校正 adjustment made, cm")
    bmi: float | None = Field(None, description="体质指数 BMI, kg/m²")
    wflh_indicator: Literal["wfl", "wfh"] | None = Field(
        None, description="身长/身高别体重 which table: wfl (length) or wfh (height)"
    )
    wfa_z: float | None = Field(None, allow_inf_nan=False, description="年龄别体重Z weight-for-age")
    lhfa_z: float | None = Field(
        None, allow_inf_nan=False, description="年龄别身长/身高Z length/height-for-age"
    )
    wflh_z: float | None = Field(
        None, allow_inf_nan=False, description="身长/身高别体重Z weight-for-length/height"
    )
    bfa_z: float | None = Field(None, allow_inf_nan=False, description="年龄别BMI Z BMI-for-age")
    hcfa_z: float | None = Field(
        None, allow_inf_nan=False, description="年龄别头围Z head-circumference-for-age"
    )
    labels: list[GrowthLabel] = Field(default_factory=list, description="评价 growth labels")
    flags: list[GrowthFlag] = Field(default_factory=list, description="可疑值 implausible z-scores")
    not_assessed: dict[str, str] = Field(
        default_factory=dict, description="未评价 indicator → why it could not be computed"
    )


class ChildHealthExam(Record):
    """儿童健康检查 a child health check (newborn visit to 6 years, 13 scheduled contacts)."""

    observations: list[Observation] = Field(
        default_factory=list,
        description="全部观察项 every item of the form as sent (OBX), so nothing the sender wrote is lost",
    )

    record_type: Literal["ChildHealthExam"] = Field("ChildHealthExam", description="记录类型 record type")
    exam_date: PastDate = Field(description="体检日期 date of the check")
    age_months: Annotated[int, Between("age in months", 0, 84)] | None = Field(
        None, description="月龄 age in completed months (derived from birth date when not given)"
    )
    weight: ChildWeight | None = Field(None, description="体重 weight, kg (1 decimal)")
    length_or_height: ChildLength | None = Field(
        None, description="身长/身高 length (<24 months, lying) or height (standing), cm"
    )
    measurement_position: Literal["recumbent", "standing"] | None = Field(
        None,
        description="测量体位 recumbent 卧位 (length) or standing 立位 (height); derived from "
        "age when not given",
    )
    head_circumference: ChildHead | None = Field(None, description="头围 head circumference, cm")
    hb: Haemoglobin | None = Field(None, description="血红蛋白 haemoglobin, g/L")
    teeth: Annotated[int, Between("number of teeth", 0, 32)] | None = Field(
        None, description="出牙数 number of teeth"
    )
    fontanelle: str | None = Field(None, description="前囟 anterior fontanelle, e.g. 1.5×1.5cm, 闭合")
    hearing: PassRefer | None = Field(None, description="听力筛查 hearing: pass 通过 / refer 未通过")
    development_screening: Literal["pass", "fail"] | None = Field(
        None, description="发育评估 development screening: pass 通过 / fail 未过"
    )
    rickets_signs: str | None = Field(None, description="佝偻病体征 signs of rickets")
    vitamin_d: str | None = Field(None, description="维生素D vitamin D supplementation")
    guidance: str | None = Field(None, description="指导 guidance given")
    referral: Referral | None = Field(None, description="转诊 referral")
    next_exam_date: date | None = Field(None, description="下次随访日期 next check")
    clinician: Clinician | None = Field(None, description="体检医生 examining clinician")
    growth: GrowthAssessment | None = Field(
        None, description="生长发育评价 derived z-scores and labels (computed by the engine)"
    )
    anaemia: bool | None = Field(
        None,
        description="贫血 (derived) Hb below WHO's cut-off: <110 g/L at 6–59 months, <115 at 5–11 "
        "years, <120 at 12–14 years; empty without Hb in g/L or outside those ages",
    )

    @field_validator("development_screening", mode="before")
    @classmethod
    def _dev_word(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _DEV_PASS:
                return "pass"
            if text in _DEV_FAIL:
                return "fail"
            raise problem("development", f"{value!r} is neither pass (通过) nor fail (未过)")
        return value

    @field_validator("measurement_position", mode="before")
    @classmethod
    def _position_word(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _POSITIONS.get(value.strip().lower(), value)
        return value

    @field_validator("next_exam_date")
    @classmethod
    def _after_exam(cls, value: date | None, info: Any) -> date | None:
        exam = info.data.get("exam_date")
        if value is not None and isinstance(exam, date) and value < exam:
            raise problem("next_exam_date", f"{value.isoformat()} is before the exam date {exam.isoformat()}")
        return value

    @model_validator(mode="after")
    def _derive(self) -> ChildHealthExam:
        born = self.person.birth_date if self.person else None
        if born is not None and self.exam_date < born:
            raise problem(
                "exam_date",
                f"exam_date {self.exam_date.isoformat()} is before the child's birth date {born.isoformat()}",
            )
        if self.age_months is None and born is not None:
            derived = age_in_months(born, self.exam_date)
            if derived <= 84:
                self.age_months = derived
        known_age = self.age_months is not None
        if self.measurement_position is None and self.length_or_height is not None and known_age:
            young = (self.age_months or 0) < RECUMBENT_BEFORE_MONTHS
            self.measurement_position = "recumbent" if young else "standing"
        hb = self.hb.value if self.hb is not None and self.hb.unit == "g/L" else None
        self.anaemia = child_anaemia(hb, self.age_months)
        return self

    def derived_flags(self) -> list[Flag]:
        found = super().derived_flags()
        born = self.person.birth_date if self.person else None
        if born is not None and self.age_months is not None:
            derived = age_in_months(born, self.exam_date)
            if abs(derived - self.age_months) > 1:
                found.append(
                    Flag(
                        code="age_months_inconsistent",
                        field="age_months",
                        message=f"age_months {self.age_months} differs from {derived} months "
                        f"computed from birth date {born.isoformat()}",
                    )
                )
        if self.age_months is not None and self.measurement_position is not None:
            # 24–35 months either is usual: WHO stands them, Chinese practice lies them down.
            if self.age_months < RECUMBENT_BEFORE_MONTHS:
                expected = "recumbent"
            elif self.age_months >= LYING_USUAL_BEFORE_MONTHS:
                expected = "standing"
            else:
                expected = self.measurement_position
            if self.measurement_position != expected:
                found.append(
                    Flag(
                        code="measurement_position_unusual",
                        field="measurement_position",
                        message=f"{self.measurement_position} measurement at {self.age_months} "
                        f"months; {expected} is usual (growth z-scores adjust by 0.7 cm)",
                    )
                )
        return found
