"""HL7 files dropped in a watched directory → journal → mapping → record store, on the embedded
default (SQLite, in-process bus) and on PostgreSQL + RabbitMQ."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faults.engine_process import EngineProcess, mch
from sqlalchemy import text

from core import i18n
from support import AMQP_URL, REPO, RunningEngine, adt, oru, pg_schema, require_service, scalar, wait_until

MAPPINGS = REPO / "mappings"


def file_routes(directory: Path, *, database: str, broker: str = "memory://", extra: str = "") -> Path:
    """A routes.yaml whose one channel, lab_files, watches `directory/inbox` (made here)."""
    (directory / "inbox").mkdir(exist_ok=True)
    text = f"""version: 1
engine:
  broker: {broker!r}
  database: {database!r}
  queue_prefix: t{uuid.uuid4().hex[:10]}
  allowed_paths: [{str(MAPPINGS)!r}]
channels:
  lab_files:
    type: file
    path: inbox
    pattern: "*.hl7"
    poll: 0.1s
    settle: 0.3s
{extra}routes:
  - name: persons
    from: [lab_files]
    message_type: [ADT^A01, ADT^A04, ADT^A08]
    mapping: {MAPPINGS / "his/adt_person.yaml"}
    to: [record_store]
  - name: lab-results
    from: [lab_files]
    message_type: ORU^R01
    mapping: {MAPPINGS / "lis/oru_r01.yaml"}
    to: [record_store]
destinations:
  record_store: {{type: record_store}}
