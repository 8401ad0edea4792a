"""Per-channel message limits at ingest: AR naming the limit and the field, right at the boundary."""

from __future__ import annotations

import time

import support
from channels.intake.examine import Policy, Verdict
from channels.intake.message_limits import MessageLimits
from channels.mllp.ingest import examine
from core.journal import RECEIVED, REJECTED

MSH = "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083215||ADT^A04^ADT_A01|LIM-1|P|2.5"


def one(payload: bytes, limits: MessageLimits, encoding: str = "utf-8") -> Verdict:
    verdicts = examine(payload, Policy("hospital", encoding=encoding, limits=limits))
    assert len(verdicts) == 1
    return verdicts[0]


def answer(verdict: Verdict) -> tuple[str, str, str]:
    assert verdict.ack is not None
    return support.msa(verdict.ack.encode("utf-8"))


def pid3(count: int) -> str:
    return "~".join(f"{i}^^^HIS^PI" for i in range(count))


class TestRepetitions:
    def test_at_the_limit_is_accepted_one_more_is_refused_naming_the_field(self) -> None:
        """PID-3 with max_repetitions repetitions is AA; one more is AR naming PID-3 and the limit."""
        limits = MessageLimits(max_repetitions=20)
        at = one(support.hl7(MSH, f"PID|1||{pid3(20)}||陈思雨"), limits)
        assert at.entry.status == RECEIVED and answer(at)[0] == "AA"
        over = one(support.hl7(MSH, f"PID|1||{pid3(21)}||陈思雨"), limits)
        code, control, text = answer(over)
        assert (code, control) == ("AR", "LIM-1")
        assert text.startswith("PID-3: 21 repetitions") and "max_repetitions (20)" in text
        assert over.entry.status == REJECTED and over.entry.error == text
        assert "\rERR||PID^1^3|207^" in over.ack  # type: ignore[operator]

    def test_msh_fields_are_numbered_as_hl7_numbers_them(self) -> None:
        """MSH-2's own `~` is not a repetition; a repeating MSH-18 is named MSH-18."""
        limits = MessageLimits(max_repetitions=2)
        plain = one(support.hl7(MSH + "||||||UNICODE UTF-8", "PID|1||1^^^HIS^PI"), limits)
        assert answer(plain)[0] == "AA"
        repeated = one(support.hl7(MSH + "||||||A~B~C", "PID|1||1^^^HIS^PI"), limits)
        assert answer(repeated)[2].startswith("MSH-18: 3 repetitions")

    def test_gb18030_bytes_that_look_like_delimiters_are_not_counted(self) -> None:
        """In GB18030, 億 ends in byte `|` and 唦 in `~`: Chinese names and addresses are text,
        not delimiters, so a tight limit still accepts them."""
        limits = MessageLimits(max_repetitions=2, max_field_bytes=64)
        name = "東方億^墊" * 3  # 億 = 83 7C, 墊 = 89 7C, 東 = 96 7C
        address = "唦唦路~亊亊街"  # 唦 = 86 7E, 亊 = 81 7E: two repetitions
        raw = (f"{MSH}\rPID|1||1^^^HIS^PI||{name}||||||{address}\r").encode("gb18030")
        assert raw.count(b"~") > 2 and raw.count(b"|") > 20
        verdict = one(raw, limits, encoding="gb18030")
        assert answer(verdict)[0] == "AA"


class TestSegments:
    def test_at_the_limit_is_accepted_one_more_is_refused(self) -> None:
        """MSH + PID + NTEs up to max_segments is AA; one more segment is AR naming it."""
        limits = MessageLimits(max_segments=10)
        notes = [f"NTE|{i}||第{i}行" for i in range(1, 9)]
        at = one(support.hl7(MSH, "PID|1||1^^^HIS^PI", *notes), limits)
        assert answer(at)[0] == "AA"
        over = one(support.hl7(MSH, "PID|1||1^^^HIS^PI", *notes, "NTE|9||多一行"), limits)
        code, _, text = answer(over)
        assert code == "AR" and text == "NTE: segment 11 of 11 passes this channel's max_segments (10)"

    def test_blank_lines_are_not_segments(self) -> None:
        """Empty and whitespace-only lines between segments do not count."""
        limits = MessageLimits(max_segments=3)
        raw = f"{MSH}\r\n\r\n  \rPID|1||1^^^HIS^PI\n\n\rNTE|1||x\r\r".encode()
        assert answer(one(raw, limits))[0] == "AA"


class TestFieldBytes:
    def test_at_the_limit_is_accepted_one_byte_more_is_refused(self) -> None:
        """An OBX-5 of exactly max_field_bytes is AA; one byte more is AR naming OBX-5."""
        limits = MessageLimits(max_field_bytes=1000)
        obx = "OBX|1|ED|PDF^报告||"
        at = one(support.hl7(MSH, "PID|1||1", obx + "A" * 1000), limits)
        assert answer(at)[0] == "AA"
        code, _, text = answer(one(support.hl7(MSH, "PID|1||1", obx + "A" * 1001), limits))
        assert code == "AR"
        assert text == "OBX-5: 1001 bytes (segment 3) pass this channel's max_field_bytes (1000)"

    def test_size_is_counted_in_the_messages_own_charset(self) -> None:
        """400 Chinese characters are 800 bytes in GB18030 (1,200 in UTF-8): within a 1,000-byte
        limit on a GB18030 channel, past it on a UTF-8 one."""
        limits = MessageLimits(max_field_bytes=1000)
        text = f"{MSH}\rOBX|1|TX|报告||{'宫' * 400}\r"
        assert answer(one(text.encode("gb18030"), limits, encoding="gb18030"))[0] == "AA"
        code, _, reason = answer(one(text.encode("utf-8"), limits))
        assert code == "AR" and reason.startswith("OBX-5: 1200 bytes")


def test_pathological_messages_are_examined_in_linear_time() -> None:
    """4 MiB of repetitions, segments, separators or blank lines each take well under a second
    to answer, on a UTF-8 and on a GB18030 channel (where the message is decoded first)."""
    size = 4 << 20
    head = (MSH + "\r").encode()
    hostile = {
        "repetitions": head + b"PID|1||" + b"~" * size + b"\r",
        "segments": head + b"NTE|1\r" * (size // 6),
        "separators": head + b"PID" + b"|~" * (size // 2) + b"\r",
        "blank lines": head + b"\r\n" * (size // 2),
        "one field": head + b"OBX|1|ED|||" + b"A" * size + b"\r",
    }
    for encoding in ("utf-8", "gb18030"):
        for what, raw in hostile.items():
            start = time.thread_time()  # CPU time: other work on the machine does not count
            verdict = one(raw, MessageLimits(), encoding=encoding)
            spent = time.thread_time() - start
            assert spent < 0.6, (encoding, what, spent)
            assert answer(verdict)[0] in ("AA", "AR")
