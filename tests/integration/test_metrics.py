"""`/metrics`, `/readyz` and `/healthz` of a real engine that received messages over MLLP,
read the way Prometheus reads them (prometheus_client's own parser)."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_status import FAILING, GOOD, REJECTED, UNROUTED, EngineProcess, port_of, routes_with_http, send

from core.masking import masked_url
from core.settings import load_settings
from monitors import engine_status
from support import (
    AMQP_URL,
    REPORT,
    engine_backend,
    free_port,
    pg_schema,
    require_service,
    wait_until,
    write_routes,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        body = response.read().decode("utf-8")
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return body, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def delivered(port: int, n: int) -> Samples | None:
    _, samples = scrape(port)
    done = value(samples, "mch_deliveries_delivered_total", destination="record_store") == n
    return samples if done else None


@pytest.mark.parametrize("backend", ["embedded", "postgresql+rabbitmq"])
def test_metrics_count_what_was_sent(tmp_path: Path, backend: str) -> None:
    """Counters equal what was sent; an idle channel has its series at 0; the latencies are there;
    no patient data in the text."""
    http = free_port()
    with engine_backend(backend, tmp_path) as (database, broker):
        routes = routes_with_http(tmp_path, database, http, broker=broker)
        engine = EngineProcess(routes, tmp_path, banner=4)
        try:
            assert get(http, "/healthz") == (200, b'{"status":"ok"}')
            send(port_of(routes), GOOD, GOOD, REJECTED, UNROUTED, FAILING)
            samples = wait_until(lambda: delivered(http, 1))
            body, samples = scrape(http)
            ready = get(http, "/readyz")
        finally:
            engine.stop()
    hospital, idle = {"channel": "hospital"}, {"channel": "lis_gbk"}
    counters = {
        "mch_messages_received_total": (4, 0),
        "mch_messages_rejected_total": (1, 0),
        "mch_messages_unrouted_total": (1, 0),
        "mch_messages_duplicate_total": (1, 0),
        "mch_messages_control_id_reused_total": (0, 0),
        "mch_channel_listening": (1, 1),
    }
    for name, (busy, quiet) in counters.items():
        assert (value(samples, name, **hospital), value(samples, name, **idle)) == (busy, quiet), name
    assert value(samples, "mch_messages_mapped_total", route="persons") == 1
    assert value(samples, "mch_messages_failed_total", route="persons") == 1  # FAILING's mapping
    assert value(samples, "mch_messages_mapped_total", route="lab-results") == 0
    assert value(samples, "mch_dead_letters_open", destination="") == 1
    assert value(samples, "mch_dead_letters_total", destination="record_store") == 0
    assert value(samples, "mch_deliveries_retrying", destination="record_store") == 0
    assert value(samples, "mch_queue_depth", destination="record_store") == 0
    last = value(samples, "mch_channel_last_message_timestamp_seconds", **hospital)
    assert abs(time.time() - last) < 120
    assert value(samples, "mch_channel_last_message_timestamp_seconds", **idle) == 0
    for q in ("0.5", "0.95", "0.99"):
        assert 0 < value(samples, "mch_ack_latency_seconds", channel="hospital", quantile=q) < 5
        assert math.isnan(value(samples, "mch_ack_latency_seconds", channel="lis_gbk", quantile=q))
        assert 0 < value(samples, "mch_delivery_latency_seconds", destination="record_store", quantile=q) < 60
    assert value(samples, "mch_journal_up") == 1 and value(samples, "mch_broker_up") == 1
    [(_, up)] = [(k, v) for k, v in samples.items() if k[0] == "mch_engine_process_up"]
    assert up == 1
    if backend == "embedded":
        assert value(samples, "mch_disk_free_bytes") > 0
    else:
        assert ("mch_disk_free_bytes", frozenset()) not in samples
    assert "林晓雯" not in body and "0010088001" not in body
    assert ready == (200, b'{"status":"ready","reasons":[]}')


def test_readyz_is_503_while_a_store_is_unreachable(tmp_path: Path) -> None:
    """The record store (PostgreSQL, through a proxy) refuses connections: not ready, with the
    reason, and /metrics says the store is down; it answers again: ready."""
    from faults.engine_process import RefusingProxy

    http = free_port()
    with pg_schema() as store_url, RefusingProxy("127.0.0.1", 5432) as proxy:
        behind = store_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/", 1)
        assert behind != store_url
        routes = routes_with_http(tmp_path, f"sqlite:///{tmp_path}/engine.db", http)
        body = routes.read_text(encoding="utf-8")
        store = f"record_store: {{type: record_store, database: {behind!r}}}"
        routes.write_text(body.replace("record_store: {type: record_store}", store), encoding="utf-8")
        engine = EngineProcess(routes, tmp_path, banner=4)
        try:
            assert wait_until(lambda: get(http, "/readyz")[0] == 200)
            assert value(scrape(http)[1], "mch_store_up", store=masked_url(behind)) == 1
            proxy.refuse()
            code, reasons = get(http, "/readyz")
            _, samples = scrape(http)
            assert get(http, "/healthz")[0] == 200  # alive all the same
            proxy.accept()
            assert wait_until(lambda: get(http, "/readyz")[0] == 200)
        finally:
            engine.stop()
    assert code == 503
    [reason] = json.loads(reasons)["reasons"]
    assert reason == f"store_unreachable:{masked_url(behind)} (OperationalError)"
    assert value(samples, "mch_store_up", store=masked_url(behind)) == 0
    assert value(samples, "mch_journal_up") == 1


def test_roles_as_two_processes_give_the_same_totals(tmp_path: Path) -> None:
    """Ingest + transform in one process, deliver in another: either one's /metrics shows the
    same totals, which are what was sent."""
    require_service("127.0.0.1", 5672, "RabbitMQ")
    prefix = f"t{uuid.uuid4().hex[:10]}"
    ports = free_port(), free_port()
    with pg_schema() as url:
        dirs = [tmp_path / "front", tmp_path / "back"]
        paths = []
        for d, port in zip(dirs, ports, strict=True):
            d.mkdir()
            paths.append(routes_with_http(d, url, port, broker=AMQP_URL, queue_prefix=prefix))
        hospital = port_of(paths[0])
        body = paths[1].read_text(encoding="utf-8")  # the same channel ports in both files
        for name, ch in load_settings(paths[1]).channels.items():
            body = body.replace(f"127.0.0.1:{ch.host_port[1]}", f"127.0.0.1:{port_of(paths[0], name)}")
        paths[1].write_text(body, encoding="utf-8")
        front = EngineProcess(paths[0], dirs[0], "--role", "ingest", "--role", "transform", banner=4)
        back = EngineProcess(paths[1], dirs[1], "--role", "deliver", banner=4)
        try:
            send(hospital, GOOD, REJECTED, UNROUTED)
            wait_until(lambda: delivered(ports[1], 1))
            scraped = [scrape(port)[1] for port in ports]
            # Each process is ready for its own roles: the deliver process listens on nothing.
            assert [get(port, "/readyz")[0] for port in ports] == [200, 200]
        finally:
            back.stop()
            front.stop()
    steady = [{k: v for k, v in s.items() if not _moving(k[0])} for s in scraped]
    assert steady[0] == steady[1]
    s = scraped[0]
    assert value(s, "mch_messages_received_total", channel="hospital") == 3
    assert value(s, "mch_messages_rejected_total", channel="hospital") == 1
    assert value(s, "mch_deliveries_delivered_total", destination="record_store") == 1
    assert sorted(v for k, v in s.items() if k[0] == "mch_engine_process_up") == [1, 1]


def _moving(name: str) -> bool:
    """Series that move with the clock between two scrapes."""
    return "latency" in name or "age" in name or "lag" in name or name == "mch_disk_free_bytes"


def test_collect_stays_fast_with_200_channels(tmp_path: Path) -> None:
    """The dashboard and Prometheus poll collect(): 200 configured channels, a journal with
    rows in them, well under a second."""
    from core.database import make_engine
    from core.journal import RECEIVED, Entry
    from engine.journal import JournalWriter, ensure_schema

    channels = {f"feed{n:03d}": {"encoding": "utf-8", "port": 40000 + n} for n in range(200)}  # none opened
    database = f"sqlite:///{tmp_path}/engine.db"
    routes = write_routes(tmp_path, database=database, channels=channels)
    settings = load_settings(routes)
    db = make_engine(database)
    ensure_schema(db)
    writer = JournalWriter(db)
    writer.start()
    futures = [
        writer.submit(
            Entry(f"feed{n % 200:03d}", GOOD.replace(b"ST-GOOD-1", f"C{n}".encode()), RECEIVED, "", "")
        )
        for n in range(20_000)
    ]
    for f in futures:
        f.result(60)
    writer.stop()
    db.dispose()
    engine_status.collect(settings)  # schema checks, first connection
    started = time.perf_counter()
    status = engine_status.collect(settings)
    took = time.perf_counter() - started
    REPORT.append(f"collect() with 200 channels and 20,000 journal rows: {took * 1000:.0f} ms")
    assert len(status.channels) == 200 and sum(c.received for c in status.channels) == 20_000
    assert all(c.rate_1m > 0 for c in status.channels)
    assert took < 1.0
