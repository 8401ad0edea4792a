"""`/metrics` in Prometheus' text format, built from `engine_status.collect()` at each scrape.

No number is counted in this process: every value comes from the journal database and the
heartbeat rows, so the totals are the same whichever process serves the scrape and however
the roles are spread over processes. Every configured channel, route and destination has
its series from the start (0 until something happens), so a rule over a feed that never
sent is still evaluated. Labels are names from routes.yaml, never a message's content.

Latencies are Prometheus summaries with `quantile` labels and no `_sum`/`_count`: they are
quantiles of the recent window (monitors/recent_window.py), not a cumulative histogram —
the journal keeps the times, not per-bucket counts since the start, and buckets rebuilt
from a sliding window would go down, which a histogram's counters must never do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from core.settings import Settings
from engine.retention import KINDS
from monitors.engine_status import ChannelNumbers, EngineStatus, Unreachable, collect
from monitors.recent_window import QUANTILES

PATH = "/metrics"


def _counter(name: str, doc: str, label: str, values: Iterable[tuple[str, float]]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in values:
        family.add_metric([key], value)
    return family


def _gauge(
    name: str, doc: str, labels: list[str], values: Iterable[tuple[list[str], float | None]]
) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in values:
        family.add_metric(key, math.nan if value is None else value)
    return family


def _summary(name: str, doc: str, label: str, values: Iterable[tuple[str, list[float | None]]]) -> Metric:
    family = Metric(name, doc, "summary")
    for key, quantiles in values:
        for q, value in zip(QUANTILES, quantiles, strict=True):
            family.add_sample(name, {label: key, "quantile": str(q)}, math.nan if value is None else value)
    return family


def families(status: EngineStatus) -> Iterator[Metric]:
    """Every metric of one status, in the order of docs/monitoring.md."""
    ch, rt, ds = status.channels, status.routes, status.destinations
    per_channel = (
        ("received", "Messages journaled (accepted or rejected), duplicates not counted again", "received"),
        ("rejected", "Messages answered AR/CR: they could not be taken", "rejected"),
        ("unrouted", "Messages no route took", "unrouted"),
        ("duplicate", "Messages sent again with the same control id and bytes", "duplicates"),
        ("control_id_reused", "Messages whose control id an earlier message had", "control_id_reused"),
    )
    for short, doc, attr in per_channel:
        yield _counter(f"mch_messages_{short}", doc, "channel", ((c.name, getattr(c, attr)) for c in ch))
    yield _counter(
        "mch_messages_mapped", "Messages a route mapped to records", "route", ((r.name, r.routed) for r in rt)
    )
    yield _counter(
        "mch_messages_failed", "Dead letters made on a route", "route", ((r.name, r.failed) for r in rt)
    )
    yield _counter(
        "mch_deliveries_delivered", "Records delivered", "destination", ((d.name, d.delivered) for d in ds)
    )
    yield _gauge(
        "mch_deliveries_retrying",
        "Deliveries waiting for their next attempt",
        ["destination"],
        (([d.name], d.retrying) for d in ds),
    )
    yield _gauge(
        "mch_dead_letters_open",
        'Open dead letters (destination "": the route\'s mapping failed)',
        ["destination"],
        [*(([d.name], d.open_dead_letters) for d in ds), ([""], status.transform_dead_letters_open)],
    )
    yield _counter(
        "mch_dead_letters",
        'Dead letters ever made (destination "": the route\'s mapping failed)',
        "destination",
        [*((d.name, d.dead_lettered) for d in ds), ("", status.transform_dead_letters_total)],
    )
    yield _gauge(
        "mch_channel_last_message_timestamp_seconds",
        "Unix time of the channel's newest message (0: none yet)",
        ["channel"],
        (([c.name], c.last_message_at.timestamp() if c.last_message_at else 0) for c in ch),
    )
    yield _gauge(
        "mch_channel_open_connections",
        "Open connections",
        ["channel"],
        (([c.name], c.open_connections) for c in ch),
    )
    yield _connections_closed(ch)
    yield _gauge(
        "mch_channel_listening",
        "1 when the channel listens (or polls, or watches)",
        ["channel"],
        (([c.name], int(c.listening)) for c in ch),
    )
    yield _gauge(
        "mch_db_poll_lag_seconds",
        "Age of a polled channel's last successful poll (NaN: none yet)",
        ["channel"],
        (([c.name], c.poll_lag_s) for c in ch if c.type == "db_poll"),
    )
    yield _summary(
        "mch_ack_latency_seconds",
        "Frame arrival to ACK (the journal commit), recent window",
        "channel",
        ((c.name, [c.ack_latency_p50_s, c.ack_latency_p95_s, c.ack_latency_p99_s]) for c in ch),
    )
    yield _summary(
        "mch_delivery_latency_seconds",
        "Receipt to delivered, recent window",
        "destination",
        (
            (d.name, [d.delivery_latency_p50_s, d.delivery_latency_p95_s, d.delivery_latency_p99_s])
            for d in ds
        ),
    )
    yield _gauge(
        "mch_queue_depth",
        "Messages waiting: the broker's queues on RabbitMQ, the journal's backlog on the default",
        ["destination"],
        (([d.name], d.backlog if d.queue_depth is None else d.queue_depth) for d in ds),
    )
    yield _gauge(
        "mch_oldest_undelivered_age_seconds",
        "Age of the oldest undelivered message (0: nothing waits)",
        ["destination"],
        (([d.name], d.oldest_undelivered_age_s or 0) for d in ds),
    )
    yield from _backends(status)
    yield from _wechat(status)
    yield _counter(
        "mch_retention_pruned",
        "Rows the retention pruner deleted, by kind (engine/retention_totals.py)",
        "kind",
        ((kind, status.retention.total.get(kind, 0)) for kind in KINDS),
    )


CLOSED_REASONS = ("not_allowed", "over_limit", "tls_failed", "frame_deadline")


def _connections_closed(channels: Iterable[ChannelNumbers]) -> Metric:
    """What an MLLP listener's edge closed, by reason; every reason from the start."""
    family = CounterMetricFamily(
        "mch_connections_closed",
        "Connections an MLLP listener closed: sender not allowed, over a connection limit, "
        "TLS handshake failed, frame deadline passed",
        labels=["channel", "reason"],
    )
    for c in channels:
        if c.type == "mllp":
            for reason in CLOSED_REASONS:
                family.add_metric([c.name, reason], c.connections_closed.get(reason, 0))
    return family


