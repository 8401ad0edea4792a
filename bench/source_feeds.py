"""What the non-MLLP sources read in `python -m bench.sources`: a HIS view and a batch file.

A HIS view is a fresh PostgreSQL schema, or a uniquely named MariaDB table, with the view
`v_child_exam` in the shape mappings/his/child_health_view.yaml reads; it is dropped when
the run ends, so nothing is left on the services. Rows are distinct children with valid
身份证号, so the record store links them as it would a hospital's. A batch file is the bench's
MLLP traffic in one FHS/BHS envelope, written under a temporary name and renamed, as a
sender that follows docs/connectors.md does.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from bench.messages import MessageFactory, id_card_for
from bench.stack import PG_URL

MARIADB_URL = os.environ.get("MCH_BENCH_MARIADB_URL") or os.environ.get(
    "MCH_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)
PG_ODBC = "odbc:DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;DATABASE=test;UID=postgres"
MARIADB_ODBC = (
    "odbc:DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;DATABASE=test;UID=root;CHARSET=utf8mb4"
)

VIEWS = {
    "postgresql": "PostgreSQL through SQLAlchemy (psycopg)",
    "postgresql-odbc": "PostgreSQL through ODBC (PostgreSQL Unicode)",
    "mariadb": "MariaDB through SQLAlchemy (PyMySQL)",
    "mariadb-odbc": "MariaDB through ODBC (MariaDB Unicode)",
}

_COLUMNS = (
    "exam_id INTEGER PRIMARY KEY, his_id VARCHAR(20), child_name VARCHAR(40), id_card VARCHAR(18), "
    "sex VARCHAR(4), birth_date DATE, exam_date DATE, weight_kg DECIMAL(5,2), length_cm DECIMAL(5,1), "
    "head_cm DECIMAL(5,1), hb_gl INTEGER, mother_his_id VARCHAR(20), mother_id_card VARCHAR(18), "
    "doctor VARCHAR(40), updated_at {ts}"
)
_NAMES = ("李沐瑶", "王子涵", "张一诺", "刘梓萱", "陈雨桐", "杨若曦", "黄欣妍", "赵可馨")
_INSERT = text(
    "INSERT INTO {table} VALUES (:exam_id, :his_id, :child_name, :id_card, :sex, :birth_date, :exam_date, "
    ":weight_kg, :length_cm, :head_cm, :hb_gl, :mother_his_id, :mother_id_card, :doctor, :updated_at)"
)


@dataclass
class HisView:
    """A view the db_poll channel reads: `url` and `view` as routes.yaml names them."""

    url: str
    view: str
    table: str
    admin: Engine

    def insert(self, count: int, first: int = 1) -> None:
        """`count` child checks in one transaction: they become visible to the poll at once."""
        rows = [child_row(first + i) for i in range(count)]
        with self.admin.begin() as conn:
            conn.execute(text(_INSERT.text.format(table=self.table)), rows)


def child_row(n: int) -> dict[str, Any]:
    """Child check `n`: its own child, mother and exam id; checked this year at 1-34 months of age
    (the record store refuses an exam date in the future)."""
    sex = "女" if n % 2 else "男"
    exam = date.today() - timedelta(days=1 + n % 300)
    birth = exam - timedelta(days=30 + n * 7 % 1000)
    mother_birth = f"{1985 + n % 15}0{1 + n % 9}1{n % 9}"
    return {
        "exam_id": n,
        "his_id": f"C{n:08d}",
        "child_name": _NAMES[n % len(_NAMES)],
        "id_card": id_card_for("500112", birth.strftime("%Y%m%d"), n, "F" if sex == "女" else "M"),
        "sex": sex,
        "birth_date": birth,
        "exam_date": exam,
        "weight_kg": 6 + n % 80 / 10,
        "length_cm": 60 + n % 300 / 10,
        "head_cm": 40 + n % 80 / 10,
        "hb_gl": 105 + n % 30,
        "mother_his_id": f"M{n:08d}",
        "mother_id_card": id_card_for("500112", mother_birth, n, "F"),
        "doctor": "D4001^黄晓",
        "updated_at": datetime(2025, 4, 10, 9, 0, 0) + timedelta(milliseconds=n),
    }


@contextmanager
def his_view(kind: str) -> Iterator[HisView]:
    """A fresh, empty `v_child_exam` for one run (`kind` from VIEWS), dropped afterwards."""
    if kind not in VIEWS:
        raise ValueError(f"unknown view {kind!r}")
    odbc = kind.endswith("-odbc")
    if kind.startswith("postgresql"):
        schema = f"bench_src_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            conn.execute(text(f"CREATE TABLE {schema}.exams ({_COLUMNS.format(ts='TIMESTAMP(6)')})"))
            conn.execute(text(f"CREATE VIEW {schema}.v_child_exam AS SELECT * FROM {schema}.exams"))
        try:
            yield HisView(PG_ODBC if odbc else PG_URL, f"{schema}.v_child_exam", f"{schema}.exams", admin)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()
        return
    name = f"bench_src_{uuid.uuid4().hex[:10]}"
    admin = create_engine(MARIADB_URL)
    with admin.begin() as conn:
        conn.execute(
            text(f"CREATE TABLE {name}_exams ({_COLUMNS.format(ts='DATETIME(6)')}) DEFAULT CHARSET=utf8mb4")
        )
        conn.execute(text(f"CREATE VIEW {name}_v_child_exam AS SELECT * FROM {name}_exams"))
    try:
        url = MARIADB_ODBC if odbc else MARIADB_URL + "?charset=utf8mb4"
        yield HisView(url, f"{name}_v_child_exam", f"{name}_exams", admin)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP VIEW IF EXISTS {name}_v_child_exam"))
            conn.execute(text(f"DROP TABLE IF EXISTS {name}_exams"))
        admin.dispose()


def batch_file(factory: MessageFactory, count: int) -> bytes:
    """Messages 0..count-1 of `factory` in one FHS/BHS batch, CR-ended segments."""
    body = b"".join(factory.message(seq).payload for seq in range(count))
    return b"FHS|^~\\&|LIS|10\rBHS|^~\\&|LIS|10\r" + body + f"BTS|{count}\rFTS|1\r".encode("ascii")


def drop(inbox: Path, name: str, content: bytes) -> float:
    """Write under a name the channel never takes, then rename; the wall time of the rename."""
    part = inbox / f"{name}.part"
    part.write_bytes(content)
    os.replace(part, inbox / name)
    return time.time()
