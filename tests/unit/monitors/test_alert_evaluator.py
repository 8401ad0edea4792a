"""The engine's alert rules over a status, with a clock the test controls: an episode opens
once, repeats at `repeat_every`, resolves when it clears; a night-quiet feed is left alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from channels.wechat.keys import key_problem
from core.settings import AlertSettings, FeedAlerts
from monitors.alerts.evaluate import OPEN, REPEAT, RESOLVE, OpenAlert, Transition, evaluate
from monitors.alerts.rules import RULES, sample_of
from monitors.engine_status import ChannelNumbers, DestinationNumbers, EngineStatus, ProcessNumbers
from monitors.wechat_status import QuotaNumbers, WechatNumbers

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=TZ).astimezone(UTC)  # a Monday, 10:00 in Shanghai


def status(now: datetime, *, last: datetime | None = None, **extra: object) -> EngineStatus:
    s = EngineStatus(now, "sqlite:///j.db", "memory://")
    s.processes = [ProcessNumbers("h1", 11, ["ingest"], now - timedelta(hours=5), now, True, [])]
    s.channels = [ChannelNumbers("lis", "127.0.0.1:2575", True, 0, received=100, last_message_at=last)]
    s.destinations = [DestinationNumbers("record_store", delivered=100)]
    for key, value in extra.items():
        setattr(s, key, value)
    return s


def held(transitions: list[Transition], opened: list[OpenAlert] = ()) -> list[OpenAlert]:  # type: ignore[assignment]
    """The open episodes after the transitions, as the alerts table would hold them."""
    out = {(a.rule, a.subject): a for a in opened}
    for t in transitions:
        if t.kind == RESOLVE:
            out.pop((t.rule, t.subject))
        else:
            out[(t.rule, t.subject)] = OpenAlert(
                1, t.rule, t.subject, t.severity, t.opened_at, t.at, t.summary
            )
    return list(out.values())


def kinds(transitions: list[Transition]) -> list[tuple[str, str, str]]:
    return [(t.kind, t.rule, t.subject) for t in transitions]


def test_a_silent_feed_fires_once_repeats_and_resolves() -> None:
    config = AlertSettings(repeat_every=3600)
    last = T0 - timedelta(minutes=10)
    assert evaluate(status(T0, last=last), [], T0, config, TZ) == []  # 10 minutes: inside the limit

    now = T0 + timedelta(minutes=6)  # 16 minutes silent
    first = evaluate(status(now, last=last), [], now, config, TZ)
    assert kinds(first) == [(OPEN, "feed_silent", "lis")]
    assert first[0].severity == "critical"
    assert "16m" in first[0].summary_en and "接口 lis" in first[0].summary
    opened = held(first)

    later = now + timedelta(minutes=30)  # still silent, within repeat_every: nothing new
    assert evaluate(status(later, last=last), opened, later, config, TZ) == []

    again = now + timedelta(hours=1)
    repeat = evaluate(status(again, last=last), opened, again, config, TZ)
    assert kinds(repeat) == [(REPEAT, "feed_silent", "lis")]
    assert repeat[0].opened_at == now  # the same episode
    opened = held(repeat, opened)

    back = again + timedelta(minutes=1)
    resolved = evaluate(status(back, last=back), opened, back, config, TZ)
    assert kinds(resolved) == [(RESOLVE, "feed_silent", "lis")]


def test_a_night_quiet_feed_alerts_only_inside_its_hours_counting_from_their_start() -> None:
    config = AlertSettings(feeds={"lis": FeedAlerts(silent_after=900, hours="07:30-21:00")})
    last = datetime(2026, 3, 1, 20, 0, tzinfo=TZ)  # the evening before
    night = datetime(2026, 3, 2, 3, 0, tzinfo=TZ)
    assert evaluate(status(night, last=last), [], night, config, TZ) == []
    early = datetime(2026, 3, 2, 7, 40, tzinfo=TZ)  # 10 minutes into the day
    assert evaluate(status(early, last=last), [], early, config, TZ) == []
    late = datetime(2026, 3, 2, 7, 46, tzinfo=TZ)  # 16 minutes into the day, still nothing
    assert kinds(evaluate(status(late, last=last), [], late, config, TZ)) == [(OPEN, "feed_silent", "lis")]


def test_hours_over_midnight_and_silent_false() -> None:
    night_shift = AlertSettings(hours="20:00-08:00")
    last = datetime(2026, 3, 2, 1, 0, tzinfo=TZ)
    at_two = datetime(2026, 3, 2, 2, 0, tzinfo=TZ)
    assert kinds(evaluate(status(at_two, last=last), [], at_two, night_shift, TZ)) == [
        (OPEN, "feed_silent", "lis")
    ]
    noon = datetime(2026, 3, 2, 12, 0, tzinfo=TZ)
    assert evaluate(status(noon, last=last), [], noon, night_shift, TZ) == []
    off = AlertSettings(feeds={"lis": FeedAlerts(silent=False)})
    assert evaluate(status(at_two, last=last), [], at_two, off, TZ) == []


def test_channels_of_records_the_engine_makes_are_never_silent() -> None:
    last = T0 - timedelta(hours=3)
    assert evaluate(status(T0, last=last), [], T0, AlertSettings(), TZ, internal=frozenset({"lis"})) == []


def test_a_channel_an_operator_stopped_or_paused_is_not_silent() -> None:
    s = status(T0, last=T0 - timedelta(hours=3))
    for state in ("stopped", "paused"):
        s.channels[0].state = state
        assert evaluate(s, [], T0, AlertSettings(), TZ) == []
    s.channels[0].state = "running"
    assert kinds(evaluate(s, [], T0, AlertSettings(), TZ)) == [(OPEN, "feed_silent", "lis")]


def test_a_feed_that_never_sent_counts_from_the_engine_start() -> None:
    s = status(T0)
    s.processes[0].started_at = T0 - timedelta(minutes=20)
    assert kinds(evaluate(s, [], T0, AlertSettings(), TZ)) == [(OPEN, "feed_silent", "lis")]
    s.processes[0].started_at = T0 - timedelta(minutes=5)
    assert evaluate(s, [], T0, AlertSettings(), TZ) == []


def test_error_rate_over_the_window() -> None:
    config = AlertSettings(error_rate=10)
    before = status(T0, last=T0)
    earlier = sample_of(before, T0 - timedelta(minutes=5))
    few = status(T0, last=T0)
    few.channels[0].rejected = 40  # 8 a minute
    assert evaluate(few, [], T0, config, TZ, earlier=earlier) == []
    many = status(T0, last=T0)
    many.channels[0].rejected, many.channels[0].failed = 40, 20  # 12 a minute
    found = evaluate(many, [], T0, config, TZ, earlier=earlier)
    assert kinds(found) == [(OPEN, "error_rate", "lis")]
    assert "12.0/min" in found[0].summary_en
    assert evaluate(many, [], T0, config, TZ) == []  # no earlier sample: no rate, no alert


def test_dead_letters_waiting_and_their_rate() -> None:
    s = status(T0, last=T0)
    s.destinations[0].open_dead_letters = 2
    s.transform_dead_letters_open = 1  # one more, of a mapping (no destination)
    assert kinds(evaluate(s, [], T0, AlertSettings(), TZ)) == [
        (OPEN, "dead_letters_open", "record_store"),
        (OPEN, "dead_letters_open", "transform"),
    ]
    earlier = sample_of(status(T0, last=T0, dead_letters_total=10), T0 - timedelta(minutes=5))
    rising = status(T0, last=T0, dead_letters_total=50)  # 8 a minute
    assert kinds(evaluate(rising, [], T0, AlertSettings(), TZ, earlier=earlier)) == [
        (OPEN, "dead_letter_rate", "engine")
    ]


def test_delivery_lag_and_queue_depth() -> None:
    s = status(T0, last=T0)
    s.destinations[0].oldest_undelivered_age_s = 1000.0
    s.destinations[0].backlog = 20_000
    assert sorted(kinds(evaluate(s, [], T0, AlertSettings(), TZ))) == [
        (OPEN, "delivery_lag", "record_store"),
        (OPEN, "queue_depth", "record_store"),
    ]
    s.destinations[0].oldest_undelivered_age_s, s.destinations[0].backlog = 100.0, 5
    assert evaluate(s, [], T0, AlertSettings(), TZ) == []


def test_services_down_disk_quota_and_processes() -> None:
    s = status(
        T0,
        last=T0,
        broker_reachable=False,
        stores_reachable={"record_store": False, "archive": True},
        disk_free_ratio=0.05,
        disk_free_bytes=5 << 30,
        wechat=[
            WechatNumbers(
                "wechat_oncall",
                quota=[QuotaNumbers("message/template/send", 1000, 950, 50, T0)],
            ),
            WechatNumbers(
                "wechat_patient", quota=[QuotaNumbers("message/template/send", None, None, None, None)]
            ),
        ],
    )
    s.processes.append(
        ProcessNumbers("h2", 12, ["deliver"], T0 - timedelta(hours=1), T0 - timedelta(minutes=5), False, [])
    )
    assert sorted(kinds(evaluate(s, [], T0, AlertSettings(), TZ))) == [
        (OPEN, "broker_down", "engine"),
        (OPEN, "disk_low", "engine"),
        (OPEN, "process_down", "h2:12"),
        (OPEN, "store_down", "record_store"),
        (OPEN, "wechat_quota_low", "message/template/send"),
    ]


def test_journal_away_is_judged_alone_and_resolves_nothing_else() -> None:
    silent = OpenAlert(4, "feed_silent", "lis", "critical", T0 - timedelta(hours=1), T0 - timedelta(hours=1))
    away = status(T0, journal_reachable=False)
    assert kinds(evaluate(away, [silent], T0, AlertSettings(repeat_every=7200), TZ)) == [
        (OPEN, "journal_down", "engine")
    ]
    back = status(T0, last=T0, journal_reachable=True)
    journal = OpenAlert(None, "journal_down", "engine", "critical", T0, T0)
    assert kinds(evaluate(back, [silent, journal], T0, AlertSettings(), TZ)) == [
        (RESOLVE, "feed_silent", "lis"),
        (RESOLVE, "journal_down", "engine"),
    ]


def test_unknown_values_fire_nothing() -> None:
    s = status(T0, last=T0)  # no disk, broker, store, quota numbers: an older collector
    assert evaluate(s, [], T0, AlertSettings(), TZ) == []


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.key)
def test_every_title_fits_a_wechat_thing_key(rule: object) -> None:
    assert key_problem("thing", rule.title[0]) is None  # type: ignore[attr-defined]


def test_an_alert_of_a_rule_that_no_longer_exists_resolves() -> None:
    gone = OpenAlert(9, "old_rule", "x", "warning", T0, T0)
    assert kinds(evaluate(status(T0, last=T0), [gone], T0, AlertSettings(), TZ)) == [
        (RESOLVE, "old_rule", "x")
    ]
