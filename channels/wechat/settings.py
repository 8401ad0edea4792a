"""The `wechat` destination's settings: whom it reaches and which records make which notice.

    destinations:
      wechat_patient:
        type: wechat
        reaches: patient
        recipients: patient                 # the openids bound to the record's person
        quiet_hours: "21:00-08:00"          # patients only; engine.timezone
        notices:
          - record_type: LabResult
            when: report_status in [F, C]
            event: report_ready
            template_id: ${MCH_WECHAT_TPL_REPORT:-tpl-report-ready}
            keys:
              thing1: {type: thing, value: "{record.order.display}"}
              time2: {type: time, value: "{record.reported_at|time}"}

`when:` is one or more conditions joined by `and`: `field == value`, `field != value`,
`field in [a, b]`, `field is true|false|null` (a field is a dotted path in the canonical
record). A key's `value` is text with `{record.path}` placeholders, each optionally
followed by a filter: `|time` (local time, 2024-03-21 11:35), `|date`, `|mask` (first
character and stars: 陈**), `|colour` (green → 绿色). A destination that reaches patients may
only use the fields in `PATIENT_FIELDS`: a patient notice can never carry a result value, a
diagnosis, a full name or an ID number, whatever a rule says.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from channels.wechat.keys import KEY_TYPES, key_problem
from core.settings import Destination, PositiveDuration
from core.settings.models import SettingsModel
from core.settings.values import parse_duration

__all__ = [
    "EDUCATION_FIELDS",
    "FILTERS",
    "PATIENT_FIELDS",
    "Condition",
    "EducationKey",
    "KeySpec",
    "NoticeRule",
    "StaffRecipients",
    "WechatDestination",
    "parse_condition",
    "placeholders",
]

FILTERS = ("time", "date", "mask", "colour")
PATIENT_FIELDS: dict[str, tuple[str, ...]] = {
    # field path → the filters it must pass through (empty: as it is)
    "record_type": (),
    "order.display": (),
    "order.code": (),
    "specimen.display": (),
    "reported_at": ("time", "date"),
    "collected_at": ("time", "date"),
    "received_at": ("time", "date"),
    "visit_date": ("date",),
    "next_visit_date": ("date",),
    "assessment_date": ("date",),
    "person.name": ("mask",),
}
"""What a patient notice may say: that something is ready or due, and when; a name masked.
Never a value, a diagnosis, a full name or an ID number."""

PLACEHOLDER = re.compile(r"\{record\.([A-Za-z_][\w.]*)(?:\|(\w+))?\}")
_BRACE = re.compile(r"[{}]")
_CONDITION = re.compile(r"\s*([A-Za-z_][\w.]*)\s*(==|!=|\bin\b|\bis\b)\s*(.+?)\s*")
_QUIET = re.compile(r"\s*([01]\d|2[0-3]):([0-5]\d)\s*-\s*([01]\d|2[0-3]):([0-5]\d)\s*")


def _literal(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


class Condition(SettingsModel):
    """One parsed condition: `field op value` (values compared as text; `is` with true/false/null)."""

    field: str
    op: Literal["==", "!=", "in", "is"]
    values: tuple[str, ...]

    def holds(self, record: dict[str, Any]) -> bool:
        value = field_value(record, self.field)
        if self.op == "is":
            want = {"true": True, "false": False, "null": None}[self.values[0]]
            return value is want
        shown = _as_text(value)
        if self.op == "==":
            return shown == self.values[0]
        if self.op == "!=":
            return shown != self.values[0]
        return shown in self.values


def parse_condition(text: str) -> list[Condition]:
    """`a == x and b in [y, z] and c is true` → conditions, all of which must hold."""
    found = []
    for part in re.split(r"\s+and\s+", text.strip()):
        match = _CONDITION.fullmatch(part)
        if not match:
            raise ValueError(
                f"cannot read condition {part!r}: write `field == value`, `field != value`, "
                "`field in [a, b]` or `field is true|false|null`, joined by `and`"
            )
        field, op, rest = match.groups()
        if op == "in":
            if not (rest.startswith("[") and rest.endswith("]")):
                raise ValueError(f"{part!r}: `in` takes a list, e.g. report_status in [F, C]")
            values = tuple(_literal(v) for v in rest[1:-1].split(",") if v.strip())
            if not values:
                raise ValueError(f"{part!r}: the list is empty")
        elif op == "is":
            if rest not in ("true", "false", "null"):
                raise ValueError(f"{part!r}: `is` takes true, false or null")
            values = (rest,)
        else:
            values = (_literal(rest),)
        found.append(Condition(field=field, op=op, values=values))  # type: ignore[arg-type]
    return found


def field_value(record: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of a canonical record (as a dict), or None."""
    value: Any = record
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict) and "code" in value:  # a coded value compares by its code
        return str(value.get("code") or "")
    return str(value)


