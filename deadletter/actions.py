"""What an operator can do with dead letters: replay, reprocess, purge.

- replay: send the kept payload to the same destination again. For when the
  destination, the broker or a database was away; nothing about the message changes.
- reprocess: run the journaled raw message through the current mappings and routes
  again, and publish what comes out. For when the mapping was the bug.
- purge: close it for good, with a reason. The row stays (status `purged`), and so
  does the audit entry.

Only `open` dead letters are acted on, so running an action twice changes nothing
the second time; each id is reported as done, skipped (with why) or failed (with
the error). Publishing comes before marking: if the process dies in between, the
dead letter is still open and a second replay sends it again, which the idempotent
destinations absorb; the other order could mark as replayed what was never sent.
Every call writes its audit entry before it acts (also when it will have nothing to
do) and completes it with the outcome afterwards, also when it stops part-way.

The bus and the transform stage come in as callables, so this module needs no
broker or mapping of its own (the CLI passes `Bus.publish` and
`TransformWorker.transform`; tests pass plain functions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from core.journal import DEAD, FAILED, ROUTED, UNROUTED, Accepted
from core.journal import status as journal_status
from deadletter import audit, store
from deadletter.audit import Actor

Publish = Callable[[str, dict[str, Any]], None]
Transform = Callable[[Accepted], tuple[Any, list[tuple[str, dict[str, Any]]]]]

# Outcome codes: the CLI renders each in the operator's language; `Item.text` is English.
_EN: dict[str, str] = {
    "replayed": "replayed to {detail}",
    "reprocessed": "reprocessed and published to {detail}",
    "reprocessed_unrouted": "reprocessed: no route takes this message now, nothing published",
    "reprocessed_elsewhere": (
        "reprocessed: the current routes no longer send it to {detail}, nothing published"
    ),
    "purged": "purged",
    "already": "already {detail}: nothing to do",
    "use_reprocess": "failed at the transform stage, so there is no payload to replay: use reprocess",
    "not_found": "no such dead letter",
    "no_message": "journal message #{detail} is gone: cannot reprocess",
    "publish_failed": "could not publish: {detail}",
    "still_fails": "still fails: {detail}",
    "transform_error": "the transform stage raised an error: {detail}",
}

# delivery_attempts outcomes written by the actions.
ATTEMPT_REPLAYED = "replayed"
ATTEMPT_REPLAY_FAILED = "replay_failed"
ATTEMPT_REPROCESSED = "reprocessed"
ATTEMPT_REPROCESS_FAILED = "reprocess_failed"


@dataclass(frozen=True, slots=True)
class Item:
    """What happened to one dead letter: a code (for translation) and its detail."""

    id: int
    code: str
    detail: str = ""

    @property
    def text(self) -> str:
        return _EN[self.code].format(detail=self.detail)


@dataclass(slots=True)
class ActionResult:
    """Per-id results of one action, and the audit entry that records it."""

    action: str
    done: list[Item] = field(default_factory=list)
    skipped: list[Item] = field(default_factory=list)
    failed: list[Item] = field(default_factory=list)
    audit_id: int | None = None
    sent: dict[int, list[tuple[int, str, str]]] = field(default_factory=dict)
    """Per dead letter, the (journal id, destination, record id) deliveries it published:
    what a caller waiting for the real outcome watches."""

    @property
    def count(self) -> int:
        return len(self.done)

    def items(self) -> list[tuple[str, Item]]:
        """Every id's result in id order, each with `done`, `skipped` or `failed`."""
        tagged = [("done", i) for i in self.done]
        tagged += [("skipped", i) for i in self.skipped]
        tagged += [("failed", i) for i in self.failed]
        return sorted(tagged, key=lambda pair: pair[1].id)


def replay(
    engine: Engine,
    ids: Iterable[int],
    publish: Publish,
    actor: str | Actor,
    *,
    note: str | None = None,
    target: str | None = None,
    audit_id: int | None = None,
) -> ActionResult:
    """Publish each open deliver-stage dead letter's payload to its destination again.

    `audit_id`: the entry the requester already wrote (an operator request carried out by
    the engine); this call completes it instead of writing its own."""
    wanted = _unique(ids)
    result = ActionResult("replay", audit_id=audit_id)
    who = Actor.of(actor)
    with _audited(engine, result, who, wanted, target, note=note):
        _replay(engine, wanted, publish, who.name, note, result)
    return result


