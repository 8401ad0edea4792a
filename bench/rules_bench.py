"""`python -m bench.rules_bench`: what the clinical rules cost the record store, SQLite and PostgreSQL.

After each stored bundle the record store runs the shipped rule tables in the same
transaction (channels/record_store/derive.py): every woman a bundle touched is read back
whole and her suggested gradings and PMTCT cases are derived again. This measures the
store alone, as bench/store_bench.py does, with and without the rules, on a feed of
pregnancies like a district hospital's: each woman registers, comes to ~8 antenatal
visits, has ~10 lab reports (blood routine, OGTT, infection screen with a few percent
positive), one or two ultrasounds, a delivery and a newborn naming her as mother; the
envelopes of all women are interleaved in time order, as a day's feed brings them.
Ratios are of the same command's runs; figures only, never a verdict.
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from bench.report import load_average, machine
from bench.sources import write_section
from bench.stack import PG_URL, REPO, reachable
from bench.store_bench import BACKENDS, _env, fresh_database, records_per_second
from channels.record_store.derive import Derivations
from channels.record_store.store import RecordStore
from transforms.rules.derivers import DERIVED_TYPES, load_derivers
from transforms.validate import canonical

RULE_TABLES = (REPO / "mappings/rules/risk_five_colour.yaml", REPO / "mappings/rules/pmtct.yaml")
BATCH_SIZES = (1, 100)
BEGIN, END = "<!-- bench.rules_bench: begin -->", "<!-- bench.rules_bench: end -->"
POSITIVE = {"HIVAB": (100, 3), "TPPA": (50, 2), "HBSAGQ": (20, 1)}  # woman n is positive when n % a == b
_FIRST_LMP = date(2023, 6, 1)
_VISIT_WEEKS = (16, 20, 24, 28, 32, 35, 37, 39)
_BLOOD_WEEKS = (12, 16, 20, 28, 32, 36)


def pregnancies(women: int, seed: int = 12) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Envelopes of `women` pregnancies in arrival order, and how many women screened positive by code."""
    rng = random.Random(seed)
    events: list[tuple[datetime, str, str, dict[str, Any]]] = []
    positive: Counter[str] = Counter()
    for n in range(women):
        events += _pregnancy(n, rng, positive)
    events.sort(key=lambda e: (e[0], e[2]))
    out = []
    for jid, (at, kind, rid, record) in enumerate(events, start=1):
        out.append(_env(kind, rid, canonical(kind, rid, record), at.isoformat(), jid))
    return out, positive


