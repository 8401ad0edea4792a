"""Who leads of two servers sharing one PostgreSQL: a session advisory lock.

Both servers run the same routes.yaml. What must happen once (listeners and every other
source, the journal writer, the transform stage, schedulers) runs only on the server that
holds the lock; the other waits as standby and tries the lock every `check_every`.

The lock belongs to one PostgreSQL session on a connection of its own, so it is released
the moment that session ends: the process dies (the kernel closes the socket), or its
server stops answering (PostgreSQL's TCP keepalives and `tcp_user_timeout`, set for this
session, drop it after `SERVER_DROPS_AFTER`). A leader that cannot confirm its session
within `LEADER_GIVES_UP_AFTER` (shorter, on its own end of the connection, plus at most
one `check_every`) has LOST leadership and must stop listening at once (the runtime
stops the process, which exits with `EXIT_STEPPED_DOWN`, and systemd starts it again as
standby): that is the fencing that keeps two leaders from listening at the same time.

Who leads is also written to `engine_leader` (name, HOST:PID, since) for `status` and the
dashboard; the lock, not the row, is the truth.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog
from sqlalchemy import Column, Engine, MetaData, String, Table, make_url, select

from core import i18n
from core.clock import now_utc
from core.database import UtcDateTime, once_per_database
from core.i18n import t
from engine.operator_requests import process_name

log = structlog.get_logger("engine.leadership")

EXIT_STEPPED_DOWN = 3
"""The exit code of a leader that lost leadership (systemd `Restart=always` restarts it)."""

SERVER_DROPS_AFTER = 5
"""Seconds of silence after which PostgreSQL ends the session, freeing the lock."""

LEADER_GIVES_UP_AFTER = 3
"""Seconds after which the leader's own end gives up on an unanswered check (shorter than
`SERVER_DROPS_AFTER` by more than `check_every` may be: it stops before the standby starts)."""

_SERVER_KEEPALIVE = {"keepalives_idle": 2, "keepalives_interval": 1, "keepalives_count": 3}  # 5 s
_CLIENT_KEEPALIVE = {"keepalives_idle": 1, "keepalives_interval": 1, "keepalives_count": 2}  # 3 s

metadata = MetaData()

engine_leader = Table(
    "engine_leader",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("process", String(200), nullable=False),  # HOST:PID, as engine/heartbeat.py names it
    Column("since", UtcDateTime(), nullable=False),
)

i18n.register(
    {
        "lead_needs_shared": (
            "engine.leadership.enabled 需要两台服务器共享的 PostgreSQL（engine.database: "
            "postgresql+psycopg://…）和 RabbitMQ（engine.broker: amqp://…）；现为 {database} 与 {broker}。"
            "内置默认（SQLite 与进程内总线）天然只能单机运行，见 docs/operations.md「双机热备」",
            "engine.leadership.enabled needs a PostgreSQL database (engine.database: "
            "postgresql+psycopg://...) and a RabbitMQ broker (engine.broker: amqp://...) shared by both "
            "servers; found {database} and {broker}. The embedded default (SQLite, the in-process bus) "
            "is a single server by nature: see docs/operations.md, Two servers",
        ),
        "lead_leader": ("主用：{process}（自 {since} 起）", "leader: {process} (since {since})"),
        "lead_standby": ("备用：{process}", "standby: {process}"),
        "lead_no_leader": ("双机热备 {name}：没有存活的主用进程", "active/standby {name}: no process leads"),
        "lead_waiting": (
            "双机热备（锁 {name}）：备用，取得主用身份后才监听和轮询",
            "active/standby (lock {name}): standby, listens and polls once it leads",
        ),
        "status_cmd_no_leader": (
            "已启用双机热备（锁 {subject}），但没有存活的进程担任主用：不接收消息",
            "leadership is enabled (lock {subject}) but no live process leads: no messages are taken in",
        ),
    }
)

STANDBY = "standby"
LEADING = "leading"
LOST = "lost"
STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Leader:
    name: str
    process: str
    since: datetime


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key from the lock's name."""
    digest = hashlib.sha256(f"mch-engine leadership:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def refusal(settings: Any) -> str | None:
    """Why these settings cannot run as two servers (None: they can, or leadership is off)."""
    eng = settings.engine
    if not eng.leadership.enabled:
        return None
    scheme = make_url(eng.database).get_backend_name()
    if scheme == "postgresql" and eng.broker.startswith("amqp://"):
        return None
    return t("lead_needs_shared", database=f"{scheme}://…", broker=eng.broker.split("://")[0] + "://…")


def ensure_schema(engine: Engine) -> None:
    """Once per database and process: `status` and the dashboard read the table on every look."""
    once_per_database(engine, engine_leader.name, metadata.create_all)


def read_leader(engine: Engine, name: str) -> Leader | None:
    """The last process that took leadership under `name` (it may since have died)."""
    ensure_schema(engine)
    with engine.connect() as conn:
        row = conn.execute(select(engine_leader).where(engine_leader.c.name == name)).mappings().first()
    return Leader(row["name"], row["process"], row["since"]) if row else None


def conninfo(url: str) -> str:
    """A libpq URI from the engine's SQLAlchemy URL (postgresql+psycopg://...)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Leadership:
    """Tries the lock while standby, checks it while leading, from a thread of its own.

    `on_acquired()` and `on_lost()` run on this thread; after `on_lost` the thread ends (a
    process that lost leadership stops; it never leads again without a restart)."""

    def __init__(
        self,
        url: str,
        name: str,
        check_every: float,
        *,
        on_acquired: Callable[[], None],
        on_lost: Callable[[], None],
        process: str | None = None,
    ) -> None:
        self.conninfo = conninfo(url)
        self.name = name
        self.key = lock_key(name)
        self.check_every = check_every
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.process = process or process_name()
        self.state = STANDBY
        self.since: datetime | None = None
        self.backend_pid: int | None = None  # the PostgreSQL session holding (or trying) the lock
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._losing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)

    @property
    def leading(self) -> bool:
        return self.state == LEADING

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Give the lock up (closing the session releases it) and end the thread."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.check_every + SERVER_DROPS_AFTER + 2)
        self._close()
        if self.state != LOST:
            self.state = STOPPED

    def _run(self) -> None:
        while not self._stop.is_set() and self.state != LOST:
            if self.state == STANDBY:
                self._try()
            elif self.state == LEADING and not self._holds():
                self._lose("check_failed")
                self._close()
                return
            self._stop.wait(self.check_every)

    def _lose(self, reason: str) -> None:
        """Once: LOST, logged, and `on_lost` (from this thread or the check's watchdog)."""
        with self._losing:
            if self.state != LEADING or self._stop.is_set():
                return
            self.state = LOST
        log.error("leadership_lost", lock=self.name, process=self.process, reason=reason)
        self.on_lost()

    def _try(self) -> None:
        try:
            conn = self._connect()
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            if not got or not got[0]:
                return
            self.since = now_utc()
            conn.execute(
                "INSERT INTO engine_leader (name, process, since) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET process = EXCLUDED.process, since = EXCLUDED.since",
                (self.name, self.process, self.since),
            )
        except psycopg.Error as exc:  # the database is away: still standby, try again
            log.warning("leadership_unavailable", lock=self.name, error=type(exc).__name__)
            self._close()
            return
        if self._stop.is_set():  # stopped while it tried: `stop` closes the session
            return
        self.state = LEADING
        log.info("leadership_acquired", lock=self.name, process=self.process)
        self.on_acquired()

    def _holds(self) -> bool:
        """The session is alive and still holds the lock. A check that hangs (a frozen
        network device keeps the TCP connection up but answers nothing) counts as lost after
        `LEADER_GIVES_UP_AFTER`, from a watchdog timer, even while the check still waits."""
        watchdog = threading.Timer(LEADER_GIVES_UP_AFTER, self._lose, args=("check_unanswered",))
        watchdog.daemon = True
        watchdog.start()
        try:
            assert self._conn is not None
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND objid = (%s::bigint & 4294967295)::oid",
                (self.key,),
            ).fetchone()
        except (psycopg.Error, AssertionError) as exc:
            log.warning("leadership_check_failed", lock=self.name, error=type(exc).__name__)
            return False
        finally:
            watchdog.cancel()
        return bool(row and row[0]) and self.state == LEADING

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.conninfo,
                autocommit=True,
                connect_timeout=LEADER_GIVES_UP_AFTER,
                keepalives=1,
                tcp_user_timeout=LEADER_GIVES_UP_AFTER * 1000,
                application_name="mch-engine leadership",
                **_CLIENT_KEEPALIVE,
            )
            for setting, value in _SERVER_KEEPALIVE.items():
                self._conn.execute(f"SET tcp_{setting} = {value}")
            self._conn.execute(f"SET tcp_user_timeout = {SERVER_DROPS_AFTER * 1000}")
            self._conn.execute(f"SET statement_timeout = {(LEADER_GIVES_UP_AFTER - 1) * 1000}")
            self.backend_pid = self._conn.info.backend_pid
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
