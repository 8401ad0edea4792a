"""Birth: the delivery (分娩记录), each newborn (新生儿出生记录) and newborn screening (新生儿疾病筛查).

A delivery is the mother's record; each baby gets its own NewbornRecord (twins: two), with
the mother in `mother`, because newborns have no ID card yet and are linked by the
mother's identifiers and, later, the birth certificate number.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from transforms.birth_size import INTERGROWTH_NEWBORN, SizeClass, birth_weight_for_ga
from transforms.records.base import (
    Between,
    Clinician,
    Coded,
    FeedBool,
    Flag,
    PassRefer,
    PastDate,
    PastDatetime,
    Record,
    RecordModel,
    SexCode,
    problem,
)
from transforms.records.ga import GestationalAge
from transforms.records.lab import Observation, observation_flags
from transforms.records.quantities import BirthLength, BirthWeight, BloodLoss, NewbornChest, NewbornHead

__all__ = [
    "DeliveryRecord",
    "MetabolicScreen",
    "NewbornRecord",
    "NewbornScreening",
    "apgar_category",
    "birth_weight_class",
    "delivery_mode_category",
    "gestational_class",
]

DeliveryMode = Literal["vaginal", "assisted", "caesarean"]

# Checked in this order: "阴道助产" is assisted, not vaginal.
_MODE_WORDS: tuple[tuple[DeliveryMode, tuple[str, ...]], ...] = (
    ("caesarean", ("剖宫", "剖腹", "caesarean", "cesarean")),
    ("assisted", ("产钳", "胎吸", "吸引", "助产", "forceps", "vacuum")),
    ("vaginal", ("阴道", "顺产", "自然分娩", "自然产", "vaginal", "nsvd")),
)


def delivery_mode_category(text: str | None) -> DeliveryMode | None:
    """vaginal / assisted / caesarean from a delivery-mode text (阴道自然分娩, 剖宫产, 产钳助产)."""
    if not text:
        return None
    lowered = text.lower()
    for category, words in _MODE_WORDS:
        if any(w in lowered for w in words):
            return category
    return None


GestationalClass = Literal[
    "extremely_preterm", "very_preterm", "moderate_to_late_preterm", "term", "post_term"
]
WeightClass = Literal["extremely_low", "very_low", "low", "normal", "macrosomia"]
ApgarCategory = Literal["severe", "moderate", "normal"]

# (first day not in the band, class): WHO preterm sub-categories, term 37+0–41+6, post-term ≥ 42+0.
_GESTATION_BANDS: tuple[tuple[int, GestationalClass], ...] = (
    (28 * 7, "extremely_preterm"),
    (32 * 7, "very_preterm"),
    (37 * 7, "moderate_to_late_preterm"),
    (42 * 7, "term"),
)
# (first gram not in the band, class): WHO ICD-11 low birth weight bands; macrosomia ≥ 4000 g.
_WEIGHT_BANDS: tuple[tuple[float, WeightClass], ...] = (
    (1000, "extremely_low"),
    (1500, "very_low"),
    (2500, "low"),
    (4000, "normal"),
)


def gestational_class(ga: GestationalAge | None) -> GestationalClass | None:
    """Preterm band, term or post-term from the gestational age at birth."""
    if ga is None:
        return None
    return next((c for limit, c in _GESTATION_BANDS if ga.total_days < limit), "post_term")


def birth_weight_class(grams: float | None) -> WeightClass | None:
    """Extremely low / very low / low / normal birth weight or macrosomia, from grams."""
    if grams is None:
        return None
    return next((c for limit, c in _WEIGHT_BANDS if grams < limit), "macrosomia")


def apgar_category(score: int | None) -> ApgarCategory | None:
    """0–3 severe, 4–7 moderate (asphyxia), 8–10 normal."""
    if score is None:
        return None
    return "severe" if score <= 3 else "moderate" if score <= 7 else "normal"


_GESTATIONAL_CLASS_TEXT = (
    "胎龄分类 (derived) extremely_preterm 极早产 <28+0, very_preterm 早期早产 28+0–31+6, "
    "moderate_to_late_preterm 中晚期早产 32+0–36+6, term 足月 37+0–41+6, post_term 过期 ≥42+0"
)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


Apgar = Annotated[int, Between("Apgar score", 0, 10)]
Births = Annotated[int, Between("number of births", 0, 8)]


class DeliveryRecord(Record):
    """分娩记录 a delivery: when, at what gestation, how, blood loss, complications."""

    observations: list[Observation] = Field(
        default_factory=list,
        description="全部观察项 every item of the form as sent (OBX), so nothing the sender wrote is lost",
    )

    record_type: Literal["DeliveryRecord"] = Field("DeliveryRecord", description="记录类型 record type")
    delivery_time: PastDatetime = Field(description="分娩时间 date and time of delivery")
    gestational_age: GestationalAge | None = Field(None, description="分娩孕周 gestational age")
    mode: Coded | None = Field(None, description="分娩方式 delivery mode as sent, e.g. 1^阴道自然分娩")
    mode_category: DeliveryMode | None = Field(
        None,
        description="分娩方式分类 vaginal 阴道分娩 / assisted 阴道助产 / caesarean 剖宫产; "
        "derived from mode's text when not given",
    )
    fetal_position: str | None = Field(None, description="胎方位 fetal position, e.g. LOA")
    blood_loss: BloodLoss | None = Field(None, description="产时出血量 blood loss at delivery, mL")
    blood_loss_24h: BloodLoss | None = Field(None, description="产后24小时出血量 blood loss in 24 h, mL")
    perineum: str | None = Field(None, description="会阴情况 perineum, e.g. Ⅰ度裂伤，已缝合")
    placenta: str | None = Field(None, description="胎盘娩出 placenta delivery, e.g. 自然娩出，完整")
    complications: list[Coded] = Field(
        default_factory=list, description="分娩并发症 complications (text accepted)"
    )
    place: str | None = Field(None, description="分娩地点 place or institution of delivery")
    live_births: Births | None = Field(None, description="活产数 live births")
    stillbirths: Births | None = Field(None, description="死胎死产数 stillbirths")
    birth_attendant: Clinician | None = Field(None, description="接生者 birth attendant")
    gestational_class: GestationalClass | None = Field(None, description=_GESTATIONAL_CLASS_TEXT)

    @field_validator("complications", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return _as_list(value)

    @model_validator(mode="after")
    def _categorise(self) -> DeliveryRecord:
        if self.mode_category is None and self.mode is not None:
            self.mode_category = delivery_mode_category(
                " ".join(t for t in (self.mode.display, self.mode.code) if t)
            )
        self.gestational_class = gestational_class(self.gestational_age)
        return self


class NewbornRecord(Record):
    """新生儿出生记录 one newborn at birth; the mother is in `mother`."""

    observations: list[Observation] = Field(
        default_factory=list,
        description="全部观察项 every item of the form as sent (OBX), so nothing the sender wrote is lost",
    )

    record_type: Literal["NewbornRecord"] = Field("NewbornRecord", description="记录类型 record type")
    birth_time: PastDatetime = Field(description="出生时间 date and time of birth")
    gestational_age: GestationalAge | None = Field(None, description="出生孕周 gestational age")
    sex: SexCode | None = Field(
        None, description="新生儿性别 (DE02.01.040.00) GB/T 2261.1: 0 unknown, 1 male, 2 female, 9 not stated"
    )
    birth_weight: BirthWeight | None = Field(None, description="出生体重 (DE04.10.019.00) birth weight, g")
    birth_length: BirthLength | None = Field(None, description="出生身长 birth length, cm")
    head_circumference: NewbornHead | None = Field(None, description="头围 head circumference, cm")
    chest_circumference: NewbornChest | None = Field(None, description="胸围 chest circumference, cm")
    apgar_1min: Apgar | None = Field(None, description="Apgar评分（1分钟） Apgar score at 1 min")
    apgar_5min: Apgar | None = Field(None, description="Apgar评分（5分钟） Apgar score at 5 min")
    apgar_10min: Apgar | None = Field(None, description="Apgar评分（10分钟） Apgar score at 10 min")
    birth_order: Annotated[int, Between("birth order", 1, 8)] | None = Field(
        None, description="胎次 order in a multiple birth (1 for the first twin)"
    )
    outcome: Literal["live_birth", "stillbirth"] | None = Field(
        None, description="妊娠结局 live_birth 活产 or stillbirth 死产"
    )
    defects: list[Coded] = Field(
        default_factory=list, description="出生缺陷 birth defects found (text accepted)"
    )
    hep_b_vaccine: FeedBool | None = Field(None, description="乙肝疫苗（首针） first hepatitis B dose given")
    hep_b_vaccine_time: PastDatetime | None = Field(None, description="乙肝疫苗接种时间 when")
    hbig: FeedBool | None = Field(
        None, description="乙肝免疫球蛋白 HBIG given (mother HBsAg positive; within 12 h)"
    )
    bcg_vaccine: FeedBool | None = Field(None, description="卡介苗 BCG given")
    screening_status: Literal["not_sampled", "sampled", "normal", "recall", "confirmed"] | None = Field(
        None,
        description="新生儿疾病筛查状态 not_sampled 未采血, sampled 已采血, normal 正常, "
        "recall 召回, confirmed 确诊",
    )
    delivery_record_id: str | None = Field(None, description="分娩记录ID the mother's delivery")
    gestational_class: GestationalClass | None = Field(None, description=_GESTATIONAL_CLASS_TEXT)
    birth_weight_class: WeightClass | None = Field(
        None,
        description="出生体重分类 (derived) extremely_low 超低 <1000 g, very_low 极低 <1500 g, "
        "low 低 <2500 g, normal 正常 2500–3999 g, macrosomia 巨大儿 ≥4000 g",
    )
    birth_weight_centile: float | None = Field(
        None,
        description="出生体重百分位 (derived) birth-weight-for-gestational-age centile, 1 decimal, "
        "24+0–42+6 weeks, male/female only; empty below the 3rd or above the 97th centile",
    )
    size_for_gestational_age: SizeClass | None = Field(
        None,
        description="出生体重与胎龄评估 (derived) SGA 小于胎龄儿 < 10th centile, AGA 适于胎龄儿 "
        "10th–90th (on a line is AGA), LGA 大于胎龄儿 > 90th centile",
    )
    size_reference: str | None = Field(
        None, description="评估标准 (derived) the standard the centile and class were read from"
    )
    apgar_1min_category: ApgarCategory | None = Field(
        None,
        description="1分钟Apgar分类 (derived) severe 重度窒息 0–3, moderate 轻度窒息 4–7, normal 正常 8–10",
    )
    apgar_5min_category: ApgarCategory | None = Field(
        None, description="5分钟Apgar分类 (derived) severe 0–3, moderate 4–7, normal 8–10"
    )

    @field_validator("defects", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return _as_list(value)

    @model_validator(mode="after")
    def _classify(self) -> NewbornRecord:
        self.gestational_class = gestational_class(self.gestational_age)
        weight = self.birth_weight.value if self.birth_weight is not None else None
        self.birth_weight_class = birth_weight_class(weight)
        ga_days = self.gestational_age.total_days if self.gestational_age is not None else None
        size = birth_weight_for_ga(ga_days, self.sex, weight)
        self.birth_weight_centile = size.centile if size is not None else None
        self.size_for_gestational_age = size.size_class if size is not None else None
        self.size_reference = INTERGROWTH_NEWBORN if size is not None else None
        self.apgar_1min_category = apgar_category(self.apgar_1min)
        self.apgar_5min_category = apgar_category(self.apgar_5min)
        return self


_CONDITIONS: dict[str, str] = {
    "pku": "PKU", "phe": "PKU", "苯丙酮尿症": "PKU", "高苯丙氨酸血症": "PKU",
    "ch": "CH", "tsh": "CH", "先天性甲状腺功能减低症": "CH", "甲低": "CH", "先天性甲低": "CH",
    "g6pd": "G6PD", "g6pd缺乏症": "G6PD", "蚕豆病": "G6PD",
    "cah": "CAH", "17-ohp": "CAH", "先天性肾上腺皮质增生症": "CAH",
    "other": "other", "其他": "other",
}  # fmt: skip


class MetabolicScreen(RecordModel):
    """遗传代谢病筛查 one screened condition with its analyte value and outcome."""

    condition: Literal["PKU", "CH", "G6PD", "CAH", "other"] = Field(
        description="筛查疾病 PKU 苯丙酮尿症 (Phe), CH 先天性甲低 (TSH), G6PD 缺乏症, "
        "CAH 先天性肾上腺皮质增生症 (17-OHP), other 其他"
    )
    condition_name: str | None = Field(None, description="疾病名称 the condition as sent")
    observation: Observation | None = Field(None, description="检测值 the analyte value (Phe, TSH…)")
    result: Literal["normal", "suspected"] | None = Field(
        None, description="初筛结果 normal 阴性 or suspected 可疑阳性 (recall)"
    )
    confirmation: Literal["confirmed", "excluded"] | None = Field(
        None, description="确诊结果 confirmed 确诊 or excluded 排除, after recall"
    )

    @field_validator("condition", mode="before")
    @classmethod
    def _condition_word(cls, value: Any) -> Any:
        if isinstance(value, str):
            known = _CONDITIONS.get(value.strip().lower())
            if known is None:
                raise problem(
                    "screening_condition",
                    f"{value!r} is not a screened condition (PKU, CH, G6PD, CAH or other)",
                )
            return known
        return value


class NewbornScreening(Record):
    """新生儿疾病筛查 newborn screening: metabolic (heel-prick) and hearing, with recall."""

    record_type: Literal["NewbornScreening"] = Field("NewbornScreening", description="记录类型 record type")
    sample_time: PastDatetime | None = Field(None, description="采血时间 heel-prick sample time")
    sample_id: str | None = Field(None, description="采血卡号 filter-paper card number")
    screening_centre: str | None = Field(None, description="筛查中心 screening centre")
    metabolic: list[MetabolicScreen] = Field(
        default_factory=list, description="遗传代谢病筛查 metabolic screens (PKU, CH, G6PD, CAH)"
    )
    hearing_date: PastDate | None = Field(None, description="听力筛查日期 hearing screen date")
    hearing_stage: Literal["initial", "rescreen"] | None = Field(
        None, description="筛查阶段 initial 初筛 or rescreen 复筛"
    )
    hearing_method: Literal["OAE", "AABR", "OAE+AABR"] | None = Field(
        None, description="听力筛查方法 OAE 耳声发射, AABR 自动听性脑干反应"
    )
    hearing_left: PassRefer | None = Field(None, description="左耳 left ear: pass 通过 / refer 未通过")
    hearing_right: PassRefer | None = Field(None, description="右耳 right ear: pass 通过 / refer 未通过")
    status: Literal["pending", "normal", "recall", "confirmed", "excluded"] | None = Field(
        None,
        description="筛查结论 pending 待结果, normal 正常, recall 需召回, confirmed 确诊, excluded 排除",
    )
    recall_date: PastDate | None = Field(None, description="召回日期 date recalled")
    notified: FeedBool | None = Field(None, description="已通知家长 parents notified of recall")

    @model_validator(mode="after")
    def _has_content(self) -> NewbornScreening:
        if not (self.metabolic or self.hearing_left or self.hearing_right or self.status):
            raise problem(
                "empty_screening",
                "metabolic, hearing_left, hearing_right and status are all empty; "
                "a NewbornScreening needs a result or a status",
            )
        return self

    def derived_flags(self) -> list[Flag]:
        found = super().derived_flags()
        for i, screen in enumerate(self.metabolic):
            if screen.observation is not None:
                found += observation_flags(screen.observation, f"metabolic[{i}].observation")
        return found
