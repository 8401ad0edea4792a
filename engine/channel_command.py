"""`mch-engine channel stop|start|pause NAME`: an operator holds a channel's intake.

    channel stop NAME [--as NAME] [--wait]
    channel pause NAME --for 30m [--as NAME] [--wait]
    channel start NAME [--as NAME] [--wait]

The intent and its audit entry are written to the engine database (engine/channel_control.py),
so it holds across restarts and reloads until `start`; the running engine processes apply it
within a second. With `--wait` the command waits for every running ingest process to answer.
Exit codes: 0 recorded (with --wait: applied by every running ingest process), 2 usage,
configuration or database problem, 3 with --wait: not every running process answered in time.
"""

from __future__ import annotations

import argparse
from typing import Any

from core import i18n

DEFAULT_CONFIG = "routes.yaml"
WAIT_SECONDS = 15.0
EXIT_NOT_CARRIED_OUT = 3

_TEXT: dict[str, tuple[str, str]] = {
    "help_cmd_channel": ("停止、启动或暂停一个通道的接收", "stop, start or pause a channel's intake"),
    "channel_cmd_no_such": (
        "没有名为 {name} 的通道（见 routes.yaml 的 channels）",
        "no channel named {name} (see channels in routes.yaml)",
    ),
    "channel_cmd_for_needed": (
        "pause 需要 --for 时长，例如 --for 30m",
        "pause needs --for DURATION, e.g. --for 30m",
    ),
    "channel_cmd_bad_duration": (
        "--for 时长无效：{value}（例如 90s、30m、2h）",
        "--for: invalid duration {value} (e.g. 90s, 30m, 2h)",
    ),
    "channel_cmd_stopped": (
        "通道 {name} 已停止（审计记录 #{audit}，操作人 {actor}）：运行中的引擎在一秒内关闭其接收；"
        "已收到的消息照常转换和投递。引擎重启或重新加载后仍保持停止，直到 channel start {name}。",
        "channel {name} stopped (audit entry #{audit}, by {actor}): the running engine closes its intake "
        "within a second; messages already received are still transformed and delivered. It stays "
        "stopped across restarts and reloads until `channel start {name}`.",
    ),
    "channel_cmd_paused": (
        "通道 {name} 已暂停至 {until}（审计记录 #{audit}，操作人 {actor}）：到时自动恢复接收。",
        "channel {name} paused until {until} (audit entry #{audit}, by {actor}): it starts again by itself "
        "then.",
    ),
    "channel_cmd_started": (
        "通道 {name} 已启动（审计记录 #{audit}，操作人 {actor}）：运行中的引擎在一秒内恢复其接收。",
        "channel {name} started (audit entry #{audit}, by {actor}): the running engine opens its intake "
        "within a second.",
    ),
    "channel_cmd_answer": ("{process}：通道 {name} {state}", "{process}: channel {name} {state}"),
    "channel_cmd_state_running": ("运行中", "running"),
    "channel_cmd_state_stopped": ("已停止", "stopped"),
    "channel_cmd_state_paused": ("已暂停", "paused"),
    "channel_cmd_no_answer": (
        "{process}：在 {seconds:.0f} 秒内没有应答（进程可能已退出）；它下次查看时会执行",
        "{process}: no answer within {seconds:.0f} s (the process may have exited); it applies it at its "
        "next look",
    ),
    "channel_cmd_no_engine": (
        "没有正在运行的引擎：已记录，引擎启动时按此执行",
        "no engine is running: recorded, an engine applies it when it starts",
    ),
}
i18n.register(_TEXT)
_t = i18n.t


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("channel", help=_t("help_cmd_channel"))
    p.add_argument("action", choices=("stop", "start", "pause"))
    p.add_argument("name", metavar="NAME", help="the channel, as named in routes.yaml")
    p.add_argument("--for", dest="pause_for", metavar="DURATION", help="pause only: how long (90s, 30m, 2h)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="routes.yaml to use (default ./routes.yaml)")
    p.add_argument(
        "--as",
        dest="actor",
        metavar="NAME",
        help="your name for the audit log, kept beside the OS user (default: the OS user alone)",
    )
    p.add_argument("--wait", action="store_true", help="wait until every running ingest process applied it")
    p.set_defaults(func=cmd_channel)


def cmd_channel(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from core.settings.values import parse_duration
    from engine.reachability import open_database, reaching_database

    pause_for: float | None = None
    if args.action == "pause":
        if not args.pause_for:
            print(_t("channel_cmd_for_needed"))
            return 2
        try:
            pause_for = parse_duration(args.pause_for)
        except ValueError:
            pause_for = 0.0
        if not pause_for:
            print(_t("channel_cmd_bad_duration", value=args.pause_for))
            return 2
    settings = load_settings(args.config)
    if args.name not in settings.channels:
        print(_t("channel_cmd_no_such", name=args.name))
        return 2
    engine = open_database(settings.engine.database, create=True)
    try:
        with reaching_database(settings.engine.database):
            return _act(engine, settings, args, pause_for)
    finally:
        engine.dispose()


def _act(engine: Any, settings: Any, args: argparse.Namespace, pause_for: float | None) -> int:
    from deadletter import audit
    from engine import channel_control, loaded_config
    from engine import operator_requests as ops
    from engine.operator_time import local_time

    ops.ensure_schema(engine)
    expected = {r.process for r in loaded_config.running(engine) if "ingest" in r.roles}
    actor = audit.current_actor(args.actor)
    audit_id, rid = channel_control.request(engine, args.name, args.action, actor, pause_for=pause_for)
    said = {"name": args.name, "audit": audit_id, "actor": str(actor)}
    if args.action == "pause":
        until = channel_control.held(engine).get(args.name)
        when = local_time(until.until, settings.engine.tzinfo) if until else "-"
        print(_t("channel_cmd_paused", until=when, **said))
    else:
        print(_t("channel_cmd_stopped" if args.action == "stop" else "channel_cmd_started", **said))
    if not args.wait:
        return 0
    if not expected:
        print(_t("channel_cmd_no_engine"))
        return 0
    request = ops.wait(engine, rid, WAIT_SECONDS, done=lambda r: expected <= set(r.results))
    answers = request.results if request is not None else {}
    ops.finish(engine, rid, ops.DONE, {"processes": len(answers)})
    for process in sorted(expected):
        if process not in answers:
            print(_t("channel_cmd_no_answer", process=process, seconds=WAIT_SECONDS))
            continue
        state = (answers[process][1] or {}).get("state", "-")
        shown = _t(f"channel_cmd_state_{state}")
        print(_t("channel_cmd_answer", process=process, name=args.name, state=shown))
    return 0 if expected <= set(answers) else EXIT_NOT_CARRIED_OUT
