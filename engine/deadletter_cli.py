"""`mch-engine deadletter …`: find, read and act on dead letters, for the on-call.

    deadletter list      [--channel C] [--destination D] [--reason TEXT] [--since 2h|DATE] [--json]
    deadletter show      ID [--json]
    deadletter replay    ID… | --all-matching FILTERS [--yes] [--wait [S]]   send the kept payload again
    deadletter reprocess ID… | --all-matching FILTERS [--yes] [--wait [S]]   map the raw message again
    deadletter purge     ID… | --all-matching FILTERS --why TEXT [--yes]
    deadletter audit     [--limit N] [--json]                   who did what

`--all-matching` is the bulk form: without `--yes` it only prints what it would do
and exits 1, so a mistyped filter never touches anything. The purge reason is
`--why`, not `--reason`, because `--reason` is the filter: a filter copied from
`list` can never be taken for a justification. Replay and reprocess are carried out by
the running engine, with its own bus and mappings (on the embedded `memory://` default the
queues exist only inside it): the command writes the audit entry, queues an operator
request (engine/operator_requests.py) and says what became of it; exit codes in
engine/request_follow.py. When nothing is left to do (ids unknown, closed, or a replay of
a transform-stage dead letter) it answers at once, without the engine.

engine/cli.py calls `add_commands(sub)`; the dead letters themselves are deadletter/'s
(store, actions, audit), below the engine's layer.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from core import i18n
from engine.listing_table import FilterError, add_limit_args, check_filter, header, more_line, pad, row_limit
from engine.operator_time import iso_time, local_time

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from deadletter.actions import ActionResult
    from deadletter.audit import Actor

# The same values as deadletter.store's; kept here so building the `mch-engine` parser
# does not import SQLAlchemy for every other command (a test checks they agree).
STATUSES = ("open", "replayed", "reprocessed", "purged")
STAGES = ("transform", "deliver")
_OPEN, _DELIVER = "open", "deliver"

DEFAULT_CONFIG = "routes.yaml"

_TEXT: dict[str, tuple[str, str]] = {
    # key: (zh, en)
    "col_id": ("编号", "id"),
    "col_at": ("最近失败", "last failed"),
    "col_stage": ("阶段", "stage"),
    "col_channel": ("通道", "channel"),
    "col_destination": ("目的地", "destination"),
    "col_attempts": ("次数", "tries"),
    "col_reason": ("原因", "reason"),
    "list_total": ("共 {n} 条死信（状态：{status}）", "{n} dead letters (status: {status})"),
    "status_all": ("全部", "all"),
    "not_found": ("没有编号为 {id} 的死信", "no dead letter with id {id}"),
    "show_title": ("死信 #{id}  [{status}]", "dead letter #{id}  [{status}]"),
    "show_stage": ("阶段", "stage"),
    "stage_transform": (
        "transform（转换：解析/映射/校验失败，未发出）",
        "transform (parse/map/validate failed; nothing was sent)",
    ),
    "outcome_retry": ("重试", "retry"),
    "outcome_dead_letter": ("转入死信", "dead_letter"),
    "outcome_replayed": ("已重放", "replayed"),
    "outcome_reprocessed": ("已重新处理", "reprocessed"),
    "outcome_replay_failed": ("重放失败", "replay_failed"),
    "outcome_reprocess_failed": ("重新处理失败", "reprocess_failed"),
    "stage_name_transform": ("转换", "transform"),
    "stage_name_deliver": ("投递", "deliver"),
    "stage_deliver": (
        "deliver（投递：目的地拒收或重试用尽）",
        "deliver (the destination refused it or retries ran out)",
    ),
    "show_channel": ("通道 / 路由", "channel / route"),
    "show_destination": ("目的地 / 记录", "destination / record"),
    "show_journal": ("消息日志编号", "journal id"),
    "show_attempts": ("尝试次数", "attempts"),
    "show_first": ("首次失败", "first failed"),
    "show_last": ("最近失败", "last failed"),
    "show_reason": ("原因", "reason"),
    "show_resolved": ("处理结果", "resolution"),
    "show_resolved_value": ("{status}，操作人 {by}，{at}：{note}", "{status} by {by} at {at}: {note}"),
    "show_raw": (
        "原始消息（日志 #{id}，通道 {channel}，编码 {encoding}，{size} 字节，"
        "接收于 {at}，日志状态 {status}）：",
        "raw message (journal #{id}, channel {channel}, encoding {encoding}, {size} bytes, "
        "received {at}, journal status {status}):",
    ),
    "show_raw_missing": ("原始消息：日志中已不存在 #{id}", "raw message: journal #{id} no longer exists"),
    "show_payload": ("载荷（重放时原样发送的内容）：", "payload (what replay sends, unchanged):"),
    "show_no_payload": (
        "载荷：无（转换阶段失败，从未生成）。修复映射并部署后，用 reprocess 重新处理。",
        "payload: none (failed at the transform stage, never produced). "
        "After the mapping is fixed and deployed, use reprocess.",
    ),
    "show_tries": ("每次尝试：", "every attempt:"),
    "show_no_tries": ("每次尝试：没有单独记录", "every attempt: none recorded individually"),
    "action_replay": ("重放", "replay"),
    "action_reprocess": ("重新处理", "reprocess"),
    "action_purge": ("清除", "purge"),
    "action_show": ("查看", "show"),
    "action_reload": ("重新加载", "reload"),
    "action_channel_stop": ("停止通道", "channel stop"),
    "action_channel_start": ("启动通道", "channel start"),
    "action_channel_pause": ("暂停通道", "channel pause"),
    "action_reprocess_preview": ("重新处理预览", "reprocess preview"),
    "action_login": ("登录", "login"),
    "action_login_failed": ("登录失败", "login failed"),
    "action_lockout": ("账号锁定", "lockout"),
    "action_logout": ("退出", "logout"),
    "action_user_add": ("添加用户", "add user"),
    "action_user_disable": ("停用用户", "disable user"),
    "action_user_passwd": ("修改密码", "set password"),
    "action_user_token": ("生成令牌", "new API token"),
    "action_message_show": ("查看消息", "view message"),
    "item_done": ("完成", "done"),
    "item_skipped": ("跳过", "skipped"),
    "item_failed": ("失败", "failed"),
    "summary": (
        "{action}：完成 {done} 条，跳过 {skipped} 条，失败 {failed} 条（审计记录 #{audit}，操作人 {actor}）",
        "{action}: {done} done, {skipped} skipped, {failed} failed (audit entry #{audit}, by {actor})",
    ),
    "dry_run": (
        "将{action}以下 {n} 条死信（条件：{filters}）：",
        "would {action} these {n} dead letters (matching {filters}):",
    ),
    "dry_run_hint": (
        "尚未执行任何操作。确认无误后加 --yes 再运行一次。",
        "nothing was done. Run again with --yes to do it.",
    ),
    "no_filters": ("无（全部未处理死信）", "none (every open dead letter)"),
    "need_ids": (
        "请给出死信编号，或用 --all-matching 加筛选条件",
        "give dead letter ids, or --all-matching with filters",
    ),
    "ids_and_all": (
        "不能同时给出编号和 --all-matching",
        "give either ids or --all-matching, not both",
    ),
    "filters_need_all": (
        "筛选条件（--channel 等）只能与 --all-matching 一起使用",
        "filters (--channel and the like) only work with --all-matching",
    ),
    "bad_since": (
        "{option} 无法识别：{value}（可用 2h、30m、1d，或 2024-03-21、2024-03-21T03:00）",
        "{option} not understood: {value} (use 2h, 30m, 1d, or 2024-03-21, 2024-03-21T03:00)",
    ),
    "label_queued": ("已排队", "queued"),
    "label_delivered": ("已投递", "delivered"),
    "label_failed_again": ("再次失败", "failed again"),
    "label_pending": ("未完成", "not yet"),
    "label_done": ("完成", "done"),
    "label_skipped": ("跳过", "skipped"),
    "label_failed": ("失败", "failed"),
    "queued_to": ("已排队，等待投递到 {detail}", "queued for delivery to {detail}"),
    "reprocessed_queued": (
        "已重新处理，等待投递到 {detail}",
        "reprocessed, queued for delivery to {detail}",
    ),
    "delivered_to": ("已投递到 {detail}", "delivered to {detail}"),
    "failed_again": (
        "投递再次失败，已回到死信：{detail}",
        "delivery failed again, back in dead letters: {detail}",
    ),
    "not_settled": (
        "{seconds:.0f} 秒内尚无结果（{detail}），仍在重试或等待投递",
        "no outcome within {seconds:.0f} s ({detail}): still waiting or retrying",
    ),
    "request_summary": (
        "{action}：{counts}（请求 #{request}，由 {process} 执行，审计记录 #{audit}，操作人 {actor}）",
        "{action}: {counts} (request #{request}, carried out by {process}, audit entry #{audit}, by {actor})",
    ),
    "count": ("{label} {n} 条", "{n} {label}"),
    "purge_why": ("清除必须用 --why 说明原因", "purge needs a reason: --why TEXT"),
    "audit_line": (
        "#{id:<5} {at}  {actor:<12} {action} {count:>4} 条  {target}{extra}",
        "#{id:<5} {at}  {actor:<12} {action} {count:>4}     {target}{extra}",
    ),
    "audit_why": ("  原因：{why}", "  reason: {why}"),
    "audit_from": ("{actor}（网页 {source}）", "{actor} (web {source})"),
    "audit_as": ("{actor}（系统用户 {os_user}）", "{actor} (OS user {os_user})"),
    "audit_queued": (
        "  【已排队：等待引擎执行】",
        "  [queued: waiting for the engine to carry it out]",
    ),
    "audit_started": (
        "  【未完成：操作中途被终止，请核对所列编号】",
        "  [not finished: the action was cut off, check the ids it names]",
    ),
    "audit_sent": (
        "  【已交付投递，未等待结果（加 --wait 可等待）】",
        "  [sent for delivery; its outcome was not awaited (--wait awaits it)]",
    ),
    "audit_aborted": ("  【中途停止：{error}】", "  [stopped part-way: {error}]"),
    "audit_failed": ("  【部分失败：{ids}】", "  [some failed: {ids}]"),
    # Per-id results (codes from deadletter.actions).
    "replayed": ("已重放到 {detail}", "replayed to {detail}"),
    "reprocessed": ("已重新处理，发送到 {detail}", "reprocessed and published to {detail}"),
    "reprocessed_unrouted": (
        "已重新处理：现有路由不再接收此消息，未发送",
        "reprocessed: no route takes this message now, nothing published",
    ),
    "reprocessed_elsewhere": (
        "已重新处理：现有路由不再发往 {detail}，未发送",
        "reprocessed: the current routes no longer send it to {detail}, nothing published",
    ),
    "purged": ("已清除", "purged"),
    "already": ("已是 {detail} 状态，无需操作", "already {detail}: nothing to do"),
    "use_reprocess": (
        "转换阶段失败，没有可重放的载荷：请用 reprocess",
        "failed at the transform stage, so there is no payload to replay: use reprocess",
    ),
    "no_message_found": ("没有此死信", "no such dead letter"),
    "no_message": (
        "消息日志 #{detail} 已不存在，无法重新处理",
        "journal message #{detail} is gone: cannot reprocess",
    ),
    "publish_failed": ("发送失败：{detail}", "could not publish: {detail}"),
    "still_fails": ("仍然失败：{detail}", "still fails: {detail}"),
    "transform_error": ("转换过程出错：{detail}", "the transform stage raised an error: {detail}"),
}


i18n.register(_TEXT)


def _t(key: str, **values: object) -> str:
    """`core.i18n.t`: this package's keys are in the one catalogue."""
    return i18n.t(key, **values)


