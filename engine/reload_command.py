"""`mch-engine reload` and `mch-engine check --diff`: change configuration without a restart.

    check --diff [--config routes.yaml]            what a reload would change
    reload [--config routes.yaml] [--as NAME] [--timeout S]

`check --diff` compares the files on disk with what the running engine loaded (each engine
process records it in its database, engine/loaded_config.py); with no engine running, with
what an engine loaded last; with none ever, everything is new. `reload` checks the files,
then asks every running engine process to reload (an operator request of scope `all`),
waits for their answers and prints, per process, what changed or why nothing did. Exit
codes: 0 reloaded (or nothing to change), 1 refused (a problem in the files, a change
that needs a restart, …), 2 a usage or configuration problem, or no engine answered.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core import i18n

DEFAULT_CONFIG = "routes.yaml"
DEFAULT_TIMEOUT = 15.0

_TEXT: dict[str, tuple[str, str]] = {
    # key: (zh, en)
    "reload_cmd_section_channels": ("通道", "channel"),
    "reload_cmd_section_routes": ("路由", "route"),
    "reload_cmd_section_destinations": ("目的地", "destination"),
    "reload_cmd_section_files": ("映射/代码表文件", "mapping/code table file"),
    "reload_cmd_added": ("  + 新增{section}：{name}", "  + {section} added: {name}"),
    "reload_cmd_removed": ("  - 删除{section}：{name}", "  - {section} removed: {name}"),
    "reload_cmd_changed": ("  ~ 修改{section}：{name}（{keys}）", "  ~ {section} changed: {name} ({keys})"),
    "reload_cmd_file_changed": ("  ~ 文件内容已修改：{name}", "  ~ file changed: {name}"),
    "reload_cmd_moved": (
        "  ~ 通道 {name} 改为监听 {new}（原为 {old}）：原地址停止监听，新地址开始监听",
        "  ~ channel {name} moves from {old} to {new}: the old address stops, the new one starts",
    ),
    "reload_cmd_engine_changed": ("  ~ engine 设置修改：{keys}", "  ~ engine settings changed: {keys}"),
    "reload_cmd_retry_changed": ("  ~ retry 设置修改：{keys}", "  ~ retry settings changed: {keys}"),
    "reload_cmd_restart_needed": (
        "  ! 需要重启：以下设置只在引擎重启后生效，重新加载会被拒绝：{keys}",
        "  ! restart needed: these settings apply only after a restart, a reload is refused: {keys}",
    ),
    "reload_cmd_no_changes": (
        "  没有变化：重新加载不会改变任何内容",
        "  no changes: a reload would change nothing",
    ),
    "reload_cmd_against_running": (
        "与正在运行的引擎 {process} 所加载的配置（{at} 加载）相比：",
        "compared with what the running engine {process} loaded (at {at}):",
    ),
    "reload_cmd_against_last": (
        "没有正在运行的引擎；与引擎 {process} 最后一次加载的配置（{at}）相比：",
        "no engine is running; compared with what engine {process} last loaded (at {at}):",
    ),
    "reload_cmd_against_nothing": (
        "此数据库中还没有引擎运行过；以下内容全部为新增：",
        "no engine has run with this database yet; everything is new:",
    ),
    "reload_cmd_local_refused": (
        "配置有误，未请求引擎重新加载，引擎继续使用原配置：",
        "the files have problems: no engine was asked to reload, they keep their configuration:",
    ),
    "reload_cmd_reloaded": ("{process}：已重新加载", "{process}: reloaded"),
    "reload_cmd_unchanged": (
        "{process}：配置无变化，未做任何改动",
        "{process}: nothing changed, nothing to do",
    ),
    "reload_cmd_refused": (
        "{process}：拒绝重新加载，引擎继续使用原配置：",
        "{process}: reload refused, the engine keeps its configuration:",
    ),
    "reload_cmd_reason_restart": (
        "  需要重启：以下设置只能在重启引擎后生效：{keys}",
        "  restart needed: these settings apply only after a restart: {keys}",
    ),
    "reload_cmd_reason_pending": (
        "  目的地 {destination} 还有 {count} 条未投递的消息；待其投递完成（或进入死信）后再删除此目的地",
        "  destination {destination} still has {count} undelivered messages; remove it once they "
        "are delivered (or dead letters)",
    ),
    "reload_cmd_reason_listen": ("  无法监听新地址：{error}", "  cannot listen at a new address: {error}"),
    "reload_cmd_reason_error": ("  重新加载出错：{error}", "  the reload failed: {error}"),
    "reload_cmd_warning": ("  注意：{text}", "  warning: {text}"),
    "reload_cmd_process_failed": ("{process}：执行失败：{error}", "{process}: failed: {error}"),
    "reload_cmd_no_answer": (
        "{process}：在 {seconds:.0f} 秒内没有应答（进程可能已退出）",
        "{process}: no answer within {seconds:.0f} s (the process may have exited)",
    ),
    "reload_cmd_no_engine": (
        "在 {seconds:.0f} 秒内没有任何引擎应答：使用数据库 {url} 的引擎可能没有运行"
        "（若刚修改了 engine.database，需要重启引擎）。没有重新加载任何内容。",
        "no engine answered within {seconds:.0f} s: is an engine running with the database {url}? "
        "(A changed engine.database needs a restart.) Nothing was reloaded.",
    ),
    "reload_cmd_bad_timeout": (
        "--timeout 应为 0 到 3600 之间的秒数（收到 {value!r}）",
        "--timeout must be seconds between 0 and 3600 (got {value!r})",
    ),
    "reload_cmd_summary": (
        "重新加载请求 #{request}：{answered} 个引擎进程应答（审计记录 #{audit}，操作人 {actor}）",
        "reload request #{request}: {answered} engine processes answered (audit entry #{audit}, by {actor})",
    ),
}
i18n.register(_TEXT)


_t = i18n.t


# --------------------------------------------------------------------------- parser


def add_commands(subparsers: Any) -> None:
    """Add `reload` to `mch-engine`'s subcommands (`check --diff` is on `check` itself)."""
    p = subparsers.add_parser("reload", help=_t("help_cmd_reload"))
    p.add_argument("--config", default=DEFAULT_CONFIG, help="routes.yaml to use (default ./routes.yaml)")
    p.add_argument(
        "--as",
        dest="actor",
        metavar="NAME",
        help="your name for the audit log, kept beside the OS user (default: the OS user alone)",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the engine processes' answers (default {DEFAULT_TIMEOUT:.0f})",
    )
    p.set_defaults(func=cmd_reload)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(_t("reload_cmd_bad_timeout", value=text))
    return value


