"""Lab results (检验结果) and the observation type other records reuse.

An observation keeps the hospital's local code next to a standard code (LOINC when a code
table knows it), because labs identify tests by charge or item codes that differ per
hospital. Values are typed (number / text / coded) so that rules such as "Hb < 110 g/L"
compare numbers, not strings; a value that does not fit its declared type is kept as text
and flagged rather than lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, Field, field_validator, model_validator

from transforms.records.base import (
    Clinician,
    Coded,
    FeedBool,
    Flag,
    PastDatetime,
    Record,
    RecordModel,
    ValueModel,
    coded_from_text,
    problem,
)
from transforms.unit_vocabulary import FACTORS, canonical_unit, convert_value, is_known_lab_unit

__all__ = [
    "HL7_VALUE_TYPES",
    "LabResult",
    "Observation",
    "ReferenceRange",
    "ResultStatus",
    "observation_flags",
]

ResultStatus = Literal["F", "C", "P", "X", "R", "S", "I", "O", "W", "D", "N", "U", "A"]
"""HL7 OBX-11 / OBR-25 (tables 0085 and 0123): F final 最终, C corrected 更正, P preliminary 初步,
X cannot be obtained 无法出结果, and the others real feeds send: R not verified, S partial, I
pending, O order received, W wrong patient, D deleted, N not asked, U final again, A some results."""

HL7_VALUE_TYPES: dict[str, str] = {
    "NM": "number", "SN": "number",
    "ST": "text", "TX": "text", "FT": "text", "DT": "text", "TS": "text", "DTM": "text",
    "TM": "text", "ED": "text", "RP": "text",
    "CE": "coded", "CWE": "coded", "CNE": "coded", "CF": "coded", "CV": "coded",
    "IS": "coded", "ID": "coded",
}  # fmt: skip
"""OBX-2 value types onto the three kinds the model stores (dates are kept as text)."""

_KINDS = ("number", "text", "coded")
_DIGITS = 6  # a converted value is rounded: 1.2 mIU/mL gives 1200 mIU/L, not 1200.0000000000002
_NUMBER = re.compile(r"^\s*(<=|>=|≤|≥|<|>)?\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*$")
_COMPARATORS = {"≤": "<=", "≥": ">="}
_RANGE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*[-~～—–]\s*([-+]?\d+(?:\.\d+)?)\s*$")
_BOUND = re.compile(r"^\s*(<=|>=|≤|≥|<|>)\s*([-+]?\d+(?:\.\d+)?)\s*$")

ABNORMAL_FLAGS = frozenset(
    ("L", "H", "LL", "HH", "<", ">", "N", "A", "AA", "U", "D", "B", "W", "S", "R", "I",
     "MS", "VS", "NEG", "POS", "NR", "RR", "IND", "E", "EX", "HX", "LX")
)  # fmt: skip
"""HL7 table 0078; others are kept and flagged."""
_ARROWS = {"↑": "H", "↓": "L", "↑↑": "HH", "↓↓": "LL"}


def _to_str(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class ReferenceRange(ValueModel):
    """参考范围 reference range: numeric bounds when the text has them, the text always.

    Also accepted on input: the OBX-7 text (`110-150`, `<5.1`, `>1.00`, `阴性`).
    """

    low: float | None = Field(None, description="下限 lower limit")
    high: float | None = Field(None, description="上限 upper limit")
    text: str | None = Field(None, description="参考范围原文 the range as sent")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        found = _RANGES.get(data)
        if found is None:  # a lab sends the same few ranges all day: read each text once
            found = _range_from_text(data)
            if len(_RANGES) >= 4096:
                _RANGES.clear()
            _RANGES[data] = found
        return dict(found)


_RANGES: dict[str, dict[str, Any]] = {}


def _range_from_text(data: str) -> dict[str, Any]:
    """OBX-7 text as ReferenceRange fields: bounds when it has them, the text always."""
    text = data.strip()
    if m := _RANGE.match(text):
        low, high = float(m.group(1)), float(m.group(2))
        if low <= high:
            return {"low": low, "high": high, "text": text}
    elif m := _BOUND.match(text):
        bound = float(m.group(2))
        key = "high" if m.group(1) in ("<", "<=", "≤") else "low"
        return {key: bound, "text": text}
    return {"text": text}


class Observation(RecordModel):
    """检验/检查项目结果 one observation (an HL7 OBX): local and standard code, typed value,
    unit, reference range, abnormal flag and status.

    `value_type` also accepts the HL7 OBX-2 code (NM, ST, TX, CE, CWE, DT, TS, SN …);
    `value` may then be the number, the text, or the coded value as an object or as raw
    `code^display^system` text. `<0.05` in a number becomes value 0.05 with comparator `<`.
    """

    set_id: Annotated[str | None, BeforeValidator(_to_str)] = Field(None, description="序号 OBX-1")
    sub_id: Annotated[str | None, BeforeValidator(_to_str)] = Field(
        None, description="子序号 OBX-4, for results sent in several parts"
    )
    code: str = Field(min_length=1, description="本地代码 the sender's local item code (OBX-3.1)")
    name: str | None = Field(None, description="项目名称 Chinese item name (OBX-3.2), e.g. 血红蛋白")
    coding_system: str | None = Field(
        None, description="本地编码体系 local coding system (OBX-3.3), e.g. L, 99FYMCH"
    )
    standard_code: Coded | None = Field(
        None, description="标准代码 standard code when known, e.g. LOINC 718-7 (system LN)"
    )
    value_type: Literal["number", "text", "coded"] = Field(
        description="结果类型 number 数值, text 文本, coded 编码 (input may be the OBX-2 code)"
    )
    value_type_sent: str | None = Field(
        None, description="原始结果类型 the value type as sent (OBX-2), e.g. NM"
    )
    value: float | str | Coded | list[float | str | Coded] | None = Field(
        None,
        description="结果值 the value: a number, a text, or a coded value (OBX-5); a list when "
        "OBX-5 repeats (e.g. a risk grade Y^黄色~P^紫色)",
    )
    comparator: Literal["<", "<=", ">", ">="] | None = Field(
        None, description="比较符 for values such as <0.05 or >1000"
    )
    unit: str | None = Field(
        None,
        description="单位 unit (OBX-6), e.g. g/L, 10^9/L; the analyte's expected unit once converted",
    )
    expected_unit: str | None = Field(
        None, description="应用单位 the analyte's canonical unit from the lab's code table, e.g. mmol/L"
    )
    molar_mass: float | None = Field(
        None,
        gt=0,
        description="摩尔质量 g/mol from the code table, for mass ↔ molar conversions (glucose 180.16)",
    )
    original_value: float | None = Field(
        None,
        description="原始结果值 the number as sent, when converted to `unit`",
        allow_inf_nan=False,
    )
    original_unit: str | None = Field(
        None, description="原始单位 the unit as sent, when the value was converted (e.g. mg/dL)"
    )
    reference_range: ReferenceRange | None = Field(None, description="参考范围 reference range (OBX-7)")
    abnormal_flag: str | None = Field(
        None, description="异常标志 HL7 table 0078 (OBX-8): N, L, H, LL, HH, A, AA …"
    )
    status: ResultStatus | None = Field(
        None, description="结果状态 OBX-11: F final, C corrected, P preliminary, X no result"
    )
    observed_at: PastDatetime | None = Field(None, description="检测时间 observation time (OBX-14)")

    @model_validator(mode="before")
    @classmethod
    def _type_value(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        sent = data.get("value_type")
        value = data.get("value")
        kind = _kind(sent, value)
        if kind is None:
            raise problem(
                "value_type",
                f"value_type {sent!r} is not number, text, coded or an HL7 OBX-2 type",
            )
        if isinstance(sent, str) and sent.strip() and data.get("value_type_sent") is None:
            data["value_type_sent"] = sent.strip()
        if isinstance(value, list):  # a repeating OBX-5: each repetition typed alike
            typed = [_typed(kind, v) for v in value if v is not None]
            data["value"] = [v for _, v, _ in typed] or None
            kind = typed[0][0] if typed else kind
        elif value is not None:
            kind, value, comparator = _typed(kind, value)
            data["value"] = value
            if comparator and not data.get("comparator"):
                data["comparator"] = comparator
        data["value_type"] = kind
        return data

    @model_validator(mode="after")
    def _to_expected_unit(self) -> Observation:
        """A number in another unit than the analyte's is converted, the sent value and unit
        kept; one that cannot be converted stays as sent and is flagged (`unit_reconciled`)."""
        if not (self.unit and self.expected_unit and self.value_type == "number"):
            return self
        unit, expected = canonical_unit(self.unit), canonical_unit(self.expected_unit)
        if unit == expected:
            if self.unit != expected:  # a spelling (`mM`, `umol/l`) of the expected unit
                self.unit = expected
            return self
        scale = convert_value(1.0, unit, expected, self.molar_mass)
        if scale is None:
            return self
        values = self.value if isinstance(self.value, list) else [self.value]
        if not all(isinstance(v, float) for v in values):
            return self
        self.original_value = self.value if isinstance(self.value, float) else None
        self.original_unit = self.unit
        converted = [round(v * scale, _DIGITS) for v in values]  # type: ignore[operator]
        self.value = converted if isinstance(self.value, list) else converted[0]
        self.unit = expected
        if self.reference_range is not None:
            low, high = self.reference_range.low, self.reference_range.high
            self.reference_range = self.reference_range.model_copy(
                update={
                    "low": None if low is None else round(low * scale, _DIGITS),
                    "high": None if high is None else round(high * scale, _DIGITS),
                }
            )
        return self

    @property
    def unit_reconciled(self) -> bool:
        """False when a number's known unit could not be brought to the analyte's unit."""
        if not (self.unit and self.expected_unit and self.value_type == "number"):
            return True
        return canonical_unit(self.unit) == canonical_unit(self.expected_unit)

    @field_validator("abnormal_flag", mode="before")
    @classmethod
    def _flag_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return _ARROWS.get(text, text.upper()) or None
        return value

    @field_validator("status", mode="before")
    @classmethod
    def _status_text(cls, value: Any) -> Any:
        return _result_status(value)


_STATUSES = frozenset(get_args(ResultStatus))


def _result_status(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().upper()
        if text and text not in _STATUSES:
            raise problem(
                "result_status",
                f"{value!r} is not a result status (HL7 table 0085: F final, C corrected, "
                "P preliminary, X cannot be obtained, R, S, I, O, W, D, N, U, A)",
            )
        return text or None
    return value


def _kind(sent: Any, value: Any) -> str | None:
    if isinstance(sent, str) and sent.strip():
        text = sent.strip()
        if text.lower() in _KINDS:
            return text.lower()
        return HL7_VALUE_TYPES.get(text.upper())
    if sent is not None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    if isinstance(value, dict | Coded):
        return "coded"
    return "text"


def _typed(kind: str, value: Any) -> tuple[str, Any, str | None]:
    """(kind, value, comparator); a value that is not a number becomes text."""
    if kind == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return kind, float(value), None
        text = value.get("code") if isinstance(value, dict) else value
        m = _NUMBER.match(str(text)) if text is not None else None
        if m:
            comp = m.group(1)
            return kind, float(m.group(2)), _COMPARATORS.get(comp, comp) if comp else None
        return "text", _as_text(value), None
    if kind == "text":
        return kind, _as_text(value), None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return kind, coded_from_text(value) if isinstance(value, str) else value, None


def _as_text(value: Any) -> Any:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, dict):
        return value.get("display") or value.get("code")
    if isinstance(value, Coded):
        return value.display or value.code
    return value


def observation_flags(
    obs: Observation,
    where: str,
    known_unit: Callable[[str], bool] = is_known_lab_unit,
    unit_flag: str = "lab_unit_unknown",
) -> list[Flag]:
    """Findings on one observation: a non-numeric number, an unknown unit or flag. Units
    are checked against the lab's table unless the report names its own (imaging)."""
    found: list[Flag] = []
    label = obs.name or obs.code
    sent = (obs.value_type_sent or "").strip()
    if obs.value_type == "text" and (
        sent.lower() == "number" or HL7_VALUE_TYPES.get(sent.upper()) == "number"
    ):
        found.append(
            Flag(
                code="observation_not_number",
                field=f"{where}.value",
                message=f"{label} value {obs.value!r} is not a number although its type is "
                f"{sent}; kept as text",
            )
        )
    if obs.unit and not known_unit(obs.unit):
        found.append(
            Flag(
                code=unit_flag,
                field=f"{where}.unit",
                message=f"{label} unit {obs.unit!r} is not a known unit; check the value's scale",
            )
        )
    elif obs.unit and not obs.unit_reconciled:
        kinds = {FACTORS.get(canonical_unit(u), ("",))[0] for u in (obs.unit, obs.expected_unit or "")}
        molar = {"mass concentration", "amount concentration"}
        why = "; the code table gives no molar mass" if kinds == molar and not obs.molar_mass else ""
        found.append(
            Flag(
                code="lab_unit_mismatch",
                field=f"{where}.unit",
                message=f"{label} unit {obs.unit!r} cannot be converted to {obs.expected_unit} (the "
                f"analyte's unit{why}); the value is kept as sent",
            )
        )
    if obs.abnormal_flag and obs.abnormal_flag not in ABNORMAL_FLAGS:
        found.append(
            Flag(
                code="abnormal_flag_unknown",
                field=f"{where}.abnormal_flag",
                message=f"{label} abnormal flag {obs.abnormal_flag!r} is not in HL7 table 0078",
            )
        )
    return found


