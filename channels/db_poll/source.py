"""`DbPollSource`: reads new rows of a HIS view every few seconds and journals them.

One thread per channel (the database drivers block). Each poll reads past the cursor in
(watermark, key) order, a batch at a time, and journals each batch together with the new
cursor in one transaction (`Journal.commit_with`). With `look_back`, it then re-reads
the rows of the window behind the cursor, page by page, and journals those the journal
does not hold yet (a late commit). A failure (connection, query, a column gone, the journal)
moves nothing: the channel records the error where `status` reads it, logs it without
patient data, waits longer each time, and tries again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, select

from channels.db_poll import cursor as cursors
from channels.db_poll import rows as row_codec
from channels.db_poll.reader import COLUMNS, JOURNAL, PollError, Reader, masked_source, reader_for
from channels.db_poll.sql import PollQueries
from core import failpoints, journal
from core.journal.schema import messages as journal_messages
from core.sources import SourceCounters, stop_thread

log = structlog.get_logger("channels.db_poll")

MAX_BACKOFF = 300.0  # seconds between attempts after many failures in a row
IDLE_CHECK = 1.0  # seconds between looks at a disabled channel's settings (a reload may enable it)


@dataclass(frozen=True, slots=True)
class DbPollConfig:
    """A channel's settings as the source uses them (built by channels/db_poll/connector.py)."""

    name: str
    url: str
    dialect: str
    sender: str
    queries: PollQueries
    watermark: str
    key: str
    every: float
    batch: int
    look_back: float
    timeout: float
    tz: tzinfo

    @property
    def enabled(self) -> bool:
        return bool(self.url)


@dataclass
class PollCounters(SourceCounters):
    """Counts since start: `received` rows journaled, `duplicates` rows read again that the
    journal already held."""

    polls: int = 0
    failures: int = 0
    open_connections: int = 0


@dataclass
class PollHealth:
    """What `status` shows for the channel: polling or not, and the last error."""

    enabled: bool = True
    polling: bool = False
    last_poll_at: str | None = None
    error: str | None = None
    error_at: str | None = None
    failures_in_a_row: int = 0
    retry_in_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """With the keys `status` reads of every source that listens on nothing."""
        return {**vars(self), "running": self.polling, "problem": self.error}


