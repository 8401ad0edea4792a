"""Who may hold a connection to an MLLP listener: the sender allow-list and the connection
limits, decided when the connection is accepted and before a byte of it is read."""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass

__all__ = ["Gate", "Limits", "Network", "peer_address"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's address; an IPv4 sender reaching a dual-stack (`::`) listener as IPv4."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class Limits:
    allow: tuple[Network, ...] = ()  # empty: every address
    max_connections: int | None = None
    max_per_address: int | None = None


class Gate:
    """Counts a channel's open connections per address and says which new one to refuse."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()

    def refusal(self, host: str, limits: Limits) -> str | None:
        """Why a connection from `host` is refused ('not_allowed' or 'over_limit'), or None."""
        if limits.allow:
            address = peer_address(host)
            if address is None or not any(address in net for net in limits.allow):
                return "not_allowed"
        if limits.max_connections is not None and self.open.total() >= limits.max_connections:
            return "over_limit"
        if limits.max_per_address is not None and self.open[host] >= limits.max_per_address:
            return "over_limit"
        return None

    def enter(self, host: str) -> None:
        self.open[host] += 1

    def leave(self, host: str) -> None:
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]