"""
    path = directory / "routes.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def drop(inbox: Path, name: str, content: bytes) -> Path:
    """Write under a temporary name, then rename: what the docs tell senders to do."""
    temp = inbox / f".{name}.tmp"
    temp.write_bytes(content)
    return temp.rename(inbox / name)


def crlf(message: bytes) -> bytes:
    return message.replace(b"\r", b"\r\n")


def journal_rows(engine: RunningEngine) -> list[tuple[str, str, str | None]]:
    with engine.journal.connect() as conn:
        rows = conn.execute(text("select peer, status, control_id from journal_messages order by id")).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.fixture(params=["embedded", "rabbitmq+postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningEngine]:
    if request.param == "embedded":
        with RunningEngine(file_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")) as running:
            yield running
        return
    require_service("127.0.0.1", 5672, "RabbitMQ")
    with pg_schema() as url, RunningEngine(file_routes(tmp_path, database=url, broker=AMQP_URL)) as running:
        yield running
        bus = running.runtime.bus()
        bus.queue_for("record_store")(bus._conn.default_channel).delete()
        bus.close()


class TestFileSource:
    def test_batch_file_reaches_the_record_store_and_moves_to_done(self, engine: RunningEngine) -> None:
        """An FHS/BHS batch with CRLF line ends: each message journaled with file name and index,
        stored as records, and the file in done/ once all are journaled."""
        inbox = engine.settings.base_dir / "inbox"
        body = b"".join(
            crlf(m) for m in (adt("F-ADT-1", "0010099001"), oru("F-ORU-1", "FILE0001", "0010099001"))
        )
        drop(inbox, "batch1.hl7", b"FHS|^~\\&|LIS\r\nBHS|^~\\&|LIS\r\n" + body + b"BTS|2\r\nFTS|1\r\n")

        wait_until(lambda: (inbox / "done" / "batch1.hl7").exists())
        assert not (inbox / "batch1.hl7").exists() and not list((inbox / "processing").iterdir())
        assert [(peer, cid) for peer, _, cid in journal_rows(engine)] == [
            ("file:batch1.hl7#1", "F-ADT-1"),
            ("file:batch1.hl7#2", "F-ORU-1"),
        ]
        store = engine.store()
        wait_until(lambda: scalar(store, "select count(*) from records") == 1)
        wait_until(lambda: scalar(store, "select count(*) from persons") == 1)
        payload = scalar(store, "select payload from records where record_id = 'lab:LIS:10:FILE0001'")
        payload = payload if isinstance(payload, dict) else json.loads(payload)
        assert [o["code"] for o in payload["observations"]] == ["HGB"]

    def test_a_growing_file_is_taken_only_once_complete(self, engine: RunningEngine) -> None:
        """A file written in pieces under its final name (size changing) is left alone until it
        has stood still for `settle`: all its messages are journaled, none cut in half."""
        inbox = engine.settings.base_dir / "inbox"
        messages = [oru(f"G-{i}", f"GROW{i:04d}", "0010099002") for i in range(6)]
        path = inbox / "growing.hl7"
        with path.open("wb") as f:
            for message in messages:
                f.write(message.replace(b"\r", b"\n") + b"\n")
                f.flush()
                time.sleep(0.15)  # shorter than settle: the file keeps changing
                assert not (inbox / "done" / "growing.hl7").exists()
        wait_until(lambda: (inbox / "done" / "growing.hl7").exists())
        rows = journal_rows(engine)
        assert [(peer, cid) for peer, _, cid in rows] == [
            (f"file:growing.hl7#{i + 1}", f"G-{i}") for i in range(6)
        ]
        assert {status for _, status, _ in rows} <= {"received", "routed"}
        store = engine.store()
        wait_until(lambda: scalar(store, "select count(*) from records") == 6)

    def test_a_bad_message_is_rejected_and_the_file_goes_to_error_with_its_reason(
        self, engine: RunningEngine
    ) -> None:
        """Messages one after another (no envelope): the one without a control id is journaled
        rejected, the others processed; the file lands in error/ with NAME.reason naming it."""
        inbox = engine.settings.base_dir / "inbox"
        bad = oru("", "BAD00001", "0010099003")
        content = oru("E-1", "ERR00001", "0010099003") + b"\n" + bad + oru("E-3", "ERR00003", "0010099003")
        drop(inbox, "mixed.hl7", content)

        wait_until(lambda: (inbox / "error" / "mixed.hl7").exists())
        reason = (inbox / "error" / "mixed.hl7.reason").read_text(encoding="utf-8")
        assert (
            i18n.t("file_source_reason_line", index=2, reason="MSH-10: message control id is empty") in reason
        )
        rows = journal_rows(engine)
        assert [(peer, status == "rejected") for peer, status, _ in rows] == [
            ("file:mixed.hl7#1", False),
            ("file:mixed.hl7#2", True),
            ("file:mixed.hl7#3", False),
        ]
        store = engine.store()
        wait_until(lambda: scalar(store, "select count(*) from records") == 2)
        assert engine.runtime.sources[0].counters.rejected == 1
        assert engine.settings.source is not None
        listed = mch(engine.settings.source, "messages", "list", "--status", "rejected").stdout
        assert "file:mixed.hl7#2" in listed and "control id is empty" in listed

    def test_gb18030_file_by_channel_setting_and_a_file_refused_whole(self, tmp_path: Path) -> None:
        """The channel's encoding reads a GB18030 file without MSH-18; a file with a segment
        before its MSH is refused whole: journaled rejected, in error/ with the reason."""
        extra = "    encoding: gb18030\n"
        routes = file_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db", extra=extra)
        inbox = tmp_path / "inbox"
        message = oru("GB-1", "GB000001", "0010099004").decode().replace("|UNICODE UTF-8", "|")
        with RunningEngine(routes) as engine:
            drop(inbox, "gbk.hl7", message.encode("gb18030"))
            drop(inbox, "glued.hl7", b"PID|1||X\r" + oru("GL-1", "GL000001", "0010099004"))
            wait_until(
                lambda: (inbox / "done" / "gbk.hl7").exists() and (inbox / "error" / "glued.hl7").exists()
            )
            store = engine.store()
            wait_until(lambda: scalar(store, "select count(*) from records") == 1)
            assert scalar(store, "select count(*) from persons where name = '王小红'") == 1
            assert "comes before the message's MSH" in (inbox / "error" / "glued.hl7.reason").read_text(
                "utf-8"
            )
            assert scalar(
                engine.journal, "select status from journal_messages where peer = 'file:glued.hl7'"
            ) == ("rejected")

    def test_a_missing_directory_is_reported_and_watched_until_it_appears(self, tmp_path: Path) -> None:
        routes = file_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")
        inbox = tmp_path / "inbox"
        inbox.rmdir()
        with RunningEngine(routes) as engine:
            source = engine.runtime.sources[0]
            wait_until(lambda: source.problem == "directory_missing")
            inbox.mkdir()
            drop(inbox, "late.hl7", oru("L-1", "LATE0001", "0010099005"))
            wait_until(lambda: (inbox / "done" / "late.hl7").exists())
            assert source.problem == ""


def test_status_shows_a_file_channel_its_problem_and_its_numbers(tmp_path: Path) -> None:
    """`mch-engine status` of an engine process whose file channel watches a missing directory:
    the channel runs, the problem is named (exit 1); once the directory exists and a file is
    dropped, the problem is gone and the file's message is counted."""
    routes = file_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")
    inbox = tmp_path / "inbox"
    inbox.rmdir()
    engine = EngineProcess(routes)
    try:
        engine.start()
        assert f"lab_files → {inbox}" in "\n".join(engine.lines)

        def status() -> tuple[int, dict[str, Any]]:
            done = mch(routes, "status", "--json")
            return done.returncode, json.loads(done.stdout)

        wait_until(lambda: "channel_problem:lab_files (directory_missing)" in status()[1]["problems"], 20)
        code, body = status()
        [channel] = body["channels"]
        assert (code, channel["listen"], channel["listening"]) == (1, str(inbox), True)
        assert "channel lab_files (directory_missing) has a problem" in mch(routes, "status").stdout

        inbox.mkdir()
        drop(inbox, "one.hl7", oru("S-1", "STAT0001", "0010099006"))

        def settled() -> dict[str, Any] | None:
            code, body = status()
            return body if code == 0 and body["channels"][0]["routed"] == 1 else None

        assert wait_until(settled, 20)["problems"] == []
        assert engine.stop() == 0
    finally:
        engine.kill()