def _pregnancy(
    n: int, rng: random.Random, positive: Counter[str]
) -> list[tuple[datetime, str, str, dict[str, Any]]]:
    """One woman's records, each with the time the feed brings it."""
    lmp = _FIRST_LMP + timedelta(days=rng.randrange(180))
    born = date(1988 + n % 12, 1 + n % 12, 1 + n % 28)
    mother = {
        "id_card": _id_card(born, n),
        "his_id": f"{n:010d}",
        "his_system": "HIS",
        "name": f"孕妇{n}",
    }
    me = {"his_id": mother["his_id"], "his_system": "HIS"}

    def at(week: float, hour: int = 9) -> datetime:
        day = lmp + timedelta(days=round(week * 7))
        return datetime(day.year, day.month, day.day, hour, rng.randrange(60), tzinfo=UTC)

    out: list[tuple[datetime, str, str, dict[str, Any]]] = []
    reg_week = rng.choice((8, 10, 11, 12))
    out.append(
        (
            at(reg_week),
            "PregnancyRegistration",
            f"reg:{n}",
            {
                "person": {**mother, "birth_date": born.isoformat()},
                "registration_date": at(reg_week).date().isoformat(),
                "lmp": lmp.isoformat(),
                "height": {"value": rng.randint(150, 172), "unit": "cm"},
                "weight": {"value": rng.randint(45, 75), "unit": "kg"},
                "blood_pressure": f"{rng.randint(100, 128)}/{rng.randint(62, 84)}",
                "risk": {"colour": "G"},
            },
        )
    )
    anaemic = rng.random() < 0.15
    hypertensive = rng.random() < 0.06
    for i, week in enumerate(_VISIT_WEEKS):
        high = hypertensive and week >= 28
        out.append(
            (
                at(week, 10),
                "PrenatalVisit",
                f"pv:{n}:{i}",
                {
                    "person": me,
                    "visit_date": at(week).date().isoformat(),
                    "hb": {
                        "value": rng.randint(95, 108) if anaemic else rng.randint(112, 135),
                        "unit": "g/L",
                    },
                    "blood_pressure": f"{rng.randint(142, 160) if high else rng.randint(100, 130)}/"
                    f"{rng.randint(92, 100) if high else rng.randint(62, 85)}",
                    "weight": {"value": 55 + week // 3, "unit": "kg"},
                },
            )
        )
    for i, week in enumerate(_BLOOD_WEEKS):
        hgb = rng.randint(92, 108) if anaemic else rng.randint(112, 135)
        out.append(_lab(at(week, 15), f"lab:{n}:cbc{i}", me, [("HGB", hgb), ("PLT", rng.randint(120, 320))]))
    glucose = (5.3, 10.5, 8.9) if rng.random() < 0.12 else (4.5, 7.8, 6.4)
    ogtt = [(code, glucose[i]) for i, code in enumerate(("GLU0", "GLU1", "GLU2"))]
    out.append(_lab(at(25, 15), f"lab:{n}:ogtt", me, ogtt))
    for code, (every, which) in POSITIVE.items():  # 1%, 2% and 5% of women; one each among the first 4
        hit = n % every == which
        positive[code] += hit
        out.append(_lab(at(reg_week, 16), f"lab:{n}:{code}", me, [(code, "阳性" if hit else "阴性")]))
    for i, week in enumerate((12, 22) if rng.random() < 0.7 else (22,)):
        imaging = {"person": me, "exam": {"display": "产科彩超"}, "modality": "US", "fetus_count": 1}
        out.append((at(week, 11), "ImagingReport", f"us:{n}:{i}", {**imaging, "impression": "宫内单活胎"}))
    birth = at(rng.choice((37.5, 38.5, 39, 39.5, 40, 40.5)), 3)
    out.append(
        (
            birth + timedelta(hours=2),
            "DeliveryRecord",
            f"del:{n}",
            {"person": me, "delivery_time": birth.isoformat()},
        )
    )
    baby = {"his_id": f"B{n:09d}", "his_system": "HIS", "name": f"孕妇{n}之{'子' if n % 2 else '女'}"}
    newborn = {
        "person": baby,
        "mother": mother,
        "birth_time": birth.isoformat(),
        "sex": "1" if n % 2 else "2",
        "birth_weight": {"value": rng.randint(2600, 4100), "unit": "g"},
    }
    out.append((birth + timedelta(hours=3), "NewbornRecord", f"nb:{n}", newborn))
    return out


def _lab(
    at: datetime, rid: str, person: dict[str, Any], results: list[tuple[str, Any]]
) -> tuple[datetime, str, str, dict[str, Any]]:
    obs = [
        {
            "code": code,
            "value_type": "NM" if isinstance(v, int | float) else "ST",
            "value": str(v),
            "status": "F",
        }
        for code, v in results
    ]
    return (at, "LabResult", rid, {"person": person, "reported_at": at.isoformat(), "observations": obs})


def _id_card(born: date, n: int) -> str:
    """A valid 18-digit 身份证号 (Chongqing Yubei, female sequence) with its check character."""
    body = f"500112{born:%Y%m%d}{(2 * n) % 1000:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(c) * w for c, w in zip(body, weights, strict=True))
    return body + "10X98765432"[total % 11]


def derived_counts(engine: Engine) -> Counter[str]:
    """Derived records of the measured women (the warm-up's own persons left out), by type."""
    query = text(
        "select record_type, count(*) from records where source_channel = 'rules' and person_key in "
        "(select person_key from records where record_id not like 'warm:%' and source_channel <> 'rules') "
        "group by record_type"
    )
    with engine.connect() as conn:
        return Counter({kind: int(n) for kind, n in conn.execute(query)})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.rules_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--women", type=int, default=150, help="pregnancies in the feed (150, ~3,500 envelopes)")
    p.add_argument(
        "--repeat", type=int, default=3, help="runs per point, each on a fresh database; medians (3)"
    )
    p.add_argument("--batch", type=int, nargs="+", default=list(BATCH_SIZES), help="bundle sizes (1 100)")
    p.add_argument("--backend", choices=BACKENDS, nargs="+", default=list(BACKENDS), help="both by default")
    p.add_argument("--smoke", action="store_true", help="4 women, one run: checks the harness")
    p.add_argument("--output", type=Path, default=None, help="write the table as a section of this page")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.women, args.repeat = 4, 1
    if args.women < 1 or args.repeat < 1 or min(args.batch) < 1:
        print("--women, --repeat and --batch must be at least 1", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    command = " ".join(["python", "-m", "bench.rules_bench", *map(shlex.quote, argv)])
    envelopes, positive = pregnancies(args.women)
    kinds = Counter(env["record_type"] for env in envelopes)
    with_rules = Derivations(load_derivers(RULE_TABLES))
    stores = {"without": RecordStore, "with": lambda engine: RecordStore(engine, with_rules)}
    print(f"record store with and without the rules, {args.women} women, {len(envelopes):,} envelopes")
    print("feed: " + ", ".join(f"{k} {n:,}" for k, n in kinds.most_common()))
    pg = make_url(PG_URL)
    rows: list[str] = []
    skipped: list[str] = []
    made: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="rules-bench-") as tmp:
        for backend in args.backend:
            if backend == "postgresql" and not reachable((pg.host or "127.0.0.1", pg.port or 5432)):
                skipped.append(f"{backend}: not reachable at {pg.host}:{pg.port or 5432}, not measured")
                print(skipped[-1], flush=True)
                continue
            for batch in args.batch:
                rates: dict[str, list[float]] = {"without": [], "with": []}
                for _ in range(args.repeat):
                    for name, make_store in stores.items():
                        with fresh_database(backend, Path(tmp)) as engine:
                            rates[name].append(records_per_second(engine, envelopes, batch, make_store))
                            if name == "with":
                                made = derived_counts(engine)
                        print(
                            f"{backend} batch {batch} {name} rules: {rates[name][-1]:,.0f} records/s",
                            flush=True,
                        )
                bare, ruled = statistics.median(rates["without"]), statistics.median(rates["with"])
                rows.append(f"| {backend} | {batch} | {bare:,.0f} | {ruled:,.0f} | {ruled / bare:.2f}× |")
    table = [
        "| backend | batch | records/s without rules | with rules | with ÷ without |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ]
    check = ", ".join(f"{kind} {made[kind]:,}" for kind in DERIVED_TYPES)
    screened = ", ".join(f"{code} {positive[code]}" for code in POSITIVE)
    print()
    print("\n".join(table))
    print(f"\nderived records (last run with rules): {check}; women screened positive: {screened}")
    for line in skipped:
        print(line)
    if args.output is not None:
        page = section(table, args, command, started, len(envelopes), check, screened, skipped)
        write_section(args.output, page, (BEGIN, END))
        print(f"\nwritten to {args.output}")
    return 0 if rows and sum(made.values()) else 1


def section(
    table: list[str],
    args: argparse.Namespace,
    command: str,
    started: datetime,
    count: int,
    check: str,
    screened: str,
    skipped: list[str],
) -> str:
    """The page section: what was measured, how, on what, the table and the derived records."""
    m = machine()
    lines = [
        BEGIN,
        "## Record store: the cost of the clinical rules",
        "",
        f"`{command}`, {started:%Y-%m-%d %H:%M} UTC, git revision {m['revision']}; "
        f"{m['cpu']}, {m['nproc']} cores, {m['memory']}, Python {m['python']}; load average before: "
        f"{load_average()}.",
        "",
        f"The record store alone (no bus, no journal; bench/store_bench.py's fresh database and clock) "
        f"stores a feed of {args.women} pregnancies ({count:,} envelopes: each woman's registration, 8 "
        "antenatal visits with Hb and blood pressure, 10 lab reports — blood routine HGB/PLT, OGTT, "
        "HIV/syphilis/HBsAg screen — one or two ultrasounds, a delivery and a newborn naming her as "
        "mother, all women interleaved in time order) in bundles of `batch`, one transaction each. "
        "`without rules` is `RecordStore(engine)`; `with rules` runs the shipped tables "
        "(mappings/rules/risk_five_colour.yaml and pmtct.yaml) after each bundle, reading every woman "
        f"the bundle touched back whole. Medians of {args.repeat} runs, each on a fresh database.",
        "",
        *table,
        "",
        f"Derived records of the last run with rules: {check} (women screened positive: {screened}).",
        "",
        "Reading: the rules cost most where bundles are large: each bundle re-reads and re-derives every "
        "woman it touched, and a day's interleaved feed touches a different woman with almost every "
        "record, so batching speeds the store up far less with rules than without. The work per record "
        "grows with the length of her pregnancy's record (here about 23 records each), since the whole "
        "pregnancy is graded again. The end-to-end figures above were measured before the rules existed.",
        *[f"{line}." for line in skipped],
        "",
        "Run again with `make bench-rules BENCH_ARGS='--output docs/benchmarks.md'` (PostgreSQL on "
        "127.0.0.1, `MCH_BENCH_PG_URL` to change it); without `--output` it only prints. `--women N`, "
        "`--repeat R`, `--batch 1 100`, `--backend sqlite postgresql`; `--smoke` checks the harness in "
        "seconds (`tests/unit/bench/test_rules_smoke.py` runs it). `make bench` keeps this section.",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
