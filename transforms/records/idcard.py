"""Resident ID card numbers (居民身份证号, DE02.01.030.00): check, explain, never drop.

Real feeds carry wrong numbers (typing errors, a mother's number on her baby, full-width
digits from a Chinese IME). The domain rule is to keep the message and flag the number, so
these functions return problems instead of raising; the record models turn them into
`Flag`s and refuse to link people by a number that has one that blocks linking.

Structure of an 18-character number: area code (6) + birth date YYYYMMDD (8) + sequence (3,
odd for men, even for women) + check character (ISO 7064 MOD 11-2). Legacy 15-digit numbers
have a 6-digit YYMMDD birth date (always 19YY) and no check character.

An area code outside GB/T 2260 (gb2260.py) is flagged but does not block linking: the check
character already guards against typing errors, and some genuine numbers carry a code the
list lacks (Taiwan residents' residence permits, 830000; foreigners' permanent residence
cards since 2023, 9…).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from transforms.records.gb2260 import is_known_area

__all__ = [
    "CHECK_CHARS",
    "WEIGHTS",
    "IdCardProblem",
    "birth_date_from_id_card",
    "check_char",
    "id_card_problems",
    "mask_id_card",
    "normalise_id_card",
    "sex_from_id_card",
    "upgrade_legacy_id_card",
    "validate_id_card",
]

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"

_TZ = ZoneInfo("Asia/Shanghai")
_EARLIEST_BIRTH = date(1880, 1, 1)
_FULL_WIDTH = re.compile(r"[\uFF10-\uFF19\uFF38\uFF58]")  # ０-９, Ｘ, ｘ
_SEX_WORDS = {
    "1": "1",
    "M": "1",
    "MALE": "1",
    "男": "1",
    "2": "2",
    "F": "2",
    "FEMALE": "2",
    "女": "2",
}
_SEX_NAMES = {"1": "male", "2": "female"}


@dataclass(frozen=True, slots=True)
class IdCardProblem:
    """One thing wrong with a number; `blocks_linking` says it must not identify a person."""

    code: str
    message: str
    blocks_linking: bool = True


def check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits of an ID number."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError(f"check_char needs exactly 17 ASCII digits, got {len(first17)} characters")
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def normalise_id_card(value: str) -> str:
    """Trim and upper-case a final lowercase `x`; everything else stays as sent."""
    text = value.strip()
    return text[:-1] + "X" if text.endswith("x") else text


def mask_id_card(value: str) -> str:
    """`5001…283`: enough to find the message, not enough to identify anyone (PIPL, logs)."""
    text = value.strip()
    if len(text) <= 7:
        return "…" if text else ""
    return f"{text[:4]}…{text[-3:]}"


def upgrade_legacy_id_card(value: str) -> str:
    """A legacy 15-digit number as the 18-character number issued since 1999 (inserts 19)."""
    text = value.strip()
    if len(text) != 15 or not text.isascii() or not text.isdigit():
        raise ValueError("a legacy ID card number has exactly 15 ASCII digits")
    first17 = text[:6] + "19" + text[6:]
    return first17 + check_char(first17)


def _birth_part(text: str) -> str:
    return text[6:14] if len(text) == 18 else "19" + text[6:12]


def _sequence(text: str) -> str:
    return text[14:17] if len(text) == 18 else text[12:15]


def _parse_date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    text = value.strip()
    try:
        if len(text) == 8 and text.isdigit():
            return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _structural(text: str) -> IdCardProblem | None:
    """Characters and length; None when the number has the shape of an ID number."""
    masked = mask_id_card(text)
    wide = _FULL_WIDTH.findall(text)
    if wide:
        chars = ", ".join(dict.fromkeys(wide))
        return IdCardProblem(
            "id_card_full_width",
            f"ID card {masked} contains full-width characters {chars}; the sender must use ASCII digits",
        )
    if len(text) not in (15, 18):
        return IdCardProblem(
            "id_card_length",
            f"ID card {masked} has {len(text)} characters, expected 18 (or 15 for a legacy number)",
        )
    body = text[:17] if len(text) == 18 else text
    last_ok = len(text) == 15 or text[17].isdigit() or text[17] == "X"
    if not (body.isascii() and body.isdigit() and text.isascii() and last_ok):
        odd = ", ".join(dict.fromkeys(c for c in text if not (c.isascii() and c.isdigit())))
        return IdCardProblem(
            "id_card_characters",
            f"ID card {masked} contains {odd}; only digits (and a final X) are allowed",
        )
    return None


def id_card_problems(
    value: str | None, birth_date: date | str | None = None, sex: str | None = None
) -> list[IdCardProblem]:
    """Every problem with an ID number, checked against the person's birth date and sex.

    An empty value has no problems (absent, not wrong). `sex` is a GB/T 2261.1 code
    (HL7 M/F and 男/女 are understood too); unknown and not-stated sexes are not compared.
    """
    if value is None or not value.strip():
        return []
    text = normalise_id_card(value)
    masked = mask_id_card(text)
    problem = _structural(text)
    if problem is not None:
        return [problem]

    problems: list[IdCardProblem] = []
    if not is_known_area(text[:6]):
        problems.append(
            IdCardProblem(
                "id_card_area_unknown",
                f"ID card {masked} area code {text[:6]} is not a GB/T 2260 division code, current or retired",
                blocks_linking=False,
            )
        )
    if len(text) == 15:
        problems.append(
            IdCardProblem(
                "id_card_legacy_15",
                f"ID card {masked} is a legacy 15-digit number without a check character; "
                f"linked as {mask_id_card(upgrade_legacy_id_card(text))}",
                blocks_linking=False,
            )
        )
    else:
        expected = check_char(text[:17])
        if text[17] != expected:
            problems.append(
                IdCardProblem(
                    "id_card_check_digit",
                    f"ID card {masked} check character is {text[17]}, expected {expected}",
                )
            )

    part = _birth_part(text)
    born = _parse_date(part)
    today = datetime.now(_TZ).date()
    if born is None or born < _EARLIEST_BIRTH or born > today + timedelta(days=1):
        problems.append(
            IdCardProblem(
                "id_card_birth_date",
                f"ID card {masked} birth date part {part} is not a real date of birth",
            )
        )
    else:
        given = _parse_date(birth_date)
        if given is not None and given != born:
            problems.append(
                IdCardProblem(
                    "id_card_birth_date_mismatch",
                    f"ID card {masked} birth date {born.isoformat()} differs from "
                    f"birth_date {given.isoformat()}",
                )
            )

    code = _SEX_WORDS.get((sex or "").strip().upper())
    if code is not None:
        seq = _sequence(text)
        implied = "1" if int(seq[-1]) % 2 else "2"
        if implied != code:
            parity = "odd" if implied == "1" else "even"
            problems.append(
                IdCardProblem(
                    "id_card_sex_mismatch",
                    f"ID card {masked} sequence {seq} is {parity} ({_SEX_NAMES[implied]}) "
                    f"but sex is {code} ({_SEX_NAMES[code]})",
                )
            )
    return problems


def validate_id_card(
    value: str | None, birth_date: date | str | None = None, sex: str | None = None
) -> list[str]:
    """The problems with an ID number as one sentence each; empty when it is sound."""
    return [p.message for p in id_card_problems(value, birth_date, sex)]


def birth_date_from_id_card(value: str) -> date | None:
    """The birth date an ID number encodes, or None when the number is unreadable."""
    text = normalise_id_card(value)
    if _structural(text) is not None:
        return None
    return _parse_date(_birth_part(text))


def sex_from_id_card(value: str) -> str | None:
    """GB/T 2261.1 sex code implied by the sequence parity (1 male, 2 female), or None."""
    text = normalise_id_card(value)
    if _structural(text) is not None:
        return None
    return "1" if int(_sequence(text)[-1]) % 2 else "2"