# --------------------------------------------------------------------------- parser


def add_commands(subparsers: Any) -> None:
    """Add `deadletter` and its actions to `mch-engine`'s subcommands."""
    top = subparsers.add_parser("deadletter", help=_t("help_cmd_deadletter"))
    top.set_defaults(func=lambda _args: _usage(top))
    sub = top.add_subparsers(metavar="ACTION")

    ls = sub.add_parser("list", help=_t("help_cmd_deadletter_list"))
    _config_arg(ls)
    _filter_args(ls)
    ls.add_argument(
        "--status",
        choices=[*STATUSES, "all"],
        default=_OPEN,
        help="open (default), replayed, reprocessed, purged or all",
    )
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    add_limit_args(ls)
    ls.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help=_t("help_cmd_deadletter_show"))
    show.add_argument("id", type=int, metavar="ID")
    _config_arg(show)
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(func=cmd_show)

    for name, func in (("replay", cmd_replay), ("reprocess", cmd_reprocess), ("purge", cmd_purge)):
        p = sub.add_parser(name, help=_t(f"help_cmd_deadletter_{name}"))
        p.add_argument("ids", nargs="*", type=int, metavar="ID")
        p.add_argument(
            "--all-matching",
            action="store_true",
            help="act on every open dead letter matching the filters below",
        )
        _filter_args(p)
        if name == "purge":
            p.add_argument("--why", required=True, metavar="TEXT", help="why these must never be delivered")
        else:
            add_wait_arg(p)
        p.add_argument("--yes", action="store_true", help="confirm a bulk (--all-matching) action")
        p.add_argument(
            "--as",
            dest="actor",
            metavar="NAME",
            help="your name for the audit log, kept beside the OS user (default: the OS user alone)",
        )
        _config_arg(p)
        p.set_defaults(func=func)

    log = sub.add_parser("audit", help=_t("help_cmd_deadletter_audit"))
    _config_arg(log)
    add_limit_args(log)
    log.add_argument("--json", action="store_true", help="one JSON object per line")
    log.set_defaults(func=cmd_audit)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help="routes.yaml to use (default ./routes.yaml)")


