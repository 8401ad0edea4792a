"""`mch-engine check --types`: the channel and destination types this engine can build.

The answer comes from the connector registry, so a connector added under `channels/` shows
up here (and in `check`'s validation) without any other change.
"""

from __future__ import annotations

from core import connectors
from core.i18n import t

__all__ = ["known_types_text"]


def known_types_text() -> str:
    """Two lines for the operator: the channel types, then the destination types."""
    sources = ", ".join(entry.name for entry in connectors.source_types())
    destinations = ", ".join(entry.name for entry in connectors.destination_types())
    return "\n".join([t("types_channels", names=sources), t("types_destinations", names=destinations)])
