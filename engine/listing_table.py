"""The shape every listing shares: column titles, a default limit, and a line saying
how many rows were left out and how to see them.

A listing that prints 80,000 journal rows into a terminal at 3 a.m. helps nobody; one
that silently stops at 50 misleads. So every listing shows at most `DEFAULT_LIMIT`
rows unless told `--limit N` or `--all`, and then says what it left out.
"""

from __future__ import annotations

import argparse
import unicodedata
from collections.abc import Iterable, Sequence

from core.i18n import t

DEFAULT_LIMIT = 50


def add_limit_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--limit", type=int, metavar="N", help=f"at most N rows (default {DEFAULT_LIMIT})")
    group.add_argument("--all", action="store_true", help="every row, however many")


def row_limit(args: argparse.Namespace) -> int | None:
    """The rows to show: None for `--all`."""
    if getattr(args, "all", False):
        return None
    limit = getattr(args, "limit", None)
    return DEFAULT_LIMIT if limit is None or limit <= 0 else limit


def width(text: str) -> int:
    """Terminal columns: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, columns: int, *, right: bool = False) -> str:
    fill = " " * max(0, columns - width(text))
    return fill + text if right else text + fill


def header(cells: Sequence[tuple[str, int]], *, right: Sequence[int] = ()) -> str:
    """Column titles (text keys and widths), the last one unpadded; `right`: right-aligned columns."""
    out = []
    for i, (key, columns) in enumerate(cells):
        title = t(key)
        out.append(title if i == len(cells) - 1 else pad(title, columns, right=i in right))
    return "  ".join(out)


def more_line(shown: int, total: int) -> str | None:
    """`… 120 more rows: --limit 170 or --all` when rows were left out, else None."""
    if total <= shown:
        return None
    return t("more_rows", more=total - shown, total=total, limit=total)


class FilterError(Exception):
    """A filter value that names nothing; the text lists the valid values (exit 2)."""


def check_filter(option: str, value: str | None, valid: Iterable[str]) -> None:
    """`value` must be one of `valid`; otherwise a `FilterError` naming them. A filter
    that matches nothing must not look like a quiet night."""
    known = sorted(set(valid))
    if value is None or value in known:
        return
    if not known:
        raise FilterError(t("bad_filter_none", option=option, value=value))
    raise FilterError(t("bad_filter", option=option, value=value, valid=", ".join(known)))