def placeholders(template: str) -> list[tuple[str, str | None]]:
    """(field path, filter) of each `{record.path|filter}` in a value template."""
    return [(m.group(1), m.group(2)) for m in PLACEHOLDER.finditer(template)]


def _check_template(template: str) -> str:
    rest = PLACEHOLDER.sub("", template)
    if _BRACE.search(rest):
        raise ValueError(
            f"{template!r}: a placeholder is written {{record.field}} or {{record.field|filter}} "
            f"(filters: {', '.join(FILTERS)})"
        )
    for _, flt in placeholders(template):
        if flt is not None and flt not in FILTERS:
            raise ValueError(f"{template!r}: unknown filter {flt!r} (known: {', '.join(FILTERS)})")
    return template


class KeySpec(SettingsModel):
    """One typed template key: its WeChat type and the text that fills it."""

    type: Literal[
        "thing", "phrase", "character_string", "name", "time", "date", "number", "phone_number", "amount"
    ] = Field(description="WeChat key type: " + "; ".join(f"{k}: {v}" for k, v in KEY_TYPES.items()))
    value: str = Field(
        description="Text with {record.path} placeholders, each optionally with a filter: "
        "|time, |date, |mask, |colour."
    )

    _template = field_validator("value")(classmethod(lambda cls, v: _check_template(v)))


class StaffRecipients(SettingsModel):
    """Designated staff (指定人员) by role, as bound in wechat_bindings."""

    role: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Staff role, e.g. high_risk_officer.")


class NoticeRule(SettingsModel):
    """Which records make which notice, through which template."""

    record_type: str = Field(description="Canonical record type, e.g. LabResult.")
    when: str | None = Field(
        default=None,
        description="Conditions on the record: `field == value`, `field != value`, `field in [a, b]`, "
        "`field is true|false|null`, joined by `and`.",
    )
    event: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$", description="Name of the notice in the ledger, e.g. report_ready."
    )
    title: str = Field(default="", description="The template's title, for operators (检验报告已出).")
    template_id: str = Field(min_length=1, description="The template id in the WeChat account.")
    keys: dict[str, KeySpec] = Field(min_length=1, description="Template keys (thing1, time2 …).")
    url: str | None = Field(default=None, description="Link the notice opens; placeholders allowed.")
    once_per: Literal["record", "person"] = Field(
        default="record",
        description="`record`: one notice per record (a corrected report keeps its id: no second "
        "notice); `person`: one per person for this event, whatever the record.",
    )

    @field_validator("when")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None:
            parse_condition(value)
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value)

    @field_validator("keys")
    @classmethod
    def _key_names(cls, value: dict[str, KeySpec]) -> dict[str, KeySpec]:
        for name in value:
            if not re.fullmatch(r"[a-z_]+\d+", name):
                raise ValueError(f"key {name!r}: WeChat keys are a type and a number, e.g. thing1, time2")
        return value

    def conditions(self) -> list[Condition]:
        return parse_condition(self.when) if self.when else []

    def matches(self, record_type: str, record: dict[str, Any]) -> bool:
        return record_type == self.record_type and all(c.holds(record) for c in self.conditions())

    def templates(self) -> list[tuple[str, str]]:
        """(where, text) of every value template of the rule (its keys and its url)."""
        found = [(f"keys.{name}.value", spec.value) for name, spec in self.keys.items()]
        return found + ([("url", self.url)] if self.url else [])