# --------------------------------------------------------------------------- rendering


def diff_lines(diff: Any) -> list[str]:
    """A ConfigDiff as lines for the operator (empty when nothing changes)."""
    out: list[str] = []
    for section in ("channels", "routes", "destinations"):
        part = getattr(diff, section)
        label = _t(f"reload_cmd_section_{section}")
        out += [_t("reload_cmd_added", section=label, name=name) for name in part.added]
        out += [_t("reload_cmd_removed", section=label, name=name) for name in part.removed]
        for name, keys in part.changed.items():
            if section == "channels" and name in diff.listen:
                old, new = diff.listen[name]
                out.append(_t("reload_cmd_moved", name=name, old=old, new=new))
                keys = [k for k in keys if k != "listen"]
                if not keys:
                    continue
            out.append(_t("reload_cmd_changed", section=label, name=name, keys=", ".join(keys)))
    files = diff.files
    label = _t("reload_cmd_section_files")
    out += [_t("reload_cmd_added", section=label, name=name) for name in files.added]
    out += [_t("reload_cmd_removed", section=label, name=name) for name in files.removed]
    out += [_t("reload_cmd_file_changed", name=name) for name in files.changed]
    if diff.engine:
        out.append(_t("reload_cmd_engine_changed", keys=", ".join(diff.engine)))
    if diff.retry:
        out.append(_t("reload_cmd_retry_changed", keys=", ".join(diff.retry)))
    if diff.restart_needed:
        out.append(_t("reload_cmd_restart_needed", keys=", ".join(diff.restart_needed)))
    return out