@dataclass
class DbPollSource:
    config: DbPollConfig
    writer: journal.Journal
    journal_engine: Engine
    counters: PollCounters = field(default_factory=PollCounters)
    health: PollHealth = field(default_factory=PollHealth)
    port: int | None = None  # it listens on nothing
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _reader: Reader | None = None
    _reader_url: str = ""
    _columns: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self) -> None:
        self.health.enabled = self.config.enabled
        await asyncio.get_running_loop().run_in_executor(None, cursors.ensure_schema, self.journal_engine)
        self._thread = threading.Thread(target=self._run, name=f"db-poll-{self.name}", daemon=True)
        self._thread.start()
        if not self.config.enabled:
            log.info("db_poll_disabled", channel=self.name, reason="url is empty")
            return
        log.info(
            "db_poll_started", channel=self.name, url=masked_source(self.config.url), every=self.config.every
        )

    async def stop(self, grace: float) -> None:
        await stop_thread(self._stop, self._thread, grace)
        if self._reader is not None:
            self._reader.close()

    def reconfigure(self, config: DbPollConfig) -> None:
        """Taken at the next poll (a url set or emptied by a reload turns polling on or off);
        the cursor stays, it belongs to the channel's name."""
        self.config = config
        self._columns = frozenset()

    def state(self) -> dict[str, Any]:
        """For the heartbeat row: what `status` and the monitors show."""
        return self.health.as_dict()

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        while not self._stop.is_set():
            config = self.config
            self.health.enabled = config.enabled
            if not config.enabled:
                self.health.polling, self.health.error = False, None
                self._stop.wait(min(config.every, IDLE_CHECK))
                continue
            try:
                self.poll_once(config)
            except PollError as exc:
                wait = self._failed(config, exc)
            except Exception as exc:  # a fault of ours: reported the same way, never fatal
                wait = self._failed(config, PollError(JOURNAL, f"{type(exc).__name__}: {exc}"))
            else:
                wait = config.every
                self.health.error = None
                self.health.failures_in_a_row = 0
                self.health.retry_in_s = None
            self._stop.wait(wait)

    def _failed(self, config: DbPollConfig, exc: PollError) -> float:
        h = self.health
        h.failures_in_a_row += 1
        h.error, h.error_at, h.polling = str(exc), _now(), False
        wait = min(config.every * 2 ** (h.failures_in_a_row - 1), max(config.every, MAX_BACKOFF))
        h.retry_in_s = round(wait, 3)
        self.counters.failures += 1
        log.warning(
            "db_poll_failed",
            channel=config.name,
            kind=exc.kind,
            error=exc.detail,
            failures_in_a_row=h.failures_in_a_row,
            retry_in_s=h.retry_in_s,
        )
        return wait

    def poll_once(self, config: DbPollConfig) -> int:
        """One poll: everything past the cursor, then the look-back window. Rows journaled."""
        reader = self._reader_for(config)
        position = cursors.load(self.journal_engine, config.name)
        journaled = 0
        while not self._stop.is_set():
            q = config.queries
            if position is None:
                batch = self._fetch(reader, config, q.first, {})
            else:
                batch = self._fetch(reader, config, q.after, {"wm": position.watermark, "key": position.key})
            if not batch:
                break
            last = batch[-1]
            position = cursors.Cursor(
                row_codec.column(last, config.watermark), row_codec.column(last, config.key)
            )
            journaled += self._journal(config, batch, position)
            if len(batch) < config.batch:
                break
        if config.look_back and position is not None:
            journaled += self._look_back(reader, config, position)
        self.counters.polls += 1
        self.health.polling, self.health.last_poll_at = True, _now()
        return journaled

    def _look_back(self, reader: Reader, config: DbPollConfig, position: cursors.Cursor) -> int:
        """Rows with a watermark within `look_back` before the cursor, page by page."""
        upper = position.watermark
        if not isinstance(upper, datetime | date):
            return 0
        bounds = {"to_wm": upper, "to_key": position.key}
        low = upper - timedelta(seconds=config.look_back)
        page = self._fetch(reader, config, config.queries.window_first, {"low": low, **bounds})
        journaled = 0
        while page and not self._stop.is_set():
            journaled += self._journal(config, page, None)
            if len(page) < config.batch:
                break
            last = page[-1]
            params = {
                "wm": row_codec.column(last, config.watermark),
                "key": row_codec.column(last, config.key),
            }
            page = self._fetch(reader, config, config.queries.window, {**params, **bounds})
        return journaled

    def _reader_for(self, config: DbPollConfig) -> Reader:
        if self._reader is None or self._reader_url != config.url:
            if self._reader is not None:
                self._reader.close()
            self._reader = reader_for(config.url, config.timeout, config.dialect)
            self._reader_url = config.url
        return self._reader

    def _fetch(
        self, reader: Reader, config: DbPollConfig, sql: str, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        names, found = reader.fetch(sql, params)
        self._check_columns(config, names)
        return found

    def _check_columns(self, config: DbPollConfig, names: list[str]) -> None:
        """The cursor's columns must be there, and no column this process has seen may go
        (a view redefined without one: the mapping would silently read nothing from it)."""
        lowered = frozenset(n.lower() for n in names)
        missing = {config.watermark.lower(), config.key.lower()} - lowered
        gone = self._columns - lowered
        if missing or gone:
            raise PollError(
                COLUMNS, f"the view no longer has the columns {', '.join(sorted(missing | gone))}"
            )
        self._columns = lowered

    def _journal(
        self, config: DbPollConfig, batch: list[dict[str, Any]], moved: cursors.Cursor | None
    ) -> int:
        """Journal the rows the journal lacks; move the cursor (if given) in the same commit."""
        entries = [
            _storable(
                row_codec.entry(config.name, config.sender, row, config.key, config.watermark, config.tz)
            )
            for row in batch
        ]
        fresh = self._not_journaled(entries)
        self.counters.duplicates += len(entries) - len(fresh)
        if not fresh and moved is None:
            return 0
        failpoints.reach(failpoints.DB_POLL_FETCHED)  # fault tests: die with rows read, not journaled
        also: Callable[[Connection], None] = (
            (lambda conn: cursors.save_in(conn, config.name, moved, len(fresh)))
            if moved
            else (lambda conn: None)
        )
        try:
            outcomes = self.writer.commit_with(fresh, also)
        except Exception as exc:
            raise PollError(JOURNAL, f"{type(exc).__name__}: {exc}") from exc
        written = sum(1 for o in outcomes if isinstance(o, journal.Written) and not o.duplicate)
        self.counters.received += written
        self.counters.accepted += written
        return written

    def _not_journaled(self, entries: list[journal.Entry]) -> list[journal.Entry]:
        keys = [e.dedup_key for e in entries]
        with self.journal_engine.connect() as conn:
            known = set(
                conn.execute(
                    select(journal_messages.c.dedup_key).where(journal_messages.c.dedup_key.in_(keys))
                ).scalars()
            )
        seen: set[str | None] = set()
        fresh = []
        for entry, key in zip(entries, keys, strict=True):
            if key not in known and key not in seen:
                seen.add(key)
                fresh.append(entry)
        return fresh


def _storable(entry: journal.Entry) -> journal.Entry:
    """An event time the journal cannot keep (year 1, 9999) is left out, not a poll stuck for ever."""
    if entry.event_time is not None and entry.event_time.year not in journal.EVENT_YEARS:
        return replace(entry, event_time=None)
    return entry


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
