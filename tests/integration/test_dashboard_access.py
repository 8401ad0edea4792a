"""The dashboard's gate on SQLite and PostgreSQL: every route against every role, login and
logout, session expiry, lockout, CSRF, security headers, API tokens, the audit log, and the
OpenAPI document naming every API route (docs/dashboard.md)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from core.settings import Settings, load_settings
from deadletter import audit
from deadletter import store as dead_letters
from deadletter.audit import Actor
from monitors.http_app import build_app
from monitors.web import users
from monitors.web.access import POLICY, Role
from monitors.web.api import ENDPOINTS, openapi_document
from monitors.web.auth import PUBLIC_PATHS
from monitors.web.context import context_for
from support import ENGINE_LOG, RunningEngine, free_port, hl7, pg_schema, scalar, wait_until, write_routes

PASSWORD = "马上好-correct-horse-7"
ADMIN = Actor("root", "root")


def _site(directory: Path, database: str, http: str = "") -> Settings:
    directory.mkdir(parents=True, exist_ok=True)
    routes = write_routes(directory, database=database)
    text = routes.read_text(encoding="utf-8").replace(
        "engine:\n", f"engine:\n  http: {{listen: '127.0.0.1:{free_port()}'{http}}}\n", 1
    )
    routes.write_text(text, encoding="utf-8")
    return load_settings(routes)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield _site(tmp_path, f"sqlite:///{tmp_path}/engine.db")
        return
    with pg_schema() as url:
        yield _site(tmp_path, url)


def journal(settings: Settings) -> Engine:
    return context_for(settings).engine


def with_users(settings: Settings) -> dict[Role, str]:
    """One user per role, named after it."""
    for role in Role:
        users.add_user(journal(settings), role.value, role, PASSWORD, by=ADMIN)
    return {role: role.value for role in Role}


def signed_in(settings: Settings, name: str, **client: Any) -> TestClient:
    c = TestClient(build_app(settings), **client)
    answer = c.post("/login", data={"name": name, "password": PASSWORD}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return c


def csrf(c: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": c.get("/api/me").json()["csrf_token"]}


def is_gate(answer: Any) -> bool:
    """The login gate's own refusal: 401 JSON under /api/, a redirect to /login elsewhere."""
    if answer.status_code == 401:
        return answer.headers.get("content-type", "").startswith("application/json") and answer.json() == {
            "error": "login_required"
        }
    return answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


PATH_VALUES = {"id": "999999", "name": "nobody", "action": "replay"}


def concrete(path: str) -> str:
    """A route's path with a value for each parameter (`{id}`, `{id:int}`, `{action:str}` …)."""
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PATH_VALUES[m.group(1)], path)


def request(c: TestClient, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    if method == "GET":
        return c.get(path, follow_redirects=False)
    return c.request(method, path, json={}, headers=headers or {}, follow_redirects=False)


def test_every_route_answers_every_role_as_the_policy_says(tmp_path: Path) -> None:
    settings = _site(tmp_path, f"sqlite:///{tmp_path}/engine.db")
    app = build_app(settings)
    names = with_users(settings)
    walked: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, Mount):
            assert route.path == "/static"
            continue
        assert isinstance(route, Route), route
        walked += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    walked.sort(key=lambda mp: mp[1] == "/logout")  # signing out ends the session: last
    assert ("POST", "/api/deadletters/replay") in walked and ("GET", "/login") in walked
    assert ("POST", "/deadletters/{action:str}") in walked and ("GET", "/audit") in walked
    assert ("GET", "/alerts") in walked and ("GET", "/api/alerts") in walked

    anonymous = TestClient(app)
    clients = {role: signed_in(settings, names[role]) for role in Role}
    tokens = {role: csrf(c) for role, c in clients.items()}
    endpoints = {(r.path, m): r.endpoint for r in app.routes if isinstance(r, Route) for m in r.methods or ()}
    for method, path in walked:
        url = concrete(path)
        anon = request(anonymous, method, url)
        if path in PUBLIC_PATHS:
            assert not is_gate(anon), (method, path)
            assert anon.status_code < 500 or anon.status_code == 503, (method, path, anon.status_code)
            continue
        assert is_gate(anon), (method, path, anon.status_code)
        endpoint = endpoints[(path, method)]
        assert hasattr(endpoint, "permission"), (
            f"{method} {path} declares no permission: wrap it in access.needs()"
        )
        needed = endpoint.permission
        for role, c in clients.items():
            answer = request(c, method, url, tokens[role])
            allowed = needed is None or needed in POLICY[role]
            if allowed:
                assert answer.status_code not in (401, 403) and answer.status_code < 500, (
                    method,
                    path,
                    role,
                    answer.status_code,
                    answer.text,
                )
            else:
                assert answer.status_code == 403, (method, path, role, answer.status_code)
                if path.startswith("/api/"):
                    assert answer.json() == {"error": "forbidden"}
    assert TestClient(app).get("/static/mch.css").status_code == 200


