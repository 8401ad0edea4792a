"""`check` warns, at its line, of a password written into routes.yaml, never showing it."""

from __future__ import annotations

from pathlib import Path

from core import i18n
from engine.literal_secrets import literal_password_warnings


def test_a_written_password_is_named_by_line_and_key_and_a_variable_is_not(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "version: 1\n"
        "# amqp://mch:in-a-comment@rabbit is no setting\n"
        "engine:\n"
        "  broker: amqp://mch:Wr1tten-Pw@rabbit:5672/mch\n"
        "  database: postgresql+psycopg://mch:${MCH_DB_PASSWORD}@db/mch\n"
        "destinations:\n"
        "  store: {type: record_store, database: 'mysql+pymysql://root@db/x'}\n",
        encoding="utf-8",
    )
    i18n.set_language("en")
    try:
        warnings = literal_password_warnings(routes)
    finally:
        i18n.set_language("zh")
    assert warnings == [
        f"{routes}:4: warning: engine.broker has a password written in its URL; read it from the "
        "environment instead (${VAR}, or VAR_FILE naming a file of mode 600), see docs/security.md"
    ]
    assert "Wr1tten-Pw" not in warnings[0]
