"""What upstream systems rely on: duplicates recognised, every ACK right under load, bad input answered."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from channels.intake import examine as ingest
from channels.mllp.client import MllpConnection
from channels.mllp.framing import Frame, MllpDecoder, frame
from core.database import make_engine
from core.journal import Entry, Refused, Written
from engine import cli, journal
from engine.journal import fast_paths
from engine.journal.writer import JournalWriter
from support import REPORT, RunningEngine, free_port, hl7, msa, pg_schema, scalar, wait_until, write_routes

MAX_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    tmp = tmp_path_factory.mktemp("ingest")
    channels = {
        "hospital": {"encoding": "utf-8", "max_message_bytes": MAX_BYTES, "idle_timeout": "5s"},
        "lis_gbk": {"encoding": "gb18030"},
    }
    routes = write_routes(tmp, database=f"sqlite:///{tmp}/engine.db", channels=channels)
    with RunningEngine(routes) as running:
        yield running


def adt(control_id: str, sender: str = "HIS", name: str = "李四") -> bytes:
    return hl7(
        f"MSH|^~\\&|{sender}|FY01|MCHENGINE|FY01|20240321083215||ADT^A04^ADT_A01|{control_id}|P|2.5",
        "EVN|A04|20240321083200",
        f"PID|1||{control_id}^^^HIS^PI||{name}||19940315|F",
    )


def all_rows(eng: Any, sql: str) -> list[Any]:
    with eng.connect() as conn:
        return list(conn.execute(text(sql)).all())


def journal_rows(engine: RunningEngine, where: str, **params: object) -> int:
    return int(scalar(engine.journal, f"select count(*) from journal_messages where {where}", **params))


def oru(control_id: str, birth_date: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113502||ORU^R01|{control_id}|P|2.4",
        f"PID|1||{control_id}^^^HIS^PI||王小红||{birth_date}|F",
        f"OBR|1|JC1|RS-{control_id}|BLD01^血常规^L|||20240321083000||||||||BLD^全血|||||||20240321113000||HEM|F",
        "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F|||20240321112000",
    )


def messages_list(engine: RunningEngine, capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    """What `mch-engine messages list` prints for this engine's journal."""
    capsys.readouterr()
    assert cli.main(["messages", "list", "--lang", "en", "--config", str(engine.settings.source), *args]) == 0
    return capsys.readouterr().out.splitlines()


