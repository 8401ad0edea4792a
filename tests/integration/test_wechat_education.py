"""The health-education schedule (宣教) on SQLite with a controlled clock: a woman stored by
the record store and bound to an openid gets each due item once, in the outbox without
credentials (or sent through a recording stand-in of the WeChat API), never more than the
monthly limit, never in quiet hours; `mch-engine wechat history --person` lists it masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from channels.record_store.store import RecordStore, ensure_schema
from channels.wechat import bindings, ledger
from channels.wechat.catalogue import load_catalogue
from channels.wechat.destination import WechatSink
from channels.wechat.education_schedule import EducationSchedule
from channels.wechat.settings import WechatDestination
from core.database import make_engine
from support import REPO, WECHAT_PATIENT_DESTINATION, stored_envelope, write_routes

SHANGHAI = ZoneInfo("Asia/Shanghai")
CATALOGUE = load_catalogue(REPO / "mappings/education.yaml")
MOTHER_ID_CARD = "500112199403151525"
MOTHER = {"id_card": MOTHER_ID_CARD, "his_id": "0010023456", "his_system": "HIS", "name": "陈思雨"}
OPENID = "oMOTHER000000000001"
LMP = date(2025, 1, 6)  # a Monday: week n starts on LMP + 7n
DELIVERED = date(2025, 10, 8)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 10, tzinfo=SHANGHAI)

    def at(self, day: date, hour: int = 10, minute: int = 0) -> None:
        self.now = datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)

    def __call__(self) -> datetime:
        return self.now


class RecordingSender:
    """Stands in for the WeChat API: records each template message."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    def send_template(
        self, openid: str, template_id: str, data: dict[str, str], url: str | None, client_msg_id: str
    ) -> str:
        self.received.append({"openid": openid, "template_id": template_id, "data": data, "url": url})
        return f"msg-{len(self.received)}"


def registration() -> dict[str, Any]:
    return stored_envelope(
        "PregnancyRegistration",
        "reg:1",
        MOTHER,
        "2025-02-24T10:00:00+08:00",
        registration_date="2025-02-24",
        lmp=LMP.isoformat(),
    )


def birth() -> list[dict[str, Any]]:
    at = f"{DELIVERED.isoformat()}T14:32:00+08:00"
    baby = {"his_id": "0010031207", "his_system": "HIS", "name": "陈思雨之女"}
    return [
        stored_envelope("DeliveryRecord", "del:1", MOTHER, at, delivery_time=at),
        stored_envelope(
            "NewbornRecord", "nb:1", baby, at, mother=MOTHER, birth_time=at, outcome="live_birth"
        ),
    ]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    found = make_engine(f"sqlite:///{tmp_path / 'engine.db'}")
    ensure_schema(found)
    ledger.ensure_schema(found)
    bindings.ensure_schema(found)
    RecordStore(found).store([registration()])
    rows = [(2, {"openid": OPENID, "id_card": MOTHER_ID_CARD, "role": "patient"})]
    assert bindings.import_rows(found, rows).imported == 1
    yield found
    found.dispose()


def schedule(engine: Engine, clock: Clock, sender: Any = None, **settings: Any) -> EducationSchedule:
    destination = WechatDestination.model_validate(
        {
            **WECHAT_PATIENT_DESTINATION,
            "education": "mappings/education.yaml",
            "education_template_id": "TPL_EDU",
            "education_keys": {
                "thing1": {"type": "thing", "value": "{title}"},
                "phrase2": {"type": "phrase", "value": "{audience}"},
            },
            **settings,
        }
    )
    sink = WechatSink("wechat_patient", destination, engine, SHANGHAI, sender=sender, clock=clock)
    return EducationSchedule(sink, CATALOGUE, engine)


