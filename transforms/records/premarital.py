"""Premarital medical examination (婚前医学检查): one record per partner examined.

Each partner is examined and reported separately (女/男 forms); `partner` links the two
records, and the infection screens (syphilis, HIV, HBsAg) get their own fields because
positive results start counselling and PMTCT follow-up.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from transforms.records.base import Clinician, Coded, Flag, PastDate, PersonRef, Record, Referral
from transforms.records.lab import Observation, observation_flags
from transforms.records.pregnancy import BloodPressure
from transforms.records.quantities import AdultHeight, AdultWeight, Haemoglobin

__all__ = ["PremaritalConclusion", "PremaritalExam", "premarital_conclusion_category"]

PremaritalConclusion = Literal[
    "no_contraindication", "postpone", "not_advised", "no_childbearing", "medical_measures"
]

# Checked in this order: "未发现医学上不宜结婚的情形" also contains "不宜结婚".
_CONCLUSION_WORDS: tuple[tuple[PremaritalConclusion, str], ...] = (
    ("no_contraindication", "未发现"),
    ("postpone", "暂缓"),
    ("no_childbearing", "不宜生育"),
    ("not_advised", "不宜结婚"),
    ("medical_measures", "医学措施"),
)


def premarital_conclusion_category(text: str | None) -> PremaritalConclusion | None:
    """The standard medical opinion a conclusion text expresses, or None."""
    if not text:
        return None
    for category, word in _CONCLUSION_WORDS:
        if word in text:
            return category
    return None


class PremaritalExam(Record):
    """婚前医学检查 a premarital medical examination of one partner."""

    record_type: Literal["PremaritalExam"] = Field("PremaritalExam", description="记录类型 record type")
    exam_date: PastDate = Field(description="检查日期 date of the examination")
    partner: PersonRef | None = Field(
        None, description="对方 the other partner as identified in the message (NK1-33)"
    )
    height: AdultHeight | None = Field(None, description="身高 height, cm")
    weight: AdultWeight | None = Field(None, description="体重 weight, kg")
    blood_pressure: BloodPressure | None = Field(None, description="血压 blood pressure")
    hb: Haemoglobin | None = Field(None, description="血红蛋白 haemoglobin, g/L")
    syphilis: Coded | None = Field(None, description="梅毒筛查 syphilis screen, e.g. 阴性")
    hiv: Coded | None = Field(None, description="HIV抗体 HIV screen, e.g. 阴性")
    hbsag: Coded | None = Field(None, description="乙肝表面抗原 HBsAg, e.g. 阳性")
    chest_xray: str | None = Field(None, description="胸部X线 chest X-ray, e.g. 未见异常")
    observations: list[Observation] = Field(
        default_factory=list, description="其他检查项目 further items as sent (e.g. ALT)"
    )
    findings: str | None = Field(None, description="检查发现 abnormal findings")
    diagnoses: list[Coded] = Field(default_factory=list, description="疾病诊断 diagnoses")
    conclusion: Coded | None = Field(
        None, description="医学意见 medical opinion as sent, e.g. 1^未发现医学上不宜结婚的情形"
    )
    conclusion_category: PremaritalConclusion | None = Field(
        None,
        description="医学意见分类 no_contraindication 未发现医学上不宜结婚的情形, postpone 建议暂缓结婚, "
        "not_advised 建议不宜结婚, no_childbearing 建议不宜生育, medical_measures "
        "建议采取医学措施，尊重受检者意愿; derived from conclusion's text when not given",
    )
    advice: str | None = Field(None, description="医学指导意见 advice given")
    referral: Referral | None = Field(None, description="转诊 referral")
    clinician: Clinician | None = Field(None, description="主检医生 examining clinician")

    @model_validator(mode="after")
    def _categorise(self) -> PremaritalExam:
        if self.conclusion_category is None and self.conclusion is not None:
            self.conclusion_category = premarital_conclusion_category(self.conclusion.display)
        return self

    def derived_flags(self) -> list[Flag]:
        found = super().derived_flags()
        if self.partner is not None:
            found += [
                Flag(code=p.code, field="partner.id_card", message=p.message)
                for p in self.partner.id_card_problems()
            ]
        for i, obs in enumerate(self.observations):
            found += observation_flags(obs, f"observations[{i}]")
        return found
