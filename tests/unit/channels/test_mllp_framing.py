"""Unit tests for the incremental MLLP decoder (channels.mllp.framing)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from channels.mllp.framing import BadFrame, Frame, MllpDecoder, frame

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
MSG = "MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113502||ORU^R01|C1|P|2.4\rPID|1||陈思雨\r".encode()


def feed_all(decoder: MllpDecoder, chunks: list[bytes]) -> list[Frame | BadFrame]:
    events: list[Frame | BadFrame] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (clamped and sorted)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


class TestFrame:
    def test_frame_wraps_payload_in_start_and_end_blocks(self) -> None:
        """`frame` puts 0x0B before the payload and 0x1C 0x0D after it."""
        assert frame(b"abc") == b"\x0babc\x1c\r"

    def test_frame_of_empty_payload_decodes_to_empty_frame(self) -> None:
        """An empty payload still makes a frame that decodes back to an empty payload."""
        assert MllpDecoder(10).feed(frame(b"")) == [Frame(b"")]


class TestMllpDecoderCompleteFrames:
    def test_one_frame_in_one_chunk(self) -> None:
        """A whole frame fed at once yields its payload, framing bytes removed."""
        assert MllpDecoder(1024).feed(frame(MSG)) == [Frame(MSG)]

    def test_frame_fed_byte_by_byte(self) -> None:
        """A frame arriving one byte at a time yields the frame exactly once, at the end."""
        decoder = MllpDecoder(1024)
        data = frame(MSG)
        events: list[Frame | BadFrame] = []
        for i in range(len(data)):
            got = decoder.feed(data[i : i + 1])
            if i < len(data) - 2:
                assert got == [], f"event before the end block at byte {i}"
            events += got
        assert events == [Frame(MSG)]
        assert not decoder.pending

    def test_frame_split_at_every_boundary(self) -> None:
        """Wherever a frame is cut in two, the decoder yields the same single frame."""
        data = frame(MSG)
        for cut in range(len(data) + 1):
            decoder = MllpDecoder(1024)
            assert feed_all(decoder, [data[:cut], data[cut:]]) == [Frame(MSG)], cut

    def test_end_block_and_carriage_return_in_separate_chunks(self) -> None:
        """The 0x0D that follows 0x1C in the next chunk is not reported as stray."""
        decoder = MllpDecoder(1024)
        events = feed_all(decoder, [SB + b"one" + EB, CR + SB + b"two" + EB, CR])
        assert events == [Frame(b"one"), Frame(b"two")]
        assert decoder.finish() == []

    def test_several_frames_in_one_chunk(self) -> None:
        """Three frames in one read come out as three frames, in order."""
        data = frame(b"a") + frame(b"bb") + frame(b"ccc")
        assert MllpDecoder(100).feed(data) == [Frame(b"a"), Frame(b"bb"), Frame(b"ccc")]

    def test_multibyte_chinese_payload_is_kept_byte_exact(self) -> None:
        """GB18030 and UTF-8 text (incl. 4-byte characters) passes through untouched."""
        for payload in ("𠮷晓芸".encode("gb18030"), "𠮷晓芸 䶮".encode(), "龚䶮".encode("gb18030")):
            assert MllpDecoder(100).feed(frame(payload)) == [Frame(payload)]

    def test_whitespace_between_frames_is_ignored(self) -> None:
        """Spaces, tabs, CR and LF between frames are not reported as stray bytes."""
        decoder = MllpDecoder(100)
        events = decoder.feed(frame(b"a") + b" \t\r\n\r\n" + frame(b"b") + b"\n")
        assert events == [Frame(b"a"), Frame(b"b")]
        assert decoder.finish() == []
        assert not decoder.pending

    def test_end_block_without_carriage_return_still_ends_the_frame(self) -> None:
        """0x1C not followed by 0x0D ends the frame (lenient), and the next frame still parses."""
        decoder = MllpDecoder(100)
        assert decoder.feed(SB + b"one" + EB + SB + b"two" + EB + CR) == [
            Frame(b"one"),
            Frame(b"two"),
        ]

    def test_byte_after_bare_end_block_is_stray(self) -> None:
        """After a bare 0x1C, a non-whitespace byte is outside any frame and reported as stray."""
        decoder = MllpDecoder(100)
        assert decoder.feed(SB + b"one" + EB + b"X") == [Frame(b"one")]
        assert decoder.finish() == [BadFrame("stray", b"X", 1)]


class TestMllpDecoderOversize:
    def test_oversize_frame_keeps_first_max_bytes_and_total_size(self) -> None:
        """A frame longer than max_bytes is reported as oversize with its first max_bytes kept."""
        payload = bytes(range(0x20, 0x20 + 50))
        events = MllpDecoder(10).feed(frame(payload))
        assert events == [BadFrame("oversize", payload[:10], 50)]

    def test_oversize_is_answered_only_when_the_end_arrives(self) -> None:
        """Nothing is reported while an oversize frame is still arriving."""
        decoder = MllpDecoder(8)
        payload = b"x" * 40
        data = frame(payload)
        assert decoder.feed(data[:30]) == []
        assert decoder.feed(data[30:-2]) == []
        assert decoder.pending
        assert decoder.feed(data[-2:]) == [BadFrame("oversize", b"x" * 8, 40)]

    def test_frame_of_exactly_max_bytes_is_accepted(self) -> None:
        """A payload of exactly max_bytes is a normal frame; one byte more is oversize."""
        assert MllpDecoder(5).feed(frame(b"12345")) == [Frame(b"12345")]
        assert MllpDecoder(5).feed(frame(b"123456")) == [BadFrame("oversize", b"12345", 6)]

    def test_decoder_continues_after_oversize(self) -> None:
        """A normal frame after an oversize one decodes normally."""
        decoder = MllpDecoder(4)
        events = decoder.feed(frame(b"toolong") + frame(b"ok"))
        assert events == [BadFrame("oversize", b"tool", 7), Frame(b"ok")]

    def test_oversize_reason_names_size_and_limit(self) -> None:
        """The oversize reason quotes the size sent and the channel limit."""
        (event,) = MllpDecoder(10).feed(frame(b"y" * 25))
        assert isinstance(event, BadFrame)
        reason = event.reason(10)
        assert "25" in reason and "10" in reason


class TestMllpDecoderTruncated:
    def test_start_block_inside_open_frame_reports_truncation(self) -> None:
        """A 0x0B inside an open frame reports the open one as truncated and starts a new one."""
        decoder = MllpDecoder(100)
        events = decoder.feed(SB + b"MSH|half" + SB + b"whole" + EB + CR)
        assert events == [BadFrame("truncated", b"MSH|half", 8), Frame(b"whole")]

    def test_truncation_across_chunks(self) -> None:
        """The truncation is found when the new start block arrives in a later chunk."""
        decoder = MllpDecoder(100)
        assert decoder.feed(SB + b"MSH|half") == []
        assert decoder.feed(SB + b"whole" + EB + CR) == [
            BadFrame("truncated", b"MSH|half", 8),
            Frame(b"whole"),
        ]

    def test_truncated_oversize_frame_reports_total_size(self) -> None:
        """A truncated frame longer than max_bytes keeps max_bytes and counts everything."""
        decoder = MllpDecoder(3)
        events = decoder.feed(SB + b"MSH|defg" + SB + b"ok" + EB + CR)
        assert events == [BadFrame("truncated", b"MSH", 8), Frame(b"ok")]

    def test_truncated_reason_mentions_the_start_block(self) -> None:
        """The truncation reason explains the new 0x0B before the end block."""
        (event, _) = MllpDecoder(100).feed(SB + b"MSH|half" + SB + b"x" + EB)
        assert isinstance(event, BadFrame)
        assert "truncated" in event.reason(100) and "0x0B" in event.reason(100)

    def test_start_blocks_with_no_message_after_them_are_one_burst(self) -> None:
        """5,000 stray 0x0B and junk between start blocks: one stray event, then the real frame."""
        burst = SB * 5000 + b"junk" + SB + b"more junk" + SB + b"\r\n"
        for chunks in ([burst + frame(b"MSH|ok")], [bytes([b]) for b in burst + frame(b"MSH|ok")]):
            decoder = MllpDecoder(100)
            events = feed_all(decoder, chunks)
            assert events == [BadFrame("stray", burst[:100], len(burst)), Frame(b"MSH|ok")]
            assert decoder.finish() == []

    def test_a_burst_left_at_the_end_is_one_stray_event(self) -> None:
        """Start blocks and junk with nothing after them are reported once, when the connection ends."""
        decoder = MllpDecoder(100)
        assert decoder.feed(frame(b"MSH|a") + SB * 300 + b"x" + SB) == [Frame(b"MSH|a")]
        assert decoder.finish() == [BadFrame("stray", (SB * 300)[:100], 301)]


class TestMllpDecoderStray:
    def test_bytes_before_a_frame_are_stray(self) -> None:
        """Non-whitespace bytes outside a frame are reported once the next frame starts."""
        decoder = MllpDecoder(100)
        events = decoder.feed(b"GARBAGE" + frame(b"ok"))
        assert events == [BadFrame("stray", b"GARBAGE", 7), Frame(b"ok")]

    def test_stray_bytes_are_kept_up_to_max_bytes_and_counted(self) -> None:
        """Stray bytes keep at most max_bytes but count all of them."""
        decoder = MllpDecoder(4)
        events = feed_all(decoder, [b"abcdef", b"ghij", frame(b"ok")])
        assert events == [BadFrame("stray", b"abcd", 10), Frame(b"ok")]

    def test_stray_size_is_visible_while_pending(self) -> None:
        """The decoder tells how many stray bytes it is holding before they are reported."""
        decoder = MllpDecoder(100)
        assert decoder.feed(b"\r\nnoise") == []
        assert decoder.stray_size == 5
        assert decoder.pending

    def test_stray_reason_says_no_start_block(self) -> None:
        """The stray reason says the bytes came outside an MLLP frame."""
        assert "outside an MLLP frame" in BadFrame("stray", b"x", 1).reason(100)


class TestMllpDecoderFinish:
    def test_finish_reports_half_sent_frame(self) -> None:
        """Closing the connection in the middle of a frame reports it as truncated."""
        decoder = MllpDecoder(100)
        decoder.feed(SB + b"partial")
        assert decoder.finish() == [BadFrame("truncated", b"partial", 7)]
        assert not decoder.pending

    def test_finish_reports_trailing_stray_bytes(self) -> None:
        """Closing with stray bytes pending reports them."""
        decoder = MllpDecoder(100)
        decoder.feed(frame(b"ok") + b"tail")
        assert decoder.finish() == [BadFrame("stray", b"tail", 4)]

    def test_finish_after_complete_frames_reports_nothing(self) -> None:
        """A clean close after whole frames reports nothing."""
        decoder = MllpDecoder(100)
        decoder.feed(frame(b"a") + frame(b"b"))
        assert decoder.finish() == []
        assert not decoder.pending

    def test_finish_reports_oversize_partial_frame_with_total_size(self) -> None:
        """A half-sent frame beyond max_bytes keeps max_bytes and counts every byte."""
        decoder = MllpDecoder(2)
        decoder.feed(SB + b"abcdef")
        assert decoder.finish() == [BadFrame("truncated", b"ab", 6)]


_payload = st.binary(max_size=60).map(lambda b: b.replace(SB, b"").replace(EB, b""))


class TestMllpDecoderProperties:
    @settings(max_examples=150, deadline=None)
    @given(payloads=st.lists(_payload, max_size=8), cuts=st.lists(st.integers(0, 600)))
    def test_framed_payloads_round_trip_in_any_chunking(self, payloads: list[bytes], cuts: list[int]) -> None:
        """Framed payloads fed in arbitrary chunks come back as exactly those frames."""
        data = b"".join(frame(p) for p in payloads)
        decoder = MllpDecoder(64)
        events = feed_all(decoder, split_at(data, cuts))
        events += decoder.finish()
        assert events == [Frame(p) for p in payloads]

    @settings(max_examples=200, deadline=None)
    @given(
        data=st.binary(max_size=300)
        | st.lists(st.sampled_from([SB, EB, CR, b" ", b"a", b"bc"]), max_size=80).map(b"".join),
        cuts=st.lists(st.integers(0, 300)),
        max_bytes=st.integers(1, 16),
    )
    def test_arbitrary_bytes_never_raise_and_memory_is_bounded(
        self, data: bytes, cuts: list[int], max_bytes: int
    ) -> None:
        """Any bytes in any chunks are decoded without error, keeping at most max_bytes per frame."""
        decoder = MllpDecoder(max_bytes)
        events: list[Frame | BadFrame] = []
        for chunk in split_at(data, cuts):
            events += decoder.feed(chunk)
            # What the decoder holds for the open frame and for stray bytes stays bounded.
            assert len(decoder._buf) <= max_bytes
            assert len(decoder._stray) <= max_bytes
        events += decoder.finish()
        for event in events:
            assert len(event.payload) <= max_bytes
            if isinstance(event, BadFrame):
                assert event.kind in {"oversize", "truncated", "stray"}
                assert event.size >= len(event.payload)
        reported = sum(e.size if isinstance(e, BadFrame) else len(e.payload) for e in events)
        assert reported <= len(data)
