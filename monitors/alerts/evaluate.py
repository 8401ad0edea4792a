"""The evaluator: (status, open alerts, now, bounds) → what changed. Pure, so a test drives
it with any clock.

An episode opens once when a rule's condition starts to hold for a subject, is sent again
every `repeat_every` while it holds, and resolves when it clears. When the journal did not
answer, only the rules that need no journal are judged: an unknown is not a recovery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

from core.settings import AlertSettings
from monitors.alerts.rules import RULES, Look, Rule, Sample

__all__ = ["OPEN", "REPEAT", "RESOLVE", "OpenAlert", "Transition", "evaluate"]

OPEN, REPEAT, RESOLVE = "open", "repeat", "resolve"
Kind = Literal["open", "repeat", "resolve"]


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An episode still firing, as the `alerts` table keeps it."""

    id: int | None
    rule: str
    subject: str
    severity: str
    opened_at: datetime
    last_notified_at: datetime
    summary: str = ""
    summary_en: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    kind: Kind
    rule: str
    subject: str
    severity: str
    opened_at: datetime
    at: datetime
    summary: str  # zh
    summary_en: str
    title: str  # zh, at most 20 characters
    title_en: str
    alert_id: int | None = None  # the episode's row, for repeat and resolve

    @property
    def state(self) -> str:
        return "resolved" if self.kind == RESOLVE else "firing"


def evaluate(
    status: Any,
    open_alerts: Iterable[OpenAlert],
    now: datetime,
    config: AlertSettings,
    tz: tzinfo,
    *,
    earlier: Sample | None = None,
    internal: frozenset[str] = frozenset(),
    rules: Iterable[Rule] = RULES,
) -> list[Transition]:
    look = Look(status, config, now, tz, earlier, internal)
    journal_answered = getattr(status, "journal_reachable", True) is not False
    by_key: Mapping[tuple[str, str], OpenAlert] = {(a.rule, a.subject): a for a in open_alerts}
    out: list[Transition] = []
    judged: set[str] = set()
    held: set[tuple[str, str]] = set()
    for rule in rules:
        if rule.needs_journal and not journal_answered:
            continue
        judged.add(rule.key)
        for finding in rule.check(look):
            zh, en = rule.summaries(finding)
            was = by_key.get((rule.key, finding.subject))
            if was is None:
                out.append(
                    Transition(OPEN, rule.key, finding.subject, rule.severity, now, now, zh, en, *rule.title)
                )
            elif (now - was.last_notified_at).total_seconds() >= config.repeat_every:
                out.append(
                    Transition(
                        REPEAT,
                        rule.key,
                        finding.subject,
                        was.severity,
                        was.opened_at,
                        now,
                        zh,
                        en,
                        *rule.title,
                        was.id,
                    )
                )
            held.add((rule.key, finding.subject))
    titles = {r.key: r.title for r in RULES}
    for (key, subject), was in by_key.items():
        if (key, subject) in held:
            continue
        if key in judged or key not in titles:  # a rule that no longer exists resolves too
            zh, en = titles.get(key, (key, key))
            out.append(
                Transition(
                    RESOLVE,
                    key,
                    subject,
                    was.severity,
                    was.opened_at,
                    now,
                    was.summary,
                    was.summary_en,
                    zh,
                    en,
                    was.id,
                )
            )
    return out
