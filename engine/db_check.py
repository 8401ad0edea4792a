"""`mch-engine db-check URL (--view V | --query SQL)`: try a HIS view on site before polling it.

It connects the way a db_poll channel would (a SQLAlchemy URL or `odbc:` + an ODBC
connection string), reads at most `--limit` rows with the same generated SELECT (in
watermark and key order when both are given), and prints each row as the mapping reads it:
the canonical values the journal would keep (`column = value`, or one JSON object a line
with `--json`). The rows are shown on the engineer's own terminal, never logged. Exit 0
when the query ran, 1 when the database could not be reached or the query failed, 2 on a
usage problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from zoneinfo import ZoneInfo

from channels.db_poll.reader import PollError, dialect_of, masked_source, reader_for
from channels.db_poll.rows import encode_row
from channels.db_poll.sql import PollQueries
from core import i18n
from core.i18n import t

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_TEXT: dict[str, tuple[str, str]] = {
    "db_check_need_source": ("请给出 --view 或 --query 之一", "give one of --view or --query"),
    "db_check_failed": (
        "{url}：{kind} 失败：{error}",
        "{url}: {kind} failed: {error}",
    ),
    "db_check_rows": (
        "{url}：读到 {n} 行（最多 {limit} 行），以下为映射读到的列值（input: row）",
        "{url}: {n} rows read (at most {limit}), as the mapping reads them (input: row)",
    ),
    "db_check_row": ("第 {i} 行", "row {i}"),
}
i18n.register(_TEXT)


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("db-check", help=i18n.t("help_cmd_db_check"))
    p.add_argument("url", help="SQLAlchemy URL (mssql+pyodbc://…) or odbc:DRIVER={…};SERVER=…")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--view", default="", help="view or table to read, e.g. v_child_exam")
    source.add_argument("--query", default="", help="a SELECT to read instead of a view")
    p.add_argument("--watermark", default="", help="order by this column (the channel's `watermark`)")
    p.add_argument("--key", default="", help="and then by this one (the channel's `key`)")
    p.add_argument("--limit", type=_positive, default=10, help="rows to show (default 10)")
    p.add_argument("--dialect", default="", help="SQL flavour of an odbc: string (default: from its DRIVER)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for a connection")
    p.add_argument("--timezone", default="Asia/Shanghai", help="zone given to times without an offset")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    p.set_defaults(func=cmd_db_check)


def cmd_db_check(args: argparse.Namespace) -> int:
    if not (args.view or args.query.strip()):
        print(t("db_check_need_source"), file=sys.stderr)
        return EXIT_USAGE
    sql = _statement(args)
    shown = masked_source(args.url)
    reader = reader_for(args.url, args.timeout)
    try:
        _, rows = reader.fetch(sql, {})
    except PollError as exc:
        print(t("db_check_failed", url=shown, kind=exc.kind, error=exc.detail), file=sys.stderr)
        return EXIT_FAILED
    finally:
        reader.close()
    tz = ZoneInfo(args.timezone)
    print(t("db_check_rows", url=shown, n=len(rows), limit=args.limit), file=sys.stderr)
    for i, row in enumerate(rows, 1):
        canonical = json.loads(encode_row(row, tz))
        if args.json:
            print(json.dumps(canonical, ensure_ascii=False))
            continue
        print(t("db_check_row", i=i))
        width = max((len(name) for name in canonical), default=0)
        for name, value in canonical.items():
            print(f"  {name.ljust(width)} = {json.dumps(value, ensure_ascii=False)}")
    return EXIT_OK


def _statement(args: argparse.Namespace) -> str:
    """The channel's own first-page SELECT; without a watermark, ordered by nothing."""
    dialect = dialect_of(args.url, args.dialect)
    ordered = bool(args.watermark and args.key)
    queries = PollQueries.build(
        dialect,
        view=args.view,
        query=args.query,
        watermark=args.watermark if ordered else "",
        key=args.key if ordered else "",
        limit=args.limit,
        rowversion=False,
    )
    return queries.first if ordered else queries.unordered


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value
