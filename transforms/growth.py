"""WHO Child Growth Standards (2006, 0–5 years): z-scores and growth labels for child checks.

Child health exams (儿童健康检查) carry weight, length/height and head circumference; the
canonical record also holds the derived z-scores and labels (低体重, 生长迟缓, 消瘦, 超重, 肥胖)
so that dashboards and follow-up lists do not recompute them. See MCH-DOMAIN §5.

Method (WHO technical report, 2006):
- LMS: z = ((X/M)^L − 1)/(L·S) for L ≠ 0, ln(X/M)/S for L = 0, with L, M, S linearly
  interpolated between table rows (the shipped tables are weekly for 0–13 weeks, daily for
  weight-for-age days 0–14 where the post-natal dip bends the curve, monthly to 60 months,
  and every 0.5 cm for weight-for-length/height; see data/who/README.md). Ages run to 1856
  days (60 completed months) as in WHO's software, the last 30 days continued linearly from
  the 59–60 month rows.
- Weight-based indicators (wfa, wfl, wfh, bfa) beyond ±3 SD use WHO's restricted
  application: linear extrapolation with the SD2–SD3 distance, because the LMS curves are not
  fitted to data that far out.
- Length below 24 months is measured lying (recumbent), height from 24 months standing.
  When the position does not match the age WHO corrects by 0.7 cm: standing under 24 months
  +0.7 cm, lying at 24 months or over −0.7 cm. Weight-for-length applies under 731 days,
  weight-for-height from 731 days.

Past 60 completed months the WHO Reference 2007 (5–19 years; de Onis et al., Bull WHO 2007)
takes over for height-, weight- (to 10 years) and BMI-for-age, as in WHO AnthroPlus, with its
own BMI cut-offs: thinness (消瘦) < −2 SD, overweight > +1 SD, obese > +2 SD.

WS/T 423-2022 (7岁以下儿童生长标准), the Chinese national standard since 2023-03-01, is not in
any public package; its tables would be added as another ``standard`` behind these same
functions (``zscore(..., standard=...)``), with its own cut-offs checked before use.
"""

from __future__ import annotations

import csv
import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

WHO_2006 = "WHO2006"
STANDARDS = (WHO_2006,)
WHO_2007 = "WHO2007"
"""WHO Reference 2007 (5–19 years): used under ``WHO2006`` past 60 completed months, as WHO's
AnthroPlus does; the result names it in ``standard``."""

REFERENCE_2007_PARTS: dict[str, str] = {"wfa": "5_10", "lhfa": "5_19", "bfa": "5_19"}
"""Indicators the 2007 reference defines (weight-for-age only to 10 years); no wfl/wfh/hcfa."""

DAYS_PER_MONTH = 30.4375
"""WHO's month (365.25 / 12 days); monthly table rows sit at month × this many days."""

TABLE_END_DAYS = 60 * DAYS_PER_MONTH
"""Last row of the age-based tables (60 months = 1826.25 days)."""

AGE_MAX_DAYS = 1856
"""WHO's under-5 range ends at 60 completed months (1856 days, the end of its daily tables).
The shipped monthly tables stop at 1826.25 days; L, M and S are continued linearly from the
59–60 month interval for the last 30 days, where the curves are nearly straight."""

LYING_BEFORE_DAYS = 731
"""Under 731 days: recumbent length and weight-for-length; from 731: height, weight-for-height."""

POSITION_ADJUSTMENT_CM = 0.7

INDICATORS: dict[str, str] = {
    "wfa": "weight-for-age",
    "lhfa": "length/height-for-age",
    "wfl": "weight-for-length",
    "wfh": "weight-for-height",
    "bfa": "BMI-for-age",
    "hcfa": "head-circumference-for-age",
}
WEIGHT_BASED = frozenset({"wfa", "wfl", "wfh", "bfa"})

# WHO Anthro flags for biologically implausible z-scores (likely entry or measurement errors).
_IMPLAUSIBLE: dict[str, tuple[float, float]] = {
    "wfa_z": (-6.0, 5.0),
    "lhfa_z": (-6.0, 6.0),
    "wflh_z": (-5.0, 5.0),
    "bfa_z": (-5.0, 5.0),
    "hcfa_z": (-5.0, 5.0),
}

_SEX: dict[str, str] = {
    "1": "boys",
    "M": "boys",
    "MALE": "boys",
    "男": "boys",
    "2": "girls",
    "F": "girls",
    "FEMALE": "girls",
    "女": "girls",
}

_LMS_EPSILON = 1e-9


class OutsideReferenceError(ValueError):
    """The age or length lies outside the reference table; the caller may skip the indicator."""


