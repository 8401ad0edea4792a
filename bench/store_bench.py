"""`python -m bench.store_bench`: records/s of the record store by batch size, SQLite and PostgreSQL.

The delivery worker hands the store bundles of envelopes, one transaction each; this
measures the store alone (no bus, no journal) on a fresh database per point, with a
mix like a hospital day: registrations, results by HIS id, reports by ID card,
corrections of earlier results, newborns naming their mother. Figures only.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.stack import PG_URL, reachable
from channels.record_store.store import RecordStore, ensure_schema
from core.database import make_engine

BATCH_SIZES = (1, 20, 100)
BACKENDS = ("sqlite", "postgresql")
_START = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def workload(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` envelopes in arrival order; the same seed gives the same day."""
    rng = random.Random(seed)
    mothers: list[dict[str, Any]] = []
    labs: list[tuple[str, dict[str, Any]]] = []
    out: list[dict[str, Any]] = []
    for jid in range(1, count + 1):
        at = (_START + timedelta(seconds=30 * jid)).isoformat()
        roll = rng.random()
        if not mothers or roll < 0.15:
            n = len(mothers)
            ref = {
                "id_card": f"500112{1990 + n % 10}0101{n % 10000:04d}",
                "his_id": f"{n:010d}",
                "his_system": "HIS",
                "name": f"母亲{n}",
            }
            mothers.append(ref)
            out.append(_env("Person", f"person:HIS:{ref['his_id']}", {"person": ref}, at, jid))
            continue
        mother = rng.choice(mothers)
        if roll < 0.70:
            ref = {"his_id": mother["his_id"], "his_system": "HIS"}
            rid = f"lab:{jid}"
            labs.append((rid, ref))
            out.append(_env("LabResult", rid, {"person": ref, "observations": [{"code": "HGB"}]}, at, jid))
        elif roll < 0.85:
            ref = {"id_card": mother["id_card"]}
            out.append(_env("ImagingReport", f"us:{jid}", {"person": ref, "findings": "正常"}, at, jid))
        elif roll < 0.95 and labs:
            rid, ref = rng.choice(labs)  # a correction of an earlier result
            out.append(_env("LabResult", rid, {"person": ref, "observations": [{"code": "HGB"}]}, at, jid))
        else:
            baby = {"his_id": f"B{jid:09d}", "his_system": "HIS", "name": f"{mother['name']}之子"}
            record = {"person": baby, "mother": mother, "birth_weight_g": 3200}
            out.append(_env("NewbornRecord", f"nb:{jid}", record, at, jid))
    return out


def _env(kind: str, record_id: str, record: dict[str, Any], at: str, jid: int) -> dict[str, Any]:
    return {
        "journal_id": jid,
        "channel": "hospital",
        "control_id": f"C{jid}",
        "record_type": kind,
        "record_id": record_id,
        "event_time": at,
        "record": {"record_id": record_id, **record},
    }


@contextmanager
def fresh_database(backend: str, workdir: Path) -> Iterator[Engine]:
    """An empty store: a new SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{workdir / uuid.uuid4().hex}.db")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    engine = make_engine(f"{PG_URL}{sep}options=-csearch_path%3D{schema}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def records_per_second(
    engine: Engine,
    envelopes: Sequence[dict[str, Any]],
    batch: int,
    make_store: Callable[[Engine], Any] = RecordStore,
) -> float:
    """Store `envelopes` in bundles of `batch`, one transaction each, after a short warm-up."""
    ensure_schema(engine)
    store = make_store(engine)
    warm = workload(2 * batch, seed=99)
    for env in warm:
        env["record_id"] = "warm:" + env["record_id"]
        env["record"]["person"] = {"his_id": f"W{env['journal_id']}", "his_system": "WARM"}
        env["record"].pop("mother", None)
    for i in range(0, len(warm), batch):
        store.store(warm[i : i + batch])
    started = time.perf_counter()
    for i in range(0, len(envelopes), batch):
        store.store(envelopes[i : i + batch])
    return len(envelopes) / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_bench", description=__doc__)
    parser.add_argument("--records", type=int, default=2000, help="envelopes per point (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per point, best kept (default 3)")
    parser.add_argument(
        "--batch", type=int, nargs="+", default=list(BATCH_SIZES), help="bundle sizes (1 20 100)"
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, nargs="+", default=list(BACKENDS), help="both by default"
    )
    args = parser.parse_args(argv)

    pg = make_url(PG_URL)
    envelopes = workload(args.records)
    print(f"record store, {args.records} envelopes per point, best of {args.repeat}")
    print(f"| backend | batch | records/s | × batch {args.batch[0]} |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        for backend in args.backend:
            if backend == "postgresql" and not reachable((pg.host or "127.0.0.1", pg.port or 5432)):
                print(f"| {backend} | - | not reachable at {pg.host}:{pg.port or 5432} | |")
                continue
            base: float | None = None
            for batch in args.batch:
                best = 0.0
                for _ in range(args.repeat):
                    with fresh_database(backend, Path(tmp)) as engine:
                        best = max(best, records_per_second(engine, envelopes, batch))
                base = base or best
                print(f"| {backend} | {batch} | {best:,.0f} | {best / base:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
