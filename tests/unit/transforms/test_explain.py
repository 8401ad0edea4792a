"""`mch-engine mapping explain|run` answer for every message of the conformance corpus."""

from __future__ import annotations

from collections import Counter

import pytest

from core.settings import Settings, load_settings
from engine.mapping_trial import try_file
from engine.router import Router
from engine.runtime import EngineRuntime
from support import CONFORMANCE, REPO, REPORT
from transforms.mapping.explain import explain_fields

FILES = sorted(CONFORMANCE.rglob("*.hl7"))


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(REPO / "routes.yaml", env={})


@pytest.fixture(scope="module")
def router(settings: Settings) -> Router:
    return EngineRuntime(settings).router()


def test_every_corpus_message_maps_or_says_why_not(settings: Settings, router: Router) -> None:
    """Each message maps to records, or is rejected, unrouted or failed with what explains it."""
    assert len(FILES) > 400
    tally: Counter[str] = Counter()
    for path in FILES:
        channel = "lis_gbk" if "gb" in path.name else "hospital"
        for trial in try_file(path.read_bytes(), settings, router, channel):
            tally[trial.status] += 1
            if trial.status in ("rejected", "failed"):
                assert trial.error, path
            elif trial.status == "unrouted":
                assert trial.message is not None and not trial.routes, path
            else:
                assert trial.routes and trial.message is not None, path
                assert explain_fields(trial.message, [r.mapping for r in trial.routes]), path
    REPORT.append(f"mapping run over {len(FILES)} corpus files: {dict(tally)}")


def test_targets_name_their_conditions_and_code_table(router: Router) -> None:
    """OBX-3.1 fills the standard code only through lis_tests and only for lab codes (OBX-3.3 == L)."""
    lab = next(r for r in router.routes if r.name == "lab-results").mapping
    standard = [t for t in lab.paths["OBX-3"] if t.field == "LabResult.observations.standard_code"]
    assert [(t.source, t.conditions, t.table) for t in standard] == [
        ("OBX-3.1", ("OBX-3.3 == L",), "lis_tests")
    ]
    assert standard[0].fills("HGB") and not standard[0].fills("ZZZ99")
    sent = [t for t in lab.paths["OBX-3"] if t.field == "LabResult.observations.standard_code.code"]
    assert [(t.source, t.conditions, t.table) for t in sent] == [("OBX-3.4", ("OBX-3.4",), None)]
