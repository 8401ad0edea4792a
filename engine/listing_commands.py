"""`mch-engine messages list`, `records list` and `records timeline`: what an operator reads.

Each listing has column titles, shows at most 50 rows unless told `--limit N` or `--all`
(and says how many it left out), prints times in `engine.timezone` with the offset,
statuses, stages and record types in the operator's language, and refuses a filter
value that matches nothing that exists (a misspelt channel must not look like a quiet
night) by naming the valid values, exit 2. A database that cannot be reached is one
line (`engine.reachability`).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import tzinfo
from typing import Any

from core import i18n
from core.i18n import t
from engine.listing_table import FilterError, add_limit_args, check_filter, header, more_line, pad, row_limit
from engine.operator_time import iso_time, local_date, local_time

DEFAULT_CONFIG = "routes.yaml"
JOURNAL_STATUSES = ("received", "routed", "unrouted", "failed", "rejected")
TIME_FIELDS = ("received_at", "event_time")


def add_commands(sub: Any) -> None:
    """Add `messages` and `records` to `mch-engine`'s subcommands."""
    messages = sub.add_parser("messages", help=i18n.t("help_cmd_messages")).add_subparsers(metavar="ACTION")
    ml = messages.add_parser("list", help=i18n.t("help_cmd_messages_list"))
    _config_arg(ml)
    ml.add_argument("--channel")
    ml.add_argument("--status", choices=JOURNAL_STATUSES, help=", ".join(JOURNAL_STATUSES))
    ml.add_argument(
        "--reused",
        action="store_true",
        help="only messages that came under a control id their sender had used for other content",
    )
    ml.add_argument("--json", action="store_true", help="one JSON object per line")
    add_limit_args(ml)
    ml.set_defaults(func=cmd_messages_list)

    records = sub.add_parser("records", help=i18n.t("help_cmd_records")).add_subparsers(metavar="ACTION")
    rl = records.add_parser("list", help=i18n.t("help_cmd_records_list"))
    _config_arg(rl)
    rl.add_argument("--type", dest="record_type", help="record type, e.g. Person, LabResult")
    rl.add_argument("--person", help="person key, 身份证号 or HIS patient id")
    rl.add_argument("--json", action="store_true", help="one JSON object per line")
    add_limit_args(rl)
    rl.set_defaults(func=cmd_records_list)
    rt = records.add_parser("timeline", help=i18n.t("help_cmd_records_timeline"))
    _config_arg(rt)
    rt.add_argument("--person", required=True, help="person key, 身份证号 or HIS patient id")
    rt.add_argument("--json", action="store_true", help="one JSON object per line")
    add_limit_args(rt)
    rt.set_defaults(func=cmd_records_timeline)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help="routes.yaml to use (default ./routes.yaml)")