@dataclass(frozen=True)
class LmsTable:
    """One WHO table: rows of (x, L, M, S) sorted by x (age in days or length/height in cm)."""

    name: str
    unit: str
    xs: tuple[float, ...]
    ls: tuple[float, ...]
    ms: tuple[float, ...]
    ss: tuple[float, ...]
    limit: float
    """Highest x accepted: the last row, or WHO's 1856 days for the 0–5 year age tables."""

    def lms(self, x: float) -> tuple[float, float, float]:
        """L, M, S at x, linearly interpolated between the two surrounding rows (continued
        from the last two rows between the last row and ``limit``)."""
        lo = self.xs[0]
        if not lo <= x <= self.limit:
            raise OutsideReferenceError(
                f"{self.name} covers {self.unit} {_num(lo)} to {_num(self.limit)}; {_num(x)} is outside it"
            )
        i = min(bisect_right(self.xs, x) - 1, len(self.xs) - 2)
        if self.xs[i] == x:
            return self.ls[i], self.ms[i], self.ss[i]
        f = (x - self.xs[i]) / (self.xs[i + 1] - self.xs[i])
        return (
            self.ls[i] + f * (self.ls[i + 1] - self.ls[i]),
            self.ms[i] + f * (self.ms[i + 1] - self.ms[i]),
            self.ss[i] + f * (self.ss[i + 1] - self.ss[i]),
        )


def _num(value: float) -> str:
    return f"{value:g}"


@cache
def load_table(file_stem: str) -> LmsTable:
    """Read ``data/who/<file_stem>.csv`` once; the package data travels with the wheel."""
    resource = files("transforms").joinpath("data", "who", f"{file_stem}.csv")
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"WHO growth table {file_stem}.csv is missing from the package") from None
    rows = list(csv.DictReader(text.splitlines()))
    indicator = file_stem.split("_", 1)[0]
    xs = tuple(float(r["x"]) for r in rows)
    by_length = indicator in ("wfl", "wfh")
    limit = AGE_MAX_DAYS if not by_length and xs[-1] == TABLE_END_DAYS else xs[-1]
    return LmsTable(
        name=f"WHO {INDICATORS[indicator]} ({file_stem})",
        unit="length/height (cm)" if by_length else "age (days)",
        limit=limit,
        xs=xs,
        ls=tuple(float(r["L"]) for r in rows),
        ms=tuple(float(r["M"]) for r in rows),
        ss=tuple(float(r["S"]) for r in rows),
    )


def normalise_sex(sex: str) -> str:
    """GB/T 2261.1 1/2, HL7 M/F or 男/女 → ``boys``/``girls`` (the standards are sex-specific)."""
    key = str(sex).strip().upper()
    if key not in _SEX:
        raise ValueError(
            f"sex {sex!r} has no growth standard; use 1/M (male) or 2/F (female) "
            "(GB/T 2261.1 0 and 9 cannot be assessed)"
        )
    return _SEX[key]


def _table_for(indicator: str, sex: str, x: float, standard: str) -> LmsTable:
    if standard != WHO_2006:
        raise ValueError(
            f"growth standard {standard!r} is not available; supported: {', '.join(STANDARDS)} "
            "(WS/T 423-2022 tables are not shipped yet)"
        )
    if indicator not in INDICATORS:
        raise ValueError(f"unknown growth indicator {indicator!r}; expected one of {', '.join(INDICATORS)}")
    group = normalise_sex(sex)
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise ValueError(f"{INDICATORS[indicator]} needs a finite age or length, got {x!r}")
    if x > AGE_MAX_DAYS and indicator in REFERENCE_2007_PARTS:
        return load_table(f"{indicator}_{group}_{REFERENCE_2007_PARTS[indicator]}")
    if indicator in ("lhfa", "bfa"):
        # Recumbent (0–2 y) and standing (2–5 y) tables meet at 730.5 days.
        part = "0_2" if x <= 24 * DAYS_PER_MONTH else "2_5"
        return load_table(f"{indicator}_{group}_{part}")
    return load_table(f"{indicator}_{group}")


def lms_at(indicator: str, sex: str, x: float, *, standard: str = WHO_2006) -> tuple[float, float, float]:
    """L, M, S of an indicator at age x (days) or, for wfl/wfh, length/height x (cm)."""
    return _table_for(indicator, sex, x, standard).lms(x)


def _sd_line(lms: tuple[float, float, float], z: float) -> float:
    l_, m, s = lms
    if abs(l_) < _LMS_EPSILON:
        return m * math.exp(s * z)
    return m * (1 + l_ * s * z) ** (1 / l_)


def _lms_z(lms: tuple[float, float, float], measure: float) -> float:
    l_, m, s = lms
    if abs(l_) < _LMS_EPSILON:
        return math.log(measure / m) / s
    return ((measure / m) ** l_ - 1) / (l_ * s)


