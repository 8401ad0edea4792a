"""WeChat bindings as an operator meets them: `mch-engine wechat bind import` on a CSV with
good and bad rows, its report, exit code and audit entry, the masked `wechat bindings`
listing, and the lookups the notifier uses — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from channels.wechat import bindings
from support import REPO, engine_database, pg_schema, write_routes
from transforms.records.idcard import check_char

CLI = [sys.executable, "-m", "engine.cli"]

ANNA = "11010519900307002" + check_char("11010519900307002")
BEA = "44030619920815004" + check_char("44030619920815004")
WRONG_CHECK = ANNA[:17] + ("0" if ANNA[17] != "0" else "1")

CSV = f"""openid,id_card,his_id,his_system,phone,role
oANNA000000000000001,{ANNA},,,13900001234,
oBEA0000000000000002,,0010031207,HIS,13900005678,patient
oBAD0000000000000003,{WRONG_CHECK},,,,
oNONE000000000000004,,,,13900009999,
oANNA000000000000001,{BEA},,,,
oANNA000000000000005,{ANNA},,,13700000000,
oSTAFF00000000000006,,E0042,STAFF,,high_risk_officer
"""


def mch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env.update({"PYTHONPATH": str(REPO), "MCH_LANG": "en"})
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=90)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/engine.db"
        return
    with pg_schema() as url:
        yield url


def test_import_reports_each_rejected_row_imports_the_rest_and_is_audited(
    tmp_path: Path, database_url: str
) -> None:
    routes = write_routes(tmp_path, database=database_url)
    (tmp_path / "bindings.csv").write_text(CSV, encoding="utf-8")
    result = mch(
        "wechat", "bind", "import", "bindings.csv", "--config", str(routes), "--as", "王护士", cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        f"line 4 rejected: the ID card's check character is wrong ({WRONG_CHECK[:4]}…{WRONG_CHECK[-3:]})",
        "line 5 rejected: no identifier (an ID card, or an HIS system and HIS id, is needed)",
        "line 6 rejected: this openid is already bound to another person (****************0001)",
        "line 7 rejected: the phone disagrees with this person's existing binding (137****0000)",
    ]
    assert lines[4].startswith("3 imported, 0 already there unchanged, 4 rejected (audit entry #")
    assert ANNA not in result.stdout and "13900001234" not in result.stdout + result.stderr

    db = create_engine(database_url)
    try:
        with db.connect() as conn:
            rows = conn.execute(text("SELECT openid, id_card, his_id, role, subscribed FROM wechat_bindings"))
            assert sorted(tuple(r) for r in rows) == [
                ("oANNA000000000000001", ANNA, None, "patient", True),
                ("oBEA0000000000000002", None, "0010031207", "patient", True),
                ("oSTAFF00000000000006", None, "E0042", "high_risk_officer", True),
            ]
            audit = conn.execute(
                text("SELECT actor, action, target, count, outcome, detail FROM audit_log")
            ).one()
        assert audit[:5] == ("王护士", "wechat_bind_import", "bindings.csv", 3, "failed")
        detail = audit[5] if isinstance(audit[5], dict) else json.loads(audit[5])
        assert [r["line"] for r in detail["rejected"]] == [4, 5, 6, 7]
    finally:
        db.dispose()

    # The same file again: nothing new, the same rows rejected (a duplicate is not a conflict).
    again = mch("wechat", "bind", "import", "bindings.csv", "--config", str(routes), cwd=tmp_path)
    assert again.returncode == 1
    assert "0 imported, 3 already there unchanged, 4 rejected" in again.stdout

    good = tmp_path / "good.csv"
    good.write_text(f"openid,id_card,his_id,his_system,phone,role\noNEW0000000000000007,{BEA},,,,\n")
    assert mch("wechat", "bind", "import", "good.csv", "--config", str(routes), cwd=tmp_path).returncode == 0

    listing = mch("wechat", "bindings", "--config", str(routes), "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    shown = [json.loads(line) for line in listing.stdout.splitlines()]
    assert len(shown) == 4
    anna = next(x for x in shown if x["openid"].endswith("0001"))
    assert anna["openid"] == "****************0001"
    assert anna["id_card"] == f"{ANNA[:4]}…{ANNA[-3:]}" and anna["phone"] == "139****1234"
    table = mch("wechat", "bindings", "--config", str(routes), cwd=tmp_path)
    assert "ID card" in table.stdout and "****************0006" in table.stdout
    for secret in (ANNA, BEA, "13900001234", "oANNA000000000000001", "0010031207"):
        assert secret not in listing.stdout + table.stdout


def test_usage_problems_exit_2(tmp_path: Path) -> None:
    routes = write_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")
    missing = mch("wechat", "bind", "import", "nope.csv", "--config", str(routes), cwd=tmp_path)
    assert missing.returncode == 2 and "no such file: nope.csv" in missing.stderr
    (tmp_path / "short.csv").write_text("openid,id_card\nx,y\n")
    short = mch("wechat", "bind", "import", "short.csv", "--config", str(routes), cwd=tmp_path)
    assert short.returncode == 2 and "lacks the columns his_id,his_system,phone,role" in short.stderr


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_lookups_give_subscribed_openids_by_id_card_then_his_id_and_by_staff_role(
    tmp_path: Path, kind: str
) -> None:
    with engine_database(kind, tmp_path) as db:
        bindings.ensure_schema(db)
        rows = [
            (2, {"openid": "oA1", "id_card": ANNA, "phone": "13900001234"}),
            (3, {"openid": "oA2", "id_card": ANNA.lower()}),
            (4, {"openid": "oB1", "his_id": "0010031207", "his_system": "HIS"}),
            (5, {"openid": "oS1", "his_id": "E1", "his_system": "STAFF", "role": "pmtct_officer"}),
        ]
        report = bindings.import_rows(db, rows)
        assert (report.imported, report.rejected) == (4, [])
        at = datetime(2025, 3, 10, 1, 0, tzinfo=UTC)
        with db.begin() as conn:
            bindings.set_subscribed(conn, "oA2", False, at)
            bindings.record_consent(conn, "oA1", "TPL-1", bindings.ACCEPTED, at)
            bindings.record_consent(conn, "oA1", "TPL-2", bindings.REJECTED, at)
        with db.connect() as conn:
            assert bindings.openids_for(conn, {"id_card": ANNA, "his_id": "x", "his_system": "HIS"}) == [
                "oA1"
            ]
            assert bindings.openids_for(conn, {"his_id": "0010031207", "his_system": "HIS"}) == ["oB1"]
            flagged = {"id_card": ANNA, "id_card_valid": False, "his_id": "0010031207", "his_system": "HIS"}
            assert bindings.openids_for(conn, flagged) == ["oB1"]
            assert bindings.openids_for(conn, {"his_id": "0010031207", "his_system": "OTHER"}) == []
            assert bindings.staff_openids(conn, "pmtct_officer") == ["oS1"]
            assert bindings.staff_openids(conn, "high_risk_officer") == []
            assert bindings.consent_of(conn, "oA1", "TPL-1") == "accept"
            assert bindings.consent_of(conn, "oA1", "TPL-2") == "reject"
            assert bindings.consent_of(conn, "oA1", "TPL-3") is None
