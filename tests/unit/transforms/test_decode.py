"""Unit tests for charset selection and strict decoding (transforms.decode)."""

from __future__ import annotations

from pathlib import Path

import pytest

import support
from core.errors import CharsetMismatch, DecodeError, InputError
from transforms.decode import choose_encoding, codec_for_msh18, decode, normalise_codec, read_text
from transforms.hl7v2 import read_msh


class TestCodecForMsh18:
    @pytest.mark.parametrize(
        ("msh18", "codec"),
        [
            ("UNICODE UTF-8", "utf-8"),
            ("UTF-8", "utf-8"),
            ("GB 18030-2000", "gb18030"),
            ("GB18030", "gb18030"),
            ("GBK", "gb18030"),
            ("GB2312", "gb18030"),
            ("ASCII", "ascii"),
            ("8859/1", "latin-1"),
            ("UNICODE UTF-16", "utf-16"),
            ("BIG-5", "big5"),
        ],
    )
    def test_table_0211_names_map_to_codecs(self, msh18: str, codec: str) -> None:
        """HL7 table 0211 names (and common spellings) name a Python codec."""
        assert codec_for_msh18(msh18) == codec

    def test_case_and_spaces_do_not_matter(self) -> None:
        """MSH-18 is matched without regard to case or surrounding spaces."""
        assert codec_for_msh18("  unicode utf-8 ") == "utf-8"
        assert codec_for_msh18("gb 18030-2000") == "gb18030"

    @pytest.mark.parametrize("msh18", ["KLINGON", "UTF-9", "", "GB 18030-2005"])
    def test_unknown_names_give_none(self, msh18: str) -> None:
        """A name the table does not know gives None."""
        assert codec_for_msh18(msh18) is None


class TestChooseEncoding:
    def test_known_msh18_beats_the_channel(self) -> None:
        """A known MSH-18 wins over the channel's encoding."""
        assert choose_encoding("UNICODE UTF-8", "gb18030") == "utf-8"
        assert choose_encoding("GB 18030-2000", "utf-8") == "gb18030"

    def test_empty_msh18_uses_the_channel(self) -> None:
        """No MSH-18 (or only spaces) means the channel's setting."""
        assert choose_encoding("", "gb18030") == "gb18030"
        assert choose_encoding("   ", "utf-8") == "utf-8"

    def test_unknown_msh18_falls_back_to_the_channel(self) -> None:
        """An MSH-18 the engine does not know falls back to the channel's setting."""
        assert choose_encoding("KLINGON", "gb18030") == "gb18030"


class TestNormaliseCodec:
    @pytest.mark.parametrize("name", ["GBK", "gbk", "cp936", "gb2312", "GB18030", "gb18030"])
    def test_gb_family_journals_as_gb18030(self, name: str) -> None:
        """GBK, CP936 and GB2312 are all journaled as gb18030, their superset."""
        assert normalise_codec(name) == "gb18030"

    @pytest.mark.parametrize("name", ["UTF8", "utf-8", "UTF-8", "utf_8"])
    def test_utf8_spellings_are_one_name(self, name: str) -> None:
        """Every spelling of UTF-8 journals as utf-8."""
        assert normalise_codec(name) == "utf-8"

    def test_unknown_codec_raises_lookup_error(self) -> None:
        """A name Python does not know is a LookupError (a configuration mistake)."""
        with pytest.raises(LookupError):
            normalise_codec("no-such-codec")