class TestDuplicates:
    def test_duplicate_control_id_is_answered_with_the_original_ack_and_stored_once(
        self, engine: RunningEngine
    ) -> None:
        """The same sender + MSH-10 + bytes again gets the original ACK, is counted, and is not processed twice."""
        first, again = engine.send([adt("DUP-1"), adt("DUP-1")])
        assert msa(first)[:2] == ("AA", "DUP-1")
        assert again == first  # byte for byte the original ACK
        assert journal_rows(engine, "control_id = 'DUP-1'") == 1
        assert (
            scalar(engine.journal, "select duplicates from journal_messages where control_id = 'DUP-1'") == 1
        )
        store = engine.store()
        wait_until(
            lambda: scalar(store, "select count(*) from persons where person_key = 'his:HIS:DUP-1'") == 1
        )
        assert scalar(store, "select name from persons where person_key = 'his:HIS:DUP-1'") == "李四"
        assert not scalar(
            engine.journal, "select control_id_reused from journal_messages where control_id = 'DUP-1'"
        )

    def test_reused_control_id_with_other_content_is_a_new_message_flagged_reused(
        self, engine: RunningEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A HIS whose counter was reset: the same MSH-10 with other bytes is stored, processed and flagged."""
        first, second = engine.send([adt("REUSED-1"), adt("REUSED-1", name="王五")])
        assert msa(first)[:2] == msa(second)[:2] == ("AA", "REUSED-1")
        assert second != first  # its own ACK, not the replay of the first
        with engine.journal.connect() as conn:
            query = (
                "select control_id_reused, duplicates from journal_messages where control_id = :c order by id"
            )
            flags = conn.execute(text(query), {"c": "REUSED-1"}).all()
        assert [(bool(r), d) for r, d in flags] == [(False, 0), (True, 0)]
        store = engine.store()
        wait_until(
            lambda: scalar(store, "select name from persons where person_key = 'his:HIS:REUSED-1'") == "王五"
        )
        listed = [line for line in messages_list(engine, capsys, "--reused") if "REUSED-1" in line]
        assert len(listed) == 1 and "control_id_reused" in listed[0]
        assert journal.count_reused_by_channel(engine.journal).get("hospital", 0) >= 1

    def test_corrected_resend_of_a_failed_message_reaches_the_store(
        self, engine: RunningEngine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """On-call asks the LIS to correct a result that failed mapping; it comes back under the same MSH-10."""
        (bad,) = engine.send([oru("FIX-1", "19941315")])  # month 13: the mapping refuses PID-7
        assert msa(bad)[:2] == ("AA", "FIX-1")
        wait_until(lambda: journal_rows(engine, "control_id = 'FIX-1' and status = 'failed'") == 1)
        (fixed,) = engine.send([oru("FIX-1", "19940315")])
        assert msa(fixed)[:2] == ("AA", "FIX-1")
        store = engine.store()
        wait_until(
            lambda: scalar(store, "select count(*) from records where record_id like '%RS-FIX-1'") == 1
        )
        assert journal_rows(engine, "control_id = 'FIX-1' and status = 'routed' and control_id_reused") == 1
        listed = [line for line in messages_list(engine, capsys, "--channel", "hospital") if "FIX-1" in line]
        assert len(listed) == 2
        assert "routed" in listed[0] and "control_id_reused" in listed[0]
        assert "failed" in listed[1] and "control_id_reused" not in listed[1]

    def test_same_control_id_from_another_sender_is_not_a_duplicate(self, engine: RunningEngine) -> None:
        """Control ids are unique per sender, so another system may reuse one."""
        a, b = engine.send([adt("SHARED-1", sender="HIS"), adt("SHARED-1", sender="EMR")])
        assert msa(a)[0] == msa(b)[0] == "AA"
        assert a != b
        assert journal_rows(engine, "control_id = 'SHARED-1'") == 2
        assert journal_rows(engine, "control_id = 'SHARED-1' and control_id_reused") == 0


class TestConcurrency:
    def test_200_connections_of_50_messages_each_all_acked_and_journaled_once(
        self, engine: RunningEngine
    ) -> None:
        """10,000 messages over 200 concurrent connections: every MSA-2 matches, every message one row."""

        async def one_sender(c: int) -> list[tuple[str, str]]:
            conn = await MllpConnection.open("127.0.0.1", engine.port())
            answers = []
            for m in range(50):
                control = f"C{c:03d}-{m:02d}"
                ack = await conn.send(adt(control), timeout=120)
                answers.append((control, msa(ack)[1] if msa(ack)[0] == "AA" else "NOT-AA"))
            await conn.close()
            return answers

        async def all_senders() -> list[list[tuple[str, str]]]:
            return await asyncio.gather(*(one_sender(c) for c in range(200)))

        writer = engine.runtime.writer
        assert writer is not None
        commits_before = writer.commits
        results = asyncio.run(all_senders())
        commits = writer.commits - commits_before
        pairs = [p for sender in results for p in sender]
        assert len(pairs) == 10_000
        assert all(sent == echoed for sent, echoed in pairs), [p for p in pairs if p[0] != p[1]][:5]
        assert journal_rows(engine, "control_id like 'C%-%' and duplicates = 0") == 10_000
        # Group commit: concurrent messages share transactions.
        assert commits < 10_000 / 4, commits
        REPORT.append(f"group commit: 10,000 messages from 200 connections in {commits} commits")
        assert (
            scalar(
                engine.journal,
                "select count(distinct control_id) from journal_messages where control_id like 'C%-%'",
            )
            == 10_000
        )


class TestBadInput:
    """Each kind of bad input gets the answer docs/mllp.md promises; the input is kept."""

    def _raw_socket(self, engine: RunningEngine) -> socket.socket:
        self._decoder = MllpDecoder(1 << 20)
        self._frames: list[bytes] = []
        return socket.create_connection(("127.0.0.1", engine.port()), timeout=10)

    def _read_frame(self, s: socket.socket) -> bytes:
        while not self._frames:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the engine")
            self._frames += [e.payload for e in self._decoder.feed(chunk) if isinstance(e, Frame)]
        return self._frames.pop(0)

    def test_framed_random_bytes_get_an_ar_and_the_connection_stays_usable(
        self, engine: RunningEngine
    ) -> None:
        """A frame of random bytes is answered AR (no MSH); a good message after it on the same connection is AA."""
        noise = bytes(b for b in os.urandom(4000) if b not in (0x0B, 0x1C))
        with self._raw_socket(engine) as s:
            s.sendall(frame(noise))
            code, _, text = msa(self._read_frame(s))
            assert code == "AR" and "MSH" in text
            s.sendall(frame(adt("AFTER-NOISE")))
            assert msa(self._read_frame(s))[:2] == ("AA", "AFTER-NOISE")
        assert journal_rows(engine, "status = 'rejected' and raw = :raw", raw=noise) == 1

    def test_frame_without_msh_gets_an_ar_saying_so(self, engine: RunningEngine) -> None:
        """A frame that starts with PID instead of MSH is rejected with a reason naming MSH."""
        with self._raw_socket(engine) as s:
            s.sendall(frame(b"PID|1||123^^^HIS^PI||NOBODY\r"))
            code, control, text = msa(self._read_frame(s))
        assert code == "AR" and control == "" and "MSH" in text

    def test_oversize_frame_gets_an_ar_and_the_next_message_goes_through(self, engine: RunningEngine) -> None:
        """A message over max_message_bytes is answered AR naming the limit; its first bytes are kept."""
        big = adt("BIG-1") + b"NTE|1||" + b"x" * (MAX_BYTES * 2) + b"\r"
        with self._raw_socket(engine) as s:
            s.sendall(frame(big))
            code, control, text = msa(self._read_frame(s))
            assert (code, control) == ("AR", "BIG-1")
            assert str(MAX_BYTES) in text
            s.sendall(frame(adt("AFTER-BIG")))
            assert msa(self._read_frame(s))[:2] == ("AA", "AFTER-BIG")
        kept = scalar(engine.journal, "select raw from journal_messages where control_id = 'BIG-1'")
        assert bytes(kept) == big[:MAX_BYTES]

    def test_truncated_frame_followed_by_a_good_one(self, engine: RunningEngine) -> None:
        """A frame cut off by a new start block is answered AR; the good message after it is AA."""
        truncated = b"\x0b" + adt("CUT-1")[:100]
        with self._raw_socket(engine) as s:
            s.sendall(truncated + frame(adt("AFTER-CUT")))
            code, control, text = msa(self._read_frame(s))
            assert (code, control) == ("AR", "CUT-1") and "truncated" in text
            assert msa(self._read_frame(s))[:2] == ("AA", "AFTER-CUT")

    def test_unframed_bytes_are_kept_and_the_connection_closed_at_idle(self, engine: RunningEngine) -> None:
        """Bytes without MLLP framing cannot be answered; they are journaled and the idle timeout closes."""
        text = b"MSH|^~\\&|NO|MLLP|||20240101||ADT^A04|UNFRAMED-1|P|2.5\r"
        with self._raw_socket(engine) as s:
            s.sendall(text)
            s.settimeout(15)
            assert s.recv(100) == b""  # closed by the engine after idle_timeout (5 s here)
        wait_until(lambda: journal_rows(engine, "status = 'rejected' and raw = :raw", raw=text) == 1)
        error = scalar(engine.journal, "select error from journal_messages where raw = :raw", raw=text)
        assert "outside an MLLP frame" in error

    def test_engine_still_serves_after_all_bad_input(self, engine: RunningEngine, tmp_path: Path) -> None:
        """After every kind of bad input above, a new connection still gets AA."""
        assert msa(engine.send([adt("STILL-OK")])[0])[:2] == ("AA", "STILL-OK")


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh journal on each backend whose driver the writer speaks to directly."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path}/journal.db")
        journal.ensure_schema(eng)
        yield eng
        eng.dispose()
        return
    with pg_schema() as url:
        eng = make_engine(url)
        journal.ensure_schema(eng)
        yield eng
        eng.dispose()


def entry(
    control_id: str | None, *, sender: str = "HIS^FY01", ack: str = "", name: str = "李四", **values: Any
) -> Entry:
    return Entry(
        channel="hospital",
        raw=adt(control_id or "none", name=name),
        status=journal.RECEIVED if control_id else journal.REJECTED,
        ack=ack or f"ACK {control_id}",
        ack_code="AA",
        sender=sender,
        control_id=control_id,
        message_type="ADT^A04^ADT_A01",
        encoding="utf-8",
        **values,
    )


def one_commit(eng: Any, entries: list[Entry]) -> list[Written | Refused | BaseException]:
    """Everything submitted before the writer starts, so it forms one batch."""
    writer = JournalWriter(eng)
    futures = [writer.submit(e) for e in entries]
    writer.start()
    try:
        return [f.exception(timeout=30) or f.result() for f in futures]
    finally:
        writer.stop()


class TestJournalWriterOnEachBackend:
    def test_ids_in_order_and_duplicates_in_one_batch(self, journal_engine: Any) -> None:
        """Ids ascend in arrival order; a control id repeated in the batch is stored once."""
        out = one_commit(journal_engine, [entry("A"), entry("B"), entry("A"), entry(None), entry("C")])
        a, b, a_again, rejected, c = out
        assert isinstance(a, Written) and isinstance(b, Written) and isinstance(c, Written)
        assert isinstance(rejected, Written)
        assert a.journal_id < b.journal_id < rejected.journal_id < c.journal_id
        assert a_again == Written(a.journal_id, True, "ACK A")
        assert scalar(journal_engine, "select duplicates from journal_messages where control_id = 'A'") == 1
        assert scalar(journal_engine, "select count(*) from journal_messages") == 4

    def test_a_journaled_control_id_gets_the_original_ack(self, journal_engine: Any) -> None:
        (first,) = one_commit(journal_engine, [entry("K")])
        again, fresh, again2 = one_commit(
            journal_engine, [entry("K", ack="new ACK"), entry("L"), entry("K", ack="newer ACK")]
        )
        assert isinstance(first, Written) and isinstance(fresh, Written)
        assert again == again2 == Written(first.journal_id, True, "ACK K")
        assert not fresh.duplicate
        assert scalar(journal_engine, "select duplicates from journal_messages where control_id = 'K'") == 2


class TestReusedControlIdsOnEachBackend:
    def test_same_id_other_content_in_one_batch_is_stored_and_flagged(self, journal_engine: Any) -> None:
        """Same bytes twice in a batch: one row and a duplicate; other bytes: a second row, flagged."""
        first, same, other = one_commit(
            journal_engine, [entry("R"), entry("R"), entry("R", name="王五", ack="ACK R again")]
        )
        assert isinstance(first, Written) and isinstance(other, Written)
        assert first == Written(first.journal_id, False, "ACK R")
        assert same == Written(first.journal_id, True, "ACK R")
        assert other == Written(other.journal_id, False, "ACK R again", reused=True)
        rows = all_rows(
            journal_engine, "select duplicates, control_id_reused from journal_messages order by id"
        )
        assert [(d, bool(r)) for d, r in rows] == [(1, False), (0, True)]
        assert journal.count_reused_by_channel(journal_engine) == {"hospital": 1}

    def test_id_journaled_earlier_with_other_content_is_flagged(self, journal_engine: Any) -> None:
        (first,) = one_commit(journal_engine, [entry("E")])
        again, changed, fresh = one_commit(journal_engine, [entry("E"), entry("E", name="王五"), entry("F")])
        assert isinstance(first, Written) and isinstance(changed, Written) and isinstance(fresh, Written)
        assert again == Written(first.journal_id, True, "ACK E")
        assert changed.reused and not changed.duplicate and changed.journal_id > first.journal_id
        assert not fresh.reused
        # The reused one's own bytes sent once more are its duplicate, not the first's.
        (resent,) = one_commit(journal_engine, [entry("E", name="王五")])
        assert resent == Written(changed.journal_id, True, "ACK E")

    def test_a_journal_of_the_older_schema_opens_and_keeps_its_duplicates(self, journal_engine: Any) -> None:
        """Rows keyed by control id alone (before content mattered) get the content in their key."""
        with journal_engine.begin() as conn:  # the table as the previous version created it
            conn.exec_driver_sql("DROP INDEX ix_journal_control_id")
            conn.exec_driver_sql("ALTER TABLE journal_messages DROP COLUMN control_id_reused")
            now = journal.now_utc()
            old_row = {
                "channel": "hospital", "sender": "HIS^FY01", "control_id": "OLD", "raw": adt("OLD"),
                "dedup_key": "hospital|HIS^FY01|OLD", "status": "routed", "received_at": now,
                "updated_at": now, "ack": "ACK OLD", "ack_code": "AA", "message_type": "", "encoding": "",
                "duplicates": 0, "peer": "",
            }  # fmt: skip
            columns = ", ".join(old_row)
            conn.execute(
                text(
                    f"INSERT INTO journal_messages ({columns}) VALUES ({', '.join(':' + c for c in old_row)})"
                ),
                old_row,
            )
        journal.ensure_schema(journal_engine)
        journal.ensure_schema(journal_engine)  # a second start finds nothing to do
        same, changed = one_commit(journal_engine, [entry("OLD"), entry("OLD", name="王五")])
        assert same == Written(1, True, "ACK OLD")
        assert isinstance(changed, Written) and changed.reused and not changed.duplicate
        assert journal.count_reused_by_channel(journal_engine) == {"hospital": 1}


# Values that slip past the MLLP source's checks and fail the insert on that backend.
POISON: dict[str, dict[str, dict[str, Any]]] = {
    "sqlite": {
        "year 0001": {"event_time": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=8)))},
        "9999-12-31 -12:00": {"event_time": datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=12)))},
    },
    "postgresql": {
        "NUL in MSH-10": {"control_id": "P\x00ISON"},
        "MSH-10 of 700 characters": {"control_id": "P" * 700},
    },
}  # fmt: skip


class TestPoisonValuesOnEachBackend:
    """A value the database refuses costs only its own message: AR, not AE; the raw bytes kept."""

    def test_the_batch_commits_and_the_poison_entry_is_kept_as_rejected(self, journal_engine: Any) -> None:
        for case, values in POISON[journal_engine.dialect.name].items():
            poison = entry(**{"control_id": "POISON", **values})
            before = all_rows(journal_engine, "select id from journal_messages")
            out = one_commit(journal_engine, [entry(f"G1 {case}"), poison, entry(f"G2 {case}")])
            good1, refused, good2 = out
            assert isinstance(good1, Written) and isinstance(good2, Written), (case, out)
            assert isinstance(refused, Refused) and refused.journal_id is not None, (case, out)
            assert "cannot store" in refused.reason
            kept = all_rows(
                journal_engine,
                f"select status, raw, event_time from journal_messages where id = {refused.journal_id}",
            )
            assert [(s, bytes(r), t) for s, r, t in kept] == [("rejected", poison.raw, None)], case
            written = all_rows(journal_engine, "select id from journal_messages")
            assert len(written) == len(before) + 3, case

    def test_a_journal_that_is_really_down_is_an_error_for_every_entry(self, journal_engine: Any) -> None:
        """No table (or no server): the sender must send again, so these stay errors (AE)."""
        with journal_engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE journal_messages")
        out = one_commit(journal_engine, [entry("D1"), entry("D2", event_time=datetime(1, 1, 1, tzinfo=UTC))])
        assert all(isinstance(o, Exception) and not isinstance(o, Refused) for o in out), out


def adt_with(control_id: str, stamp: str = "20240321083215") -> bytes:
    return adt(control_id).replace(b"20240321083215", stamp.encode(), 1)


# (frame, what MSA-3 must say when the MLLP source checks values up front)
POISON_FRAMES = {
    "year 0001": (adt_with("T0001", "00010101000000"), "MSH-7: message date/time 00010101000000 is outside"),
    "9999-12-31 -12:00": (adt_with("T9999", "99991231235959-1200"), "MSH-7: message date/time 9999"),
    "MSH-10 of 600": (adt("L" * 600), "MSH-10: message control id longer than 200 characters (600)"),
    "NUL in MSH-10": (adt("N\x00UL"), "MSH-10: contains a NUL character (0x00)"),
}
# The same values with the checks bypassed: what the journal itself refuses on each backend.
REFUSED_BY = {"sqlite": ("year 0001", "9999-12-31 -12:00"), "postgresql": ("MSH-10 of 600", "NUL in MSH-10")}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def any_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningEngine]:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite":
        with RunningEngine(write_routes(tmp, database=f"sqlite:///{tmp}/engine.db")) as running:
            yield running
        return
    with pg_schema() as url, RunningEngine(write_routes(tmp, database=url)) as running:
        yield running


def pipelined(port: int, payloads: list[bytes]) -> list[bytes]:
    """Send every frame in one write, as a busy sender does, then read one answer per frame."""
    decoder, answers = MllpDecoder(1 << 20), list[bytes]()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"".join(frame(p) for p in payloads))
        while len(answers) < len(payloads):
            chunk = s.recv(65536)
            assert chunk, f"closed after {len(answers)} answers"
            answers += [e.payload for e in decoder.feed(chunk) if isinstance(e, Frame)]
    return answers


class TestPoisonValuesOverMllp:
    """Good and poison messages pipelined on one connection: AA for the good, AR with the reason for
    the poison (never AE, which an obedient sender would resend forever), every frame kept."""

    def send_mixed(self, engine: RunningEngine, names: list[str], tag: str) -> list[tuple[str, str, str]]:
        good = [adt(f"{tag}-G{n}") for n in range(len(names) + 1)]
        frames = [good[0]]
        for n, name in enumerate(names):
            frames += [POISON_FRAMES[name][0], good[n + 1]]
        before = scalar(engine.journal, "select coalesce(max(id), 0) from journal_messages")
        answers = pipelined(engine.port(), frames)
        assert [msa(a)[:2] for a in answers[::2]] == [("AA", f"{tag}-G{n}") for n in range(len(good))]
        store = engine.store()
        wait_until(
            lambda: (
                scalar(store, "select count(*) from persons where person_key like :k", k=f"his:HIS:{tag}-G%")
                == len(good)
            )
        )
        for frame_sent in frames[1::2]:
            kept = journal_rows(
                engine, "id > :before and status = 'rejected' and raw = :raw", before=before, raw=frame_sent
            )
            assert kept == 1
        return [msa(a) for a in answers[1::2]]

    def test_values_checked_up_front_are_answered_ar_naming_the_field(
        self, any_backend: RunningEngine
    ) -> None:
        names = list(POISON_FRAMES)
        for name, (code, _, reason) in zip(names, self.send_mixed(any_backend, names, "UP"), strict=True):
            assert code == "AR" and reason.startswith(POISON_FRAMES[name][1]), (name, reason)

    def test_values_the_journal_refuses_are_answered_ar_too(
        self, any_backend: RunningEngine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Defence in depth: with the checks bypassed, the writer keeps the batch and refuses one row."""
        monkeypatch.setattr(ingest, "unstorable", lambda *_: None)
        names = list(REFUSED_BY[any_backend.journal.dialect.name])
        for name, (code, _, reason) in zip(names, self.send_mixed(any_backend, names, "IN"), strict=True):
            assert code == "AR" and "journal cannot store" in reason, (name, reason)


def test_an_unreachable_postgresql_is_an_error_for_every_entry() -> None:
    eng = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    try:
        out = one_commit(eng, [entry("U1"), entry("U2")])
        assert all(isinstance(o, Exception) for o in out), out
    finally:
        eng.dispose()


def test_postgresql_keeps_a_committed_insert_when_the_duplicate_lookup_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch insert commits on its own; a failure after it costs only the duplicates an AA."""
    with pg_schema() as url:
        eng = make_engine(url)
        journal.ensure_schema(eng)
        try:
            one_commit(eng, [entry("SEEN")])
            monkeypatch.setattr(fast_paths, "_PG_LOOKUP", "SELECT no_such_column FROM journal_messages")
            accepted: list[int] = []
            writer = JournalWriter(
                eng, on_accepted=lambda items: accepted.extend(a.journal_id for a in items)
            )
            futures = [writer.submit(e) for e in (entry("NEW"), entry("SEEN"))]
            writer.start()
            try:
                new = futures[0].result(timeout=30)
                with pytest.raises(LookupError):
                    futures[1].result(timeout=30)
                monkeypatch.undo()
                again = writer.submit(entry("SEEN")).result(timeout=30)
                assert isinstance(again, Written) and again.duplicate  # a fresh connection works
            finally:
                writer.stop()
            assert isinstance(new, Written) and not new.duplicate and accepted == [new.journal_id]
        finally:
            eng.dispose()
