"""The retention pruner: deletes finished data older than its period (core/settings/retention.py).

Nothing unfinished goes: a message still received, with a delivery not yet delivered, or
that a dead letter (of any status) points at; an open dead letter and the attempts behind
it; a WeChat notice not in a final status, and WeChat's report on a notice still kept; an
operator request not yet done; an alert still firing; a dashboard session used within its
period; a message's `mllp_out` forwarding mark while its message is kept. A message's raw
bytes go with its row, with its deliveries, routes and attempts: a row without its bytes
could be neither shown, replayed nor reprocessed, and the bytes are most of its size.

Deletes run in batches of `batch` rows, each its own short transaction (select the ids, then
delete them by key: portable to SQLite, PostgreSQL and MariaDB, which refuses `LIMIT` in an
`IN` subquery), with `pause` between batches so the journal writer is never held up for long.
The journal's and the attempts' ids grow with time, so a pass reads only the rows older than
the period (it stops at the first id inside it), not the whole table. On SQLite the free
pages beyond a tenth of the file are then given back to the file system, at most
`vacuum_pages` per pass. A real pass adds its counts to `retention_totals`
(engine/retention_totals.py), which `/metrics` and `status` read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    TableClause,
    column,
    delete,
    exists,
    func,
    inspect,
    select,
    table,
    true,
)

from channels.mllp_out.forwarded import forwarded
from channels.wechat import ledger
from channels.wechat.delivery_reports import wechat_delivery_reports
from core.clock import now_utc
from core.journal import DELIVERED, FAILED, REJECTED, ROUTED, UNROUTED
from core.journal.schema import deliveries, messages, routes_taken
from core.settings.retention import RetentionSettings
from deadletter import audit
from deadletter import store as dead_letters
from engine import operator_requests, retention_totals

log = structlog.get_logger("engine.retention")

KINDS = (
    "messages",
    "deliveries",
    "attempts",
    "dead_letters",
    "forwarded",
    "notices",
    "delivery_reports",
    "operator_requests",
    "alerts",
    "sessions",
    "audit",
)
"""What a pass reports, per kind: deliveries go with their messages, under their own count."""

# The monitors' tables, by name only (the engine layer does not import the monitors):
# monitors/alerts/store.py and monitors/web/sessions.py own them.
_alerts = table("alerts", column("id"), column("state"), column("resolved_at"))
_ALERT_RESOLVED = "resolved"
_web_sessions = table("web_sessions", column("id_hash"), column("last_seen_at"))

KEEP_FREE = 0.10  # SQLite: this share of the file may stay free pages, for new rows to reuse
FIRST_PASS_AFTER = 60.0  # seconds after start: the engine first takes its traffic again

_FINISHED_MESSAGE = (ROUTED, UNROUTED, REJECTED, FAILED)


@dataclass(frozen=True)
class _Kind:
    """One kind of row: its table, its age column, what makes a row finished, and what goes
    with it (`also`, counted under other kinds). `key` (default `id`) is what batches are
    chosen and deleted by; `period` (default the kind's name) names its RetentionSettings
    field; `needs`, the other tables `finished` reads (absent: the kind is skipped)."""

    name: str
    table: TableClause
    age: ColumnElement[Any]
    finished: Callable[[], ColumnElement[bool]]
    ordered: bool  # keys grow with `age`: a pass stops at the first row inside the period
    also: Callable[[Connection, list[Any]], dict[str, int]] | None = None
    also_counted: Callable[[Any], tuple[dict[str, Any], dict[str, ColumnElement[bool]]]] | None = None
    key: ColumnElement[Any] | None = None
    period: str = ""
    needs: tuple[str, ...] = ()

    @property
    def key_column(self) -> ColumnElement[Any]:
        return self.key if self.key is not None else self.table.c.id

    @property
    def period_name(self) -> str:
        return self.period or self.name


def _message_finished() -> ColumnElement[bool]:
    m, d, dl = messages.c, deliveries.c, dead_letters.dead_letters.c
    undelivered = exists().where((d.journal_id == m.id) & (d.status != DELIVERED))
    dead_lettered = exists().where(dl.journal_id == m.id)
    return m.status.in_(_FINISHED_MESSAGE) & ~undelivered & ~dead_lettered


def _with_message(conn: Connection, ids: list[int]) -> dict[str, int]:
    """A message's deliveries, routes and attempts go in the same transaction as its row."""
    gone = conn.execute(delete(deliveries).where(deliveries.c.journal_id.in_(ids))).rowcount
    conn.execute(delete(routes_taken).where(routes_taken.c.journal_id.in_(ids)))
    a = dead_letters.attempts
    tried = conn.execute(delete(a).where(a.c.journal_id.in_(ids))).rowcount
    return {"deliveries": gone, "attempts": tried}


def _counted_with_message(chosen: Any) -> tuple[dict[str, Any], dict[str, ColumnElement[bool]]]:
    """A dry run's counts of what goes with the chosen messages, and what the later kinds
    must then leave out so nothing is counted twice (their attempts)."""
    a = dead_letters.attempts
    counts = {
        "deliveries": select(func.count()).where(deliveries.c.journal_id.in_(chosen)),
        "attempts": select(func.count()).select_from(a).where(a.c.journal_id.in_(chosen)),
    }
    return counts, {"attempts": ~a.c.journal_id.in_(chosen)}


def _attempt_finished() -> ColumnElement[bool]:
    a, d, dl = dead_letters.attempts.c, deliveries.c, dead_letters.dead_letters.c
    open_letter = exists().where((dl.journal_id == a.journal_id) & (dl.status == dead_letters.OPEN))
    pending = exists().where(
        (d.journal_id == a.journal_id)
        & (d.destination == a.destination)
        & (d.record_id == a.record_id)
        & (d.status != DELIVERED)
    )
    return ~open_letter & ~pending


def _forwarded_finished() -> ColumnElement[bool]:
    """A forwarding mark dedups the envelopes of one message: needed while its message is."""
    return ~exists().where(messages.c.id == forwarded.c.journal_id)


def _report_finished() -> ColumnElement[bool]:
    """WeChat's report on a notice is read with the notice: it goes once the notice has."""
    n, r = ledger.notices.c, wechat_delivery_reports.c
    return ~exists().where(n.msgid == r.msgid)


def _with_request(conn: Connection, ids: list[Any]) -> dict[str, int]:
    """Each process's answer to a request goes with it."""
    results = operator_requests.results
    conn.execute(delete(results).where(results.c.request_id.in_(ids)))
    return {}


def _kinds() -> list[_Kind]:
    dl, n, log_ = dead_letters.dead_letters, ledger.notices, audit.audit_log
    reports, req = wechat_delivery_reports, operator_requests.requests
    return [
        _Kind(
            "messages",
            messages,
            messages.c.received_at,
            _message_finished,
            ordered=True,
            also=_with_message,
            also_counted=_counted_with_message,
        ),
        _Kind("attempts", dead_letters.attempts, dead_letters.attempts.c.at, _attempt_finished, ordered=True),
        # After the messages: a message a resolved dead letter points at goes in the next pass.
        _Kind(
            "dead_letters",
            dl,
            dl.c.resolved_at,
            lambda: (dl.c.status != dead_letters.OPEN) & dl.c.resolved_at.is_not(None),
            ordered=False,
        ),
        _Kind(
            "forwarded",
            forwarded,
            forwarded.c.updated_at,
            _forwarded_finished,
            ordered=False,
            key=forwarded.c.journal_id,
            period="messages",
            needs=(messages.name,),
        ),
        _Kind("notices", n, n.c.created_at, lambda: n.c.status.in_(sorted(ledger.FINAL)), ordered=True),
        # After the notices: a report goes in the pass its notice went.
        _Kind(
            "delivery_reports",
            reports,
            reports.c.at,
            _report_finished,
            ordered=False,
            key=reports.c.msgid,
            period="notices",
            needs=(n.name,),
        ),
        _Kind(
            "operator_requests",
            req,
            req.c.requested_at,
            lambda: req.c.status.in_(sorted(operator_requests.FINISHED)),
            ordered=True,
            also=_with_request,
        ),
        _Kind(
            "alerts",
            _alerts,
            _alerts.c.resolved_at,
            lambda: (_alerts.c.state == _ALERT_RESOLVED) & _alerts.c.resolved_at.is_not(None),
            ordered=False,
        ),
        _Kind(
            "sessions",
            _web_sessions,
            _web_sessions.c.last_seen_at,
            true,
            ordered=False,
            key=_web_sessions.c.id_hash,
        ),
        _Kind("audit", log_, log_.c.at, true, ordered=True),
    ]


def prune_once(
    engine: Engine,
    settings: RetentionSettings,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """One pass: rows per kind deleted (or, with `dry_run`, that would be). A table this
    database does not have (no WeChat destination ever ran) counts 0. `stop` ends the pass
    between two batches."""
    now = now or now_utc()
    tables = set(inspect(engine).get_table_names())
    counts = dict.fromkeys(KINDS, 0)
    left_out: dict[str, ColumnElement[bool]] = {}  # a dry run's rows already counted with others
    for kind in _kinds():
        if not {kind.table.name, *kind.needs} <= tables or (stop is not None and stop.is_set()):
            continue
        cutoff = now - timedelta(seconds=settings.period(kind.period_name))
        if dry_run:
            for name, n in _count(engine, kind, cutoff, left_out).items():
                counts[name] += n
        else:
            for name, n in _delete(engine, kind, cutoff, settings, stop).items():
                counts[name] += n
    return counts


def _chosen(kind: _Kind, cutoff: datetime, below: Any) -> ColumnElement[bool]:
    key = kind.key_column
    cond = (kind.age < cutoff) & kind.finished()
    return cond if below is None else cond & (key < below)


def _boundary(conn: Connection, kind: _Kind, cutoff: datetime) -> Any:
    """The first key inside the period, for a kind whose keys grow with its age (None: every
    row is older, or the keys do not follow the age)."""
    if not kind.ordered:
        return None
    key = kind.key_column
    return conn.execute(select(key).where(kind.age >= cutoff).order_by(key).limit(1)).scalar()


def _count(
    engine: Engine, kind: _Kind, cutoff: datetime, left_out: dict[str, ColumnElement[bool]]
) -> dict[str, int]:
    with engine.connect() as conn:
        where = _chosen(kind, cutoff, _boundary(conn, kind, cutoff))
        if kind.name in left_out:
            where = where & left_out[kind.name]
        counts = {
            kind.name: int(
                conn.execute(select(func.count()).select_from(kind.table).where(where)).scalar() or 0
            )
        }
        if kind.also_counted is not None:
            chosen = select(kind.key_column).where(where)
            queries, excluded = kind.also_counted(chosen)
            for name, query in queries.items():
                counts[name] = int(conn.execute(query).scalar() or 0)
            left_out.update(excluded)
    return counts


def _delete(
    engine: Engine, kind: _Kind, cutoff: datetime, settings: RetentionSettings, stop: threading.Event | None
) -> dict[str, int]:
    key = kind.key_column
    counts = {kind.name: 0}
    with engine.connect() as conn:
        below = _boundary(conn, kind, cutoff)
    last: Any = None
    while stop is None or not stop.is_set():
        with engine.begin() as conn:
            after = _chosen(kind, cutoff, below)
            if last is not None:
                after = after & (key > last)
            query = select(key).where(after).order_by(key).limit(settings.batch)
            if kind.key is not None:  # a key that may repeat (a message at two destinations)
                query = query.distinct()
            ids = list(conn.execute(query).scalars())
            if not ids:
                break
            if kind.also is not None:
                for name, n in kind.also(conn, ids).items():
                    counts[name] = counts.get(name, 0) + n
            counts[kind.name] += conn.execute(delete(kind.table).where(key.in_(ids))).rowcount
        last = ids[-1]
        if len(ids) < settings.batch:
            break
        if settings.pause:
            time.sleep(settings.pause)
    return counts


def reclaim_space(engine: Engine, max_pages: int) -> int:
    """SQLite: give free pages back to the file system, those beyond `KEEP_FREE` of the file
    (new rows reuse them: giving back what the next hour fills again only moves pages
    about), at most `max_pages`; the pages given. A file made before incremental
    auto-vacuum keeps its free pages for new rows (a one-off offline VACUUM converts it).
    PostgreSQL reuses the space itself (autovacuum): 0."""
    if engine.dialect.name != "sqlite" or max_pages <= 0:
        return 0
    with engine.connect() as conn:
        if conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() != 2:  # 2: INCREMENTAL
            return 0
        free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
        total = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
        pages = min(free - int(total * KEEP_FREE), max_pages)
        if pages > 0:
            # Through the driver's script call: it steps the statement to its end, where a
            # plain execute frees one page only.
            conn.connection.driver_connection.executescript(f"PRAGMA incremental_vacuum({pages});")  # type: ignore[union-attr]
    return max(pages, 0)


def run_pass(
    engine: Engine, settings: RetentionSettings, stop: threading.Event | None = None
) -> tuple[dict[str, int], int]:
    """A pass now, its counts added to the totals, its space reclaimed, and one
    `retention_pruned` event (counts only):
    the rows deleted per kind and the SQLite pages given back."""
    started = time.monotonic()
    at = now_utc()
    counts = prune_once(engine, settings, at, stop=stop)
    retention_totals.record(engine, counts, at)
    pages = reclaim_space(engine, settings.vacuum_pages)
    log.info("retention_pruned", **counts, pages_freed=pages, seconds=round(time.monotonic() - started, 3))
    return counts, pages


class Pruner:
    """Runs a pass every `settings.every` seconds from a thread of its own (the first one
    shortly after start); a failed pass is logged and tried again at the next."""

    def __init__(
        self, engine: Engine, settings: RetentionSettings, first_after: float = FIRST_PASS_AFTER
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.first_after = first_after
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        wait = min(self.first_after, self.settings.every)
        while not self._stop.wait(wait):
            try:
                run_pass(self.engine, self.settings, self._stop)
            except Exception as exc:
                log.error("retention_failed", error=type(exc).__name__)
            self.passes += 1
            wait = self.settings.every