def value_at_z(indicator: str, sex: str, x: float, z: float, *, standard: str = WHO_2006) -> float:
    """The measurement on the z SD line (e.g. −2 SD weight at 12 months), unrounded."""
    return _sd_line(lms_at(indicator, sex, x, standard=standard), z)


def zscore(indicator: str, sex: str, x: float, measure: float, *, standard: str = WHO_2006) -> float:
    """z-score of ``measure`` for ``indicator`` at x, rounded to 2 decimals.

    x is age in days for wfa, lhfa, bfa and hcfa (0–1856; past 1856 the WHO 2007 reference:
    lhfa and bfa to 228 months, wfa to 120 months), and length (wfl, 45–110 cm)
    or height (wfh, 65–120 cm) for the weight-for-length/height indicators. measure is kg,
    cm or kg/m² accordingly. Raises ValueError (OutsideReferenceError when x is out of range).
    """
    if isinstance(measure, bool) or not isinstance(measure, int | float):
        raise ValueError(f"measurement must be a number, got {measure!r}")
    if not math.isfinite(measure) or measure <= 0:
        raise ValueError(f"measurement must be a positive number, got {measure!r}")
    lms = lms_at(indicator, sex, x, standard=standard)
    z = _lms_z(lms, measure)
    if indicator in WEIGHT_BASED:
        if z > 3:
            sd3 = _sd_line(lms, 3)
            z = 3 + (measure - sd3) / (sd3 - _sd_line(lms, 2))
        elif z < -3:
            sd3neg = _sd_line(lms, -3)
            z = -3 + (measure - sd3neg) / (_sd_line(lms, -2) - sd3neg)
    return round(z, 2)


POSITION_WORDS: dict[str, bool] = {
    "recumbent": True,
    "lying": True,
    "卧位": True,
    "卧": True,
    "standing": False,
    "立位": False,
    "站立": False,
    "立": False,
}
"""Measuring positions as forms write them → measured lying (True) or standing (False)."""


def measured_lying_from(sent: object, age_months: int | None, lying_before_months: int | None) -> bool | None:
    """Whether a length was measured lying: the form's word when it carries one, else the
    site's practice (lying before ``lying_before_months`` completed months), else unknown.

    Chinese child-health practice measures 身长 lying until 3 years while WHO switches to
    standing at 24 months, so the default is a site setting rather than WHO's age."""
    if isinstance(sent, bool):
        return sent
    if sent is not None and str(sent).strip():
        word = str(sent).strip().lower()
        if word not in POSITION_WORDS:
            raise ValueError(f"measuring position {sent!r} is neither lying (卧位) nor standing (立位)")
        return POSITION_WORDS[word]
    if lying_before_months is None or age_months is None:
        return None
    return age_months < lying_before_months


def adjust_length_for_position(length_cm: float, age_days: int, measured_lying: bool | None) -> float:
    """WHO's 0.7 cm correction when the measuring position does not match the age."""
    if measured_lying is None:
        return length_cm
    lying_expected = age_days < LYING_BEFORE_DAYS
    if lying_expected and not measured_lying:
        return round(length_cm + POSITION_ADJUSTMENT_CM, 2)
    if not lying_expected and measured_lying:
        return round(length_cm - POSITION_ADJUSTMENT_CM, 2)
    return length_cm


# Label catalogue: stable English codes for the store, Chinese display for screens.
_LABELS: dict[str, str] = {
    "underweight": "低体重",
    "stunting": "生长迟缓",
    "wasting": "消瘦",
    "overweight": "超重",
    "obese": "肥胖",
    "thinness": "消瘦",
}
_SEVERE_PREFIX = "重度"


def _low_label(code: str, key: str, z: float) -> dict[str, Any] | None:
    if z >= -2:
        return None
    severe = z < -3
    display = _LABELS[code]
    return {
        "code": code,
        "display": _SEVERE_PREFIX + display if severe else display,
        "severity": "severe" if severe else "moderate",
        "indicator": key,
        "z": z,
    }


def _high_label(key: str, z: float, overweight_above: float = 2) -> dict[str, Any] | None:
    """Under 5 (WHO 2006) overweight > +2 SD, obese > +3; from 5 years (WHO 2007, BMI) +1 / +2."""
    if z <= overweight_above:
        return None
    code = "obese" if z > overweight_above + 1 else "overweight"
    return {"code": code, "display": _LABELS[code], "severity": None, "indicator": key, "z": z}


