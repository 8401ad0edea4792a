"""No secret the engine is given ever shows: not in `check`, `status`, the log, a command's
error, the dashboard, its JSON API or /metrics.

The shipped routes.yaml runs on PostgreSQL and RabbitMQ with every secret it can take, some
from the environment and some from `VAR_FILE` files of mode 600 (core/secrets.py): the
journal's database password (a file), the record store's and the HIS database's (the
environment; the HIS one unreachable, so its error is logged and shown), the broker's
`guest`, the WeChat secret and EncodingAESKey (files) and callback token (environment), and
an http_out bearer token (a file) that a local endpoint checks it receives. Every text a
person or a log collector could see is then searched for each value, as written and
URL-encoded.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
from faults.engine_process import EngineProcess, delete_broker_objects, engine_env, wait_for
from sqlalchemy.engine import make_url

from core.database import make_engine
from deadletter.audit import Actor
from monitors.web import users
from monitors.web.access import Role
from monitors.web.api import ENDPOINTS
from support import AMQP_URL, PG_URL, REPORT, adt, free_port, pg_schema, require_service, shipped_routes_copy

pytestmark = [pytest.mark.services, pytest.mark.slow]

TAG = uuid.uuid4().hex[:6]
DB_PASSWORD = f"Jr!Pw@{TAG}a"  # needs URL-encoding: its plain form shows if anything decodes it
STORE_PASSWORD = f"St#Pw/{TAG}b"
HIS_PASSWORD = f"His:Pw{TAG}c"
WRONG_BROKER_PASSWORD = f"Br0ker{TAG}d"
WECHAT_SECRET = f"wxsecret{TAG}e0123456789abcdef"
WECHAT_TOKEN = f"wxtoken{TAG}f"
AES_KEY = base64.b64encode(f"aeskey-{TAG}-0123456789abcdefgh".encode()[:32]).decode()[:43]
HTTP_TOKEN = f"bearer-{TAG}-g"
ADMIN = Actor("root", "root")
SECRETS = {
    "database password": DB_PASSWORD,
    "store password": STORE_PASSWORD,
    "HIS database password": HIS_PASSWORD,
    "wrong broker password": WRONG_BROKER_PASSWORD,
    "WeChat secret": WECHAT_SECRET,
    "WeChat callback token": WECHAT_TOKEN,
    "EncodingAESKey": AES_KEY,
    "http_out token": HTTP_TOKEN,
}
BROKER_PASSWORD_FORMS = [":guest@", "%3Aguest%40"]  # the password of amqp://guest:guest@…


def forms(value: str) -> set[str]:
    return {value, quote(value, safe=""), quote_plus(value), quote(value)}


def leaks(text: str) -> list[str]:
    found = [what for what, value in SECRETS.items() if any(f in text for f in forms(value))]
    return found + [f"broker password ({form})" for form in BROKER_PASSWORD_FORMS if form in text]


def with_password(url: str, password: str, **parts: object) -> str:
    return make_url(url).set(password=password, **parts).render_as_string(hide_password=False)


def secret_file(directory: Path, name: str, value: str) -> str:
    path = directory / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return str(path)


class TokenEndpoint:
    """An http_out endpoint that keeps the Authorization headers it receives."""

    def __init__(self) -> None:
        seen = self.authorizations = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append(self.headers.get("Authorization", ""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/mch/records"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    found = TokenEndpoint()
    yield found
    found.server.shutdown()
    found.server.server_close()


class Command:
    """`mch-engine --lang en ARGS --config ROUTES` started now, with these variables; `text()`
    waits for it and gives all it printed."""

    def __init__(self, routes: Path, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "--lang", "en", *args, "--config", str(routes)],
            cwd=routes.parent,
            env={**engine_env(), **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def text(self) -> str:
        out, err = self.proc.communicate(timeout=60)
        return out + err


def routes_for(directory: Path, prefix: str, endpoint: TokenEndpoint) -> Path:
    """The shipped routes.yaml, its journal database from `${MCH_DB_URL}` (no default), the
    persons also POSTed to `endpoint` by an http_out destination with a token."""
    routes = shipped_routes_copy(directory, keep=("MCH_DB_URL",))
    edits = {
        "  database: ${MCH_DB_URL:-sqlite:///var/engine.db}\n": (
            f"  database: ${{MCH_DB_URL}}\n  queue_prefix: {prefix}\n"
        ),
        "destinations:\n": (
            f"destinations:\n  regional_api:\n    type: http_out\n    url: {endpoint.url}\n"
            "    token_env: MCH_REGIONAL_TOKEN\n"
        ),
        "    mapping: mappings/his/adt_person.yaml\n    to: [record_store]\n": (
            "    mapping: mappings/his/adt_person.yaml\n    to: [record_store, regional_api]\n"
        ),
    }
    text = routes.read_text(encoding="utf-8")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    routes.write_text(text, encoding="utf-8")
    return routes


def test_no_secret_shows_anywhere(tmp_path: Path, endpoint: TokenEndpoint) -> None:
    require_service("127.0.0.1", 5672, "RabbitMQ")
    prefix = f"sec{TAG}"
    keys = tmp_path / "keys"
    keys.mkdir()
    routes = routes_for(tmp_path, prefix, endpoint)
    with pg_schema() as schema_url:
        env = {
            "MCH_DB_URL_FILE": secret_file(keys, "db_url", with_password(schema_url, DB_PASSWORD)),
            "MCH_STORE_URL": with_password(schema_url, STORE_PASSWORD),
            "MCH_BROKER_URL": AMQP_URL,
            "MCH_HIS_DB_URL": with_password(PG_URL, HIS_PASSWORD, username="his_reader", port=free_port()),
            "MCH_WECHAT_APPID": f"wx{TAG}",
            "MCH_WECHAT_SECRET_FILE": secret_file(keys, "wechat_secret", WECHAT_SECRET),
            "MCH_WECHAT_API_BASE": f"http://127.0.0.1:{free_port()}",
            "MCH_WECHAT_CALLBACK_TOKEN": WECHAT_TOKEN,
            "MCH_WECHAT_ENCODING_AES_KEY_FILE": secret_file(keys, "aes_key", AES_KEY),
            "MCH_REGIONAL_TOKEN_FILE": secret_file(keys, "regional_token", HTTP_TOKEN),
        }
        unreachable = {**env, "MCH_DB_URL": with_password(PG_URL, DB_PASSWORD, port=free_port())}
        wrong = {**env, "MCH_BROKER_URL": with_password(AMQP_URL, WRONG_BROKER_PASSWORD)}
        # The commands that need no running engine run while it starts.
        early = {
            "check": Command(routes, env, "check"),
            "messages list, database unreachable": Command(routes, unreachable, "messages", "list"),
            "run, wrong broker password": Command(routes, wrong, "run"),
        }
        shown: dict[str, str] = {}
        engine = EngineProcess(routes)
        try:
            engine.start(env=env)
            acks = engine_send(engine.port(), [adt(f"S{TAG}{n}", f"{TAG}{n:04d}") for n in range(5)])
            assert all(b"MSA|AA" in a for a in acks)
            statuses = {
                "status": Command(routes, env, "status"),
                "status --json": Command(routes, env, "status", "--json"),
            }
            wait_for(lambda: len(endpoint.authorizations) >= 5, 30, "records POSTed to the endpoint", engine)
            assert set(endpoint.authorizations) == {f"Bearer {HTTP_TOKEN}"}  # the token from its file
            wait_for(
                lambda: "db_poll_failed" in engine_log(routes), 30, "the HIS database error logged", engine
            )
            shown.update(dashboard(engine, with_password(schema_url, DB_PASSWORD)))
            shown.update({name: c.text() for name, c in statuses.items()})
            assert engine.stop() == 0
        finally:
            engine.kill()
            delete_broker_objects(prefix, ["record_store", "regional_api", "wechat_patient"])
        shown["engine log"] = engine_log(routes) + "\n".join(engine.lines)
        shown.update({name: c.text() for name, c in early.items()})

    assert "OK" in shown["check"] and "his_view" in shown["status"]
    assert "cannot reach the database" in shown["messages list, database unreachable"]
    assert "cannot reach the message broker" in shown["run, wrong broker password"]
    found = {where: leaks(text) for where, text in shown.items() if leaks(text)}
    assert not found, found
    REPORT.append(
        f"secrets never shown: {len(SECRETS) + 1} secrets (4 from VAR_FILE files) searched in "
        f"{len(shown)} texts, {sum(len(t) for t in shown.values()) // 1024} KiB: none found"
    )


def engine_send(port: int, payloads: list[bytes]) -> list[bytes]:
    import asyncio

    from channels.mllp.client import send_all

    results = asyncio.run(send_all("127.0.0.1", port, payloads))
    return [r.ack or b"" for r in results]


def engine_log(routes: Path) -> str:
    return (routes.parent / "engine.log").read_text(encoding="utf-8", errors="replace")


def dashboard(engine: EngineProcess, database: str) -> dict[str, str]:
    """Every page and GET endpoint of the JSON API, /metrics, /status and the probes, as an admin."""
    journal = make_engine(database)
    try:
        users.ensure_schema(journal)
        users.add_user(journal, "secadmin", Role.admin, "Pass-word-1234", by=ADMIN)
        token = users.new_token(journal, "secadmin", by=ADMIN)
    finally:
        journal.dispose()
    http_line = next(line for line in engine.lines if line.startswith("HTTP: http://"))
    base = http_line.split()[1].removesuffix("/status")
    paths = ["/", "/messages", "/messages/1", "/deadletters", "/alerts", "/audit", "/channels/his_view"]
    paths += ["/metrics", "/status", "/healthz", "/readyz", "/login"]
    paths += [e.path for e in ENDPOINTS if e.method == "GET" and "{" not in e.path]
    out = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        for path in paths:
            response = client.get(path)
            # /status and /readyz answer 503 while the HIS database is away; nothing else may fail.
            assert response.status_code == 200 or path in {"/status", "/readyz"}, (path, response.status_code)
            out[f"GET {path}"] = response.text
    return out
