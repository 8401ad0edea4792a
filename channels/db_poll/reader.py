"""Reading rows from the HIS: through SQLAlchemy, or straight through pyodbc and unixODBC.

`SqlAlchemyReader` takes any SQLAlchemy URL (mssql+pyodbc, postgresql+psycopg,
mysql+pymysql, sqlite). `OdbcReader` takes an ODBC connection string (`odbc:DRIVER={…};…`)
and runs the same generated SELECT through pyodbc with `?` parameters: the driver manager
and the site's ODBC driver do the work, as on a host that only has an ODBC DSN for the HIS.
Both only ever read (the transaction is rolled back), and turn every driver failure into a
`PollError` whose text carries no values from the statement.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.engine import make_url

from channels.db_poll.settings import ODBC_PREFIX
from channels.db_poll.sql import qmark
from core.database import make_engine
from core.masking import mask_text
from core.masking import masked_url as masked

DETAIL_CHARS = 240
_ODBC_SECRET = re.compile(r"((?:PWD|PASSWORD)\s*=\s*)(\{[^}]*\}|[^;]*)", re.IGNORECASE)
_ODBC_DRIVER = re.compile(r"DRIVER\s*=\s*\{?([^};]*)", re.IGNORECASE)
_DIALECT_BY_DRIVER = (
    ("postgres", "postgresql"),
    ("maria", "mysql"),
    ("mysql", "mysql"),
    ("sqlite", "sqlite"),
)

CONNECT, QUERY, COLUMNS, JOURNAL = "connect", "query", "columns", "journal"


class PollError(Exception):
    """A poll that failed: `kind` is connect, query, columns or journal; one line of text."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind, self.detail = kind, detail
        super().__init__(f"{kind}: {detail}")


def detail(exc: BaseException) -> str:
    """The driver's words on one line, masked and shortened."""
    cause = getattr(exc, "orig", None) or exc
    words = mask_text(" ".join(str(cause).split()) or type(cause).__name__)
    return words if len(words) <= DETAIL_CHARS else words[: DETAIL_CHARS - 1] + "…"


def masked_source(url: str) -> str:
    """A HIS address as a person may see it: the password never shown."""
    if url.startswith(ODBC_PREFIX):
        return _ODBC_SECRET.sub(r"\1***", url)
    return masked(url)


def dialect_of(url: str, declared: str = "") -> str:
    """The SQL flavour: the URL's backend, or for an ODBC string the declared one, else
    a guess from its DRIVER name (SQL Server's drivers and FreeTDS are mssql)."""
    if declared:
        return declared
    if not url.startswith(ODBC_PREFIX):
        return make_url(url).get_backend_name()
    found = _ODBC_DRIVER.search(url)
    driver = (found.group(1) if found else "").lower()
    return next((d for part, d in _DIALECT_BY_DRIVER if part in driver), "mssql")


class Reader(Protocol):
    def fetch(self, sql: str, params: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        """Column names and rows of one SELECT (raises PollError)."""
        ...

    def close(self) -> None: ...


def reader_for(url: str, timeout: float, dialect: str = "") -> Reader:
    if url.startswith(ODBC_PREFIX):
        return OdbcReader(url[len(ODBC_PREFIX) :], timeout, dialect_of(url, dialect))
    return SqlAlchemyReader(url, timeout)


_TIMEOUT_ARG = {"pyodbc": "timeout", "psycopg": "connect_timeout", "pymysql": "connect_timeout"}


class SqlAlchemyReader:
    def __init__(self, url: str, timeout: float) -> None:
        parsed = make_url(url)
        arg = _TIMEOUT_ARG.get(parsed.get_driver_name())
        connect_args = {arg: max(1, round(timeout))} if arg else {}
        self._engine = make_engine(url, connect_args=connect_args) if connect_args else make_engine(url)

    def fetch(self, sql: str, params: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        try:
            conn = self._engine.connect()
        except Exception as exc:
            raise PollError(CONNECT, detail(exc)) from exc
        try:
            result = conn.execute(text(sql), dict(params))
            names = [str(k) for k in result.keys()]  # noqa: SIM118 (a Result, not a dict)
            return names, [dict(zip(names, row, strict=True)) for row in result]
        except Exception as exc:
            invalidated = bool(getattr(exc, "connection_invalidated", False))
            raise PollError(CONNECT if invalidated else QUERY, detail(exc)) from exc
        finally:
            with contextlib.suppress(Exception):
                conn.close()  # rolls back: nothing is ever written to the HIS

    def close(self) -> None:
        self._engine.dispose()


class OdbcReader:
    """One pyodbc connection, opened on first use and again after any failure."""

    def __init__(self, connection_string: str, timeout: float, dialect: str = "") -> None:
        self._dsn = connection_string
        self._timeout = max(1, round(timeout))
        self._conn: Any = None
        self._bind = _as_text_with_fraction if dialect == "mysql" else _as_is

    def fetch(self, sql: str, params: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        import pyodbc  # only a site that polls through ODBC needs the driver manager

        if self._conn is None:
            try:
                self._conn = pyodbc.connect(self._dsn, timeout=self._timeout, autocommit=False, readonly=True)
            except Exception as exc:
                raise PollError(CONNECT, detail(exc)) from exc
        statement, values = qmark(sql, params)
        values = [self._bind(v) for v in values]
        try:
            cursor = self._conn.cursor()
            try:
                cursor.execute(statement, values)
                names = [str(d[0]) for d in cursor.description or ()]
                rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            finally:
                cursor.close()
            self._conn.rollback()
            return names, rows
        except Exception as exc:
            lost = isinstance(exc, pyodbc.OperationalError | pyodbc.InterfaceError)
            self.close()
            raise PollError(CONNECT if lost else QUERY, detail(exc)) from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _as_is(value: Any) -> Any:
    return value


def _as_text_with_fraction(value: Any) -> Any:
    """MariaDB's ODBC driver drops the fraction of a bound datetime (09:00:00.499 arrives as
    09:00:00), so a cursor on a millisecond watermark would read the same rows for ever; as
    text the server compares it with the column exactly."""
    if isinstance(value, datetime) and value.microsecond:
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return value
