"""Structured JSON logs with patient data masked, always, for every command.

Every logger goes through `mask_pii`: values under keys that name personal data
(name, id_card, phone, address, …) are masked, and any string anywhere in the
event that looks like a 身份证号 (18 or 15 digits) or a mainland mobile number is
masked too, so an error text that quotes a field value cannot leak one. A database
error's echo of a row (`Failing row contains (…)`, `Key (…)=(…)`) is cut out. Record
ids and person keys carry a HIS patient id as their last part
(`person:HIS:0010031207`): logs keep their kind and system and the id's last four
characters only (`person:HIS:******1207`). `mch-engine` calls `configure` once, in
`main()`, before any command runs.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import structlog

from core.masking import mask_value


def mask_pii(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: mask_value(k, v) for k, v in event.items()}


class _Sink:
    """Where every line goes: the stream `configure` was last given, else whatever
    `sys.stderr` is when the line is written. One object for the process, so a logger cached
    on its first use follows a later `configure` (a test's in-process command configures too)."""

    target: TextIO | None = None
    level: int = logging.INFO

    def write(self, text: str) -> int:
        return (self.target or sys.stderr).write(text)

    def flush(self) -> None:
        (self.target or sys.stderr).flush()


_SINK = _Sink()
_METHOD_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                  "warn": logging.WARNING, "error": logging.ERROR, "exception": logging.ERROR,
                  "critical": logging.CRITICAL, "fatal": logging.CRITICAL}  # fmt: skip


def _below_level(_logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Drop what is under the configured level. A processor rather than a filtering logger
    class: loggers are cached on first use, and the level must follow a later `configure`."""
    if _METHOD_LEVELS.get(method, logging.INFO) < _SINK.level:
        raise structlog.DropEvent
    return event


def configure(level: str = "info", stream: Any = None) -> None:
    """JSON lines to stderr (or `stream`), masking first in the pipeline's last steps."""
    _SINK.target, _SINK.level = stream, getattr(logging, level.upper())
    structlog.configure(
        processors=[
            _below_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_pii,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, _SINK)),
        cache_logger_on_first_use=True,
    )
