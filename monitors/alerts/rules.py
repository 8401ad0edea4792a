"""Every alert rule as data: what it watches, how bad it is, and what it says.

A rule's `check` reads one `Look` (the status, the bounds, the clock, an earlier sample for
rates) and returns a `Finding` per subject (a channel, a destination, a store, an API, a
process) for which the condition holds; no finding means the condition is clear. Values a
status does not know (None, or a field an older collector lacks) never fire a rule.
Each rule has the same key as its Prometheus twin in monitors/prometheus/alerts.yml.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from core import i18n
from core.settings import AlertSettings

__all__ = ["RULES", "Finding", "Look", "Rule", "Sample", "rule", "sample_of"]

Severity = Literal["warning", "critical"]
GLOBAL = "engine"
"""The subject of a rule about the whole engine (the journal, the broker, the disk)."""


@dataclass(frozen=True, slots=True)
class Finding:
    subject: str
    value: str  # what was measured, as the summary shows it ("23m", "12/min", "5%")
    bound: str


@dataclass(frozen=True, slots=True)
class Sample:
    """Counters at one time, for the two rates: rejected+failed per channel, dead letters."""

    at: datetime
    errors: Mapping[str, int]
    dead_letters: int | None


@dataclass(frozen=True, slots=True)
class Look:
    status: Any  # monitors.engine_status.EngineStatus (read with getattr: fields grow)
    config: AlertSettings
    now: datetime
    tz: tzinfo
    earlier: Sample | None = None
    internal: frozenset[str] = frozenset()  # never "silent": engine-made records, switched off


@dataclass(frozen=True, slots=True)
class Rule:
    key: str
    severity: Severity
    title: tuple[str, str]  # (zh, en); zh at most 20 characters: a WeChat `thing` key
    summary: tuple[str, str]  # (zh, en) with {subject} {value} {bound}
    check: Callable[[Look], list[Finding]] = field(repr=False)
    needs_journal: bool = True  # only judged when the journal answered

    def summaries(self, finding: Finding) -> tuple[str, str]:
        values = {"subject": finding.subject, "value": finding.value, "bound": finding.bound}
        return self.summary[0].format(**values), self.summary[1].format(**values)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f}m" if seconds >= 60 else f"{seconds:.0f}s"


def _get(obj: Any, name: str) -> Any:
    return getattr(obj, name, None)


# --------------------------------------------------------------------------- feeds


def _window_start(now: datetime, tz: tzinfo, hours: tuple[int, int]) -> datetime | None:
    """Start of the working window `now` is in, or None outside working hours."""
    local = now.astimezone(tz)
    minute = local.hour * 60 + local.minute
    start, end = hours
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if start < end:
        inside, day = start <= minute < end, midnight
    else:  # over midnight, e.g. 20:00-08:00
        inside = minute >= start or minute < end
        day = midnight if minute >= start else midnight - timedelta(days=1)
    return day + timedelta(minutes=start) if inside else None


def _engine_started(status: Any) -> datetime | None:
    times = [p.started_at for p in _get(status, "processes") or [] if _get(p, "alive")]
    return min(times) if times else None


def _silent_feeds(look: Look) -> list[Finding]:
    found = []
    for ch in _get(look.status, "channels") or []:
        limit, hours = look.config.feed(ch.name)
        if limit is None or ch.name in look.internal or ch.state != "running":
            continue  # stopped or paused by an operator: quiet on purpose
        since = _get(ch, "last_message_at") or _engine_started(look.status)
        if since is None:
            continue  # nothing received and no engine running: process_down says so
        if hours is not None:
            window = _window_start(look.now, look.tz, hours)
            if window is None:
                continue
            since = max(since, window)
        silent = (look.now - since).total_seconds()
        if silent > limit:
            found.append(Finding(ch.name, _minutes(silent), _minutes(limit)))
    return found


# --------------------------------------------------------------------------- rates


def sample_of(status: Any, at: datetime) -> Sample:
    errors = {ch.name: (ch.rejected or 0) + (ch.failed or 0) for ch in _get(status, "channels") or []}
    total = _get(status, "dead_letters_total")
    if total is None and _get(status, "routes") is not None:
        total = sum(r.failed or 0 for r in status.routes)  # dead letters ever made, by route
    return Sample(at, errors, total)


def _per_minute(look: Look, now_count: int, then_count: int) -> float | None:
    earlier = look.earlier
    if earlier is None:
        return None
    minutes = (look.now - earlier.at).total_seconds() / 60
    return (now_count - then_count) / minutes if minutes > 0 else None


def _error_rates(look: Look) -> list[Finding]:
    if look.earlier is None:
        return []
    now = sample_of(look.status, look.now)
    found = []
    for name, count in now.errors.items():
        rate = _per_minute(look, count, look.earlier.errors.get(name, count))
        if rate is not None and rate > look.config.error_rate:
            found.append(Finding(name, f"{rate:.1f}/min", f"{look.config.error_rate:g}/min"))
    return found


def _dead_letter_rate(look: Look) -> list[Finding]:
    now = sample_of(look.status, look.now)
    if look.earlier is None or now.dead_letters is None or look.earlier.dead_letters is None:
        return []
    rate = _per_minute(look, now.dead_letters, look.earlier.dead_letters)
    if rate is not None and rate > look.config.dead_letter_rate:
        return [Finding(GLOBAL, f"{rate:.1f}/min", f"{look.config.dead_letter_rate:g}/min")]
    return []


def _dead_letters_open(look: Look) -> list[Finding]:
    """Open dead letters per destination; those of a mapping (no destination) as `transform`."""
    found = []
    for d in _get(look.status, "destinations") or []:
        n = _get(d, "open_dead_letters") or 0
        if n > 0:
            found.append(Finding(d.name, str(n), "0"))
    mapping = _get(look.status, "transform_dead_letters_open") or 0
    if mapping > 0:
        found.append(Finding("transform", str(mapping), "0"))
    return found


# --------------------------------------------------------------------------- destinations


def _delivery_lag(look: Look) -> list[Finding]:
    found = []
    for d in _get(look.status, "destinations") or []:
        age = _get(d, "oldest_undelivered_age_s")
        if age is not None and age > look.config.delivery_lag:
            found.append(Finding(d.name, _minutes(age), _minutes(look.config.delivery_lag)))
    return found


def _queue_depth(look: Look) -> list[Finding]:
    found = []
    for d in _get(look.status, "destinations") or []:
        depth = max(_get(d, "queue_depth") or 0, _get(d, "backlog") or 0)
        if depth > look.config.queue_depth:
            found.append(Finding(d.name, str(depth), str(look.config.queue_depth)))
    return found


# --------------------------------------------------------------------------- services


def _problem_subjects(status: Any, key: str) -> list[str]:
    return [p.partition(":")[2] for p in _get(status, "problems") or [] if p.partition(":")[0] == key]


def _journal_down(look: Look) -> list[Finding]:
    return [] if _get(look.status, "journal_reachable") is not False else [Finding(GLOBAL, "down", "up")]


def _broker_down(look: Look) -> list[Finding]:
    reachable = _get(look.status, "broker_reachable")
    if reachable is False or (reachable is None and _problem_subjects(look.status, "broker_unreachable")):
        return [Finding(GLOBAL, "down", "up")]
    return []


def _stores_down(look: Look) -> list[Finding]:
    stores = _get(look.status, "stores_reachable")
    if isinstance(stores, Mapping):
        return [Finding(name, "down", "up") for name, up in sorted(stores.items()) if up is False]
    return [
        Finding(s.split(" (")[0], "down", "up") for s in _problem_subjects(look.status, "store_unreachable")
    ]


def _disk_low(look: Look) -> list[Finding]:
    ratio, free = _get(look.status, "disk_free_ratio"), _get(look.status, "disk_free_bytes")
    c = look.config
    if (ratio is not None and ratio < c.disk_free_ratio) or (free is not None and free < c.disk_free_bytes):
        shown = f"{ratio:.0%}" if ratio is not None else f"{free / (1 << 30):.1f}GiB"
        return [Finding(GLOBAL, shown, f"{c.disk_free_ratio:.0%} / {c.disk_free_bytes / (1 << 30):g}GiB")]
    return []


def _wechat_quota(look: Look) -> list[Finding]:
    """Each API of each `wechat` destination (monitors/wechat_status.py) below the ratio left."""
    found: dict[str, Finding] = {}
    ratio = look.config.wechat_quota_ratio
    for numbers in _get(look.status, "wechat") or []:
        for q in numbers.quota:
            if q.remain is not None and q.daily_limit and q.remain / q.daily_limit < ratio:
                found[q.api] = Finding(q.api, f"{q.remain}/{q.daily_limit}", f"{ratio:.0%}")
    return list(found.values())


def _processes_down(look: Look) -> list[Finding]:
    return [
        Finding(f"{p.host}:{p.pid}", "down", "up")
        for p in _get(look.status, "processes") or []
        if not p.alive
    ]


RULES: tuple[Rule, ...] = (
    Rule(
        "feed_silent",
        "critical",
        ("接口无消息", "Feed silent"),
        (
            "接口 {subject} 已 {value} 未收到消息（上限 {bound}）",
            "Feed {subject} silent for {value} (limit {bound})",
        ),
        _silent_feeds,
    ),
    Rule(
        "error_rate",
        "warning",
        ("接口错误率过高", "Error rate high"),
        (
            "接口 {subject} 拒收或映射失败 {value}（上限 {bound}）",
            "Feed {subject} rejects or fails {value} (bound {bound})",
        ),
        _error_rates,
    ),
    Rule(
        "dead_letter_rate",
        "warning",
        ("死信增长过快", "Dead letters rising"),
        ("死信每分钟新增 {value}（上限 {bound}）", "Dead letters made at {value} (bound {bound})"),
        _dead_letter_rate,
    ),
    Rule(
        "dead_letters_open",
        "warning",
        ("有待处理的死信", "Dead letters waiting"),
        ("{subject} 有 {value} 条死信待处理", "{subject} has {value} dead letters waiting"),
        _dead_letters_open,
    ),
    Rule(
        "delivery_lag",
        "warning",
        ("投递延迟过长", "Delivery lagging"),
        (
            "{subject} 最早未投递消息已等待 {value}（上限 {bound}）",
            "{subject}: oldest undelivered waits {value} (bound {bound})",
        ),
        _delivery_lag,
    ),
    Rule(
        "queue_depth",
        "warning",
        ("待投递消息积压", "Queue backing up"),
        ("{subject} 积压 {value} 条（上限 {bound}）", "{subject} has {value} waiting (bound {bound})"),
        _queue_depth,
    ),
    Rule(
        "journal_down",
        "critical",
        ("日志数据库不可达", "Journal unreachable"),
        ("日志数据库不可达：新消息无法接收", "Journal database unreachable: no message can be taken"),
        _journal_down,
        needs_journal=False,
    ),
    Rule(
        "store_down",
        "critical",
        ("存储数据库不可达", "Store unreachable"),
        ("存储 {subject} 不可达", "Store {subject} unreachable"),
        _stores_down,
    ),
    Rule(
        "broker_down",
        "critical",
        ("消息总线不可达", "Broker unreachable"),
        ("RabbitMQ 不可达", "RabbitMQ unreachable"),
        _broker_down,
    ),
    Rule(
        "disk_low",
        "critical",
        ("磁盘空间不足", "Disk space low"),
        ("日志所在磁盘剩余 {value}（下限 {bound}）", "Journal disk has {value} free (bound {bound})"),
        _disk_low,
    ),
    Rule(
        "wechat_quota_low",
        "warning",
        ("微信调用额度不足", "WeChat quota low"),
        (
            "微信接口 {subject} 今日额度剩余 {value}",
            "WeChat API {subject} has {value} of its daily quota left",
        ),
        _wechat_quota,
    ),
    Rule(
        "process_down",
        "critical",
        ("引擎进程停止", "Engine process down"),
        ("引擎进程 {subject} 已停止心跳", "Engine process {subject} stopped its heartbeat"),
        _processes_down,
    ),
)

_BY_KEY = {r.key: r for r in RULES}

i18n.register({f"alert_rule_{r.key}": r.title for r in RULES})  # the dashboard names a rule by t()


def rule(key: str) -> Rule:
    return _BY_KEY[key]
