"""`mch-engine users …` as an administrator runs it, and the password never kept or
printed in clear: not in the database, not in any output, not in the engine's log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from faults.engine_process import engine_env
from starlette.testclient import TestClient

from core.settings import load_settings
from deadletter import audit
from monitors.http_app import build_app
from monitors.web.context import context_for
from support import ENGINE_LOG, write_routes

PASSWORD = "春眠不觉晓-Xq93-zz"
OTHER = "处处闻啼鸟-Lk27-yy"


def users(config: Path, *args: str, stdin: str = "", expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**engine_env(), "MCH_LOG_LEVEL": "debug"}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--lang", "en", "users", *args, "--config", str(config)],
        input=stdin,
        env=env,
        cwd=config.parent,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert done.returncode == expect, (args, done.returncode, done.stdout, done.stderr)
    assert PASSWORD not in done.stdout + done.stderr and OTHER not in done.stdout + done.stderr
    return done


def test_users_are_added_listed_changed_and_disabled_and_no_password_is_kept_in_clear(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    config = write_routes(tmp_path, database=f"sqlite:///{db}")
    assert (
        "added"
        in users(config, "add", "王芳", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n").stdout
    )
    users(config, "add", "王芳", "--role", "viewer", "--password-stdin", stdin=PASSWORD + "\n", expect=1)
    short = users(config, "add", "li", "--role", "viewer", "--password-stdin", stdin="short\n", expect=1)
    assert "at least 10" in short.stderr
    users(config, "add", "li", "--role", "auditor", "--password-stdin", stdin=OTHER + "\n")
    listed = [json.loads(line) for line in users(config, "list", "--json").stdout.splitlines()]
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [
        ("li", "auditor", False),
        ("王芳", "admin", False),
    ]

    settings = load_settings(config)
    mark = ENGINE_LOG.mark()
    web = TestClient(build_app(settings))
    assert web.post("/login", data={"name": "王芳", "password": OTHER}).status_code == 401
    assert (
        web.post("/login", data={"name": "王芳", "password": PASSWORD}, follow_redirects=False).status_code
        == 303
    )

    users(config, "passwd", "王芳", "--password-stdin", stdin=OTHER + "\n")
    assert web.get("/api/me").status_code == 401, "a new password ends the user's sessions"
    fresh = TestClient(build_app(settings))
    assert (
        fresh.post("/login", data={"name": "王芳", "password": OTHER}, follow_redirects=False).status_code
        == 303
    )

    token = users(config, "token", "li").stdout.strip()
    assert token.startswith("mch_")
    script = TestClient(build_app(settings), headers={"Authorization": f"Bearer {token}"})
    assert script.get("/api/audit").status_code == 200
    users(config, "disable", "li")
    assert script.get("/api/audit").status_code == 401
    users(config, "disable", "nobody", expect=1)

    logged = "".join(str(e) for e in ENGINE_LOG.events(since=mark))
    assert PASSWORD not in logged and OTHER not in logged
    context_for(settings).engine.dispose()
    kept = db.read_bytes()
    for secret in (PASSWORD, OTHER, token):
        assert secret.encode("utf-8") not in kept
    actions = [(e["action"], e["target"]) for e in audit.list_audit(context_for(settings).engine, None)]
    for expected in (
        ("user_add", "王芳"),
        ("user_passwd", "王芳"),
        ("user_token", "li"),
        ("user_disable", "li"),
    ):
        assert expected in actions
    assert ("login_failed", "王芳") in actions and ("login", "王芳") in actions
    cli_entries = [
        e for e in audit.list_audit(context_for(settings).engine, None) if e["action"] == "user_add"
    ]
    assert all(e["source"].startswith("cli:") for e in cli_entries)
    shown = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--lang", "en", "deadletter", "audit", "--config", str(config)],
        env=engine_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert shown.returncode == 0 and "login failed" in shown.stdout and "(web testclient)" in shown.stdout
