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
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from core import i18n
from core.errors import ConfigError, ConfigErrors, StartupError
from core.i18n import t
from core.masking import mask_text
from engine import logging as engine_logging
from engine.backup_command import add_commands as add_backup_commands
from engine.channel_command import add_commands as add_channel_commands
from engine.cli_language import LanguageError, take_language, use_argparse_texts
from engine.db_check import add_commands as add_db_check_commands
from engine.deadletter_cli import add_commands as add_deadletter_commands
from engine.listing_commands import add_commands as add_listing_commands
from engine.mapping_cli import add_commands as add_mapping_commands
from engine.reload_command import add_commands as add_reload_commands
from engine.reprocess_command import add_command as add_reprocess_command
from engine.retention_command import add_commands as add_retention_commands
from engine.shutdown import DEFAULT_STOP_GRACE, HARD_STOP_MARGIN, on_stop_signals, start_watchdog
from engine.wechat_cli import add_commands as add_wechat_commands
from monitors.status_command import add_commands as add_status_commands
from monitors.web.users_cli import add_commands as add_users_commands

DEFAULT_CONFIG = "routes.yaml"
# Commands other than `run` log warnings and errors only, unless MCH_LOG_LEVEL says otherwise.
COMMAND_LOG_LEVEL = "warning"
LOG_LEVELS = ["debug", "info", "warning", "error"]


def main(argv: Sequence[str] | None = None) -> int:
    i18n.set_language(os.environ.get("MCH_LANG", "zh"))
    try:
        lang, rest = take_language(sys.argv[1:] if argv is None else argv)
    except LanguageError as exc:
        print(exc, file=sys.stderr)
        return 2
    i18n.set_language(lang or os.environ.get("MCH_LANG", "zh"))
    use_argparse_texts()
    parser = build_parser()
    args = parser.parse_args(rest)
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
        detail = mask_text(" ".join(str(exc).split()))[:300]
        print(t("command_failed", error=error, detail=detail), file=sys.stderr)
        return 1


def _log_level(args: argparse.Namespace) -> str:
    """`run --log-level`, else MCH_LOG_LEVEL, else warnings and errors only."""
    level = getattr(args, "log_level", None) or os.environ.get("MCH_LOG_LEVEL", "") or COMMAND_LOG_LEVEL
    return level.lower() if level.lower() in LOG_LEVELS else COMMAND_LOG_LEVEL


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mch-engine",
        description=i18n.t("help_engine"),
    )
    p.add_argument(
        "--lang",
        choices=["zh", "en"],
        help=i18n.t("help_lang"),
    )
    sub = p.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help=i18n.t("help_cmd_run"))
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
    run.add_argument(
        "--summary-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between two summary log lines (default 60)",
    )
    run.add_argument(
        "--stop-grace",
        type=float,
        default=DEFAULT_STOP_GRACE,
        metavar="SECONDS",
        help="seconds a stop (SIGTERM, SIGPWR, Ctrl+C) waits for in-flight work; the process "
        f"exits at most {HARD_STOP_MARGIN:.0f} s later whatever happens (default {DEFAULT_STOP_GRACE:.0f})",
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help=i18n.t("help_cmd_check"))
    _config_arg(check)
    check.add_argument(
        "--diff", action="store_true", help="also show what `reload` would change in the running engine"
    )
    check.add_argument("--types", action="store_true", help="list the channel and destination types known")
    check.set_defaults(func=cmd_check)
    add_reload_commands(sub)
    add_channel_commands(sub)

    add_mapping_commands(sub)
    add_db_check_commands(sub)

    schema = sub.add_parser("schema", help=i18n.t("help_cmd_schema")).add_subparsers(metavar="ACTION")
    se = schema.add_parser("export", help=i18n.t("help_cmd_schema_export"))
    se.add_argument("directory", metavar="DIR")
    se.set_defaults(func=cmd_schema_export)

    add_deadletter_commands(sub)
    add_status_commands(sub, _config_arg)
    add_users_commands(sub, _config_arg)
    add_reprocess_command(sub)
    add_wechat_commands(sub)

    docs = sub.add_parser("docs", help=i18n.t("help_cmd_docs"))
    docs.add_argument("--output", default="docs/routes.md")
    docs.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    docs.set_defaults(func=cmd_docs)

    send = sub.add_parser("send", help=i18n.t("help_cmd_send"))
    send.add_argument("files", nargs="+", metavar="FILE")
    send.add_argument("--to", required=True, metavar="HOST:PORT")
    send.add_argument("--encoding", help="charset to send in (e.g. gb18030); default: bytes as they are")
    send.add_argument("--concurrency", type=int, default=1, help="connections at once (default 1)")
    send.add_argument("--repeat", type=int, default=1, help="send everything N times, MSH-10 made unique")
    send.add_argument("--quiet", action="store_true", help="print only problems and the summary")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each ACK")
    send.add_argument("--tls", action="store_true", help="MLLP over TLS (implied by --tls-ca/--tls-cert)")
    send.add_argument(
        "--tls-ca", metavar="FILE", help="CA to check the engine's certificate (default: system)"
    )
    send.add_argument("--tls-cert", metavar="FILE", help="client certificate, for a channel with client_ca")
    send.add_argument("--tls-key", metavar="FILE", help="key of the client certificate")
    send.add_argument(
        "--tls-name", metavar="NAME", help="name on the engine's certificate (default: the host)"
    )
    send.set_defaults(func=cmd_send)

    add_listing_commands(sub)
    add_backup_commands(sub)
    add_retention_commands(sub)
    return p


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG, help="routes.yaml to use (default ./routes.yaml)")


