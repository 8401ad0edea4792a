"""Reload routes.yaml, its mappings and code tables in a running engine, without a restart.

`mch-engine reload` (an operator request every process carries out) and SIGHUP both come
here. The files are checked first, as `mch-engine check` does; a problem refuses the whole
reload and the engine keeps what it has. Then, in this order:

1. destinations added get their queue and workers (so nothing is routed to an absent queue);
2. the transform stage's router is replaced as a whole: a message is transformed entirely
   with the old routes and mappings or entirely with the new ones, never half and half;
3. channels: a channel whose address is unchanged keeps its listener and connections and
   uses its new settings from the next frame; a removed channel stops listening and answers
   what it has; a moved one stops and listens at its new address; an added one starts;
4. a removed destination's workers stop once its undelivered messages are delivered.

A kept destination whose other settings changed, or whose files changed (a record store's
rule tables), is handed its new settings in place when its sink can take them
(`reconfigure`): the record store runs the new rule tables from its next bundle.

Refused, with nothing changed: keys only a restart applies (engine database, broker, queue
prefix, time zone, journal, http; a kept destination's type, partitions or database; a new
destination with partitions > 1), a removed destination that still has undelivered
messages, and a new listening address that cannot be taken.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Engine, func, select

from core.errors import StartupError
from core.settings import Settings, load_settings
from deadletter import audit
from engine import channel_control, journal, loaded_config
from engine.check import check_config
from engine.config_diff import ConfigDiff, compare
from engine.operator_requests import Request, process_name
from engine.router import Route, Router
from transforms.mapping import Mapping, load_mapping
from transforms.mapping.passthrough import PASS_THROUGH

if TYPE_CHECKING:
    from engine.runtime import EngineRuntime

log = structlog.get_logger("engine.live_reload")

RELOADED = "reloaded"
UNCHANGED = "unchanged"
REFUSED = "refused"
STEP_TIMEOUT = 60.0  # seconds a listener step may take on the event loop (draining connections)
RETIRE_POLL = 0.5  # seconds between looks at a removed destination's undelivered messages
RETIRE_SETTLE = 2.0  # seconds before the first look


@dataclass(frozen=True, slots=True)
class CompiledRoutes:
    """A router, and every file the configuration reads: mappings, their includes and code
    tables, and the files destinations read (rule tables)."""

    router: Router
    files: list[Path]


def _reconfigured(new: Settings, diff: ConfigDiff) -> list[str]:
    """Kept destinations whose settings changed, or which read a file that changed."""
    names = set(diff.destinations.changed)
    if diff.files:
        names |= {name for name, d in new.destinations.items() if d.config_files()}
    return sorted(names - set(diff.destinations.added))


def compile_routes(settings: Settings) -> CompiledRoutes:
    """Compile each route's mapping (each file once) into a router."""
    compiled: dict[Path, Mapping] = {}
    routes = []
    reaches = {name: d.reaches for name, d in settings.destinations.items()}
    for r in settings.routes:
        path = r.mapping_path(settings)
        if path is None:  # records passed on unchanged (every `from:` channel carries records)
            routes.append(Route.build(r, PASS_THROUGH, reaches))
            continue
        if path not in compiled:
            compiled[path] = load_mapping(path, display=r.mapping, roots=settings.roots)
        routes.append(Route.build(r, compiled[path], reaches))
    read = [f for m in compiled.values() for f in m.files] + destination_files(settings)
    files = list(dict.fromkeys(f.resolve() for f in read))
    return CompiledRoutes(Router(routes), files)


def destination_files(settings: Settings) -> list[Path]:
    """Files destinations read besides routes.yaml (a record store's rule tables)."""
    return [
        destination.file_path(written, settings)
        for destination in settings.destinations.values()
        for _key, _index, written in destination.config_files()
    ]


@dataclass(slots=True)
class ReloadOutcome:
    """What one process did; JSON-able, so the CLI can print it in the operator's language."""

    result: str
    process: str
    diff: ConfigDiff | None = None
    reasons: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "process": self.process,
            "diff": self.diff.to_json() if self.diff is not None else None,
            "reasons": self.reasons,
            "warnings": self.warnings,
        }


def _log_outcome(outcome: ReloadOutcome) -> None:
    """What SIGHUP's sender reads: the result, and why a refusal (configuration, never
    patient data: problems name file, line and key)."""
    why: dict[str, Any] = {}
    for reason in outcome.reasons:
        if reason["code"] == "problems":
            why["problems"] = reason["lines"]
        elif reason["code"] == "restart_needed":
            why["restart_needed"] = reason["keys"]
        elif reason["code"] == "destination_pending":
            why.setdefault("undelivered", {})[reason["destination"]] = reason["count"]
        else:
            why[reason["code"]] = reason.get("error")
    changed = outcome.diff.to_json() if outcome.diff is not None and outcome.result == RELOADED else None
    level = log.warning if outcome.result == REFUSED else log.info
    level("reload_finished", result=outcome.result, changed=changed, warnings=outcome.warnings, **why)


