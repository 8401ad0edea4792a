"""Unit tests for the lazy HL7 v2 reader (transforms.hl7v2)."""

from __future__ import annotations

import contextlib
import copy
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ParseError
from transforms.hl7v2 import (
    HL7_NULL,
    Delimiters,
    Message,
    MshHeader,
    NullValue,
    Path,
    Segment,
    parse_path,
    read_msh,
    split_batch,
    split_segments,
    unescape,
)

MSH = (
    "MSH|^~\\&|LIS|10|MCHENGINE|FY01|20241016110500||ORU^R01^ORU_R01|C123|P|2.4^CHN|||AL|NE|CHN|UNICODE UTF-8"
)
ORU = "\r".join(
    [
        MSH,
        'PID|1||0010023456^^^HIS^PI~500112199403151525^^^^ID||陈思雨~CHEN^SIYU||19940315|F|||""',
        "PV1|1|O|产科门诊^101^^FY01",
        "OBR|1|A1|2407101562|CBC^血常规^L" + "|" * 28 + "D001&王医生",
        "OBX|1|NM|HGB^血红蛋白^L||96|g/L|110-150|L|||F",
        "OBX|2|ST|UNIT^单位^L||10\\S\\9/L||||||F",
        "OBX|3|CE|MCH0301^妊娠风险评估^99FYMCH||Y^黄色^99FYRISK~P^紫色^99FYRISK||||||F",
        "ZLR|1|local data",
    ]
)
D = Delimiters("|", "^", "~", "\\", "&", None)


@pytest.fixture
def oru() -> Message:
    return Message(ORU)


# ---------------------------------------------------------------------------------------------
# Delimiters and MSH numbering
# ---------------------------------------------------------------------------------------------


def test_delimiters_are_read_from_msh1_and_msh2(oru: Message) -> None:
    """The standard |^~\\& delimiters come from MSH-1 and MSH-2."""
    assert oru.delimiters == Delimiters("|", "^", "~", "\\", "&", None)


def test_non_standard_delimiters_are_honoured() -> None:
    """A message declaring $%~\\& splits fields on $ and components on %."""
    msg = Message("MSH$%~\\&$GHH LAB$ELAB$$$$$ORU%R01$1$P$2.5\rPID$1$$A%B~C%D$$X\\F\\Y")
    assert msg.delimiters == Delimiters("$", "%", "~", "\\", "&", None)
    assert msg.get("MSH-3") == "GHH LAB"
    assert msg.get("MSH-9.2") == "R01"
    assert msg.values("PID-3[*].2") == ["B", "D"]
    assert msg.get("PID-5") == "X$Y"  # \F\ is the declared field separator


def test_missing_encoding_characters_fall_back_to_defaults_per_position() -> None:
    """MSH-2 "^~" keeps ^ and ~ and falls back to \\ and & for escape and sub-component."""
    msg = Message("MSH|^~|A\rPID|1||a&b^c")
    assert msg.delimiters == Delimiters("|", "^", "~", "\\", "&", None)
    assert msg.get("PID-3.1.2") == "b"


def test_truncation_character_is_the_fifth_encoding_character() -> None:
    """MSH-2 "^~\\&#" (v2.7) declares # as truncation character, used by \\P\\."""
    msg = Message("MSH|^~\\&#|A\rNTE|1||cut\\P\\")
    assert msg.delimiters.truncation == "#"
    assert msg.get("NTE-3") == "cut#"


def test_msh1_is_the_field_separator_and_msh2_the_encoding_characters(oru: Message) -> None:
    """MSH numbering: MSH-1 is "|", MSH-2 "^~\\&" and MSH-3 the first field after them."""
    msh = oru.segment("MSH")
    assert msh is not None
    assert msh.field(0) == "MSH"
    assert msh.field(1) == "|"
    assert msh.field(2) == "^~\\&"
    assert msh.field(3) == "LIS"
    assert oru.get("MSH-1") == "|"
    assert oru.get("MSH-2") == "^~\\&"
    assert oru.get("MSH-10") == "C123"


def test_msh2_is_never_split_or_unescaped(oru: Message) -> None:
    """MSH-2 holds the delimiters themselves, so it is one raw value with no parts."""
    msh = oru.segment("MSH")
    assert msh is not None
    assert msh.repetitions(2) == ["^~\\&"]
    assert oru.get("MSH-2.1") == "^~\\&"
    assert oru.get("MSH-2.2") is None
    assert oru.values("MSH-2[*]") == ["^~\\&"]


