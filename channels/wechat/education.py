"""Which health-education items (宣教) are due for a woman today, and for whom.

`due_items(history, catalogue, today)` is pure: from her stored records (pregnancy episodes,
transforms/rules/episodes.py) and her children's, the catalogue items whose window holds
today:

- a registered pregnancy that is still open (no delivery, registration not closed, not past
  its 44 weeks): the `pregnant` items of her current gestational week;
- after a delivery: the `postpartum` items of the day after delivery (day 0 is the delivery);
  a delivery whose every newborn was stillborn counts as a loss;
- each child of hers (history.children) born alive: the `child_guardian` items of its age in
  whole months, sent to her as the guardian;
- a pregnancy closed otherwise (miscarriage, death, moved, lost to follow-up, other): nothing
  more from that pregnancy — no pregnancy items and no postpartum items.

Each pair is (item, person key): the woman's key, or the child's for child items. Items
already sent are left out when `already` names them; the ledger keeps what was sent, once
per person and item.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

from channels.wechat.catalogue import EducationCatalogue, EducationItem
from transforms.rules.episodes import Episode, episodes
from transforms.rules.history import History, as_date

__all__ = ["age_in_months", "due_items"]


def age_in_months(born: date, today: date) -> int:
    """Whole months of age: 2024-01-31 → 2024-02-29 is 0, → 2024-03-01 is 1."""
    months = (today.year - born.year) * 12 + today.month - born.month
    return months - 1 if today.day < born.day else months


def _closed_early(episode: Episode) -> bool:
    reg = episode.registration
    if reg is None:
        return False
    return reg.payload.get("status") == "closed" and reg.payload.get("close_reason") != "delivered"


def _birth_day(child: History) -> date | None:
    born = as_date(child.person.get("birth_date"))
    if born is None:
        newborn = child.of_type("NewbornRecord")
        born = newborn[0].day if newborn else None
    return born


def _stillborn(child: History) -> bool:
    newborn = child.of_type("NewbornRecord")
    return bool(newborn) and all(r.payload.get("outcome") == "stillbirth" for r in newborn)


def _lost_at_birth(episode: Episode, children: tuple[History, ...]) -> bool:
    """Every newborn of this delivery was stillborn (none known: not a loss)."""
    assert episode.delivery is not None and episode.delivery.day is not None
    born = episode.delivery.day
    of_it = [c for c in children if (d := _birth_day(c)) is not None and abs((d - born).days) <= 1]
    return bool(of_it) and all(_stillborn(c) for c in of_it)


def _items(catalogue: EducationCatalogue, audience: str, value: int) -> list[EducationItem]:
    return [item for item in catalogue.items if item.covers(audience, value)]


def due_items(
    history: History,
    catalogue: EducationCatalogue,
    today: date,
    *,
    already: Collection[tuple[str, str]] = (),
) -> list[tuple[EducationItem, str]]:
    """(item, person key) due today, in catalogue order; `already` holds (item id, person key)
    pairs sent before, which are left out."""
    due: list[tuple[EducationItem, str]] = []
    mother = history.person_key
    current = [e for e in episodes(history) if e.start <= today <= e.end]
    episode = current[-1] if current else None
    if episode is not None and not _closed_early(episode):
        if episode.delivery is None:
            if episode.registration is not None:
                week = episode.gestational_days(today) // 7
                due += [(item, mother) for item in _items(catalogue, "pregnant", week)]
        elif episode.delivery.day is not None and not _lost_at_birth(episode, history.children):
            days = (today - episode.delivery.day).days
            due += [(item, mother) for item in _items(catalogue, "postpartum", days)]
    for child in history.children:
        born = _birth_day(child)
        if born is None or born > today or _stillborn(child):
            continue
        months = age_in_months(born, today)
        due += [(item, child.person_key) for item in _items(catalogue, "child_guardian", months)]
    return [(item, key) for item, key in due if (item.id, key) not in already]
