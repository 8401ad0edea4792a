"""Roles in separate engines: ingest, transform and deliver split the way a site scales out.

Each engine here is a full `EngineRuntime` with some roles, sharing one real RabbitMQ
and one real PostgreSQL, exactly as separate `mch-engine run --role …` processes do.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kombu import Connection

from core.errors import StartupError
from support import (
    AMQP_URL,
    RunningEngine,
    hl7,
    msa,
    pg_schema,
    require_service,
    scalar,
    wait_until,
    write_routes,
)


def adt(n: int) -> bytes:
    return hl7(
        f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083215||ADT^A04^ADT_A01|ROLE-{n}|P|2.5",
        "EVN|A04|20240321083200",
        f"PID|1||00100{n:05d}^^^HIS^PI||测试{n}^^^^^^L||19940315|F",
    )


def test_split_roles_deliver_everything_once(tmp_path: Path) -> None:
    """Ingest, two transform engines (shards 0/2 and 1/2) and two deliver engines (partitions
    0-1 and 2-3): all 40 persons are stored once, every engine takes part, every delivery is
    recorded."""
    require_service("127.0.0.1", 5672, "RabbitMQ")
    prefix = f"t{uuid.uuid4().hex[:10]}"
    with pg_schema() as url:
        routes = write_routes(tmp_path, database=url, broker=AMQP_URL, queue_prefix=prefix, partitions=4)
        try:
            with (
                RunningEngine(routes, roles=frozenset({"ingest"})) as ingest,
                RunningEngine(routes, roles=frozenset({"transform"}), shard=(0, 2)) as even,
                RunningEngine(routes, roles=frozenset({"transform"}), shard=(1, 2)) as odd,
                RunningEngine(routes, roles=frozenset({"deliver"}), partitions=frozenset({0, 1})) as low,
                RunningEngine(routes, roles=frozenset({"deliver"}), partitions=frozenset({2, 3})) as high,
            ):
                acks = ingest.send([adt(n) for n in range(40)], concurrency=4)
                assert [msa(a)[0] for a in acks] == ["AA"] * 40
                store = ingest.store()
                wait_until(lambda: scalar(store, "select count(*) from persons") == 40, timeout=30)
                wait_until(
                    lambda: (
                        scalar(
                            ingest.journal,
                            "select count(*) from journal_deliveries where status = 'delivered'",
                        )
                        == 40
                    )
                )
                assert (
                    scalar(ingest.journal, "select count(*) from journal_messages where status = 'routed'")
                    == 40
                )
                assert sorted(w.partition for w in low.runtime.workers) == [0, 1]
                assert sorted(w.partition for w in high.runtime.workers) == [2, 3]
                by_engine = [sum(w.delivered for w in e.runtime.workers) for e in (low, high)]
                assert sum(by_engine) == 40 and min(by_engine) > 0
                transformed = [e.runtime.transform.processed for e in (even, odd)]  # type: ignore[union-attr]
                assert sum(transformed) == 40 and min(transformed) > 0
        finally:
            with Connection(AMQP_URL) as conn:
                for p in range(4):
                    conn.default_channel.queue_delete(f"{prefix}.record_store.p{p}")


def test_embedded_ingest_alone_keeps_messages_for_the_next_full_start(tmp_path: Path) -> None:
    """`--role ingest` on the embedded default ACKs and journals; the next full start stores them."""
    routes = write_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")
    with RunningEngine(routes, roles=frozenset({"ingest"})) as ingest:
        assert [msa(a)[0] for a in ingest.send([adt(n) for n in range(5)])] == ["AA"] * 5
        assert scalar(ingest.journal, "select count(*) from journal_messages where status = 'received'") == 5
        assert scalar(ingest.store(), "select count(*) from persons") == 0
    with RunningEngine(routes) as full:
        wait_until(lambda: scalar(full.store(), "select count(*) from persons") == 5)


def test_embedded_bus_refuses_a_split_it_cannot_serve(tmp_path: Path) -> None:
    """memory:// cannot carry records between processes: transform or deliver alone is refused."""
    routes = write_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")
    for roles in ({"transform"}, {"deliver"}, {"ingest", "transform"}):
        with pytest.raises(StartupError, match="memory://"), RunningEngine(routes, roles=frozenset(roles)):
            pass
