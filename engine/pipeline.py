"""The transform stage: journaled message → parse → route → map → publish.

Runs in its own thread, fed by the journal writer after each commit (and by
recovery at start). A message whose mapping fails is marked `failed` with the
mapping's own error text (stage transform); one no route wants is `unrouted`.
A record whose audience a destination may not reach (core/audience.py) is withheld from it
here, before the bus: logged `record_withheld`, counted, never a failure or a dead letter.
A batch's envelopes are published together (one confirmed queue message per
partition) before the batch's statuses are saved; while the broker is away the
worker waits and tries again, and the message stays `received` in the journal, so
nothing is lost even if the engine stops meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Engine

from core import failpoints
from core.audience import SYSTEM, audience_of
from core.errors import InputError, MappingError
from deadletter import store as dead_letters
from engine import journal
from engine.backoff import until_it_works
from engine.batching import run_batches
from engine.bus import Bus
from engine.router import Route, Router
from transforms.converters import CONVERTERS
from transforms.decode import decode
from transforms.hl7v2 import Message
from transforms.mapping import Ctx
from transforms.mapping.functions import FUNCTIONS
from transforms.strict import check_structure
from transforms.validate import canonical

log = structlog.get_logger("engine.pipeline")

LINGER = 0.005  # seconds the transform waits for more messages to fill a batch
REQUIRED_EMPTY = "required value is empty"  # the mapping compiler's text for a required field
MAX_WAITING = 40  # in-process queue messages (bundles) per destination before the transform waits
ROW_TYPE = "ROW"  # the message type routes see for a row of a db_poll channel
WITHHELD = "withheld"  # counter of records kept from a destination (core/audience.py)


@dataclass(frozen=True, slots=True)
class Outcome:
    journal_id: int
    status: str
    error: str | None
    published: list[tuple[str, str]]  # (destination, record_id)
    channel: str = ""
    route: str | None = None  # the route whose mapping failed, for the dead letter
    withheld: int = 0  # records kept from a destination their audience may not reach
    routes: tuple[str, ...] = ()  # the routes that took a routed message


def rule_name(exc: MappingError) -> str:
    """What kind of rule failed, from a fixed vocabulary, never the rule's text: `convert
    hl7_date`, `derive age_in_months`, `required`, else `mapping rule` (file and line say which)."""
    head = exc.rule.partition(":")[0]
    if head in CONVERTERS:
        return f"convert {head}"
    if exc.path in FUNCTIONS:
        return f"derive {exc.path}"
    if exc.rule == REQUIRED_EMPTY:
        return "required"
    return "mapping rule"


def _row(raw: bytes) -> dict[str, Any]:
    """A journaled database row: a JSON object of column values (UTF-8)."""
    row = json.loads(raw.decode("utf-8"))
    if not isinstance(row, dict):
        raise ValueError("a polled row must be a JSON object")
    return row


def _record(raw: bytes) -> dict[str, Any]:
    """A journaled canonical record: {record_type, record_id, event_time, record} (UTF-8 JSON)."""
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("record"), dict) or not data.get("record_type"):
        raise ValueError("a record channel's message must be a JSON object with record_type and record")
    return data


def _printable(control_id: Any) -> str:
    """MSH-10 for a log line: a short string, never a structure or a long value."""
    return control_id[:64] if isinstance(control_id, str) else ""


def _log_attention(
    event: str, item: journal.Accepted, control_id: Any, message_type: str, **details: Any
) -> None:
    """One warning per message an operator should look at: which message, and why in a
    reason code; never its content."""
    log.warning(
        event,
        journal_id=item.journal_id,
        channel=item.channel,
        control_id=_printable(control_id),
        message_type=message_type,
        **details,
    )


def _log_withheld(
    item: journal.Accepted, control_id: Any, route: Route, destination: str, envelope: dict[str, Any]
) -> None:
    """A record not handed to a destination whose `reaches:` its audience excludes: done, not
    a failure (core/audience.py). Names the destination and record type, never the record."""
    log.warning(
        "record_withheld",
        journal_id=item.journal_id,
        channel=item.channel,
        control_id=_printable(control_id),
        route=route.name,
        destination=destination,
        record_type=envelope["record_type"],
        reason="audience",
        audience=audience_of(envelope["record"]),
        reaches=route.reaches.get(destination, SYSTEM),
    )


class TransformWorker:
    """Single thread that transforms and publishes journaled messages in arrival order."""

    def __init__(
        self,
        router: Router,
        journal_engine: Engine,
        bus_factory: Callable[[], Bus],
        *,
        batch: int = 200,
        strict_channels: frozenset[str] = frozenset(),
        row_channels: frozenset[str] = frozenset(),
        record_channels: frozenset[str] = frozenset(),
        on_saved: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.router = router
        self.strict_channels = strict_channels
        self.row_channels = row_channels  # their messages are database rows, not HL7
        self.record_channels = record_channels  # their messages are canonical records (derived)
        self.journal_engine = journal_engine
        self.bus_factory = bus_factory
        self.batch = batch
        self.on_saved = on_saved
        self._queue: queue.SimpleQueue[journal.Accepted | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="transform", daemon=True)
        self._stop = threading.Event()
        self._bus: Bus | None = None
        self.processed = 0
        self.counts: Counter[str] = Counter()  # outcomes by status, for the monitors

    def start(self) -> None:
        self._thread.start()

    def submit(self, items: list[journal.Accepted]) -> None:
        for item in items:
            self._queue.put(item)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what was queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._stop.set()
        if self._bus:
            self._bus.close()

    def _run(self) -> None:
        # A few milliseconds of linger make batches (and the bundles and commits that follow)
        # larger; the ACK has been sent already, so no sender waits for it.
        run_batches(self._queue, self._process_batch, self.batch, LINGER)

    def _process_batch(self, items: list[journal.Accepted]) -> None:
        outcomes = []
        envelopes: list[tuple[str, dict[str, Any]]] = []
        for item in items:
            outcome, produced = self.transform(item)
            envelopes += produced
            outcomes.append(outcome)
            self.counts[outcome.status] += 1
            self.counts[WITHHELD] += outcome.withheld
        if envelopes:
            self._publish(envelopes)
        self._save(outcomes)
        self.processed += len(items)
        if self.on_saved:
            self.on_saved([item.journal_id for item in items])

    def transform(self, item: journal.Accepted) -> tuple[Outcome, list[tuple[str, dict[str, Any]]]]:
        """Pure part: what this message becomes and where it goes (nothing is sent)."""
        current: str | None = None
        control_id: Any = None
        message_type = ""
        try:
            message: Message | dict[str, Any]
            if item.channel in self.record_channels:
                # A canonical record ({record_type, record_id, event_time, record}), routed by
                # its record type; a route without a mapping passes it on (PassThrough).
                message = _record(item.raw)
                message_type, sender = str(message["record_type"]), item.channel
                ctx = Ctx(row=message)
                routes = [
                    r for r in self.router.match(item.channel, message_type) if r.when is None or r.when(ctx)
                ]
            elif item.channel in self.row_channels:
                # A polled row: canonical JSON (channels/db_poll/rows.py), routed as ROW; a
                # route's `when:` reads HL7 fields, finds none in a row and does not hold.
                message, message_type, sender = _row(item.raw), ROW_TYPE, item.channel
                ctx = Ctx(row=message)
                routes = [
                    r for r in self.router.match(item.channel, message_type) if r.when is None or r.when(ctx)
                ]
            else:
                text = decode(item.raw, item.encoding)
                if item.channel in self.strict_channels:
                    check_structure(text)
                message = Message(text)
                msh = message.segment("MSH")
                message_type = (msh.field(9) if msh else "") or ""
                routes = self.router.match(item.channel, message_type, message)
                control_id = msh.get(10) if msh else None
                sender = f"{msh.get(3) or ''}^{msh.get(4) or ''}" if msh else None
            if not routes:
                _log_attention("message_unrouted", item, control_id, message_type, reason="no_route")
                return Outcome(item.journal_id, journal.UNROUTED, None, []), []
            envelopes: list[tuple[str, dict[str, Any]]] = []
            withheld_count = 0
            for route in routes:
                current = route.name
                for rec in route.mapping.apply(message):
                    # A record passed on keeps its own source (what it was derived from).
                    source = (
                        None
                        if item.channel in self.record_channels
                        else {
                            "channel": item.channel,
                            "sending_system": sender,
                            "control_id": control_id if isinstance(control_id, str) else None,
                            "event_time": rec.event_time,
                            "journal_id": str(item.journal_id),
                        }
                    )
                    envelope = {
                        "journal_id": item.journal_id,
                        "channel": item.channel,
                        "control_id": control_id if isinstance(control_id, str) else None,
                        "message_type": message_type,
                        "route": route.name,
                        "record_type": rec.record_type,
                        "record_id": rec.record_id,
                        "event_time": rec.event_time,
                        "record": canonical(rec.record_type, rec.record_id, rec.record, source),
                    }
                    allowed, withheld = route.destinations_for(audience_of(envelope["record"]))
                    envelopes += [(dest, envelope) for dest in allowed]
                    for dest in withheld:
                        withheld_count += 1
                        _log_withheld(item, control_id, route, dest, envelope)
        except (InputError, ValueError) as exc:
            # The journal and the dead letter keep the whole text for the operator; the log
            # names the rule and the field only: a rule's text can quote the value.
            where = (
                {"mapping": exc.mapping, "line": exc.line, "path": exc.path, "rule": rule_name(exc)}
                if isinstance(exc, MappingError)
                else {"error": type(exc).__name__}
            )
            reason = where.get("rule") or where.get("error")
            _log_attention("transform_failed", item, control_id, message_type, reason=reason, **where)
            error = f"transform: {exc}"
            return Outcome(item.journal_id, journal.FAILED, error, [], item.channel, current), []
        published = [(dest, env["record_id"]) for dest, env in envelopes]
        log.debug(
            "message_routed",
            journal_id=item.journal_id,
            channel=item.channel,
            control_id=_printable(control_id),
            records=len(published),
        )
        taken = tuple(route.name for route in routes)
        outcome = Outcome(
            item.journal_id, journal.ROUTED, None, published, withheld=withheld_count, routes=taken
        )
        return outcome, envelopes

    def _publish(self, envelopes: list[tuple[str, dict[str, Any]]]) -> None:
        for attempt in until_it_works("publish"):
            with attempt:
                if self._bus is None:
                    self._bus = self.bus_factory()
                try:
                    self._bus.publish_many(envelopes)
                    self._wait_for_consumers({dest for dest, _ in envelopes})
                except Exception:
                    with contextlib.suppress(Exception):
                        self._bus.close()
                    self._bus = None
                    raise

    def _wait_for_consumers(self, destinations: set[str]) -> None:
        """In-process queues live on the heap: let the deliver stage catch up before taking
        more (the journal keeps what waits meanwhile). A broker needs no such wait."""
        assert self._bus is not None
        for dest in destinations:
            while (self._bus.waiting(dest) or 0) > MAX_WAITING and not self._stop.is_set():
                self._stop.wait(0.005)

    def _save(self, outcomes: list[Outcome]) -> None:
        routed = [(o.journal_id, o.status, o.published) for o in outcomes if o.status == journal.ROUTED]
        taken = {o.journal_id: o.routes for o in outcomes if o.status == journal.ROUTED}
        others = [o for o in outcomes if o.status != journal.ROUTED]
        for attempt in until_it_works("journal_status"):
            with attempt:
                if routed:
                    journal.record_routed(self.journal_engine, routed, taken)
                if others:
                    self._save_unrouted_and_failed(others)

    def _save_unrouted_and_failed(self, outcomes: list[Outcome]) -> None:
        """A `failed` status and its dead letter commit together: recovery re-reads only
        `received` messages, so a status saved alone would hide the failure for good."""
        with self.journal_engine.begin() as conn:
            journal.set_statuses_in(conn, [(o.journal_id, o.status, o.error) for o in outcomes])
            failpoints.reach(failpoints.TRANSFORM_DEAD_LETTER)
            for o in outcomes:
                if o.status == journal.FAILED:  # waits, explained, for an operator
                    dead_letters.put_dead_letter(
                        conn,
                        stage=dead_letters.TRANSFORM,
                        channel=o.channel,
                        route=o.route,
                        destination=None,
                        record_id=None,
                        journal_id=o.journal_id,
                        reason=o.error or "",
                        attempts=1,
                        first_failed_at=journal.now_utc(),
                        payload=None,
                    )
