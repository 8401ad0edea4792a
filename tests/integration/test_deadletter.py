"""Dead letters on SQLite and PostgreSQL: one row per failure, filters, show, replay,
reprocess, purge and the audit log; the `deadletter` commands as the on-call runs them."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Engine, MetaData, Table, select, text

from core.database import make_engine
from core.journal import Accepted
from core.settings import load_settings
from deadletter import actions, audit, store
from engine import journal
from engine.pipeline import Outcome, TransformWorker
from engine.runtime import EngineRuntime
from support import REPO, pg_schema, write_routes

SAMPLE_ADT = (REPO / "samples/adt_a04_registration.hl7").read_bytes()
SAMPLE_ORU_GBK = (REPO / "samples/oru_r01_blood_routine_gb18030.hl7").read_bytes()
T0 = datetime(2025, 3, 10, 1, 15, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path}/engine.db")
        _schemas(engine)
        yield engine
        engine.dispose()
        return
    with pg_schema() as url:
        engine = make_engine(url)
        _schemas(engine)
        yield engine
        engine.dispose()


def _schemas(engine: Engine) -> None:
    journal.ensure_schema(engine)
    store.ensure_schema(engine)
    audit.ensure_schema(engine)


def journaled(
    engine: Engine,
    raw: bytes = SAMPLE_ADT,
    *,
    channel: str = "hospital",
    encoding: str = "utf-8",
    status: str = journal.ROUTED,
) -> int:
    """A message in the journal, as the ingest stage leaves it."""
    now = journal.now_utc()
    with engine.begin() as conn:
        return int(
            conn.execute(
                journal.messages.insert()
                .values(
                    channel=channel,
                    control_id=f"C-{uuid.uuid4().hex[:8]}",
                    message_type="ADT^A04",
                    received_at=now,
                    status=status,
                    encoding=encoding,
                    raw=raw,
                    ack="",
                    ack_code="AA",
                    updated_at=now,
                )
                .returning(journal.messages.c.id)
            ).scalar_one()
        )


def envelope(jid: int, record_id: str = "person:HIS:0010088001") -> dict[str, Any]:
    return {
        "journal_id": jid,
        "channel": "hospital",
        "route": "persons",
        "record_type": "Person",
        "record_id": record_id,
        "record": {"record_id": record_id, "name": "林晓雯"},
    }


def deliver_failure(engine: Engine, jid: int, **overrides: Any) -> int:
    values: dict[str, Any] = {
        "stage": store.DELIVER,
        "channel": "hospital",
        "route": "persons",
        "destination": "record_store",
        "record_id": "person:HIS:0010088001",
        "journal_id": jid,
        "reason": "record store refused: value too long for PID-5",
        "attempts": 8,
        "first_failed_at": T0,
        "payload": envelope(jid),
        "failed_at": T0 + timedelta(hours=1),
    }
    values.update(overrides)
    return store.add_dead_letter(engine, **values)


def transform_failure(engine: Engine, jid: int, **overrides: Any) -> int:
    values: dict[str, Any] = {
        "stage": store.TRANSFORM,
        "channel": "hospital",
        "route": None,
        "destination": None,
        "record_id": None,
        "journal_id": jid,
        "reason": "transform: mappings/his/adt_person.yaml:13: PID-3 = None: required value is empty",
        "attempts": 1,
        "first_failed_at": T0,
        "payload": None,
        "failed_at": T0,
    }
    values.update(overrides)
    return store.add_dead_letter(engine, **values)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(table)).all())


class Published(list[tuple[str, dict[str, Any]]]):
    """The publish seam: remembers what would have gone to the bus."""

    def __call__(self, destination: str, env: dict[str, Any]) -> None:
        self.append((destination, env))


class TestStore:
    def test_same_failure_twice_stays_one_row(self, db: Engine) -> None:
        """A failure dead-lettered again adds its attempts, takes the newest reason and time, keeps the first time."""
        jid = journaled(db)
        first = deliver_failure(db, jid)
        later = T0 + timedelta(days=1)
        again = deliver_failure(db, jid, reason="still refused", attempts=3, failed_at=later)
        assert again == first
        assert count(db, store.dead_letters) == 1
        row = store.get_dead_letter(db, first)
        assert row is not None
        assert (row["attempts"], row["reason"]) == (11, "still refused")
        assert (row["first_failed_at"], row["last_failed_at"]) == (T0, later)

    def test_recurring_failure_reopens_a_resolved_one(self, db: Engine) -> None:
        """A replayed dead letter that fails again is open again, with no resolution left on it."""
        jid = journaled(db)
        dl = deliver_failure(db, jid)
        assert store.resolve(db, [dl], store.REPLAYED, "zhang", None) == [dl]
        deliver_failure(db, jid, reason="refused again", attempts=1)
        row = store.get_dead_letter(db, dl)
        assert row is not None
        assert (row["status"], row["resolved_by"], row["resolved_at"]) == (store.OPEN, None, None)

    def test_transform_failure_again_keeps_its_null_payload(self, db: Engine) -> None:
        """Transform failures have no destination or payload, and still count as one failure."""
        jid = journaled(db)
        a = transform_failure(db, jid)
        b = transform_failure(db, jid)
        assert a == b
        row = store.get_dead_letter(db, a)
        assert row is not None
        assert (row["payload"], row["destination"], row["attempts"]) == (None, "", 2)

    def test_each_stage_and_destination_is_its_own_row(self, db: Engine) -> None:
        """One message can fail at transform once and at two destinations: three dead letters."""
        jid = journaled(db)
        ids = {
            transform_failure(db, jid),
            deliver_failure(db, jid),
            deliver_failure(db, jid, destination="wechat_patient"),
        }
        assert len(ids) == 3

    def test_list_filters(self, db: Engine) -> None:
        """Channel, destination, reason (any part, any case), since, stage and status each narrow the list."""
        j1, j2, j3 = journaled(db), journaled(db, channel="lis_gbk"), journaled(db)
        a = deliver_failure(db, j1, reason="WeChat errcode 43004: 100% unsubscribed", destination="wechat")
        b = transform_failure(db, j2, channel="lis_gbk", failed_at=T0 + timedelta(days=2))
        c = deliver_failure(db, j3, failed_at=T0 + timedelta(days=3))

        def ids(**kw: Any) -> list[int]:
            return [r["id"] for r in store.list_dead_letters(db, **kw)]

        assert ids() == [c, b, a]  # newest failure first
        assert ids(channel="lis_gbk") == [b]
        assert ids(destination="wechat") == [a]
        assert ids(reason="ERRCODE 43004") == [a]
        assert ids(reason="100%") == [a]  # a literal %, not a wildcard
        assert ids(reason="43%") == []  # would match if % were a wildcard
        assert ids(since=T0 + timedelta(days=2)) == [c, b]
        assert ids(stage=store.TRANSFORM) == [b]
        assert ids(limit=1) == [c]
        store.resolve(db, [c], store.PURGED, "zhang", "test data")
        assert ids() == [b, a]
        assert ids(status=store.PURGED) == [c]
        assert ids(status=None) == [c, b, a]
        assert "payload" not in store.list_dead_letters(db)[0]

    def test_show_has_the_raw_message_decoded_and_every_attempt(self, db: Engine) -> None:
        """`show` decodes the journaled GB18030 bytes with their encoding and lists attempts oldest first."""
        jid = journaled(db, SAMPLE_ORU_GBK, channel="lis_gbk", encoding="gb18030")
        for n, outcome in enumerate(["retry", "retry", "dead_letter"], start=1):
            store.record_attempt(
                db,
                journal_id=jid,
                destination="record_store",
                record_id="lab:1",
                attempt=n,
                error=f"timeout {n}",
                outcome=outcome,
                at=T0 + timedelta(minutes=n),
            )
        store.record_attempt(
            db, journal_id=jid, destination="wechat", record_id="lab:1", attempt=1, error=None, outcome="x"
        )
        dl = deliver_failure(db, jid, record_id="lab:1", channel="lis_gbk", attempts=3)
        row = store.get_dead_letter(db, dl)
        assert row is not None
        assert row["message"]["text"] == SAMPLE_ORU_GBK.decode("gb18030")
        assert "MSH|" in row["message"]["text"] and row["message"]["encoding"] == "gb18030"
        assert [(a["attempt"], a["outcome"]) for a in row["attempt_log"]] == [
            (1, "retry"),
            (2, "retry"),
            (3, "dead_letter"),
        ]
        assert row["payload"] == envelope(jid)
        assert store.get_dead_letter(db, dl + 1000) is None

    def test_undecodable_bytes_still_show(self, db: Engine) -> None:
        """Bytes that do not match their stored encoding show with replacement characters, not an error."""
        jid = journaled(db, "MSH|^~\\&|LIS|姓名\r".encode("gb18030"), encoding="utf-8")
        row = store.get_dead_letter(db, transform_failure(db, jid))
        assert row is not None
        assert row["message"]["text"].startswith("MSH|^~\\&|LIS|") and "\ufffd" in row["message"]["text"]


class TestRecovery:
    def test_a_failed_message_no_dead_letter_explains_is_dead_lettered_at_start(self, db: Engine) -> None:
        """A `failed` message left without its dead letter (a kill -9 before one-transaction saving) shows up again, once."""
        lost = journaled(db, status=journal.FAILED)
        journal.set_statuses(
            db, [(lost, journal.FAILED, "transform: adt_person.yaml:24: PID-7 = '19941399'")]
        )
        explained = journaled(db, status=journal.FAILED)
        transform_failure(db, explained)
        assert store.recover_transform_failures(db) == 1
        rows = store.list_dead_letters(db)
        assert sorted((r["journal_id"], r["stage"], r["attempts"]) for r in rows) == [
            (lost, "transform", 1),
            (explained, "transform", 1),
        ]
        assert next(r["reason"] for r in rows if r["journal_id"] == lost).startswith("transform: adt_person")
        assert store.recover_transform_failures(db) == 0


class TestReplay:
    def test_replay_publishes_once_and_a_second_replay_does_nothing(self, db: Engine) -> None:
        """The stored payload goes to its destination; replaying again is skipped, and both runs are audited."""
        jid = journaled(db)
        dl = deliver_failure(db, jid)
        sent = Published()
        first = actions.replay(db, [dl], sent, "zhang")
        assert sent == [("record_store", envelope(jid))]
        assert [(i.id, i.code) for i in first.done] == [(dl, "replayed")]
        second = actions.replay(db, [dl, dl], sent, "li")
        assert len(sent) == 1
        assert [(i.id, i.code, i.detail) for i in second.skipped] == [(dl, "already", "replayed")]
        assert "nothing to do" in second.skipped[0].text
        row = store.get_dead_letter(db, dl)
        assert row is not None
        assert (row["status"], row["resolved_by"]) == (store.REPLAYED, "zhang")
        assert row["attempt_log"][-1]["outcome"] == actions.ATTEMPT_REPLAYED
        log = audit.list_audit(db, 10)
        assert [(e["actor"], e["action"], e["count"], e["target"]) for e in log] == [
            ("li", "replay", 0, str(dl)),
            ("zhang", "replay", 1, str(dl)),
        ]
        assert log[1]["detail"]["done"] == [dl]

    def test_transform_stage_dead_letter_says_use_reprocess(self, db: Engine) -> None:
        """No payload was ever made, so replay sends nothing and points at reprocess."""
        dl = transform_failure(db, journaled(db, status=journal.FAILED))
        sent = Published()
        result = actions.replay(db, [dl], sent, "zhang")
        assert sent == []
        assert [i.code for i in result.skipped] == ["use_reprocess"]
        assert "reprocess" in result.skipped[0].text
        assert store.list_dead_letters(db)[0]["id"] == dl

    def test_publish_failure_keeps_it_open(self, db: Engine) -> None:
        """While the broker is away the dead letter stays open, and the failed try is kept."""
        dl = deliver_failure(db, journaled(db))

        def broker_down(destination: str, env: dict[str, Any]) -> None:
            raise ConnectionRefusedError("[Errno 111] Connection refused")

        result = actions.replay(db, [dl, 999999], broker_down, "zhang")
        assert [(i.id, i.code) for i in result.failed] == [(dl, "publish_failed"), (999999, "not_found")]
        row = store.get_dead_letter(db, dl)
        assert row is not None and row["status"] == store.OPEN
        assert row["attempt_log"][-1]["error"] == "[Errno 111] Connection refused"


class TestReprocess:
    def test_fixed_mapping_publishes_and_resolves(self, db: Engine) -> None:
        """A transform that now succeeds publishes its envelopes, marks the journal routed and the dead letter reprocessed."""
        jid = journaled(db, status=journal.FAILED)
        dl = transform_failure(db, jid)
        seen: list[Accepted] = []

        def fixed(item: Accepted) -> tuple[Outcome, list[tuple[str, dict[str, Any]]]]:
            seen.append(item)
            env = envelope(item.journal_id)
            return Outcome(item.journal_id, journal.ROUTED, None, [("record_store", env["record_id"])]), [
                ("record_store", env),
                ("wechat_staff", env),
            ]

        sent = Published()
        result = actions.reprocess(db, [dl], fixed, sent, "zhang")
        assert seen == [Accepted(jid, "hospital", SAMPLE_ADT, "utf-8")]
        assert [d for d, _ in sent] == ["record_store", "wechat_staff"]
        assert [(i.code, i.detail) for i in result.done] == [("reprocessed", "record_store, wechat_staff")]
        assert journal.count_by_status(db) == {journal.ROUTED: 1}
        with db.connect() as conn:
            pending = conn.execute(select(journal.deliveries.c.destination)).scalars().all()
        assert sorted(pending) == ["record_store", "wechat_staff"]
        again = actions.reprocess(db, [dl], fixed, sent, "zhang")
        assert len(sent) == 2 and [i.code for i in again.skipped] == ["already"]

    def test_with_the_engines_own_transform(self, db: Engine, tmp_path: Path) -> None:
        """The real transform stage with the shipped mapping turns the journaled sample into its Person record."""
        settings = load_settings(write_routes(tmp_path, database="sqlite://"))
        worker = TransformWorker(EngineRuntime(settings).router(), db, EngineRuntime(settings).bus)
        jid = journaled(db, status=journal.FAILED)
        dl = transform_failure(db, jid)
        sent = Published()
        result = actions.reprocess(db, [dl], worker.transform, sent, "zhang")
        assert [i.code for i in result.done] == ["reprocessed"], result
        assert [(d, e["record_id"]) for d, e in sent] == [("record_store", "person:HIS:0010088001")]

    def test_still_failing_mapping_stays_open_with_the_new_reason(self, db: Engine) -> None:
        """Nothing is published; the dead letter keeps open with one more attempt and today's reason."""
        jid = journaled(db, status=journal.FAILED)
        dl = transform_failure(db, jid)

        def still_broken(item: Accepted) -> tuple[Outcome, list[tuple[str, dict[str, Any]]]]:
            return Outcome(item.journal_id, journal.FAILED, "transform: PID-7 = '1995': not a date", []), []

        sent = Published()
        result = actions.reprocess(db, [dl], still_broken, sent, "zhang")
        assert sent == []
        assert [(i.code, i.detail) for i in result.failed] == [
            ("still_fails", "transform: PID-7 = '1995': not a date")
        ]
        row = store.get_dead_letter(db, dl)
        assert row is not None
        assert (row["status"], row["attempts"], row["reason"]) == (
            store.OPEN,
            2,
            "transform: PID-7 = '1995': not a date",
        )
        assert row["message"]["error"] == "transform: PID-7 = '1995': not a date"
        assert audit.list_audit(db, 1)[0]["count"] == 0

    def test_deliver_stage_republishes_only_to_its_destination(self, db: Engine) -> None:
        """The other destinations already have the record: reprocess sends to the failed one only."""
        jid = journaled(db)
        dl = deliver_failure(db, jid, destination="wechat_staff")

        def transform(item: Accepted) -> tuple[Outcome, list[tuple[str, dict[str, Any]]]]:
            env = envelope(item.journal_id)
            return Outcome(item.journal_id, journal.ROUTED, None, []), [
                ("record_store", env),
                ("wechat_staff", env),
            ]

        sent = Published()
        actions.reprocess(db, [dl], transform, sent, "zhang")
        assert [d for d, _ in sent] == ["wechat_staff"]

    def test_message_no_route_takes_any_more(self, db: Engine) -> None:
        """Routes changed so nothing takes the message: reprocessed, nothing published, journal says unrouted."""
        jid = journaled(db, status=journal.FAILED)
        dl = transform_failure(db, jid)
        result = actions.reprocess(
            db,
            [dl],
            lambda item: (Outcome(item.journal_id, journal.UNROUTED, None, []), []),
            Published(),
            "z",
        )
        assert [i.code for i in result.done] == ["reprocessed_unrouted"]
        assert journal.count_by_status(db) == {journal.UNROUTED: 1}


