"""`mch-engine mapping test|explain|run`: the interface engineer's tools for mapping files.

    mapping test    [PATH…]                                   the *_test.yaml beside the mappings
    mapping explain FILE.hl7 [--channel C] [--config routes.yaml]   which fields could fill what
    mapping run     FILE.hl7 [--channel C] [--config routes.yaml]   the records, as JSON

`explain` never prints a value of the message (patient data on a screen ends up in
tickets and chat); `run` prints the records and the values route conditions saw, for the
engineer's own test file, on their terminal, and never logs them. Both read the file as
the engine reads it on that channel (engine/mapping_trial.py). Exit codes: 0 mapped,
1 unmapped, rejected or failed (test: a case failed), 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from core.i18n import t
from engine import logging as engine_logging

DEFAULT_CONFIG = "routes.yaml"


def add_commands(sub: Any) -> None:
    """Register `mapping …` on the `mch-engine` parser's subcommands."""
    mapping = sub.add_parser("mapping", help=t("help_cmd_mapping")).add_subparsers(metavar="ACTION")
    mt = mapping.add_parser("test", help=t("help_cmd_mapping_test"))
    mt.add_argument("paths", nargs="*", default=["mappings"], metavar="PATH")
    mt.set_defaults(func=cmd_mapping_test)
    for name, func in (("explain", cmd_mapping_explain), ("run", cmd_mapping_run)):
        p = mapping.add_parser(name, help=t(f"help_cmd_mapping_{name}"))
        p.add_argument("file", metavar="FILE.hl7")
        p.add_argument("--channel", help="as received on this channel (default: the first in routes.yaml)")
        p.add_argument("--config", default=DEFAULT_CONFIG, help="routes.yaml to use (default ./routes.yaml)")
        p.set_defaults(func=func)


def cmd_mapping_test(args: argparse.Namespace) -> int:
    from transforms.mapping.testing import find_test_files, run_test_file

    files = find_test_files([Path(p) for p in args.paths])
    if not files:
        print(t("no_mapping_tests", paths=" ".join(args.paths)), file=sys.stderr)
        return 2
    results = [r for f in files for r in run_test_file(f)]
    for r in results:
        print(f"{t('test_ok') if r.passed else t('test_fail')} {r.location()}: {r.name}")
        for problem in r.problems:
            print(f"       {problem}")
    failed = sum(1 for r in results if not r.passed)
    print(t("test_summary", passed=len(results) - failed, failed=failed))
    return 1 if failed else 0


def cmd_mapping_explain(args: argparse.Namespace) -> int:
    from transforms.mapping.explain import explain_fields, record_types

    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    trials, channel, default = loaded
    for n, trial in enumerate(trials, 1):
        print(_header(args.file, channel, default, n, trial))
        _print_routing(trial, channel, with_values=False)
        if trial.routes:
            print(t("trial_may_make", types=", ".join(record_types([r.mapping for r in trial.routes]))))
        if trial.status == "failed":
            print(t("trial_failed_explain"))
        if trial.message is not None:
            print(t("explain_fields"))
            for line in explain_fields(trial.message, [r.mapping for r in trial.routes]):
                print(_field_line(line))
    return 0 if trials and all(trial.mapped for trial in trials) else 1


