"""Building blocks every canonical record shares: codes, quantities, flags, who and where.

Design choices that the mapping files rely on:
- Unknown fields are errors (`extra="forbid"`): a misspelt target in a mapping fails
  loudly instead of silently dropping data.
- Coded values keep code, system and display side by side (MCH-DOMAIN §1) so a national
  code, a GB code and the hospital's local code can coexist.
- Data-quality findings that must not lose the message (a wrong ID card number) become
  `Flag`s on the record; only data that cannot be true (a visit in the future) is an error.
- Derived values (`id_card_valid`, `bmi`) are computed fields: written on output,
  ignored on input, so a stored record can be validated again unchanged.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PrivateAttr,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from transforms.records.idcard import (
    IdCardProblem,
    id_card_problems,
    normalise_id_card,
    upgrade_legacy_id_card,
)

__all__ = [
    "CLOCK_SKEW",
    "Between",
    "Clinician",
    "Coded",
    "Encounter",
    "FeedBool",
    "Flag",
    "PassRefer",
    "PastDate",
    "PastDatetime",
    "PersonRef",
    "Quantity",
    "Record",
    "RecordModel",
    "Referral",
    "SexCode",
    "Source",
    "ValueModel",
    "coded_from_text",
    "fmt_number",
    "parse_yes_no",
    "problem",
]

HOSPITAL_TZ = ZoneInfo("Asia/Shanghai")
CLOCK_SKEW = timedelta(days=1)
"""How far in the future a date may lie before it is an error (sender clocks drift)."""


def problem(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose text is exactly `message` (no 'Value error,' prefix)."""
    return PydanticCustomError(kind, message)


# --------------------------------------------------------------------------- base models


def _drop_computed_fields(cls: type[BaseModel], data: Any) -> Any:
    computed = cls.__pydantic_computed_fields__
    if computed and isinstance(data, dict) and any(k in data for k in computed):
        return {k: v for k, v in data.items() if k not in computed}
    return data


drop_computed = model_validator(mode="before")(classmethod(_drop_computed_fields))  # type: ignore[arg-type]
"""`_drop_computed = drop_computed` in a model with computed fields: a stored record carries
them, and validating it again must ignore them rather than reject them as unknown."""


class RecordModel(BaseModel):
    """Common configuration: unknown fields rejected, computed fields ignored on input.

    Only models with computed fields take `drop_computed` (a check at class creation says
    so), because a validator on every model would run for every nested value."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if (
            cls.__pydantic_computed_fields__
            and "_drop_computed" not in cls.__pydantic_decorators__.model_validators
        ):
            raise TypeError(f"{cls.__name__} has computed fields: add `_drop_computed = drop_computed`")


class ValueModel(RecordModel):
    """Small immutable values (codes, quantities): safe to share and to hash."""

    model_config = ConfigDict(frozen=True)


# --------------------------------------------------------------------------- plain types


def _today() -> date:
    return datetime.now(HOSPITAL_TZ).date()


# The latest allowed date and time as last computed. The clock only moves forward, so a
# value at or before them is still allowed now; only values after them (rare: a time near
# the limit, or a day that has passed since) need the clock read again.
_allowed_date: date = date.min
_allowed_datetime: datetime = datetime(1900, 1, 1, tzinfo=UTC)  # UTC compares sooner


def _not_future_date(value: date) -> date:
    global _allowed_date
    if value <= _allowed_date:
        return value
    _allowed_date = _today() + CLOCK_SKEW
    if value > _allowed_date:
        raise problem("future_date", f"{value.isoformat()} is in the future")
    return value


# Days (proleptic ordinals) whose every local time lies before `_allowed_datetime` whatever
# its UTC offset (offsets are under a day): comparing the day is much cheaper than comparing
# two aware datetimes, which works out both UTC offsets.
_safe_day: int = 0


def _not_future_datetime(value: datetime) -> datetime:
    global _allowed_datetime, _safe_day
    if value.toordinal() < _safe_day or value <= _allowed_datetime:
        return value
    _allowed_datetime = datetime.now(UTC) + CLOCK_SKEW
    _safe_day = _allowed_datetime.toordinal() - 1
    if value > _allowed_datetime:
        raise problem("future_datetime", f"{value.isoformat()} is in the future")
    return value


PastDate = Annotated[date, AfterValidator(_not_future_date)]
"""A date that has happened (a day of clock skew allowed); planned dates use plain `date`."""

PastDatetime = Annotated[AwareDatetime, AfterValidator(_not_future_datetime)]
"""A time with its UTC offset that has happened; HL7 times without an offset are made
Asia/Shanghai by the `hl7_datetime` converter before they get here."""

_SEX_CODES = ("0", "1", "2", "9")


def _sex_code(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value.strip() in _SEX_CODES:
        return value.strip()
    raise problem(
        "sex_code",
        f"{value!r} is not a GB/T 2261.1 sex code (0 unknown, 1 male, 2 female, 9 not stated); "
        "map HL7 M/F/U with the `sex` converter",
    )


SexCode = Annotated[Literal["0", "1", "2", "9"], BeforeValidator(_sex_code)]

_YES = {"是", "有", "y", "yes", "true", "1", "已", "已接种", "已做", "已完成", "已注射"}
_NO = {"否", "无", "n", "no", "false", "0", "未", "未接种", "未做", "未完成", "未注射"}


def parse_yes_no(value: Any) -> Any:
    """Booleans the way Chinese forms write them: 是/否, 有/无, 已接种/未接种, Y/N, 1/0."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise problem("yes_no", f"{value!r} is not a yes/no value (是/否, 有/无, 已/未, Y/N, true/false)")