def test_the_openapi_document_names_every_api_route(tmp_path: Path) -> None:
    settings = _site(tmp_path, f"sqlite:///{tmp_path}/engine.db")
    app = build_app(settings)
    served = {
        (r.path, m.lower())
        for r in app.routes
        if isinstance(r, Route) and r.path.startswith("/api/")
        for m in r.methods or ()
        if m != "HEAD"
    }
    documented = {(p, m) for p, ops in openapi_document()["paths"].items() for m in ops}
    assert served == documented
    assert len(served) == len(ENDPOINTS)
    with_users(settings)
    c = signed_in(settings, "viewer")
    assert (
        c.get("/api/openapi.json").json()["paths"]["/api/deadletters/purge"]["post"]["x-permission"]
        == "operate"
    )


def test_login_sets_a_strict_cookie_and_logout_ends_the_session(settings: Settings) -> None:
    with_users(settings)
    c = TestClient(build_app(settings))
    page = c.get("/login")
    assert page.status_code == 200 and "登录" in page.text and "用户名" in page.text
    english = c.get("/login?lang=en")
    assert "Sign in" in english.text
    assert "Sign in" in c.get("/login").text, "the English choice is remembered"

    answer = c.post(
        "/login", data={"name": "operator", "password": PASSWORD, "next": "/api/me"}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/api/me"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    assert c.get("/api/me").json()["role"] == "operator"

    out = c.post("/logout", data={"csrf_token": csrf(c)["X-CSRF-Token"]}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert c.get("/api/me").status_code == 401

    behind_proxy = TestClient(build_app(settings), headers={"X-Forwarded-Proto": "https"})
    answer = behind_proxy.post(
        "/login", data={"name": "viewer", "password": PASSWORD}, follow_redirects=False
    )
    assert "secure" in answer.headers["set-cookie"].lower()

    entries = audit.list_audit(journal(settings), None)
    seen = [(e["action"], e["actor"], e["role"], e["source"]) for e in entries]
    assert ("login", "operator", "operator", "web:testclient") in seen
    assert ("logout", "operator", "operator", "web:testclient") in seen
    assert ("login", "viewer", "viewer", "web:testclient") in seen


def test_a_refusal_does_not_say_whether_the_user_exists(settings: Settings) -> None:
    with_users(settings)
    c = TestClient(build_app(settings))
    wrong = c.post("/login", data={"name": "admin", "password": "not it at all"})
    unknown = c.post("/login", data={"name": "nobody-here", "password": "not it at all"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.text.replace("admin", "X") == unknown.text.replace("nobody-here", "X")
    failed = audit.list_audit(journal(settings), None, action="login_failed")
    assert sorted(e["detail"]["why"] for e in failed) == ["bad_password", "unknown_user"]


def test_five_failures_lock_the_name_and_many_lock_the_address(settings: Settings) -> None:
    with_users(settings)
    c = TestClient(build_app(settings))
    mark = ENGINE_LOG.mark()
    for _ in range(users.LOCK_FAILURES):
        assert c.post("/login", data={"name": "admin", "password": "guess"}).status_code == 401
    locked = c.post("/login", data={"name": "admin", "password": PASSWORD}, follow_redirects=False)
    assert locked.status_code == 401, "the right password is refused while locked"
    assert [e["target"] for e in audit.list_audit(journal(settings), None, action="lockout")] == ["admin"]
    [locked_out] = ENGINE_LOG.events(since=mark, name="web_user_locked_out")
    assert locked_out["user"] == "admin"
    assert PASSWORD not in "".join(str(e) for e in ENGINE_LOG.events(since=mark))
    assert (
        c.post("/login", data={"name": "viewer", "password": PASSWORD}, follow_redirects=False).status_code
        == 303
    )

    for i in range(users.LOCK_ADDRESS_FAILURES):
        c.post("/login", data={"name": f"guess{i}", "password": "guess"})
    throttled = c.post("/login", data={"name": "auditor", "password": PASSWORD}, follow_redirects=False)
    assert throttled.status_code == 401, "this address made too many failed attempts"


def test_sessions_expire_when_idle_and_after_their_maximum(tmp_path: Path) -> None:
    idle = _site(tmp_path / "idle", f"sqlite:///{tmp_path}/idle.db", ", session_idle: 1s")
    with_users(idle)
    c = signed_in(idle, "viewer")
    assert c.get("/api/me").status_code == 200
    time.sleep(1.3)
    assert c.get("/api/me").status_code == 401

    capped = _site(tmp_path / "max", f"sqlite:///{tmp_path}/max.db", ", session_idle: 1s, session_max: 2s")
    with_users(capped)
    c = signed_in(capped, "viewer")
    started = time.monotonic()
    while time.monotonic() - started < 1.6:  # kept busy: the idle limit never runs out
        assert c.get("/api/me").status_code == 200
        time.sleep(0.2)
    time.sleep(max(0.0, 2.2 - (time.monotonic() - started)))
    assert c.get("/api/me").status_code == 401


def test_changes_need_the_sessions_csrf_token_but_a_bearer_token_needs_none(settings: Settings) -> None:
    with_users(settings)
    c = signed_in(settings, "operator")
    purge = {"ids": [1], "reason": "test"}
    assert c.post("/api/deadletters/purge", json=purge).status_code == 403
    assert c.post("/api/deadletters/purge", json=purge, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert c.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False).status_code == 403
    assert c.post("/api/deadletters/purge", json=purge, headers=csrf(c)).status_code == 200

    token = users.new_token(journal(settings), "operator", by=ADMIN)
    script = TestClient(build_app(settings), headers={"Authorization": f"Bearer {token}"})
    assert script.get("/api/me").json()["role"] == "operator"
    assert script.post("/api/deadletters/purge", json=purge).status_code == 200
    newer = users.new_token(journal(settings), "operator", by=ADMIN)
    assert script.get("/api/me").status_code == 401, "a new token replaces the old one"
    users.disable_user(journal(settings), "operator", by=ADMIN)
    bearer = TestClient(build_app(settings), headers={"Authorization": f"Bearer {newer}"})
    assert bearer.get("/api/me").status_code == 401
    assert c.get("/api/me").status_code == 401, "a disabled user's session ends"


def test_every_response_carries_the_security_headers(tmp_path: Path) -> None:
    settings = _site(tmp_path, f"sqlite:///{tmp_path}/engine.db")
    with_users(settings)
    c = signed_in(settings, "admin")
    anonymous = TestClient(build_app(settings))
    for answer in (
        anonymous.get("/healthz"),
        anonymous.get("/login"),
        anonymous.get("/api/status"),
        c.get("/api/status"),
        c.get("/no/such/page"),
        anonymous.get("/static/mch.css"),
    ):
        h = answer.headers
        assert h["content-security-policy"].startswith("default-src 'self'")
        assert "unsafe-inline" not in h["content-security-policy"]
        assert h["x-frame-options"] == "DENY"
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"
    assert c.get("/api/status").headers["cache-control"] == "no-store"
    assert "no-store" not in anonymous.get("/static/mch.css").headers.get("cache-control", "")
    assert "<script>" not in anonymous.get("/login").text


def test_identifiers_are_masked_for_a_viewer_and_shown_to_an_operator_who_is_audited(tmp_path: Path) -> None:
    from core.journal.schema import messages

    settings = _site(tmp_path, f"sqlite:///{tmp_path}/engine.db")
    with_users(settings)
    raw = "MSH|^~\\&|HIS|FY01|MCH|FY01|20240321083200||ADT^A04|C-77|P|2.5\rPID|1||0010090001^^^HIS^PI||刘晓梅||19940315|F|||||||||||110101199403150021\r"
    now = audit.now_utc()
    with journal(settings).begin() as conn:
        jid = conn.execute(
            messages.insert()
            .values(channel="hospital", control_id="C-77", message_type="ADT^A04", received_at=now,
                    status="routed", encoding="utf-8", raw=raw.encode(), ack="", ack_code="AA", updated_at=now)
            .returning(messages.c.id)
        ).scalar_one()  # fmt: skip
    viewer = signed_in(settings, "viewer").get(f"/api/messages/{jid}").json()
    assert viewer["raw"] is None and viewer["control_id"] == "C-77"
    assert "110101199403150021" not in str(viewer) and "刘晓梅" not in str(viewer)
    operator = signed_in(settings, "operator").get(f"/api/messages/{jid}").json()
    assert "110101199403150021" in operator["raw"]
    [shown] = audit.list_audit(journal(settings), None, action="message_show")
    assert (shown["actor"], shown["target"]) == ("operator", str(jid))

    found = signed_in(settings, "viewer").get("/api/messages", params={"control_id": "C-77"}).json()
    assert found["total"] == 1 and found["messages"][0]["id"] == jid
    assert signed_in(settings, "viewer").get("/api/messages", params={"type": "ORU"}).json()["total"] == 0
    assert signed_in(settings, "viewer").get("/api/messages", params={"type": "ADT"}).json()["total"] == 1


def test_a_user_admin_adds_and_disables_users_through_the_api(tmp_path: Path) -> None:
    settings = _site(tmp_path, f"sqlite:///{tmp_path}/engine.db")
    with_users(settings)
    c = signed_in(settings, "admin")
    added = c.post(
        "/api/users", json={"name": "李娜", "role": "operator", "password": PASSWORD}, headers=csrf(c)
    )
    assert added.status_code == 201
    again = c.post(
        "/api/users", json={"name": "李娜", "role": "operator", "password": PASSWORD}, headers=csrf(c)
    )
    assert again.status_code == 409
    assert signed_in(settings, "李娜").get("/api/me").json()["role"] == "operator"
    assert c.post("/api/users/李娜/disable", headers=csrf(c)).status_code == 200
    refused = TestClient(build_app(settings)).post("/login", data={"name": "李娜", "password": PASSWORD})
    assert refused.status_code == 401
    actions = [(e["action"], e["target"], e["actor"]) for e in audit.list_audit(journal(settings), None)]
    assert ("user_add", "李娜", "admin") in actions and ("user_disable", "李娜", "admin") in actions
    with journal(settings).connect() as conn:
        stored = conn.execute(
            select(users.users.c.password_hash).where(users.users.c.name == "李娜")
        ).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def lab_result(control_id: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113000||ORU^R01|{control_id}|P|2.4|||AL|NE|CHN|UNICODE UTF-8",
        "PID|1||0010090001^^^HIS^PI||刘晓梅||19940315|F",
        "OBR|1|JC7|LAB7|BLD01^血常规^L|||20240321083000||||||||BLD^全血|||||||20240321113000||HEM|F",
        "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F|||20240321112000",
    )


def registration(control_id: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083200||ADT^A04^ADT_A01|{control_id}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        "EVN|A04|20240321083200",
        "PID|1||0010090001^^^HIS^PI||刘晓梅^^^^^^L||19940315|F",
    )


def test_a_dead_letter_replayed_through_the_api_is_delivered_and_audited(tmp_path: Path) -> None:
    """A real engine run: the record store refuses lab results, the result is dead-lettered;
    the store is back; an operator replays it through the API and it is stored. Her messages
    are then found by her HIS id, with the records they became."""
    routes = write_routes(
        tmp_path,
        database=f"sqlite:///{tmp_path / 'engine.db'}",
        channels={"hospital": {"encoding": "utf-8"}},
        extra="retry:\n  tiers: [1s]\n  max_attempts: 2\n",
    )
    with RunningEngine(routes) as running:
        store = running.store()
        with store.begin() as conn:
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.record_type = 'LabResult' "
                    "BEGIN SELECT RAISE(ABORT, 'test: the store refuses'); END"
                )
            )
        acks = running.send([registration("HIS-API-0"), lab_result("LIS-API-1")])
        assert all(ack is not None and b"MSA|AA" in ack for ack in acks)
        letters = wait_until(
            lambda: dead_letters.list_dead_letters(running.journal, stage="deliver"), timeout=60
        )
        with store.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse"))

        users.add_user(journal(running.settings), "值班员", Role.operator, PASSWORD, by=ADMIN)
        c = signed_in(running.settings, "值班员")
        listed = c.get("/api/deadletters").json()["dead_letters"]
        assert [d["id"] for d in listed] == [letters[0]["id"]]
        answer = c.post(
            "/api/deadletters/replay", json={"ids": [letters[0]["id"]], "wait": 60}, headers=csrf(c)
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["deliveries"] == {str(letters[0]["id"]): "delivered"}
        stored = scalar(store, "SELECT count(*) FROM records WHERE record_type = 'LabResult'")
        assert stored == 1
        assert dead_letters.list_dead_letters(running.journal) == []

        [entry] = audit.list_audit(running.journal, None, action="replay")
        assert (entry["actor"], entry["role"], entry["source"]) == ("值班员", "operator", "web:testclient")
        assert entry["outcome"] == "done" and entry["detail"]["delivered"] == [letters[0]["id"]]

        found = c.get("/api/messages", params={"person": "0010090001"}).json()["messages"]
        assert sorted(m["control_id"] for m in found) == ["HIS-API-0", "LIS-API-1"]
        viewer_user = users.add_user(journal(running.settings), "看板", Role.viewer, PASSWORD, by=ADMIN)
        assert viewer_user is None
        viewer = signed_in(running.settings, "看板")
        assert viewer.get("/api/messages", params={"person": "0010090001"}).status_code == 403
        [registered] = [m["id"] for m in found if m["control_id"] == "HIS-API-0"]
        shown = c.get(f"/api/messages/{registered}").json()
        assert [r["record_type"] for r in shown["records"]] == ["Person"]
        assert "刘晓梅" in str(shown["records"]) and "0010090001" in shown["raw"]
        masked = viewer.get(f"/api/messages/{registered}").json()
        assert [r["record_type"] for r in masked["records"]] == ["Person"]
        assert "刘晓梅" not in str(masked) and "0010090001" not in str(masked)


def test_a_hash_made_with_older_parameters_is_replaced_at_the_next_good_login(tmp_path: Path) -> None:
    from argon2 import PasswordHasher

    settings = _site(tmp_path, f"sqlite:///{tmp_path}/engine.db")
    with_users(settings)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    table = users.users
    with journal(settings).begin() as conn:
        conn.execute(table.update().where(table.c.name == "viewer").values(password_hash=weak))
    signed_in(settings, "viewer")
    with journal(settings).connect() as conn:
        now = conn.execute(select(table.c.password_hash).where(table.c.name == "viewer")).scalar_one()
    assert now != weak and now.startswith("$argon2id$")
    assert not PasswordHasher().check_needs_rehash(now)
    signed_in(settings, "viewer")  # and the new hash verifies


def test_a_page_form_is_accepted_only_with_the_token_the_page_carries(tmp_path: Path) -> None:
    settings = _site(tmp_path, f"sqlite:///{tmp_path}/engine.db")
    with_users(settings)
    operator = signed_in(settings, "operator")
    page = operator.get("/deadletters").text
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert token is not None
    assert page.count(f'name="csrf_token" value="{token.group(1)}"') == 2  # sign-out and the actions
    form = {"id": "1", "why": "vendor test data"}
    refused = operator.post("/deadletters/purge", data=form, follow_redirects=False)
    assert (refused.status_code, refused.text) == (403, "csrf")
    done = operator.post(
        "/deadletters/purge", data={**form, "csrf_token": token.group(1)}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/deadletters?action=purge")


def test_the_audit_page_shows_who_did_what_to_the_roles_that_may_read_it(tmp_path: Path) -> None:
    settings = _site(tmp_path, f"sqlite:///{tmp_path}/engine.db")
    with_users(settings)
    auditor = signed_in(settings, "auditor")
    page = auditor.get("/audit")
    assert page.status_code == 200 and '<a href="/audit">审计日志</a>' in page.text
    assert "web:testclient" in page.text and "审计员" in page.text
    mine = auditor.get("/audit", params={"action": "login", "actor": "auditor"}).text
    assert len(re.findall(r'<tr data-audit="\d+">', mine)) == 1
    viewer = signed_in(settings, "viewer")
    assert viewer.get("/audit").status_code == 403
    assert 'href="/audit"' not in viewer.get("/deadletters").text