def test_msh9_components_are_addressable(oru: Message) -> None:
    """MSH-9.1 and MSH-9.2 give the message code and trigger event."""
    assert oru.get("MSH-9.1") == "ORU"
    assert oru.get("MSH-9.2") == "R01"
    assert oru.get("MSH-9.3") == "ORU_R01"
    assert oru.get("MSH-9.4") is None


# ---------------------------------------------------------------------------------------------
# Segment terminators
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["\r", "\n", "\r\n"])
def test_segments_end_with_cr_lf_or_crlf(end: str) -> None:
    """CR, LF and CRLF all end a segment."""
    msg = Message(end.join(["MSH|^~\\&|A", "PID|1", "OBX|1", "OBX|2"]) + end)
    assert [s.name for s in msg.segments()] == ["MSH", "PID", "OBX", "OBX"]
    assert msg.get("OBX[2]-1") == "2"


def test_mixed_segment_terminators_and_blank_lines_are_accepted() -> None:
    """A mix of CR, LF, CRLF and blank lines still gives one segment per line."""
    text = "MSH|^~\\&|A\r\nPID|1\n\nPV1|1\r\r  \rOBX|1|ST|||x\r\n"
    assert split_segments(text) == ["MSH|^~\\&|A", "PID|1", "PV1|1", "OBX|1|ST|||x"]


def test_other_line_break_characters_are_data() -> None:
    """VT, FS and U+2028 are not segment terminators (unlike str.splitlines)."""
    assert split_segments("MSH|a\x0bb\x1cc\u2028d\rPID|1") == ["MSH|a\x0bb\x1cc\u2028d", "PID|1"]


def test_leading_whitespace_and_bom_before_msh_are_ignored() -> None:
    """A BOM and blank lines before MSH do not stop the message from being read."""
    msg = Message("\ufeff\r\n  MSH|^~\\&|A\rPID|1")
    assert msg.get("MSH-3") == "A"


# ---------------------------------------------------------------------------------------------
# Escape sequences
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("a\\F\\b", "a|b"),
        ("10\\S\\9/L", "10^9/L"),
        ("x\\T\\y", "x&y"),
        ("2.0\\R\\5.0MHz", "2.0~5.0MHz"),
        ("\\E\\\\E\\PACS02\\E\\US", "\\\\PACS02\\US"),
        ("line1\\X0D0A\\line2", "line1\r\nline2"),
        ("a\\.br\\b", "a\nb"),
    ],
)
def test_each_delimiter_escape_decodes(raw: str, decoded: str) -> None:
    """Each of \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\X0D0A\\ \\.br\\ decodes to its character(s)."""
    assert unescape(raw, D) == decoded


def test_escapes_decode_to_the_message_delimiters_not_the_defaults() -> None:
    """With $%~\\& delimiters \\F\\ is $ and \\S\\ is %."""
    assert unescape("\\F\\\\S\\", Delimiters("$", "%", "~", "\\", "&", None)) == "$%"


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("\\XE4B8AD\\", "中"),  # UTF-8 bytes
        ("caf\\XE9\\", "café"),  # not UTF-8: latin-1
        ("\\X0\\", "\\X0\\"),  # odd number of digits: literal
        ("\\XZZ\\", "\\XZZ\\"),  # not hex: literal
        ("\\X\\", "\\X\\"),  # no digits: literal
    ],
)
def test_hex_escape_decodes_utf8_then_latin1(raw: str, decoded: str) -> None:
    """\\Xhh..\\ is hex bytes decoded as UTF-8, falling back to latin-1; bad hex stays literal."""
    assert unescape(raw, D) == decoded


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("a\\H\\b\\N\\c", "abc"),
        ("a\\.sp\\b", "a\nb"),
        ("a\\.sp3\\b", "a\n\n\nb"),
        ("a\\.sk2\\b", "a  b"),
        ("a\\.in4\\b\\.ti-2\\c", "abc"),
        ("a\\.fi\\b\\.nf\\c", "abc"),
        ("a\\.ce\\b", "a\nb"),
        ("a\\Zvendor\\b", "ab"),
        ("a\\C2842\\b\\M2442\\c", "abc"),
    ],
)
def test_formatting_escapes_become_plain_text_equivalents(raw: str, decoded: str) -> None:
    """Highlighting, layout, local and charset escapes are dropped or become breaks/spaces."""
    assert unescape(raw, D) == decoded