def cmd_mapping_run(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    trials, channel, default = loaded
    bad = 0
    for n, trial in enumerate(trials, 1):
        print(_header(args.file, channel, default, n, trial), file=sys.stderr)
        _print_routing(trial, channel, with_values=True, out=sys.stderr)
        if trial.status == "failed":
            print(t("trial_failed", error=trial.error), file=sys.stderr)
        bad += not trial.mapped
    document = {"file": args.file, "channel": channel, "messages": [_message_json(tr) for tr in trials]}
    print(json.dumps(document, ensure_ascii=False, indent=2, default=str))
    records = sum(len(trial.envelopes) for trial in trials)
    summary = t("run_summary_bad", bad=bad, n=len(trials)) if bad or not trials else None
    print(summary or t("run_summary_ok", n=len(trials), records=records), file=sys.stderr)
    return 1 if bad or not trials else 0


# --------------------------------------------------------------------------- shared


def _load(args: argparse.Namespace) -> tuple[list[Any], str, bool] | int:
    """The file's messages as tried on the channel, or an exit code (2) after saying why."""
    from core.settings import load_settings
    from engine.mapping_trial import try_file
    from engine.runtime import EngineRuntime

    if not os.environ.get("MCH_LOG_LEVEL"):  # the warning a failed mapping logs is said on screen
        engine_logging.configure("error")
    settings = load_settings(args.config)
    channels = list(settings.channels)
    channel = args.channel or (channels[0] if channels else "")
    if channel not in settings.channels:
        print(t("trial_unknown_channel", channel=channel, known=", ".join(channels) or "-"), file=sys.stderr)
        return 2
    try:
        raw = Path(args.file).read_bytes()
    except OSError as exc:
        print(t("cannot_read", file=args.file, error=exc.strerror), file=sys.stderr)
        return 2
    router = EngineRuntime(settings).router()
    return try_file(raw, settings, router, channel), channel, args.channel is None


def _header(file: str, channel: str, default: bool, n: int, trial: Any) -> str:
    return t(
        "trial_header",
        file=file,
        channel=channel,
        default=t("trial_default_channel") if default else "",
        n=n,
        type=trial.message_type or "-",
        control=trial.control_id or "-",
        encoding=trial.encoding or "-",
    )


def _print_routing(trial: Any, channel: str, *, with_values: bool, out: Any = None) -> None:
    """Which route took the message, or why none did: no route for its type on this channel,
    or routes for its type whose conditions failed (each named with its condition)."""
    out = out or sys.stdout
    kind = trial.message_type or "-"
    if trial.status == "rejected":
        print(t("trial_rejected", reason=trial.error), file=out)
        return
    if trial.message is None:
        return
    failed = [c for c in trial.candidates if not c.holds]
    if trial.routes:
        print(t("trial_route", routes=", ".join(r.name for r in trial.routes)), file=out)
        if trial.status != "failed" and not trial.envelopes:
            print(t("trial_no_record", routes=", ".join(r.name for r in trial.routes)), file=out)
        return  # the routes not taken are in `run`'s JSON
    if failed:
        print(t("trial_conditions_failed", n=len(failed), type=kind, channel=channel), file=out)
    else:
        print(t("trial_no_route", type=kind, channel=channel), file=out)
        if trial.other_channels:
            routes = ", ".join(trial.other_channels)
            print(t("trial_other_channels", type=kind, routes=routes, channel=channel), file=out)
    for check in failed:
        if with_values:
            seen = ", ".join(f"{path}={_shown(value)}" for path, value in trial.seen(check).items())
            text = t("trial_condition_seen", route=check.route.name, condition=check.condition, seen=seen)
        else:
            text = t("trial_condition", route=check.route.name, condition=check.condition)
        print(text, file=out)


def _shown(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "∅"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list) else str(value)


def _field_line(line: Any) -> str:
    name = line.name or (t("explain_site_field") if line.field.startswith("Z") else t("explain_not_standard"))
    times = t("explain_times", n=line.count) if line.count > 1 else ""
    head = f"{line.field:<8} {name} {times}".rstrip()
    if not line.targets:
        return f"{head}  → {t('explain_not_mapped')}"
    parts = [head]
    for item in line.targets:
        target = item.target
        terms = [t("explain_if", condition=c) for c in target.conditions]
        if target.obx_code is not None:
            terms.insert(0, t("explain_obx", code=target.obx_code))
        if target.table is not None:
            terms.append(t("explain_table", table=target.table, listed=item.listed, count=line.count))
        note = f"  [{'; '.join(terms)}]" if terms else ""
        parts.append(f"    {target.source:<12} → {target.field}{note}")
    return "\n".join(parts)


def _message_json(trial: Any) -> dict[str, Any]:
    status = "mapped" if trial.mapped else {"routed": "unmapped", "unrouted": "unmapped"}.get(trial.status)
    return {
        "message_type": trial.message_type,
        "control_id": trial.control_id,
        "encoding": trial.encoding,
        "status": status or trial.status,
        "routes": [r.name for r in trial.routes],
        "candidates": [
            {
                "route": c.route.name,
                "when": c.condition,
                "holds": c.holds,
                **({} if c.holds else {"saw": trial.seen(c)}),
            }
            for c in trial.candidates
        ],
        "error": trial.error,
        "records": [_record_json(trial, envelope) for envelope in trial.envelopes],
    }


def _record_json(trial: Any, envelope: dict[str, Any]) -> dict[str, Any]:
    record = dict(envelope["record"])
    if isinstance(record.get("source"), dict):  # a trial has no journal id
        record["source"] = {k: v for k, v in record["source"].items() if k != "journal_id"}
    return {
        "route": envelope["route"],
        "to": trial.destinations.get(envelope["record_id"], []),
        "record_type": envelope["record_type"],
        "record_id": envelope["record_id"],
        "event_time": envelope["event_time"],
        "record": record,
    }
