"""Unit tests for HL7 v2 acknowledgements (channels.mllp.ack)."""

from __future__ import annotations

from datetime import datetime

import pytest

from channels.mllp.ack import AckInfo, ack_code, build_ack, parse_ack, parse_acks, wrap_batch
from transforms.hl7v2 import Message, MshHeader, read_msh


def msh_of(
    *,
    version: str = "2.5",
    charset: str = "UNICODE UTF-8",
    accept_ack: str = "AL",
    message_type: str = "ADT^A04^ADT_A01",
    control_id: str = "HIS2024032108321500017",
    seps: str = "|^~\\&",
) -> MshHeader:
    fs, enc = seps[0], seps[1:]
    comp = enc[0]
    fields = [
        "MSH",
        enc,
        "HIS",
        "FY01",
        "MCHENGINE",
        "FY02",
        "20240321083215",
        "",
        message_type.replace("^", comp),
        control_id,
        "P",
        version,
        "",
        "",
        accept_ack,
        "NE",
        "CHN",
        charset,
    ]
    return read_msh((fs.join(fields) + "\rPID|1\r").encode())


def segments(ack: str) -> list[str]:
    assert ack.endswith("\r")
    return ack[:-1].split("\r")


class TestBuildAckHeader:
    def test_sender_and_receiver_are_swapped(self) -> None:
        """The ACK's MSH-3/4 are the message's MSH-5/6 and its MSH-5/6 the message's MSH-3/4."""
        ack = read_msh(build_ack(msh_of(), "AA").encode())
        assert (ack.sending_app, ack.sending_facility) == ("MCHENGINE", "FY02")
        assert (ack.receiving_app, ack.receiving_facility) == ("HIS", "FY01")

    def test_msa2_echoes_the_control_id(self) -> None:
        """MSA-1 is the code given and MSA-2 the message's MSH-10."""
        ack = Message(build_ack(msh_of(control_id="CTRL-42"), "AA"))
        assert ack["MSA-1"] == "AA"
        assert ack["MSA-2"] == "CTRL-42"

    def test_version_encoding_characters_and_charset_are_the_senders(self) -> None:
        """MSH-12, MSH-2 and MSH-18 of the ACK repeat those of the message."""
        for version, charset in (("2.4", "GB 18030-2000"), ("2.5", "UNICODE UTF-8")):
            ack = read_msh(build_ack(msh_of(version=version, charset=charset), "AA").encode())
            assert ack.version == version
            assert ack.encoding_chars == "^~\\&"
            assert ack.charset == charset

    def test_no_msh18_when_the_message_has_none(self) -> None:
        """A message without MSH-18 gets an ACK without MSH-18."""
        ack = read_msh(build_ack(msh_of(charset=""), "AA").encode())
        assert ack.charset == ""

    def test_custom_delimiters_are_kept(self) -> None:
        """A message with its own delimiters is answered with the same delimiters."""
        msh = msh_of(seps="#!*$%")
        text = build_ack(msh, "AA")
        assert text.startswith("MSH#!*$%#")
        ack = read_msh(text.encode())
        assert ack.field_sep == "#" and ack.encoding_chars == "!*$%"
        assert ack.message_type == "ACK!A04!ACK"
        assert parse_ack(text) == AckInfo("AA", msh.control_id, "")

    def test_message_type_carries_the_trigger_event(self) -> None:
        """MSH-9 of the ACK is ACK^<trigger of the message>^ACK."""
        ack = read_msh(build_ack(msh_of(message_type="ORU^R01"), "AA").encode())
        assert ack.message_type == "ACK^R01^ACK"

    def test_timestamp_comes_from_now(self) -> None:
        """MSH-7 is the time given as `now`, to the second."""
        ack = read_msh(build_ack(msh_of(), "AA", now=datetime(2024, 3, 21, 8, 32, 16)).encode())
        assert ack.timestamp == "20240321083216"

    def test_each_ack_has_its_own_control_id(self) -> None:
        """Two ACKs never share an MSH-10."""
        first = read_msh(build_ack(msh_of(), "AA").encode()).control_id
        second = read_msh(build_ack(msh_of(), "AA").encode()).control_id
        assert first and second and first != second

    def test_ack_without_msh_still_reads(self) -> None:
        """An ACK for an unreadable message is still a readable v2.5 ACK with an empty MSA-2."""
        text = build_ack(None, "AR", text="empty message: no MSH segment")
        ack = read_msh(text.encode())
        assert ack.version == "2.5"
        assert parse_ack(text) == AckInfo("AR", "", "empty message: no MSH segment")

    def test_accept_has_no_err_segment(self) -> None:
        """AA and CA ACKs have only MSH and MSA."""
        for code in ("AA", "CA"):
            assert [s[:3] for s in segments(build_ack(msh_of(), code))] == ["MSH", "MSA"]