EDUCATION_FIELDS = ("title", "audience", "date")
"""What an education notice may say: the item's title, its audience (孕期, 产后, 儿童保健) and
the day it is sent."""
_EDU_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class EducationKey(SettingsModel):
    """One typed key of the education template: `{title}`, `{audience}` or `{date}` fill it."""

    type: Literal[
        "thing", "phrase", "character_string", "name", "time", "date", "number", "phone_number", "amount"
    ] = Field(description="WeChat key type, as for notices.")
    value: str = Field(description="Text with {title}, {audience} or {date}.")

    @field_validator("value")
    @classmethod
    def _known(cls, value: str) -> str:
        for name in _EDU_PLACEHOLDER.findall(value):
            if name not in EDUCATION_FIELDS:
                raise ValueError(
                    f"{value!r}: unknown placeholder {{{name}}} (known: "
                    + ", ".join("{" + f + "}" for f in EDUCATION_FIELDS)
                    + ")"
                )
        if _BRACE.search(_EDU_PLACEHOLDER.sub("", value)):
            raise ValueError(f"{value!r}: a placeholder is written {{title}}, {{audience}} or {{date}}")
        return value

    def render(self, values: dict[str, str]) -> str:
        return _EDU_PLACEHOLDER.sub(lambda m: values[m.group(1)], self.value).strip()


def parse_quiet_hours(text: str) -> tuple[int, int]:
    """`"21:00-08:00"` → (start, end) in minutes after midnight."""
    match = _QUIET.fullmatch(text)
    if not match:
        raise ValueError(f"invalid quiet hours {text!r} (write HH:MM-HH:MM, e.g. 21:00-08:00)")
    h1, m1, h2, m2 = (int(x) for x in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"quiet hours {text!r} start and end at the same time")
    return start, end


