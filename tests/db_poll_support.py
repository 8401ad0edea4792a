"""A HIS database for the db_poll tests: a child-exam table on real PostgreSQL or MariaDB,
reached through SQLAlchemy or through pyodbc + unixODBC with Debian's drivers."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from support import REPO, pg_schema, require_service

MARIADB_URL = os.environ.get("MCH_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
PG_ODBC = "odbc:DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;DATABASE=test;UID=postgres"
MARIADB_ODBC = (
    "odbc:DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;DATABASE=test;UID=root;CHARSET=utf8mb4"
)
# What the HIS path takes: (database, driver path).
BACKENDS = ["postgresql", "postgresql-odbc", "mariadb", "mariadb-odbc"]

_COLUMNS = (
    "exam_id INTEGER PRIMARY KEY, his_id VARCHAR(20), child_name VARCHAR(40), id_card VARCHAR(18), "
    "sex VARCHAR(4), birth_date DATE, exam_date DATE, weight_kg DECIMAL(5,2), length_cm DECIMAL(5,1), "
    "head_cm DECIMAL(5,1), hb_gl INTEGER, mother_his_id VARCHAR(20), mother_id_card VARCHAR(18), "
    "doctor VARCHAR(40), updated_at {ts}"
)


@dataclass
class His:
    """The HIS side: `url` and `view` as the channel names them, `admin` to write rows."""

    url: str
    view: str
    table: str
    admin: Engine

    def insert(self, conn: Any, exam_id: int, updated_at: datetime) -> None:
        conn.execute(
            text(
                f"INSERT INTO {self.table} VALUES (:id, :his, '李沐瑶', '500112202410080264', '女', "
                "'2024-10-08', '2025-04-10', 7.6, 66.8, 42.9, 118, '0010023456', '500112199403151525', "
                "'D4001^黄晓', :at)"
            ),
            {"id": exam_id, "his": f"H{exam_id:06d}", "at": updated_at},
        )

    def add(self, exam_id: int, updated_at: datetime) -> None:
        with self.admin.begin() as conn:
            self.insert(conn, exam_id, updated_at)


@contextmanager
def his_database(backend: str) -> Iterator[His]:
    if backend.startswith("postgresql"):
        with pg_schema() as url:
            schema = re.search(r"search_path%3D(\w+)", url).group(1)  # type: ignore[union-attr]
            admin = create_engine(url)
            table = f"{schema}.exams"
            with admin.begin() as conn:
                conn.execute(text(f"CREATE TABLE {table} ({_COLUMNS.format(ts='TIMESTAMP(6)')})"))
                conn.execute(text(f"CREATE VIEW {schema}.v_child_exam AS SELECT * FROM {table}"))
            try:
                odbc = backend.endswith("odbc")
                yield His(PG_ODBC if odbc else url, f"{schema}.v_child_exam", table, admin)
            finally:
                admin.dispose()
        return
    require_service("127.0.0.1", 3306, "MariaDB")
    admin = create_engine(MARIADB_URL)
    name = f"t{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(
            text(f"CREATE TABLE {name}_exams ({_COLUMNS.format(ts='DATETIME(6)')}) DEFAULT CHARSET=utf8mb4")
        )
        conn.execute(text(f"CREATE VIEW {name}_v AS SELECT * FROM {name}_exams"))
    try:
        url = MARIADB_ODBC if backend.endswith("odbc") else MARIADB_URL + "?charset=utf8mb4"
        yield His(url, f"{name}_v", f"{name}_exams", admin)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP VIEW IF EXISTS {name}_v"))
            conn.execute(text(f"DROP TABLE IF EXISTS {name}_exams"))
        admin.dispose()


def poll_routes(directory: Path, his: His, *, database: str = "", extra: str = "", **channel: object) -> Path:
    """routes.yaml with one db_poll channel `his_view` on `his`, routed through the shipped
    child-health view mapping to the record store."""
    settings: dict[str, object] = {"every": "0.1s", "batch": 4, **channel}
    lines = [
        "version: 1",
        "engine:",
        f"  database: {database or 'sqlite:///' + str(directory / 'engine.db')!r}",
        f"  allowed_paths: [{str(REPO / 'mappings')!r}]",
        "channels:",
        "  his_view:",
        "    type: db_poll",
        f"    url: {his.url!r}",
        f"    view: {his.view}",
        "    watermark: updated_at",
        "    key: exam_id",
        *[f"    {k}: {v}" for k, v in settings.items()],
        "routes:",
        "  - name: child-exams",
        "    from: his_view",
        f"    mapping: {REPO / 'mappings/his/child_health_view.yaml'}",
        "    to: record_store",
        "destinations:",
        "  record_store: {type: record_store}",
    ]
    path = directory / "routes.yaml"
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def journaled(engine: Engine) -> list[str]:
    """Control ids of the channel's journal rows, in journal order (one per row read)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT control_id FROM journal_messages WHERE channel = 'his_view' ORDER BY id")
        )
        return [r[0] for r in rows]


def stored_exams(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT record_id FROM records WHERE record_type = 'ChildHealthExam'"))
        return sorted(r[0] for r in rows)