def test_repeat_counts_are_capped() -> None:
    """\\.sp999\\ cannot blow a message up: counts are capped at 100."""
    assert unescape("\\.sp999\\", D) == "\n" * 100


@pytest.mark.parametrize(
    "raw",
    ["abc\\F", "abc\\", "\\", "\\Q\\", "\\.br5\\", "\\P\\", "\\Z\\", "\\C12\\", "\\f\\"],
)
def test_unterminated_or_unknown_escapes_stay_literal(raw: str) -> None:
    """An unterminated or unknown escape is kept as text and never raises."""
    assert unescape(raw, D) == raw


def test_a_stray_backslash_does_not_swallow_the_next_escape() -> None:
    """In "C:\\temp\\F\\x" the stray \\ stays and the \\F\\ after it still decodes."""
    assert unescape("C:\\temp\\F\\x", D) == "C:\\temp|x"


@pytest.mark.parametrize(
    ("value", "where", "expected"),
    [
        ("\\H\\", (1, None), None),
        ("\\H\\\\N\\", (1, None), None),
        ("a~\\H\\", (2, None), None),
        ("x^\\N\\", (1, 2), None),
        ("a~\\H\\b\\N\\", (2, None), "b"),
    ],
)
def test_a_value_of_only_formatting_escapes_is_empty(
    value: str, where: tuple[int, int | None], expected: str | None
) -> None:
    """Highlight on/off around nothing reads as empty (None), never "", as the mapping getters
    read it, so `required` sees it empty. Found by fuzzing the reader."""
    pid = Message(f"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||{value}\r").segment("PID")
    assert pid is not None
    assert pid.get(3, *where) == expected


def test_values_are_unescaped_but_raw_accessors_are_not(oru: Message) -> None:
    """get() decodes escapes; field() and repetitions() return the raw text."""
    assert oru.get("OBX[2]-5") == "10^9/L"
    obx = oru.segment("OBX", 2)
    assert obx is not None
    assert obx.field(5) == "10\\S\\9/L"
    assert obx.repetitions(5) == ["10\\S\\9/L"]


# ---------------------------------------------------------------------------------------------
# Null, empty, absent
# ---------------------------------------------------------------------------------------------


def test_explicit_null_is_distinct_from_empty_and_absent(oru: Message) -> None:
    """'""' gives HL7_NULL, an empty field None, a field past the end None."""
    assert oru.get("PID-11") is HL7_NULL
    assert oru.get("PID-10") is None
    assert oru.get("PID-40") is None
    assert oru.get("ZZZ-1") is None


def test_explicit_null_in_a_component_is_kept() -> None:
    """A component that is exactly '""' is HL7_NULL, its empty neighbour None."""
    msg = Message('MSH|^~\\&|A\rPID|1||^""^x')
    assert msg.get("PID-3.1") is None
    assert msg.get("PID-3.2") is HL7_NULL
    assert msg.get("PID-3.3") == "x"


def test_getitem_turns_null_into_empty_text(oru: Message) -> None:
    """msg[path] is get() with HL7_NULL as "" and absent as None."""
    assert oru["PID-11"] == ""
    assert oru["PID-10"] is None
    assert oru["MSH-10"] == "C123"


def test_null_value_is_a_falsy_singleton_that_survives_copies() -> None:
    """HL7_NULL is one object: copy, deepcopy and pickle give it back; it is falsy and prints ""."""
    assert NullValue() is HL7_NULL
    assert copy.copy(HL7_NULL) is HL7_NULL
    assert copy.deepcopy([HL7_NULL])[0] is HL7_NULL
    assert pickle.loads(pickle.dumps(HL7_NULL)) is HL7_NULL
    assert not HL7_NULL
    assert str(HL7_NULL) == ""
    assert repr(HL7_NULL) == "HL7_NULL"


# ---------------------------------------------------------------------------------------------
# Repetitions, components, sub-components
# ---------------------------------------------------------------------------------------------


def test_repetitions_are_selected_by_index_or_star(oru: Message) -> None:
    """PID-3[*].1 lists every identifier, PID-3[2].5 picks the second one's type."""
    assert oru.values("PID-3[*].1") == ["0010023456", "500112199403151525"]
    assert oru.get("PID-3[2].5") == "ID"
    assert oru.get("PID-3[3].1") is None
    assert oru.get("PID-3[*].5") == "PI"