def _guarded(command: Any) -> Any:
    """A filter error is one line on stderr and exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except FilterError as exc:
            print(exc, file=sys.stderr)
            return 2

    run.__name__ = command.__name__
    return run


# --------------------------------------------------------------------------- messages list


@_guarded
def cmd_messages_list(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from engine.listing import count_messages, journal_channels, list_messages
    from engine.reachability import open_database, reaching_database

    settings = load_settings(args.config)
    url, tz, limit = settings.engine.database, settings.engine.tzinfo, row_limit(args)
    engine = open_database(url)
    try:
        with reaching_database(url):
            check_filter("--channel", args.channel, [*settings.channels, *journal_channels(engine)])
            filters = {"channel": args.channel, "status": args.status, "reused_only": args.reused}
            rows = list(list_messages(engine, limit=limit, **filters))
            total = count_messages(engine, **filters) if limit and len(rows) >= limit else len(rows)
    finally:
        engine.dispose()
    _print(rows, total, args.json, tz, _message_header, lambda r: _message_line(r, tz))
    return 0


_MESSAGE_COLUMNS = (
    ("col_msg_id", 7),
    ("col_received", 25),
    ("col_msg_channel", 12),
    ("col_msg_type", 18),
    ("col_control_id", 26),
    ("col_status", 9),
    ("col_ack", 4),
    ("col_deliveries", 0),
)


def _message_header() -> str:
    return header(_MESSAGE_COLUMNS, right=(0,))


def _message_line(r: dict[str, Any], tz: tzinfo) -> str:
    deliveries = ",".join(f"{d['destination']}:{i18n.status(d['status'])}" for d in r["deliveries"])
    extra = f"  dup={r['duplicates']}" if r["duplicates"] else ""
    extra += "  control_id_reused" if r["control_id_reused"] else ""
    # Where a file's message came from (file:NAME#INDEX); an MLLP peer's address changes per connection.
    extra += f"  {r['peer']}" if r["peer"].startswith("file:") else ""
    err = f"  {r['error']}" if r["error"] else ""
    kind, control, ack = r["message_type"] or "-", r["control_id"] or "-", r["ack_code"] or "-"
    return (
        f"{r['id']:>7}  {local_time(r['received_at'], tz):<25}  {r['channel']:<12}  {kind:<18}  "
        f"{control:<26}  {pad(i18n.status(r['status']), 9)}  {ack:<4}  {deliveries or '-'}{extra}{err}"
    )


# --------------------------------------------------------------------------- records list


@_guarded
def cmd_records_list(args: argparse.Namespace) -> int:
    from channels.record_store.queries import count_records, list_records, resolve_person
    from core.settings import load_settings
    from engine.reachability import open_database, reaching_database
    from transforms.records import RECORD_TYPES

    check_filter("--type", args.record_type, RECORD_TYPES)
    settings = load_settings(args.config)
    tz, limit = settings.engine.tzinfo, row_limit(args)
    rows: list[dict[str, Any]] = []
    total = 0
    person_found = False
    for url, setting in store_urls(settings):
        engine = open_database(url, setting)
        try:
            with reaching_database(url, setting):
                person = resolve_person(engine, args.person) if args.person else None
                if args.person and person is None:
                    continue
                person_found = True
                filters = {"record_type": args.record_type, "person": person}
                found = list(list_records(engine, limit=limit, **filters))
                rows += found
                total += count_records(engine, **filters) if limit and len(found) >= limit else len(found)
        finally:
            engine.dispose()
    if args.person and not person_found:
        raise FilterError(t("person_unknown_hint", person=args.person))
    shown = rows[:limit] if limit else rows
    _print(shown, total, args.json, tz, _record_header, _record_line)
    return 0


def store_urls(settings: Any) -> list[tuple[str, str]]:
    """Each record store's database URL and the setting that names it (the journal's
    database when a destination has none of its own)."""
    journal_url = settings.engine.database
    found: dict[str, str] = {}
    for name, d in settings.destinations.items():
        url = getattr(d, "database", None) or journal_url
        found.setdefault(url, "engine.database" if url == journal_url else f"destinations.{name}.database")
    return sorted(found.items()) or [(journal_url, "engine.database")]


_RECORD_COLUMNS = (("col_record_type", 16), ("col_record_id", 48), ("col_person", 36), ("col_summary", 0))


def _record_header() -> str:
    return header(_RECORD_COLUMNS)


def _record_line(r: dict[str, Any]) -> str:
    rec = r["record"] or {}
    if r["record_type"] == "Person":
        summary = (rec.get("person") or {}).get("name") or "-"
    else:
        summary = summarize(rec)
    kind = pad(record_type_name(r["record_type"]), 16)
    return f"{kind}  {r['record_id']:<48}  {r['person_key'] or '-':<36}  {summary}"


def record_type_name(record_type: str) -> str:
    return i18n.t_or(f"record_{record_type}", record_type)


def summarize(rec: dict[str, Any]) -> str:
    """The coded thing a record is about (order, exam, conclusion, mode) and how many results."""
    coded = rec.get("order") or rec.get("exam") or rec.get("conclusion") or rec.get("mode") or {}
    text = (coded.get("display") or coded.get("code") or "") if isinstance(coded, dict) else str(coded)
    obs = rec.get("observations")
    if isinstance(obs, list):
        text = f"{text}{t('observations', n=len(obs))}".strip()
    return str(text) or "-"


# --------------------------------------------------------------------------- timeline


@_guarded
def cmd_records_timeline(args: argparse.Namespace) -> int:
    from channels.record_store.queries import resolve_person, timeline
    from core.settings import load_settings
    from engine.reachability import open_database, reaching_database

    settings = load_settings(args.config)
    tz, limit = settings.engine.tzinfo, row_limit(args)
    url, setting = store_urls(settings)[0]
    engine = open_database(url, setting)
    try:
        with reaching_database(url, setting):
            key = resolve_person(engine, args.person)
            if key is None:
                raise FilterError(t("person_unknown_hint", person=args.person))
            rows = timeline(engine, key)
    finally:
        engine.dispose()
    shown = rows[:limit] if limit else rows
    _print(shown, len(rows), args.json, tz, _timeline_header, lambda r: _timeline_line(r, tz))
    return 0


_TIMELINE_COLUMNS = (
    ("col_date", 10),
    ("col_stage", 10),
    ("col_record_type", 22),
    ("col_person", 14),
    ("col_summary", 0),
)


def _timeline_header() -> str:
    return header(_TIMELINE_COLUMNS)


def _timeline_line(r: dict[str, Any], tz: tzinfo) -> str:
    who = f"{r['person_name'] or r['person_key']}" + (t("child_mark") if r["is_child"] else "")
    stage = pad(i18n.t_or(f"timeline_{r['stage']}", r["stage"]), 10)
    kind = pad(record_type_name(r["record_type"]), 22)
    summary = summarize(r["record"] or {})
    return f"{local_date(r['event_time'], tz)}  {stage}  {kind}  {pad(who, 14)}  {summary}"


# --------------------------------------------------------------------------- output


def _print(rows: list[dict[str, Any]], total: int, as_json: bool, tz: tzinfo, title: Any, line: Any) -> None:
    """Rows as JSON lines (times ISO 8601 in the zone) or a table with its title and what was left out."""
    if as_json:
        for row in rows:
            print(json.dumps(_zoned(row, tz), ensure_ascii=False, default=str))
    elif not rows:
        print(t("nothing_found"))
    else:
        print(title())
        for row in rows:
            print(line(row))
    more = more_line(len(rows), total)
    if more:
        print(more, file=sys.stderr if as_json else sys.stdout)


def _zoned(row: dict[str, Any], tz: tzinfo) -> dict[str, Any]:
    return {k: iso_time(v, tz) if k in TIME_FIELDS and v else v for k, v in row.items()}
