"""MLLP framing for the harness's own sender and peers.

The bench deliberately does not import the engine's framing (channels/mllp/framing.py):
the load generator is the oracle that checks the engine, so it must not share the code
under test, and the peers must cost what a minimal server costs.
"""

from __future__ import annotations

SB = b"\x0b"
EB_CR = b"\x1c\x0d"
EB = b"\x1c"


def frame(payload: bytes) -> bytes:
    """One MLLP frame: 0x0B, the message, 0x1C 0x0D."""
    return SB + payload + EB_CR


class FrameSplitter:
    """Incremental decoder: feed socket data, get complete payloads back.

    Lenient on purpose (an end block without its CR still ends a frame; bytes outside a
    frame are skipped): a peer that rejected odd framing would measure less than the
    engine does.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        start = 0
        while True:
            sb = buf.find(SB, start)
            if sb < 0:
                start = len(buf)
                break
            eb = buf.find(EB, sb + 1)
            if eb < 0:
                start = sb
                break
            out.append(bytes(buf[sb + 1 : eb]))
            start = eb + 1
            if start < len(buf) and buf[start] == 0x0D:
                start += 1
        if start:
            del buf[:start]
        return out