def _replay(
    engine: Engine, wanted: list[int], publish: Publish, actor: str, note: str | None, result: ActionResult
) -> None:
    rows = store.get_many(engine, wanted)
    for dl_id in wanted:
        row = rows.get(dl_id)
        if _unavailable(dl_id, row, result) or row is None:
            continue
        if row["stage"] == store.TRANSFORM or row["payload"] is None:
            result.skipped.append(Item(dl_id, "use_reprocess"))
            continue
        key = (int(row["journal_id"]), row["destination"], row["record_id"])
        journal_status.reopen_deliveries(engine, [key])
        # Numbered before publishing: the delivery tries that follow must number after it.
        tried = _attempt(engine, row, ATTEMPT_REPLAYED, None)
        try:
            publish(row["destination"], row["payload"])
        except Exception as exc:
            error = _one_line(exc)
            journal_status.mark_delivery_error(engine, *key, error, status=DEAD)
            store.amend_attempt(engine, tried, ATTEMPT_REPLAY_FAILED, error)
            result.failed.append(Item(dl_id, "publish_failed", error))
            continue
        store.resolve(engine, [dl_id], store.REPLAYED, actor, note, failed_at=row["last_failed_at"])
        result.sent[dl_id] = [key]
        result.done.append(Item(dl_id, "replayed", row["destination"]))


def reprocess(
    engine: Engine,
    ids: Iterable[int],
    transform: Transform,
    publish: Publish,
    actor: str | Actor,
    *,
    note: str | None = None,
    target: str | None = None,
    audit_id: int | None = None,
) -> ActionResult:
    """Run each open dead letter's raw message through `transform` again and publish the result.

    A transform-stage dead letter publishes everything the message now becomes; a
    deliver-stage one only what goes to its own destination (the others already
    have theirs). If the mapping still fails, the dead letter stays open with the
    new reason and one more attempt.
    """
    wanted = _unique(ids)
    result = ActionResult("reprocess", audit_id=audit_id)
    who = Actor.of(actor)
    with _audited(engine, result, who, wanted, target, note=note):
        _reprocess(engine, wanted, transform, publish, who.name, note, result)
    return result


def _reprocess(
    engine: Engine,
    wanted: list[int],
    transform: Transform,
    publish: Publish,
    actor: str,
    note: str | None,
    result: ActionResult,
) -> None:
    rows = store.get_many(engine, wanted)
    for dl_id in wanted:
        row = rows.get(dl_id)
        if _unavailable(dl_id, row, result) or row is None:
            continue
        loaded = store.load_raw(engine, row["journal_id"])
        if loaded is None:
            result.failed.append(Item(dl_id, "no_message", str(row["journal_id"])))
            continue
        channel, raw, encoding = loaded
        item = Accepted(row["journal_id"], channel, raw, encoding)
        try:
            outcome, envelopes = transform(item)
        except Exception as exc:  # an engine fault, not the message's: leave the row as it was
            error = _one_line(exc)
            _attempt(engine, row, ATTEMPT_REPROCESS_FAILED, error)
            result.failed.append(Item(dl_id, "transform_error", error))
            continue
        status = getattr(outcome, "status", None)
        if status == ROUTED:
            _reprocess_routed(engine, row, envelopes, publish, actor, note, result)
        elif status == UNROUTED:
            if row["stage"] == store.TRANSFORM:
                journal_status.set_statuses(engine, [(row["journal_id"], UNROUTED, None)])
            _attempt(engine, row, ATTEMPT_REPROCESSED, None)
            store.resolve(engine, [dl_id], store.REPROCESSED, actor, note)
            result.done.append(Item(dl_id, "reprocessed_unrouted"))
        else:
            reason = str(getattr(outcome, "error", None) or "transform failed")
            store.note_failure(engine, dl_id, reason)
            _attempt(engine, row, ATTEMPT_REPROCESS_FAILED, reason)
            if row["stage"] == store.TRANSFORM:
                journal_status.set_statuses(engine, [(row["journal_id"], FAILED, reason)])
            result.failed.append(Item(dl_id, "still_fails", reason))


