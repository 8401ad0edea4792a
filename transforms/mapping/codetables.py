"""Code tables: CSV files hospitals edit in a spreadsheet, mapping local codes to standard ones.

Columns (header row required, any order, extra columns kept):

    local_code,code,system,display,unit,molar_mass
    GLU0,14771-0,LN,空腹血糖,mmol/L,180.16

`local_code` is what the sender sends; `code`/`system` the standard code (LOINC,
a WS 364 value set, …); `display` the Chinese name; `unit` the analyte's canonical unit;
`molar_mass` (g/mol, lab tables) lets a mass concentration become a molar one.
Files saved by Excel come as UTF-8 with a BOM or, on Chinese Windows, as GBK:
both are read. A duplicate local code is an error with its line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

REQUIRED_COLUMNS = ("local_code", "code")


@dataclass(frozen=True, slots=True)
class CodeTable:
    path: Path
    rows: dict[str, dict[str, str]]

    def lookup(self, local_code: str) -> dict[str, str] | None:
        return self.rows.get(local_code.strip())


_cache: dict[tuple[Path, float], CodeTable] = {}


def load_code_table(path: Path, display: str | None = None) -> CodeTable:
    """Read (and cache by modification time) one table; ConfigError names file and line."""
    name = display or str(path)
    try:
        stamp = path.stat().st_mtime
    except OSError as exc:
        raise ConfigError(name, None, f"code table not found ({exc.strerror})") from exc
    cached = _cache.get((path, stamp))
    if cached:
        return cached
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030")
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(
            name, 1, f"code table needs the columns {', '.join(missing)} (has {', '.join(columns)})"
        )
    rows: dict[str, dict[str, str]] = {}
    for line_no, row in enumerate(reader, start=2):
        clean = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        key = clean["local_code"]
        if not key:
            continue
        if key in rows:
            raise ConfigError(name, line_no, f"local code {key!r} appears twice")
        rows[key] = clean
    table = CodeTable(path, rows)
    _cache[(path, stamp)] = table
    return table


def find_table(reference: str, mapping_file: Path) -> Path:
    """`codes/lis_tests.csv` relative to the mapping file, or a bare name looked up in the
    `codes/` folder beside the mapping file or above it."""
    if reference.endswith(".csv") or "/" in reference:
        return (mapping_file.parent / reference).resolve()
    for folder in [mapping_file.parent, *mapping_file.parents[:3]]:
        candidate = folder / "codes" / f"{reference}.csv"
        if candidate.is_file():
            return candidate.resolve()
    return (mapping_file.parent / "codes" / f"{reference}.csv").resolve()
