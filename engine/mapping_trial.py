"""What the engine would make of an HL7 file on one channel, with no journal, bus or store.

`mapping run` and `mapping explain` answer with the engine's own code, so they cannot
disagree with it: the ingest decision (`channels.intake.examine`: batch split, charset from the
channel and MSH-18, limits, AR reasons) and the transform stage's pure part
(`TransformWorker.transform`: parse, route, map, validate). What they add is why each
candidate route did or did not take the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from channels.intake.examine import Policy, examine
from core import connectors
from core.settings import Settings
from engine import journal
from engine.pipeline import TransformWorker
from engine.router import Route, Router
from transforms.decode import decode
from transforms.hl7v2 import Message
from transforms.mapping.compiler import condition_inputs

TRIAL_ID = 0  # the journal id a trial message pretends to have


@dataclass(frozen=True, slots=True)
class RouteCheck:
    """A route that takes this channel and message type, and whether its `when:` held."""

    route: Route
    holds: bool

    @property
    def condition(self) -> str | None:
        return self.route.spec.when


@dataclass
class Trial:
    """One message of the file, as the engine would handle it."""

    status: str  # journal status: routed, unrouted, failed or rejected
    message_type: str = ""
    control_id: str = ""
    encoding: str = ""
    error: str | None = None  # the AR reason, or the dead letter's reason
    message: Message | None = None
    candidates: list[RouteCheck] = field(default_factory=list)
    other_channels: list[str] = field(default_factory=list)  # routes for this type elsewhere
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    destinations: dict[str, list[str]] = field(default_factory=dict)  # record_id → destinations

    @property
    def routes(self) -> list[Route]:
        return [c.route for c in self.candidates if c.holds]

    @property
    def mapped(self) -> bool:
        return self.status == journal.ROUTED and bool(self.envelopes)

    def seen(self, check: RouteCheck) -> dict[str, Any]:
        """The values a route's condition read (for the engineer's own terminal, never a log)."""
        if check.condition is None or self.message is None:
            return {}
        return condition_inputs(check.condition, self.message)


def try_file(raw: bytes, settings: Settings, router: Router, channel: str) -> list[Trial]:
    """Every message of the file (one, or each of an FHS/BHS batch) as received on `channel`."""
    policy = _policy(settings, channel)
    strict = frozenset(name for name, c in settings.channels.items() if c.checks_structure)
    # Only the pure `transform` step is used: no journal and no bus are ever touched.
    worker = TransformWorker(router, None, _no_bus, strict_channels=strict)  # type: ignore[arg-type]
    return [_trial(v.entry, v.encoding, router, worker, channel) for v in examine(raw, policy)]


def _trial(
    entry: journal.Entry, encoding: str, router: Router, worker: TransformWorker, channel: str
) -> Trial:
    trial = Trial(
        entry.status,
        message_type=entry.message_type or "",
        control_id=entry.control_id or "",
        encoding=encoding,
        error=entry.error or None,
    )
    if entry.status == journal.REJECTED:
        return trial
    outcome, envelopes = worker.transform(journal.Accepted(TRIAL_ID, channel, entry.raw, encoding))
    trial.status, trial.error = outcome.status, outcome.error
    try:
        trial.message = Message(decode(entry.raw, encoding))
    except ValueError:
        return trial
    found = router.match(channel, trial.message_type)
    trial.candidates = [RouteCheck(r, r.accepts(trial.message)) for r in found]
    trial.other_channels = [
        r.name for r in router.routes if r.spec.matches(trial.message_type) and channel not in r.spec.from_
    ]
    for dest, envelope in envelopes:
        if not any(e is envelope for e in trial.envelopes):
            trial.envelopes.append(envelope)
        trial.destinations.setdefault(envelope["record_id"], []).append(dest)
    return trial


def _no_bus() -> Any:
    raise RuntimeError("a trial never publishes")


def _policy(settings: Settings, channel: str) -> Policy:
    """How `channel` examines a message: its connector's configured `policy` when it has one
    (an HL7 source's configuration carries it), else the defaults in the engine's time zone."""
    ch = settings.channels[channel]
    config = connectors.source_type(ch.type).configure(channel, ch, settings)
    policy = getattr(config, "policy", None)
    return (
        policy if isinstance(policy, Policy) else Policy(channel, timezone=ZoneInfo(settings.engine.timezone))
    )