class TestPurge:
    def test_purge_needs_a_reason(self, db: Engine) -> None:
        """No reason, no purge: nothing changes and nothing is audited."""
        dl = deliver_failure(db, journaled(db))
        for reason in ("", "   "):
            with pytest.raises(ValueError, match="reason"):
                actions.purge(db, [dl], reason, "zhang")
        assert store.list_dead_letters(db)[0]["status"] == store.OPEN
        assert audit.list_audit(db, 10) == []

    def test_purged_ones_leave_the_list_and_stay_in_the_audit_log(self, db: Engine) -> None:
        """Purged rows are kept with who and why; the audit entry names the ids and the reason."""
        jid = journaled(db)
        a, b = deliver_failure(db, jid), transform_failure(db, jid)
        result = actions.purge(db, [a, b], "test messages from the LIS vendor", "zhang")
        assert sorted(i.id for i in result.done) == [a, b]
        assert store.list_dead_letters(db) == []
        row = store.get_dead_letter(db, a)
        assert row is not None
        assert (row["status"], row["resolved_by"], row["resolution_note"]) == (
            store.PURGED,
            "zhang",
            "test messages from the LIS vendor",
        )
        entry = audit.list_audit(db, 1)[0]
        assert (entry["action"], entry["count"], entry["actor"]) == ("purge", 2, "zhang")
        assert entry["detail"]["reason"] == "test messages from the LIS vendor"
        assert entry["detail"]["done"] == sorted([a, b])
        again = actions.purge(db, [a], "again", "li")
        assert [i.code for i in again.skipped] == ["already"]


