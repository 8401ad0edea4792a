"""What the transform stage logs about a failed mapping: the rule's kind and the field, never a value."""

from __future__ import annotations

import pytest

from core.errors import MappingError
from engine.pipeline import rule_name


def failure(path: str, rule: str) -> MappingError:
    return MappingError(mapping="mappings/his/child_health.yaml", line=66, path=path, value="x", rule=rule)


@pytest.mark.parametrize(
    ("path", "rule", "name"),
    [
        ("PID-7", "hl7_date: impossible date (month must be in 1..12)", "convert hl7_date"),
        ("age_in_months", "date 2025-04-10 is before the birth date 2025-06-01", "derive age_in_months"),
        ("PID-3[*].1 where PID-3[*].5 == MCH", "required value is empty", "required"),
        ("OBX-5", "陈思雨: 500112199403151525 is not a weight", "mapping rule"),
        ("PID-5", "chinese_name: 陈思雨", "convert chinese_name"),
    ],
)
def test_rule_name_never_carries_the_rule_text(path: str, rule: str, name: str) -> None:
    """The name comes from a fixed vocabulary (converters, derived values, `required`), whatever the text says."""
    assert rule_name(failure(path, rule)) == name
