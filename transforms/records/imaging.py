"""Imaging reports (检查报告), mostly obstetric ultrasound from PACS.

PACS systems send the report as long text (检查所见, with line breaks) and an impression
(检查印象); biometry, when sent as separate OBX, is kept as structured values so that NT
and growth can be charted. Lengths stay in the unit the report used (NT in mm, BPD in cm
on most Chinese reports); the range check converts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from transforms.records.base import (
    Between,
    Clinician,
    Coded,
    FeedBool,
    Flag,
    PastDatetime,
    Record,
    ValueModel,
    problem,
)
from transforms.records.ga import GestationalAge
from transforms.records.lab import Observation, ResultStatus, observation_flags
from transforms.records.quantities import (
    AmnioticDepth,
    AmnioticIndex,
    BiparietalDiameter,
    CervicalLength,
    CrownRumpLength,
    FemurLength,
    FetalAbdomen,
    FetalHead,
    FetalHeartRate,
    FetalWeight,
    HumerusLength,
    NuchalTranslucency,
)
from transforms.unit_vocabulary import is_known_imaging_unit

__all__ = ["FetalMeasurements", "ImagingReport"]


class FetalMeasurements(ValueModel):
    """胎儿超声测量 structured ultrasound values for one fetus."""

    fetus: str | None = Field(
        None, description="胎儿标识 which fetus (A/B, 1/2) in a multiple pregnancy; empty if one"
    )
    nt: NuchalTranslucency | None = Field(None, description="颈项透明层 NT, mm (or cm)")
    crl: CrownRumpLength | None = Field(None, description="头臀长 CRL, mm (or cm)")
    bpd: BiparietalDiameter | None = Field(None, description="双顶径 BPD, cm or mm")
    hc: FetalHead | None = Field(None, description="头围 HC, cm or mm")
    ac: FetalAbdomen | None = Field(None, description="腹围 AC, cm or mm")
    fl: FemurLength | None = Field(None, description="股骨长 FL, cm or mm")
    hl: HumerusLength | None = Field(None, description="肱骨长 HL, cm or mm")
    efw: FetalWeight | None = Field(None, description="估测胎儿体重 EFW, g")
    afi: AmnioticIndex | None = Field(None, description="羊水指数 AFI, cm")
    amniotic_fluid_depth: AmnioticDepth | None = Field(
        None, description="羊水最大深度 deepest vertical pocket, cm"
    )
    fetal_heart_rate: FetalHeartRate | None = Field(None, description="胎心率 fetal heart rate, /min")
    umbilical_sd_ratio: Annotated[float, Between("umbilical S/D ratio", 0.5, 20)] | None = Field(
        None, description="脐动脉S/D umbilical artery S/D ratio (no unit)"
    )
    presentation: Coded | None = Field(None, description="胎方位 presentation, e.g. 头位（LOA）")
    placenta_position: str | None = Field(None, description="胎盘位置 placenta position, e.g. 后壁")
    placenta_grade: str | None = Field(None, description="胎盘成熟度 placenta grade, 0 / Ⅰ / Ⅱ / Ⅲ")
    nasal_bone: str | None = Field(None, description="鼻骨 nasal bone, e.g. 可见")


class ImagingReport(Record):
    """检查报告 an imaging report (PACS ORU^R01): text, impression, structured values."""

    record_type: Literal["ImagingReport"] = Field("ImagingReport", description="记录类型 record type")
    placer_order_id: str | None = Field(None, description="申请单号 placer order number (OBR-2)")
    filler_order_id: str | None = Field(None, description="检查号 accession / filler order number (OBR-3)")
    exam: Coded | None = Field(None, description="检查项目 exam (OBR-4), e.g. NT超声, 产科彩超")
    modality: str | None = Field(None, description="检查类型 modality (DICOM code), e.g. US 超声, DX, CT, MR")
    exam_time: PastDatetime | None = Field(None, description="检查时间 exam time (OBR-7)")
    reported_at: PastDatetime | None = Field(None, description="报告时间 report time (OBR-22)")
    report_status: ResultStatus | None = Field(
        None, description="报告状态 OBR-25: F final, C corrected, P preliminary, X cancelled"
    )
    gestational_age: GestationalAge | None = Field(None, description="超声孕周 gestational age by ultrasound")
    fetus_count: Annotated[int, Between("number of fetuses", 0, 8)] | None = Field(
        None, description="胎儿数 number of fetuses"
    )
    findings: str | None = Field(None, description="检查所见 findings, long text with line breaks as sent")
    impression: str | None = Field(None, description="检查印象 impression / conclusion")
    measurements: list[FetalMeasurements] = Field(
        default_factory=list,
        description="胎儿测量 structured biometry, one entry per fetus (an object is one fetus)",
    )
    cervical_length: CervicalLength | None = Field(None, description="宫颈管长度 cervical length")
    observations: list[Observation] = Field(
        default_factory=list,
        description="其他项目 further report items as sent (OBX), typed like lab observations",
    )
    critical: FeedBool = Field(False, description="危急值 critical finding reported")
    critical_note: str | None = Field(None, description="危急值说明 what was critical, who was told")
    report_url: str | None = Field(None, description="报告链接 report or image URL (OBR-20)")
    reporter: Clinician | None = Field(None, description="报告医生 reporting doctor (OBR-32)")

    @model_validator(mode="before")
    @classmethod
    def _one_fetus(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("measurements"), dict):
            return {**data, "measurements": [data["measurements"]]}
        return data

    @model_validator(mode="after")
    def _has_content(self) -> ImagingReport:
        if not (self.findings or self.impression or self.measurements or self.observations):
            raise problem(
                "empty_report",
                "findings, impression, measurements and observations are all empty; "
                "an ImagingReport needs at least one",
            )
        return self

    def derived_flags(self) -> list[Flag]:
        found = super().derived_flags()
        for i, obs in enumerate(self.observations):
            where = f"observations[{i}]"
            found += observation_flags(obs, where, is_known_imaging_unit, "imaging_unit_unknown")
        return found
