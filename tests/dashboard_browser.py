"""Test support for the dashboard pages in a real browser: the engine's HTTP app served by
uvicorn in a thread, headless Chromium (Debian's `chromium`, driven by Playwright, nothing
downloaded), and a stand-in for the login.

The stand-in signs a request in from the cookie `test_user=NAME:ROLE`, as the login
middleware will from a session: it lives here, in the tests, never in the product.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote

import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from core.settings import Settings
from monitors.http_app import build_app
from monitors.web.access import Role, User
from support import free_port, in_ci

CHROMIUM = "/usr/bin/chromium"
USER_COOKIE = "test_user"


CSP = b"default-src 'self'"


class SignedInFromCookie:
    """Puts `User(NAME, ROLE)` from the cookie `test_user=NAME:ROLE` on the scope, and
    answers with the strict Content-Security-Policy the pages are written for (no inline
    script or style), so a page that needs more breaks here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in _cookies(scope):
                if name == USER_COOKIE and ":" in value:
                    who, role = unquote(value).rsplit(":", 1)
                    scope["user"] = User(who, Role(role))

        async def strict(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"content-security-policy", CSP)]
            await send(message)

        await self.app(scope, receive, strict)


def _cookies(scope: Scope) -> Iterator[tuple[str, str]]:
    for key, raw in scope.get("headers", []):
        if key == b"cookie":
            for part in raw.decode("latin-1").split(";"):
                name, _, value = part.strip().partition("=")
                yield name, value


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The engine's HTTP app with the login stand-in, on a free port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        SignedInFromCookie(build_app(settings)),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the dashboard did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def monitored(engine: Any) -> Iterator[None]:
    """The process monitor `mch-engine run` adds to a RunningEngine: its heartbeat row says
    which channels listen, as the status and the overview read it."""
    import asyncio

    from monitors.process_monitor import ProcessMonitor

    monitor = ProcessMonitor(engine.runtime)
    asyncio.run_coroutine_threadsafe(monitor.start(), engine.loop).result(30)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(monitor.stop(), engine.loop).result(30)


def require_chromium() -> None:
    """Skip without Debian's chromium on a workstation; under CI its absence is a failure."""
    if shutil.which(CHROMIUM) or os.path.exists(CHROMIUM):
        return
    message = f"{CHROMIUM} is missing (apt-get install chromium)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def browser() -> Iterator[Any]:
    """Headless Chromium, the system's own (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def signed_in(chromium: Any, base: str, name: str, role: Role, **options: Any) -> Any:
    """A page of a fresh browser context signed in as NAME with ROLE. Whatever the browser
    refuses under the Content-Security-Policy is kept in `page.csp_refusals`."""
    context = chromium.new_context(locale="zh-CN", **options)
    context.add_cookies([{"name": USER_COOKIE, "value": f"{quote(name)}:{role.value}", "url": base}])
    page = context.new_page()
    page.csp_refusals = []
    page.on(
        "console",
        lambda msg: page.csp_refusals.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return page