class TestAuditEntries:
    OLD = ("id", "at", "actor", "action", "target", "count", "detail")  # the first release's columns

    def test_bulk_action_stopped_part_way_keeps_its_entry_and_outcome(self, db: Engine) -> None:
        """Ctrl+C at the second of three replays: the entry, written before the first, says 1 done and aborted."""
        jid = journaled(db)
        ids = [deliver_failure(db, jid, record_id=f"person:HIS:00100880{n}") for n in range(3)]
        seen_before_acting: list[dict[str, Any]] = []

        def publish(destination: str, env: dict[str, Any]) -> None:
            if not seen_before_acting:
                seen_before_acting.extend(audit.list_audit(db, 10))
                return
            raise KeyboardInterrupt  # the operator stops a long bulk replay

        with pytest.raises(KeyboardInterrupt):
            actions.replay(db, ids, publish, "王芳", target="all-matching destination=record_store")

        assert [(e["action"], e["outcome"], e["detail"]["ids"]) for e in seen_before_acting] == [
            ("replay", audit.STARTED, ids)
        ]
        assert [r["status"] for r in store.list_dead_letters(db, status=None)] == ["open", "open", "replayed"]
        [entry] = audit.list_audit(db, 10)
        assert (entry["outcome"], entry["count"], entry["actor"], entry["os_user"]) == (
            audit.ABORTED,
            1,
            "王芳",
            getpass.getuser(),
        )
        assert entry["target"] == "all-matching destination=record_store"
        assert (entry["detail"]["ids"], entry["detail"]["done"]) == (ids, [ids[0]])
        assert entry["detail"]["error"] == "KeyboardInterrupt"
        assert entry["finished_at"] is not None

    def test_some_failed_is_the_outcome_of_a_partly_failed_action(self, db: Engine) -> None:
        """One replay refused by the broker, one sent: the entry ends `failed`, naming the one that failed."""
        jid = journaled(db)
        good, bad = (deliver_failure(db, jid, record_id=f"person:HIS:R{n}") for n in range(2))

        calls: list[str] = []

        def publish(destination: str, env: dict[str, Any]) -> None:
            calls.append(destination)
            if len(calls) == 2:
                raise ConnectionError("broker closed the channel")

        actions.replay(db, [good, bad], publish, "zhang")
        [entry] = audit.list_audit(db, 10)
        assert (entry["outcome"], entry["count"], entry["detail"]["failed"]) == (audit.FAILED, 1, [bad])

    def test_an_older_audit_table_gets_the_new_columns(self, db: Engine) -> None:
        """A table from before (no os_user, outcome) is extended at start; its rows stay, new ones have both names."""
        old_table = Table(
            "audit_log",
            MetaData(),
            *(
                Column(c.name, c.type, primary_key=c.primary_key)
                for c in audit.audit_log.columns
                if c.name in self.OLD
            ),
        )
        with db.begin() as conn:
            conn.execute(text("DROP TABLE audit_log"))
            old_table.create(conn)
            conn.execute(
                old_table.insert().values(at=T0, actor="li", action="purge", target="7", count=1, detail={})
            )
        audit.ensure_schema(db)
        audit.ensure_schema(db)  # every start: nothing more to add
        actions.purge(db, [deliver_failure(db, journaled(db))], "vendor test data", "zhang")
        new, old = audit.list_audit(db, 10)
        assert (old["actor"], old["os_user"], old["outcome"]) == ("li", None, None)
        assert (new["actor"], new["os_user"], new["outcome"]) == ("zhang", getpass.getuser(), audit.DONE)


