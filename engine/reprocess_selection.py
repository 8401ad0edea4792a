"""Reprocess by selection: stored messages through today's mappings, to correct their records.

A record stored with a mapping that was wrong stays wrong after the fix: nothing re-reads
the message. This module picks journaled messages that were routed (by channel and time
received), runs each through the transform stage the engine runs now, keeps the records of
the chosen route and record type, and compares each with the record the store holds:

- `changed`: the store's record came from this same message (or is older): the new one
  replaces it. The store's newest-wins rule counts a record made from the same journaled
  message as a correction of that event (channels/record_store/statements.py).
- `unchanged`: today's mapping makes the same record: nothing is sent.
- `newer_kept`: the store holds the record from a newer source event: nothing is sent,
  and the store would refuse it anyway.
- `new`: the store has no such record (the fix changed its id, or it never arrived).

A dry run returns the field-level differences of a sample and writes nothing; the real run
publishes the changed and new records, each to its destination, as the transform stage does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from channels.record_store.schema import identifiers_of, person_identifiers, persons, records
from core.journal import Accepted
from deadletter.actions import Publish, Transform
from engine import journal

StoreFor = Callable[[str], Engine]
"""The record store database of a destination."""

CHANGED, UNCHANGED, NEWER_KEPT, NEW = "changed", "unchanged", "newer_kept", "new"
PAGE = 200  # journaled messages read at a time
SAMPLE = 5  # records whose differences a dry run shows
MAX_CHANGES = 20  # field differences shown per record


@dataclass(frozen=True, slots=True)
class Selection:
    """Which stored messages to reprocess; every part optional, all given parts must hold."""

    route: str | None = None
    channel: str | None = None
    since: datetime | None = None  # received at or after (aware)
    until: datetime | None = None  # received before (aware)
    record_type: str | None = None

    def to_params(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("since", "until"):
            out[key] = out[key].isoformat() if out[key] else None
        return out

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Selection:
        times = {k: datetime.fromisoformat(params[k]) if params.get(k) else None for k in ("since", "until")}
        return cls(params.get("route"), params.get("channel"), record_type=params.get("record_type"), **times)

    def describe(self) -> str:
        parts = {k: v for k, v in self.to_params().items() if v}
        return " ".join(f"{k}={v}" for k, v in parts.items()) or "all"


def stored_messages(engine: Engine, selection: Selection) -> Iterator[Accepted]:
    """Routed messages of the selection, oldest first, a page at a time."""
    m = journal.messages.c
    after = 0
    while True:
        query = select(m.id, m.channel, m.raw, m.encoding).where(
            (m.status == journal.ROUTED) & (m.id > after)
        )
        if selection.channel:
            query = query.where(m.channel == selection.channel)
        if selection.since:
            query = query.where(m.received_at >= selection.since)
        if selection.until:
            query = query.where(m.received_at < selection.until)
        with engine.connect() as conn:
            page = conn.execute(query.order_by(m.id).limit(PAGE)).all()
        for jid, channel, raw, encoding in page:
            yield Accepted(int(jid), channel, bytes(raw), encoding)
        if len(page) < PAGE:
            return
        after = int(page[-1][0])


def field_changes(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, old value, new value) of every leaf that differs; a missing side is None."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(old) | set(new), key=str):
            out += field_changes(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for i in range(max(len(old), len(new))):
            a = old[i] if i < len(old) else None
            b = new[i] if i < len(new) else None
            out += field_changes(a, b, f"{path}[{i}]")
        return out
    return [] if old == new else [(path or "record", old, new)]


def _stored(store: Engine, env: dict[str, Any]) -> dict[str, Any] | None:
    """The store's row for the record this envelope makes: payload, journal id, event time."""
    with store.connect() as conn:
        if env["record_type"] != "Person":
            r = records.c
            row = conn.execute(
                select(r.payload, r.journal_id, r.event_time).where(r.record_id == env["record_id"])
            ).first()
            return dict(row._mapping) if row else None
        record = env["record"]
        for kind, system, value in identifiers_of(record.get("person") or record):
            pi = person_identifiers.c
            p = persons.c
            row = conn.execute(
                select(p.payload, p.journal_id, p.event_time)
                .select_from(persons.join(person_identifiers, pi.person_key == p.person_key))
                .where((pi.kind == kind) & (pi.system == system) & (pi.value == value))
            ).first()
            if row:
                return dict(row._mapping)
    return None