def undelivered(engine: Engine, destination: str) -> int:
    """Deliveries to `destination` still pending or waiting for a retry."""
    d = journal.deliveries.c
    query = select(func.count()).where(
        d.destination == destination, d.status.in_((journal.PENDING, journal.RETRYING))
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


class LiveReload:
    """Carries out reloads for one engine process, one at a time."""

    def __init__(self, runtime: EngineRuntime, loop: asyncio.AbstractEventLoop, files: list[Path]) -> None:
        self.runtime = runtime
        self.loop = loop
        self.process = process_name()
        self.loaded = loaded_config.snapshot(runtime.settings, files)
        self._lock = threading.Lock()

    # entry points --------------------------------------------------------------------

    def handle_request(self, params: dict[str, Any], request: Request) -> dict[str, Any]:
        """The `reload` operator request (the CLI writes the audit entry)."""
        return self.reload().to_json()

    def on_signal(self) -> None:
        """SIGHUP: reload in a worker thread, audited here (there is no CLI to do it)."""
        self.loop.run_in_executor(None, self._reload_audited)

    def _reload_audited(self) -> None:
        engine = self.runtime.journal_engine
        assert engine is not None
        try:
            # Written before acting: without the entry there is no reload.
            entry = audit.begin_audit(
                engine,
                actor=audit.current_actor(),
                action="reload",
                target=f"SIGHUP {self.process}",
                detail={"via": "SIGHUP"},
            )
        except Exception as exc:
            log.error("reload_not_audited", error=type(exc).__name__)
            return
        outcome = self.reload()  # never raises: a fault is a refusal with its reason
        status = audit.FAILED if outcome.result == REFUSED else audit.DONE
        try:
            detail = {"processes": [outcome.to_json()]}
            audit.finish_audit(engine, entry, outcome=status, count=1, detail=detail)
        except Exception as exc:
            log.error("reload_audit_unfinished", error=type(exc).__name__)

    # the reload ----------------------------------------------------------------------

    def reload(self) -> ReloadOutcome:
        """Check, compare, then apply; the outcome says what changed or why nothing did."""
        with self._lock:
            log.info("reload_started", process=self.process)
            try:
                outcome = self._reload()
            except Exception as exc:  # a fault of ours, not the files': say so, keep running
                log.error("reload_failed", error=type(exc).__name__)
                reason = {"code": "error", "error": f"{type(exc).__name__}: {exc}"}
                outcome = ReloadOutcome(REFUSED, self.process, reasons=[reason])
            _log_outcome(outcome)
            return outcome

    def _reload(self) -> ReloadOutcome:
        rt = self.runtime
        source = rt.settings.source
        if source is None:
            reason = {"code": "error", "error": "the engine was not started from a routes.yaml file"}
            return ReloadOutcome(REFUSED, self.process, reasons=[reason])
        problems = check_config(source, check_mapping=load_mapping)
        if problems:
            lines = [str(p) for p in sorted(problems, key=lambda e: (e.file, e.line or 0))]
            return ReloadOutcome(REFUSED, self.process, reasons=[{"code": "problems", "lines": lines}])
        new = load_settings(source)
        compiled = compile_routes(new)
        snap = loaded_config.snapshot(new, compiled.files)
        diff = compare(self.loaded, snap)
        if not diff:
            return ReloadOutcome(UNCHANGED, self.process, diff)
        reasons = self._refusals(diff)
        if reasons:
            return ReloadOutcome(REFUSED, self.process, diff, reasons)
        try:
            bound = self._on_loop(self._bind_new(new, diff))
        except StartupError as exc:
            return ReloadOutcome(REFUSED, self.process, diff, [{"code": "cannot_listen", "error": str(exc)}])
        outcome = ReloadOutcome(RELOADED, self.process, diff)
        self._apply(new, compiled, diff, bound, outcome)
        self.loaded = snap
        if rt.heartbeat is not None:
            rt.heartbeat.loaded(snap)  # its row says what it runs now (engine/heartbeat.py)
        return outcome

    def _refusals(self, diff: ConfigDiff) -> list[dict[str, Any]]:
        keys = diff.restart_needed
        reasons: list[dict[str, Any]] = [{"code": "restart_needed", "keys": keys}] if keys else []
        engine = self.runtime.journal_engine
        assert engine is not None
        for name in diff.destinations.removed:
            count = undelivered(engine, name)
            if count:
                reasons.append({"code": "destination_pending", "destination": name, "count": count})
        return reasons

    def _on_loop(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(STEP_TIMEOUT)

    # channels ------------------------------------------------------------------------

    def _moving(self, diff: ConfigDiff) -> list[str]:
        """Channels that need a listener of their own at a new address: added or moved; not
        those an operator stopped or paused (engine/channel_control.py), which stay so."""
        rt = self.runtime
        assert rt.journal_engine is not None
        holding = channel_control.held(rt.journal_engine)
        wanted = [*diff.channels.added, *diff.listen]
        if rt.control is not None:  # started by it once the operator starts them
            rt.control.stopped_here.update(name for name in wanted if name in holding)
        return [name for name in wanted if name not in holding]

    async def _bind_new(self, new: Settings, diff: ConfigDiff) -> dict[str, Any]:
        """Take the new addresses no listener of ours holds, before anything changes; on a
        failure let go of those taken and raise (the reload is refused)."""
        rt = self.runtime
        if not rt.ingesting:  # a standby binds when it leads
            return {}
        held = {_address(getattr(s, "config", None)) for s in rt.sources} - {None}
        bound: dict[str, Any] = {}
        for name in self._moving(diff):
            config = rt.channel_config(name, new.channels[name], new)
            if _address(config) is None or _address(config) in held:
                # No address to take (a source that does not listen), or one taken by one of
                # ours that stops first: started in `_switch_channels`.
                continue
            source = rt.build_source(config, new.channels[name])
            try:
                await source.bind()
            except StartupError:
                await asyncio.gather(*(s.stop(0) for s in bound.values()))
                raise
            bound[name] = source
        return bound

    async def _switch_channels(
        self, new: Settings, diff: ConfigDiff, bound: dict[str, Any], outcome: ReloadOutcome
    ) -> None:
        rt = self.runtime
        by_name = {s.name: s for s in rt.sources}
        leaving = [by_name[name] for name in [*diff.channels.removed, *diff.listen] if name in by_name]
        for source in leaving:
            rt.sources.remove(source)
        # Stop taking new connections and answer what the open ones have sent.
        await asyncio.gather(*(s.stop(STEP_TIMEOUT / 2) for s in leaving), return_exceptions=True)
        for name in diff.channels.changed:
            if name not in diff.listen and name in by_name:
                by_name[name].reconfigure(rt.channel_config(name, new.channels[name], new))
        for name in self._moving(diff):
            channel = new.channels[name]
            source = bound.get(name) or rt.build_source(rt.channel_config(name, channel, new), channel)
            try:
                if name in bound:
                    await source.serve()
                else:
                    await source.start()
            except StartupError as exc:
                outcome.warnings.append(str(exc))
                continue
            rt.sources.append(source)

    # the whole switch ----------------------------------------------------------------

    def _apply(
        self,
        new: Settings,
        compiled: CompiledRoutes,
        diff: ConfigDiff,
        bound: dict[str, Any],
        outcome: ReloadOutcome,
    ) -> None:
        rt = self.runtime
        rt.settings = new  # bus factories read destinations' partitions from here
        if "deliver" in rt.roles:
            for name in diff.destinations.added:
                rt.start_destination(name, new.destinations[name])
            if diff.retry:
                for worker in rt.workers:
                    worker.policy = rt.retry_policy()
            for name in _reconfigured(new, diff):
                for worker in (w for w in rt.workers if w.destination == name):
                    reconfigure = getattr(worker.sink, "reconfigure", None)
                    if reconfigure is not None:  # a sink that can take new settings in place
                        reconfigure(new.destinations[name], rt)
        if rt.transform is not None:
            # One assignment each: the transform thread reads the router once per message.
            rt.transform.strict_channels = frozenset(
                n for n, ch in new.channels.items() if getattr(ch, "strict", False)
            )
            rt.transform.row_channels = frozenset(n for n, ch in new.channels.items() if ch.carries_rows)
            rt.transform.record_channels = frozenset(
                n for n, ch in new.channels.items() if ch.carries_records
            )
            rt.transform.router = compiled.router
        if rt.ingesting:
            self._on_loop(self._switch_channels(new, diff, bound, outcome))
        for name in diff.destinations.removed:
            leaving = [w for w in rt.workers if w.destination == name]
            if leaving:
                threading.Thread(target=self._retire, args=(name, leaving), daemon=True).start()

    def _retire(self, destination: str, workers: list[Any]) -> None:
        """Stop a removed destination's workers once nothing is left for them to deliver
        (messages the old routes published just before the switch included)."""
        engine = self.runtime.journal_engine
        assert engine is not None
        pause = threading.Event()
        pause.wait(RETIRE_SETTLE)  # the transform's batch in flight at the switch is saved by then
        while undelivered(engine, destination):
            pause.wait(RETIRE_POLL)
        for worker in workers:
            worker.stop()
            if worker in self.runtime.workers:
                self.runtime.workers.remove(worker)
        log.info("destination_retired", destination=destination)


def _address(config: Any) -> tuple[str, int] | None:
    """(host, port) a source listens on, or None for one that does not listen."""
    host, port = getattr(config, "host", None), getattr(config, "port", None)
    return (host, port) if host is not None and port is not None else None
