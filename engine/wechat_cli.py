"""`mch-engine wechat …`: the bindings of WeChat openids to persons, and (from
engine/wechat_outbox_cli.py) the notice outbox.

    wechat outbox [--status S] [--limit N | --all] [--json]   the notices made (engine/wechat_outbox_cli.py)
    wechat bind import FILE.csv [--as NAME]   load a binding list; each rejected row reported
    wechat bindings [--role R] [--limit N] [--json]   the bindings, every identifier masked
    wechat history --person ID [--json]   what was sent to one person (or waits in the outbox),
                                          health-education items included; identifiers masked

`bind import` exits 0 when every row was imported (or already there), 1 when some were
rejected (the rest are imported), 2 on a usage problem (no such file, wrong columns). The
import is audited like the dead-letter actions (deadletter/audit.py): the entry is written
before the file is read and completed with the counts.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from core import i18n
from engine.listing_table import pad, width
from engine.wechat_outbox_cli import add_outbox_command

DEFAULT_CONFIG = "routes.yaml"
AUDIT_ACTION = "wechat_bind_import"

_TEXT: dict[str, tuple[str, str]] = {
    # key: (zh, en)
    "help_cmd_wechat_bind": ("绑定关系：导入", "bindings: import"),
    "help_cmd_wechat_bind_import": (
        "从 CSV 导入绑定关系（列：openid,id_card,his_id,his_system,phone,role），逐行报告被拒绝的行",
        "import bindings from a CSV file (columns openid,id_card,his_id,his_system,phone,role), "
        "each rejected row reported",
    ),
    "help_cmd_wechat_bindings": (
        "列出绑定关系（标识均已脱敏）",
        "list the bindings (every identifier masked)",
    ),
    "action_wechat_bind_import": ("导入微信绑定", "WeChat binding import"),
    "wx_file_missing": ("找不到文件：{file}", "no such file: {file}"),
    "wx_file_columns": (
        "{file} 的表头缺少列：{columns}（需要 openid,id_card,his_id,his_system,phone,role）",
        "{file} lacks the columns {columns} in its header "
        "(expected openid,id_card,his_id,his_system,phone,role)",
    ),
    "wx_rejected_line": ("第 {line} 行被拒绝：{reason}{detail}", "line {line} rejected: {reason}{detail}"),
    "wx_import_summary": (
        "导入 {imported} 行，已存在未变 {unchanged} 行，拒绝 {rejected} 行"
        "（审计记录 #{audit}，操作人 {actor}）",
        "{imported} imported, {unchanged} already there unchanged, {rejected} rejected "
        "(audit entry #{audit}, by {actor})",
    ),
    "wx_reject_no_openid": ("没有 openid", "no openid"),
    "wx_reject_bad_openid": ("openid 格式不对", "the openid is malformed"),
    "wx_reject_id_card_check": ("身份证号校验位错误", "the ID card's check character is wrong"),
    "wx_reject_id_card": ("身份证号无效", "the ID card number is invalid"),
    "wx_reject_his_system_missing": ("有 HIS 号但没有 HIS 系统", "an HIS id without its HIS system"),
    "wx_reject_no_identifier": (
        "没有身份标识（需要身份证号，或 HIS 系统加 HIS 号）",
        "no identifier (an ID card, or an HIS system and HIS id, is needed)",
    ),
    "wx_reject_openid_other_person": (
        "该 openid 已绑定另一个人",
        "this openid is already bound to another person",
    ),
    "wx_reject_phone_disagrees": (
        "手机号与该人已有绑定的手机号不一致",
        "the phone disagrees with this person's existing binding",
    ),
    "wx_col_openid": ("微信 openid", "openid"),
    "wx_col_id_card": ("身份证号", "ID card"),
    "wx_col_his": ("HIS 号", "HIS id"),
    "wx_col_phone": ("手机", "phone"),
    "wx_col_role": ("角色", "role"),
    "wx_col_subscribed": ("关注", "following"),
    "wx_col_consents": ("订阅同意", "consents"),
    "wx_col_bound_at": ("绑定时间", "bound at"),
    "wx_yes": ("是", "yes"),
    "wx_no": ("否", "no"),
    "wx_no_bindings": ("没有绑定关系。", "no bindings."),
    "help_cmd_wechat_history": (
        "某人收到（或在发件箱中待发）的通知，含宣教推送；标识均已脱敏",
        "what was sent to one person (or waits in the outbox), health-education items included; "
        "identifiers masked",
    ),
    "wx_history_person": ("对象：{person}", "person: {person}"),
    "wx_history_none": ("没有给 {person} 的通知。", "no notices for {person}."),
    "wx_col_notice": ("通知", "notice"),
    "wx_col_link": ("链接", "link"),
}
i18n.register(_TEXT)
_t = i18n.t


def add_commands(sub: Any) -> None:
    wechat = sub.add_parser("wechat", help=_t("help_cmd_wechat"))
    actions = wechat.add_subparsers(metavar="ACTION")
    wechat.set_defaults(func=lambda _args: _usage(wechat))
    add_outbox_command(actions)

    bind = actions.add_parser("bind", help=_t("help_cmd_wechat_bind"))
    bind_actions = bind.add_subparsers(metavar="ACTION")
    bind.set_defaults(func=lambda _args: _usage(bind))
    imp = bind_actions.add_parser("import", help=_t("help_cmd_wechat_bind_import"))
    imp.add_argument("file", metavar="FILE.csv")
    imp.add_argument(
        "--as",
        dest="actor",
        metavar="NAME",
        help="your name for the audit log, kept beside the OS user (default: the OS user alone)",
    )
    _config_arg(imp)
    imp.set_defaults(func=cmd_bind_import)

    listing = actions.add_parser("bindings", help=_t("help_cmd_wechat_bindings"))
    listing.add_argument("--role", help="only this role (patient, or a staff role)")
    listing.add_argument("--limit", type=int, default=0, help="at most N rows (default all)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    _config_arg(listing)
    listing.set_defaults(func=cmd_bindings)

    history = actions.add_parser("history", help=_t("help_cmd_wechat_history"))
    history.add_argument(
        "--person",
        required=True,
        metavar="ID",
        help="an ID card number, an HIS id, or a person key (id_card:…, his:SYSTEM:…)",
    )
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    _config_arg(history)
    history.set_defaults(func=cmd_history)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help="routes.yaml to use (default ./routes.yaml)")


def _open(args: argparse.Namespace, *, create: bool = False) -> tuple[Any, Any]:
    from channels.wechat import bindings
    from core.settings import load_settings
    from deadletter import audit
    from engine.reachability import open_database

    settings = load_settings(args.config)  # ConfigErrors: main() prints them, exit 2
    engine = open_database(settings.engine.database, create=create)
    bindings.ensure_schema(engine)
    audit.ensure_schema(engine)
    return settings, engine


def _read_csv(path: Path) -> list[tuple[int, dict[str, str]]] | None:
    """(line number, row) for each data row; None when a column is missing (printed)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:  # a list saved by Excel on a Chinese Windows
        text = data.decode("gb18030")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    from channels.wechat.bindings import IMPORT_COLUMNS

    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in IMPORT_COLUMNS if c not in header]
    if missing:
        print(_t("wx_file_columns", file=path.name, columns=",".join(missing)), file=sys.stderr)
        return None
    reader.fieldnames = header
    rows = []
    for row in reader:
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue  # a blank line
        rows.append((reader.line_num, {k: v for k, v in row.items() if k is not None and isinstance(v, str)}))
    return rows


