"""Unit tests for structured logging with patient data masked (engine.logging)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from core.masking import mask_text
from engine.logging import configure, mask_pii
from support import ENGINE_LOG

ID_CARD = "500112199403151525"
ID_CARD_X = "50011219980416110X"
MOBILE = "13900001234"
NAME = "陈思雨"


def masked(event: dict[str, Any]) -> str:
    """The event after masking, as the JSON text that would be written."""
    return json.dumps(mask_pii(None, "info", dict(event)), ensure_ascii=False)


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """Logging configured into a buffer at debug level; restored to the quiet default after."""
    buf = io.StringIO()
    configure("debug", stream=buf)
    try:
        yield buf
    finally:
        configure("warning", stream=ENGINE_LOG)


def lines_of(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


class TestMaskText:
    @pytest.mark.parametrize("id_card", [ID_CARD, ID_CARD_X, ID_CARD_X.lower()])
    def test_18_digit_id_is_masked(self, id_card: str) -> None:
        """An 18-character 身份证号 in free text keeps only its area code and check character."""
        out = mask_text(f"身份证号{id_card}校验失败")
        assert id_card not in out
        assert out.startswith("身份证号500112") and out.endswith("校验失败")
        assert "*" in out

    def test_15_digit_id_is_masked(self) -> None:
        """An old 15-digit ID number is masked too."""
        assert "500112940315152" not in mask_text("旧证 500112940315152 已换")

    def test_id_inside_hl7_text_is_masked(self) -> None:
        """An ID number inside HL7 field text (CX with ^) is masked."""
        out = mask_text(f"PID|1||0010023456^^^HIS^PI~{ID_CARD}^^^^ID||{NAME}")
        assert ID_CARD not in out
        assert "0010023456" in out  # a 10-digit HIS id is not personal data by itself

    def test_mobile_is_masked(self) -> None:
        """A mainland mobile number keeps its first three and last four digits."""
        out = mask_text(f"联系电话:{MOBILE}。")
        assert MOBILE not in out
        assert out == "联系电话:139****1234。"

    def test_mobile_in_xtn_is_masked(self) -> None:
        """A mobile number in an XTN field (country code in its own component) is masked."""
        assert MOBILE not in mask_text(f"^PRN^CP^^86^^{MOBILE}")

    def test_mobile_with_country_code_is_masked(self) -> None:
        """A mobile number written with the +86 country code is masked too."""
        assert MOBILE not in mask_text(f"电话 +86{MOBILE}")

    def test_longer_digit_runs_are_left_alone(self) -> None:
        """Control ids and other long digit runs that are not IDs or phones stay readable."""
        text = "MSH-10 2024032108321500017 OBR-3 2403210318"
        assert mask_text(text) == text

    def test_chinese_text_is_unchanged(self) -> None:
        """Text without ID or phone numbers passes unchanged, Chinese included."""
        text = "产科门诊 血红蛋白 118 g/L 𠮷 䶮"
        assert mask_text(text) == text


class TestMaskPii:
    def test_event_never_holds_id_mobile_or_name(self) -> None:
        """After masking, an event holds no ID number, mobile number or name value anywhere."""
        event = {
            "event": f"mapping failed: PID-19 = '{ID_CARD}'",
            "name": NAME,
            "patient_name": NAME,
            "id_card": ID_CARD,
            "phone": MOBILE,
            "error": f"phone {MOBILE} not reachable",
            "record": {
                "name": NAME,
                "id_card": ID_CARD_X,
                "identifiers": [{"id": ID_CARD, "type": "ID"}],
                "address": {"street": "金龙路18号3栋2单元501", "city": "重庆市"},
            },
            "values": [ID_CARD, MOBILE],
            "pair": (ID_CARD, "x"),
        }
        out = masked(event)
        for secret in (ID_CARD, ID_CARD_X, MOBILE, NAME, "金龙路18号"):
            assert secret not in out

    def test_name_keeps_only_its_first_character(self) -> None:
        """A name is masked to its first character and stars, so a reader can still tell names apart."""
        out = mask_pii(None, "info", {"name": NAME, "patient_name": "𠮷晓芸"})
        assert out["name"] == "陈**"
        assert out["patient_name"].startswith("𠮷") and "晓芸" not in out["patient_name"]

    @pytest.mark.parametrize("key", ["id_card", "IdCard", "phone", "mobile", "address", "birth_date", "NAME"])
    def test_pii_keys_are_masked_whatever_their_case(self, key: str) -> None:
        """Values under personal-data keys are masked, keys matched without regard to case."""
        out = mask_pii(None, "info", {key: "19940315 重庆市"})
        assert "19940315" not in json.dumps(out, ensure_ascii=False)

    def test_pinyin_name_from_the_person_mapping_is_masked(self) -> None:
        """The pinyin name the shipped Person mapping produces (`name_pinyin`) is masked too."""
        out = masked({"record": {"name": NAME, "name_pinyin": "CHEN SIYU"}})
        assert "CHEN SIYU" not in out

    def test_empty_pii_values_stay_empty(self) -> None:
        """Empty or missing personal values are left as they are (nothing to hide)."""
        out = mask_pii(None, "info", {"name": "", "phone": None})
        assert out == {"name": "", "phone": None}

    def test_other_values_pass_through(self) -> None:
        """Non-personal values keep their type and value; Chinese text stays readable."""
        event = {"event": "记录已保存", "channel": "lis_gbk", "count": 3, "ok": True, "ratio": 0.5}
        assert mask_pii(None, "info", dict(event)) == event

    @settings(max_examples=200, deadline=None)
    @given(
        before=st.text(max_size=20).filter(lambda s: not s[-1:].isdigit()),
        after=st.text(max_size=20).filter(lambda s: not s[:1].isdigit()),
        id_card=st.from_regex(r"\A[1-9][0-9]{16}[0-9X]\Z"),
        mobile=st.from_regex(r"\A1[3-9][0-9]{9}\Z"),
    )
    def test_any_id_or_mobile_in_any_text_is_masked(
        self, before: str, after: str, id_card: str, mobile: str
    ) -> None:
        """An 18-digit ID or mobile number between any non-digit text never survives masking."""
        out = masked({"event": f"{before}{id_card}{after}", "detail": f"{before}{mobile}{after}"})
        assert id_card not in out
        assert mobile not in out


class TestConfigure:
    def test_writes_masked_json_lines(self, log_buffer: io.StringIO) -> None:
        """configure(stream=buf) writes one JSON object per event, with personal data masked."""
        log = structlog.get_logger("test")
        log.info("patient_registered", name=NAME, id_card=ID_CARD, note=f"手机 {MOBILE}")
        log.warning("mapping_failed", error=f"PID-19 = '{ID_CARD}' 无效")
        text = log_buffer.getvalue()
        for secret in (ID_CARD, MOBILE, NAME):
            assert secret not in text
        events = lines_of(log_buffer)
        assert [e["event"] for e in events] == ["patient_registered", "mapping_failed"]
        assert [e["level"] for e in events] == ["info", "warning"]
        assert all("timestamp" in e for e in events)
        assert events[0]["name"] == "陈**"

    def test_chinese_is_written_readably(self, log_buffer: io.StringIO) -> None:
        """Chinese text is written as characters, not \\u escapes."""
        structlog.get_logger("test").info("已接收", department="产科门诊")
        text = log_buffer.getvalue()
        assert "产科门诊" in text and "已接收" in text
        assert "\\u" not in text

    def test_exception_text_is_masked(self, log_buffer: io.StringIO) -> None:
        """A logged exception quoting an ID number is masked in the traceback text."""
        log = structlog.get_logger("test")
        try:
            raise ValueError(f"bad id {ID_CARD}")
        except ValueError:
            log.exception("failed")
        assert ID_CARD not in log_buffer.getvalue()
        (event,) = lines_of(log_buffer)
        assert "ValueError" in event["exception"]

    def test_context_variables_are_masked(self, log_buffer: io.StringIO) -> None:
        """Values bound through contextvars go through the same masking."""
        structlog.contextvars.bind_contextvars(phone=MOBILE)
        try:
            structlog.get_logger("test").info("with_context")
        finally:
            structlog.contextvars.clear_contextvars()
        assert MOBILE not in log_buffer.getvalue()

    def test_level_filters_lower_events(self) -> None:
        """At level warning, info events are not written."""
        buf = io.StringIO()
        configure("warning", stream=buf)
        try:
            log = structlog.get_logger("test")
            log.info("quiet")
            log.warning("loud")
        finally:
            configure("warning", stream=ENGINE_LOG)
        assert [e["event"] for e in lines_of(buf)] == ["loud"]


class TestRecordKeys:
    @pytest.mark.parametrize(
        ("key", "value", "shown"),
        [
            ("record_id", "person:HIS:0010031207", "person:HIS:******1207"),
            ("record_id", "lab:LIS:10:2407101562", "lab:LIS:10:******1562"),
            ("person_key", "PI:HIS:0010023456", "PI:HIS:******3456"),
            ("survivor", f"ID:{ID_CARD}", "ID:**************1525"),
            ("merged", "PI:HIS:A123", "PI:HIS:****"),
        ],
    )
    def test_the_identifier_part_is_masked(self, key: str, value: str, shown: str) -> None:
        """A HIS patient id inside a record id or person key is masked; kind and system stay readable."""
        assert mask_pii(None, "warning", {key: value})[key] == shown


class TestDatabaseErrors:
    def test_a_row_quoted_by_postgresql_is_left_out(self) -> None:
        """`Failing row contains (…)` and `Key (…)=(…)` echo stored values: the log keeps the error, not them."""
        error = (
            'null value in column "id" violates not-null constraint\n'
            f"DETAIL:  Failing row contains (null, {NAME}, 0010031207, started).\n[SQL: INSERT …]"
        )
        duplicate = (
            f"duplicate key value\nDETAIL:  Key (record_id)=(person:HIS:0010031207 {NAME}) already exists."
        )
        out = masked({"event": "journal_write_failed", "error": error, "detail": duplicate})
        assert NAME not in out and "0010031207" not in out
        assert "not-null constraint" in out and "already exists" in out and "[SQL: INSERT" in out