def test_folders_that_cannot_be_made_leave_files_untouched_until_fixed(tmp_path: Path) -> None:
    """`done` is a plain file where the engine needs a folder (a misconfiguration): the problem is
    named, the dropped file stays in the inbox; once fixed, the file is taken and moved to done/."""
    routes = file_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")
    inbox = tmp_path / "inbox"
    (inbox / "done").write_text("not a folder", encoding="utf-8")
    with RunningEngine(routes) as engine:
        source = engine.runtime.sources[0]
        drop(inbox, "waiting.hl7", oru("W-1", "WAIT0001", "0010099007"))
        wait_until(lambda: source.problem == "directory_not_writable")
        time.sleep(0.5)  # several polls
        assert (inbox / "waiting.hl7").exists()
        assert scalar(engine.journal, "select count(*) from journal_messages") == 0
        (inbox / "done").unlink()
        wait_until(lambda: (inbox / "done" / "waiting.hl7").exists())
        assert source.problem == ""
        assert scalar(engine.journal, "select count(*) from journal_messages") == 1


def test_a_reload_moves_the_channel_to_another_directory(tmp_path: Path) -> None:
    """`path` changed in routes.yaml and reloaded: files dropped in the new directory are taken,
    the old directory is no longer watched."""
    routes = file_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")
    old, new = tmp_path / "inbox", tmp_path / "inbox2"
    new.mkdir()
    with RunningEngine(routes) as engine:
        routes.write_text(routes.read_text(encoding="utf-8").replace("path: inbox", "path: inbox2"), "utf-8")
        assert engine.runtime.reloader.reload().result == "reloaded"  # type: ignore[union-attr]
        drop(old, "old.hl7", oru("R-1", "RELD0001", "0010099008"))
        drop(new, "new.hl7", oru("R-2", "RELD0002", "0010099008"))
        wait_until(lambda: (new / "done" / "new.hl7").exists())
        time.sleep(0.6)  # settle and two polls: the old directory would have been read by now
        assert (old / "old.hl7").exists()
        assert [peer for peer, _, _ in journal_rows(engine)] == ["file:new.hl7#1"]