_FILTERS = ("channel", "destination", "reason", "since", "stage")


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--channel", help="only this channel")
    p.add_argument("--destination", help="only this destination")
    p.add_argument("--reason", metavar="TEXT", help="reason contains TEXT (any case)")
    p.add_argument("--since", metavar="WHEN", help="last failed since: 2h, 30m, 1d, or a date/time")
    p.add_argument("--stage", choices=STAGES, help="transform or deliver")


# --------------------------------------------------------------------------- context


@dataclass
class _Context:
    """What every command needs, built once from routes.yaml."""

    settings: Any
    engine: Engine

    @property
    def tz(self) -> tzinfo:
        tz: tzinfo = self.settings.engine.tzinfo
        return tz


class _UsageError(Exception):
    """A problem with the command line, already in the operator's language (exit 2)."""


class _Exit(Exception):
    """Stop the command here with this exit code (its output is already printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _run(args: argparse.Namespace, body: Callable[[_Context], int]) -> int:
    """Build the context, run `body`; usage problems become one line and exit 2, and so
    does a database that cannot be reached (`Unreachable`, printed by `main()`)."""
    from core.settings import load_settings
    from deadletter import audit, store
    from engine import journal
    from engine.reachability import open_database, reaching_database

    settings = load_settings(args.config)  # ConfigErrors: main() prints them, exit 2
    url = settings.engine.database
    engine = open_database(url)
    try:
        with reaching_database(url):
            journal.ensure_schema(engine)
            store.ensure_schema(engine)
            audit.ensure_schema(engine)
            return body(_Context(settings, engine))
    except (_UsageError, FilterError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except _Exit as stop:
        return stop.code
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- list and show


def cmd_list(args: argparse.Namespace) -> int:
    def body(ctx: _Context) -> int:
        from deadletter import store

        status = None if args.status == "all" else args.status
        _check_names(args, ctx)
        found = store.list_dead_letters(ctx.engine, **_filters(args, ctx), status=status)
        limit = row_limit(args)
        rows = found[:limit] if limit else found
        more = more_line(len(rows), len(found))
        if args.json:
            for row in rows:
                print(_dumps(row, ctx.tz))
        elif not rows:
            print(i18n.t("nothing_found"))
            return 0
        else:
            print(_header())
            for row in rows:
                print(_line(row, ctx.tz))
            shown = i18n.status(args.status) if status else _t("status_all")
            print(_t("list_total", n=len(found), status=shown))
        if more:
            print(more, file=sys.stderr if args.json else sys.stdout)
        return 0

    return _run(args, body)


def cmd_show(args: argparse.Namespace) -> int:
    def body(ctx: _Context) -> int:
        from deadletter import audit, store

        dl = store.get_dead_letter(ctx.engine, args.id)
        if dl is None:
            print(_t("not_found", id=args.id), file=sys.stderr)
            return 1
        # Showing the raw message reads patient data: who looked is audited too.
        actor = audit.current_actor(getattr(args, "actor", None))
        audit.write_audit(ctx.engine, actor=actor, action="show", target=str(args.id), count=1, detail={})
        if args.json:
            print(_dumps(dl, ctx.tz))
            return 0
        print("\n".join(_show_lines(dl, ctx.tz)))
        return 0

    return _run(args, body)


def _show_lines(dl: dict[str, Any], tz: tzinfo) -> list[str]:
    def field(key: str, value: object) -> str:
        return f"  {_t(key)}: {value}"

    out = [_t("show_title", id=dl["id"], status=i18n.status(dl["status"]))]
    out.append(field("show_stage", _t(f"stage_{dl['stage']}")))
    out.append(field("show_channel", f"{dl['channel']} / {dl['route'] or '-'}"))
    if dl["stage"] == _DELIVER:
        out.append(field("show_destination", f"{dl['destination']} / {dl['record_id'] or '-'}"))
    out.append(field("show_journal", dl["journal_id"]))
    out.append(field("show_attempts", dl["attempts"]))
    out.append(field("show_first", _local(dl["first_failed_at"], tz)))
    out.append(field("show_last", _local(dl["last_failed_at"], tz)))
    out.append(field("show_reason", dl["reason"]))
    if dl["status"] != _OPEN:
        resolution = _t(
            "show_resolved_value",
            status=i18n.status(dl["status"]),
            by=dl["resolved_by"] or "-",
            at=_local(dl["resolved_at"], tz),
            note=dl["resolution_note"] or "-",
        )
        out.append(field("show_resolved", resolution))
    out.append("")
    msg = dl["message"]
    if msg is None:
        out.append(_t("show_raw_missing", id=dl["journal_id"]))
    else:
        out.append(
            _t(
                "show_raw",
                id=msg["id"],
                channel=msg["channel"],
                encoding=msg["encoding"] or "utf-8",
                size=msg["size"],
                at=_local(msg["received_at"], tz),
                status=i18n.status(msg["status"]),
            )
        )
        # HL7 separates segments with CR; one segment per line reads better in a terminal.
        segments = msg["text"].replace("\r\n", "\r").replace("\n", "\r").split("\r")
        out += [f"  {seg}" for seg in segments if seg]
    out.append("")
    if dl["payload"] is None:
        out.append(_t("show_no_payload"))
    else:
        out.append(_t("show_payload"))
        pretty = json.dumps(dl["payload"], ensure_ascii=False, indent=2, default=str)
        out += [f"  {ln}" for ln in pretty.splitlines()]
    out.append("")
    if not dl["attempt_log"]:
        out.append(_t("show_no_tries"))
    else:
        out.append(_t("show_tries"))
        for a in dl["attempt_log"]:
            error = f"  {a['error']}" if a["error"] else ""
            outcome = pad(i18n.t_or(f"outcome_{a['outcome']}", a["outcome"]), 16)
            out.append(f"  #{a['attempt']:<3} {_local(a['at'], tz)}  {outcome}{error}")
    return out


def cmd_audit(args: argparse.Namespace) -> int:
    def body(ctx: _Context) -> int:
        from deadletter import audit

        found = audit.list_audit(ctx.engine, None)
        limit = row_limit(args)
        rows = found[:limit] if limit else found
        if args.json:
            for row in rows:
                print(_dumps(row, ctx.tz))
        elif not rows:
            print(i18n.t("nothing_found"))
        else:
            print(_audit_header())
            for row in rows:
                print(_audit_line(row, ctx.tz))
        more = more_line(len(rows), len(found))
        if more:
            print(more, file=sys.stderr if args.json else sys.stdout)
        return 0

    return _run(args, body)


def _audit_line(row: dict[str, Any], tz: tzinfo) -> str:
    """One entry: who (the claimed name and, when it differs, the OS user), what, how it ended."""
    detail = row["detail"] or {}
    why = detail.get("reason") or detail.get("note")
    extra = _t("audit_why", why=why) if why else ""
    outcome = row.get("outcome")
    if outcome == "started" and detail.get("queued"):
        extra += _t("audit_queued")
    elif outcome == "started":
        extra += _t("audit_started")
    elif outcome == "aborted":
        extra += _t("audit_aborted", error=detail.get("error") or "-")
    elif outcome == "failed":
        extra += _t("audit_failed", ids=",".join(map(str, detail.get("failed") or [])))
    elif outcome == "queued":
        extra += _t("audit_sent")
    actor, os_user, source = row["actor"], row.get("os_user"), row.get("source")
    if source and not source.startswith("cli:"):  # the dashboard or its API: where from
        actor = _t("audit_from", actor=actor, source=source.removeprefix("web:"))
    elif os_user and os_user != actor:
        actor = _t("audit_as", actor=actor, os_user=os_user)
    return _t(
        "audit_line",
        id=row["id"],
        at=_local(row["at"], tz),
        actor=actor,
        action=pad(i18n.t_or(f"action_{row['action']}", row["action"]), 10),
        count=row["count"],
        target=row["target"],
        extra=extra,
    )


# --------------------------------------------------------------------------- actions


def cmd_replay(args: argparse.Namespace) -> int:
    def body(ctx: _Context) -> int:
        ids, target = _select(args, ctx, "replay")
        return _through_engine(ctx, args, "replay", ids, target)

    return _run(args, body)


def cmd_reprocess(args: argparse.Namespace) -> int:
    def body(ctx: _Context) -> int:
        ids, target = _select(args, ctx, "reprocess")
        return _through_engine(ctx, args, "reprocess", ids, target)

    return _run(args, body)


def cmd_purge(args: argparse.Namespace) -> int:
    def body(ctx: _Context) -> int:
        from deadletter import actions

        if not (args.why or "").strip():
            raise _UsageError(_t("purge_why"))
        ids, target = _select(args, ctx, "purge")
        result = actions.purge(ctx.engine, ids, args.why, _actor(args), target=target)
        return _report(result, args)

    return _run(args, body)


def _select(args: argparse.Namespace, ctx: _Context, action: str) -> tuple[list[int], str | None]:
    """The ids to act on and the audit target. A bulk action without `--yes` stops here:
    it prints what it would do and exits 1 (0 when nothing matches)."""
    filters = {k: getattr(args, k) for k in _FILTERS if getattr(args, k)}
    if args.ids and args.all_matching:
        raise _UsageError(_t("ids_and_all"))
    if not args.all_matching:
        if filters:
            raise _UsageError(_t("filters_need_all"))
        if not args.ids:
            raise _UsageError(_t("need_ids"))
        return args.ids, None
    from deadletter import store

    _check_names(args, ctx)
    rows = store.list_dead_letters(ctx.engine, **_filters(args, ctx), status=_OPEN)
    described = " ".join(f"{k}={v}" for k, v in filters.items()) or _t("no_filters")
    ids = [int(r["id"]) for r in rows]
    if not args.yes:
        if not rows:
            print(i18n.t("nothing_found"))
            raise _Exit(0)
        print(_t("dry_run", action=_t(f"action_{action}"), n=len(rows), filters=described))
        for row in rows:
            print(_line(row, ctx.tz))
        print(_t("dry_run_hint"))
        raise _Exit(1)
    return ids, f"all-matching {described}: {','.join(map(str, ids)) or '-'}"


def _check_names(args: argparse.Namespace, ctx: _Context) -> None:
    """`--channel` and `--destination` must name a configured one or one a dead letter has."""
    from sqlalchemy import select

    from deadletter.store import dead_letters

    with ctx.engine.connect() as conn:
        seen = conn.execute(select(dead_letters.c.channel, dead_letters.c.destination).distinct()).all()
    channels = [*ctx.settings.channels, *(r.channel for r in seen)]
    destinations = [*ctx.settings.destinations, *(r.destination for r in seen if r.destination)]
    check_filter("--channel", args.channel, channels)
    check_filter("--destination", args.destination, destinations)


def _filters(args: argparse.Namespace, ctx: _Context) -> dict[str, Any]:
    return {
        "channel": args.channel,
        "destination": args.destination,
        "reason": args.reason,
        "since": parse_since(args.since, ctx.tz) if args.since else None,
        "stage": args.stage,
    }


class UnreadableTime(_UsageError):
    """A --since/--until value that is neither a duration nor a date/time."""


def parse_since(value: str, tz: tzinfo, option: str = "--since") -> datetime:
    """`2h`/`30m`/`1d` ago, or a date/time; a time without offset is the engine's zone."""
    from core.clock import now_utc
    from core.settings import parse_duration

    text = value.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return when if when.tzinfo else when.replace(tzinfo=tz)
    if text[-1:].isalpha():  # a bare number would be ambiguous (seconds? a year?)
        try:
            return now_utc() - timedelta(seconds=parse_duration(text))
        except ValueError:
            pass
    raise UnreadableTime(_t("bad_since", option=option, value=value))