def notices(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = select(ledger.notices).order_by(ledger.notices.c.id)
        return [dict(r) for r in conn.execute(query).mappings()]


def week(n: int) -> date:
    return LMP + timedelta(weeks=n, days=2)


def test_due_items_land_once_in_the_outbox_over_several_runs(engine: Engine) -> None:
    clock = Clock()
    runs = schedule(engine, clock)
    clock.at(week(8))
    assert runs.run_once() == 2
    assert runs.run_once() == 0  # the same hour again
    clock.at(week(8) + timedelta(days=1), 15)
    assert runs.run_once() == 0  # the next day: the same items, already made
    rows = notices(engine)
    assert [r["event"] for r in rows] == ["education:preg_t1_folic_acid", "education:preg_t1_first_visit"]
    first = rows[0]
    assert first["status"] == "outbox"
    assert first["recipient"] == OPENID
    assert first["template_id"] == "TPL_EDU"
    assert first["data"] == {"thing1": "孕早期营养与叶酸补充", "phrase2": "孕期"}
    assert first["url"] == "https://wx.example-hospital.cn/edu/preg-t1-folic-acid"
    assert first["person"] == f"id_card:{MOTHER_ID_CARD}"


def test_a_sending_destination_sends_each_item_once(engine: Engine) -> None:
    clock, sender = Clock(), RecordingSender()
    runs = schedule(engine, clock, sender)
    for day in (week(14), week(14) + timedelta(days=3)):
        clock.at(day)
        runs.run_once()
    assert [(m["openid"], m["data"]["thing1"]) for m in sender.received] == [(OPENID, "孕中期产前筛查与诊断")]
    assert [r["status"] for r in notices(engine)] == ["sent"]


def test_the_monthly_limit_holds_and_what_it_held_back_comes_later_in_its_window(engine: Engine) -> None:
    clock = Clock()
    runs = schedule(engine, clock, education_per_month=1)
    clock.at(date(2025, 3, 5))  # week 8: folic acid and first visit are due
    assert runs.run_once() == 1
    clock.at(date(2025, 3, 25))  # week 11: NT screening too, but March is used up
    assert runs.run_once() == 0
    clock.at(date(2025, 4, 1))  # week 12, a new month: the oldest held back first
    assert runs.run_once() == 1
    assert [r["event"] for r in notices(engine)] == [
        "education:preg_t1_folic_acid",
        "education:preg_t1_first_visit",
    ]


def test_nothing_is_made_in_quiet_hours(engine: Engine) -> None:
    clock = Clock()
    runs = schedule(engine, clock)
    for hour, minute in ((21, 0), (23, 30), (3, 0), (7, 59)):
        clock.at(week(8), hour, minute)
        assert runs.run_once() == 0
    assert notices(engine) == []
    clock.at(week(8), 8, 0)
    assert runs.run_once() == 2


def test_a_pregnancy_then_a_childs_first_year_each_item_once_at_most_four_a_month(engine: Engine) -> None:
    clock = Clock()
    runs = schedule(engine, clock)
    day, born = date(2025, 2, 24), False
    while day <= date(2026, 10, 31):
        if day > DELIVERED and not born:
            RecordStore(engine).store(birth())
            born = True
        clock.at(day)
        runs.run_once()
        day += timedelta(days=3)
    rows = notices(engine)
    made = [(r["event"], r["record_id"]) for r in rows]
    assert len(made) == len(set(made))
    events = {r["event"].removeprefix("education:") for r in rows}
    assert {"preg_t1_folic_acid", "preg_t3_birth_preparation", "pp_breastfeeding", "pp_day42_check"} <= events
    assert {"child_m1_newborn_care", "child_m3_vitamin_d", "child_m6_complementary_food"} <= events
    assert "child_m12_development" in events
    months: dict[str, int] = {}
    for r in rows:
        month = r["created_at"].astimezone(SHANGHAI).strftime("%Y-%m")
        months[month] = months.get(month, 0) + 1
    assert max(months.values()) <= 4
    assert all(r["recipient"] == OPENID for r in rows)


def test_wechat_history_lists_what_was_sent_to_her_masked(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    runs = schedule(engine, clock)
    clock.at(week(8))
    runs.run_once()
    routes = write_routes(tmp_path, database=f"sqlite:///{tmp_path / 'engine.db'}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env.update({"PYTHONPATH": str(REPO), "MCH_LANG": "en"})

    def history(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "engine.cli", "wechat", "history", *args, "--config", str(routes)]
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90)

    listed = history("--person", MOTHER_ID_CARD, "--json")
    assert listed.returncode == 0, listed.stderr
    items = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [i["event"] for i in items] == ["education:preg_t1_folic_acid", "education:preg_t1_first_visit"]
    assert [i["status"] for i in items] == ["outbox", "outbox"]
    assert items[0]["data"]["thing1"] == "孕早期营养与叶酸补充"
    assert items[0]["url"].startswith("https://wx.example-hospital.cn/edu/")
    table = history("--person", MOTHER_ID_CARD)
    assert table.returncode == 0, table.stderr
    assert "education:preg_t1_first_visit" in table.stdout
    for shown in (listed.stdout, table.stdout):
        assert MOTHER_ID_CARD not in shown and OPENID not in shown
        assert "陈思雨" not in shown
    assert "oMOT****0001" in table.stdout
    assert history("--person", "110101199003077777").stdout.startswith("no notices for")