def _reprocess_routed(
    engine: Engine,
    row: dict[str, Any],
    envelopes: list[tuple[str, dict[str, Any]]],
    publish: Publish,
    actor: str,
    note: str | None,
    result: ActionResult,
) -> None:
    dl_id = row["id"]
    if row["stage"] == store.DELIVER:
        envelopes = [(dest, env) for dest, env in envelopes if dest == row["destination"]]
        if not envelopes:
            _attempt(engine, row, ATTEMPT_REPROCESSED, None)
            store.resolve(engine, [dl_id], store.REPROCESSED, actor, note)
            result.done.append(Item(dl_id, "reprocessed_elsewhere", row["destination"]))
            return
    targets = [(dest, str(env["record_id"])) for dest, env in envelopes]
    keys = [(int(row["journal_id"]), dest, rid) for dest, rid in targets]
    journal_status.reopen_deliveries(engine, keys)
    tried = _attempt(engine, row, ATTEMPT_REPROCESSED, None)  # numbered before the tries it causes
    try:
        for dest, env in envelopes:
            publish(dest, env)
    except Exception as exc:
        error = _one_line(exc)
        store.amend_attempt(engine, tried, ATTEMPT_REPROCESS_FAILED, error)
        result.failed.append(Item(dl_id, "publish_failed", error))
        return
    # The journal learns what was published, as the transform stage would have told it.
    taken = {row["journal_id"]: [env["route"] for _, env in envelopes if env.get("route")]}
    journal_status.record_routed(engine, [(row["journal_id"], ROUTED, targets)], taken)
    store.resolve(engine, [dl_id], store.REPROCESSED, actor, note, failed_at=row["last_failed_at"])
    result.sent[dl_id] = keys
    where = ", ".join(sorted({dest for dest, _ in targets}))
    result.done.append(Item(dl_id, "reprocessed", where))


def purge(
    engine: Engine,
    ids: Iterable[int],
    reason: str,
    actor: str | Actor,
    *,
    target: str | None = None,
) -> ActionResult:
    """Close open dead letters for good; the reason is required and kept with each row."""
    if not reason or not reason.strip():
        raise ValueError("purge needs a reason: say why these must never be delivered")
    reason = reason.strip()
    wanted = _unique(ids)
    result = ActionResult("purge")
    who = Actor.of(actor)
    with _audited(engine, result, who, wanted, target, reason=reason):
        rows = store.get_many(engine, wanted)
        candidates = [i for i in wanted if not _unavailable(i, rows.get(i), result)]
        closed = set(store.resolve(engine, candidates, store.PURGED, who.name, reason))
        for dl_id in candidates:
            if dl_id in closed:
                result.done.append(Item(dl_id, "purged"))
            else:  # closed by someone else between our read and our update
                result.skipped.append(Item(dl_id, "already", "resolved"))
    return result


def _unique(ids: Iterable[int]) -> list[int]:
    return sorted({int(i) for i in ids})


def _unavailable(dl_id: int, row: dict[str, Any] | None, result: ActionResult) -> bool:
    """Record why this id cannot be acted on (unknown, or no longer open); False if it can."""
    if row is None:
        result.failed.append(Item(dl_id, "not_found"))
        return True
    if row["status"] != store.OPEN:
        result.skipped.append(Item(dl_id, "already", row["status"]))
        return True
    return False


def _attempt(engine: Engine, row: dict[str, Any], outcome: str, error: str | None) -> int:
    key = (row["journal_id"], row["destination"], row["record_id"])
    return store.record_attempt(
        engine,
        journal_id=key[0],
        destination=key[1],
        record_id=key[2],
        attempt=store.next_attempt(engine, *key),
        error=error,
        outcome=outcome,
    )


@contextmanager
def _audited(
    engine: Engine,
    result: ActionResult,
    actor: Actor,
    wanted: list[int],
    target: str | None,
    **extra: Any,
) -> Iterator[None]:
    """The audit entry is committed before the action touches anything and completed after,
    also when the action stops part-way: no work is ever done unaudited."""
    intent: dict[str, Any] = {"ids": wanted, **{k: v for k, v in extra.items() if v is not None}}
    if result.audit_id is None:
        result.audit_id = audit.begin_audit(
            engine,
            actor=actor,
            action=result.action,
            target=target or ",".join(str(i) for i in wanted),
            detail=intent,
        )
    try:
        yield
    except BaseException as exc:  # Ctrl+C too: the entry says how far it got
        with suppress(Exception):  # the database may be what failed
            _complete(engine, result, intent, audit.ABORTED, _one_line(exc))
        raise
    ended = audit.FAILED if result.failed else audit.QUEUED if result.sent else audit.DONE
    _complete(engine, result, intent, ended, None)


def _complete(
    engine: Engine, result: ActionResult, intent: dict[str, Any], outcome: str, error: str | None
) -> None:
    detail = {
        **intent,
        "done": [i.id for i in result.done],
        "skipped": [i.id for i in result.skipped],
        "failed": [i.id for i in result.failed],
    }
    if error:
        detail["error"] = error
    assert result.audit_id is not None
    audit.finish_audit(engine, result.audit_id, outcome=outcome, count=result.count, detail=detail)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 500 else text[:499] + "…"