def cmd_bind_import(args: argparse.Namespace) -> int:
    from channels.wechat.bindings import import_rows
    from deadletter import audit
    from engine.reachability import reaching_database

    path = Path(args.file)
    if not path.is_file():
        print(_t("wx_file_missing", file=args.file), file=sys.stderr)
        return 2
    rows = _read_csv(path)
    if rows is None:
        return 2
    settings, engine = _open(args, create=True)
    try:
        with reaching_database(settings.engine.database):
            actor = audit.current_actor(args.actor)
            entry = audit.begin_audit(
                engine, actor=actor, action=AUDIT_ACTION, target=path.name, detail={"rows": len(rows)}
            )
            try:
                report = import_rows(engine, rows)
            except BaseException as exc:
                detail = {"rows": len(rows), "error": type(exc).__name__}
                audit.finish_audit(engine, entry, outcome=audit.ABORTED, count=0, detail=detail)
                raise
            rejected = [{"line": r.line, "reason": r.reason} for r in report.rejected]
            detail = {"rows": len(rows), "imported": report.imported, "unchanged": report.unchanged}
            audit.finish_audit(
                engine,
                entry,
                outcome=audit.FAILED if rejected else audit.DONE,
                count=report.imported,
                detail={**detail, "rejected": rejected},
            )
    finally:
        engine.dispose()
    for r in report.rejected:
        extra = f" ({r.detail})" if r.detail else ""
        print(_t("wx_rejected_line", line=r.line, reason=_t(r.reason), detail=extra))
    print(
        _t(
            "wx_import_summary",
            imported=report.imported,
            unchanged=report.unchanged,
            rejected=len(report.rejected),
            audit=entry,
            actor=str(actor),
        )
    )
    return 1 if report.rejected else 0