class TestDecode:
    def test_utf8_text(self) -> None:
        """Valid UTF-8 bytes decode to the same text, 4-byte characters included."""
        text = "PID|1||陈思雨 𠮷晓芸"
        assert decode(text.encode(), "utf-8") == text

    def test_gbk_bytes_decode_under_gb18030(self) -> None:
        """Bytes a GBK sender writes decode under gb18030 to the same text."""
        text = "PID|1||唐小凤^^^^ID||重庆市丰都县"
        assert decode(text.encode("gbk"), "gb18030") == text

    def test_gb2312_bytes_decode_under_gb18030(self) -> None:
        """GB2312 bytes decode under gb18030 too."""
        assert decode("罗美玲".encode("gb2312"), "gb18030") == "罗美玲"

    def test_fe9f_is_u4dae_under_gb18030(self) -> None:
        """Bytes FE 9F decode to U+4DAE (䶮) under gb18030."""
        assert decode(b"\xfe\x9f", "gb18030") == "\u4dae" == "䶮"
        assert decode("龚䶮".encode("gb18030"), "gb18030") == "龚䶮"

    def test_four_byte_gb18030_character(self) -> None:
        """U+20BB7 (𠮷), four bytes in GB18030, decodes under gb18030."""
        raw = "𠮷晓芸".encode("gb18030")
        assert len("𠮷".encode("gb18030")) == 4
        assert decode(raw, "gb18030") == "𠮷晓芸"

    def test_gb18030_bytes_declared_utf8_raise_with_offset_and_guess(self) -> None:
        """GB18030 bytes read as UTF-8 raise DecodeError with the offset, declaration and guess."""
        prefix = "MSH|^~\\&|LIS|10|PID|"
        raw = (prefix + "黄婷婷").encode("gb18030")
        with pytest.raises(DecodeError) as caught:
            decode(raw, "utf-8", declared="UNICODE UTF-8")
        err = caught.value
        assert isinstance(err, InputError)
        assert err.offset == len(prefix)
        assert err.encoding == "utf-8"
        message = str(err)
        assert f"offset {len(prefix)}" in message
        assert "UNICODE UTF-8" in message
        assert "GB18030" in message

    def test_utf8_bytes_read_as_gb18030_guess_utf8(self) -> None:
        """UTF-8 bytes that are not valid gb18030 raise with a UTF-8 guess."""
        raw = "MSH|陈".encode()  # E9 99 | 88: the last byte starts a pair that never ends
        with pytest.raises(DecodeError) as caught:
            decode(raw, "gb18030")
        assert caught.value.offset == 6
        assert "UTF-8" in str(caught.value)

    def test_bytes_valid_nowhere_have_no_guess(self) -> None:
        """Bytes that neither UTF-8 nor GB18030 read raise without a guess."""
        with pytest.raises(DecodeError) as caught:
            decode(b"MSH|\xff\xff", "utf-8")
        assert caught.value.offset == 4
        assert "look like" not in str(caught.value)

    def test_bad_bytes_are_never_replaced(self) -> None:
        """A single undecodable byte fails the whole decode (nothing is silently replaced)."""
        with pytest.raises(DecodeError):
            decode("正常文本".encode() + b"\x80" + "后面".encode(), "utf-8")

    def test_decode_error_keeps_the_unicode_error_as_cause(self) -> None:
        """The original UnicodeDecodeError is chained for debugging."""
        with pytest.raises(DecodeError) as caught:
            decode(b"\xff", "ascii")
        assert isinstance(caught.value.__cause__, UnicodeDecodeError)


# The charset rule for bytes that decode but would be mojibake (docs/mllp.md, "Character sets").

GB_FILES = sorted(
    p
    for p in support.CHINESE.glob("*.hl7")
    if ("_gb18030__" in p.name or "_gbk__" in p.name)
    # 028 declares UTF-8 over GB18030 bytes: the malformed case, refused as expected.tsv says.
    and codec_for_msh18(read_msh(p.read_bytes()).charset) != "utf-8"
)


@pytest.mark.parametrize("path", GB_FILES, ids=lambda p: p.name[:3])
def test_no_gb18030_or_gbk_file_of_the_chinese_set_is_taken_for_utf8(path: Path) -> None:
    """Every GB18030/GBK message of the synthetic set reads as GB18030 on a GB18030 channel."""
    raw = path.read_bytes()
    msh18 = read_msh(raw).charset
    assert read_text(raw, msh18, "gb18030").encoding == "gb18030"


def test_gb2312_common_characters_alone_are_never_taken_for_utf8() -> None:
    """No single common character (GB2312 level 1) in GB18030 bytes looks like UTF-8 text."""
    for hi in range(0xB0, 0xD8):
        for lo in range(0xA1, 0xFF):
            raw = b"PID|1||" + bytes([hi, lo]) + b"|"
            if hi == 0xD7 and lo > 0xF9:
                continue  # unassigned cells at the end of level 1
            reading = read_text(raw, "", "gb18030")
            assert reading.encoding == "gb18030", raw


def test_undeclared_utf8_on_a_gb18030_channel_says_so() -> None:
    """UTF-8 with Chinese and no MSH-18 on a GB18030 channel is read as UTF-8, flagged."""
    reading = read_text("PID|1||𠮷晓芸^王䶮^李喆^张堃|".encode(), "", "gb18030")
    assert (reading.text, reading.encoding, reading.undeclared_utf8) == (
        "PID|1||𠮷晓芸^王䶮^李喆^张堃|",
        "utf-8",
        True,
    )


def test_utf8_with_only_latin_symbols_stays_with_a_gb18030_channel() -> None:
    """Valid UTF-8 without a CJK character (°, μ) is not enough to overrule a GB18030 channel."""
    assert read_text("OBX|1|NM|T^体温||36.5|°C".encode("gb18030"), "", "gb18030").encoding == "gb18030"


@pytest.mark.parametrize(
    ("msh18", "text", "says"),
    [
        ("8859/1", "PID|1||Müller", "UTF-8"),
        ("8859/1", "PID|1||陈思雨", "UTF-8"),
        ("GB 18030-2000", "PID|1||陈思雨", "UTF-8"),
        ("UNICODE UTF-16", "PID|1||A", "UTF-16"),
    ],
)
def test_a_declared_charset_the_bytes_contradict_is_refused(msh18: str, text: str, says: str) -> None:
    with pytest.raises(CharsetMismatch) as caught:
        read_text(text.encode("utf-8"), msh18, "utf-8")
    assert msh18 in str(caught.value) and says in str(caught.value)


def test_latin1_declared_and_latin1_bytes_are_read_as_latin1() -> None:
    assert read_text("PID|1||Müller".encode("latin-1"), "8859/1", "utf-8").text == "PID|1||Müller"
