"""Pregnancy records: registration (建册), antenatal visits (产前检查), risk grading (风险评估).

Five-colour risk (国卫办妇幼发〔2017〕35号) is stored as `colour` — the highest of green <
yellow < orange < red — plus a separate `purple` flag, because purple (infectious disease)
is added on top of any colour rather than ranked with them. Feeds send the grade as a
repeating CE (`Y^黄色^99FYRISK~P^紫色^99FYRISK`); the models accept that list directly.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, computed_field, field_validator, model_validator

from transforms.records.base import (
    Between,
    Clinician,
    Coded,
    FeedBool,
    Flag,
    PastDate,
    Record,
    RecordModel,
    Referral,
    ValueModel,
    drop_computed,
    problem,
)
from transforms.records.ga import GestationalAge
from transforms.records.lab import Observation
from transforms.records.person import Address
from transforms.records.quantities import (
    AdultHeight,
    AdultWeight,
    DiastolicBP,
    FetalHeartRate,
    FundalHeight,
    Haemoglobin,
    MaternalAbdomen,
    SystolicBP,
)

__all__ = [
    "COLOURS",
    "BloodPressure",
    "ObservationRef",
    "ObstetricHistory",
    "PregnancyRegistration",
    "PrenatalVisit",
    "RiskAssessment",
    "RiskColour",
    "RiskFactor",
    "RiskGrade",
    "highest_colour",
    "naegele",
    "normalise_risk",
]

RiskColour = Literal["green", "yellow", "orange", "red"]
COLOURS: tuple[RiskColour, ...] = ("green", "yellow", "orange", "red")
"""The ranked colours, lowest first; purple is not ranked (it is a flag)."""

_COLOUR_WORDS: dict[str, str] = {
    "g": "green", "green": "green", "绿": "green", "绿色": "green",
    "y": "yellow", "yellow": "yellow", "黄": "yellow", "黄色": "yellow",
    "o": "orange", "orange": "orange", "橙": "orange", "橙色": "orange",
    "r": "red", "red": "red", "红": "red", "红色": "red",
    "p": "purple", "purple": "purple", "紫": "purple", "紫色": "purple",
}  # fmt: skip
_COLOUR_HELP = "green/绿色 G, yellow/黄色 Y, orange/橙色 O, red/红色 R, purple/紫色 P"
_FACTOR_SPLIT = re.compile(r"[；;\n]+")


def highest_colour(colours: list[str]) -> RiskColour | None:
    """The grade that applies when several colours are found: the highest of green–red."""
    ranked = [c for c in COLOURS if c in colours]
    return ranked[-1] if ranked else None


def _colour_of(item: Any) -> str:
    candidates: list[Any]
    if isinstance(item, Coded):
        candidates = [item.code, item.display]
    elif isinstance(item, dict):
        candidates = [item.get("code"), item.get("display")]
    elif isinstance(item, str) and "^" in item:
        candidates = item.split("^")[:2]
    else:
        candidates = [item]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip().lower() in _COLOUR_WORDS:
            return _COLOUR_WORDS[candidate.strip().lower()]
    raise problem("risk_colour", f"{item!r} is not a five-colour risk grade ({_COLOUR_HELP})")


def normalise_risk(data: Any) -> Any:
    """Accept colour as a code, Chinese word, coded value, or list of them (purple included).

    `colour: ["Y^黄色^99FYRISK", "P^紫色^99FYRISK"]` becomes colour yellow + purple true;
    `factors` given as one text is split at ；/; and line breaks.
    """
    if not isinstance(data, dict):
        return data
    data = dict(data)
    raw = data.get("colour")
    if raw is not None and not (isinstance(raw, str) and raw in COLOURS):
        items = raw if isinstance(raw, list) else [raw]
        colours = [_colour_of(i) for i in items if i not in (None, "")]
        data["colour"] = highest_colour(colours)
        if "purple" in colours:
            data["purple"] = True
    factors = data.get("factors")
    if isinstance(factors, str):
        factors = _FACTOR_SPLIT.split(factors)
    if isinstance(factors, list):
        data["factors"] = [
            {"description": f.strip()} if isinstance(f, str) else f
            for f in factors
            if not (isinstance(f, str) and not f.strip())
        ]
    return data


def _need_grade(colour: str | None, purple: bool) -> None:
    if colour is None and not purple:
        raise problem("risk_grade_empty", "colour is missing and purple is not set; no grade given")


def _value_text(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return value


class ObservationRef(ValueModel):
    """来源观察 the observation a risk factor was read from (e.g. Hb 96 g/L in a lab report)."""

    record_type: str | None = Field(None, description="记录类型 e.g. LabResult")
    record_id: str | None = Field(None, description="记录ID the record holding the observation")
    code: str | None = Field(None, description="项目代码 observation code, e.g. HGB")
    name: str | None = Field(None, description="项目名称 e.g. 血红蛋白")
    value: Annotated[str | None, BeforeValidator(_value_text)] = Field(
        None, description="结果 the value as text, with unit, e.g. 96 g/L"
    )


class RiskFactor(ValueModel):
    """高危因素 one factor that triggered a grade, e.g. 妊娠合并梅毒 (purple)."""

    description: str = Field(min_length=1, description="高危因素 the factor as written")
    colour: Literal["green", "yellow", "orange", "red", "purple"] | None = Field(
        None, description="因素颜色 the colour this factor carries in the rule table"
    )
    code: Coded | None = Field(None, description="因素代码 the rule-table entry, when known")
    source_observation: ObservationRef | None = Field(
        None, description="来源观察 the observation that triggered it"
    )

    @field_validator("colour", mode="before")
    @classmethod
    def _colour_word(cls, value: Any) -> Any:
        return _colour_of(value) if value not in (None, "") else None


class RiskGrade(RecordModel):
    """妊娠风险分级 a five-colour grade as recorded inside a visit or registration.

    `colour` is the highest of green < yellow < orange < red; `purple` (传染病, infectious)
    is added on top. Input may give `colour` as G/Y/O/R/P, 绿色…紫色, a coded value or a
    list of them (the HL7 repetition).
    """

    colour: RiskColour | None = Field(
        None, description="风险颜色 green 绿色 / yellow 黄色 / orange 橙色 / red 红色"
    )
    purple: bool = Field(False, description="紫色 infectious disease (HIV, syphilis, hepatitis, TB)")
    factors: list[RiskFactor] = Field(default_factory=list, description="高危因素 triggering factors")

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        return normalise_risk(data)

    @model_validator(mode="after")
    def _graded(self) -> RiskGrade:
        _need_grade(self.colour, self.purple)
        return self

    @property
    def needs_case_management(self) -> bool:
        """Orange, red and purple women enter case management (专案管理)."""
        return self.purple or self.colour in ("orange", "red")


_BLOOD_PRESSURE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*(mmHg)?\s*")


class BloodPressure(ValueModel):
    """血压 blood pressure in mmHg. Also accepted on input: `112/72`."""

    systolic: SystolicBP = Field(description="收缩压 (DE04.10.174.00) systolic, mmHg")
    diastolic: DiastolicBP = Field(description="舒张压 diastolic, mmHg")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            m = _BLOOD_PRESSURE.fullmatch(data)
            if not m:
                raise problem("blood_pressure", f"{data!r} is not a blood pressure like 112/72")
            return {"systolic": m.group(1), "diastolic": m.group(2)}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> BloodPressure:
        if self.diastolic.value >= self.systolic.value:
            raise problem(
                "blood_pressure",
                f"diastolic {self.diastolic.value:g} mmHg is not below systolic "
                f"{self.systolic.value:g} mmHg (swapped?)",
            )
        return self


Count = Annotated[int, Between("count of previous events", 0, 30)]


class ObstetricHistory(ValueModel):
    """孕产史 previous pregnancies and their outcomes, as counts plus the text as written."""

    vaginal_births: Count | None = Field(None, description="阴道分娩次数 vaginal births")
    caesareans: Count | None = Field(None, description="剖宫产次数 caesarean sections")
    spontaneous_abortions: Count | None = Field(None, description="自然流产次数 miscarriages")
    induced_abortions: Count | None = Field(None, description="人工流产次数 induced abortions")
    preterm_births: Count | None = Field(None, description="早产次数 preterm births")
    stillbirths: Count | None = Field(None, description="死胎死产次数 stillbirths")
    ectopic_pregnancies: Count | None = Field(None, description="异位妊娠次数 ectopic pregnancies")
    neonatal_deaths: Count | None = Field(None, description="新生儿死亡数 neonatal deaths")
    living_children: Count | None = Field(None, description="现存子女数 living children")
    text: str | None = Field(None, description="孕产史 the history as written")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        return {"text": data} if isinstance(data, str) else data


CloseReason = Literal["delivered", "miscarriage", "moved", "lost_to_follow_up", "death", "other"]


class PregnancyRegistration(Record):
    """孕产妇建册 pregnancy registration / first antenatal check: opens the pregnancy episode."""

    observations: list[Observation] = Field(
        default_factory=list,
        description="全部观察项 every item of the form as sent (OBX), so nothing the sender wrote is lost",
    )

    record_type: Literal["PregnancyRegistration"] = Field(
        "PregnancyRegistration", description="记录类型 record type"
    )
    handbook_no: str | None = Field(
        None, description="母子健康手册号 MCH handbook number issued at registration"
    )
    registration_date: PastDate = Field(description="建册日期 date of registration")
    gestational_age: GestationalAge | None = Field(
        None, description="建册孕周 gestational age at registration (target: before 13 weeks)"
    )
    lmp: PastDate | None = Field(None, description="末次月经 (DE02.10.051.00) last menstrual period")
    edd: date | None = Field(
        None,
        description="预产期 (DE05.10.098.00) expected date of delivery: LMP + 280 days "
        "unless corrected by early ultrasound",
    )
    edd_corrected_by_ultrasound: FeedBool = Field(
        False, description="B超校正预产期 EDD corrected by early ultrasound (no LMP check then)"
    )
    gravidity: Annotated[int, Between("gravidity", 1, 30)] | None = Field(
        None, description="孕次 (DE04.01.108.00) pregnancies including this one"
    )
    parity: Annotated[int, Between("parity", 0, 20)] | None = Field(
        None, description="产次 (DE02.10.002.00) previous births (≥28 weeks)"
    )
    obstetric_history: ObstetricHistory | None = Field(None, description="孕产史 obstetric history")
    last_delivery_date: PastDate | None = Field(None, description="末次分娩日期 last delivery")
    last_delivery_mode: Coded | None = Field(None, description="末次分娩方式 last delivery mode")
    height: AdultHeight | None = Field(None, description="身高 height, cm")
    weight: AdultWeight | None = Field(None, description="体重 weight at registration, kg")
    pre_pregnancy_weight: AdultWeight | None = Field(
        None, description="孕前体重 pre-pregnancy weight, kg (with height gives the BMI)"
    )
    blood_pressure: BloodPressure | None = Field(None, description="血压 blood pressure")
    past_history: str | None = Field(None, description="既往史 past medical history")
    family_history: str | None = Field(None, description="家族史 family history")
    residence: Address | None = Field(None, description="现住址 where she lives")
    postpartum_residence: Address | None = Field(
        None,
        description="产后休养地 where she will stay after birth (decides who does the postpartum visit)",
    )
    risk: RiskGrade | None = Field(None, description="妊娠风险评估 five-colour grade at registration")
    clinician: Clinician | None = Field(None, description="建册医生 registering clinician")
    status: Literal["active", "closed"] = Field("active", description="管理状态 active 在管 or closed 结案")
    close_reason: CloseReason | None = Field(
        None,
        description="结案原因 delivered 分娩, miscarriage 流产, moved 迁出, "
        "lost_to_follow_up 失访, death 死亡, other 其他",
    )
    closed_date: PastDate | None = Field(None, description="结案日期 date closed")

    _drop_computed = drop_computed

    @model_validator(mode="after")
    def _closure(self) -> PregnancyRegistration:
        if self.status == "closed" and self.close_reason is None:
            raise problem("close_reason", "close_reason is required when status is closed")
        if self.status == "active" and (self.close_reason or self.closed_date):
            raise problem(
                "close_reason",
                "close_reason and closed_date must be empty while status is active",
            )
        return self

    @computed_field(  # type: ignore[prop-decorator]
        description="孕前BMI pre-pregnancy body-mass index, kg/m², from pre_pregnancy_weight "
        "and height (derived)"
    )
    @property
    def bmi(self) -> float | None:
        if self.pre_pregnancy_weight is None or self.height is None:
            return None
        return round(self.pre_pregnancy_weight.value / (self.height.value / 100) ** 2, 1)

    def derived_flags(self) -> list[Flag]:
        found = super().derived_flags()
        if self.lmp and self.edd and not self.edd_corrected_by_ultrasound:
            expected = self.lmp + timedelta(days=280)
            if self.edd not in (expected, naegele(self.lmp)):
                found.append(
                    Flag(
                        code="edd_inconsistent",
                        field="edd",
                        message=f"EDD {self.edd.isoformat()} is not LMP {self.lmp.isoformat()} "
                        f"+ 280 days ({expected.isoformat()}) and no ultrasound correction is "
                        "recorded",
                    )
                )
        g, p = self.gravidity, self.parity
        if g is not None and p is not None and p >= g:
            found.append(
                Flag(
                    code="parity_not_below_gravidity",
                    field="parity",
                    message=f"parity {p} is not below gravidity {g}, which counts the current pregnancy",
                )
            )
        return found


def naegele(lmp: date) -> date:
    """Naegele's rule (LMP + 9 months + 7 days), which many Chinese forms use instead of +280."""
    year, month = (lmp.year, lmp.month + 9) if lmp.month <= 3 else (lmp.year + 1, lmp.month - 3)
    last_day = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(lmp.day, last_day)) + timedelta(days=7)


