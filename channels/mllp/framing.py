"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol): 0x0B <message> 0x1C 0x0D.

An incremental decoder: feed it whatever the socket gave and it returns complete
frames, or a `BadFrame` saying what was wrong. Framing never depends on the
message's charset: the three framing bytes cannot occur inside GB18030 or UTF-8
text. Rules, documented for senders in docs/mllp.md:

- A frame longer than `max_bytes` is answered once its end arrives; the first
  `max_bytes` are kept for the journal.
- A start block (0x0B) inside an open frame means the open frame was truncated:
  it is reported when it holds the start of a message (MSH, FHS or BHS), and the
  new frame begins.
- Bytes outside any frame (other than whitespace) are collected and reported as
  `stray`; they cannot be answered in MLLP, since a sender reads one answer per frame.
  A cut-off "frame" that holds no message start (runs of 0x0B, junk between start
  blocks) is garbage of the same kind: a whole burst of it is one `stray` event,
  reported before the next real frame or at the end, never one event per byte.
- An end block 0x1C not followed by 0x0D still ends the frame (lenient).
"""

from __future__ import annotations

from dataclasses import dataclass

SB = 0x0B
EB = 0x1C
CR = 0x0D
_SB = bytes([SB])
_EB = bytes([EB])


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes


@dataclass(frozen=True, slots=True)
class BadFrame:
    kind: str  # "oversize" | "truncated" | "stray"
    payload: bytes  # what was kept (at most max_bytes)
    size: int  # how many bytes the sender sent for it

    def reason(self, max_bytes: int) -> str:
        if self.kind == "oversize":
            return f"message of {self.size} bytes exceeds the channel limit of {max_bytes} bytes"
        if self.kind == "truncated":
            return (
                f"frame truncated after {self.size} bytes: a new start block 0x0B came "
                "before the end block 0x1C 0x0D"
            )
        return (
            f"{self.size} bytes received outside an MLLP frame (bytes before a 0x0B start block, "
            "or start blocks with no message after them)"
        )


Event = Frame | BadFrame


class MllpDecoder:
    """Turns a byte stream into frames; keeps at most `max_bytes` of any one frame."""

    __slots__ = ("_buf", "_discarded", "_in_frame", "_max", "_stray", "_stray_size", "started")

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buf = bytearray()
        self._in_frame = False
        self._discarded = 0  # bytes of the open frame beyond max_bytes
        self._stray = bytearray()
        self._stray_size = 0
        # Spans begun so far: a frame, or a burst of stray bytes and the frame it runs into.
        # The source times each span (its frame deadline); a new span restarts the clock.
        self.started = 0

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        pos = 0
        n = len(data)
        while pos < n:
            if not self._in_frame:
                start = data.find(_SB, pos)
                outside = data[pos:] if start < 0 else data[pos:start]
                self._collect_stray(outside)
                if start < 0:
                    break
                self._open_frame()
                pos = start + 1
                continue
            end = data.find(_EB, pos)
            restart = data.find(_SB, pos)
            if restart >= 0 and (end < 0 or restart < end):
                self._append(data[pos:restart])
                if self._holds_message():
                    self._report(events, self._close("truncated"))
                else:  # garbage: part of the current burst of stray bytes
                    self._collect_stray(_SB + self._buf)
                    self._stray_size += self._discarded
                    self._buf.clear()
                    self._discarded = 0
                self._open_frame()
                pos = restart + 1
                continue
            if end < 0:
                self._append(data[pos:])
                break
            self._append(data[pos:end])
            self._report(events, self._close(None))
            pos = end + 1
            if pos < n and data[pos] == CR:
                pos += 1
        return events

    def finish(self) -> list[Event]:
        """The connection closed: report what was left half-sent."""
        events: list[Event] = []
        if self._in_frame and (self._buf or self._discarded):
            events.append(self._close("truncated"))
        if self._stray_size:
            events.append(self._take_stray())
        self._in_frame = False
        return events

    @property
    def max_bytes(self) -> int:
        return self._max

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        """A channel's new limit (a reload): applies to what arrives from now on."""
        self._max = value

    @property
    def open_size(self) -> int:
        """Bytes of the frame (or stray burst) not yet complete."""
        return len(self._buf) + self._discarded + self._stray_size

    @property
    def stray_size(self) -> int:
        return self._stray_size

    @property
    def pending(self) -> bool:
        return self._in_frame or bool(self._stray_size)

    def _open_frame(self) -> None:
        if not self._stray_size:  # stray bytes before it began the span already
            self.started += 1
        self._in_frame = True

    def _holds_message(self) -> bool:
        """The open frame starts like a message (after whitespace and a BOM), so it gets an answer."""
        head = bytes(self._buf[:16]).lstrip(b" \t\r\n").removeprefix(b"\xef\xbb\xbf")
        return head[:3] in (b"MSH", b"FHS", b"BHS")

    def _report(self, events: list[Event], event: Event) -> None:
        """Report a frame, after the burst of stray bytes that came before it."""
        if self._stray_size:
            events.append(self._take_stray())
        events.append(event)

    def _append(self, chunk: bytes) -> None:
        room = self._max - len(self._buf)
        if len(chunk) <= room:
            self._buf += chunk
        else:
            self._buf += chunk[: max(room, 0)]
            self._discarded += len(chunk) - max(room, 0)

    def _close(self, kind: str | None) -> Event:
        payload = bytes(self._buf)
        size = len(payload) + self._discarded
        self._buf.clear()
        self._in_frame = False
        oversize = self._discarded > 0
        self._discarded = 0
        if kind is None and not oversize:
            return Frame(payload)
        return BadFrame(kind or "oversize", payload, size)

    def _collect_stray(self, chunk: bytes) -> None:
        if not self._stray_size:
            chunk = chunk.lstrip(b" \t\r\n\x1c")
        if not chunk:
            return
        if not self._stray_size and not self._in_frame:
            self.started += 1
        room = self._max - len(self._stray)
        self._stray += chunk[: max(room, 0)]
        self._stray_size += len(chunk)

    def _take_stray(self) -> BadFrame:
        event = BadFrame("stray", bytes(self._stray), self._stray_size)
        self._stray.clear()
        self._stray_size = 0
        return event


def frame(payload: bytes) -> bytes:
    return _SB + payload + _EB + b"\r"
