"""A record for the PMTCT officer never reaches a patient-facing destination (core/audience.py):
a PMTCT case sent over MLLP through a running engine, routed to one HTTP receiver that reaches
the officer and one that reaches the patient; and `check` refusing such a route at its line."""

from __future__ import annotations

from pathlib import Path

from test_http_out import http_server

from core import i18n
from engine import journal
from engine.check import check_config
from support import ENGINE_LOG, RunningEngine, delivery_rows, free_port, hl7, scalar, wait_until
from transforms.mapping import load_mapping

PMTCT_MAPPING = """\
mapping: test-pmtct-case
records:
  - type: PmtctCase
    record_id: "pmtct:{OBR-3.1}"
    event_time: {path: MSH-7, convert: hl7_datetime}
    fields:
      infection: {const: syphilis}
      status: {const: open}
      opened_on: {path: OBR-22, convert: hl7_date}
      opened_by:
        fields:
          code: OBX-3.1
          value: OBX-5
      episode_start: {path: OBR-7, convert: hl7_date}
      as_of: {path: OBR-22, convert: hl7_date}
      schedule_version: {const: test-1}
"""


def reactive_syphilis(control_id: str, filler: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113502||ORU^R01|{control_id}|P|2.4|||AL|NE|CHN|UNICODE UTF-8",
        "PID|1||0010097001^^^HIS^PI||王小红||19940315|F",
        f"OBR|1|JC1|{filler}|TP^梅毒^L|||20240101083000||||||||BLD^全血|||||||20240321113000||HEM|F",
        "OBX|1|ST|TPPA^梅毒螺旋体抗体^L||阳性||||||F|||20240321112000",
    )


def pmtct_routes(tmp_path: Path, officer_url: str, patient_url: str, to: str) -> Path:
    (tmp_path / "pmtct_case.yaml").write_text(PMTCT_MAPPING, encoding="utf-8")
    path = tmp_path / "routes.yaml"
    path.write_text(
        f"""\
version: 1
engine:
  database: 'sqlite:///{tmp_path}/engine.db'
  queue_prefix: aud{free_port()}
channels:
  hospital: {{type: mllp, listen: '127.0.0.1:{free_port()}', encoding: utf-8}}
routes:
  - name: pmtct
    from: hospital
    mapping: pmtct_case.yaml
{to}
destinations:
  officer_api: {{type: http_out, url: '{officer_url}', reaches: pmtct_officer}}
  family_app: {{type: http_out, url: '{patient_url}', reaches: patient}}
retry: {{tiers: [0.2s], max_attempts: 2}}
""",
        encoding="utf-8",
    )
    return path


def test_a_pmtct_case_reaches_the_officer_and_never_the_patient_destination(tmp_path: Path) -> None:
    """routes.yaml sends the case to both; the officer's receiver gets it, the patient's gets
    nothing, the message is done (routed, nothing pending, no dead letter) and a
    `record_withheld` line names the patient's destination and no patient data."""
    ok = lambda n: (200, {}, b"{}")  # noqa: E731
    with http_server(ok) as (officer_url, officer), http_server(ok) as (patient_url, patient):
        routes = pmtct_routes(tmp_path, officer_url, patient_url, "    to: [officer_api, family_app]")
        mark = ENGINE_LOG.mark()
        with RunningEngine(routes) as engine:
            engine.send([reactive_syphilis("AUD-1", "F-AUD-1")])
            wait_until(lambda: delivery_rows(engine, "officer_api") == [("delivered", 1)])
            status = scalar(engine.journal, "select status from journal_messages")
            pending = journal.unfinished(engine.journal, include_pending=True)
            dead = scalar(engine.journal, "select count(*) from dead_letters")
            patient_rows = delivery_rows(engine, "family_app")
            counted = engine.runtime.transform.counts
    assert [body["record_type"] for _, _, body in officer.requests] == ["PmtctCase"]
    assert officer.requests[0][2]["audience"] == "pmtct_officer"
    assert patient.requests == []
    assert patient_rows == []
    assert status == journal.ROUTED
    assert pending == []
    assert dead == 0
    assert counted["withheld"] == 1 and counted["failed"] == 0
    (line,) = ENGINE_LOG.events(mark, "record_withheld")
    assert line["destination"] == "family_app"
    assert line["record_type"] == "PmtctCase"
    assert line["reason"] == "audience"
    assert "王小红" not in str(line) and "0010097001" not in str(line)


def test_check_refuses_the_patient_destination_at_its_to_line(tmp_path: Path) -> None:
    """The mapping makes PmtctCase records: `check` names the `to:` entry that reaches the
    patient (line 13 of the file) and not the officer's (line 12)."""
    to = "    to:\n      - officer_api\n      - family_app"
    routes = pmtct_routes(tmp_path, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b", to)
    assert routes.read_text(encoding="utf-8").splitlines()[12] == "      - family_app"
    i18n.set_language("en")
    try:
        (problem,) = check_config(routes, check_mapping=load_mapping)
    finally:
        i18n.set_language("zh")
    assert problem.line == 13
    assert "PmtctCase records are for pmtct_officer only and may not go to family_app" in problem.message
    assert "reaches: patient" in problem.message


def test_check_accepts_the_officer_destination_alone(tmp_path: Path) -> None:
    routes = pmtct_routes(tmp_path, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b", "    to: officer_api")
    assert check_config(routes, check_mapping=load_mapping) == []


def test_check_refusal_in_chinese_for_a_single_to(tmp_path: Path) -> None:
    """`to: family_app` written as one name: the line of `to:` itself, in the operator's language."""
    routes = pmtct_routes(tmp_path, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b", "    to: family_app")
    (problem,) = check_config(routes, check_mapping=load_mapping)
    assert problem.line == 11
    assert "PmtctCase 记录只供 pmtct_officer 接收，不能发往 family_app" in problem.message
