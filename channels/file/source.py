"""File source channel: HL7 files dropped in a directory, journaled message by message.

A file is taken once its size and modification time have stood still for `settle` seconds;
names starting with "." or ending in ".tmp"/".part" are never taken, so a sender that writes
under a temporary name and renames when done is never read half-way. Taking a file renames it
into `processing/` (one atomic step: nobody else takes it, the sender cannot append to the name
any more). Its messages (channels/file/messages.py) are judged by the same examination as MLLP
frames (channels/intake/examine.py) and journaled with the peer `file:NAME#INDEX`; only when every one of
them is committed does the file move on: to `done/`, or to `error/` with `NAME.reason` beside it
when one of them was rejected (the others are processed as usual).

Restart safety: a file in `processing/` at start (the engine died between journal and move), or
after a journal failure, is finished, not redone: a message already in the journal under the
same channel, peer and bytes is not journaled again, so nothing is lost and nothing doubled.

Problems with the directory (missing, not writable), a move that fails or a journal that does
not answer are logged without patient data and kept in `problem` for `mch-engine status`; the
source keeps polling and recovers by itself once the cause is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import shutil
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, select

from channels.file.messages import Piece, split_file
from channels.intake.examine import Policy, Verdict, examine, reject
from core import failpoints, i18n, journal
from core.errors import ParseError
from core.journal import REJECTED, Refused, Written
from core.journal.schema import messages as journal_messages
from core.sources import SourceCounters

log = structlog.get_logger("channels.file")

FAILPOINT_JOURNALED = "file_journaled"
"""core/failpoints.py: die after a file's messages are committed, before the file is moved."""

NEVER_TAKEN = (".*", "*.tmp", "*.part")
PEER_CHARS = 80  # the journal's peer column
JOURNAL_WAIT = 60.0  # seconds a commit may take before the file is left for the next poll
_HEAD_BYTES = 4096  # what is kept of a file too large to read

# Problems `status` shows, by code.
DIRECTORY_MISSING = "directory_missing"
DIRECTORY_NOT_WRITABLE = "directory_not_writable"
FILE_UNREADABLE = "file_unreadable"
MOVE_FAILED = "move_failed"
JOURNAL_UNAVAILABLE = "journal_unavailable"

_TEXT: dict[str, tuple[str, str]] = {
    "file_source_reason_header": (
        "文件 {file}：{rejected} 条消息被拒收，{accepted} 条已接收并照常处理"
        "（重发整个文件不会重复处理已接收的消息）。",
        "file {file}: {rejected} message(s) rejected, {accepted} accepted and processed as usual "
        "(sending the whole file again does not process the accepted ones twice).",
    ),
    "file_source_reason_line": ("第 {index} 条消息：{reason}", "message {index}: {reason}"),
    "file_source_reason_whole": ("整个文件被拒收：{reason}", "the whole file was refused: {reason}"),
}
i18n.register(_TEXT)


@dataclass(frozen=True, slots=True)
class FileConfig:
    """A file channel's settings as the source uses them: directories resolved."""

    name: str
    directory: Path
    pattern: str
    policy: Policy
    poll: float
    settle: float
    done: Path
    error: Path
    max_file_bytes: int

    @property
    def processing(self) -> Path:
        """Files taken and being journaled; what a crash leaves here is finished on start."""
        return self.directory / "processing"


@dataclass(slots=True)
class FileCounters(SourceCounters):
    files_done: int = 0
    files_error: int = 0


@dataclass(frozen=True, slots=True)
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time this size and mtime were first seen


