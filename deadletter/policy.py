"""Retry or dead-letter: the error's class decides, the tiers of routes.yaml say when.

Transient failures (the broker or database away, timeouts, WeChat "system busy" or
rate limits) wait in delayed-retry tiers — by default 10 s, 1 min, 10 min, 1 h, the
last one repeating — until `max_attempts`; permanent ones (validation, constraint
violations, unknown recipients) and transient ones past the limit become dead
letters. An error the engine does not know is treated as transient: waiting costs
little, and it still ends in dead letters after `max_attempts`.

An error may carry `retry_after` (seconds the other side asked us to wait, an HTTP
`Retry-After`): the retry then waits at least that long, rounded up to the next tier so
a broker holds one delay queue per tier, not one per value asked; past the longest tier
it waits the longest tier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import InputError, PermanentDeliveryError

RETRY = "retry"
DEAD = "dead"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    tiers: Sequence[float] = (10.0, 60.0, 600.0, 3600.0)
    max_attempts: int = 8

    def decide(self, exc: BaseException, attempts: int) -> tuple[str, float | None]:
        """(RETRY, delay seconds) or (DEAD, None) after `attempts` failed attempts."""
        if isinstance(exc, PermanentDeliveryError | InputError):
            return DEAD, None
        if attempts >= self.max_attempts:
            return DEAD, None
        delay = self.tier_delay(attempts)
        asked = getattr(exc, "retry_after", None)
        if isinstance(asked, int | float) and asked > delay:
            delay = min((float(t) for t in self.tiers if t >= asked), default=float(max(self.tiers)))
        return RETRY, delay

    def tier_index(self, attempts: int) -> int:
        return min(max(attempts, 1), len(self.tiers)) - 1

    def tier_delay(self, attempts: int) -> float:
        return float(self.tiers[self.tier_index(attempts)])
