"""The SELECT statements the channel runs against the HIS, per SQL dialect, as text.

Every statement reads in (watermark, key) order and is bounded by a row limit written the
way the database wants it (`LIMIT n`, SQL Server's `TOP (n)`, else `FETCH FIRST n ROWS
ONLY`). Values are bound parameters (`:wm`, `:key`, …), never pasted into the text; names
come from routes.yaml, checked as plain identifiers, and are quoted by the dialect's rules.
Nothing here writes: the channel never changes the HIS's tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from sqlalchemy.engine import URL, Dialect

LIMIT_DIALECTS = frozenset({"postgresql", "mysql", "mariadb", "sqlite"})
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


@cache
def dialect_named(name: str) -> Dialect:
    """SQLAlchemy's dialect object for quoting (no driver is imported)."""
    return URL.create(name).get_dialect()()


@dataclass(frozen=True, slots=True)
class PollQueries:
    """The statements of one channel: `first` (no cursor yet), `after` (past the cursor),
    and `window_first`/`window` (look-back pages between a lower bound and the cursor)."""

    dialect: str
    source: str  # a quoted view name, or `(query) AS src`
    watermark: str  # quoted
    key: str  # quoted
    limit: int
    rowversion: bool = False

    @classmethod
    def build(
        cls, dialect: str, *, view: str, query: str, watermark: str, key: str, limit: int, rowversion: bool
    ) -> PollQueries:
        quote = dialect_named(dialect).identifier_preparer.quote
        source = ".".join(quote(part) for part in view.split(".")) if view else f"({query.strip()}) AS src"
        return cls(
            dialect,
            source,
            quote(watermark) if watermark else "",
            quote(key) if key else "",
            limit,
            rowversion,
        )

    def _select(self, where: str, *, ordered: bool = True) -> str:
        wm, key = self.watermark, self.key
        order = "" if not ordered else f" ORDER BY {wm}" if self.rowversion else f" ORDER BY {wm}, {key}"
        where_clause = f" WHERE {where}" if where else ""
        if self.dialect == "mssql":
            return f"SELECT TOP ({self.limit}) * FROM {self.source}{where_clause}{order}"
        if self.dialect in LIMIT_DIALECTS:
            return f"SELECT * FROM {self.source}{where_clause}{order} LIMIT {self.limit}"
        return f"SELECT * FROM {self.source}{where_clause}{order} FETCH FIRST {self.limit} ROWS ONLY"

    @property
    def unordered(self) -> str:
        """The first rows in the database's own order (`db-check` without a cursor's columns)."""
        return self._select("", ordered=False)

    @property
    def first(self) -> str:
        """From the beginning of the view (no cursor saved yet)."""
        return self._select(f"{self.watermark} < MIN_ACTIVE_ROWVERSION()" if self.rowversion else "")

    @property
    def after(self) -> str:
        """Rows past the cursor (:wm, :key): a later watermark, or the same and a later key,
        so rows sharing a timestamp are neither skipped nor read twice."""
        wm, key = self.watermark, self.key
        if self.rowversion:
            # Rows of transactions still open have rowversions at or above the minimum active
            # one: stop below it, and they are read once committed.
            return self._select(f"{wm} > :wm AND {wm} < MIN_ACTIVE_ROWVERSION()")
        return self._select(f"({wm} > :wm OR ({wm} = :wm AND {key} > :key))")

    @property
    def window_first(self) -> str:
        """The first look-back page: from :low up to and including the cursor (:to_wm, :to_key)."""
        return self._select(f"{self.watermark} >= :low AND {self._up_to_cursor()}")

    @property
    def window(self) -> str:
        """A further look-back page: past (:wm, :key), up to and including the cursor."""
        wm, key = self.watermark, self.key
        return self._select(f"({wm} > :wm OR ({wm} = :wm AND {key} > :key)) AND {self._up_to_cursor()}")

    def _up_to_cursor(self) -> str:
        wm, key = self.watermark, self.key
        return f"({wm} < :to_wm OR ({wm} = :to_wm AND {key} <= :to_key))"


def qmark(sql: str, params: dict[str, object]) -> tuple[str, list[object]]:
    """`:name` parameters as ODBC's `?` and their values in order (for a pyodbc cursor)."""
    values: list[object] = []

    def take(match: re.Match[str]) -> str:
        values.append(params[match.group(1)])
        return "?"

    return _BIND.sub(take, sql), values