def cmd_bindings(args: argparse.Namespace) -> int:
    from channels.wechat.bindings import list_bindings
    from engine.operator_time import iso_time, local_time
    from engine.reachability import reaching_database

    settings, engine = _open(args)
    tz = settings.engine.tzinfo
    try:
        with reaching_database(settings.engine.database):
            views = list(list_bindings(engine, role=args.role, limit=args.limit or None))
    finally:
        engine.dispose()
    if args.json:
        for v in views:
            item = {
                "openid": v.openid,
                "id_card": v.id_card,
                "his": v.his,
                "phone": v.phone,
                "role": v.role,
                "subscribed": v.subscribed,
                "consents": v.consents,
                "bound_at": iso_time(v.bound_at, tz) if v.bound_at else None,
                "unsubscribed_at": iso_time(v.unsubscribed_at, tz) if v.unsubscribed_at else None,
                "source": v.source,
            }
            print(json.dumps(item, ensure_ascii=False))
        return 0
    if not views:
        print(_t("wx_no_bindings"))
        return 0
    cols = ["openid", "id_card", "his", "phone", "role", "subscribed", "consents", "bound_at"]
    table = [[_t(f"wx_col_{c}") for c in cols]]
    for v in views:
        consents = ",".join(f"{k}={s}" for k, s in sorted(v.consents.items())) or "-"
        yes_no = _t("wx_yes") if v.subscribed else _t("wx_no")
        bound = local_time(v.bound_at, tz) if v.bound_at else "-"
        cells = [v.openid, v.id_card or "-", v.his or "-", v.phone or "-", v.role, yes_no, consents, bound]
        table.append(cells)
    widths = [max(width(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print("  ".join(pad(cell, w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from channels.wechat import ledger
    from core.masking import mask_key
    from engine.operator_time import local_time
    from engine.reachability import reaching_database
    from engine.wechat_outbox_cli import notice_view

    settings, engine = _open(args)
    ledger.ensure_schema(engine)
    tz = settings.engine.tzinfo
    try:
        with reaching_database(settings.engine.database), engine.connect() as conn:
            rows = ledger.for_person(conn, args.person)
    finally:
        engine.dispose()
    shown_person = mask_key(args.person if ":" in args.person else f"person:{args.person}")
    if args.json:
        for row in rows:
            print(json.dumps({**notice_view(row, tz), "person": mask_key(row["person"])}, ensure_ascii=False))
        return 0
    if not rows:
        print(_t("wx_history_none", person=shown_person))
        return 0
    print(_t("wx_history_person", person=mask_key(rows[0]["person"])))
    cols = ["wechat_col_created", "wechat_col_status", "wx_col_notice", "wechat_col_recipient"]
    cols += ["wechat_col_data", "wx_col_link"]
    table = [[_t(c) for c in cols]]
    for row in rows:
        view = notice_view(row, tz)
        status = _t(f"wechat_status_{row['status']}") + (f" ({row['reason']})" if row["reason"] else "")
        data = " ".join(f"{k}={v}" for k, v in view["data"].items())
        cells = [local_time(row["created_at"], tz), status, row["event"], view["recipient"], data]
        table.append([*cells, row["url"] or "-"])
    widths = [max(width(r[i]) for r in table) for i in range(len(cols))]
    for r in table:
        print("  ".join(pad(cell, w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0