class TestBuildAckErrors:
    def test_v25_rejection_has_err_2_3_4_8(self) -> None:
        """A v2.5 AR has ERR-2 location, ERR-3 code^text^HL70357, ERR-4 E and ERR-8 the text."""
        text = build_ack(
            msh_of(version="2.5"),
            "AR",
            text="message control id is empty",
            error_code="101",
            error_location="MSH-10",
        )
        assert [s[:3] for s in segments(text)] == ["MSH", "MSA", "ERR"]
        ack = Message(text)
        assert ack["MSA-1"] == "AR"
        assert ack["MSA-3"] == "message control id is empty"
        assert ack["ERR-1"] is None
        assert (ack["ERR-2.1"], ack["ERR-2.2"], ack["ERR-2.3"]) == ("MSH", "1", "10")
        assert ack["ERR-3.1"] == "101"
        assert ack["ERR-3.2"] == "Required field missing"
        assert ack["ERR-3.3"] == "HL70357"
        assert ack["ERR-4"] == "E"
        assert ack["ERR-8"] == "message control id is empty"

    @pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4"])
    def test_older_versions_get_err_1(self, version: str) -> None:
        """A v2.3/2.4 AR carries the location and code in ERR-1 (segment^seq^field^code)."""
        text = build_ack(
            msh_of(version=version), "AR", text="empty", error_code="101", error_location="MSH-10"
        )
        ack = Message(text)
        assert (ack["ERR-1.1"], ack["ERR-1.2"], ack["ERR-1.3"]) == ("MSH", "1", "10")
        assert ack.get("ERR-1.4.1") == "101"
        assert ack.get("ERR-1.4.2") == "Required field missing"
        assert ack["ERR-2"] is None and ack["ERR-3"] is None
        assert ack["MSA-3"] == "empty"

    def test_segment_only_location(self) -> None:
        """A location without a field names just the segment in ERR-2."""
        ack = Message(build_ack(msh_of(), "AR", text="bad", error_location="MSH"))
        assert ack["ERR-2"] == "MSH"
        assert ack["ERR-3.1"] == "207"

    def test_unknown_error_code_reads_as_internal_error(self) -> None:
        """An error code outside the table is described as an application internal error."""
        ack = Message(build_ack(msh_of(), "AE", text="x", error_code="999"))
        assert ack["ERR-3.1"] == "999"
        assert ack["ERR-3.2"] == "Application internal error"

    @pytest.mark.parametrize("code", ["AE", "AR", "CE", "CR"])
    def test_every_error_code_gets_err(self, code: str) -> None:
        """Errors and rejections in both modes carry an ERR segment."""
        assert segments(build_ack(msh_of(), code, text="x"))[-1].startswith("ERR")

    @pytest.mark.parametrize("seps", ["|^~\\&", "#!*$%"])
    @pytest.mark.parametrize("version", ["2.4", "2.5"])
    def test_delimiters_in_error_text_never_break_the_ack(self, seps: str, version: str) -> None:
        """Free text holding the field, component, repetition, escape, sub-component
        separators or line breaks still gives a three-segment ACK that reads back."""
        msh = msh_of(seps=seps, version=version)
        nasty = "PID-5 值 |^~\\&#!*$% 坏\r\nERR|x\rMSH|y 结束"
        text = build_ack(msh, "AR", text=nasty, error_code="102", error_location="PID-5")
        segs = segments(text)
        assert [s[:3] for s in segs] == ["MSH", "MSA", "ERR"]
        fs = seps[0]
        msa = segs[1].split(fs)
        assert len(msa) == 4
        assert msa[:3] == ["MSA", "AR", msh.control_id]
        for ch in seps:
            assert ch not in msa[3]
        assert "值" in msa[3] and "坏" in msa[3] and "结束" in msa[3]
        assert read_msh(text.encode()).control_id.startswith("ACK")
        info = parse_ack(text)
        assert (info.code, info.control_id) == ("AR", msh.control_id)
        assert "结束" in info.text

    def test_long_error_text_is_capped(self) -> None:
        """A very long error text does not make an unbounded ACK."""
        text = build_ack(msh_of(), "AR", text="错" * 5000)
        assert len(parse_ack(text).text) <= 400


class TestAckCode:
    @pytest.mark.parametrize("accept", ["AL", "NE", "ER", "SU", ""])
    def test_original_mode_always_answers_aa_or_ar(self, accept: str) -> None:
        """Original mode ignores MSH-15: AA when accepted, AR when not."""
        msh = msh_of(accept_ack=accept)
        assert ack_code(True, msh, "original") == "AA"
        assert ack_code(False, msh, "original") == "AR"

    @pytest.mark.parametrize(
        ("accept", "on_accept", "on_reject"),
        [
            ("AL", "CA", "CR"),
            ("al", "CA", "CR"),
            ("NE", None, None),
            ("ER", None, "CR"),
            ("SU", "CA", None),
        ],
    )
    def test_enhanced_mode_follows_msh15(
        self, accept: str, on_accept: str | None, on_reject: str | None
    ) -> None:
        """Enhanced mode answers CA/CR as MSH-15 asks (AL always, NE never, ER/SU on error/success)."""
        msh = msh_of(accept_ack=accept)
        assert ack_code(True, msh, "enhanced") == on_accept
        assert ack_code(False, msh, "enhanced") == on_reject

    def test_enhanced_mode_without_msh15_falls_back_to_original(self) -> None:
        """Enhanced mode with an empty MSH-15, or no MSH at all, answers AA/AR."""
        assert ack_code(True, msh_of(accept_ack=""), "enhanced") == "AA"
        assert ack_code(False, None, "enhanced") == "AR"


