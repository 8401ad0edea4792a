"""`mch-engine retention`: one retention pass now, or (`--dry-run`) what a pass would delete.

The pass is the one the ingest process runs every `engine.retention.every`
(engine/retention.py), with the periods of routes.yaml, whether or not the pruner is
enabled there. A real pass is audited (begun before it deletes, finished with its counts);
a dry run changes nothing and is not. Exit 0, or 2 on a configuration or database problem.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from core import i18n
from core.i18n import t
from core.settings.retention import PERIODS
from engine.retention import KINDS

DEFAULT_CONFIG = "routes.yaml"

_TEXT: dict[str, tuple[str, str]] = {
    "help_cmd_retention": (
        "立即执行一次数据保留清理（--dry-run 只显示将删除的数量）",
        "run one retention pass now (--dry-run: only show what it would delete)",
    ),
    "retention_would": (
        "数据保留（试运行，未删除任何数据）将删除：",
        "retention (dry run, nothing deleted) would delete:",
    ),
    "retention_done": ("数据保留清理完成，已删除：", "retention pass done, deleted:"),
    "retention_pages": (
        "  SQLite 归还给文件系统的页：{pages}",
        "  SQLite pages given back to the file system: {pages}",
    ),
    "retention_kind_messages": ("已完成的消息 messages", "finished messages"),
    "retention_kind_deliveries": ("投递记录 deliveries", "their deliveries"),
    "retention_kind_attempts": ("投递尝试 attempts", "delivery attempts"),
    "retention_kind_dead_letters": ("已处理的死信 dead_letters", "resolved dead letters"),
    "retention_kind_forwarded": ("MLLP 转发标记 forwarded", "mllp_out forwarding marks"),
    "retention_kind_notices": ("微信通知 notices", "WeChat notices"),
    "retention_kind_delivery_reports": ("微信送达回执 delivery_reports", "WeChat delivery reports"),
    "retention_kind_operator_requests": ("已完成的操作请求 operator_requests", "finished operator requests"),
    "retention_kind_alerts": ("已恢复的告警 alerts", "resolved alerts"),
    "retention_kind_sessions": ("过期的控制台会话 sessions", "expired dashboard sessions"),
    "retention_kind_audit": ("审计日志 audit", "audit log entries"),
    "action_retention": ("数据保留清理", "retention"),
}
i18n.register(_TEXT)


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("retention", help=i18n.t("help_cmd_retention"))
    p.add_argument("--config", default=DEFAULT_CONFIG, help="routes.yaml to use (default ./routes.yaml)")
    p.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    p.add_argument("--json", action="store_true", help="one JSON object: counts per kind")
    p.add_argument("--as", dest="actor", metavar="NAME", help="your name for the audit log")
    p.set_defaults(func=cmd_retention)


def cmd_retention(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from deadletter import audit
    from engine.reachability import open_database
    from engine.retention import prune_once, run_pass

    settings = load_settings(args.config)
    retention = settings.engine.retention
    engine = open_database(settings.engine.database)
    try:
        pages = 0
        if args.dry_run:
            counts = prune_once(engine, retention, dry_run=True)
        else:
            audit.ensure_schema(engine)
            actor = audit.current_actor(args.actor)
            periods = {k: f"{retention.period(k) / 86400:g}d" for k in PERIODS}
            entry = audit.begin_audit(engine, actor=actor, action="retention", target="all", detail=periods)
            try:
                counts, pages = run_pass(engine, retention)
            except BaseException as exc:
                failed = {"error": type(exc).__name__}
                audit.finish_audit(engine, entry, outcome=audit.ABORTED, count=0, detail=failed)
                raise
            total = sum(counts.values())
            audit.finish_audit(engine, entry, outcome=audit.DONE, count=total, detail=counts)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "counts": counts, "pages_freed": pages}))
        return 0
    print(t("retention_would") if args.dry_run else t("retention_done"))
    for kind in KINDS:
        print(f"  {counts[kind]:>10}  {t(f'retention_kind_{kind}')}")
    if pages:
        print(t("retention_pages", pages=pages))
    return 0
