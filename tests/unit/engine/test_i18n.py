"""The one text catalogue: every key in both languages, the same placeholders in each, and
every key the code asks for exists. A command that adds texts (to engine/texts.py or to a
table its package registers) is checked here without a test of its own."""

from __future__ import annotations

import importlib
import re
import string
from pathlib import Path

import pytest

from core import i18n

REPO = Path(__file__).resolve().parents[3]
SOURCES = [
    p
    for d in ("engine", "deadletter", "channels", "transforms", "monitors")
    for p in (REPO / d).rglob("*.py")
    if p.name != "i18n.py"
]
# Packages register their texts when imported: import every module, as the CLI would.
for _path in SOURCES:
    importlib.import_module(".".join(_path.relative_to(REPO).with_suffix("").parts))
# t("key", …), _t("key", …), t_or("key", …): literal keys only; f-string keys are checked by prefix below.
_LITERAL_KEY = re.compile(r"\b(?:t|_t|t_or)\(\s*\"([a-z][a-z0-9_]*)\"")


def _placeholders(text: str) -> set[str]:
    braces = {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    percents = set(re.findall(r"%\((\w+)\)", text)) | ({"%s"} if "%s" in text else set())
    return braces | percents


@pytest.mark.parametrize("key", sorted(i18n.catalogue()))
def test_every_key_has_both_languages_with_the_same_placeholders(key: str) -> None:
    zh, en = i18n.catalogue()[key]
    assert zh.strip() and en.strip(), key
    assert _placeholders(zh) == _placeholders(en), key


def test_chinese_texts_are_chinese() -> None:
    """A zh text with no Chinese in it is an English text left untranslated (names and
    codes that read the same in both are listed)."""
    same_in_both = {"status_", "record_", "argparse_usage"}
    untranslated = [
        key
        for key, (zh, en) in i18n.catalogue().items()
        if zh == en
        and not any(key.startswith(prefix) for prefix in same_in_both)
        and re.search("[a-z]{4}", zh)
    ]
    assert not untranslated


def test_every_key_the_code_asks_for_exists() -> None:
    catalogue = i18n.catalogue()
    missing = {
        f"{path.relative_to(REPO)}: {key}"
        for path in SOURCES
        for key in _LITERAL_KEY.findall(path.read_text(encoding="utf-8"))
        if key not in catalogue
    }
    assert not missing


def test_generated_keys_exist_for_every_value_they_are_made_from() -> None:
    """Statuses, stages and record types are looked up by value: each value has its key."""
    from channels.record_store.queries import STAGES as TIMELINE_STAGES
    from deadletter import audit
    from deadletter.store import STAGES, STATUSES
    from engine.listing_commands import JOURNAL_STATUSES
    from transforms.records import RECORD_TYPES

    catalogue = i18n.catalogue()
    wanted = [
        f"status_{s}" for s in (*JOURNAL_STATUSES, *STATUSES, "delivered", "pending", "retrying", "dead")
    ]
    wanted += [f"stage_name_{s}" for s in STAGES]
    wanted += [f"timeline_{stage}" for stage, _ in TIMELINE_STAGES.values()] + ["timeline_other"]
    wanted += [f"record_{name}" for name in RECORD_TYPES]
    wanted += [f"outcome_{o}" for o in ("retry", "dead_letter", "replayed", "reprocessed")]
    wanted += [f"outcome_{o}" for o in ("replay_failed", "reprocess_failed")]
    wanted += [f"action_{a}" for a in audit.ACTIONS]
    assert [key for key in wanted if key not in catalogue] == []


def test_the_audit_names_only_actions_it_has_texts_for() -> None:
    """Every action the code writes to the audit log is one of audit.ACTIONS (checked above
    for its text); an entry for any other name is refused before it reaches the database."""
    from deadletter import audit

    written = set()
    for path in SOURCES:
        source = path.read_text(encoding="utf-8")
        for call in re.finditer(r"(?:begin_audit|write_audit)\((.*?)\)\n", source, re.S):
            written |= set(re.findall(r"\baction=\"(\w+)\"", call.group(1)))
        written |= set(re.findall(r"ActionResult\(\"(\w+)\"", source))
        written |= set(re.findall(r"\baction = \"(\w+)\" if", source))
        written |= set(re.findall(r"\" if args\.dry_run else \"(\w+)\"", source))
    assert {"show", "reload", "reprocess_preview", "replay", "purge"} <= written
    assert written <= set(audit.ACTIONS)
    with pytest.raises(ValueError):
        audit.begin_audit(None, actor=audit.Actor("a", "a"), action="bogus", target="1", detail={})  # type: ignore[arg-type]


def test_a_key_defined_twice_with_other_texts_is_refused() -> None:
    with pytest.raises(KeyError):
        i18n.register({"nothing_found": ("别的", "something else")})


def test_the_language_switches_and_a_missing_value_falls_back() -> None:
    try:
        i18n.set_language("en")
        assert i18n.status("routed") == "routed"
        assert i18n.t("child_mark") == " (child)"
        i18n.set_language("zh")
        assert i18n.status("routed") == "已路由"
        assert i18n.t("child_mark") == "（子女）"
        assert i18n.status("brand-new") == "brand-new"
    finally:
        i18n.set_language("zh")
