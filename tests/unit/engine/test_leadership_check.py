"""`mch-engine check` refuses active/standby on a backend that cannot be shared."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.check import check_config
from engine.leadership import lock_key

ROUTES = """\
version: 1
engine:
  database: {database}
  broker: {broker}
  leadership: {{enabled: {enabled}, name: hospital-a}}
channels:
  his_adt: {{type: mllp, listen: 127.0.0.1:2575}}
routes:
  - name: persons
    from: [his_adt]
    mapping: mappings/adt.yaml
    to: [record_store]
destinations:
  record_store: {{type: record_store}}
"""


def problems(folder: Path, **values: str) -> list[str]:
    (folder / "mappings").mkdir(exist_ok=True)
    (folder / "mappings" / "adt.yaml").write_text("# mapping\n", encoding="utf-8")
    (folder / "routes.yaml").write_text(textwrap.dedent(ROUTES.format(**values)), encoding="utf-8")
    return [str(p) for p in check_config(folder / "routes.yaml", {})]


PG = "postgresql+psycopg://mch@db.hospital/engine"
AMQP = "amqp://mch:secret@mq.hospital:5672//"


@pytest.mark.parametrize(
    ("database", "broker"),
    [("sqlite:///var/engine.db", "memory://"), ("sqlite:///var/engine.db", AMQP), (PG, "memory://")],
)
def test_leadership_needs_postgresql_and_rabbitmq(tmp_path: Path, database: str, broker: str) -> None:
    found = problems(tmp_path, database=database, broker=broker, enabled="true")
    assert len(found) == 1, found
    assert "engine.leadership.enabled" in found[0]
    assert "单机" in found[0] or "single server" in found[0]  # whichever the operator reads
    assert "secret" not in found[0]
    assert problems(tmp_path, database=database, broker=broker, enabled="false") == []


def test_a_shared_backend_passes_and_sites_get_their_own_lock(tmp_path: Path) -> None:
    assert problems(tmp_path, database=PG, broker=AMQP, enabled="true") == []
    assert lock_key("hospital-a") != lock_key("hospital-b")
    assert lock_key("hospital-a") == lock_key("hospital-a")
