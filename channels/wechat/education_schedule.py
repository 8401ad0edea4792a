"""The health-education schedule (宣教推送) of a `wechat` destination that names a catalogue.

Every `education_every`, outside the patients' quiet hours: each woman with a subscribed
patient binding is found in the record store by the binding's ID card (or HIS system + HIS
id), her history and her children's are read (channels/record_store/derive.py), and each
item due today (channels/wechat/education.py) becomes one ledger row, event
`education:<item id>`, sent to her first bound openid (or left in the outbox without
credentials). A row's dedup key is the woman, the item and, for child items, the child: so
an item reaches a person once ever, whatever the template, the openid or the run. At most
`education_per_month` rows are made per woman and calendar month (engine.timezone); items
not sent because of the limit are tried again on later runs while their window lasts.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

import structlog
from sqlalchemy import Engine, and_, func, or_, select

from channels.record_store.derive import read_histories
from channels.record_store.schema import person_identifiers
from channels.wechat import ledger
from channels.wechat.bindings import PATIENT, wechat_bindings
from channels.wechat.catalogue import AUDIENCE_LABELS, EducationCatalogue, EducationItem
from channels.wechat.education import due_items
from channels.wechat.keys import check_key
from core.errors import PermanentDeliveryError, TransientDeliveryError

__all__ = ["EDUCATION_RECORD_TYPE", "EducationSchedule", "education_dedup_key"]

log = structlog.get_logger("channels.wechat")

EDUCATION_RECORD_TYPE = "EducationItem"
_NOT_COUNTED = ("undeliverable", "stale", "failed")  # rows that never reached her


def _digest(person_key: str) -> str:
    return hashlib.sha256(person_key.encode("utf-8")).hexdigest()[:16]


def education_dedup_key(woman: str, item_id: str, about: str) -> str:
    """One item to one person, once ever: the woman, the item and the child it is about
    (her own key for her own items)."""
    subject = "" if about == woman else _digest(about)
    return ledger.dedup_key(woman, f"education:{item_id}:{subject}", "", "")


class EducationSchedule:
    """Makes the due education notices of one `wechat` destination (`sink`)."""

    def __init__(
        self,
        sink: Any,
        catalogue: EducationCatalogue,
        store: Engine,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.sink = sink
        self.settings = sink.settings
        self.catalogue = catalogue
        self.store = store
        self.clock = clock or sink.clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ one run

    def run_once(self) -> int:
        """Make the notices due now; how many rows were written."""
        now = self.clock()
        tz: tzinfo = self.sink.tz
        from channels.wechat.destination import quiet_until

        if quiet_until(now, self.settings.quiet, tz) is not None:
            log.info("wechat_education_quiet_hours", destination=self.sink.name)
            return 0
        local = now.astimezone(tz)
        today = local.date()
        month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        openids = self._bound_women()
        if not openids:
            return 0
        with self.store.connect() as conn:
            histories = read_histories(conn, sorted(openids))
        made = 0
        for woman, history in histories.items():
            due = due_items(history, self.catalogue, today)
            if due:
                made += self._push(woman, openids[woman], due, now, today, month_start)
        log.info("wechat_education_run", destination=self.sink.name, women=len(histories), made=made)
        return made

    def _bound_women(self) -> dict[str, str]:
        """Person key in the record store → the openid her items go to (the first bound)."""
        b = wechat_bindings.c
        identified = or_(b.id_card.is_not(None), b.his_id.is_not(None))
        query = (
            select(b.openid, b.id_card, b.his_system, b.his_id)
            .where(b.role == PATIENT, b.subscribed.is_(True), identified)
            .order_by(b.openid)
        )
        with self.sink.engine.connect() as conn:
            bound = list(conn.execute(query))
        found: dict[str, str] = {}
        pi = person_identifiers.c
        with self.store.connect() as conn:
            for openid, id_card, his_system, his_id in bound:
                key = None
                if id_card:
                    where = and_(pi.kind == "id_card", pi.value == id_card)
                    key = conn.execute(select(pi.person_key).where(where)).scalar()
                if key is None and his_id:
                    where = and_(pi.kind == "his", pi.system == (his_system or ""), pi.value == his_id)
                    key = conn.execute(select(pi.person_key).where(where)).scalar()
                if key is not None:
                    found.setdefault(key, openid)
        return found

    def _sent_this_month(self, woman: str, since: datetime) -> int:
        n = ledger.notices.c
        query = select(func.count()).where(
            n.person == woman,
            n.record_type == EDUCATION_RECORD_TYPE,
            n.created_at >= since,
            n.status.not_in(_NOT_COUNTED),
        )
        with self.sink.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def _push(
        self,
        woman: str,
        openid: str,
        due: list[tuple[EducationItem, str]],
        now: datetime,
        today: date,
        month_start: datetime,
    ) -> int:
        keys = {education_dedup_key(woman, item.id, about): (item, about) for item, about in due}
        n = ledger.notices.c
        with self.sink.engine.connect() as conn:
            done = set(conn.execute(select(n.dedup_key).where(n.dedup_key.in_(list(keys)))).scalars())
        room = self.settings.education_per_month - self._sent_this_month(woman, month_start)
        made = 0
        for key, (item, about) in keys.items():
            if key in done:
                continue
            if made >= room:
                log.info("wechat_education_monthly_limit", destination=self.sink.name, held_back=item.id)
                continue
            if self._write(key, woman, openid, item, about, now, today):
                made += 1
        return made

    def _write(
        self, key: str, woman: str, openid: str, item: EducationItem, about: str, now: datetime, today: date
    ) -> bool:
        values = {"title": item.title, "audience": AUDIENCE_LABELS[item.audience], "date": today.isoformat()}
        data = {}
        try:
            for name, spec in self.settings.education_keys.items():
                data[name] = spec.render(values)
                check_key(name, spec.type, data[name])
        except PermanentDeliveryError as exc:  # `check` refuses such a catalogue; an edit since
            log.error("wechat_education_refused", destination=self.sink.name, item=item.id, error=str(exc))
            return False
        record_id = f"education:{item.id}" + ("" if about == woman else f":{_digest(about)}")
        row = {
            "dedup_key": key,
            "destination": self.sink.name,
            "event": f"education:{item.id}",
            "person": woman,
            "record_id": record_id,
            "record_type": EDUCATION_RECORD_TYPE,
            "recipient": openid,
            "role": None,
            "template_id": self.settings.education_template_id,
            "data": data,
            "url": item.link,
            "status": "outbox" if self.sink.outbox_mode else "queued",
            "reason": None,
            "client_msg_id": key,
            "created_at": now,
            "due_at": None,
        }
        with self.sink.engine.begin() as conn:
            if ledger.insert_once(conn, row) is not None:
                return False  # another engine made it first
            fresh = conn.execute(select(ledger.notices).where(ledger.notices.c.dedup_key == key))
            stored = dict(fresh.mappings().one())
        log.info(
            "wechat_notice_recorded",
            destination=self.sink.name,
            record_id=record_id,
            notice=row["event"],
            template_id=row["template_id"],
            status=row["status"],
        )
        if row["status"] == "queued":
            try:
                self.sink.send_row(stored)
            except TransientDeliveryError as exc:  # tried again by the held-notice scheduler
                later = self.clock() + timedelta(seconds=self.settings.check_every)
                with self.sink.engine.begin() as conn:
                    ledger.mark(conn, stored["id"], "held", reason=str(exc)[:500], due_at=later)
            except PermanentDeliveryError:
                pass  # marked failed with the reason; `wechat outbox` shows it
        return True

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        if self._thread is not None:
            return
        name = f"wechat-education-{self.sink.name}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wait = min(60.0, self.settings.education_every)  # the first run soon after start
        while not self._stop.wait(wait):
            wait = self.settings.education_every
            try:
                self.run_once()
            except Exception as exc:  # a database away: next round
                log.warning("wechat_education_failed", destination=self.sink.name, error=type(exc).__name__)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