class PrenatalVisit(Record):
    """产前检查 an antenatal visit (at least 5 per pregnancy, MCH-DOMAIN §3)."""

    observations: list[Observation] = Field(
        default_factory=list,
        description="全部观察项 every item of the form as sent (OBX), so nothing the sender wrote is lost",
    )

    record_type: Literal["PrenatalVisit"] = Field("PrenatalVisit", description="记录类型 record type")
    visit_date: PastDate = Field(description="检查日期 date of the visit")
    gestational_age: GestationalAge | None = Field(None, description="孕周 gestational age")
    weight: AdultWeight | None = Field(None, description="体重 weight, kg")
    blood_pressure: BloodPressure | None = Field(None, description="血压 blood pressure")
    fundal_height: FundalHeight | None = Field(None, description="宫高 fundal height, cm")
    abdominal_circumference: MaternalAbdomen | None = Field(
        None, description="腹围 abdominal circumference, cm"
    )
    fetal_heart_rate: FetalHeartRate | None = Field(None, description="胎心率 fetal heart rate, /min")
    presentation: Coded | None = Field(None, description="胎方位 presentation, e.g. 头位, LOA")
    oedema: Coded | None = Field(None, description="水肿 oedema, e.g. 无, +")
    hb: Haemoglobin | None = Field(None, description="血红蛋白 haemoglobin, g/L")
    urine_protein: Coded | None = Field(None, description="尿蛋白 urine protein, e.g. 阴性（-）")
    urine_glucose: Coded | None = Field(None, description="尿糖 urine glucose")
    ultrasound_conclusion: str | None = Field(None, description="B超结论 ultrasound conclusion")
    risk: RiskGrade | None = Field(None, description="妊娠风险评估 five-colour grade at this visit")
    referral: Referral | None = Field(None, description="转诊 referral")
    guidance: str | None = Field(None, description="指导意见 guidance given")
    next_visit_date: date | None = Field(None, description="下次预约日期 next appointment")
    clinician: Clinician | None = Field(None, description="检查医生 examining clinician")

    @field_validator("next_visit_date")
    @classmethod
    def _after_visit(cls, value: date | None, info: Any) -> date | None:
        visit = info.data.get("visit_date")
        if value is not None and isinstance(visit, date) and value < visit:
            raise problem(
                "next_visit_date",
                f"{value.isoformat()} is before the visit date {visit.isoformat()}",
            )
        return value


