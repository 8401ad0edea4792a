"""`mch-engine reprocess`: re-run stored messages through the engine's mappings, to correct records.

    mch-engine reprocess [--route R] [--channel C] [--since WHEN] [--until WHEN] [--type T]
                         --dry-run | [--wait [SECONDS]] [--as NAME]

Carried out by the running engine (engine/operator_actions.py, engine/reprocess_selection.py)
with the mappings it has loaded, as an operator request. `--dry-run` shows, for a sample, the
field-level difference between the stored record and what the mapping makes now, and writes
no record (it is audited: it reads patient data). The real run is audited before it acts.
Exit codes as engine/request_follow.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, tzinfo
from typing import Any

from core import i18n

SELECTION_SECONDS = 600.0
"""How long the command waits for the engine to go through the selection."""

_TEXT: dict[str, tuple[str, str]] = {
    "reprocess_cmd_help": (
        "用运行中引擎已加载的映射重新处理已保存的消息，修正旧映射产生的记录",
        "re-run stored messages through the running engine's mappings to correct their records",
    ),
    "reprocess_cmd_unknown": (
        "未知的{what}：{value}（可用：{valid}）",
        "unknown {what}: {value} (valid: {valid})",
    ),
    "reprocess_cmd_counts": (
        "选择条件 {selection}：{messages} 条消息；记录 变化 {changed} 条，新增 {new} 条，"
        "不变 {unchanged} 条，保留较新事件 {newer_kept} 条；当前映射无法处理 {failed} 条消息",
        "selection {selection}: {messages} messages; records: {changed} changed, {new} new, "
        "{unchanged} unchanged, {newer_kept} kept (the store has a newer event); "
        "{failed} messages the current mapping cannot map",
    ),
    "reprocess_cmd_sample": ("样例（{n} 条记录）：", "sample ({n} records):"),
    "reprocess_cmd_sample_record": (
        "  {record_type} {record_id}（消息日志 #{journal_id} → {destination}，{verdict}）",
        "  {record_type} {record_id} (journal #{journal_id} → {destination}, {verdict})",
    ),
    "reprocess_cmd_more_changes": ("    …另有 {n} 处不同", "    …and {n} more differences"),
    "reprocess_cmd_dry_run_done": (
        "试运行：未写入任何记录（请求 #{request}，审计记录 #{audit}）。确认后去掉 --dry-run 再运行。",
        "dry run: nothing was written (request #{request}, audit entry #{audit}). "
        "Run again without --dry-run to do it.",
    ),
    "reprocess_cmd_queued": (
        "已排队 {n} 条记录等待投递（请求 #{request}，由 {process} 执行，审计记录 #{audit}，操作人 {actor}）",
        "{n} records queued for delivery (request #{request}, carried out by {process}, "
        "audit entry #{audit}, by {actor})",
    ),
    "reprocess_cmd_delivered": (
        "已投递 {ok} 条，再次失败 {dead} 条，尚无结果 {other} 条",
        "{ok} delivered, {dead} failed, {other} without outcome yet",
    ),
}
i18n.register(_TEXT)


_t = i18n.t


def add_command(subparsers: Any) -> None:
    from engine.deadletter_cli import add_wait_arg

    p = subparsers.add_parser("reprocess", help=_t("reprocess_cmd_help"))
    p.add_argument("--route", help="only records of this route")
    p.add_argument("--channel", help="only messages received on this channel")
    p.add_argument("--since", metavar="WHEN", help="received since: 2h, 30m, 1d, or a date/time")
    p.add_argument("--until", metavar="WHEN", help="received before: 2h, 30m, 1d ago, or a date/time")
    p.add_argument("--type", dest="record_type", help="only this record type, e.g. LabResult")
    p.add_argument(
        "--dry-run", action="store_true", help="show the field differences of a sample, write nothing"
    )
    add_wait_arg(p)
    p.add_argument("--as", dest="actor", metavar="NAME", help="your name for the audit log")
    p.add_argument("--config", default="routes.yaml", help="routes.yaml to use (default ./routes.yaml)")
    p.set_defaults(func=cmd_reprocess)


class _Usage(Exception):
    pass


def cmd_reprocess(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from deadletter import audit
    from engine.reachability import open_database, reaching_database

    settings = load_settings(args.config)
    try:
        selection = _selection(args, settings)
    except _Usage as exc:
        print(exc, file=sys.stderr)
        return 2
    url = settings.engine.database
    engine = open_database(url)
    try:
        with reaching_database(url):
            audit.ensure_schema(engine)
            return _carry_out(engine, args, selection)
    finally:
        engine.dispose()


def _selection(args: argparse.Namespace, settings: Any) -> Any:
    from engine.reprocess_selection import Selection
    from transforms.records import RECORD_TYPES

    checks = (
        ("route", args.route, [r.name for r in settings.routes]),
        ("channel", args.channel, list(settings.channels)),
        ("record type", args.record_type, sorted(RECORD_TYPES)),
    )
    for what, value, valid in checks:
        if value and value not in valid:
            raise _Usage(_t("reprocess_cmd_unknown", what=what, value=value, valid=", ".join(valid)))
    tz = settings.engine.tzinfo
    return Selection(
        route=args.route,
        channel=args.channel,
        since=_when(args.since, "--since", tz),
        until=_when(args.until, "--until", tz),
        record_type=args.record_type,
    )


def _when(value: str | None, option: str, tz: tzinfo) -> datetime | None:
    from engine.deadletter_cli import UnreadableTime, parse_since

    if not value:
        return None
    try:
        return parse_since(value, tz, option)
    except UnreadableTime as exc:
        raise _Usage(str(exc)) from None


def _carry_out(engine: Any, args: argparse.Namespace, selection: Any) -> int:
    from deadletter import audit
    from engine import request_follow as follow

    who = audit.current_actor(args.actor)
    action = "reprocess_preview" if args.dry_run else "reprocess"
    audit_id = audit.begin_audit(
        engine,
        actor=who,
        action=action,
        target=f"selection {selection.describe()}",
        detail={"selection": selection.to_params(), "dry_run": args.dry_run, "queued": True},
    )
    params = {"selection": selection.to_params(), "dry_run": args.dry_run, "audit_id": audit_id}
    followed = follow.submit_and_follow(
        engine, "reprocess_selection", params, actor=who.name, os_user=who.os_user, finish=SELECTION_SECONDS
    )
    unfinished = followed.report_unfinished()
    if unfinished is not None:
        return unfinished
    request = followed.request
    assert request is not None and request.outcome is not None
    out = request.outcome
    print(
        _t(
            "reprocess_cmd_counts",
            selection=selection.describe(),
            messages=out["messages"],
            failed=out["failed"],
            **out["counts"],
        )
    )
    if out["sample"]:
        print(_t("reprocess_cmd_sample", n=len(out["sample"])))
        for rec in out["sample"]:
            print(
                _t(
                    "reprocess_cmd_sample_record",
                    **{
                        k: rec[k]
                        for k in ("record_type", "record_id", "journal_id", "destination", "verdict")
                    },
                )
            )
            for path, old, new in rec["changes"]:
                print(f"    {path}: {_show(old)} → {_show(new)}")
            if rec["more_changes"]:
                print(_t("reprocess_cmd_more_changes", n=rec["more_changes"]))
    if args.dry_run:
        print(_t("reprocess_cmd_dry_run_done", request=request.id, audit=audit_id))
        return 0
    sent = [tuple(k) for k in out["sent"]]
    print(
        _t(
            "reprocess_cmd_queued",
            n=len(sent),
            request=request.id,
            process=request.taken_by,
            audit=audit_id,
            actor=who,
        )
    )
    if args.wait is None or not sent:
        return 0
    statuses = follow.wait_for_deliveries(engine, sent, args.wait)
    ok = sum(s == "delivered" for s in statuses.values())
    dead = sum(s == "dead" for s in statuses.values())
    if ok + dead == len(statuses):  # every delivery ended: the audit entry says how

        def journal_ids(wanted: str) -> list[int]:
            return sorted({int(k[0]) for k, s in statuses.items() if s == wanted})

        audit.settle_audit(
            engine,
            audit_id,
            outcome=audit.FAILED if dead else audit.DONE,
            delivered=journal_ids("delivered"),
            failed=journal_ids("dead"),
        )
    print(_t("reprocess_cmd_delivered", ok=ok, dead=dead, other=len(statuses) - ok - dead))
    if dead:
        return 1
    return 0 if ok == len(statuses) else follow.EXIT_NOT_CARRIED_OUT


def _show(value: Any) -> str:
    return "-" if value is None else json.dumps(value, ensure_ascii=False)
