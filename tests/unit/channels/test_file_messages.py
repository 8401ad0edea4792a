"""How a dropped file is cut into messages: line endings, batches, messages one after another,
and the files refused whole."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.file.messages import normalise, split_file
from channels.file.source import peer_of

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
        (MSH_A + b"\n" + PID_A + b"\nBTS|1\n" + MSH_B + b"\n", "batch envelope segment"),
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


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([MSH_A, MSH_B, PID_A, b"FHS|^~\\&", b"BHS|^~\\&", b"BTS|1", b"", b"\x00\xff"])),
    st.sampled_from([b"\r", b"\n", b"\r\n"]),
)
def test_any_file_is_messages_starting_with_msh_or_one_refused_piece(lines: list[bytes], eol: bytes) -> None:
    """Whatever the file holds, no exception: either one refused piece, or messages of which each
    starts at its MSH and together hold every segment of the file (nothing dropped)."""
    content = eol.join(lines)
    pieces = split_file(content)
    if pieces[0].index == 0:
        assert len(pieces) == 1 and pieces[0].refusal is not None
        return
    assert [p.index for p in pieces] == list(range(1, len(pieces) + 1))
    if not pieces[0].payload.startswith(b"MSH"):  # no MSH at all: one piece, rejected when examined
        assert [p.payload for p in pieces] == [normalise(content)]
        return
    assert all(p.payload.startswith(b"MSH") and p.refusal is None for p in pieces)
    kept = b"".join(p.payload for p in pieces)
    envelope = (b"FHS", b"BHS", b"BTS", b"FTS")
    expected = [s for s in normalise(content).split(b"\r")[:-1] if not s.startswith(envelope)]
    assert kept.split(b"\r")[:-1] == expected