def _backends(status: EngineStatus) -> Iterator[Metric]:
    yield _gauge(
        "mch_journal_up", "1 when the journal database answers", [], [([], int(status.journal_reachable))]
    )
    yield _gauge(
        "mch_store_up",
        "1 when the record store database answers (masked URL)",
        ["store"],
        (([url], int(up)) for url, up in status.stores_reachable.items()),
    )
    broker = 1 if status.broker_reachable is None else int(status.broker_reachable)
    yield _gauge("mch_broker_up", "1 when the message bus answers (embedded bus: 1)", [], [([], broker)])
    if status.disk_free_bytes is not None:
        yield _gauge(
            "mch_disk_free_bytes", "Free bytes where the journal lives", [], [([], status.disk_free_bytes)]
        )
        yield _gauge("mch_disk_free_ratio", "Free share of that disk", [], [([], status.disk_free_ratio)])
    yield _gauge(
        "mch_engine_process_up",
        "1 per engine process whose heartbeat is fresh, 0 when it stopped",
        ["host", "roles"],
        (([p.host, ",".join(p.roles)], int(p.alive)) for p in status.processes),
    )


def _wechat(status: EngineStatus) -> Iterator[Metric]:
    """Notices by ledger status and WeChat's last refusal code (monitors/wechat_status.py), and
    each API's quota as last read."""
    sends = CounterMetricFamily(
        "mch_wechat_sends",
        "WeChat notices by ledger status (sent, undeliverable, failed, ...) and refusal code",
        labels=["destination", "result", "errcode"],
    )
    remaining = GaugeMetricFamily("mch_wechat_quota_remaining", "WeChat API calls left today", labels=["api"])
    limit = GaugeMetricFamily("mch_wechat_quota_limit", "WeChat API daily limit", labels=["api"])
    quotas: dict[str, tuple[int, int]] = {}  # one account: destinations share its quota
    for dest in status.wechat:
        outcomes = {("sent", ""): 0} | {(o.result, o.errcode): o.count for o in dest.outcomes}
        for (result, code), n in sorted(outcomes.items()):  # "sent" exists before the first notice
            sends.add_metric([dest.name, result, code], n)
        for q in dest.quota:
            if q.remain is not None and q.daily_limit is not None:
                quotas[q.api.removeprefix("/cgi-bin/")] = (q.remain, q.daily_limit)
    for api, (left, daily) in sorted(quotas.items()):
        remaining.add_metric([api], left)
        limit.add_metric([api], daily)
    yield from (sends, remaining, limit)


class EngineCollector(Collector):
    """Reads the engine's numbers when Prometheus scrapes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        try:
            status = collect(self.settings)
        except Unreachable:
            yield _gauge("mch_journal_up", "1 when the journal database answers", [], [([], 0)])
            return
        yield from families(status)


def routes(settings: Settings) -> list[BaseRoute]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(settings))

    async def metrics(_request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route(PATH, metrics)]