# --------------------------------------------------------------------------- commands


def cmd_check(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from engine.check import check_config, format_problems
    from transforms.mapping import load_mapping

    if args.types:
        from engine.connector_types import known_types_text

        print(known_types_text())
        return 0
    if args.diff:
        from engine.reload_command import cmd_check_diff

        return cmd_check_diff(args)
    problems = check_config(args.config, check_mapping=load_mapping)
    _warn_literal_passwords(args.config)
    if problems:
        print(format_problems(problems, localized=True), file=sys.stderr)
        return 1
    settings = load_settings(args.config)
    counts = {
        "channels": len(settings.channels),
        "routes": len(settings.routes),
        "destinations": len(settings.destinations),
    }
    print(t("check_ok", file=args.config, **counts))
    return 0


def _warn_literal_passwords(config: str) -> None:
    """A password written in routes.yaml: a warning at its line, never the password."""
    from engine.literal_secrets import literal_password_warnings

    for warning in literal_password_warnings(config):
        print(warning, file=sys.stderr)


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
    from core.settings import load_settings
    from engine.check import check_config, format_problems
    from engine.reachability import probe_services
    from engine.runtime import ALL_ROLES, EngineRuntime
    from transforms.mapping import load_mapping

    problems = check_config(args.config, check_mapping=load_mapping)
    _warn_literal_passwords(args.config)
    if problems:
        print(format_problems(problems, localized=True), file=sys.stderr)
        return 2
    settings = load_settings(args.config)
    probe_services(settings)  # an unreachable database or broker: one line, exit 2
    roles = frozenset(args.role) if args.role else ALL_ROLES
    # The listener and the journal writer get the GIL back sooner from the transform thread:
    # ACK latency under load drops, throughput does not suffer (docs/benchmarks.md).
    sys.setswitchinterval(0.001)
    runtime = EngineRuntime(settings, roles, partitions=args.partitions, shard=args.shard)
    return asyncio.run(_serve(runtime, args.summary_interval, args.stop_grace))


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


async def _serve(runtime: Any, summary_interval: float = 60.0, grace: float = DEFAULT_STOP_GRACE) -> int:
    from monitors.process_monitor import ProcessMonitor
    from monitors.run_banner import backend_lines, listeners

    stop = asyncio.Event()
    received: list[str] = []
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        received.append(name)
        stop.set()

    on_stop_signals(loop, on_signal)  # SIGINT, SIGTERM, SIGPWR (engine/shutdown.py)
    monitor = ProcessMonitor(runtime, summary_interval)
    runtime.on_step_down = stop.set  # leadership lost (engine/leadership.py): stop, exit 3
    try:
        await runtime.start()
        await monitor.start()
    except BaseException:
        await monitor.stop()
        await runtime.stop()
        raise
    loop.add_signal_handler(signal.SIGHUP, runtime.reloader.on_signal)  # engine/live_reload.py
    print(t("engine_running", channels=listeners(runtime)), flush=True)
    print("\n".join(backend_lines(runtime, monitor.http.port if monitor.http else None)), flush=True)
    await stop.wait()
    watchdog = start_watchdog(grace)
    structlog.get_logger("engine.cli").info(
        "engine_stopping", signal=received[0] if received else "leadership_lost", grace_seconds=grace
    )
    print(t("engine_stopping"), flush=True)
    try:
        # Bounded: listeners close first, in-flight ACKs and queued transforms share the grace;
        # whatever is left is in the journal and is re-driven at the next start.
        await asyncio.wait_for(_stop_all(runtime, monitor, grace), grace)
    except TimeoutError:
        print(t("stop_timeout", seconds=grace), file=sys.stderr, flush=True)
        return 1
    watchdog.cancel()
    return int(runtime.exit_code)


async def _stop_all(runtime: Any, monitor: Any, grace: float) -> None:
    """The runtime first (its listeners close at once), then the HTTP side."""
    await runtime.stop(grace)
    await monitor.stop()


def cmd_send(args: argparse.Namespace) -> int:
    from engine.send_command import run_send, tls_for_send

    host, _, port = args.to.rpartition(":")
    if not host or not port.isdigit():
        print(t("bad_address"), file=sys.stderr)
        return 2
    try:
        tls = tls_for_send(args.tls, args.tls_ca, args.tls_cert, args.tls_key)
    except ValueError as exc:
        print(t("send_tls_unusable", error=exc), file=sys.stderr)
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
        tls=tls,
        server_name=args.tls_name,
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
