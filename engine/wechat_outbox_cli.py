"""`mch-engine wechat outbox`: the notices the WeChat notifier made.

    wechat outbox [--config routes.yaml] [--status S] [--limit N | --all] [--json]

`outbox` lists the notice ledger (channels/wechat/ledger.py), newest first: status, the
recipient's openid masked, the template, its key values and the times in engine.timezone.
In outbox mode (no credentials) every notice waits there with status `outbox`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from core import i18n
from core.i18n import t
from core.masking import mask_value
from engine.listing_table import add_limit_args, header, pad, row_limit
from engine.operator_time import iso_time, local_time

DEFAULT_CONFIG = "routes.yaml"


def add_outbox_command(actions: Any) -> None:
    """Add `outbox` to the `wechat` command group (engine/wechat_cli.py)."""
    from channels.wechat.ledger import STATUSES

    outbox = actions.add_parser("outbox", help=i18n.t("help_cmd_wechat_outbox"))
    outbox.add_argument("--config", default=DEFAULT_CONFIG, help="routes.yaml to use (default ./routes.yaml)")
    outbox.add_argument("--status", choices=STATUSES, help=", ".join(STATUSES))
    outbox.add_argument("--json", action="store_true", help="one JSON object per line")
    add_limit_args(outbox)
    outbox.set_defaults(func=cmd_outbox)


def masked_openid(openid: str) -> str:
    """`oAbC****wxyz`: enough to tell two apart, not enough to write to one."""
    if not openid:
        return t("wechat_unbound")
    return openid[:4] + "****" + openid[-4:] if len(openid) > 10 else "****"


def cmd_outbox(args: argparse.Namespace) -> int:
    from channels.wechat.ledger import list_notices
    from core.settings import load_settings
    from engine.reachability import open_database, reaching_database

    settings = load_settings(args.config)
    tz = settings.engine.tzinfo
    url = settings.engine.database
    engine = open_database(url)
    try:
        with reaching_database(url), engine.connect() as conn:
            rows = list_notices(conn, args.status, row_limit(args) or 1_000_000_000)
    finally:
        engine.dispose()
    if args.json:
        for row in rows:
            print(json.dumps(notice_view(row, tz), ensure_ascii=False))
        return 0
    if not rows:
        print(t("nothing_found"))
        return 0
    columns = [
        ("wechat_col_id", 6),
        ("wechat_col_created", 25),
        ("wechat_col_status", 18),
        ("wechat_col_recipient", 12),
        ("wechat_col_template", 20),
        ("wechat_col_due", 25),
        ("wechat_col_data", 0),
    ]
    print(header(columns))
    for row in rows:
        shown = notice_view(row, tz)
        when = row["sent_at"] or row["due_at"]
        cells = [
            str(row["id"]),
            local_time(row["created_at"], tz),
            t(f"wechat_status_{row['status']}")
            + (f" ({row['reason']})" if row["reason"] else "")
            + (f" [{row['delivery']}]" if row.get("delivery") else ""),
            shown["recipient"],
            row["template_id"],
            local_time(when, tz) if when else "-",
            " ".join(f"{k}={v}" for k, v in row["data"].items()),
        ]
        print("  ".join(pad(c, w) for c, (_, w) in zip(cells[:-1], columns, strict=False)) + "  " + cells[-1])
    return 0


def notice_view(row: dict[str, Any], tz: Any) -> dict[str, Any]:
    """A ledger row as an operator may see it (also `wechat history`): openid and record id masked."""
    data = row["data"] if isinstance(row["data"], dict) else json.loads(row["data"])
    return {
        "id": row["id"],
        "destination": row["destination"],
        "event": row["event"],
        "record_id": mask_value("record_id", row["record_id"]),
        "record_type": row["record_type"],
        "recipient": masked_openid(row["recipient"]),
        "role": row["role"],
        "template_id": row["template_id"],
        "data": data,
        "url": row["url"],
        "status": row["status"],
        "reason": row["reason"],
        "msgid": row["msgid"],
        "delivery": row.get("delivery"),
        "delivery_at": iso_time(row.get("delivery_at"), tz),
        "created_at": iso_time(row["created_at"], tz),
        "due_at": iso_time(row["due_at"], tz),
        "sent_at": iso_time(row["sent_at"], tz),
    }
