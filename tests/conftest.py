from __future__ import annotations

import pytest

from core import i18n
from engine import logging as engine_logging


@pytest.fixture(autouse=True, scope="session")
def _quiet_structured_logs() -> None:
    """Logs go through the real masking pipeline, into a buffer rather than the test output."""
    from support import ENGINE_LOG

    engine_logging.configure("warning", stream=ENGINE_LOG)


@pytest.fixture(autouse=True)
def _default_language() -> None:
    """Each test starts in the default language: a command run with `--lang en` sets it for the
    whole process, as it should for one command, not for the tests after it."""
    i18n.set_language("zh")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Figures tests want a reader of the CI log to see (conformance counts and the like)."""
    from support import REPORT

    if REPORT:
        terminalreporter.section("figures")
        for line in REPORT:
            terminalreporter.write_line(line)