def _positive(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return float(value)


def growth_assessment(
    sex: str,
    age_days: int | None,
    weight_kg: float | None = None,
    length_cm: float | None = None,
    head_cm: float | None = None,
    measured_lying: bool | None = None,
    *,
    standard: str = WHO_2006,
) -> dict[str, Any]:
    """The z-scores a child check allows, with WHO under-5 labels.

    Returns ``wfa_z``, ``lhfa_z``, ``wflh_z`` (with ``wflh_indicator`` wfl/wfh), ``bfa_z``
    and ``hcfa_z`` for whichever measurements are given; an indicator whose age or length
    is outside the WHO tables is listed in ``not_assessed`` with the reason instead.
    ``labels`` holds underweight/stunting/wasting (< −2 SD, severe < −3 SD) and
    overweight (> +2 SD) / obese (> +3 SD) on weight-for-length/height (BMI-for-age when
    that is missing). z-scores WHO flags as implausible go to ``flags`` and give no label,
    since they usually mean a unit or typing error. Without ``age_days`` only weight-for-
    length/height is computed, the table chosen by ``measured_lying``.
    """
    group = normalise_sex(sex)
    if age_days is not None and (isinstance(age_days, bool) or not isinstance(age_days, int) or age_days < 0):
        raise ValueError(f"age_days must be a whole number of days ≥ 0, got {age_days!r}")
    weight = _positive("weight_kg", weight_kg)
    length = _positive("length_cm", length_cm)
    head = _positive("head_cm", head_cm)
    if age_days is None and measured_lying is None:
        raise ValueError("without the age, measured_lying must say whether length or height")

    over_5 = age_days is not None and age_days > AGE_MAX_DAYS
    result: dict[str, Any] = {
        "standard": WHO_2007 if over_5 and standard == WHO_2006 else standard,
        "sex": "1" if group == "boys" else "2",
    }
    if age_days is not None:
        result["age_days"] = age_days
    not_assessed: dict[str, str] = {}
    scores: dict[str, float] = {}

    def attempt(key: str, indicator: str, x: float, measure: float) -> None:
        try:
            scores[key] = zscore(indicator, sex, x, measure, standard=standard)
        except OutsideReferenceError as exc:
            not_assessed[key] = str(exc)

    used_length = length
    if length is not None and age_days is not None:
        used_length = adjust_length_for_position(length, age_days, measured_lying)
        result["length_cm_used"] = used_length
        result["length_adjustment_cm"] = round(used_length - length, 2)

    if age_days is not None:
        if weight is not None:
            attempt("wfa_z", "wfa", age_days, weight)
        if used_length is not None:
            attempt("lhfa_z", "lhfa", age_days, used_length)
        if head is not None:
            attempt("hcfa_z", "hcfa", age_days, head)
        if weight is not None and used_length is not None:
            bmi = weight / (used_length / 100) ** 2
            result["bmi"] = round(bmi, 2)
            attempt("bfa_z", "bfa", age_days, bmi)

    if weight is not None and used_length is not None:
        if age_days is not None:
            wflh = "wfl" if age_days < LYING_BEFORE_DAYS else "wfh"
        else:
            wflh = "wfl" if measured_lying else "wfh"
        result["wflh_indicator"] = wflh
        if over_5:
            not_assessed["wflh_z"] = (
                f"WHO 2006 standards cover children up to 60 completed months "
                f"({AGE_MAX_DAYS} days); {age_days} is outside it (BMI-for-age applies instead)"
            )
        else:
            attempt("wflh_z", wflh, used_length, weight)

    for key in ("wfa_z", "lhfa_z", "wflh_z", "bfa_z", "hcfa_z"):
        if key in scores:
            result[key] = scores[key]

    flags = []
    for key, z in scores.items():
        low, high = _IMPLAUSIBLE[key]
        if z < low or z > high:
            flags.append(
                {
                    "code": "implausible",
                    "display": "数值可疑，请核实测量",
                    "indicator": key,
                    "z": z,
                }
            )
    flagged = {f["indicator"] for f in flags}
    usable = {k: z for k, z in scores.items() if k not in flagged}

    labels: list[dict[str, Any]] = []
    for code, key in (("underweight", "wfa_z"), ("stunting", "lhfa_z")):
        if key in usable and (label := _low_label(code, key, usable[key])):
            labels.append(label)
    body_key = "wflh_z" if "wflh_z" in usable else "bfa_z" if "bfa_z" in usable else None
    if body_key is not None:
        for label in (
            _low_label("thinness" if over_5 else "wasting", body_key, usable[body_key]),
            _high_label(body_key, usable[body_key], overweight_above=1 if over_5 else 2),
        ):
            if label:
                labels.append(label)

    result["labels"] = labels
    result["flags"] = flags
    result["not_assessed"] = not_assessed
    return result