def test_raw_repetitions_of_a_field(oru: Message) -> None:
    """repetitions() returns each raw repetition, [] for an empty field."""
    pid = oru.segment("PID")
    assert pid is not None
    assert pid.repetitions(3) == ["0010023456^^^HIS^PI", "500112199403151525^^^^ID"]
    assert pid.repetitions(10) == []
    assert pid.repetitions(99) == []


def test_empty_repetitions_keep_their_place() -> None:
    """In "a~~b" the middle repetition is None, so values stay aligned."""
    msg = Message("MSH|^~\\&|A\rPID|1||a~~b")
    assert msg.values("PID-3[*]") == ["a", None, "b"]
    assert msg.values("PID-4[*]") == []


def test_components_and_subcomponents(oru: Message) -> None:
    """OBR-32 "D001&王医生" has two sub-components of component 1."""
    assert oru.get("OBR-32.1.1") == "D001"
    assert oru.get("OBR-32.1.2") == "王医生"
    assert oru.get("OBR-32.1.3") is None
    assert oru.get("OBR-4.2") == "血常规"
    assert oru.get("OBR-4.2.1") == "血常规"
    assert oru.get("OBR-4.2.2") is None


def test_value_without_component_is_raw_when_it_has_components(oru: Message) -> None:
    """A path without .COMP returns a structured value raw; a plain one decoded."""
    assert oru.get("MSH-9") == "ORU^R01^ORU_R01"
    assert oru.get("OBR-32") == "D001&王医生"
    assert oru.get("OBR-32.1") == "D001&王医生"
    msg = Message("MSH|^~\\&|A\rOBX|1|ST|||a\\S\\b^c~a\\S\\b")
    assert msg.get("OBX-5[1]") == "a\\S\\b^c"  # structured: raw, still escaped
    assert msg.get("OBX-5[2]") == "a^b"  # plain: decoded


def test_repeating_coded_value_lists_every_repetition(oru: Message) -> None:
    """A repeating CE (risk colours) gives one value per repetition."""
    assert oru.values("OBX[3]-5[*].2") == ["黄色", "紫色"]


def test_segment_get_checks_its_numbers() -> None:
    """Segment.get rejects 0 and a sub-component without component."""
    seg = Segment("PID|1|a", D)
    with pytest.raises(ValueError, match="start at 1"):
        seg.get(2, 0)
    with pytest.raises(ValueError, match="needs a component"):
        seg.get(2, 1, None, 1)


# ---------------------------------------------------------------------------------------------
# Segments and paths over the message
# ---------------------------------------------------------------------------------------------


def test_segments_are_listed_in_order_and_by_name(oru: Message) -> None:
    """segments() keeps message order; segments(name) filters; segment(name, n) picks one."""
    assert [s.name for s in oru.segments()] == [
        "MSH", "PID", "PV1", "OBR", "OBX", "OBX", "OBX", "ZLR",
    ]  # fmt: skip
    assert [s.field(1) for s in oru.segments("OBX")] == ["1", "2", "3"]
    third = oru.segment("OBX", 3)
    assert third is not None and third.field(1) == "3"
    assert oru.segment("OBX", 4) is None
    assert oru.segment("NTE") is None
    assert oru.segments("NTE") == []
    with pytest.raises(ValueError):
        oru.segment("OBX", 0)


def test_segment_occurrences_in_paths(oru: Message) -> None:
    """OBX[*]-5 gives every OBX's value; OBX[3]-3.2 one coded text."""
    assert oru.values("OBX[*]-5") == ["96", "10^9/L", "Y^黄色^99FYRISK"]
    assert oru.get("OBX[3]-3.2") == "妊娠风险评估"
    assert oru.get("OBX[9]-5") is None
    assert oru.values("OBX[9]-5") == []
    assert oru.values("OBX[*]-5[*].1") == ["96", "10^9/L", "Y", "P"]


def test_z_segments_are_addressable(oru: Message) -> None:
    """Locally defined Z-segments (ZLR) work like any other."""
    assert oru.get("ZLR-2") == "local data"


def test_segments_are_cached(oru: Message) -> None:
    """The same Segment object comes back, so its fields are split only once."""
    assert oru.segment("OBX", 2) is oru.segment("OBX", 2)
    assert oru.segments("OBX")[1] is oru.segment("OBX", 2)


