"""The transform stage on a db_poll channel's rows: JSON in, the `input: row` mapping applied,
routed by channel and message type ROW."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from channels.db_poll.rows import encode_row
from core.settings import load_settings
from engine import journal
from engine.pipeline import TransformWorker
from engine.runtime import EngineRuntime
from support import REPO

ROW = {
    "exam_id": 41,
    "his_id": "0010031207",
    "child_name": "李沐瑶",
    "id_card": "500112202410080264",
    "sex": "女",
    "birth_date": "2024-10-08",
    "exam_date": "2025-04-10",
    "weight_kg": "7.60",
    "updated_at": datetime(2025, 4, 10, 9, 48, 12),
}


def worker(tmp_path: Path, when: str = "") -> TransformWorker:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        f"""version: 1
engine: {{database: "sqlite:///{tmp_path}/engine.db", allowed_paths: ['{REPO / "mappings"}']}}
channels:
  his_view: {{type: db_poll, url: '', view: v_child_exam, watermark: updated_at, key: exam_id}}
routes:
  - name: child-exams
    from: his_view
    message_type: ROW
    mapping: {REPO / "mappings/his/child_health_view.yaml"}
    to: record_store
    {f"when: {when}" if when else ""}
destinations:
  record_store: {{type: record_store}}
""",
        encoding="utf-8",
    )
    settings = load_settings(routes)
    return TransformWorker(
        EngineRuntime(settings).router(), None, lambda: None, row_channels=frozenset({"his_view"})
    )  # type: ignore[arg-type, return-value]


def test_a_row_becomes_the_record_its_mapping_makes(tmp_path: Path) -> None:
    raw = encode_row(ROW, ZoneInfo("Asia/Shanghai"))
    outcome, envelopes = worker(tmp_path).transform(journal.Accepted(7, "his_view", raw, "utf-8"))
    assert outcome.status == journal.ROUTED
    [(destination, envelope)] = envelopes
    assert destination == "record_store" and envelope["message_type"] == "ROW"
    assert envelope["record_id"] == "child-exam:HIS-VIEW:41"
    assert envelope["event_time"] == "2025-04-10T09:48:12+08:00"
    assert envelope["record"]["person"]["name"] == "李沐瑶"


def test_a_route_condition_on_hl7_fields_does_not_take_a_row(tmp_path: Path) -> None:
    raw = encode_row(ROW, ZoneInfo("Asia/Shanghai"))
    outcome, envelopes = worker(tmp_path, "MSH-3 == HIS").transform(
        journal.Accepted(7, "his_view", raw, "utf-8")
    )
    assert (outcome.status, envelopes) == (journal.UNROUTED, [])


def test_bytes_that_are_not_a_row_fail_with_the_reason(tmp_path: Path) -> None:
    outcome, _ = worker(tmp_path).transform(journal.Accepted(7, "his_view", b"[1, 2]", "utf-8"))
    assert (
        outcome.status == journal.FAILED and outcome.error == "transform: a polled row must be a JSON object"
    )
