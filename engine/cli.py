"""`mch-engine`: the command line for interface engineers, operators and scripts.

Every subcommand exits 0 on success, 1 when what it checked or sent was not
accepted (or the command failed unexpectedly), 2 on a usage or configuration
problem. Operator text is Simplified Chinese by default; `--lang en` (or
MCH_LANG=en) switches to English. `main()` sets up the masked JSON logs (stderr)
once for every command, and turns any unexpected error into one masked line, so
no command writes patient data into a log or a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import structlog

from deadletter.cli import add_commands as add_deadletter_commands
from engine import i18n
from engine import logging as engine_logging
from engine.errors import ConfigError, ConfigErrors, StartupError
from engine.i18n import t
from engine.reload_command import add_commands as add_reload_commands

DEFAULT_CONFIG = "routes.yaml"
STOP_GRACE = 30.0  # seconds a SIGTERM waits for in-flight work
# Commands other than `run` log warnings and errors only, unless MCH_LOG_LEVEL says otherwise.
COMMAND_LOG_LEVEL = "warning"
LOG_LEVELS = ["debug", "info", "warning", "error"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    i18n.set_language(args.lang or os.environ.get("MCH_LANG", "zh"))
    engine_logging.configure(_log_level(args))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ConfigErrors, StartupError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `… | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a fault, not the user's: never a traceback
        # The log names the command and the kind of error only (its text may quote a value);
        # the person at the terminal gets the text, masked.
        error = type(exc).__name__
        structlog.get_logger("engine.cli").error("command_failed", command=args.func.__name__, error=error)
        detail = engine_logging.mask_text(" ".join(str(exc).split()))[:300]
        print(t("command_failed", error=error, detail=detail), file=sys.stderr)
        return 1


def _log_level(args: argparse.Namespace) -> str:
    """`run --log-level`, else MCH_LOG_LEVEL, else warnings and errors only."""
    level = getattr(args, "log_level", None) or os.environ.get("MCH_LOG_LEVEL", "") or COMMAND_LOG_LEVEL
    return level.lower() if level.lower() in LOG_LEVELS else COMMAND_LOG_LEVEL


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mch-engine",
        description="Integration engine for maternal and child health hospitals (妇幼保健院).",
    )
    p.add_argument("--lang", choices=["zh", "en"], help="language of operator messages (default zh)")
    sub = p.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help="run the engine")
    _config_arg(run)
    run.add_argument(
        "--role",
        action="append",
        choices=["ingest", "transform", "deliver"],
        help="run only these roles (repeatable; default all)",
    )
    run.add_argument(
        "--partitions",
        type=_partition_list,
        metavar="N,M|N-M",
        help="with the deliver role: consume only these partitions of each destination "
        "(default all), to split delivery between processes",
    )
    run.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="with the transform role: take only messages whose journal id modulo N is I, "
        "so N transform processes share the work",
    )
    run.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate routes.yaml and its mapping files")
    _config_arg(check)
    check.add_argument(
        "--diff", action="store_true", help="also show what `reload` would change in the running engine"
    )
    check.set_defaults(func=cmd_check)
    add_reload_commands(sub)

    mapping = sub.add_parser("mapping", help="mapping files: test and explain").add_subparsers(
        metavar="ACTION"
    )
    mt = mapping.add_parser("test", help="run the tests beside the mapping files (no broker or database)")
    mt.add_argument("paths", nargs="*", default=["mappings"], metavar="PATH")
    mt.set_defaults(func=cmd_mapping_test)
    me = mapping.add_parser("explain", help="show every field of a message and where it goes")
    me.add_argument("file", metavar="FILE.hl7")
    _config_arg(me)
    me.add_argument("--channel", help="explain as received on this channel (default: any)")
    me.set_defaults(func=cmd_mapping_explain)

    schema = sub.add_parser("schema", help="canonical record schemas").add_subparsers(metavar="ACTION")
    se = schema.add_parser("export", help="write one JSON Schema per record type")
    se.add_argument("directory", metavar="DIR")
    se.set_defaults(func=cmd_schema_export)

    add_deadletter_commands(sub)

    docs = sub.add_parser("docs", help="write docs/routes.md from the settings models")
    docs.add_argument("--output", default="docs/routes.md")
    docs.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    docs.set_defaults(func=cmd_docs)

    send = sub.add_parser("send", help="send HL7 files over MLLP and print each ACK")
    send.add_argument("files", nargs="+", metavar="FILE")
    send.add_argument("--to", required=True, metavar="HOST:PORT")
    send.add_argument("--encoding", help="charset to send in (e.g. gb18030); default: bytes as they are")
    send.add_argument("--concurrency", type=int, default=1, help="connections at once (default 1)")
    send.add_argument("--repeat", type=int, default=1, help="send everything N times, MSH-10 made unique")
    send.add_argument("--quiet", action="store_true", help="print only problems and the summary")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each ACK")
    send.set_defaults(func=cmd_send)

    messages = sub.add_parser("messages", help="the message journal").add_subparsers(metavar="ACTION")
    ml = messages.add_parser("list", help="list journaled messages, newest first")
    _config_arg(ml)
    ml.add_argument("--channel")
    ml.add_argument("--status", help="received, routed, unrouted, failed, rejected")
    ml.add_argument(
        "--reused",
        action="store_true",
        help="only messages that came under a control id their sender had used for other content",
    )
    _output_args(ml)
    ml.set_defaults(func=cmd_messages_list)

    records = sub.add_parser("records", help="the health-record store").add_subparsers(metavar="ACTION")
    rl = records.add_parser("list", help="list stored records, newest first")
    _config_arg(rl)
    rl.add_argument("--type", dest="record_type", help="record type, e.g. Person, LabResult")
    rl.add_argument("--person", help="person key")
    _output_args(rl)
    rl.set_defaults(func=cmd_records_list)
    rt = records.add_parser("timeline", help="one person's whole cycle, oldest first")
    _config_arg(rt)
    rt.add_argument("--person", required=True, help="person key, 身份证号 or HIS patient id")
    rt.add_argument("--json", action="store_true", help="one JSON object per line")
    rt.set_defaults(func=cmd_records_timeline)
    return p


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help="routes.yaml to use (default ./routes.yaml)")


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--limit", type=int, help="at most N rows (default: all)")


# --------------------------------------------------------------------------- commands


def cmd_check(args: argparse.Namespace) -> int:
    from engine.check import check_config, format_problems
    from engine.settings import load_settings
    from transforms.mapping import load_mapping

    if args.diff:
        from engine.reload_command import cmd_check_diff

        return cmd_check_diff(args)
    problems = check_config(args.config, check_mapping=load_mapping)
    if problems:
        print(format_problems(problems), file=sys.stderr)
        return 1
    settings = load_settings(args.config)
    counts = {
        "channels": len(settings.channels),
        "routes": len(settings.routes),
        "destinations": len(settings.destinations),
    }
    print(t("check_ok", file=args.config, **counts))
    return 0


def cmd_mapping_test(args: argparse.Namespace) -> int:
    from transforms.mapping.testing import find_test_files, format_results, run_test_file

    files = find_test_files([Path(p) for p in args.paths])
    if not files:
        print(t("no_mapping_tests", paths=" ".join(args.paths)), file=sys.stderr)
        return 2
    results = [r for f in files for r in run_test_file(f)]
    print(format_results(results))
    return 0 if all(r.passed for r in results) else 1


def cmd_mapping_explain(args: argparse.Namespace) -> int:
    from engine.runtime import EngineRuntime
    from engine.settings import load_settings
    from transforms.mapping.explain import explain, format_explanation

    settings = load_settings(args.config)
    router = EngineRuntime(settings).router()
    encoding = settings.channels[args.channel].encoding if args.channel in settings.channels else "utf-8"
    result = explain(Path(args.file).read_bytes(), router, args.channel, encoding)
    print(format_explanation(result))
    return 0


def cmd_schema_export(args: argparse.Namespace) -> int:
    from transforms.records.schema import export_schemas

    for path in export_schemas(Path(args.directory)):
        print(path)
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from engine.reference import render

    text = render()
    path = Path(args.output)
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if args.check:
        if current != text:
            print(f"{path} is out of date: run `mch-engine docs`", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(path)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from engine.check import check_config, format_problems
    from engine.runtime import ALL_ROLES, EngineRuntime
    from engine.settings import load_settings
    from transforms.mapping import load_mapping

    problems = check_config(args.config, check_mapping=load_mapping)
    if problems:
        print(format_problems(problems), file=sys.stderr)
        return 2
    settings = load_settings(args.config)
    roles = frozenset(args.role) if args.role else ALL_ROLES
    # The listener and the journal writer get the GIL back sooner from the transform thread:
    # ACK latency under load drops, throughput does not suffer (docs/benchmarks.md).
    sys.setswitchinterval(0.001)
    return asyncio.run(_serve(EngineRuntime(settings, roles, partitions=args.partitions, shard=args.shard)))


def _shard(text: str) -> tuple[int, int]:
    """`I/N` with 0 <= I < N."""
    index, _, total = text.partition("/")
    try:
        i, n = int(index), int(total)
    except ValueError:
        raise argparse.ArgumentTypeError(t("bad_shard", value=text)) from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(t("bad_shard", value=text))
    return i, n


def _partition_list(text: str) -> frozenset[int]:
    """`0,2` or `0-3` (or both, comma-separated)."""
    out: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            low, _, high = part.partition("-")
            out.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(t("bad_partitions", value=text)) from None
    if not out:
        raise argparse.ArgumentTypeError(t("bad_partitions", value=text))
    return frozenset(out)


async def _serve(runtime: Any) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
    except BaseException:
        await runtime.stop()
        raise
    loop.add_signal_handler(signal.SIGHUP, runtime.reloader.on_signal)  # engine/live_reload.py
    listening = ", ".join(f"{name} → {port}" for name, port in runtime.ports().items()) or "-"
    print(t("engine_running", channels=listening), flush=True)
    await stop.wait()
    print(t("engine_stopping"), flush=True)
    try:
        # Bounded: in-flight ACKs and queued transforms get STOP_GRACE seconds; whatever is
        # left is in the journal and is re-driven at the next start.
        await asyncio.wait_for(runtime.stop(), STOP_GRACE)
    except TimeoutError:
        print(t("stop_timeout", seconds=STOP_GRACE), file=sys.stderr, flush=True)
        return 1
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from engine.send_command import run_send

    host, _, port = args.to.rpartition(":")
    if not host or not port.isdigit():
        print(t("bad_address"), file=sys.stderr)
        return 2
    return run_send(
        args.files,
        host.strip("[]"),
        int(port),
        encoding=args.encoding,
        concurrency=args.concurrency,
        repeat=args.repeat,
        quiet=args.quiet,
        timeout=args.timeout,
    )


def cmd_messages_list(args: argparse.Namespace) -> int:
    from engine.database import make_engine
    from engine.listing import list_messages
    from engine.settings import load_settings

    settings = load_settings(args.config)
    engine = make_engine(settings.engine.database)
    rows = list_messages(
        engine, channel=args.channel, status=args.status, limit=args.limit, reused_only=args.reused
    )
    _print_rows(rows, args.json, _message_line)
    return 0


def cmd_records_list(args: argparse.Namespace) -> int:
    from engine.database import make_engine
    from engine.listing import list_records, resolve_person
    from engine.settings import load_settings

    settings = load_settings(args.config)
    urls = {d.database for d in settings.destinations.values()} or {settings.engine.database}
    count = 0
    for url in sorted(u for u in urls if u):
        engine = make_engine(url)
        person = (resolve_person(engine, args.person) or args.person) if args.person else None
        rows = list_records(engine, record_type=args.record_type, person=person, limit=args.limit)
        count += _print_rows(rows, args.json, _record_line, report_empty=False)
    if not count and not args.json:
        print(t("nothing_found"))
    return 0


def cmd_records_timeline(args: argparse.Namespace) -> int:
    from engine.database import make_engine
    from engine.listing import resolve_person, timeline
    from engine.settings import load_settings

    settings = load_settings(args.config)
    url = (
        next(iter(settings.destinations.values())).database
        if settings.destinations
        else settings.engine.database
    )
    engine = make_engine(url)
    key = resolve_person(engine, args.person)
    if key is None:
        print(t("person_unknown", person=args.person), file=sys.stderr)
        return 1
    _print_rows(timeline(engine, key), args.json, _timeline_line)
    return 0


def _timeline_line(r: dict[str, Any]) -> str:
    when = (r["event_time"] or "")[:10] or "----------"
    who = f"{r['person_name'] or r['person_key']}" + ("（子女）" if r["is_child"] else "")
    return f"{when}  {r['stage']:<10} {r['record_type']:<22} {who:<14} {_summary(r['record'] or {})}"


def _summary(rec: dict[str, Any]) -> str:
    coded = rec.get("order") or rec.get("exam") or rec.get("conclusion") or rec.get("mode") or {}
    text = (coded.get("display") or coded.get("code") or "") if isinstance(coded, dict) else str(coded)
    obs = rec.get("observations")
    if isinstance(obs, list):
        text = f"{text} ({len(obs)} observations)".strip()
    return str(text)


def _print_rows(rows: Iterable[dict[str, Any]], as_json: bool, line: Any, report_empty: bool = True) -> int:
    n = 0
    for row in rows:
        n += 1
        if as_json:
            print(json.dumps(row, ensure_ascii=False, default=str))
        else:
            print(line(row))
    if not n and report_empty and not as_json:
        print(t("nothing_found"))
    return n


def _message_line(r: dict[str, Any]) -> str:
    deliveries = ",".join(f"{d['destination']}:{d['status']}" for d in r["deliveries"])
    extra = f"  dup={r['duplicates']}" if r["duplicates"] else ""
    extra += "  control_id_reused" if r["control_id_reused"] else ""
    err = f"  {r['error']}" if r["error"] else ""
    kind, control, ack = r["message_type"] or "-", r["control_id"] or "-", r["ack_code"] or "-"
    return (
        f"{r['id']:>7}  {r['received_at'][:19]}  {r['channel']:<12} {kind:<18} {control:<26} "
        f"{r['status']:<9} {ack:<2} {deliveries}{extra}{err}"
    )


def _record_line(r: dict[str, Any]) -> str:
    rec = r["record"] or {}
    summary = (rec.get("person") or {}).get("name") if r["record_type"] == "Person" else _summary(rec)
    return f"{r['record_type']:<16} {r['record_id']:<48} {r['person_key'] or '-':<36} {summary}"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