class RiskAssessment(Record):
    """妊娠风险评估 a dated five-colour risk grading with the factors that triggered it.

    `method` says whether a clinician graded (manual) or the engine's rule table suggested
    it (suggested); a suggestion a clinician confirms is stored again as manual.
    """

    record_type: Literal["RiskAssessment"] = Field("RiskAssessment", description="记录类型 record type")
    assessment_date: PastDate = Field(description="评估日期 date of the grading")
    gestational_age: GestationalAge | None = Field(None, description="孕周 gestational age")
    colour: RiskColour | None = Field(
        None, description="风险颜色 green 绿色 / yellow 黄色 / orange 橙色 / red 红色 (highest applies)"
    )
    purple: bool = Field(False, description="紫色 infectious disease, on top of the colour")
    factors: list[RiskFactor] = Field(default_factory=list, description="高危因素 triggering factors")
    method: Literal["manual", "suggested"] = Field(
        "manual", description="评估方式 manual 医生评估 or suggested 系统建议 (needs confirmation)"
    )
    rule_set: str | None = Field(
        None, description="规则表 the rule table (and province variant) behind a suggestion"
    )
    assessor: Clinician | None = Field(None, description="评估人 who graded")
    source_record_id: str | None = Field(
        None, description="来源记录 the visit or report this grading came from"
    )
    clinical_colour: RiskColour | None = Field(
        None,
        description="最近临床评估颜色 for a suggestion: the colour of the latest grading a clinician "
        "recorded by that day (null when none)",
    )
    clinical_purple: bool | None = Field(
        None, description="最近临床评估紫色 for a suggestion: whether that grading was purple"
    )
    clinical_record_id: str | None = Field(
        None, description="最近临床评估记录 for a suggestion: the record holding that grading"
    )
    above_clinical: bool | None = Field(
        None,
        description="高于临床评估 for a suggestion: true when it is higher than the latest clinical "
        "grading (a higher colour, or purple where the clinician has none), or when no clinician "
        "has graded her and the suggestion is not plain green — what staff alerts are about",
    )

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        return normalise_risk(data)

    @model_validator(mode="after")
    def _graded(self) -> RiskAssessment:
        _need_grade(self.colour, self.purple)
        return self

    @property
    def needs_case_management(self) -> bool:
        """Orange, red and purple women enter case management (专案管理)."""
        return self.purple or self.colour in ("orange", "red")
