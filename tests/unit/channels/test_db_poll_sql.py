"""The db_poll channel's statements as text (SQL Server cannot run here), its row encoding,
its cursor values and its settings."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from channels.db_poll.reader import dialect_of, masked_source
from channels.db_poll.rows import control_id, dump_value, encode_row, load_value
from channels.db_poll.settings import DbPollChannel
from channels.db_poll.sql import PollQueries, qmark

SHANGHAI = ZoneInfo("Asia/Shanghai")


def queries(dialect: str, **kw: object) -> PollQueries:
    args: dict[str, object] = {
        "view": "dbo.v_child_exam",
        "query": "",
        "watermark": "updated_at",
        "key": "exam_id",
        "limit": 500,
        "rowversion": False,
    }
    args.update(kw)
    return PollQueries.build(dialect, **args)  # type: ignore[arg-type]


class TestTransactSql:
    def test_timestamp_cursor_reads_ties_by_key_with_top(self) -> None:
        """SQL Server gets TOP (n) and the (watermark, key) condition, ordered by both."""
        assert queries("mssql").after == (
            "SELECT TOP (500) * FROM dbo.v_child_exam WHERE (updated_at > :wm OR (updated_at = :wm "
            "AND exam_id > :key)) ORDER BY updated_at, exam_id"
        )

    def test_rowversion_is_bounded_by_the_oldest_open_transaction(self) -> None:
        """With a rowversion, rows at or past MIN_ACTIVE_ROWVERSION() wait for their commit."""
        q = queries("mssql", watermark="rv", rowversion=True)
        assert q.after == (
            "SELECT TOP (500) * FROM dbo.v_child_exam WHERE rv > :wm AND rv < MIN_ACTIVE_ROWVERSION() ORDER BY rv"
        )
        assert q.first == (
            "SELECT TOP (500) * FROM dbo.v_child_exam WHERE rv < MIN_ACTIVE_ROWVERSION() ORDER BY rv"
        )

    def test_look_back_pages_stop_at_the_cursor(self) -> None:
        q = queries("mssql", limit=100)
        assert q.window_first == (
            "SELECT TOP (100) * FROM dbo.v_child_exam WHERE updated_at >= :low AND (updated_at < :to_wm "
            "OR (updated_at = :to_wm AND exam_id <= :to_key)) ORDER BY updated_at, exam_id"
        )

    def test_names_that_need_it_are_quoted_by_the_dialects_rules(self) -> None:
        """A mixed-case or reserved column name is bracketed, never pasted bare."""
        q = queries("mssql", watermark="UpdatedAt", key="order")
        assert "[UpdatedAt] > :wm" in q.after and "[order] > :key" in q.after


@pytest.mark.parametrize(
    ("dialect", "tail"),
    [
        ("postgresql", " LIMIT 500"),
        ("mysql", " LIMIT 500"),
        ("sqlite", " LIMIT 500"),
        ("oracle", " FETCH FIRST 500 ROWS ONLY"),
    ],
)
def test_row_limit_as_each_database_writes_it(dialect: str, tail: str) -> None:
    sql = queries(dialect, view="v_child_exam").after
    assert sql.startswith("SELECT * FROM v_child_exam WHERE ") and sql.endswith(
        "ORDER BY updated_at, exam_id" + tail
    )


def test_a_query_is_wrapped_not_edited() -> None:
    sql = queries("postgresql", view="", query="select * from exams e join kids k on k.id = e.kid").first
    assert sql == (
        "SELECT * FROM (select * from exams e join kids k on k.id = e.kid) AS src ORDER BY updated_at, exam_id LIMIT 500"
    )


def test_qmark_orders_values_as_the_marks() -> None:
    sql, values = qmark("a > :wm OR (a = :wm AND b > :key) AND c::text = 'x'", {"wm": 1, "key": 2})
    assert sql == "a > ? OR (a = ? AND b > ?) AND c::text = 'x'"
    assert values == [1, 1, 2]


class TestRows:
    def test_the_same_row_gives_the_same_bytes_whatever_the_column_order(self) -> None:
        row = {
            "b": Decimal("7.60"),
            "a": datetime(2025, 4, 10, 9, 48, 12),
            "c": b"\x00\x01",
            "d": date(2024, 10, 8),
        }
        again = dict(reversed(list(row.items())))
        raw = encode_row(row, SHANGHAI)
        assert raw == encode_row(again, SHANGHAI)
        assert json.loads(raw) == {
            "a": "2025-04-10T09:48:12+08:00",
            "b": "7.60",
            "c": "AAE=",
            "d": "2024-10-08",
        }

    def test_chinese_text_is_kept_as_utf8(self) -> None:
        assert encode_row({"child_name": "李沐瑶"}, SHANGHAI).decode("utf-8") == '{"child_name":"李沐瑶"}'

    def test_control_id_names_key_and_watermark(self) -> None:
        assert control_id(41, datetime(2025, 4, 10, 9, 48, 12), SHANGHAI) == "41@2025-04-10T09:48:12+08:00"
        assert control_id("x" * 300, 1, SHANGHAI).startswith("sha256:")

    @pytest.mark.parametrize(
        "value",
        [
            datetime(2025, 4, 10, 9, 48, 12, 123456),
            datetime(2025, 4, 10, 1, 0, tzinfo=timezone(timedelta(hours=8))),
            date(2025, 4, 10),
            41,
            Decimal("10.50"),
            b"\x00\x00\x00\x00\x00\x00\x07\xd1",
            "A-0041",
        ],
    )
    def test_cursor_values_come_back_as_the_type_the_database_gave(self, value: object) -> None:
        back = load_value(dump_value(value))
        assert back == value and type(back) is type(value)


class TestSettings:
    def base(self, **kw: object) -> dict[str, object]:
        return {
            "type": "db_poll",
            "url": "sqlite:///his.db",
            "watermark": "updated_at",
            "key": "exam_id",
            **kw,
        }

    def test_view_or_query_exactly_one(self) -> None:
        with pytest.raises(ValidationError, match="exactly one of `view` or `query`"):
            DbPollChannel.model_validate(self.base())
        with pytest.raises(ValidationError, match="exactly one"):
            DbPollChannel.model_validate(self.base(view="v", query="select 1"))

    def test_a_column_name_is_an_identifier(self) -> None:
        with pytest.raises(ValidationError, match="`key` must be a column name"):
            DbPollChannel.model_validate(self.base(view="v", key="id; drop table x"))

    @pytest.mark.parametrize("url", ["his-db:1433", "nosuchdb://u:geheim@h/db"])
    def test_a_url_must_name_a_database_sqlalchemy_knows(self, url: str) -> None:
        with pytest.raises(ValidationError, match="expected a SQLAlchemy URL") as caught:
            DbPollChannel.model_validate(self.base(view="v", url=url))
        assert "geheim" not in caught.value.errors()[0]["msg"]  # what `check` prints

    def test_an_empty_url_disables_the_channel(self) -> None:
        assert not DbPollChannel.model_validate(self.base(view="v", url="")).enabled
        assert DbPollChannel.model_validate(self.base(view="v")).enabled


@pytest.mark.parametrize(
    ("url", "dialect"),
    [
        ("mssql+pyodbc://mch@his/his?driver=FreeTDS", "mssql"),
        ("postgresql+psycopg://mch@his/his", "postgresql"),
        ("odbc:DRIVER={PostgreSQL Unicode};SERVER=his", "postgresql"),
        ("odbc:DRIVER={MariaDB Unicode};SERVER=his", "mysql"),
        ("odbc:DRIVER={FreeTDS};SERVER=his;TDS_Version=7.4", "mssql"),
        ("odbc:DRIVER={ODBC Driver 18 for SQL Server};SERVER=his", "mssql"),
    ],
)
def test_dialect_from_the_url(url: str, dialect: str) -> None:
    assert dialect_of(url) == dialect


def test_passwords_are_never_shown() -> None:
    assert (
        masked_source("odbc:DRIVER={FreeTDS};UID=sa;PWD={p;w};X=1")
        == "odbc:DRIVER={FreeTDS};UID=sa;PWD=***;X=1"
    )
    assert "geheim" not in masked_source("mssql+pyodbc://sa:geheim@his/his?driver=FreeTDS")
