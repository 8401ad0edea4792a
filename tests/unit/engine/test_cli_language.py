from __future__ import annotations

import pytest

from engine.cli_language import LanguageError, take_language


@pytest.mark.parametrize(
    ("argv", "lang", "rest"),
    [
        (["--lang", "en", "check"], "en", ["check"]),
        (["check", "--lang", "en", "--config", "x"], "en", ["check", "--config", "x"]),
        (["records", "list", "--lang=zh"], "zh", ["records", "list"]),
        (["check"], None, ["check"]),
        (["send", "f", "--", "--lang", "en"], None, ["send", "f", "--", "--lang", "en"]),
        (["--lang", "zh", "check", "--lang", "en"], "en", ["check"]),
    ],
)
def test_lang_is_taken_from_anywhere(argv: list[str], lang: str | None, rest: list[str]) -> None:
    assert take_language(argv) == (lang, rest)


def test_an_unknown_language_is_an_error() -> None:
    with pytest.raises(LanguageError):
        take_language(["check", "--lang", "fr"])
