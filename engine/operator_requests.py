"""Operator requests: what the CLI (and later the dashboard) asks a running engine to do.

An operator action that needs the engine's own parts (its bus, its transform stage, its
loaded mappings) must not need them in the CLI process: on the embedded default the bus
is in-process and exists only inside the engine. So the CLI writes a request row into
the engine's database, and every running engine process polls that table (about twice a
second) and carries out what its roles can do. The same table keeps the outcome, so the
CLI can say "queued" at once and, with `--wait`, wait for the result.

Two kinds of request:
- `one`: carried out once, by the first process able to (replay, reprocess). A process
  claims it with a lease; if it dies mid-way the lease runs out and another process (or
  the same one after a restart) takes it again. Handlers are idempotent (only open dead
  letters are acted on), so a second run does no harm.
- `all`: carried out by every running process (reload). Each process writes its own
  result row; the request is done when the processes the CLI waits for have answered.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    insert,
    or_,
    select,
    update,
)

from core.clock import now_utc
from core.database import RowId, UtcDateTime

log = structlog.get_logger("engine.operator_requests")

metadata = MetaData()

requests = Table(
    "operator_requests",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("scope", String(8), nullable=False),  # ONE or ALL
    Column("params", Text, nullable=False),  # JSON
    Column("actor", String(200), nullable=False),
    Column("os_user", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("outcome", Text),  # JSON, written by the process that carried it out
    Column("taken_by", String(200)),
    Column("lease_until", UtcDateTime()),
    Column("requested_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
)

results = Table(
    "operator_request_results",
    metadata,
    Column("request_id", RowId, nullable=False),
    Column("process", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("outcome", Text),
    Column("finished_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("request_id", "process"),
)

ONE = "one"
ALL = "all"

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
FINISHED = frozenset({DONE, FAILED})

LEASE = timedelta(minutes=5)
"""How long a claimed request stays with its process before another may take it again."""

Handler = Callable[[dict[str, Any], "Request"], dict[str, Any]]
"""Carries out one request: its params in, a JSON-able outcome out; raise to fail it."""


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    kind: str
    scope: str
    params: dict[str, Any]
    actor: str
    os_user: str
    status: str
    outcome: dict[str, Any] | None
    taken_by: str | None
    requested_at: datetime
    finished_at: datetime | None
    results: dict[str, tuple[str, dict[str, Any] | None]] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def process_name() -> str:
    """This process as other processes and operators see it: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def submit(
    engine: Engine, kind: str, params: Mapping[str, Any], *, actor: str, os_user: str, scope: str = ONE
) -> int:
    """Queue a request; returns its id at once."""
    ensure_schema(engine)
    row = {
        "kind": kind,
        "scope": scope,
        "params": json.dumps(dict(params), ensure_ascii=False, default=str),
        "actor": actor,
        "os_user": os_user,
        "status": QUEUED,
        "requested_at": now_utc(),
    }
    with engine.begin() as conn:
        return int(conn.execute(insert(requests).values(**row)).inserted_primary_key[0])


def get(engine: Engine, request_id: int) -> Request | None:
    with engine.connect() as conn:
        row = conn.execute(select(requests).where(requests.c.id == request_id)).mappings().first()
        if row is None:
            return None
        answers = conn.execute(select(results).where(results.c.request_id == request_id)).mappings().all()
    per_process = {a["process"]: (a["status"], _load(a["outcome"])) for a in answers}
    return _request(row, per_process)


def wait(
    engine: Engine,
    request_id: int,
    timeout: float,
    *,
    done: Callable[[Request], bool] = lambda r: r.finished,
    interval: float = 0.2,
) -> Request | None:
    """Poll until `done(request)` or the timeout; the last state seen (None: no such request)."""
    stop = threading.Event()
    deadline = now_utc() + timedelta(seconds=timeout)
    current = get(engine, request_id)
    while current is not None and not done(current) and now_utc() < deadline:
        stop.wait(interval)
        current = get(engine, request_id)
    return current


def finish(engine: Engine, request_id: int, status: str, outcome: Mapping[str, Any]) -> None:
    """Close a whole request (for `all` requests, the waiting CLI decides and calls this)."""
    with engine.begin() as conn:
        conn.execute(
            update(requests)
            .where(requests.c.id == request_id)
            .values(
                status=status, outcome=json.dumps(dict(outcome), ensure_ascii=False), finished_at=now_utc()
            )
        )


