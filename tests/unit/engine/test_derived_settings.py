"""routes.yaml for derived records: a `derived` channel names a record store that publishes
them, routes from it select record types and may leave out `mapping:`, and `check` says at
the line what is wrong otherwise."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from core import i18n
from core.errors import ConfigErrors
from core.settings import load_settings
from engine.check import check_config
from engine.live_reload import compile_routes
from transforms.mapping import load_mapping
from transforms.mapping.passthrough import PASS_THROUGH

HEAD = """\
version: 1
channels:
  hospital: {type: mllp, listen: 127.0.0.1:2575}
  rules: {type: derived, store: record_store}
"""
STORE = """\
destinations:
  record_store: {type: record_store, publish_derived: true}
  staff: {type: http_out, url: 'http://127.0.0.1:9/alerts', reaches: staff}
  officer: {type: http_out, url: 'http://127.0.0.1:9/pmtct', reaches: pmtct_officer}
  mums: {type: http_out, url: 'http://127.0.0.1:9/mums', reaches: patient}
"""
ALERTS = """\
routes:
  - name: clinical-alerts
    from: rules
    message_type: RiskAssessment
    to: staff
  - name: pmtct-cases
    from: rules
    message_type: PmtctCase
    to: officer
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _problems(folder: Path, text: str) -> list[str]:
    (folder / "routes.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return [str(p) for p in check_config("routes.yaml", {}, check_mapping=load_mapping)]


def test_a_route_from_a_derived_channel_passes_records_on_without_a_mapping(workdir: Path) -> None:
    assert _problems(workdir, HEAD + ALERTS + STORE) == []
    settings = load_settings("routes.yaml", {})
    assert settings.channels["rules"].carries_records and not settings.channels["hospital"].carries_records
    alerts, cases = compile_routes(settings).router.routes
    assert alerts.mapping is PASS_THROUGH and cases.mapping is PASS_THROUGH
    assert alerts.spec.matches("RiskAssessment") and not alerts.spec.matches("PmtctCase")


def test_a_route_without_mapping_from_an_hl7_channel_is_refused_at_its_line(workdir: Path) -> None:
    routes = "routes:\n  - name: alerts\n    from: [rules, hospital]\n    message_type: '*'\n    to: staff\n"
    assert _problems(workdir, HEAD + routes + STORE) == [
        "routes.yaml:6: routes[0]: route 'alerts' needs `mapping:`: channel 'hospital' does not carry "
        "canonical records (only a `derived` channel's pass on unchanged)"
    ]


def test_the_store_must_exist_and_publish_its_derived_records(workdir: Path) -> None:
    quiet = STORE.replace(", publish_derived: true", "")
    assert _problems(workdir, HEAD + ALERTS + quiet) == [
        "routes.yaml:4: channels.rules.store: record store 'record_store' does not say `publish_derived: true`"
    ]
    other = HEAD.replace("store: record_store", "store: staff")
    assert _problems(workdir, other + ALERTS + STORE) == [
        "routes.yaml:4: channels.rules.store: 'staff' is a http_out destination, not a record_store"
    ]
    typo = HEAD.replace("store: record_store", "store: recordstore")
    assert _problems(workdir, typo + ALERTS + STORE) == [
        "routes.yaml:4: channels.rules.store: unknown destination 'recordstore' (known: mums, officer, record_store, staff)"
    ]


def test_message_types_fit_the_channel(workdir: Path) -> None:
    """Record types for a derived channel, HL7 types for an MLLP one."""
    wrong = ALERTS.replace("message_type: RiskAssessment", "message_type: [RiskAssessment, LabResult]")
    assert _problems(workdir, HEAD + wrong + STORE) == [
        "routes.yaml:8: routes[0].message_type[1]: channel 'rules' carries records of type "
        "RiskAssessment, PmtctCase"
    ]
    (workdir / "m.yaml").write_text("records: []\n", encoding="utf-8")
    hl7 = "routes:\n  - name: labs\n    from: hospital\n    message_type: LabResult\n    mapping: m.yaml\n    to: staff\n"
    problems = _problems(workdir, HEAD + hl7 + STORE)
    assert (
        "routes.yaml:8: routes[0].message_type: 'LABRESULT' is a record type; channel 'hospital' carries HL7 messages"
        in problems
    )


def test_a_pmtct_case_routed_to_a_patient_destination_is_refused(workdir: Path) -> None:
    """And to a staff one: a PMTCT case is for the PMTCT officer only (core/audience.py)."""
    i18n.set_language("en")
    routes = ALERTS.replace("to: officer", "to: [officer, mums, staff]")
    assert _problems(workdir, HEAD + routes + STORE) == [
        f"routes.yaml:13: routes[pmtct-cases].to: PmtctCase records are for pmtct_officer only and may "
        f"not go to {name} (reaches: {name if name == 'staff' else 'patient'}); take it out of `to:` or use "
        "a destination that reaches system or pmtct_officer"
        for i, name in ((1, "mums"), (2, "staff"))
    ]


def test_load_settings_raises_the_same_problems(workdir: Path) -> None:
    (workdir / "routes.yaml").write_text(HEAD + ALERTS + STORE.replace(", publish_derived: true", ""))
    with pytest.raises(ConfigErrors):
        load_settings("routes.yaml", {})
