"""`mch-engine status [--json]`: what the engine is doing, from any process, on any backend.

Exit 0 when all is well; 1 when something is down (no engine heartbeat, a process whose
heartbeat stopped, a channel not listening, the journal, a store or the broker unreachable,
a WeChat API paused by its daily quota);
2 on a configuration problem. The numbers come from monitors/engine_status.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core import i18n
from engine.operator_time import local_time
from engine.retention import KINDS
from monitors.engine_status import EngineStatus, Unreachable, collect

EXIT_OK = 0
EXIT_DOWN = 1

_TEXT: dict[str, tuple[str, str]] = {
    "status_cmd_processes": ("引擎进程", "Engine processes"),
    "status_cmd_channels": ("通道", "Channels"),
    "status_cmd_channel_stopped": ("已停止", "stopped"),
    "status_cmd_channel_paused": ("已暂停", "paused"),
    "status_cmd_channel_stopped_by": (
        "通道 {name} 由 {actor} 于 {at} 停止（channel start {name} 恢复）",
        "channel {name} stopped by {actor} at {at} (channel start {name} opens it)",
    ),
    "status_cmd_channel_paused_by": (
        "通道 {name} 由 {actor} 于 {at} 暂停，至 {until} 自动恢复",
        "channel {name} paused by {actor} at {at}, starts again at {until}",
    ),
    "status_cmd_routes": ("路由", "Routes"),
    "status_cmd_destinations": ("目的地", "Destinations"),
    "status_cmd_process_header": (
        "主机|进程号|角色|启动时间|最近心跳|状态|监听",
        "host|pid|roles|started|last heartbeat|state|listening",
    ),
    "status_cmd_channel_header": (
        "通道|地址|监听|连接|断开连接|收到|已路由|未路由|失败|拒收|待转换|重复|控制号重用|最后消息|未处理死信"
        "|每分钟(1分)|每分钟(15分)|ACK p95 秒|静默秒",
        "channel|address|listening|connections|closed conns|received|routed|unrouted|failed|rejected|waiting"
        "|duplicates|control_id_reused|last message|open dead letters|per min (1m)|per min (15m)"
        "|ACK p95 s|silent s",
    ),
    "status_cmd_route_header": (
        "路由|来源通道|目的地|收到|已路由|失败|最后消息|未处理死信",
        "route|from|to|received|routed|failed|last message|open dead letters",
    ),
    "status_cmd_destination_header": (
        "目的地|已送达|积压|队列深度|最早未送达|等待秒数|未处理死信|重试中|死信累计|每分钟送达|送达 p95 秒",
        "destination|delivered|backlog|queue depth|oldest undelivered|age s|open dead letters"
        "|retrying|dead lettered|delivered/min|delivery p95 s",
    ),
    "status_cmd_wechat": ("微信通知", "WeChat notices"),
    "status_cmd_wechat_header": (
        "目的地|剩余额度|暂停至|已发送|无法送达|失败|微信错误码",
        "destination|quota left|paused until|sent|undeliverable|failed|WeChat errcodes",
    ),
    "status_cmd_wechat_quota_exhausted": (
        "微信目的地 {subject} 当日接口额度已用完（45009），暂停发送至额度重置",
        "WeChat destination {subject} used up its daily API quota (45009): sending is paused until it resets",
    ),
    "status_cmd_yes": ("是", "yes"),
    "status_cmd_no": ("否", "no"),
    "status_cmd_alive": ("运行中", "running"),
    "status_cmd_down": ("已停止响应", "down"),
    "status_cmd_backends": ("日志库：{journal}  消息总线：{broker}", "journal: {journal}  bus: {broker}"),
    "status_cmd_all_well": ("一切正常", "all well"),
    "status_cmd_disk": (
        "日志库所在磁盘剩余：{free} GB（{ratio}%）",
        "disk free where the journal lives: {free} GB ({ratio}%)",
    ),
    "status_cmd_engine_not_running": (
        "引擎未在运行：没有任何引擎进程的心跳（请用 mch-engine run 启动）",
        "the engine is not running: no engine process has a heartbeat (start it with mch-engine run)",
    ),
    "status_cmd_process_down": (
        "引擎进程 {subject} 已停止响应（心跳过期）",
        "engine process {subject} is down (its heartbeat stopped)",
    ),
    "status_cmd_channel_not_listening": ("通道 {subject} 未在监听", "channel {subject} is not listening"),
    "status_cmd_channel_not_running": (
        "通道 {subject} 未在运行（没有引擎进程在轮询或监视它）",
        "channel {subject} is not running (no engine process polls or watches it)",
    ),
    "status_cmd_channel_problem": (
        "通道 {subject} 出错，正在退避重试（详见日志；轮询通道的游标不会前移）",
        "channel {subject} has a problem and keeps retrying (see the log; a polled cursor does not move)",
    ),
    "status_cmd_broker_unreachable": ("无法连接消息总线 {subject}", "cannot reach the message bus {subject}"),
    "status_cmd_store_unreachable": ("无法连接记录库 {subject}", "cannot reach the record store {subject}"),
    "status_cmd_retention_never": ("数据保留：尚未执行过清理", "retention: no pass has run yet"),
    "status_cmd_retention": (
        "数据保留：上次清理 {at}，删除 {pruned}",
        "retention: last pass {at}, deleted {pruned}",
    ),
    "status_cmd_journal_unreachable": (
        "无法连接日志数据库 {url}：{error}（请检查数据库是否运行、地址和权限）",
        "cannot reach the journal database {url}: {error} (check that it runs, its address and access)",
    ),
}


i18n.register(_TEXT)
_t = i18n.t


def add_commands(subparsers: Any, config_arg: Any) -> None:
    p = subparsers.add_parser("status", help=_t("help_cmd_status"))
    config_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON object, times in ISO 8601")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from core.settings import load_settings

    settings = load_settings(args.config)
    try:
        status = collect(settings)
    except Unreachable as exc:
        if args.json:
            print(json.dumps({"ok": False, "problems": [f"journal_unreachable:{exc.url}"]}))
        print(_t("status_cmd_journal_unreachable", url=exc.url, error=exc.error), file=sys.stderr)
        return EXIT_DOWN
    if args.json:
        print(json.dumps(status.to_json(settings.engine.tzinfo), ensure_ascii=False))
    else:
        print(render(status, settings.engine.tzinfo))
        for line in _held_lines(settings):
            print(line)
    return EXIT_OK if status.ok else EXIT_DOWN


def _held_lines(settings: Any) -> list[str]:
    """Who stopped or paused which channel, when, and until when (engine/channel_control.py)."""
    from core.database import make_engine
    from engine import channel_control

    db = make_engine(settings.engine.database)
    try:
        holding = channel_control.held(db)
    finally:
        db.dispose()
    tz = settings.engine.tzinfo
    return [
        _t(
            f"status_cmd_channel_{c.state}_by",
            name=c.channel,
            actor=c.by,
            at=local_time(c.at, tz),
            until=local_time(c.until, tz),
        )
        for c in holding.values()
    ]


def render(status: EngineStatus, tz: ZoneInfo) -> str:
    """Readable tables, one per kind, each with a header row, then the verdict."""

    def when(value: datetime | None) -> str:
        return local_time(value, tz)

    def yes(flag: bool) -> str:
        return _t("status_cmd_yes") if flag else _t("status_cmd_no")

    out = [_t("status_cmd_backends", journal=status.journal, broker=status.broker)]
    if status.disk_free_bytes is not None and status.disk_free_ratio is not None:
        free, ratio = round(status.disk_free_bytes / 1e9, 1), round(status.disk_free_ratio * 100, 1)
        out.append(_t("status_cmd_disk", free=free, ratio=ratio))
    out.append("")
    out += _table(
        _t("status_cmd_processes"),
        _t("status_cmd_process_header"),
        [
            [
                p.host,
                p.pid,
                ",".join(p.roles),
                when(p.started_at),
                when(p.heartbeat_at),
                _t("status_cmd_alive") if p.alive else _t("status_cmd_down"),
                " ".join(p.listeners) or "-",
            ]
            for p in status.processes
        ],
    )
    out += _leader_lines(status, when)
    out += _table(
        _t("status_cmd_channels"),
        _t("status_cmd_channel_header"),
        [
            [
                c.name,
                c.listen,
                yes(c.listening) if c.state == "running" else _t(f"status_cmd_channel_{c.state}"),
                c.open_connections,
                sum(c.connections_closed.values()),
                c.received,
                c.routed,
                c.unrouted,
                c.failed,
                c.rejected,
                c.waiting,
                c.duplicates,
                c.control_id_reused,
                when(c.last_message_at),
                c.open_dead_letters,
                c.rate_1m,
                c.rate_15m,
                _known(c.ack_latency_p95_s),
                _known(c.silent_for_s),
            ]
            for c in status.channels
        ],
    )
    out += _table(
        _t("status_cmd_routes"),
        _t("status_cmd_route_header"),
        [
            [
                r.name,
                ",".join(r.channels),
                ",".join(r.destinations),
                r.received,
                r.routed,
                r.failed,
                when(r.last_message_at),
                r.open_dead_letters,
            ]
            for r in status.routes
        ],
    )
    out += _table(
        _t("status_cmd_destinations"),
        _t("status_cmd_destination_header"),
        [
            [
                d.name,
                d.delivered,
                d.backlog,
                "-" if d.queue_depth is None else d.queue_depth,
                when(d.oldest_undelivered_at),
                _known(d.oldest_undelivered_age_s),
                d.open_dead_letters,
                d.retrying,
                d.dead_lettered,
                d.delivered_rate_1m,
                _known(d.delivery_latency_p95_s),
            ]
            for d in status.destinations
        ],
    )
    out += _wechat_table(status, when)
    out.append(_retention_line(status, when))
    if status.ok:
        out.append(_t("status_cmd_all_well"))
    for problem in status.problems:
        key, _, subject = problem.partition(":")
        out.append(_t(f"status_cmd_{key}", subject=subject))
    return "\n".join(out)


def _leader_lines(status: EngineStatus, when: Any) -> list[str]:
    """Two servers: which process leads (since when) and which wait as standby."""
    if status.leader is None:
        return []
    lead = status.leader
    if lead.process is None:
        lines = [i18n.t("lead_no_leader", name=lead.name)]
    else:
        lines = [i18n.t("lead_leader", process=lead.process, since=when(lead.since))]
    standby = [f"{p.host}:{p.pid}" for p in status.processes if p.leadership == "standby"]
    lines += [i18n.t("lead_standby", process=process) for process in standby]
    return [*lines, ""]


def _retention_line(status: EngineStatus, when: Any) -> str:
    """When retention last ran and what it deleted (the kinds it deleted rows of)."""
    kept = status.retention
    if kept.last_at is None:
        return _t("status_cmd_retention_never")
    pruned = ", ".join(f"{kind} {kept.last[kind]}" for kind in KINDS if kept.last.get(kind)) or "0"
    return _t("status_cmd_retention", at=when(kept.last_at), pruned=pruned)


def _wechat_table(status: EngineStatus, when: Any) -> list[str]:
    """The `wechat` destinations, if any: quota left per API (remain/daily limit), the pause,
    the notices sent, undeliverable and failed, and WeChat's errcodes with their counts."""
    if not status.wechat:
        return []
    rows = [
        [
            w.name,
            " ".join(f"{q.api.rsplit('/', 2)[-2]}:{q.remain}/{q.daily_limit}" for q in w.quota) or "-",
            when(w.paused_until),
            w.sent,
            w.undeliverable,
            w.failed,
            " ".join(f"{code}×{n}" for code, n in w.by_errcode.items()) or "-",
        ]
        for w in status.wechat
    ]
    return _table(_t("status_cmd_wechat"), _t("status_cmd_wechat_header"), rows)


def _known(value: float | None) -> object:
    return "-" if value is None else value


def _table(title: str, header: str, rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [header.split("|"), *[[str(v) for v in row] for row in rows]]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [title]
    for row in cells:
        lines.append("  ".join(v + " " * (w - _width(v)) for v, w in zip(row, widths, strict=True)).rstrip())
    return [*lines, ""]


def _width(text: str) -> int:
    """Columns on a terminal: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
