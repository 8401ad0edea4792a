"""Two servers, active/standby: nothing that must run once runs on the standby.

Two engine processes share one routes.yaml on one PostgreSQL and one RabbitMQ: a db_poll
channel reading a HIS table, a WeChat destination with an education catalogue (a bound
woman in week 8 of her pregnancy: two items due), and the retention pruner every second.
While the first leads, the second polls nothing, makes no education run and no retention
pass (its own log says so); each row is journaled once. The leader stops: the second takes
the lock, polls on from the cursor (no row twice, none skipped) and runs the schedulers.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from db_poll_support import His, his_database, journaled, poll_routes
from sqlalchemy import Engine, text

from channels.db_poll import cursor as cursors
from channels.record_store.store import RecordStore, ensure_schema
from channels.wechat import bindings, ledger
from core.database import make_engine
from engine_process import EngineProcess, delete_broker_objects, wait_for
from support import AMQP_URL, REPO, REPORT, require_service, stored_envelope

pytestmark = [pytest.mark.services, pytest.mark.slow]

BASE = datetime(2025, 4, 10, 9, 0, 0)
SHANGHAI = ZoneInfo("Asia/Shanghai")
MOTHER_ID_CARD = "500112199403151525"
OPENID = "oSTANDBY00000000001"
EDUCATION_DUE = {"education:preg_t1_folic_acid", "education:preg_t1_first_visit"}  # week 8
LEADER_ONLY = {"db_poll_started", "wechat_education_run", "retention_pruned", "engine_leading"}
PERIOD = 1.0  # seconds between two education runs, and between two retention passes


def logged(process: EngineProcess) -> list[dict[str, str]]:
    """The process's JSON log events, in order (all its starts)."""
    lines = (process.workdir / f"{process.name}.log").read_text(encoding="utf-8", errors="replace")
    return [json.loads(line) for line in lines.splitlines() if line.startswith("{")]


def events(process: EngineProcess) -> list[str]:
    return [e.get("event", "") for e in logged(process)]


def routes_yaml(directory: Path, his: His, prefix: str, lock: str) -> Path:
    wechat = {
        "type": "wechat",
        "quiet_hours": None,
        "notices": [
            {
                "record_type": "LabResult",
                "event": "report_ready",
                "template_id": "TPL_REPORT",
                "keys": {"thing1": {"type": "thing", "value": "{record.order.display}"}},
            }
        ],
        "education": str(REPO / "mappings/education.yaml"),
        "education_template_id": "TPL_EDU",
        "education_keys": {
            "thing1": {"type": "thing", "value": "{title}"},
            "phrase2": {"type": "phrase", "value": "{audience}"},
        },
        "education_every": f"{PERIOD}s",
    }
    path = poll_routes(
        directory, his, database=his.url, batch=3, extra=f"  wechat_patient: {json.dumps(wechat)}\n"
    )
    engine = (
        "engine:\n"
        f"  broker: {AMQP_URL!r}\n"
        f"  queue_prefix: {prefix}\n"
        f"  leadership: {{enabled: true, name: {lock}, check_every: 0.2s}}\n"
        f"  retention: {{every: {PERIOD}s}}\n"
    )
    path.write_text(path.read_text(encoding="utf-8").replace("engine:\n", engine, 1), encoding="utf-8")
    return path


def bound_woman_in_week_8(store: Engine) -> None:
    """A registered pregnancy whose eighth week is today, her ID card bound to an openid."""
    ensure_schema(store)
    ledger.ensure_schema(store)
    bindings.ensure_schema(store)
    lmp = datetime.now(SHANGHAI).date() - timedelta(weeks=8, days=2)
    mother = {"id_card": MOTHER_ID_CARD, "his_id": "0010023456", "his_system": "HIS", "name": "陈思雨"}
    at = f"{lmp.isoformat()}T10:00:00+08:00"
    registration = stored_envelope(
        "PregnancyRegistration", "reg:1", mother, at, registration_date=lmp.isoformat(), lmp=lmp.isoformat()
    )
    RecordStore(store).store([registration])
    row = {"openid": OPENID, "id_card": MOTHER_ID_CARD, "role": "patient"}
    assert bindings.import_rows(store, [(2, row)]).imported == 1


def notices(db: Engine) -> list[tuple[str, str]]:
    with db.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT event, status FROM wechat_notices ORDER BY id"))]


def add_rows(his: His, first: int, last: int) -> None:
    for i in range(first, last + 1):
        his.add(i, BASE + timedelta(seconds=i))


def exam_ids(db: Engine) -> list[int]:
    return [int(cid.split("@")[0]) for cid in journaled(db)]


def test_the_standby_polls_and_schedules_nothing_until_it_leads(tmp_path: Path) -> None:
    require_service("127.0.0.1", 5672, "RabbitMQ")
    tag = str(time.monotonic_ns())[-8:]
    prefix, lock = f"standby{tag}", f"standby-{tag}"
    with his_database("postgresql") as his:
        db = make_engine(his.url)
        first = EngineProcess(routes_yaml(tmp_path, his, prefix, lock), "first")
        second = EngineProcess(first.routes, "second")
        try:
            bound_woman_in_week_8(db)
            add_rows(his, 1, 6)
            first.start()
            wait_for(lambda: exam_ids(db) == list(range(1, 7)), 20, "the leader polling", first)
            second.start()
            add_rows(his, 7, 12)
            wait_for(lambda: exam_ids(db) == list(range(1, 13)), 20, "rows 7-12 journaled", first)
            wait_for(lambda: {e for e, _ in notices(db)} == EDUCATION_DUE, 20, "education notices", first)
            standby_since = time.monotonic()
            # Several periods of every scheduler pass with both processes up.
            wait_for(lambda: events(first).count("retention_pruned") >= 3, 20, "retention passes", first)
            time.sleep(max(0.0, 2 * PERIOD - (time.monotonic() - standby_since)))

            seen = events(second)
            assert "engine_standby" in seen and "leadership_acquired" not in seen
            assert not LEADER_ONLY & set(seen), sorted(LEADER_ONLY & set(seen))
            assert set(events(first)) >= LEADER_ONLY
            assert events(first).count("wechat_notice_recorded") == 2  # the leader made both
            assert sorted(notices(db)) == [(e, "outbox") for e in sorted(EDUCATION_DUE)]

            assert first.stop() == 0
            stopped_at = time.monotonic()
            add_rows(his, 13, 18)
            wait_for(lambda: exam_ids(db) == list(range(1, 19)), 20, "rows 13-18 journaled", second)
            REPORT.append(
                f"standby schedulers: rows polled by the new leader {time.monotonic() - stopped_at:.2f}s "
                "after the leader stopped"
            )
            assert cursors.load(db, "his_view").key == 18  # where the next poll starts
            wait_for(
                lambda: {"wechat_education_run", "retention_pruned"} <= set(events(second)),
                20,
                "the new leader's schedulers",
                second,
            )
            seen = events(second)
            assert seen.index("leadership_acquired") < seen.index("db_poll_started")
            # The old leader's last scheduled work ended before the new one took the lock.
            taken = next(e["timestamp"] for e in logged(second) if e["event"] == "leadership_acquired")
            assert all(e["timestamp"] < taken for e in logged(first) if e["event"] in LEADER_ONLY)
            assert len(notices(db)) == 2, "each education item made once, by either server"
            assert second.stop() == 0
        finally:
            first.kill()
            second.kill()
            db.dispose()
            delete_broker_objects(prefix, ["record_store", "wechat_patient"])
