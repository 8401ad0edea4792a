"""The edge's decisions without sockets: which address the allow-list admits (IPv4 through a
dual-stack listener too), when a limit refuses, and when a frame's deadline starts again."""

from __future__ import annotations

import ipaddress

from channels.mllp.edge import Gate, Limits
from channels.mllp.framing import MllpDecoder, frame

NETS = (
    ipaddress.ip_network("10.1.2.0/24"),
    ipaddress.ip_network("10.1.3.7"),
    ipaddress.ip_network("fd00::/64"),
)


def test_allow_list_matches_networks_hosts_and_ipv4_behind_a_dual_stack_listener() -> None:
    gate, limits = Gate(), Limits(allow=NETS)
    for host in ("10.1.2.200", "10.1.3.7", "::ffff:10.1.2.9", "fd00::12", "fd00::1%eth0"):
        assert gate.refusal(host, limits) is None, host
    for host in ("10.1.3.8", "10.1.4.1", "::1", "fd01::1", "not-an-address"):
        assert gate.refusal(host, limits) == "not_allowed", host
    assert gate.refusal("192.0.2.1", Limits()) is None  # no list: everyone


def test_limits_count_open_connections_per_channel_and_per_address() -> None:
    gate = Gate()
    per_address, per_channel = Limits(max_per_address=2), Limits(max_connections=3)
    for host in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        gate.enter(host)
    assert gate.refusal("10.0.0.1", per_address) == "over_limit"
    assert gate.refusal("10.0.0.2", per_address) is None
    assert gate.refusal("10.0.0.3", per_channel) == "over_limit"
    gate.leave("10.0.0.1")
    assert gate.refusal("10.0.0.1", per_address) is None and gate.refusal("10.0.0.3", per_channel) is None


def test_each_frame_starts_its_own_span_and_a_garbage_burst_is_one() -> None:
    decoder = MllpDecoder(1 << 20)
    decoder.feed(frame(b"MSH|1") + frame(b"MSH|2")[:4])
    assert decoder.started == 2 and decoder.pending  # the second frame is open, timed on its own
    decoder.feed(b"|2\x1c\r")
    assert not decoder.pending
    for chunk in (b"junk", b"\x0b", b"\x0bx", b"\x0b"):  # a trickle of garbage and start blocks
        decoder.feed(chunk)
    assert decoder.started == 3 and decoder.pending