# ---------------------------------------------------------------------------------------------
# Chinese text and characters outside the BMP
# ---------------------------------------------------------------------------------------------


def test_chinese_text_is_kept_intact(oru: Message) -> None:
    """Chinese names, departments and coded texts come back unchanged."""
    assert oru.get("PID-5[1]") == "陈思雨"
    assert oru.get("PID-5[2].1") == "CHEN"
    assert oru.get("PV1-3.1") == "产科门诊"


@pytest.mark.parametrize("codec", ["utf-8", "gb18030"])
def test_four_byte_characters_survive_decoding_and_splitting(codec: str) -> None:
    """𠮷 (U+20BB7, 4 bytes in UTF-8 and GB18030) is one character after reading."""
    text = "MSH|^~\\&|HIS|FY02|||20240101||ADT^A04|1|P|2.5|||||CHN|GB 18030-2000\rPID|1||x||𠮷晓芸^^"
    raw = text.encode(codec)
    header = read_msh(raw)
    assert header.charset == "GB 18030-2000"
    msg = Message(raw.decode(codec))
    name = msg["PID-5.1"]
    assert name == "𠮷晓芸"
    assert name is not None and len(name) == 3


# ---------------------------------------------------------------------------------------------
# Message construction errors and batches
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "not 'MSH'"),
        ("PID|1|x", "not 'MSH'"),
        ("FHS|^~\\&|A\rMSH|^~\\&|B", "split_batch"),
        ("MSH", "too short"),
        ("MSH\rPID|1", "too short"),
        ("MSHA|x", "letter, digit or whitespace"),
        ("MSH |x", "letter, digit or whitespace"),
    ],
)
def test_message_rejects_text_that_is_not_hl7(text: str, match: str) -> None:
    """Text without a usable MSH raises ValueError with a one-line reason."""
    with pytest.raises(ValueError, match=match) as info:
        Message(text)
    assert "\n" not in str(info.value)


def test_batch_files_are_split_into_messages() -> None:
    """split_batch drops FHS/BHS/BTS/FTS and returns each message's text."""
    text = "FHS|^~\\&|A\rBHS|^~\\&|A\rMSH|^~\\&|1\rPID|1\rMSH|^~\\&|2\rPID|2\rBTS|2\rFTS|1\r"
    parts = split_batch(text)
    assert parts == ["MSH|^~\\&|1\rPID|1", "MSH|^~\\&|2\rPID|2"]
    assert [Message(p).get("PID-1") for p in parts] == ["1", "2"]
    assert split_batch("MSH|^~\\&|1\rPID|1") == ["MSH|^~\\&|1\rPID|1"]


@pytest.mark.parametrize(
    "text",
    [
        "BHS|^~\\&\rEVN|A04\rBTS|1",  # no MSH
        "BHS|^~\\&\rMSH|^~\\&|1\rEVN|A04\rBHS|^~\\&\rPID|1\rBTS|1",  # BHS inside a message
        "MSH|^~\\&|1\rFHS|^~\\&",  # FHS not first
        "FHS|^~\\&\rMSH|^~\\&|1\rFTS|1\rPID|1",  # after FTS
        "MSH|^~\\&|1\rPID|1\rMSH|^~\\&|2\rPID|2",  # two messages glued, no envelope
        "PID|1\rMSH|^~\\&|1\rPID|1",  # a segment before MSH
    ],
)
def test_broken_batch_envelopes_are_rejected(text: str) -> None:
    """Segments that would land in the wrong message make split_batch raise ValueError."""
    with pytest.raises(ValueError):
        split_batch(text)


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MSH-9.1", ("MSH", 1, 9, 1, 1, None)),
        ("PID-3[*].1", ("PID", 1, 3, None, 1, None)),
        ("PID-3[2].4.1", ("PID", 1, 3, 2, 4, 1)),
        ("OBX[*]-5", ("OBX", None, 5, 1, None, None)),
        ("OBX[3]-3.2", ("OBX", 3, 3, 1, 2, None)),
        ("PID-5[1].1", ("PID", 1, 5, 1, 1, None)),
        ("ZLR-2", ("ZLR", 1, 2, 1, None, None)),
        ("PD1-3", ("PD1", 1, 3, 1, None, None)),
    ],
)
def test_paths_compile(text: str, expected: tuple[object, ...]) -> None:
    """Valid paths compile to segment, occurrence, field, repetition, component, sub."""
    path = parse_path(text)
    assert isinstance(path, Path)
    assert path[1:] == expected


