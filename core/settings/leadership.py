"""The `engine.leadership:` section of routes.yaml: two servers, one active, one standby
(engine/leadership.py, docs/operations.md).

The lock lives in the shared PostgreSQL, so both servers must use the same `name`; two
engines of different hospitals on one PostgreSQL use different names.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from core.settings.values import PositiveDuration

__all__ = ["LeadershipSettings"]


class LeadershipSettings(BaseModel):
    """Active/standby: only the server holding the lock runs sources, journal writer,
    transform and schedulers; both deliver."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = Field(
        default=False,
        description="Run as one of two servers sharing PostgreSQL and RabbitMQ: the one holding "
        "the lock leads (listens, polls, transforms), the other waits as standby and takes over "
        "when the leader dies. Needs a postgresql database and an amqp:// broker.",
    )
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")] = Field(
        default="mch-engine",
        description="Name of the lock: the same on both servers of one site, different for two "
        "sites sharing one PostgreSQL.",
    )
    check_every: Annotated[PositiveDuration, Field(le=1.0)] = Field(
        default=1.0,
        description="How often the standby tries the lock and the leader checks it still holds it "
        "(duration, at most 1s: a leader that lost its database must notice before PostgreSQL "
        "frees the lock for the standby).",
    )
