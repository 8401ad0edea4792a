"""A notice rule applied to a record: the template data it fills, checked key by key.

`fill(rule, record, tz)` renders each key's text from the canonical record and checks it
against the key's WeChat type (channels/wechat/keys.py) before anything is written or sent:
a value WeChat would refuse is a `KeyValueRefused`, a dead letter naming the key and rule.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from channels.wechat.keys import check_key
from channels.wechat.settings import PLACEHOLDER, NoticeRule, field_value

__all__ = ["Notice", "fill", "render"]

COLOURS = {"green": "绿色", "yellow": "黄色", "orange": "橙色", "red": "红色", "purple": "紫色"}


@dataclass(frozen=True, slots=True)
class Notice:
    """What one rule makes of one record: the template id, its data and its link."""

    rule: NoticeRule
    data: dict[str, str]
    url: str | None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, dict):  # a coded value: its display, else its code
        return str(value.get("display") or value.get("code") or "")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _when(value: Any) -> datetime | date | None:
    """A datetime or date from the record (ISO text in its JSON form), else None."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value)
    return value if isinstance(value, datetime | date) else None


def _filtered(value: Any, flt: str | None, tz: tzinfo) -> str:
    if flt in ("time", "date"):
        when = _when(value)
        if when is None:
            return _text(value)
        if isinstance(when, datetime):
            local = when.astimezone(tz) if when.tzinfo else when
            return local.strftime("%Y-%m-%d %H:%M" if flt == "time" else "%Y-%m-%d")
        return when.isoformat() if flt == "date" else _text(value)
    text = _text(value)
    if flt == "mask":
        return text[:1] + "*" * max(1, len(text) - 1) if text else ""
    if flt == "colour":
        return COLOURS.get(text, text)
    return text


def render(template: str, record: dict[str, Any], tz: tzinfo) -> str:
    """The text of a value template with the record's fields in place of its placeholders."""
    return PLACEHOLDER.sub(lambda m: _filtered(field_value(record, m.group(1)), m.group(2), tz), template)


def fill(rule: NoticeRule, record: dict[str, Any], tz: tzinfo) -> Notice:
    """The notice `rule` makes of `record`, every key checked as WeChat would check it."""
    data = {}
    for key, spec in rule.keys.items():
        value = render(spec.value, record, tz).strip()
        check_key(key, spec.type, value)
        data[key] = value
    url = render(rule.url, record, tz) if rule.url else None
    return Notice(rule, data, url)