class WechatDestination(Destination):
    """Notices through the hospital's WeChat service account (服务号): template messages to
    patients by their bound openid, or to designated staff by role."""

    type: Literal["wechat"] = Field(description="Destination type.")
    reaches: Literal["patient", "staff", "pmtct_officer"] = Field(  # type: ignore[assignment]
        default="patient",
        description="Whom it reaches: `patient` (the record's person, by her bound openid), `staff` or "
        "`pmtct_officer` (designated people by role). A record with an audience (a PMTCT case) is never "
        "sent to a patient.",
    )
    recipients: Literal["patient"] | StaffRecipients = Field(
        default="patient",
        description="`patient`, or {role: high_risk_officer} for the staff bound with that role.",
    )
    notices: list[NoticeRule] = Field(
        min_length=1, description="Notice rules, tried in order; all that match."
    )
    quiet_hours: str | None = Field(
        default="21:00-08:00",
        description="Patients only: notices made in these hours (engine.timezone) wait until they end. "
        "null: none.",
    )
    max_per_minute: int = Field(
        default=600,
        ge=1,
        le=100_000,
        description="Sends per minute at most for the WeChat account, across every engine process.",
    )
    stale_after: PositiveDuration = Field(
        default=parse_duration("24h"),
        description="A held notice older than this when it falls due is dropped (status stale).",
    )
    check_every: PositiveDuration = Field(
        default=30.0, description="How often held notices are looked at (quiet hours over?)."
    )
    quota_every: PositiveDuration = Field(
        default=parse_duration("10m"),
        description="How often WeChat's daily quota of the APIs used is read (mch-engine status shows it).",
    )
    partitions: int = Field(default=1, ge=1, le=64, description="Queues this destination is split into.")
    education: str | None = Field(
        default=None,
        description="Health-education catalogue (宣教目录, path relative to routes.yaml), e.g. "
        "mappings/education.yaml: each bound woman gets the items of her pregnancy week, of the days "
        "after her delivery and of her child's age, once each. Patient destinations only.",
    )
    education_store: str | None = Field(
        default=None,
        description="The record_store destination whose records the education schedule reads "
        "(default: the first one of routes.yaml).",
    )
    education_every: PositiveDuration = Field(
        default=parse_duration("1h"), description="How often the education schedule runs."
    )
    education_per_month: int = Field(
        default=4,
        ge=1,
        le=31,
        description="Education notices per person and calendar month (engine.timezone) at most; "
        "4 is WeChat's mass-send limit.",
    )
    education_template_id: str | None = Field(
        default=None, description="Template id of education notices (required with `education`)."
    )
    education_keys: dict[str, EducationKey] = Field(
        default={"thing1": {"type": "thing", "value": "{title}"}},
        validate_default=True,
        description="Template keys of education notices, filled from {title}, {audience}, {date}.",
    )

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quiet_hours(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WechatDestination:
        if self.reaches == "patient" and self.recipients != "patient":
            raise ValueError("reaches: patient sends to the record's person: recipients must be `patient`")
        if self.reaches != "patient" and self.recipients == "patient":
            raise ValueError(
                f"reaches: {self.reaches} sends to designated staff: write recipients: {{role: ...}}"
            )
        if self.education is not None:
            if self.reaches != "patient":
                raise ValueError("education: health-education pushes go to patients: reaches must be patient")
            if not self.education_template_id:
                raise ValueError("education: needs education_template_id (the template of education notices)")
        if self.reaches == "patient":
            for i, rule in enumerate(self.notices):
                for where, template in rule.templates():
                    for path, flt in placeholders(template):
                        allowed = PATIENT_FIELDS.get(path)
                        if allowed is None or (allowed and flt not in allowed):
                            how = f" through |{' or |'.join(allowed)}" if allowed else ""
                            raise ValueError(
                                f"notices[{i}].{where}: a patient notice may not carry record.{path}"
                                f"{'|' + flt if flt else ''} (patient notices say that something is ready "
                                f"or due, never clinical content; allowed: "
                                f"{', '.join(sorted(PATIENT_FIELDS))}{how})"
                            )
        return self

    def config_files(self) -> list[tuple[str, int, str]]:
        return [("education", 0, self.education)] if self.education else []

    def check_file(self, path: Path) -> None:
        """The catalogue's own mistakes, then every title checked against the template's keys."""
        from channels.wechat.catalogue import AUDIENCE_LABELS, load_catalogue
        from core.errors import ConfigError
        from core.yaml_lines import parse_yaml, raise_problems
        from transforms.rules.tables import shown_path

        catalogue = load_catalogue(path)
        lines = parse_yaml(path.read_text(encoding="utf-8-sig"), str(path)).lines
        problems = []
        for i, item in enumerate(catalogue.items):
            values = {"title": item.title, "audience": AUDIENCE_LABELS[item.audience], "date": "2026-01-01"}
            for key, spec in self.education_keys.items():
                problem = key_problem(spec.type, spec.render(values))
                if problem is not None:
                    line = lines.line_of(("items", i, "title"))
                    message = f"items[{i}] ({item.id}): key {key} ({spec.type}) would be refused: {problem}"
                    problems.append(ConfigError(shown_path(path), line, message))
        raise_problems(problems)

    @property
    def role(self) -> str | None:
        return None if self.recipients == "patient" else self.recipients.role

    @property
    def quiet(self) -> tuple[int, int] | None:
        """Quiet hours in minutes after midnight, for patient destinations only."""
        if self.reaches != "patient" or not self.quiet_hours:
            return None
        return parse_quiet_hours(self.quiet_hours)
