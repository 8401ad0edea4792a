"""The one splitter (`transforms.batch.split_frame`): noise before a segment, glued messages.

A segment starts after CR or LF, optionally followed by a BOM and blanks: a second MSH there
refuses a frame without envelope whole, and starts its own message inside FHS/BHS. `MSH` +
the frame's own delimiters inside a segment (the message before it lost its final CR) refuses
the frame or the batch whole.
"""

from __future__ import annotations

import time

import pytest

from core.errors import ParseError
from transforms.batch import first_msh, split_frame

A = b"MSH|^~\\&|LIS|10|MCH|FY01|20240321||ORU^R01|A1|P|2.4\rPID|1||0010078001\rOBX|1|NM|HGB||118\r"
B = b"MSH|^~\\&|LIS|10|MCH|FY01|20240321||ORU^R01|B1|P|2.4\rPID|1||0010078002\rOBX|1|ST|HBSAG||+\r"
NOISE = [b"\xef\xbb\xbf", b" ", b"\t", b"\x0c", b" \xef\xbb\xbf\t", b"\xef\xbb\xbf\xef\xbb\xbf"]


def refusal(payload: bytes) -> str:
    with pytest.raises(ParseError) as info:
        split_frame(payload)
    assert info.value.code == "100"
    return str(info.value)


@pytest.mark.parametrize("noise", NOISE)
def test_noise_before_a_second_msh_refuses_the_frame_naming_its_segment(noise: bytes) -> None:
    assert "segment 4 is a second MSH outside an FHS/BHS batch" in refusal(A + noise + B)


@pytest.mark.parametrize("noise", NOISE)
def test_noise_before_a_second_msh_after_lf_refuses_too(noise: bytes) -> None:
    assert "segment 4 is a second MSH" in refusal(A.replace(b"\r", b"\r\n") + noise + B)


@pytest.mark.parametrize("header", [b"FHS|^~\\&|LIS\r", b"BHS|^~\\&|LIS\r"])
def test_noise_before_an_envelope_inside_a_message_refuses_the_frame(header: bytes) -> None:
    assert "segment 4 is a second " + header[:3].decode() in refusal(A + b"\xef\xbb\xbf " + header + B)


def test_noise_before_the_first_msh_is_still_fine() -> None:
    assert split_frame(b"\xef\xbb\xbf\r\n " + A) == [b"\xef\xbb\xbf\r\n " + A]


def test_a_segment_before_an_msh_behind_noise_names_both() -> None:
    text = refusal(b"OBX|1|NM|X||1\r \xef\xbb\xbf" + A)
    assert "segment 1 (OBX) comes before the message's MSH (segment 2)" in text


def test_first_msh_skips_the_noise_before_it() -> None:
    assert first_msh(b"PID|1\r\xef\xbb\xbf " + A) == A


def test_a_message_glued_on_without_the_final_cr_is_refused() -> None:
    text = refusal(A[:-1] + B)
    assert "segment 3 (OBX) holds a second MSH inside it" in text and "whole frame" in text


def test_the_frames_own_delimiters_are_looked_for() -> None:
    """With `#` as the field separator, `MSH#^~\\&#` inside a segment is the glued message."""
    a, b = A.replace(b"|", b"#"), B.replace(b"|", b"#")
    assert "segment 3 (OBX) holds a second MSH inside it" in refusal(a[:-1] + b)
    # `MSH|` with other delimiters is data, as is MSH in a value.
    assert split_frame(a[:-1] + B) == [a[:-1] + B]
    assert split_frame(A + b"NTE|1||MSH value\r") == [A + b"NTE|1||MSH value\r"]


@pytest.mark.parametrize("noise", [b"", *NOISE])
def test_in_a_batch_noise_before_an_msh_starts_its_own_message(noise: bytes) -> None:
    batch = b"BHS|^~\\&|LIS\r" + A + noise + B + noise + b"BTS|2\r"
    assert split_frame(batch) == [A, B]


def test_in_a_batch_a_message_glued_on_without_the_final_cr_refuses_the_batch() -> None:
    text = refusal(b"FHS|^~\\&\rBHS|^~\\&\r" + A[:-1] + B + b"BTS|2\rFTS|1\r")
    assert "segment 5 (OBX) holds a second MSH inside it" in text and "whole batch is refused" in text


def test_noise_runs_cost_linear_time() -> None:
    """4 MiB of line breaks and blanks (the worst the noise pattern sees) splits well under a second."""
    for filler in (
        b"\r \t" * (1 << 20),
        b"\r" * (4 << 20),
        b"\r" + b" " * (4 << 20),
        b"\r\xef\xbb\xbf" * (1 << 20),
    ):
        started = time.perf_counter()
        assert split_frame(A + filler + b"NTE|1\r") == [A + filler + b"NTE|1\r"]
        assert time.perf_counter() - started < 1.0
