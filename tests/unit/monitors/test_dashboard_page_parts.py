"""The parts of the dashboard pages that need no browser: a message laid out with its
fields named and, for a viewer, masked; the per-minute counts behind the sparkline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, insert

from core.journal.schema import messages, metadata
from monitors.web.pages import sparkline
from monitors.web.pages.message_view import lay_out, masked_record

MESSAGE = (
    "MSH|^~\\&|HIS|FY01|MCH|FY01|20240321083200||ADT^A04^ADT_A01|C1|P|2.5\r"
    "PID|1||0010031207^^^HIS^PI~11010519491231002X^^^^ID||王小红^^^^^^L||19940315|F\r"
    "OBX|1|TX|NOTE||家属电话 13812345678，身份证 11010519491231002X\r"
)


def test_segments_one_a_line_with_standard_field_names() -> None:
    msh, pid, obx = lay_out(MESSAGE, masked=False)
    assert [s.name for s in (msh, pid, obx)] == ["MSH", "PID", "OBX"]
    assert (msh.fields[0].number, msh.fields[0].value) == (2, "^~\\&")  # MSH-1 is the separator
    assert msh.fields[7].title == "MSH-9 Message Type" and msh.fields[7].value == "ADT^A04^ADT_A01"
    assert pid.fields[4].title == "PID-5 Patient Name" and pid.fields[4].value == "王小红^^^^^^L"
    assert "11010519491231002X" in pid.fields[2].value


def test_a_viewer_reads_no_identifier_anywhere_in_the_message() -> None:
    shown = "".join(f.value for s in lay_out(MESSAGE, masked=True) for f in s.fields)
    for secret in ("11010519491231002X", "0010031207", "王小红", "19940315", "13812345678"):
        assert secret not in shown
    pid = lay_out(MESSAGE, masked=True)[1]
    assert (pid.fields[0].value, pid.fields[7].value) == ("1", "F")  # set id and sex stay


def test_a_viewer_reads_records_with_identifiers_cut_to_their_last_four() -> None:
    record = {
        "person": {"name": "王小红", "id_card": "11010519491231002X", "his_id": "0010031207"},
        "identifiers": [{"value": "0010031207", "type": "PI"}],
    }
    shown = masked_record(record)
    assert shown["person"]["his_id"] == "******1207"
    assert shown["identifiers"][0] == {"value": "******1207", "type": "PI"}
    assert "11010519491231002X" not in str(shown) and "王小红" not in str(shown)


def test_per_minute_counts_fall_in_their_minute_and_older_ones_are_left_out() -> None:
    db = create_engine("sqlite://")
    metadata.create_all(db)
    now = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    ages = [10, 20, 70, 29 * 60 + 30, 31 * 60]  # seconds before now; the last is too old

    def row(age: int, channel: str = "his") -> dict[str, object]:
        at = now - timedelta(seconds=age)
        return {"channel": channel, "received_at": at, "updated_at": at, "status": "routed", "raw": b"x"}

    with db.begin() as conn:
        conn.execute(insert(messages), [row(a) for a in ages] + [row(5, "lis")])
    counts = sparkline.per_minute(db, now)
    assert len(counts["his"]) == sparkline.MINUTES
    assert counts["his"][-1] == 2 and counts["his"][-2] == 1 and counts["his"][0] == 1
    assert sum(counts["his"]) == 4 and counts["lis"][-1] == 1


def test_the_sparkline_is_numbers_and_an_escaped_title() -> None:
    drawn = sparkline.svg([0, 3, 1], '<b>"x"</b>: 4')
    assert drawn.startswith('<svg class="spark"') and "<b>" not in drawn
    assert "&lt;b&gt;&quot;x&quot;&lt;/b&gt;: 4" in drawn
    assert 'points="0.0,23.0 60.0,1.0 120.0,15.7"' in drawn
