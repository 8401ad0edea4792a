"""The operator requests a running engine carries out: replay, reprocess, reprocess by selection.

The CLI queues them (engine/operator_requests.py) after writing the audit entry; here the
engine runs them with its own parts: its bus (on the embedded `memory://` default the
queues exist only inside this process) and its transform stage, i.e. the mappings this
process has loaded. Which process may take which kind:

- `replay` needs a bus whose messages reach a consumer: any process on RabbitMQ, or the
  process that delivers on `memory://`;
- `reprocess` and `reprocess_selection` need the transform role.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine

from deadletter import actions
from deadletter.actions import ActionResult, Transform
from deadletter.audit import Actor
from engine.bus import Bus
from engine.operator_requests import Handler, Request
from engine.reprocess_selection import Selection, reprocess_selection

StoreFor = Callable[[str], Engine]
"""The record store database of a destination."""

REPLAY = "replay"
REPROCESS = "reprocess"
REPROCESS_SELECTION = "reprocess_selection"


class OperatorActions:
    """Handlers bound to one engine process's journal, bus and transform stage."""

    def __init__(
        self,
        journal_engine: Engine,
        bus_factory: Callable[[], Bus],
        transform: Transform | None,
        store_for: StoreFor,
    ) -> None:
        self.journal_engine = journal_engine
        self.bus_factory = bus_factory
        self.transform = transform
        self.store_for = store_for

    def handlers(self, *, can_replay: bool) -> dict[str, Handler]:
        out: dict[str, Handler] = {}
        if can_replay:
            out[REPLAY] = self.replay
        if self.transform is not None:
            out[REPROCESS] = self.reprocess
            out[REPROCESS_SELECTION] = self.reprocess_selection
        return out

    def replay(self, params: dict[str, Any], request: Request) -> dict[str, Any]:
        return self._act(actions.replay, params, request)

    def reprocess(self, params: dict[str, Any], request: Request) -> dict[str, Any]:
        assert self.transform is not None
        return self._act(actions.reprocess, params, request, self.transform)

    def _act(
        self, action: Callable[..., Any], params: dict[str, Any], request: Request, *before: Any
    ) -> dict[str, Any]:
        """Run a dead-letter action on the request's ids with this process's bus."""
        with self._publisher() as publish:
            result = action(
                self.journal_engine,
                params["ids"],
                *before,
                publish,
                Actor(request.actor, request.os_user),
                target=params.get("target"),
                audit_id=params.get("audit_id"),
            )
        return action_outcome(result)

    def reprocess_selection(self, params: dict[str, Any], request: Request) -> dict[str, Any]:
        """Dry run (`dry_run`: true) or the real run, completing the requester's audit entry."""
        from deadletter import audit

        assert self.transform is not None
        selection = Selection.from_params(params["selection"])
        audit_id = params.get("audit_id")
        try:
            if params.get("dry_run"):
                report = reprocess_selection(self.journal_engine, selection, self.transform, self.store_for)
            else:
                with self._publisher() as publish:
                    report = reprocess_selection(
                        self.journal_engine, selection, self.transform, self.store_for, publish=publish
                    )
        except Exception as exc:
            if audit_id is not None:
                detail = {"selection": selection.to_params(), "error": f"{type(exc).__name__}: {exc}"[:500]}
                audit.finish_audit(
                    self.journal_engine, audit_id, outcome=audit.ABORTED, count=0, detail=detail
                )
            raise
        outcome = report.as_outcome()
        if audit_id is not None:
            counts = outcome["counts"]
            detail = {"selection": selection.to_params(), "dry_run": report.dry_run, **counts}
            detail.update(messages=report.messages, request=request.id)
            sent = 0 if report.dry_run else len(outcome["sent"])
            ended = audit.QUEUED if sent else audit.DONE  # the delivery outcome is the waiting CLI's to add
            audit.finish_audit(self.journal_engine, audit_id, outcome=ended, count=sent, detail=detail)
        return outcome

    @contextmanager
    def _publisher(self) -> Iterator[Callable[[str, dict[str, Any]], None]]:
        """`Bus.publish` on a connection of this request's own, closed afterwards."""
        opened: list[Bus] = []

        def publish(destination: str, envelope: dict[str, Any]) -> None:
            if not opened:
                opened.append(self.bus_factory())
            opened[0].publish(destination, envelope)

        try:
            yield publish
        finally:
            for bus in opened:
                bus.close()


def action_outcome(result: ActionResult) -> dict[str, Any]:
    """An ActionResult as the request's JSON outcome, for the waiting CLI."""
    return {
        "action": result.action,
        "audit_id": result.audit_id,
        "items": [[kind, item.id, item.code, item.detail] for kind, item in result.items()],
        "sent": {str(dl_id): [list(k) for k in keys] for dl_id, keys in result.sent.items()},
    }