def test_paths_are_cached() -> None:
    """The same path text gives the same compiled object."""
    assert parse_path("PID-3[*].1") is parse_path("PID-3[*].1")
    assert parse_path("PID-3[*].1").is_multi
    assert not parse_path("PID-3.1").is_multi


@pytest.mark.parametrize(
    ("text", "bad_part"),
    [
        ("PID", "-FIELD"),
        ("pid-3", "segment 'pid'"),
        ("PIDX-3", "segment 'PIDX'"),
        ("P-3", "segment 'P'"),
        ("PID-0", "field '0'"),
        ("PID-x", "field 'x'"),
        ("PID-", "field ''"),
        ("PID-3[0]", "repetition '0'"),
        ("PID-3[a]", "repetition 'a'"),
        ("PID-3[]", "repetition ''"),
        ("OBX[-1]-5", "segment occurrence '-1'"),
        ("PID-3.0", "component '0'"),
        ("PID-3.1.x", "sub-component 'x'"),
        ("PID-3.1.2.3", "too many '.'"),
        ("PID-3[*.1", "expected SEG"),
    ],
)
def test_bad_paths_name_the_bad_part(text: str, bad_part: str) -> None:
    """A bad path raises ValueError quoting the path and naming the part that is wrong."""
    with pytest.raises(ValueError) as info:
        parse_path(text)
    assert repr(text) in str(info.value)
    assert bad_part in str(info.value)


# ---------------------------------------------------------------------------------------------
# read_msh
# ---------------------------------------------------------------------------------------------


def test_read_msh_reads_the_header_fields() -> None:
    """read_msh returns MSH-1..18 fields the engine routes and acknowledges with."""
    header = read_msh(ORU.encode("utf-8"))
    assert header == MshHeader(
        field_sep="|",
        encoding_chars="^~\\&",
        sending_app="LIS",
        sending_facility="10",
        receiving_app="MCHENGINE",
        receiving_facility="FY01",
        timestamp="20241016110500",
        message_type="ORU^R01^ORU_R01",
        control_id="C123",
        processing_id="P",
        version="2.4",
        accept_ack="AL",
        app_ack="NE",
        charset="UNICODE UTF-8",
    )


def test_read_msh_takes_the_first_charset_repetition_and_tolerates_framing() -> None:
    """Leading VT/BOM/whitespace are skipped, LF ends MSH, MSH-18 keeps its first repetition."""
    raw = b"\x0b\xef\xbb\xbf\r\nMSH|^~\\&|A||||||ADT^A04|9|P|2.5|||||CHN|GB 18030-2000~UNICODE\nPID|1"
    header = read_msh(raw)
    assert header.sending_app == "A"
    assert header.charset == "GB 18030-2000"
    assert header.control_id == "9"


def test_read_msh_defaults_absent_fields_to_empty_text() -> None:
    """A short MSH gives "" for every field it does not have."""
    header = read_msh(b"MSH|^~\\&|A")
    assert header.sending_app == "A"
    assert header.message_type == header.version == header.charset == ""


def test_read_msh_uses_non_standard_separators() -> None:
    """MSH$%~\\& splits on $ and takes the version's first %-component."""
    header = read_msh(b"MSH$%~\\&$GHH LAB$ELAB$$$$$ORU%R01$1$P$2.5%CHN")
    assert header.field_sep == "$"
    assert header.message_type == "ORU%R01"
    assert header.version == "2.5"


@pytest.mark.parametrize(
    ("raw", "field", "code"),
    [
        (b"", None, "100"),
        (b"   \r\n", None, "100"),
        (b"PID|1|x", None, "100"),
        (b"FHS|^~\\&|A\rMSH|^~\\&|B", None, "100"),
        (b"MSH", 1, "101"),
        (b"MSH\rPID|1", 1, "101"),
        (b"MSHA|x", 1, "102"),
        (b"MSH1|x", 1, "102"),
        (b"MSH |x", 1, "102"),
        (b"MSH\xe4|x", 1, "102"),
        (b"MSH|^~y0|x", 2, "102"),
        (b"MSH|^ \\&|x", 2, "102"),
        (b"MSH|^~\\\\&|x", 2, "102"),
        (b"MSH|^~\\&#!|x", 2, "102"),
    ],
)
def test_read_msh_rejects_unreadable_headers(raw: bytes, field: int | None, code: str) -> None:
    """No MSH, a missing or bad field separator, or bad encoding characters raise ParseError."""
    with pytest.raises(ParseError) as info:
        read_msh(raw)
    assert info.value.field == field
    assert info.value.code == code
    assert str(info.value).startswith("MSH")
    assert "\n" not in str(info.value)