# --------------------------------------------------------------------------- the commands


CLI = [sys.executable, "-m", "engine.cli"]


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    return write_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")


def mch(
    *args: str, cwd: Path, lang: str = "en", expect: int = 0, **env_extra: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env.update(PYTHONPATH=str(REPO), MCH_LANG=lang, **env_extra)
    result = subprocess.run(
        [*CLI, "deadletter", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == expect, result.stdout + result.stderr
    return result


def cli_db(routes: Path) -> Engine:
    engine = make_engine(load_settings(routes).engine.database)
    _schemas(engine)
    return engine


class TestCommands:
    def test_parser_choices_match_the_store(self) -> None:
        """The CLI keeps its own copy of the statuses and stages (to stay light to import): they agree."""
        from engine import deadletter_cli as cli

        assert (cli.STATUSES, cli.STAGES) == (store.STATUSES, store.STAGES)

    def test_list_and_show(self, routes: Path, tmp_path: Path) -> None:
        """`list` prints one line per dead letter (and JSON with --json); `show` prints reason, raw message, payload and attempts."""
        db = cli_db(routes)
        jid = journaled(db)
        dl = deliver_failure(db, jid, reason="record store refused: " + "x" * 200)
        store.record_attempt(
            db, journal_id=jid, destination="record_store", record_id=envelope(jid)["record_id"],
            attempt=1, error="deadlock detected", outcome="retry",
        )  # fmt: skip
        tf = transform_failure(db, journaled(db, status=journal.FAILED), channel="lis_gbk")
        db.dispose()
        config = ("--config", str(routes))

        out = mch("list", *config, cwd=tmp_path).stdout.splitlines()
        assert len(out) == 4 and "reason" in out[0] and "2 dead letters" in out[-1]
        line = next(x for x in out if x.split()[0] == str(dl))
        assert "deliver" in line and "record_store" in line and "2025-03-10 10:15:00" in line  # Asia/Shanghai
        assert line.endswith("…") and len(line) < 200
        rows = [
            json.loads(x)
            for x in mch("list", *config, "--json", "--channel", "lis_gbk", cwd=tmp_path).stdout.splitlines()
        ]
        assert [(r["id"], r["stage"]) for r in rows] == [(tf, "transform")]
        assert (
            mch("list", *config, "--reason", "no such text", cwd=tmp_path).stdout.strip() == "nothing matches"
        )
        zh = mch("list", *config, "--stage", "transform", cwd=tmp_path, lang="zh").stdout
        assert "原因" in zh and "共 1 条死信" in zh

        shown = mch("show", str(dl), *config, cwd=tmp_path).stdout
        assert "x" * 200 in shown  # the whole reason
        assert "  PID|1||0010088001" in shown  # one segment per line
        assert '"name": "林晓雯"' in shown  # the payload, readable
        assert "#1" in shown and "deadlock detected" in shown
        assert "use reprocess" in mch("show", str(tf), *config, cwd=tmp_path).stdout
        assert json.loads(mch("show", str(dl), *config, "--json", cwd=tmp_path).stdout)[
            "payload"
        ] == envelope(jid)
        assert "no dead letter with id 999" in mch("show", "999", *config, cwd=tmp_path, expect=1).stderr
        # Reading a dead letter shows patient data, so every show is in the audit log.
        shows = [a for a in audit.list_audit(db, 50) if a["action"] == "show"]
        assert len(shows) == 3 and {a["target"] for a in shows} == {str(dl), str(tf)}

    def test_purge_in_bulk_needs_yes_and_a_reason_and_is_audited(self, routes: Path, tmp_path: Path) -> None:
        """Without --yes a bulk purge only says what it would do; with it, the rows close and the audit log shows who."""
        db = cli_db(routes)
        keep = deliver_failure(db, journaled(db))
        junk = [
            transform_failure(db, journaled(db, status=journal.FAILED), channel="lis_gbk") for _ in range(2)
        ]
        config = ("--config", str(routes))

        mch("purge", "--all-matching", "--channel", "lis_gbk", *config, cwd=tmp_path, expect=2)  # no --why
        dry = mch(
            "purge",
            "--all-matching",
            "--channel",
            "lis_gbk",
            "--why",
            "vendor test data",
            *config,
            cwd=tmp_path,
            expect=1,
        )
        assert "would purge these 2 dead letters" in dry.stdout and "--yes" in dry.stdout
        assert len(store.list_dead_letters(db)) == 3 and audit.list_audit(db, 10) == []

        done = mch(
            "purge", "--all-matching", "--channel", "lis_gbk", "--why", "vendor test data",
            "--yes", "--as", "王芳", *config, cwd=tmp_path,
        ).stdout  # fmt: skip
        assert all(f"#{i}" in done for i in junk)
        assert "purge: 2 done, 0 skipped, 0 failed" in done
        assert [r["id"] for r in store.list_dead_letters(db)] == [keep]
        again = mch("purge", str(junk[0]), "--why", "again", *config, cwd=tmp_path).stdout
        assert "nothing to do" in again and "0 done, 1 skipped" in again

        entry = audit.list_audit(db, 10)[1]
        assert (entry["actor"], entry["action"], entry["count"]) == ("王芳", "purge", 2)
        assert entry["target"].startswith("all-matching channel=lis_gbk")
        log = mch("audit", *config, cwd=tmp_path).stdout
        assert "王芳" in log and "vendor test data" in log
        db.dispose()

    def test_as_names_both_the_claimed_name_and_the_os_user(self, routes: Path, tmp_path: Path) -> None:
        """`--as 王芳` run from the shared account: the summary, `audit` and `audit --json` show both names."""
        db = cli_db(routes)
        dl = transform_failure(db, journaled(db, status=journal.FAILED))
        me = getpass.getuser()
        config = ("--config", str(routes))
        done = mch(
            "purge", str(dl), "--why", "vendor test data", "--as", "王芳", *config, cwd=tmp_path
        ).stdout
        assert f"by 王芳 ({me})" in done
        mch("purge", str(dl), "--why", "again", *config, cwd=tmp_path)  # no --as: the OS user alone
        again, first = (
            json.loads(x) for x in mch("audit", *config, "--json", cwd=tmp_path).stdout.splitlines()
        )
        assert (first["actor"], first["os_user"], first["outcome"]) == ("王芳", me, "done")
        assert (again["actor"], again["os_user"]) == (me, me)
        lines = mch("audit", *config, cwd=tmp_path).stdout.splitlines()
        assert lines[0].split() == ["id", "at", "by", "action", "count", "target"]
        assert f"王芳 (OS user {me})" in lines[2] and "OS user" not in lines[1]
        zh = mch("audit", *config, cwd=tmp_path, lang="zh").stdout
        assert f"王芳（系统用户 {me}）" in zh
        db.dispose()

    def test_usage_problems_exit_2(self, routes: Path, tmp_path: Path) -> None:
        """Ids with --all-matching, filters without it, or an unreadable --since: one clear line, exit 2."""
        cli_db(routes).dispose()  # a database that exists: a missing one is its own error
        config = ("--config", str(routes))
        assert (
            "not both"
            in mch("purge", "1", "--all-matching", "--why", "x", *config, cwd=tmp_path, expect=2).stderr
        )
        assert (
            "--all-matching"
            in mch("purge", "1", "--channel", "c", "--why", "x", *config, cwd=tmp_path, expect=2).stderr
        )
        assert "--since" in mch("list", "--since", "2024", *config, cwd=tmp_path, expect=2).stderr