def _when(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")


def _reason_lines(reason: dict[str, Any]) -> list[str]:
    code = reason.get("code")
    if code == "problems":
        return [f"  {line}" for line in reason["lines"]]
    if code == "restart_needed":
        return [_t("reload_cmd_reason_restart", keys=", ".join(reason["keys"]))]
    if code == "destination_pending":
        return [_t("reload_cmd_reason_pending", destination=reason["destination"], count=reason["count"])]
    if code == "cannot_listen":
        return [_t("reload_cmd_reason_listen", error=reason["error"])]
    return [_t("reload_cmd_reason_error", error=reason.get("error", code))]


def outcome_lines(process: str, status: str, outcome: dict[str, Any] | None) -> tuple[str, list[str]]:
    """(result, lines) of one process's answer; result is reloaded, unchanged, refused or failed."""
    from engine.config_diff import ConfigDiff

    outcome = outcome or {}
    if status != "done" or "result" not in outcome:
        return "failed", [
            _t("reload_cmd_process_failed", process=process, error=outcome.get("error", status))
        ]
    result = outcome["result"]
    diff = ConfigDiff.from_json(outcome["diff"]) if outcome.get("diff") else None
    if result == "refused":
        lines = [_t("reload_cmd_refused", process=process)]
        for reason in outcome["reasons"]:
            lines += _reason_lines(reason)
        if diff is not None:
            lines += diff_lines(diff)
    elif result == "unchanged":
        lines = [_t("reload_cmd_unchanged", process=process)]
    else:
        lines = [_t("reload_cmd_reloaded", process=process), *(diff_lines(diff) if diff is not None else [])]
    lines += [_t("reload_cmd_warning", text=w) for w in outcome.get("warnings", [])]
    return result, lines


# --------------------------------------------------------------------------- commands


def _problems(config: str) -> list[Any]:
    from engine.check import check_config
    from transforms.mapping import load_mapping

    return check_config(config, check_mapping=load_mapping)


def cmd_check_diff(args: argparse.Namespace) -> int:
    """`check --diff`: check, then what a reload would change."""
    from core.settings import load_settings
    from engine import loaded_config
    from engine.check import format_problems
    from engine.config_diff import compare, empty_snapshot
    from engine.live_reload import compile_routes
    from engine.reachability import open_database

    problems = _problems(args.config)
    if problems:
        print(format_problems(problems, localized=True), file=sys.stderr)
        return 1
    settings = load_settings(args.config)
    on_disk = loaded_config.snapshot(settings, compile_routes(settings).files)
    # A SQLite file that is not there yet is made, as `run` makes it: no engine has run with it.
    engine = open_database(settings.engine.database, create=True)
    try:
        rows = _database_call(settings.engine.database, lambda: loaded_config.read_all(engine))
    finally:
        engine.dispose()
    zone = settings.engine.timezone
    alive = [r for r in rows if r.alive()]
    # One comparison per distinct loaded configuration (processes reloaded together share one).
    groups: dict[str, list[Any]] = {}
    for row in alive or rows[:1]:
        groups.setdefault(repr(sorted(row.snapshot.items())), []).append(row)
    if not groups:
        print(_t("reload_cmd_against_nothing"))
        fresh = compare(empty_snapshot(), on_disk)
        fresh.engine, fresh.retry, fresh.partitioned = [], [], []  # nothing runs: nothing to restart
        _print_diff(fresh)
        return 0
    for members in groups.values():
        first = members[0]
        names = ", ".join(m.process for m in members)
        key = "reload_cmd_against_running" if alive else "reload_cmd_against_last"
        print(_t(key, process=names, at=_when(first.loaded_at, zone)))
        _print_diff(compare(first.snapshot, on_disk))
    return 0


def _print_diff(diff: Any) -> None:
    lines = diff_lines(diff)
    print("\n".join(lines) if lines else _t("reload_cmd_no_changes"))


def _database_call(url: str, call: Any) -> Any:
    """`call()`; a database that cannot be reached is one line (`Unreachable`, exit 2)."""
    from engine.reachability import reaching_database

    with reaching_database(url):
        return call()


def cmd_reload(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from engine.check import format_problems
    from engine.reachability import open_database

    problems = _problems(args.config)
    if problems:
        print(_t("reload_cmd_local_refused"), file=sys.stderr)
        print(format_problems(problems, localized=True), file=sys.stderr)
        return 1
    settings = load_settings(args.config)
    # A SQLite file that is not there yet is made, as `run` makes it: no engine has run with it.
    engine = open_database(settings.engine.database, create=True)
    try:
        code = _database_call(settings.engine.database, lambda: _reload(engine, settings, args))
    finally:
        engine.dispose()
    return int(code)


def _reload(engine: Any, settings: Any, args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from deadletter import audit
    from engine import loaded_config
    from engine import operator_requests as ops

    audit.ensure_schema(engine)
    ops.ensure_schema(engine)
    expected = {row.process for row in loaded_config.running(engine)}
    actor = audit.current_actor(args.actor)
    target = ", ".join(sorted(expected)) or "no running engine"
    entry = audit.begin_audit(
        engine, actor=actor, action="reload", target=target, detail={"config": str(args.config)}
    )
    answers: dict[str, tuple[str, dict[str, Any] | None]] = {}
    outcome = audit.ABORTED
    try:
        request_id = ops.submit(engine, "reload", {}, actor=actor.name, os_user=actor.os_user, scope=ops.ALL)

        def answered(request: ops.Request) -> bool:
            got = set(request.results)
            return bool(got) and expected <= got if expected else bool(got)

        request = ops.wait(engine, request_id, args.timeout, done=answered)
        answers = dict(request.results) if request else {}
        results = {}
        for process in sorted(answers):
            status, result = answers[process]
            results[process], lines = outcome_lines(process, status, result)
            print("\n".join(lines))
        missing = sorted(expected - answers.keys())
        for process in missing:
            print(_t("reload_cmd_no_answer", process=process, seconds=args.timeout), file=sys.stderr)
        ok = bool(results) and not missing and all(r in ("reloaded", "unchanged") for r in results.values())
        outcome = audit.DONE if ok else audit.FAILED
        ops.finish(
            engine, request_id, ops.DONE if ok else ops.FAILED, {"results": results, "missing": missing}
        )
        if not answers:
            url = make_url(settings.engine.database).render_as_string(hide_password=True)
            print(_t("reload_cmd_no_engine", seconds=args.timeout, url=url), file=sys.stderr)
            return 2
        print(_t("reload_cmd_summary", request=request_id, answered=len(answers), audit=entry, actor=actor))
        if missing:
            return 2
        return 0 if ok else 1
    finally:
        detail = {
            "config": str(args.config),
            "processes": {p: (a[1] or {}).get("result", a[0]) for p, a in answers.items()},
        }
        audit.finish_audit(engine, entry, outcome=outcome, count=len(answers), detail=detail)