def test_read_msh_leaves_required_fields_to_the_caller() -> None:
    """An empty MSH-10 or MSH-9 is not read_msh's business: it returns ""."""
    header = read_msh(b"MSH|^~\\&|A|B|C|D|20240101||||P|2.4")
    assert header.control_id == ""
    assert header.message_type == ""


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

PATHS = ["MSH-9.1", "MSH-2", "PID-3[*].1", "PID-5[2].1.2", "OBX[*]-5[*]", "OBX[2]-3.2", "ZZ1-1"]


def _exercise(msg: Message) -> None:
    for path in PATHS:
        msg.get(path)
        msg.values(path)
        _ = msg[path]
    for seg in msg.segments():
        for n in range(len(seg) + 1):
            seg.field(n)
            seg.repetitions(n)
            seg.get(n, 2, 1, 1)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_gives_a_message_or_value_error(text: str) -> None:
    """Message() on arbitrary text either works or raises ValueError, and reading never raises."""
    try:
        msg = Message(text)
    except ValueError:
        return
    _exercise(msg)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["|", "$", "!", "{"]),
    st.text(alphabet="^~\\&#%$|", max_size=6),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
    | st.text(alphabet='|^~\\&"\r\nAZ019.X', max_size=300),
)
def test_any_message_body_can_be_read_without_errors(fs: str, enc: str, body: str) -> None:
    """After a valid MSH start, any body and any delimiters are read without exceptions."""
    _exercise(Message(f"MSH{fs}{enc}{fs}{body}"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b"MSH" + b))
def test_any_bytes_give_a_header_or_parse_error(raw: bytes) -> None:
    """read_msh on arbitrary bytes returns a header or raises ParseError, nothing else."""
    try:
        header = read_msh(raw)
    except ParseError as exc:
        assert exc.code in ("100", "101", "102")
        return
    assert isinstance(header, MshHeader)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("\\FSTREXHNPZCM.brsp0123456789AFaf| x中"), max_size=60))
def test_unescape_never_raises(text: str) -> None:
    """unescape on arbitrary escape-heavy text returns text and never raises."""
    assert isinstance(unescape(text, D), str)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_text_without_escape_character_is_unchanged(text: str) -> None:
    """Text without the escape character comes back unchanged."""
    text = text.replace("\\", "")
    assert unescape(text, D) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_path_text_compiles_or_raises_value_error(text: str) -> None:
    """parse_path on arbitrary text returns a Path or raises ValueError."""
    with contextlib.suppress(ValueError):
        parse_path(text)


def _escape(text: str) -> str:
    """HL7-escape text with the default delimiters (test helper, escape char first)."""
    for char, code in (("\\", "E"), ("|", "F"), ("^", "S"), ("&", "T"), ("~", "R")):
        text = text.replace(char, f"\\{code}\\")
    return text


SAFE_TEXT = st.text(
    alphabet=st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]),
    min_size=1,
    max_size=12,
).filter(lambda s: s != '""' and not s.isspace())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.lists(SAFE_TEXT, min_size=1, max_size=3), min_size=1, max_size=3)))
def test_escaped_values_round_trip_through_the_reader(reps: list[list[list[str]]]) -> None:
    """Any text, escaped and placed in repetitions/components/sub-components, reads back as-is."""
    field = "~".join("^".join("&".join(_escape(s) for s in comp) for comp in rep) for rep in reps)
    msg = Message(f"MSH|^~\\&|A\rOBX|1|ST|||{field}")
    for ri, rep in enumerate(reps, 1):
        for ci, comp in enumerate(rep, 1):
            for si, sub in enumerate(comp, 1):
                assert msg.get(f"OBX-5[{ri}].{ci}.{si}") == sub
    if reps:
        assert len(msg.values("OBX-5[*].1.1")) == len(reps)