def add_wait_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait",
        nargs="?",
        type=float,
        const=120.0,
        metavar="SECONDS",
        help="wait for the real outcome (delivered, or failed again) up to SECONDS (default 120); "
        "exit 1 if it failed, 3 if still unknown",
    )


def _through_engine(
    ctx: _Context, args: argparse.Namespace, action: str, ids: list[int], target: str | None
) -> int:
    """Replay or reprocess carried out by the running engine (engine/deadletter_requests.py)."""
    from engine.deadletter_requests import carry_out

    who = _actor(args)
    carried = carry_out(ctx.engine, action, ids, who, target=target)
    if carried.result is not None:  # nothing for the engine to do: said at once
        return _report(carried.result, args)
    assert carried.followed is not None
    unfinished = carried.followed.report_unfinished()
    if unfinished is not None:
        return unfinished
    return _report_request(ctx, args, carried.followed.request, who)


def _report_request(ctx: _Context, args: argparse.Namespace, request: Any, who: Actor) -> int:
    """One line per id with what became of it, a summary, and the exit code."""
    from engine import request_follow as follow

    outcome = request.outcome
    sent = {int(i): [tuple(k) for k in keys] for i, keys in outcome["sent"].items()}
    statuses: dict[Any, str] = {}
    errors: dict[Any, str] = {}
    if args.wait is not None:
        everything = [k for keys in sent.values() for k in keys]
        statuses = follow.wait_for_deliveries(ctx.engine, everything, args.wait)
        errors = follow.delivery_errors(ctx.engine, [k for k, s in statuses.items() if s == "dead"])
    counts: dict[str, int] = {}
    settled: dict[str, list[int]] = {}
    code = 0
    for kind, dl_id, item_code, detail in outcome["items"]:
        label, text = kind, _t("no_message_found" if item_code == "not_found" else item_code, detail=detail)
        if kind == "done" and dl_id in sent:
            keys = sent[dl_id]
            where = ", ".join(sorted({k[1] for k in keys}))
            label, text = (
                "queued",
                _t("queued_to" if item_code == "replayed" else "reprocessed_queued", detail=where),
            )
            if args.wait is not None:
                now = [statuses.get(k, "pending") for k in keys]
                if all(s == "delivered" for s in now):
                    label, text = "delivered", _t("delivered_to", detail=where)
                elif "dead" in now:
                    why = "; ".join(errors.get(k, "") for k in keys if statuses.get(k) == "dead")
                    label, text = "failed_again", _t("failed_again", detail=why or "-")
                else:
                    label = "pending"
                    text = _t("not_settled", seconds=args.wait, detail=", ".join(sorted(set(now))))
        counts[label] = counts.get(label, 0) + 1
        settled.setdefault(label, []).append(dl_id)
        if label in ("failed", "failed_again"):
            code = 1
        elif label == "pending" and code == 0:
            code = follow.EXIT_NOT_CARRIED_OUT
        print(f"  #{dl_id:<6} {_t(f'label_{label}')}  {text}")
    if args.wait is not None and "pending" not in settled:
        # Waited for, and every delivery ended: the audit entry says how, not just that it was sent.
        from deadletter import audit

        failed_again = settled.get("failed_again", [])
        audit.settle_audit(
            ctx.engine,
            outcome["audit_id"],
            outcome=audit.FAILED if failed_again else audit.DONE,
            delivered=settled.get("delivered", []),
            failed=failed_again,
        )
    order = ["delivered", "queued", "done", "pending", "failed_again", "skipped", "failed"]
    summary = ", ".join(_t("count", n=counts[k], label=_t(f"label_{k}")) for k in order if k in counts)
    print(
        _t(
            "request_summary",
            action=_t(f"action_{outcome['action']}"),
            counts=summary,
            request=request.id,
            process=request.taken_by,
            audit=outcome["audit_id"],
            actor=who,
        )
    )
    return code