class RequestPoller:
    """Runs in every engine process: claims the requests its handlers know and runs them."""

    def __init__(
        self,
        engine: Engine,
        handlers: Mapping[str, Handler],
        *,
        interval: float = 0.5,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.handlers = dict(handlers)
        self.interval = interval
        self.name = name or process_name()
        self.started_at = now_utc()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ensure_schema(self.engine)
        self._thread = threading.Thread(target=self._run, name="operator-requests", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and self.poll_once():
                    pass
            except Exception as exc:  # the database is away: try again at the next tick
                log.warning("operator_requests_unreadable", error=type(exc).__name__)
            self._stop.wait(self.interval)

    def poll_once(self) -> bool:
        """Carry out one waiting request if there is one; True if one was run."""
        request = self._claim_one() or self._next_broadcast()
        if request is None:
            return False
        handler = self.handlers[request.kind]
        log.info("operator_request_started", request=request.id, kind=request.kind, actor=request.actor)
        try:
            outcome, status = handler(request.params, request), DONE
        except Exception as exc:
            outcome, status = {"error": f"{type(exc).__name__}: {exc}"}, FAILED
        log.info("operator_request_finished", request=request.id, kind=request.kind, status=status)
        self._record(request, status, outcome)
        return True

    def _claim_one(self) -> Request | None:
        kinds = list(self.handlers)
        now = now_utc()
        claimable = and_(
            requests.c.scope == ONE,
            requests.c.kind.in_(kinds),
            or_(
                requests.c.status == QUEUED,
                and_(requests.c.status == RUNNING, requests.c.lease_until < now),
            ),
        )
        with self.engine.begin() as conn:
            row = (
                conn.execute(select(requests).where(claimable).order_by(requests.c.id).limit(1))
                .mappings()
                .first()
            )
            if row is None:
                return None
            # Compare-and-set: of two processes that saw the same row, one wins.
            taken = conn.execute(
                update(requests)
                .where(requests.c.id == row["id"], requests.c.status == row["status"])
                .where(or_(requests.c.taken_by.is_(None), requests.c.taken_by == row["taken_by"]))
                .values(status=RUNNING, taken_by=self.name, lease_until=now + LEASE)
            ).rowcount
        return _request(row, {}) if taken == 1 else None

    def _next_broadcast(self) -> Request | None:
        """The oldest `all` request made since this process started that it has not answered."""
        answered = select(results.c.request_id).where(results.c.process == self.name)
        query = (
            select(requests)
            .where(
                requests.c.scope == ALL,
                requests.c.kind.in_(list(self.handlers)),
                requests.c.status.in_([QUEUED, RUNNING]),
                requests.c.requested_at >= self.started_at,
                requests.c.id.not_in(answered),
            )
            .order_by(requests.c.id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _request(row, {}) if row is not None else None

    def _record(self, request: Request, status: str, outcome: dict[str, Any]) -> None:
        text = json.dumps(outcome, ensure_ascii=False, default=str)
        with self.engine.begin() as conn:
            if request.scope == ONE:
                conn.execute(
                    update(requests)
                    .where(requests.c.id == request.id)
                    .values(status=status, outcome=text, finished_at=now_utc(), lease_until=None)
                )
            else:
                conn.execute(
                    insert(results).values(
                        request_id=request.id,
                        process=self.name,
                        status=status,
                        outcome=text,
                        finished_at=now_utc(),
                    )
                )
                conn.execute(
                    update(requests)
                    .where(requests.c.id == request.id, requests.c.status == QUEUED)
                    .values(status=RUNNING)
                )


def _load(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


def _request(row: Mapping[str, Any], per_process: dict[str, tuple[str, dict[str, Any] | None]]) -> Request:
    return Request(
        id=int(row["id"]),
        kind=row["kind"],
        scope=row["scope"],
        params=json.loads(row["params"]),
        actor=row["actor"],
        os_user=row["os_user"],
        status=row["status"],
        outcome=_load(row["outcome"]),
        taken_by=row["taken_by"],
        requested_at=row["requested_at"],
        finished_at=row["finished_at"],
        results=per_process,
    )
