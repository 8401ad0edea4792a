"""`mch-engine mapping explain` answers for every message of the conformance corpus."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from engine.runtime import EngineRuntime
from engine.settings import load_settings
from support import CONFORMANCE, REPO, REPORT
from transforms.mapping.explain import explain, format_explanation

FILES = sorted(CONFORMANCE.rglob("*.hl7"))


@pytest.fixture(scope="module")
def router() -> object:
    return EngineRuntime(load_settings(REPO / "routes.yaml", env={})).router()


def test_every_corpus_message_maps_or_says_why_not(router: object) -> None:
    """Each message either maps to records or is reported unmapped with a reason; nothing crashes."""
    assert len(FILES) > 400
    tally: Counter[str] = Counter()
    for path in FILES:
        result = explain(path.read_bytes(), router, None, "gb18030" if "gb" in path.name else "utf-8")
        text = format_explanation(result)
        if result.records:
            tally["mapped"] += 1
        elif result.unmapped_reason:
            tally["unmapped (reason given)"] += 1
            assert text.startswith("unmapped: "), path
        else:
            tally["routed, mapping failed"] += 1
            assert result.error, f"{path}: neither records, nor a reason, nor an error"
    REPORT.append(f"mapping explain over {len(FILES)} corpus files: {dict(tally)}")


def test_explain_names_fields_and_their_targets(router: object) -> None:
    """A mapped message lists PID-5 as Patient Name and where it goes."""
    raw = (
        CONFORMANCE / "chinese-synthetic" / "001_ADT-A04_utf-8__mother-registration-obstetric-clinic.hl7"
    ).read_bytes()
    text = format_explanation(explain(raw, router, "hospital"))
    line = next(line for line in text.splitlines() if line.startswith("PID-5 "))
    assert "Patient Name" in line and "Person.person.name" in line
    assert "not mapped" in next(line for line in text.splitlines() if line.startswith("MSH-5 "))


def test_unknown_sender_is_unmapped_with_the_reason(router: object, tmp_path: Path) -> None:
    """An ORU from a system no route names is reported as unmapped, naming type and channel."""
    raw = b"MSH|^~\\&|EMR|X|MCHENGINE|FY01|20240101||ORU^R01|C1|P|2.5\rPID|1||1\r"
    result = explain(raw, router, "hospital")
    assert result.unmapped_reason == "no route takes ORU^R01 from channel hospital"
