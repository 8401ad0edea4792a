from __future__ import annotations

from typing import Any

import pytest

from core import i18n
from engine import logging as engine_logging


@pytest.fixture(autouse=True)
def _quiet_structured_logs() -> None:
    """Logs go through the real masking pipeline, into a buffer rather than the test output;
    again for each test, since a command run in-process configures the log for itself."""
    from support import ENGINE_LOG

    engine_logging.configure("warning", stream=ENGINE_LOG)


@pytest.fixture(autouse=True)
def _default_language() -> None:
    """Each test starts in the default language: a command run with `--lang en` sets it for the
    whole process, as it should for one command, not for the tests after it."""
    i18n.set_language("zh")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a worker of `pytest -n N` (pytest-xdist): hand the figures to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        from support import REPORT

        workeroutput["figures"] = list(REPORT)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """In the controller: collect each worker's figures for the summary below."""
    from support import REPORT

    REPORT.extend(getattr(node, "workeroutput", {}).get("figures", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Figures tests want a reader of the CI log to see (conformance counts and the like)."""
    from support import REPORT

    if REPORT:
        terminalreporter.section("figures")
        for line in REPORT:
            terminalreporter.write_line(line)
