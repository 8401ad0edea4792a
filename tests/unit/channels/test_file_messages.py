"""How a dropped file is cut into messages: line endings, batches, messages one after another,
and the files refused whole."""

from __future__ import annotations

import pytest

from channels.file_messages import normalise, split_file
from channels.file_source import peer_of

MSH_A = b"MSH|^~\\&|LIS|10|MCH|FY01|20240321113502||ORU^R01|A-1|P|2.4"
MSH_B = b"MSH|^~\\&|LIS|10|MCH|FY01|20240321113502||ORU^R01|B-1|P|2.4"
PID_A = b"PID|1||0010031207^^^HIS^PI||A"
PID_B = b"PID|1||0010031208^^^HIS^PI||B"


@pytest.mark.parametrize("eol", [b"\r", b"\n", b"\r\n"])
def test_any_line_ending_gives_the_same_cr_message(eol: bytes) -> None:
    pieces = split_file(MSH_A + eol + PID_A + eol)
    assert [(p.index, p.payload, p.refusal) for p in pieces] == [(1, MSH_A + b"\r" + PID_A + b"\r", None)]


def test_messages_one_after_another_are_each_a_message() -> None:
    """A file of two messages without FHS/BHS (blank line between, no final line end) is two messages."""
    pieces = split_file(MSH_A + b"\n" + PID_A + b"\n\n" + MSH_B + b"\n" + PID_B)
    assert [p.index for p in pieces] == [1, 2]
    assert pieces[0].payload == MSH_A + b"\r" + PID_A + b"\r"
    assert pieces[1].payload == MSH_B + b"\r" + PID_B + b"\r"


def test_a_batch_is_split_by_its_envelope() -> None:
    content = b"\r\n".join([b"FHS|^~\\&", b"BHS|^~\\&", MSH_A, PID_A, MSH_B, PID_B, b"BTS|2", b"FTS|1"])
    pieces = split_file(b"\xef\xbb\xbf" + content + b"\r\n")
    assert [p.payload for p in pieces] == [MSH_A + b"\r" + PID_A + b"\r", MSH_B + b"\r" + PID_B + b"\r"]
    assert all(p.refusal is None for p in pieces)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (PID_A + b"\n" + MSH_A + b"\n", "comes before the message's MSH"),
        (b"BHS|^~\\&\n" + PID_A + b"\n" + MSH_A + b"\nBTS|1\n", "not inside a message"),
        (b"BHS|^~\\&\nBTS|0\n", "no message"),
        (b"\r\n \n", "no segment"),
    ],
)
def test_a_file_that_cannot_be_read_safely_is_refused_whole(content: bytes, says: str) -> None:
    [piece] = split_file(content)
    assert piece.index == 0 and piece.refusal is not None
    assert says in str(piece.refusal)


def test_normalise_keeps_gb18030_bytes() -> None:
    text = "PID|1||1^^^HIS^PI||王小红".encode("gb18030")
    assert normalise(text + b"\r\n") == text + b"\r"


def test_peer_names_file_and_index_within_the_journal_column() -> None:
    assert peer_of("lab.hl7", 3) == "file:lab.hl7#3"
    assert peer_of("lab.hl7", 0) == "file:lab.hl7"
    long = peer_of("x" * 200 + ".hl7", 12)
    assert len(long) == 80 and long.endswith(".hl7#12")
