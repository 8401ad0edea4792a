"""Two Leadership objects on one real PostgreSQL: one leads, the other takes over when the
leader's session ends, and the old leader learns it lost."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import make_url, text

from core.database import make_engine
from engine import leadership
from engine.leadership import LEADER_GIVES_UP_AFTER, LEADING, LOST, STANDBY, Leadership
from support import REPORT, pg_schema


class Contender:
    """One server's Leadership with its callbacks recorded."""

    def __init__(self, url: str, name: str, process: str) -> None:
        self.acquired = threading.Event()
        self.lost = threading.Event()
        self.lead = Leadership(
            url, name, 0.1, on_acquired=self.acquired.set, on_lost=self.lost.set, process=process
        )


@pytest.fixture
def url() -> Iterator[str]:
    with pg_schema() as schema_url:
        engine = make_engine(schema_url)
        leadership.ensure_schema(engine)
        engine.dispose()
        yield schema_url


def test_one_leads_and_the_other_takes_over_when_its_session_ends(url: str) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    first, second = Contender(url, name, "host-a:1"), Contender(url, name, "host-b:2")
    first.lead.start()
    assert first.acquired.wait(5)
    second.lead.start()
    time.sleep(0.5)  # several tries of the lock
    assert (first.lead.state, second.lead.state) == (LEADING, STANDBY)
    assert not second.acquired.is_set()

    engine = make_engine(url)
    try:
        assert leadership.read_leader(engine, name).process == "host-a:1"
        started = time.monotonic()
        with engine.begin() as conn:  # the leader's session dies, as when its server does
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first.lead.backend_pid})
        assert second.acquired.wait(5)
        REPORT.append(f"leadership: standby took the lock {time.monotonic() - started:.2f}s after the kill")
        assert first.lost.wait(5)
        assert first.lead.state == LOST and second.lead.state == LEADING
        assert leadership.read_leader(engine, name).process == "host-b:2"
    finally:
        second.lead.stop()
        first.lead.stop()
        engine.dispose()


def test_a_clean_stop_hands_the_lock_over_and_names_differ_per_site(url: str) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    first, second = Contender(url, name, "host-a:1"), Contender(url, name, "host-b:2")
    other_site = Contender(url, f"{name}-other", "host-c:3")
    for c in (first, other_site):
        c.lead.start()
    try:
        assert first.acquired.wait(5) and other_site.acquired.wait(5)  # another site's lock is its own
        second.lead.start()
        first.lead.stop()
        assert second.acquired.wait(5)
        assert not first.lost.is_set()  # it stepped aside, it did not lose
    finally:
        for c in (second, other_site, first):
            c.lead.stop()


class FreezingProxy:
    """A TCP proxy to PostgreSQL that can go silent: connections stay open, no byte passes
    (a hung network device). Closing it cuts every connection."""

    def __init__(self) -> None:
        self.frozen = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                down, _ = self._listener.accept()
                up = socket.create_connection(("127.0.0.1", 5432))
                self._sockets += [down, up]
                for a, b in ((down, up), (up, down)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)
                dst.sendall(data)

    def close(self) -> None:
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_a_leader_whose_checks_go_unanswered_steps_down_within_the_bound(url: str) -> None:
    """The network to PostgreSQL hangs: the leader counts itself lost after
    LEADER_GIVES_UP_AFTER (plus one check_every), even though its check never returns."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    proxy = FreezingProxy()
    through = make_url(url).set(port=proxy.port).render_as_string(hide_password=False)
    leader, standby = Contender(through, name, "host-a:1"), Contender(url, name, "host-b:2")
    leader.lead.start()
    try:
        assert leader.acquired.wait(5)
        standby.lead.start()
        proxy.frozen.set()
        frozen_at = time.monotonic()
        assert leader.lost.wait(LEADER_GIVES_UP_AFTER + 2)
        REPORT.append(
            f"leadership: unanswered checks, leader stepped down after {time.monotonic() - frozen_at:.2f}s"
        )
        assert not standby.acquired.is_set()  # PostgreSQL still holds the silent session's lock
        proxy.close()  # the leader's process exits: its connection closes
        assert standby.acquired.wait(5)
    finally:
        proxy.close()
        standby.lead.stop()
        leader.lead.stop()


def test_a_standby_keeps_trying_while_the_database_is_unreachable() -> None:
    lost: list[str] = []
    acquired = threading.Event()
    lead = Leadership(
        "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        "x",
        0.1,
        on_acquired=acquired.set,
        on_lost=lambda: lost.append("lost"),
    )
    lead.start()
    try:
        time.sleep(0.5)  # several failed tries
        assert lead.state == STANDBY and not acquired.is_set() and not lost
    finally:
        lead.stop()
