"""Unit tests for the hot-path accept/reject decision (channels.intake, with the MLLP ACK of channels.mllp.ingest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import support
from channels.intake.examine import Policy, Verdict
from channels.mllp.ack import parse_ack
from channels.mllp.ingest import examine, reject
from core.journal import RECEIVED, REJECTED
from transforms.batch import split_frame
from transforms.converters import parse_hl7_datetime
from transforms.hl7v2 import Message

SHANGHAI = ZoneInfo("Asia/Shanghai")


def msh(
    *,
    sender: str = "HIS|FY01",
    stamp: str = "20240321083215",
    message_type: str = "ADT^A04^ADT_A01",
    control_id: str = "HIS2024032108321500017",
    version: str = "2.5",
    accept_ack: str = "AL",
    charset: str = "UNICODE UTF-8",
) -> str:
    return (
        f"MSH|^~\\&|{sender}|MCHENGINE|FY01|{stamp}||{message_type}|{control_id}|P|{version}"
        f"|||{accept_ack}|NE|CHN|{charset}"
    )


PID = "PID|1||0010023456^^^HIS^PI~500112199403151525^^^^ID||陈思雨~CHEN^SIYU||19940315|F"


def adt(**kw: str) -> bytes:
    return support.hl7(msh(**kw), "EVN|A04|20240321083200", PID)


def one(payload: bytes, policy: Policy | None = None) -> Verdict:
    verdicts = examine(payload, policy or Policy("hospital"))
    assert len(verdicts) == 1
    return verdicts[0]


def ack_of(verdict: Verdict) -> Message:
    assert verdict.ack is not None
    return Message(verdict.ack)


class TestExamineAccepts:
    def test_adt_is_accepted_with_aa(self) -> None:
        """A well-formed ADT^A04 is journaled as received and answered AA with its control id."""
        v = one(adt(), Policy("hospital"))
        assert v.entry.status == RECEIVED
        assert v.entry.ack_code == "AA"
        assert support.msa(v.ack.encode()) == ("AA", "HIS2024032108321500017", "")
        assert v.entry.ack == v.ack
        assert v.entry.error is None

    def test_entry_describes_the_message(self) -> None:
        """The entry records channel, MSH-3^MSH-4 sender, control id, type, encoding, peer, raw."""
        raw = adt()
        v = examine(raw, Policy("hospital"), peer="10.0.0.7:51234")[0]
        e = v.entry
        assert e.channel == "hospital"
        assert e.sender == "HIS^FY01"
        assert e.control_id == "HIS2024032108321500017"
        assert e.message_type == "ADT^A04^ADT_A01"
        assert e.encoding == "utf-8" and v.encoding == "utf-8"
        assert e.peer == "10.0.0.7:51234"
        assert e.raw == raw

    def test_event_time_without_offset_is_shanghai(self) -> None:
        """MSH-7 without an offset is read as Asia/Shanghai local time."""
        e = one(adt(stamp="20240321083215")).entry
        assert e.event_time == datetime(2024, 3, 21, 8, 32, 15, tzinfo=SHANGHAI)
        assert e.event_time.utcoffset() == timedelta(hours=8)

    def test_event_time_with_offset_keeps_it(self) -> None:
        """MSH-7 with an explicit offset is an aware time at that offset."""
        e = one(adt(stamp="20240321003215+0000")).entry
        assert e.event_time == datetime(2024, 3, 21, 0, 32, 15, tzinfo=UTC)
        assert e.event_time.utcoffset() == timedelta(0)

    def test_event_time_follows_the_channel_timezone(self) -> None:
        """A channel in another time zone reads offset-less MSH-7 in that zone."""
        tz = ZoneInfo("Asia/Urumqi")
        e = one(adt(), Policy("hospital", timezone=tz)).entry
        assert e.event_time is not None and e.event_time.tzinfo == tz

    def test_unreadable_msh7_leaves_event_time_empty(self) -> None:
        """A nonsense MSH-7 does not reject the message; the event time is just unknown."""
        v = one(adt(stamp="not-a-date"))
        assert v.entry.status == RECEIVED
        assert v.entry.event_time is None

    def test_control_id_is_trimmed(self) -> None:
        """Spaces around MSH-10 are not part of the journaled control id."""
        assert one(adt(control_id="  C77 ")).entry.control_id == "C77"


class TestExamineRejects:
    def test_empty_msh10_is_rejected_naming_the_field(self) -> None:
        """An empty MSH-10 gives AR, a REJECTED entry, and an ERR located at MSH-10."""
        v = one(adt(control_id=""))
        assert v.entry.status == REJECTED
        assert v.entry.ack_code == "AR"
        assert v.entry.control_id is None
        assert "MSH-10" in (v.entry.error or "")
        ack = ack_of(v)
        assert ack["MSA-1"] == "AR"
        assert "MSH-10" in ack["MSA-3"]
        assert (ack["ERR-2.1"], ack["ERR-2.3"]) == ("MSH", "10")
        assert ack["ERR-3.1"] == "101"

    def test_empty_msh9_is_rejected_naming_the_field(self) -> None:
        """An empty MSH-9 gives AR with ERR located at MSH-9."""
        v = one(adt(message_type=""))
        assert v.entry.status == REJECTED
        assert "MSH-9" in (v.entry.error or "")
        assert ack_of(v)["ERR-2.3"] == "9"

    def test_empty_msh12_is_rejected_naming_the_field(self) -> None:
        """An empty MSH-12 gives AR with ERR located at MSH-12."""
        v = one(adt(version=""))
        assert v.entry.status == REJECTED
        assert "MSH-12" in (v.entry.error or "")
        assert ack_of(v)["ERR-2.3"] == "12"

    def test_whitespace_only_required_field_counts_as_empty(self) -> None:
        """A control id of only spaces is as empty as no control id."""
        assert one(adt(control_id="   ")).entry.status == REJECTED

    def test_v24_rejection_uses_err1(self) -> None:
        """A v2.4 sender's rejection carries the location in ERR-1."""
        v = one(adt(control_id="", version="2.4"))
        ack = ack_of(v)
        assert (ack["ERR-1.1"], ack["ERR-1.3"]) == ("MSH", "10")

    def test_rejection_keeps_sender_and_type(self) -> None:
        """A rejected message still journals who sent it and what it was."""
        e = one(adt(control_id="")).entry
        assert e.sender == "HIS^FY01"
        assert e.message_type == "ADT^A04^ADT_A01"
        assert e.raw == adt(control_id="")

    def test_not_hl7_is_rejected(self) -> None:
        """Bytes that are not an HL7 message get an AR with an empty MSA-2."""
        v = one(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert v.entry.status == REJECTED
        assert v.entry.sender == "" and v.entry.control_id is None
        code, control, text = support.msa(v.ack.encode())
        assert (code, control) == ("AR", "")
        assert "MSH" in text

    def test_empty_payload_is_rejected(self) -> None:
        """An empty frame gets an AR."""
        v = one(b"")
        assert v.entry.status == REJECTED and v.entry.ack_code == "AR"


class TestExamineValuesTheJournalCannotStore:
    """AR naming the field (ERR-2), never AE: the same message would fail again forever."""

    @pytest.mark.parametrize(
        ("values", "field", "reason"),
        [
            ({"stamp": "00010101"}, "7", "outside the years 1900 to 2199"),
            ({"stamp": "99991231235959-1200"}, "7", "outside the years 1900 to 2199"),
            ({"control_id": "C" * 201}, "10", "longer than 200 characters (201)"),
            ({"control_id": "A\x00B"}, "10", "NUL character"),
            ({"sender": "H" * 150 + "|" + "F" * 50}, "3", "longer than 199 characters"),
        ],
    )
    def test_value_is_rejected_naming_the_field(
        self, values: dict[str, str], field: str, reason: str
    ) -> None:
        v = one(adt(**values))
        assert v.entry.status == REJECTED
        ack = ack_of(v)
        assert ack["MSA-1"] == "AR" and reason in ack["MSA-3"]
        assert (ack["ERR-2.1"], ack["ERR-2.3"], ack["ERR-3.1"]) == ("MSH", field, "102")

    def test_limits_themselves_are_accepted(self) -> None:
        v = one(adt(control_id="C" * 200, stamp="21991231235959+1400", sender="H" * 149 + "|" + "F" * 50))
        assert v.entry.status == RECEIVED and v.entry.event_time is not None

    def test_nul_outside_msh_is_left_to_the_mapping(self) -> None:
        """Only MSH goes into the journal's text columns; the rest is kept as bytes."""
        payload = support.hl7(msh(), "EVN|A04|20240321083200", PID + "|\x00")
        assert one(payload).entry.status == RECEIVED


class TestExamineCharsets:
    def test_msh18_utf8_beats_a_gb18030_channel(self) -> None:
        """A message declaring UNICODE UTF-8 is read as UTF-8 even on a gb18030 channel."""
        v = one(adt(charset="UNICODE UTF-8"), Policy("lis_gbk", encoding="gb18030"))
        assert v.entry.status == RECEIVED
        assert v.encoding == "utf-8" and v.entry.encoding == "utf-8"

    def test_empty_msh18_on_gb18030_channel_reads_gbk_bytes(self) -> None:
        """Without MSH-18, GBK bytes on a gb18030 channel are accepted as gb18030."""
        text = "\r".join([msh(charset=""), "EVN|A04|20240321083200", PID]) + "\r"
        v = one(text.encode("gbk"), Policy("lis_gbk", encoding="gb18030"))
        assert v.entry.status == RECEIVED
        assert v.entry.encoding == "gb18030"
        assert v.entry.raw.decode(v.encoding).count("陈思雨") == 1

    def test_msh18_gb18030_is_read_as_gb18030(self) -> None:
        """MSH-18 GB 18030-2000 selects gb18030 on a UTF-8 channel, 4-byte characters included."""
        text = "\r".join([msh(charset="GB 18030-2000"), "PID|1||1^^^HIS^PI||𠮷晓芸"]) + "\r"
        v = one(text.encode("gb18030"), Policy("hospital", encoding="utf-8"))
        assert v.entry.status == RECEIVED
        assert v.encoding == "gb18030"

    def test_declared_utf8_with_gb18030_bytes_names_the_offset(self) -> None:
        """UTF-8 declared but GB18030 bytes sent: AR whose text names the first bad byte offset."""
        text = "\r".join([msh(charset="UNICODE UTF-8"), PID]) + "\r"
        raw = text.encode("gb18030")
        offset = text.index("陈")  # everything before the name is ASCII
        v = one(raw, Policy("hospital"))
        assert v.entry.status == REJECTED
        assert f"offset {offset}" in (v.entry.error or "")
        assert "GB18030" in (v.entry.error or "")
        ack = ack_of(v)
        assert ack["MSA-1"] == "AR"
        assert f"offset {offset}" in ack["MSA-3"]
        assert (ack["ERR-2.1"], ack["ERR-2.3"]) == ("MSH", "18")
        assert ack["ERR-3.1"] == "102"

    def test_undeclared_bad_bytes_are_rejected_without_blaming_msh18(self) -> None:
        """Bytes invalid for the channel's charset, with no MSH-18, are rejected at MSH."""
        raw = support.hl7(msh(charset=""), "PID|1||1")[:-1] + b"\xff\xfe\r"
        v = one(raw, Policy("hospital", encoding="utf-8"))
        assert v.entry.status == REJECTED
        assert "offset" in (v.entry.error or "")
        assert ack_of(v)["ERR-2"] == "MSH"

    def test_gbk_trail_byte_that_looks_like_a_field_separator_is_not_one(self) -> None:
        """東 is 0x96 0x7C in GBK: MSH is split after decoding, so MSH-4 and MSH-10 stay whole."""
        text = msh(sender="HIS|東城妇幼", charset="", control_id="東-001") + "\rEVN|A04|20240321083200\r"
        v = one(text.encode("gbk"), Policy("lis_gbk", encoding="gb18030"))
        assert v.entry.status == RECEIVED
        assert (v.entry.sender, v.entry.control_id) == ("HIS^東城妇幼", "東-001")
        assert ack_of(v)["MSA-2"] == "東-001"

    def test_a_gbk_trail_byte_in_msh8_moves_the_fields_after_it(self) -> None:
        """東 in MSH-8 (security), a field the engine does not keep: its trail byte 0x7C is no
        field separator, so MSH-9 and MSH-10 are read after it, as the transform stage reads
        them. Found by fuzzing: the journal had MSH-11 as the control id."""
        text = msh(charset="").replace("||ADT^A04", "|東|ADT^A04") + "\rEVN|A04|20240321083200\r"
        v = one(text.encode("gbk"), Policy("lis_gbk", encoding="gb18030"))
        assert v.entry.status == RECEIVED
        assert (v.entry.message_type, v.entry.control_id) == ("ADT^A04^ADT_A01", "HIS2024032108321500017")
        assert Message(v.entry.raw.decode("gb18030")).segment("MSH").field(10) == v.entry.control_id
        assert ack_of(v)["MSA-2"] == "HIS2024032108321500017"


class TestExamineBatch:
    @staticmethod
    def batch(*control_ids: str) -> bytes:
        lines = ["FHS|^~\\&|LIS|10", "BHS|^~\\&|LIS|10"]
        for cid in control_ids:
            lines += [
                msh(sender="LIS|10", message_type="ORU^R01", control_id=cid, version="2.4"),
                "PID|1||0010023456^^^HIS^PI||陈思雨",
                "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F",
            ]
        lines += [f"BTS|{len(control_ids)}", "FTS|1"]
        return support.hl7(*lines)

    def test_batch_gives_one_verdict_per_message(self) -> None:
        """An FHS/BHS batch of three messages gives three accepted verdicts, in order."""
        verdicts = examine(self.batch("L1", "L2", "L3"), Policy("lis"))
        assert [v.entry.control_id for v in verdicts] == ["L1", "L2", "L3"]
        assert all(v.entry.status == RECEIVED for v in verdicts)
        assert [support.msa(v.ack.encode())[:2] for v in verdicts] == [
            ("AA", "L1"),
            ("AA", "L2"),
            ("AA", "L3"),
        ]

    def test_each_batch_entry_holds_only_its_message(self) -> None:
        """A batch entry's raw bytes start at its own MSH and hold no envelope segments."""
        verdicts = examine(self.batch("L1", "L2", "L3"), Policy("lis"))
        for v, cid in zip(verdicts, ["L1", "L2", "L3"], strict=True):
            text = v.entry.raw.decode()
            assert text.startswith("MSH|")
            assert f"|{cid}|" in text
            assert text.count("MSH|") == 1
            assert not any(t in text for t in ("FHS", "BHS", "BTS", "FTS"))

    def test_bad_message_in_batch_is_rejected_alone(self) -> None:
        """One message with an empty MSH-10 is rejected; its neighbours are accepted."""
        verdicts = examine(self.batch("L1", "", "L3"), Policy("lis"))
        assert [v.entry.ack_code for v in verdicts] == ["AA", "AR", "AA"]

    def test_split_batch_drops_the_envelope(self) -> None:
        """split_frame returns each message from its MSH, CR-terminated, envelope removed."""
        parts = split_frame(self.batch("L1", "L2").replace(b"\r", b"\r\n"))
        assert len(parts) == 2
        assert all(p.startswith(b"MSH|") and p.endswith(b"F\r") for p in parts)
        assert all(b"\n" not in p for p in parts)

    def test_batch_without_messages_is_rejected(self) -> None:
        """An envelope with no MSH inside is one rejected verdict."""
        verdicts = examine(support.hl7("BHS|^~\\&|LIS", "BTS|0"), Policy("lis"))
        assert len(verdicts) == 1
        assert verdicts[0].entry.status == REJECTED


class TestExamineEnhancedMode:
    def test_enhanced_mode_with_al_answers_ca(self) -> None:
        """Enhanced mode and MSH-15 AL give a commit accept (CA)."""
        v = one(adt(accept_ack="AL"), Policy("hospital", ack_mode="enhanced"))
        assert v.entry.status == RECEIVED
        assert v.entry.ack_code == "CA"
        assert support.msa(v.ack.encode())[0] == "CA"

    def test_enhanced_mode_rejection_answers_cr(self) -> None:
        """Enhanced mode and MSH-15 AL give a commit reject (CR) for a bad message."""
        v = one(adt(accept_ack="AL", control_id=""), Policy("hospital", ack_mode="enhanced"))
        assert v.entry.ack_code == "CR"

    def test_enhanced_mode_with_ne_sends_no_ack(self) -> None:
        """Enhanced mode and MSH-15 NE accept the message but send no ACK."""
        v = one(adt(accept_ack="NE"), Policy("hospital", ack_mode="enhanced"))
        assert v.entry.status == RECEIVED
        assert v.ack is None
        assert v.entry.ack == "" and v.entry.ack_code == ""


class TestReject:
    def test_reject_answers_ar_with_the_reason(self) -> None:
        """A frame refused before reading gets an AR quoting the reason, raw bytes kept."""
        raw = adt()
        v = reject(raw, Policy("hospital"), "message of 9000 bytes exceeds the limit", peer="p")
        assert v.entry.status == REJECTED
        assert v.entry.raw == raw
        assert v.entry.peer == "p"
        assert "9000 bytes" in (v.entry.error or "")
        code, control, text = support.msa(v.ack.encode())
        assert (code, control) == ("AR", "HIS2024032108321500017")
        assert "9000 bytes" in text

    def test_reject_of_unreadable_bytes(self) -> None:
        """A truncated frame without a readable MSH still gets an AR."""
        v = reject(b"\x00\x01garbage", Policy("hospital"), "frame truncated")
        assert v.entry.status == REJECTED
        assert support.msa(v.ack.encode())[:2] == ("AR", "")

    def test_reject_uses_msh18_for_the_encoding(self) -> None:
        """The rejected entry records the charset MSH-18 names."""
        v = reject(adt(charset="GB 18030-2000"), Policy("hospital"), "too big")
        assert v.entry.encoding == "gb18030"


_fragments = st.sampled_from(
    [
        b"MSH|^~\\&|",
        b"MSH",
        b"FHS|^~\\&",
        b"BHS|^~\\&",
        b"BTS|1",
        b"|",
        b"^",
        b"~",
        b"\\",
        b"&",
        b"\r",
        b"\n",
        b"ADT^A04",
        b"C1",
        b"2.5",
        b"2.4",
        b"AL",
        b"NE",
        b"UNICODE UTF-8",
        b"UNICODE UTF-16",
        b"GB 18030-2000",
        b"ISO IR87",
        b"20240321083215",
        b"+9999",
        "陈思雨".encode(),
        "陈思雨".encode("gb18030"),
        b"\xff",
        b"\xef\xbb\xbf",
    ]
)
_payloads = st.binary(max_size=200) | st.lists(_fragments | st.binary(max_size=4), max_size=40).map(b"".join)


class TestExamineProperties:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(payload=_payloads, encoding=st.sampled_from(["utf-8", "gb18030", "latin-1"]))
    def test_any_payload_gets_an_answer(self, payload: bytes, encoding: str) -> None:
        """Any bytes give at least one verdict, each with an AA or AR ACK, and nothing raises."""
        verdicts = examine(payload, Policy("c", encoding=encoding))
        assert verdicts
        for v in verdicts:
            assert v.ack is not None
            code = parse_ack(v.ack).code
            assert code in {"AA", "AR"}
            assert v.entry.ack_code == code
            assert v.entry.status == (RECEIVED if code == "AA" else REJECTED)
            if v.entry.event_time is not None:
                assert v.entry.event_time.tzinfo is not None


class TestPolicy:
    def test_defaults(self) -> None:
        """A channel policy defaults to UTF-8, original mode and Asia/Shanghai local time."""
        policy = Policy("x")
        assert (policy.encoding, policy.ack_mode, policy.timezone) == (
            "utf-8",
            "original",
            SHANGHAI,
        )


class TestEventTime:
    @pytest.mark.parametrize(
        "stamp",
        [
            "20240321083215",
            "20240229235959",
            "20230229120000",
            "20241301000000",
            "00000101000000",
            "2024032108",
        ],
    )
    def test_msh7_reads_as_the_converter_reads_it(self, stamp: str) -> None:
        """The hot path's shortcut for YYYYMMDDHHMMSS agrees with parse_hl7_datetime, bad dates too."""
        try:
            expected: datetime | None = parse_hl7_datetime(stamp, SHANGHAI)
        except ValueError:
            expected = None
        assert one(adt(stamp=stamp)).entry.event_time == expected
