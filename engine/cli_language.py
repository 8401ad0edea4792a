"""The operator's language for one `mch-engine` run, and argparse speaking it.

`--lang en` may stand anywhere on the command line (`mch-engine records list --lang
en` as well as `mch-engine --lang en records list`); MCH_LANG is the default, zh
when unset. argparse's own messages (usage, "invalid choice", "required") go through
`gettext`; `use_argparse_texts` gives it the catalogue's translations, so a mistyped
command is answered in the same language as everything else.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from core import i18n

LANGUAGES = ("zh", "en")

# argparse's message ids (Python 3.11) → catalogue keys.
_ARGPARSE_KEYS = {
    "usage: ": "argparse_usage",
    "%(prog)s: error: %(message)s\n": "argparse_error",
    "argument %(argument_name)s: %(message)s": "argparse_argument",
    "the following arguments are required: %s": "argparse_required",
    "unrecognized arguments: %s": "argparse_unrecognized",
    "invalid choice: %(value)r (choose from %(choices)s)": "argparse_choice",
    "invalid %(type)s value: %(value)r": "argparse_type",
    "expected one argument": "argparse_one",
    "expected at least one argument": "argparse_at_least_one",
    "expected at most one argument": "argparse_at_most_one",
    "not allowed with argument %s": "argparse_not_allowed",
    "one of the arguments %s is required": "argparse_one_of",
    "ambiguous option: %(option)s could match %(matches)s": "argparse_ambiguous",
    "positional arguments": "argparse_positionals",
    "options": "argparse_options",
    "show this help message and exit": "argparse_help",
}


class LanguageError(ValueError):
    """`--lang` with a value other than zh or en."""


def take_language(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """The `--lang` value wherever it stands (the last one wins) and the other arguments.
    Nothing after `--` is looked at."""
    rest: list[str] = []
    lang: str | None = None
    items = list(argv)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg == "--":
            rest += items[i:]
            break
        if arg == "--lang" and i + 1 < len(items):
            lang, i = items[i + 1], i + 2
            continue
        if arg.startswith("--lang="):
            lang, i = arg.split("=", 1)[1], i + 1
            continue
        rest.append(arg)
        i += 1
    if lang is not None and lang not in LANGUAGES:
        raise LanguageError(i18n.t("bad_lang", value=lang))
    return lang, rest


def _translate(message: str) -> str:
    key = _ARGPARSE_KEYS.get(message)
    if key is None:
        return message
    zh = i18n.catalogue()[key][0]
    return message if i18n.language() == "en" else zh


def _ntranslate(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def use_argparse_texts() -> None:
    """Route argparse's messages through the catalogue (zh); English stays argparse's own."""
    argparse._ = _translate  # type: ignore[attr-defined]
    argparse.ngettext = _ntranslate  # type: ignore[attr-defined]
