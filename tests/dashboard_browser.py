"""Test support for the dashboard in a real browser: the engine's HTTP app served by uvicorn
in a thread, headless Chromium (Debian's `chromium`, driven by Playwright, nothing
downloaded), users made with the real user store and signed in through the /login form.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from core.settings import Settings
from deadletter.audit import Actor
from monitors.http_app import build_app
from monitors.web import users
from monitors.web.access import Role
from monitors.web.context import context_for
from support import free_port, unavailable

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "值班-correct-horse-42"
ADMIN = Actor("root", "root")


def add_user(settings: Settings, name: str, role: Role) -> None:
    """A dashboard user with PASSWORD, as `mch-engine users add` makes one."""
    users.add_user(context_for(settings).engine, name, role, PASSWORD, by=ADMIN)


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The engine's HTTP app, login gate and all, on a free port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        build_app(settings),
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
    unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")


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


def browsing(chromium: Any, **options: Any) -> Any:
    """A page of a fresh browser context, nobody signed in. Whatever the browser refuses
    under the Content-Security-Policy the engine sends is kept in `page.csp_refusals`."""
    context = chromium.new_context(locale="zh-CN", **options)
    page = context.new_page()
    page.csp_refusals = []
    page.on(
        "console",
        lambda msg: page.csp_refusals.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return page


def log_in(page: Any, base: str, name: str, password: str = PASSWORD) -> None:
    """Through the login form, as a person does."""
    page.goto(base + "/login")
    page.fill('input[name="name"]', name)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')


def signed_in(chromium: Any, base: str, name: str, **options: Any) -> Any:
    """A fresh browser signed in as NAME (a user made with `add_user`), on the overview."""
    page = browsing(chromium, **options)
    log_in(page, base, name)
    page.wait_for_url(base + "/")
    return page
