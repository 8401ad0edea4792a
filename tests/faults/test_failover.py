"""Two servers, active/standby: kill -9 of the leader in the middle of an MLLP stream.

Both engine processes run the same routes.yaml on one PostgreSQL and one RabbitMQ (same
MLLP port: the standby binds it only once it leads, as a shared address would). The sender
resends what had no ACK once the standby listens; every ACKed message is stored once.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from pathlib import Path

import pytest

from engine.leadership import EXIT_STEPPED_DOWN, lock_key
from engine_process import EngineProcess, LockStepStream, mch, wait_for
from fault_setup import RABBITMQ_PG, adt, delivery_statuses, engine_setup, rows
from support import REPORT, scalar

pytestmark = [pytest.mark.services, pytest.mark.slow]

MESSAGES = 600
CONNECTIONS = 2
KILL_AT = 200  # ACKs received before the kill
TAKEOVER_BOUND = 15.0  # seconds from the kill to the standby listening


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def events(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def leadership_of(routes: Path) -> dict[int, str | None]:
    """`status --json`: each live process's pid and its part (leader or standby)."""
    status = json.loads(mch(routes, "status", "--json").stdout)
    return {p["pid"]: p["leadership"] for p in status["processes"] if p["alive"]}


def test_standby_takes_over_after_kill_9_and_nothing_is_lost(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    cids = [f"F{tag}{n:05d}" for n in range(MESSAGES)]
    payloads = [adt(cid, f"{tag}{n:07d}") for n, cid in enumerate(cids)]
    lock = f"failover-{tag}"
    edit = {
        "  allowed_paths:": f"  leadership: {{enabled: true, name: {lock}, check_every: 0.5s}}\n  allowed_paths:"
    }

    with engine_setup(RABBITMQ_PG, tmp_path, routes_edit=edit) as setup:
        first, second = EngineProcess(setup.routes, "first"), EngineProcess(setup.routes, "second")
        try:
            # Both read the port from routes.yaml: a standby prints no listener, and the leader
            # may print its banner a moment before it takes the lock.
            port = int(re.findall(r"listen: 127\.0\.0\.1:(\d+)", setup.routes.read_text())[0])
            first.start()
            wait_for(lambda: listening(port), 20, "the first engine listening", first)
            second.start()
            assert second.ports == {}, "the standby must not listen"
            assert leadership_of(setup.routes) == {first.pid: "leader", second.pid: "standby"}
            assert "standby" in mch(setup.routes, "status").stdout

            stream = LockStepStream(port, payloads, cids, connections=CONNECTIONS, timeout=5).start()
            wait_for(lambda: stream.answered >= KILL_AT, 60, "ACKs before the kill", first)
            first.kill()
            killed_at = time.monotonic()
            wait_for(lambda: listening(port), 30, "the standby listening", second)
            takeover = time.monotonic() - killed_at
            stream.join(30)
            REPORT.append(f"failover: standby listening {takeover:.2f}s after kill -9 of the leader")
            assert takeover <= TAKEOVER_BOUND

            acked, unanswered = stream.acked, stream.unanswered
            assert KILL_AT <= len(acked) < MESSAGES and unanswered, "the kill did not land mid-stream"
            # The sender reconnects to the same address and sends again what had no ACK.
            resent = LockStepStream(
                port,
                [payloads[i] for i in unanswered],
                [cids[i] for i in unanswered],
                connections=CONNECTIONS,
            ).run(60)
            assert resent.codes == ["AA"] * len(unanswered), (
                f"resend: {set(resent.codes)} {resent.errors[:3]}"
            )

            wait_for(
                lambda: (
                    scalar(
                        setup.journal, "select count(*) from journal_deliveries where status = 'delivered'"
                    )
                    >= MESSAGES
                ),
                30,
                "every delivery delivered after the takeover",
                second,
                describe=lambda: delivery_statuses(setup),
            )
            counts = dict(rows(setup.store, "select source_control_id, count(*) from persons group by 1"))
            assert set(counts) == set(cids), f"missing {len(set(cids) - set(counts))}"
            assert max(counts.values()) == 1, [c for c, n in counts.items() if n > 1][:5]

            assert leadership_of(setup.routes)[second.pid] == "leader"

            # While standby the second engine ran no source, no transform: all came after the lock.
            names = [e.get("event") for e in events(second.workdir / "second.log")]
            acquired = names.index("leadership_acquired")
            leader_only = {"channel_listening", "transform_feed_found", "engine_leading"}
            assert not leader_only & set(names[:acquired]), names[:acquired]
            assert "channel_listening" in names[acquired:]

            # The leader's session ends (its database away): it stops listening and exits 3.
            key = lock_key(lock)
            holder = scalar(
                setup.journal,
                "select pid from pg_locks where locktype = 'advisory' and granted "
                "and classid = :high and objid = :low",
                high=(key >> 32) & 0xFFFFFFFF,
                low=key & 0xFFFFFFFF,
            )
            scalar(setup.journal, "select pg_terminate_backend(:pid)", pid=holder)
            assert second.wait_dead(20) == EXIT_STEPPED_DOWN
            assert not listening(port)
            assert "leadership_lost" in [e.get("event") for e in events(second.workdir / "second.log")]
            status = mch(setup.routes, "status", "--json")
            assert status.returncode == 1 and any(
                p.startswith("no_leader:") for p in json.loads(status.stdout)["problems"]
            )
        finally:
            first.kill()
            second.kill()