def _verdict(stored: dict[str, Any] | None, env: dict[str, Any]) -> str:
    if stored is None:
        return NEW
    if stored["payload"] == env["record"]:
        return UNCHANGED
    if stored["journal_id"] is not None and int(stored["journal_id"]) != int(env["journal_id"]):
        when = datetime.fromisoformat(env["event_time"]) if env.get("event_time") else None
        kept = stored["event_time"]
        if kept is not None and (
            when is None
            or kept > when
            or (kept == when and int(stored["journal_id"]) > int(env["journal_id"]))
        ):
            return NEWER_KEPT
    return CHANGED


@dataclass(slots=True)
class Report:
    """What a selection reprocess found (dry run) or did (real run)."""

    dry_run: bool
    messages: int = 0
    failed: int = 0  # messages today's mapping cannot map (they stay as they are)
    counts: dict[str, int] | None = None
    sample: list[dict[str, Any]] | None = None
    sent: list[tuple[int, str, str]] | None = None

    def as_outcome(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "messages": self.messages,
            "failed": self.failed,
            "counts": self.counts or {},
            "sample": self.sample or [],
            "sent": [list(k) for k in self.sent or []],
        }


def reprocess_selection(
    journal_engine: Engine,
    selection: Selection,
    transform: Transform,
    store_for: StoreFor,
    *,
    publish: Publish | None = None,
    sample: int = SAMPLE,
) -> Report:
    """Dry run when `publish` is None (nothing written), else publish what changed."""
    report = Report(
        dry_run=publish is None, counts={CHANGED: 0, UNCHANGED: 0, NEWER_KEPT: 0, NEW: 0}, sample=[], sent=[]
    )
    assert report.counts is not None and report.sample is not None and report.sent is not None
    for item in stored_messages(journal_engine, selection):
        outcome, envelopes = transform(item)
        if getattr(outcome, "status", None) != journal.ROUTED:
            report.failed += int(getattr(outcome, "status", None) == journal.FAILED)
            continue
        chosen = [
            (dest, env)
            for dest, env in envelopes
            if (selection.route is None or env["route"] == selection.route)
            and (selection.record_type is None or env["record_type"] == selection.record_type)
        ]
        if not chosen:
            continue
        report.messages += 1
        to_send: list[tuple[str, dict[str, Any]]] = []
        for dest, env in chosen:
            stored = _stored(store_for(dest), env)
            verdict = _verdict(stored, env)
            report.counts[verdict] += 1
            if verdict in (CHANGED, NEW):
                to_send.append((dest, env))
                if len(report.sample) < sample:
                    changes = field_changes(stored["payload"] if stored else None, env["record"])
                    report.sample.append(
                        {
                            "journal_id": item.journal_id,
                            "destination": dest,
                            "record_type": env["record_type"],
                            "record_id": env["record_id"],
                            "verdict": verdict,
                            "changes": [list(c) for c in changes[:MAX_CHANGES]],
                            "more_changes": max(0, len(changes) - MAX_CHANGES),
                        }
                    )
        if publish is not None and to_send:
            keys = [(item.journal_id, dest, str(env["record_id"])) for dest, env in to_send]
            journal.reopen_deliveries(journal_engine, keys)
            for dest, env in to_send:
                publish(dest, env)
            # New record ids get their delivery rows, as the transform stage would add them.
            journal.record_routed(
                journal_engine,
                [(item.journal_id, journal.ROUTED, [(d, r) for _, d, r in keys])],
                {item.journal_id: [env["route"] for _, env in to_send if env.get("route")]},
            )
            report.sent += keys
    return report
