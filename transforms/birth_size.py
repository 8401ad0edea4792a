"""Size for gestational age at birth (SGA / AGA / LGA) against INTERGROWTH-21st.

The reference is the printed INTERGROWTH-21st birth-weight-for-gestational-age centile table
(3rd, 5th, 10th, 50th, 90th, 95th, 97th by sex and day of gestation, kg to 2 decimals):
the Newborn Size Standards for 33+0–42+6 weeks (Villar et al., Lancet 2014;384:857-68) and the
very preterm size at birth standard for 24+0–32+6 weeks (Villar et al., Lancet 2016;387:844-5).
See data/intergrowth/README.md for where the numbers were read and how they were checked.

Rule (as in the INTERGROWTH-21st publications and the gigs R package):
- SGA when the weight is below the printed 10th centile, LGA when above the printed 90th;
  a weight exactly on either line is AGA. The comparison is in grams against the printed value.
- The centile is the normal centile of a z interpolated linearly in weight between the printed
  lines (z of the 3rd, 5th, …, 97th centiles). Below the 3rd or above the 97th centile the
  table has no finer lines, so no centile is given (the class is still SGA or LGA). A centile
  that rounds onto a line stays on the weight's side of it (SGA at most 9.9, LGA at least 90.1).
- Outside 24+0–42+6 weeks, or sex not male/female (GB/T 2261.1 0, 9 or absent): no result.
"""

from __future__ import annotations

import csv
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from statistics import NormalDist
from typing import Literal

__all__ = [
    "GA_FIRST_DAY",
    "GA_LAST_DAY",
    "INTERGROWTH_NEWBORN",
    "BirthSize",
    "SizeClass",
    "birth_weight_for_ga",
    "printed_centiles",
]

SizeClass = Literal["SGA", "AGA", "LGA"]

INTERGROWTH_NEWBORN = (
    "INTERGROWTH-21st newborn size standard (Villar 2014; very preterm 24+0–32+6, Villar 2016)"
)
"""Name of the reference, stored beside each result in ``size_reference``."""

GA_FIRST_DAY = 24 * 7
GA_LAST_DAY = 42 * 7 + 6
CENTILES = (3, 5, 10, 50, 90, 95, 97)

_SEX_FILES = {"1": "boys", "2": "girls"}
_Z = tuple(NormalDist().inv_cdf(p / 100) for p in CENTILES)


@dataclass(frozen=True)
class BirthSize:
    """Centile (None outside the printed 3rd–97th) and class of one birth weight."""

    centile: float | None
    size_class: SizeClass


@cache
def _table(sex_file: str) -> dict[int, tuple[float, ...]]:
    text = files("transforms").joinpath("data", "intergrowth", f"bwga_{sex_file}.csv").read_text("utf-8")
    rows = csv.DictReader(text.splitlines())
    return {int(r["ga_days"]): tuple(float(r[f"p{p}"]) * 1000 for p in CENTILES) for r in rows}


def printed_centiles(ga_days: int, sex: str | None) -> dict[int, float] | None:
    """The printed centile lines (grams) at a day of gestation, or None outside the standard."""
    sex_file = _SEX_FILES.get(str(sex).strip()) if sex is not None else None
    if sex_file is None or not GA_FIRST_DAY <= ga_days <= GA_LAST_DAY:
        return None
    return dict(zip(CENTILES, _table(sex_file)[ga_days], strict=True))


def birth_weight_for_ga(ga_days: int | None, sex: str | None, grams: float | None) -> BirthSize | None:
    """Birth-weight centile and SGA/AGA/LGA, or None when the standard does not apply.

    ``sex`` is the GB/T 2261.1 code ('1' male, '2' female); ``ga_days`` the gestational age at
    birth in days (39+2 = 275).
    """
    if ga_days is None or grams is None:
        return None
    lines = printed_centiles(ga_days, sex)
    if lines is None:
        return None
    weights = tuple(lines.values())
    size_class: SizeClass = "SGA" if grams < lines[10] else "LGA" if grams > lines[90] else "AGA"
    if not weights[0] <= grams <= weights[-1]:
        return BirthSize(None, size_class)
    i = min(bisect_right(weights, grams) - 1, len(weights) - 2)
    w0, w1 = weights[i], weights[i + 1]
    z = _Z[i] + (grams - w0) / (w1 - w0) * (_Z[i + 1] - _Z[i])
    centile = round(NormalDist().cdf(z) * 100, 1)
    # Rounding must not put a centile on the other side of the line the class was read from.
    if size_class == "SGA":
        centile = min(centile, 9.9)
    elif size_class == "LGA":
        centile = max(centile, 90.1)
    return BirthSize(centile, size_class)
