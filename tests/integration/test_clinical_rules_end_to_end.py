"""A pregnancy over MLLP through the shipped routes.yaml: the engine suggests her risk colours
as her records arrive and opens a PMTCT case whose infant items get due dates at the birth.

The messages are the shipped samples of one woman (陈思雨: registration, blood routine, a
visit, the 75 g OGTT, the delivery and her daughter's birth record) plus a preliminary and
then a final reactive HBsAg result written for this test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from channels.mllp.ack import parse_acks
from support import REPO, RunningEngine, hl7, scalar, shipped_env, wait_until

SAMPLES = REPO / "mappings"
PID = (
    "PID|1||0010023456^^^HIS^PI~500112199403151525^^^^ID||陈思雨||19940315|F||||||||||||||"
    "01^汉族^GB3304||||||CHN^中国"
)


def hbsag(control_id: str, reported: str, status: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|LIS|10|MCHENGINE|FY01|{reported}||ORU^R01|{control_id}|P|2.4|||AL|NE|CHN|UNICODE UTF-8",
        PID,
        f"OBR|1|JC-HBV|2403250101|IMM05^乙肝两对半^L|||20240325090000||||||||SER^血清|||||||{reported}||IMM|{status}",
        f"OBX|1|ST|HBSAGQ^乙肝表面抗原（定性）^L||阳性(+)||阴性|A|||{status}|||{reported}",
    )


MESSAGES: list[tuple[str, bytes]] = [
    (
        "hospital",
        (
            SAMPLES / "his/samples/002_ORU-R01_utf-8__pregnancy-registration-lmp-edd-gravidity.hl7"
        ).read_bytes(),
    ),
    ("hospital", (SAMPLES / "lis/samples/003_ORU-R01_utf-8__lis-blood-routine.hl7").read_bytes()),
    ("hospital", hbsag("E2E-HBV-P", "20240325150000", "P")),
    ("hospital", (SAMPLES / "his/samples/006_ORU-R01_utf-8__prenatal-visit-16w.hl7").read_bytes()),
    ("hospital", hbsag("E2E-HBV-F", "20240326150000", "F")),
    ("lis_gbk", (SAMPLES / "lis/samples/008_ORU-R01_gb18030__lis-ogtt-75g-gdm.hl7").read_bytes()),
    ("lis_gbk", (SAMPLES / "his/samples/010_ORU-R01_gb18030__delivery-record.hl7").read_bytes()),
    ("hospital", (SAMPLES / "his/samples/012_ORU-R01_utf-8__newborn-record-weight-apgar.hl7").read_bytes()),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    env = shipped_env(tmp_path_factory.mktemp("rules"))
    with RunningEngine(REPO / "routes.yaml", env=env) as running:
        yield running


def derived(engine: RunningEngine, kind: str) -> list[dict[str, Any]]:
    with engine.store().connect() as conn:
        rows = conn.execute(
            text(
                "select payload from records where record_type = :k and source_channel = 'rules' "
                "order by event_time, record_id"
            ),
            {"k": kind},
        ).all()
    return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]


def test_a_pregnancy_over_mllp_yields_suggested_colours_and_a_pmtct_case(engine: RunningEngine) -> None:
    journal = engine.journal
    for i, (channel, message) in enumerate(MESSAGES, start=1):
        [ack] = engine.send([message], channel=channel)
        assert [a.code for a in parse_acks((ack or b"").decode("latin-1"))] == ["AA"]
        wait_until(
            lambda n=i: scalar(journal, "select count(*) from journal_messages where status = 'routed'") == n
        )
        wait_until(
            lambda: (
                scalar(journal, "select count(*) from journal_deliveries where status != 'delivered'") == 0
            )
        )
        if i == 3:  # the preliminary HBsAg: a provisional case, purple suggested at once
            [case] = derived(engine, "PmtctCase")
            assert (case["infection"], case["status"]) == ("hbv", "provisional")
            assert derived(engine, "RiskAssessment")[-1]["purple"] is True

    gradings = derived(engine, "RiskAssessment")
    assert [(g["assessment_date"], g["colour"], g["purple"]) for g in gradings] == [
        ("2024-03-21", "green", False),  # registration: 30 years, BMI 20.5
        # HBsAg reactive: carrier (yellow) and purple. The final report replaced the
        # preliminary one (same order), so the grading is dated by the final report.
        ("2024-03-26", "yellow", True),
        # The visit on 05-02 grades green again, as the registration did: nothing changes.
        ("2024-07-10", "yellow", True),  # 75 g OGTT fasting 5.3 mmol/L: gestational diabetes
    ]
    assert all(g["method"] == "suggested" and g["rule_set"] == "nhc-2017-35 2017.1" for g in gradings)
    assert [g["clinical_colour"] for g in gradings] == ["green", "green", "green"]
    assert [g["above_clinical"] for g in gradings] == [False, True, True]
    assert gradings[-1]["clinical_record_id"] != gradings[0]["clinical_record_id"]  # the visit's
    factors = {f["code"]["code"]: f["source_observation"] for f in gradings[-1]["factors"]}
    assert set(factors) == {"hbsag_carrier", "gestational_diabetes", "hepatitis_b"}
    assert factors["gestational_diabetes"]["value"] == "5.3 mmol/L"
    assert factors["gestational_diabetes"]["record_type"] == "LabResult"

    [case] = derived(engine, "PmtctCase")
    assert (case["infection"], case["status"], case["audience"]) == ("hbv", "open", "pmtct_officer")
    assert case["opened_on"] == "2024-03-25" and case["delivery_date"] == "2024-10-08"
    infant = {item["id"]: item for item in case["items"] if item["who"] == "infant"}
    assert infant, case["items"]
    assert all(item.get("due_by") and item["due_by"] >= "2024-10-08" for item in infant.values())
    first_dose = [i for i in infant.values() if i["status"] == "done"]
    assert first_dose, "the birth record's first hepatitis B dose (已接种) marks an item done"
    assert all(i["done_on"] == "2024-10-08" for i in first_dose)