def _actor(args: argparse.Namespace) -> Actor:
    from deadletter.audit import current_actor

    return current_actor(args.actor)


def _report(result: ActionResult, args: argparse.Namespace) -> int:
    for kind, item in result.items():
        code = "no_message_found" if item.code == "not_found" else item.code
        print(f"  #{item.id:<6} {_t(f'item_{kind}')}  {_t(code, detail=item.detail)}")
    print(
        _t(
            "summary",
            action=_t(f"action_{result.action}"),
            done=len(result.done),
            skipped=len(result.skipped),
            failed=len(result.failed),
            audit=result.audit_id,
            actor=_actor(args),
        )
    )
    return 1 if result.failed else 0


# --------------------------------------------------------------------------- formatting


_LIST_COLUMNS = (
    ("col_id", 6),
    ("col_at", 25),
    ("col_stage", 9),
    ("col_channel", 14),
    ("col_destination", 14),
    ("col_attempts", 4),
    ("col_reason", 0),
)


def _header() -> str:
    """Column titles over `_line`'s columns."""
    return header(_LIST_COLUMNS, right=(0, 5))


def _audit_header() -> str:
    """Column titles over `audit_line`'s columns."""
    return (
        f"{pad(_t('col_audit_id'), 6)} {pad(_t('col_audit_at'), 25)}  {pad(_t('col_actor'), 12)} "
        f"{pad(_t('col_action'), 10)} {pad(_t('col_count'), 4, right=True)}     {_t('col_target')}"
    )


def _line(row: dict[str, Any], tz: tzinfo) -> str:
    state = "" if row["status"] == _OPEN else f"[{i18n.status(row['status'])}] "
    stage = pad(_t(f"stage_name_{row['stage']}"), 9)
    return (
        f"{row['id']:>6}  {_local(row['last_failed_at'], tz):<25}  {stage}  "
        f"{row['channel']:<14}  {row['destination'] or '-':<14}  {row['attempts']:>4}  "
        f"{state}{_shorten(row['reason'])}"
    )


def _shorten(text: str, width: int = 90) -> str:
    one = " ".join((text or "").split())
    return one if len(one) <= width else one[: width - 1] + "…"


def _local(value: datetime | None, tz: tzinfo) -> str:
    return local_time(value, tz)


def _dumps(row: dict[str, Any], tz: tzinfo) -> str:
    def default(value: object) -> object:
        if isinstance(value, datetime):
            return iso_time(value, tz)
        return str(value)

    return json.dumps(row, ensure_ascii=False, default=default)
