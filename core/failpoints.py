"""Test hook: a named point where a fault test makes the engine die as `kill -9` would.

The fault tests need to kill the engine inside windows too short to hit from outside
(between two statements of one transaction). With `MCH_TEST_FAILPOINT=NAME` in its
environment, the engine sends itself SIGKILL when it reaches the point `NAME`; without
it, `reach` does nothing. Never set it in production.
"""

from __future__ import annotations

import os
import signal

ENV = "MCH_TEST_FAILPOINT"

# The transform stage has saved a failed message's status and not yet its dead letter.
TRANSFORM_DEAD_LETTER = "transform_dead_letter"
# A db_poll channel has read rows the journal lacks and not yet committed them with its cursor.
DB_POLL_FETCHED = "db_poll_fetched"
# A derived channel has journaled outbox rows and not yet deleted them from the outbox.
DERIVED_JOURNALED = "derived_journaled"


def reach(name: str) -> None:
    """Die here, without any clean-up, if the environment names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