class FileSource:
    """One watched directory."""

    def __init__(self, config: FileConfig, writer: journal.Journal, journal_db: Engine) -> None:
        self.config = config
        self.writer = writer
        self.journal_db = journal_db
        self.counters = FileCounters()
        self.problem = ""
        self._seen: dict[str, _Seen] = {}
        self._logged_before: set[tuple[str, str, str]] = set()
        self._logged_now: set[tuple[str, str, str]] = set()
        self._resume: set[str] = set()
        self._in_flight: dict[str, list[Future[Written | Refused]]] = {}
        self._recover = True
        self._stopping = threading.Event()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def location(self) -> str:
        """Where the channel takes its input from, for the run banner."""
        return str(self.config.directory)

    async def start(self) -> None:
        await self.bind()
        await self.serve()

    async def bind(self) -> None:
        """Nothing to take before a reload switches over: a directory is not an address."""

    async def serve(self) -> None:
        self._stopping.clear()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"file-source-{self.name}")
        log.info("channel_watching", channel=self.name, directory=str(self.config.directory))

    def reconfigure(self, config: FileConfig) -> None:
        """New settings from the next poll on; what is in `processing/` of the new directory is
        finished first, as at a start."""
        self.config = config
        self._seen = {}
        self._recover = True

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the file being journaled (within `grace`), then stop polling. A file cut
        short stays in `processing/` and is finished at the next start."""
        self._stopping.set()
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                log.warning("file_channel_stop_timeout", channel=self.name)

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.poll_once)
            except Exception as exc:  # never let one bad poll end the channel
                log.error("file_poll_failed", channel=self.name, error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll)

    # one poll ----------------------------------------------------------------------

    def poll_once(self) -> None:
        """Finish what waits in `processing/`, then take every file that has settled."""
        cfg = self.config
        problems: list[str] = []
        if self._ready(cfg, problems):
            if self._recover:
                self._resume |= {p.name for p in cfg.processing.iterdir() if p.is_file()}
                self._recover = False
            for name in sorted(self._resume):
                if self._stopping.is_set():
                    break
                self._process(cfg, name, True, problems)
            for name in self._settled(cfg, problems):
                if self._stopping.is_set():
                    break
                if self._claim(cfg, name, problems):
                    self._process(cfg, name, False, problems)
        self._set_problem(problems[0] if problems else "")
        self._logged_before, self._logged_now = self._logged_now, set()

    def _ready(self, cfg: FileConfig, problems: list[str]) -> bool:
        """The watched directory exists and the engine's folders in it can be made."""
        if not cfg.directory.is_dir():
            problems.append(DIRECTORY_MISSING)
            return False
        try:
            for folder in (cfg.processing, cfg.done, cfg.error):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._log_os_error("file_folder_not_made", exc)
            problems.append(DIRECTORY_NOT_WRITABLE)
            return False
        if not os.access(cfg.directory, os.R_OK | os.W_OK | os.X_OK):
            problems.append(DIRECTORY_NOT_WRITABLE)
            return False
        return True

    def _settled(self, cfg: FileConfig, problems: list[str]) -> list[str]:
        """Names whose size and mtime have not changed for `settle` seconds, oldest first."""
        now = time.monotonic()
        seen: dict[str, _Seen] = {}
        ready: list[tuple[int, str]] = []
        try:
            entries = list(os.scandir(cfg.directory))
        except OSError as exc:
            self._log_os_error("file_directory_unreadable", exc)
            problems.append(DIRECTORY_NOT_WRITABLE)
            return []
        for entry in entries:
            name = entry.name
            if not fnmatch.fnmatchcase(name, cfg.pattern) or any(
                fnmatch.fnmatchcase(name, never) for never in NEVER_TAKEN
            ):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone since the listing
            before = self._seen.get(name)
            same = before is not None and (before.size, before.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
            since = before.since if same and before is not None else now
            seen[name] = _Seen(stat.st_size, stat.st_mtime_ns, since)
            # Only what this process saw counts: a file server's clock may run ahead of ours.
            if now - since >= cfg.settle:
                ready.append((stat.st_mtime_ns, name))
        self._seen = seen
        return [name for _, name in sorted(ready)]

    def _claim(self, cfg: FileConfig, name: str, problems: list[str]) -> bool:
        """Rename the file into `processing/`; a leftover of the same name is finished first."""
        target = cfg.processing / name
        if target.exists():
            return False
        try:
            os.rename(cfg.directory / name, target)
        except FileNotFoundError:
            return False
        except OSError as exc:
            self._log_os_error("file_not_taken", exc, name)
            problems.append(DIRECTORY_NOT_WRITABLE)
            return False
        self._seen.pop(name, None)
        return True

    # one file ----------------------------------------------------------------------

    def _process(self, cfg: FileConfig, name: str, resume: bool, problems: list[str]) -> None:
        path = cfg.processing / name
        try:
            pieces = _read(path, cfg.max_file_bytes)
        except FileNotFoundError:
            self._resume.discard(name)
            return
        except OSError as exc:
            self._log_os_error("file_unreadable", exc, name)
            problems.append(FILE_UNREADABLE)
            self._resume.add(name)
            return
        verdicts = [(piece.index, v) for piece in pieces for v in _judge(piece, cfg.policy, name)]
        reasons: list[tuple[int, str]] = []
        accepted = 0
        try:
            # A commit of an earlier attempt still in flight must end before the journal is asked
            # what it holds, or its messages would be submitted a second time.
            for fut in self._in_flight.get(name, []):
                fut.exception(JOURNAL_WAIT)  # raises TimeoutError while it is still running
            self._in_flight.pop(name, None)
            done = self._already_journaled(cfg, [v for _, v in verdicts]) if resume else {}
            submitted = [(i, v, self.writer.submit(v.entry)) for i, v in verdicts if v.entry.peer not in done]
            self._in_flight[name] = [fut for _, _, fut in submitted]
            outcomes = [(i, v, fut.result(JOURNAL_WAIT)) for i, v, fut in submitted]
            del self._in_flight[name]
        except Exception as exc:
            self.counters.journal_errors += 1
            log.error("journal_unavailable", channel=self.name, file=name, error=type(exc).__name__)
            problems.append(JOURNAL_UNAVAILABLE)
            self._resume.add(name)
            return
        for index, verdict, outcome in outcomes:
            why = self._count(verdict, outcome)
            if why:
                reasons.append((index, why))
            else:
                accepted += 1
        for index, verdict in verdicts:
            if verdict.entry.peer in done:
                status, error = done[verdict.entry.peer]
                if status == REJECTED:
                    reasons.append((index, error or ""))
                else:
                    accepted += 1
        failpoints.reach(FAILPOINT_JOURNALED)
        if self._file_away(cfg, name, sorted(reasons), accepted):
            self._resume.discard(name)
        else:
            problems.append(MOVE_FAILED)
            self._resume.add(name)

    def _count(self, verdict: Verdict, outcome: Written | Refused) -> str:
        """Count one journal outcome; the rejection reason, or "" for an accepted message."""
        c = self.counters
        c.received += 1
        control_id = verdict.entry.control_id or ""
        if isinstance(outcome, Refused):
            c.rejected += 1
            self._log_rejected(verdict, "unstorable")
            return outcome.reason
        if verdict.entry.status == REJECTED:
            c.rejected += 1
            self._log_rejected(verdict, verdict.reason)
            return verdict.entry.error or ""
        if outcome.duplicate:
            c.duplicates += 1
            log.info("file_message_duplicate", channel=self.name, control_id=_safe(control_id))
        else:
            c.accepted += 1
            c.reused += outcome.reused
        return ""

    def _already_journaled(
        self, cfg: FileConfig, verdicts: list[Verdict]
    ) -> dict[str, tuple[str, str | None]]:
        """Peers of this file's messages the journal holds with the same bytes: status, error."""
        peers = {v.entry.peer: _hash(v.entry.raw) for v in verdicts}
        m = journal_messages
        query = select(m.c.peer, m.c.raw, m.c.status, m.c.error).where(
            (m.c.channel == cfg.name) & m.c.peer.in_(list(peers))
        )
        with self.journal_db.connect() as conn:
            rows = conn.execute(query).all()
        same = [(peer, status, error) for peer, raw, status, error in rows if peers.get(peer) == _hash(raw)]
        return {peer: (status, error) for peer, status, error in same}

    def _file_away(self, cfg: FileConfig, name: str, reasons: list[tuple[int, str]], accepted: int) -> bool:
        """Move the file to done/ or error/ (with its .reason); False when that failed."""
        source = cfg.processing / name
        folder = cfg.error if reasons else cfg.done
        try:
            target = _free_name(folder, name)
            if reasons:
                target.with_name(target.name + ".reason").write_text(
                    _reason_text(name, reasons, accepted), encoding="utf-8"
                )
            shutil.move(source, target)
        except OSError as exc:
            self._log_os_error("file_not_moved", exc, name)
            return False
        if reasons:
            self.counters.files_error += 1
            rejected = len(reasons)
            log.warning("file_to_error", channel=self.name, file=name, rejected=rejected, accepted=accepted)
        else:
            self.counters.files_done += 1
            log.info("file_done", channel=self.name, file=name, messages=accepted)
        return True

    # reporting ---------------------------------------------------------------------

    def _set_problem(self, problem: str) -> None:
        if problem != self.problem:
            if problem:
                log.error("file_channel_problem", channel=self.name, problem=problem)
            else:
                log.info("file_channel_recovered", channel=self.name, was=self.problem)
        self.problem = problem

    def _log_os_error(self, event: str, exc: OSError, name: str = "") -> None:
        """The OS's reason and the file name, never content; once while it lasts, not every poll."""
        code = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        key = (event, name, code)
        self._logged_now.add(key)
        if key not in self._logged_before:
            log.error(event, channel=self.name, file=name or None, error=code)

    def _log_rejected(self, verdict: Verdict, reason: str) -> None:
        log.warning(
            "message_rejected",
            channel=self.name,
            peer=verdict.entry.peer,
            control_id=_safe(verdict.entry.control_id or ""),
            message_type=verdict.entry.message_type,
            reason=reason,
        )

    def state(self) -> dict[str, Any]:
        """What `status` shows of this channel beyond its counters."""
        return {"running": True, "problem": self.problem, "where": str(self.config.directory)}


def _read(path: Path, max_bytes: int) -> list[Piece]:
    """The file's pieces; a file over `max_bytes` is not read, only its head is kept."""
    size = path.stat().st_size
    if size > max_bytes:
        with path.open("rb") as f:
            head = f.read(_HEAD_BYTES)
        reason = f"the file is {size} bytes, more than max_file_bytes ({max_bytes}); it was not read"
        return [Piece(0, head, ParseError(reason, segment="MSH", code="207"))]
    return split_file(path.read_bytes())


def _judge(piece: Piece, policy: Policy, name: str) -> list[Verdict]:
    """The journal entries of one piece, exactly as an MLLP frame of it would get them."""
    peer = peer_of(name, piece.index)
    if piece.refusal is not None:
        return [reject(piece.payload, policy, str(piece.refusal), peer)]
    return examine(piece.payload, policy, peer)


def peer_of(name: str, index: int) -> str:
    """`file:NAME#INDEX` (`file:NAME` for a whole refused file), cut to the journal's column
    from the front of the name so the index stays."""
    suffix = f"#{index}" if index else ""
    room = PEER_CHARS - len("file:") - len(suffix)
    shown = name if len(name) <= room else "…" + name[-(room - 1) :]
    return f"file:{shown}{suffix}"


def _free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `name.2`, `name.3`… when a file of that name is already there."""
    target = folder / name
    n = 1
    while target.exists() or target.with_name(target.name + ".reason").exists():
        n += 1
        target = folder / f"{name}.{n}"
    return target


def _reason_text(name: str, reasons: list[tuple[int, str]], accepted: int) -> str:
    t = i18n.t
    if len(reasons) == 1 and reasons[0][0] == 0:
        return t("file_source_reason_whole", reason=reasons[0][1]) + "\n"
    lines = [t("file_source_reason_header", file=name, rejected=len(reasons), accepted=accepted)]
    lines += [t("file_source_reason_line", index=index, reason=reason) for index, reason in reasons]
    return "\n".join(lines) + "\n"


def _hash(raw: bytes) -> str:
    return journal.content_hash(bytes(raw))


def _safe(control_id: str) -> str:
    return control_id[:64] if control_id.isascii() else ""
