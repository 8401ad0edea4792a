"""`engine.retention` in routes.yaml: how long finished data is kept before the pruner
(engine/retention.py) deletes it, and how gently it deletes.

Every period defaults to at least 180 days: China's Cybersecurity Law (art. 21) asks network
operators to keep logs of their systems for no less than six months, and the journal, the
delivery attempts and the dead letters are what an investigation of a lost result reads.
The audit log (who did what) is kept three years and may never be shorter than any other
period. Pure technical state (dashboard sessions) is kept a day only. A period is at least
one day, so a bare `180` (seconds) is refused rather than emptying the journal.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.settings.values import Duration, PositiveDuration

__all__ = ["DAY", "PERIODS", "RetentionSettings"]

DAY = 86400
Period = Annotated[Duration, Field(ge=DAY)]

PERIODS = (
    "messages",
    "attempts",
    "dead_letters",
    "notices",
    "operator_requests",
    "alerts",
    "sessions",
    "audit",
)
"""The kinds of data with a period, in the order the pruner works on them."""


class RetentionSettings(BaseModel):
    """How long finished data is kept; nothing unfinished is ever pruned (docs/operations.md)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = Field(
        default=True, description="Run the pruner in the ingest process; false keeps everything for ever."
    )
    every: PositiveDuration = Field(default=3600, description="Time between two passes of the pruner.")
    batch: int = Field(
        default=1000,
        gt=0,
        le=10000,
        description="Rows deleted per transaction: each batch is a short transaction of its own.",
    )
    pause: Duration = Field(
        default=0.05,
        le=10,
        description="Pause between two batches, so the journal writer and the workers get the database.",
    )
    vacuum_pages: int = Field(
        default=25600,
        ge=0,
        description="SQLite: at most this many free pages (4 KiB each) given back to the file system "
        "after a pass (PRAGMA incremental_vacuum); 0 gives none back (they are reused by new rows).",
    )
    messages: Period = Field(
        default=180 * DAY,
        description="Journal rows of finished messages (routed and every delivery delivered, unrouted, "
        "rejected, or failed with its dead letters gone), with their raw bytes, deliveries and "
        "routes, this long after they were received. Default 180 days (180d).",
    )
    attempts: Period = Field(
        default=180 * DAY,
        description="Delivery attempts this long after they were made, except those of an open dead "
        "letter or of a delivery still pending. Default 180 days.",
    )
    dead_letters: Period = Field(
        default=180 * DAY,
        description="Dead letters replayed, reprocessed or purged this long ago; open ones are kept. "
        "Default 180 days.",
    )
    notices: Period = Field(
        default=365 * DAY,
        description="WeChat notices in a final status (sent, outbox, undeliverable, stale) this long "
        "after they were made; the row is what stops the same notice being sent twice, hence a "
        "year by default (365d).",
    )
    operator_requests: Period = Field(
        default=180 * DAY,
        description="Operator requests (replay, reprocess, reload) done or failed, with every "
        "process's answer, this long after they were made; queued and running ones are kept. "
        "Default 180 days.",
    )
    alerts: Period = Field(
        default=180 * DAY,
        description="Alert episodes this long after they were resolved; firing ones are kept. "
        "Default 180 days.",
    )
    sessions: Period = Field(
        default=DAY,
        description="Dashboard sessions this long after their last request: expired by then "
        "(never shorter than `engine.http.session_idle`). Default 1 day.",
    )
    audit: Period = Field(
        default=1095 * DAY,
        description="Audit log entries this long after they were written; never shorter than any "
        "other period. Default 3 years (1095d).",
    )

    @model_validator(mode="after")
    def _audit_outlives_the_rest(self) -> RetentionSettings:
        longest = max(
            self.messages, self.attempts, self.dead_letters, self.notices, self.operator_requests, self.alerts
        )
        if self.audit < longest:
            raise ValueError(
                f"retention.audit ({self.audit / DAY:g} days) must be at least the longest other "
                f"period ({longest / DAY:g} days): the audit log explains what was done to them"
            )
        return self

    def period(self, kind: str) -> float:
        """Seconds a row of `kind` (one of PERIODS) is kept."""
        return float(getattr(self, kind))
