"""Operator-facing text in Simplified Chinese (default) or English (`--lang en`).

One catalogue, key → (zh, en), for everything a person reads, filled by the tables the
modules that print them register with `register()` (engine/texts.py holds the engine's
own). Keys are unique across tables; tests/unit/engine/test_i18n.py checks that every key
has both languages with the same `{placeholders}`. A command adds its keys to its
module's table and prints `t("key", ...)`.
"""

from __future__ import annotations

_CATALOGUE: dict[str, tuple[str, str]] = {}

_lang = "zh"


def register(table: dict[str, tuple[str, str]]) -> None:
    """Add a package's texts to the catalogue; a key already there with other texts is a bug."""
    for key, texts in table.items():
        if _CATALOGUE.get(key, texts) != texts:
            raise KeyError(f"text key {key!r} is defined twice")
        _CATALOGUE[key] = texts


def catalogue() -> dict[str, tuple[str, str]]:
    """Every registered key and its (zh, en) texts."""
    return dict(_CATALOGUE)


def set_language(lang: str) -> None:
    global _lang
    _lang = "en" if lang.lower().startswith("en") else "zh"


def language() -> str:
    return _lang


def t(key: str, **values: object) -> str:
    return pick(_CATALOGUE[key], **values)


def t_or(key: str, fallback: str, **values: object) -> str:
    """`t(key)` when the key exists, else `fallback` as it is (a value with no translation)."""
    return t(key, **values) if key in _CATALOGUE else fallback


def status(value: str) -> str:
    """A journal, delivery or dead-letter status in the operator's language."""
    return t_or(f"status_{value}", value)


def t_in(lang: str, key: str, **values: object) -> str:
    """`t(key)` in the language of one web request, not the process's (`set_language`)."""
    zh, en = _CATALOGUE[key]
    return (en if lang == "en" else zh).format(**values)


def t_in_or(lang: str, key: str, fallback: str) -> str:
    """`t_or(key, fallback)` in the language of one web request."""
    return t_in(lang, key) if key in _CATALOGUE else fallback


def pick(texts: tuple[str, str], **values: object) -> str:
    """The (zh, en) pair in the chosen language, formatted."""
    zh, en = texts
    return (en if _lang == "en" else zh).format(**values)
