"""Strict structure validation (hl7apy) for channels with `strict: true`."""

from __future__ import annotations

import pytest

from core.errors import ParseError
from transforms.strict import check_structure

GOOD = "\r".join(
    [
        "MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113502||ORU^R01|C1|P|2.4",
        "PID|1||0010023456^^^HIS^PI||陈思雨||19940315|F",
        "OBR|1|JC1|2403210318|BLD01^血常规^L|||20240321083000",
        "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F",
    ]
)


class TestCheckStructure:
    def test_a_well_formed_oru_passes(self) -> None:
        """A v2.4 ORU^R01 with PID, OBR and OBX in order passes strict validation."""
        check_structure(GOOD)

    def test_a_broken_structure_is_refused_with_hl7apys_reason(self) -> None:
        """An OBX whose sub-id has components breaks v2.4 rules: ParseError saying so."""
        broken = GOOD.replace("OBX|1|NM|HGB^血红蛋白^L||", "OBX|1|NM|HGB^血红蛋白^L|1^2|")
        with pytest.raises(ParseError, match="strict validation"):
            check_structure(broken)