FeedBool = Annotated[bool, BeforeValidator(parse_yes_no)]

_PASS = {"pass", "p", "通过", "正常", "双耳通过", "passed"}
_REFER = {"refer", "r", "fail", "未通过", "不通过", "未过", "异常", "failed"}


def _pass_refer(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _PASS:
            return "pass"
        if text in _REFER:
            return "refer"
        raise problem("pass_refer", f"{value!r} is neither pass (通过) nor refer/fail (未通过)")
    return value


PassRefer = Annotated[Literal["pass", "refer"], BeforeValidator(_pass_refer)]
"""Screening outcome: pass 通过 or refer 未通过 (hearing, development); Chinese accepted."""


def fmt_number(x: float) -> str:
    """12 not 12.0; 0.5 stays 0.5 (for messages)."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True, slots=True)
class Between:
    """Annotation: a number must lie in [low, high]; the error names the meaning and range.

    Used instead of `Field(ge=…, le=…)` so the message says "13 is outside the plausible
    Apgar score 0–10" rather than pydantic's generic wording; the JSON Schema still shows
    minimum and maximum.
    """

    label: str
    low: float
    high: float

    def check(self, value: float) -> float:
        if not self.low <= value <= self.high:
            raise problem(
                "out_of_range",
                f"{fmt_number(value)} is outside the plausible {self.label} "
                f"{fmt_number(self.low)}–{fmt_number(self.high)}",
            )
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        js = handler(schema)
        js["minimum"] = self.low
        js["maximum"] = self.high
        return js


def _str_or_none(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


# --------------------------------------------------------------------------- values


def coded_from_text(text: str) -> dict[str, str | None]:
    """`code^display^system` (raw HL7 CE/CWE) or plain text (the display) as Coded fields."""
    if "^" in text:
        parts: list[str | None] = [p.strip() or None for p in text.split("^")]
        parts += [None] * (3 - len(parts))
        return {"code": parts[0], "display": parts[1], "system": parts[2]}
    return {"display": text.strip()}


class Coded(ValueModel):
    """编码值 a coded value: code + coding system + display text, as national (WS 364 CV…),
    GB (GB/T 2261.1, GB/T 3304) or local (the hospital's) codes.

    Also accepted on input: the raw HL7 text `code^display^system`, or plain text (stored as
    the display, without a code).
    """

    code: str | None = Field(None, description="代码 the code (e.g. 01, G, 718-7)")
    system: str | None = Field(
        None, description="编码体系 coding system (e.g. GB/T 2261.1, CV02.01.101, LN, 99FYRISK)"
    )
    display: str | None = Field(None, description="名称 display text (e.g. 汉族, 绿色)")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            data = str(data)
        return coded_from_text(data) if isinstance(data, str) else data

    @model_validator(mode="after")
    def _has_content(self) -> Coded:
        if not (self.code or self.display):
            raise problem("coded_empty", "a coded value needs a code or a display text")
        return self


class Quantity(ValueModel):
    """数值与单位 a measured value with its unit (UCUM-style spelling, e.g. kg, cm, mmHg)."""

    value: float = Field(description="数值 the number", allow_inf_nan=False)
    unit: str = Field(description="单位 the unit, e.g. kg, g/L, mmHg, /min")
    original_value: float | None = Field(
        None, description="原始数值 the number as sent, when it was converted to `unit`", allow_inf_nan=False
    )
    original_unit: str | None = Field(
        None, description="原始单位 the unit as sent, when the value was converted (e.g. g/dL, 斤)"
    )
    _unit_problem: tuple[str, str] | None = PrivateAttr(default=None)
    """Set by a field's QuantityRule when the unit is unknown; the record flags it."""

    @property
    def unit_problem(self) -> tuple[str, str] | None:
        """(flag code, message) when the unit could not be checked; the record flags it."""
        return self._unit_problem

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("value"), str):
            text = data["value"].strip()
            try:
                float(text)
            except ValueError:
                raise problem("quantity_value", f"{text!r} is not a number") from None
        return data


class Flag(ValueModel):
    """数据质量提示 a data-quality finding that does not reject the record (e.g. a wrong
    ID card check character): the record is stored, the finding is shown to staff."""

    code: str = Field(
        description="提示代码 machine code, e.g. id_card_check_digit",
        pattern=r"^[a-z][a-z0-9_]*$",
    )
    field: str | None = Field(None, description="字段 the field concerned, e.g. person.id_card")
    message: str = Field(description="说明 one sentence for an interface engineer")


_XCN_PARTS = re.compile(r"[\^&]")


class Clinician(ValueModel):
    """医务人员 a doctor, nurse or technician as the sender identifies them (code^name).

    Also accepted on input: `D1023^张敏` or `D2011&王伟` (HL7 XCN/CNN), or a plain name.
    """

    code: str | None = Field(None, description="工号 staff code in the sending system")
    name: str | None = Field(None, description="姓名 name")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            parts = [p.strip() for p in _XCN_PARTS.split(data)]
            if len(parts) >= 2:
                return {"code": parts[0] or None, "name": parts[1] or None}
            return {"name": data.strip() or None}
        return data


class Referral(ValueModel):
    """转诊 whether the person was referred, where to and why.

    Also accepted on input: a yes/no value (是/否, 有/无) or free text (taken as the reason
    of a referral).
    """

    referred: bool = Field(description="是否转诊 referred or not")
    to: str | None = Field(None, description="转诊机构 referred to (institution or department)")
    reason: str | None = Field(None, description="转诊原因 reason")

    @model_validator(mode="before")
    @classmethod
    def _from_value(cls, data: Any) -> Any:
        if isinstance(data, bool):
            return {"referred": data}
        if isinstance(data, str):
            try:
                return {"referred": parse_yes_no(data)}
            except PydanticCustomError:
                return {"referred": True, "reason": data.strip()}
        return data


class Source(ValueModel):
    """来源 where the record came from, so anyone can go back to the original message."""

    channel: str | None = Field(None, description="通道 engine channel name")
    sending_system: str | None = Field(None, description="发送系统 MSH-3^MSH-4, e.g. HIS^FY01, LIS^10")
    control_id: str | None = Field(None, description="消息控制号 MSH-10")
    event_time: PastDatetime | None = Field(
        None, description="事件时间 event time with UTC offset (EVN-2, OBR-22 or MSH-7)"
    )
    journal_id: Annotated[str | None, BeforeValidator(_str_or_none)] = Field(
        None, description="日志号 the engine journal entry that holds the raw message"
    )


class Encounter(ValueModel):
    """就诊 the visit a record belongs to (HL7 PV1)."""

    visit_number: str | None = Field(None, description="就诊号/住院号 PV1-19 (MZ…, ZY…, FS…)")
    patient_class: str | None = Field(
        None, description="就诊类型 PV1-2: O outpatient 门诊, I inpatient 住院, E emergency 急诊"
    )
    department: str | None = Field(None, description="科室 e.g. 产科门诊, 儿保科 (PV1-3.1)")
    facility: str | None = Field(None, description="机构 facility code, e.g. FY01 (PV1-3.4)")
    attending: Clinician | None = Field(None, description="接诊医生 doctor (PV1-7)")
    start_time: PastDatetime | None = Field(None, description="就诊时间 visit start (PV1-44)")


# --------------------------------------------------------------------------- people


class PersonRef(RecordModel):
    """身份标识 the subject's identifiers as the message gives them, used to link records
    to one person. The ID card number is kept as sent even when it is wrong;
    `id_card_valid` (computed) says whether it may be used for linking.
    """

    id_card: str | None = Field(
        None,
        description="身份证号 (DE02.01.030.00) resident ID card number, 18 characters "
        "(legacy 15-digit numbers accepted); a lowercase x is made X",
    )
    his_id: str | None = Field(
        None, description="门诊号/HIS患者ID (DE01.00.010.00) patient id in the sending system"
    )
    his_system: str | None = Field(
        None, description="HIS系统 the system (assigning authority) that issued his_id, e.g. HIS"
    )
    mch_handbook_no: str | None = Field(None, description="母子健康手册号/孕产妇保健册号 MCH handbook number")
    birth_certificate_no: str | None = Field(
        None, description="出生医学证明编号 birth certificate number (newborns have no ID card)"
    )
    name: str | None = Field(None, description="姓名 (DE02.01.039.00) name as written in Chinese")
    sex: SexCode | None = Field(
        None, description="性别 (DE02.01.040.00) GB/T 2261.1: 0 unknown, 1 male, 2 female, 9 not stated"
    )
    birth_date: PastDate | None = Field(None, description="出生日期 (DE02.01.005.01) date of birth")

    _drop_computed = drop_computed

    @field_validator("id_card", mode="before")
    @classmethod
    def _normalise_id_card(cls, value: Any) -> Any:
        if isinstance(value, str):
            return normalise_id_card(value) if value.strip() else None
        return value

    @field_validator("name", mode="before")
    @classmethod
    def _trim_name(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    def id_card_problems(self) -> list[IdCardProblem]:
        """What is wrong with the ID card number, checked against birth date and sex.

        Asked three times per record (flags, `id_card_valid`, `id_card_for_linking`), so the
        answer is kept for the same number, birth date, sex and day (the check compares the
        birth date with today)."""
        global _problems_until
        if not self.id_card:
            return id_card_problems(self.id_card, self.birth_date, self.sex)
        if time.time() >= _problems_until or len(_ID_CARD_PROBLEMS) >= 4096:
            _ID_CARD_PROBLEMS.clear()  # a new day in Shanghai: a birth date may now be possible
            tomorrow = _today() + timedelta(days=1)
            _problems_until = datetime.combine(tomorrow, dtime(0), tzinfo=HOSPITAL_TZ).timestamp()
        key = (self.id_card, self.birth_date, self.sex)
        found = _ID_CARD_PROBLEMS.get(key)
        if found is None:
            found = _ID_CARD_PROBLEMS[key] = tuple(id_card_problems(self.id_card, self.birth_date, self.sex))
        return list(found)

    @computed_field(  # type: ignore[prop-decorator]
        description="身份证号可用于匹配 true when id_card is present and sound enough to link "
        "records by it (a legacy 15-digit number counts, after upgrading to 18)"
    )
    @property
    def id_card_valid(self) -> bool:
        return bool(self.id_card) and not any(p.blocks_linking for p in self.id_card_problems())

    @computed_field(  # type: ignore[prop-decorator]
        description="匹配用身份证号 the 18-character number to link by (a legacy number upgraded), "
        "or null when id_card must not be used"
    )
    @property
    def id_card_for_linking(self) -> str | None:
        if not self.id_card_valid or self.id_card is None:
            return None
        return upgrade_legacy_id_card(self.id_card) if len(self.id_card) == 15 else self.id_card


_ID_CARD_PROBLEMS: dict[tuple[str, date | None, str | None], tuple[IdCardProblem, ...]] = {}
_problems_until = 0.0  # when the kept answers expire: the next midnight in Shanghai (epoch)


# --------------------------------------------------------------------------- record


class Record(RecordModel):
    """Fields every canonical record has: type, version, identity, provenance and flags."""

    SCHEMA_VERSION: ClassVar[int] = 1
    FIXED_AUDIENCE: ClassVar[str | None] = None
    """The audience every record of this type carries (core/audience.py), or None: a type
    that sets it may only be routed to destinations that may receive that audience."""

    record_type: str = Field(description="记录类型 canonical record type")
    schema_version: int = Field(1, description="模式版本 version of this record type's schema (starts at 1)")
    record_id: str = Field(
        min_length=1,
        description="记录ID stable id: the same report resent or corrected gives the same id",
    )
    person: PersonRef | None = Field(
        None, description="对象 the subject (mother, woman, child) as the message identifies them"
    )
    mother: PersonRef | None = Field(
        None, description="母亲 the mother, for newborn and child records (PID-21, NK1 MTH)"
    )
    source: Source | None = Field(None, description="来源 message provenance")
    encounter: Encounter | None = Field(None, description="就诊 the visit (PV1)")
    notes: list[str] = Field(default_factory=list, description="备注 free-text comments and guidance (NTE)")
    flags: list[Flag] = Field(
        default_factory=list,
        description="数据质量提示 data-quality findings that did not reject the record",
    )

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if not 1 <= value <= cls.SCHEMA_VERSION:
            raise problem(
                "schema_version",
                f"schema_version {value} is not known to this engine "
                f"(it understands 1 to {cls.SCHEMA_VERSION})",
            )
        return value

    def derived_flags(self) -> list[Flag]:
        """Findings computed from the data; subclasses add theirs to the base ones."""
        found: list[Flag] = []
        for where, ref in (("person", self.person), ("mother", self.mother)):
            if ref is not None:
                found += [
                    Flag(code=p.code, field=f"{where}.id_card", message=p.message)
                    for p in ref.id_card_problems()
                ]
        found += [
            Flag(code=q.unit_problem[0], field=where, message=q.unit_problem[1])
            for where, q in _quantities(self, "")
            if q.unit_problem
        ]
        return found

    @model_validator(mode="after")
    def _collect_flags(self) -> Record:
        seen = {(f.code, f.field) for f in self.flags}
        for flag in self.derived_flags():
            if (flag.code, flag.field) not in seen:
                seen.add((flag.code, flag.field))
                self.flags.append(flag)
        return self


def _quantities(model: BaseModel, prefix: str) -> list[tuple[str, Quantity]]:
    """Every Quantity in a record with its field path (`measurements[0].nt`)."""
    found: list[tuple[str, Quantity]] = []
    for name, value in model.__dict__.items():
        where = f"{prefix}{name}"
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for i, item in items:
            at = where if i is None else f"{where}[{i}]"
            if isinstance(item, Quantity):
                found.append((at, item))
            elif isinstance(item, BaseModel):
                found += _quantities(item, f"{at}.")
    return found
