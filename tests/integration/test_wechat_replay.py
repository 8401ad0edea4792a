"""The callback's replay table (channels/wechat/replay.py) on both engine databases: a key is
claimed once within the window, the window's old rows are pruned as requests arrive, and a
claim in a transaction that fails leaves nothing behind."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from channels.wechat import replay
from support import engine_database

NOW = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_key_is_claimed_once_within_the_window_and_pruned_after(kind: str, tmp_path: Path) -> None:
    with engine_database(kind, tmp_path) as db:
        replay.ensure_schema(db)
        with db.begin() as conn:
            assert replay.claim(conn, ["nonce:1:a", "event:o1:1:subscribe"], NOW)
        with db.begin() as conn:  # WeChat's retry: same nonce, or same event under a new nonce
            assert not replay.claim(conn, ["nonce:1:a"], NOW + timedelta(seconds=5))
            assert not replay.claim(conn, ["nonce:1:b", "event:o1:1:subscribe"], NOW + timedelta(seconds=5))
        with db.begin() as conn:
            assert replay.claim(conn, ["nonce:1:c"], NOW + timedelta(seconds=6))

        later = NOW + replay.WINDOW + timedelta(seconds=7)
        with db.begin() as conn:  # past the window: the old rows go, the key may come again
            assert replay.claim(conn, ["nonce:2:z"], later)
        with db.connect() as conn:
            table = replay.wechat_callback_seen
            assert conn.execute(select(func.count()).select_from(table)).scalar() == 1

        with pytest.raises(RuntimeError), db.begin() as conn:  # the event failed to apply
            assert replay.claim(conn, ["nonce:3:q"], later)
            raise RuntimeError("database went away halfway")
        with db.begin() as conn:  # so WeChat's retry is applied
            assert replay.claim(conn, ["nonce:3:q"], later)


def test_a_timestamp_more_than_five_minutes_away_either_way_is_not_fresh() -> None:
    now = NOW.timestamp()
    assert replay.timestamp_fresh(str(int(now)), NOW)
    assert replay.timestamp_fresh(str(int(now) - 300), NOW)
    assert replay.timestamp_fresh(str(int(now) + 300), NOW)
    assert not replay.timestamp_fresh(str(int(now) - 301), NOW)
    assert not replay.timestamp_fresh(str(int(now) + 301), NOW)
    for bad in ("", "-1", "1e9", "soon"):
        assert not replay.timestamp_fresh(bad, NOW)


def test_two_copies_arriving_at_once_apply_once(tmp_path: Path) -> None:
    """PostgreSQL: the second copy's claim waits for the first transaction, then counts as a
    repeat — WeChat's retry of a slow request is not applied twice."""
    from concurrent.futures import ThreadPoolExecutor

    from channels.wechat import bindings
    from channels.wechat.callback import Event, apply_event

    event = Event("oTWICE000000000000001", "unsubscribe", NOW, key="event:oTWICE:1:unsubscribe")
    with engine_database("postgresql", tmp_path) as db:
        replay.ensure_schema(db)
        bindings.ensure_schema(db)
        with ThreadPoolExecutor(1) as pool:
            with db.begin() as conn:
                assert replay.claim(conn, ["nonce:9:same", event.key], NOW)
                second = pool.submit(apply_event, db, event, ["nonce:9:same", event.key], NOW)
                time.sleep(0.5)
                assert not second.done()  # waiting on the first transaction's row
            assert second.result(timeout=30) == "repeat"
        assert apply_event(db, event, ["nonce:9:other", "event:oTWICE:2:unsubscribe"], NOW) == "applied"