class LabResult(Record):
    """检验结果 a laboratory report: one order with its observations (LIS ORU^R01)."""

    record_type: Literal["LabResult"] = Field("LabResult", description="记录类型 record type")
    placer_order_id: str | None = Field(None, description="申请单号 placer order number (OBR-2)")
    filler_order_id: str | None = Field(
        None, description="报告单号 filler order number (OBR-3); a correction repeats it"
    )
    sample_id: str | None = Field(None, description="样本号/条码 specimen or barcode number")
    order: Coded | None = Field(None, description="检验项目 ordered test (OBR-4), e.g. 血常规")
    specimen: Coded | None = Field(None, description="标本 specimen (OBR-15), e.g. 全血, 血清")
    collected_at: PastDatetime | None = Field(None, description="采样时间 collected (OBR-7)")
    received_at: PastDatetime | None = Field(None, description="接收时间 received (OBR-14)")
    reported_at: PastDatetime | None = Field(None, description="报告时间 reported (OBR-22)")
    report_status: ResultStatus | None = Field(
        None, description="报告状态 OBR-25: F final, C corrected, P preliminary, X cancelled"
    )
    lab: str | None = Field(None, description="检验科室/实验室 the performing lab, e.g. LIS^10")
    ordering_clinician: Clinician | None = Field(None, description="申请医生 (OBR-16)")
    verifier: Clinician | None = Field(None, description="审核者 who verified the report (OBR-32)")
    critical: FeedBool = Field(False, description="危急值 the report holds a critical value")
    observations: list[Observation] = Field(description="检验结果项 the observations; at least one (OBX)")

    @field_validator("report_status", mode="before")
    @classmethod
    def _status_text(cls, value: Any) -> Any:
        return _result_status(value)

    @field_validator("observations")
    @classmethod
    def _at_least_one(cls, value: list[Observation]) -> list[Observation]:
        if not value:
            raise problem("no_observations", "no observations given; a LabResult needs at least one")
        return value

    def derived_flags(self) -> list[Flag]:
        found = super().derived_flags()
        for i, obs in enumerate(self.observations):
            found += observation_flags(obs, f"observations[{i}]")
        return found
