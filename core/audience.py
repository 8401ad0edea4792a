"""Whom a destination reaches, and which records it may be handed.

Every destination declares in routes.yaml whom it reaches (`reaches:`): `system` (a store, or
a forwarder to another system: the default), `staff`, `pmtct_officer` or `patient`. A record
may carry an `audience` (a PMTCT case: `pmtct_officer`). A record whose audience is set goes
only to a destination that reaches `system` or exactly that audience, and never to one that
reaches `patient`, whatever the routes say. A record without an audience goes anywhere.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["PATIENT", "PMTCT_OFFICER", "REACHES", "STAFF", "SYSTEM", "Reach", "audience_of", "may_receive"]

SYSTEM = "system"
STAFF = "staff"
PMTCT_OFFICER = "pmtct_officer"
PATIENT = "patient"
REACHES = (SYSTEM, STAFF, PMTCT_OFFICER, PATIENT)
Reach = Literal["system", "staff", "pmtct_officer", "patient"]


def may_receive(reaches: str, audience: str | None) -> bool:
    """Whether a destination that reaches `reaches` may be handed a record for `audience`."""
    if not audience:
        return True
    if reaches == PATIENT:
        return False
    return reaches in (SYSTEM, audience)


def audience_of(record: Any) -> str | None:
    """The audience a canonical record (as a dict) carries, or None."""
    audience = record.get("audience") if isinstance(record, dict) else None
    return audience if isinstance(audience, str) and audience else None