class TestParseAck:
    def test_round_trip_of_accept(self) -> None:
        """parse_ack reads back the code and control id of an ACK built here."""
        msh = msh_of(control_id="X1")
        assert parse_ack(build_ack(msh, "AA")) == AckInfo("AA", "X1", "")

    def test_round_trip_of_rejection_text(self) -> None:
        """parse_ack gives the rejection's human text."""
        text = build_ack(msh_of(control_id="X2"), "AR", text="MSH-18: 字符集不符")
        assert parse_ack(text) == AckInfo("AR", "X2", "MSH-18: 字符集不符")

    def test_text_falls_back_to_err8_then_err1(self) -> None:
        """Without MSA-3 the text comes from ERR-8, and without ERR-8 from ERR-1."""
        head = "MSH|^~\\&|LIS|10|HIS|FY01|20240321||ACK^R01^ACK|A1|P|2.5\r"
        v25 = head + "MSA|AE|C9\rERR||PID^1^3|101^Required field missing^HL70357|E||||PID-3 为空\r"
        v24 = head + "MSA|AE|C9\rERR|PID^1^3^101&Required field missing\r"
        assert parse_ack(v25) == AckInfo("AE", "C9", "PID-3 为空")
        assert parse_ack(v24) == AckInfo("AE", "C9", "PID^1^3^101&Required field missing")

    def test_lf_segment_ends_are_accepted(self) -> None:
        """An ACK with LF instead of CR segment ends still parses."""
        text = build_ack(msh_of(control_id="L1"), "AR", text="bad").replace("\r", "\n")
        assert parse_ack(text) == AckInfo("AR", "L1", "bad")

    def test_parse_acks_of_single_ack(self) -> None:
        """parse_acks of one ACK is a one-item list; of text without MSA, an empty list."""
        assert parse_acks(build_ack(msh_of(control_id="S1"), "AA")) == [AckInfo("AA", "S1", "")]
        assert parse_acks("MSH|^~\\&|X\r") == []


class TestWrapBatch:
    def test_fhs_batch_round_trips_through_parse_acks(self) -> None:
        """ACKs wrapped for an FHS batch come back from parse_acks one per message, in order."""
        acks = [
            build_ack(msh_of(control_id="B1"), "AA"),
            build_ack(msh_of(control_id="B2"), "AR", text="MSH-10 为空", error_location="MSH-10"),
            build_ack(msh_of(control_id="B3"), "AA"),
        ]
        text = wrap_batch(acks, b"FHS|^~\\&|LIS|10\rBHS|^~\\&|LIS|10\rMSH|...")
        heads = [s[:3] for s in segments(text)]
        assert heads[:2] == ["FHS", "BHS"] and heads[-2:] == ["BTS", "FTS"]
        assert "BTS|3" in segments(text)
        assert parse_acks(text) == [
            AckInfo("AA", "B1", ""),
            AckInfo("AR", "B2", "MSH-10 为空"),
            AckInfo("AA", "B3", ""),
        ]

    def test_bhs_only_batch_has_no_file_header(self) -> None:
        """A batch that starts with BHS is answered with BHS/BTS and no FHS/FTS."""
        acks = [build_ack(msh_of(control_id=c), "AA") for c in ("C1", "C2")]
        text = wrap_batch(acks, b"BHS|^~\\&|LIS")
        heads = [s[:3] for s in segments(text)]
        assert heads[0] == "BHS" and heads[-1] == "BTS"
        assert "FHS" not in heads and "FTS" not in heads
        assert [a.control_id for a in parse_acks(text)] == ["C1", "C2"]


def test_ack_time_is_the_local_time_now() -> None:
    """MSH-7 of an ACK is the engine's local time, to the second (formatted once per second)."""
    msh = read_msh(b"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083215||ADT^A04|C1|P|2.5\r")
    before = datetime.now().astimezone().replace(microsecond=0)
    stamps = {Message(build_ack(msh, "AA")).get("MSH-7") for _ in range(3)}
    after = datetime.now().astimezone()
    assert len(stamps) <= 2
    for stamp in stamps:
        local = datetime.strptime(str(stamp), "%Y%m%d%H%M%S").replace(tzinfo=before.tzinfo)
        assert before <= local <= after
