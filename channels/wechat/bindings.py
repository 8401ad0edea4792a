"""Which WeChat openid belongs to which person (or staff role), and what that user has said.

Table `wechat_bindings` in the engine database, one row per openid: the person's identifiers
(ID card, or HIS system + HIS id), the phone as a second check, the role (`patient`, or a
staff role such as `high_risk_officer`), whether the user follows the account now, and the
subscribe-notice consents per template. Rows come from `mch-engine wechat bind import`
(`source` = `import`) and from the callback (`source` = `callback`, for a follower not bound
to anyone yet: such a row reaches nobody until an import names its person).

Only subscribed rows receive anything: `openids_for` and `staff_openids` leave the others out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    select,
)

from core.clock import now_utc
from core.database import UtcDateTime
from core.masking import mask_key
from transforms.records.idcard import id_card_problems, mask_id_card, normalise_id_card

metadata = MetaData()

PATIENT = "patient"
ACCEPTED, REJECTED = "accept", "reject"

wechat_bindings = Table(
    "wechat_bindings",
    metadata,
    Column("openid", String(64), primary_key=True),
    Column("id_card", String(32)),
    Column("his_id", String(100)),
    Column("his_system", String(100)),
    Column("phone", String(32)),
    Column("name_hint", String(32)),  # masked, e.g. 林** — never the full name
    Column("role", String(64), nullable=False, default=PATIENT),
    Column("subscribed", Boolean, nullable=False, default=True),
    Column("consents", JSON, nullable=False, default=dict),  # template_id → {status, at}
    Column("bound_at", UtcDateTime()),
    Column("unsubscribed_at", UtcDateTime()),
    Column("source", String(16), nullable=False),
)
Index("ix_wechat_bindings_id_card", wechat_bindings.c.id_card)
Index("ix_wechat_bindings_his", wechat_bindings.c.his_system, wechat_bindings.c.his_id)
Index("ix_wechat_bindings_role", wechat_bindings.c.role)

IMPORT_COLUMNS = ("openid", "id_card", "his_id", "his_system", "phone", "role")


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


# --------------------------------------------------------------------------- lookups


def openids_for(conn: Connection, person_ref: dict[str, Any] | None) -> list[str]:
    """The subscribed openids bound to the identifiers a record's `person` carries: by ID card
    when it has a usable one, else by HIS system + HIS id. A flagged ID card is not used."""
    if not person_ref:
        return []
    c = wechat_bindings.c
    id_card = person_ref.get("id_card")
    if id_card and person_ref.get("id_card_valid") is not False:
        found = _subscribed(conn, c.id_card == normalise_id_card(str(id_card)))
        if found:
            return found
    his_id, his_system = person_ref.get("his_id"), person_ref.get("his_system")
    if his_id and his_system:
        return _subscribed(conn, (c.his_system == str(his_system)) & (c.his_id == str(his_id)))
    return []


def staff_openids(conn: Connection, role: str) -> list[str]:
    """The subscribed openids bound to staff of `role`."""
    return _subscribed(conn, wechat_bindings.c.role == role)


def _subscribed(conn: Connection, condition: Any) -> list[str]:
    c = wechat_bindings.c
    query = select(c.openid).where(condition & c.subscribed.is_(True)).order_by(c.openid)
    return [row[0] for row in conn.execute(query)]


# --------------------------------------------------------------------------- callback events


def set_subscribed(conn: Connection, openid: str, subscribed: bool, at: datetime) -> None:
    """Follow or unfollow; a follower not bound yet gets a row with no person."""
    row = _locked(conn, openid)
    values = {"subscribed": subscribed, "unsubscribed_at": None if subscribed else at}
    if row is None:
        conn.execute(wechat_bindings.insert().values(openid=openid, source="callback", consents={}, **values))
    else:
        conn.execute(wechat_bindings.update().where(wechat_bindings.c.openid == openid).values(**values))


def record_consent(conn: Connection, openid: str, template_id: str, status: str, at: datetime) -> None:
    """A subscribe-message popup answer (`accept` or `reject`) for one template, the latest kept."""
    row = _locked(conn, openid)
    entry = {"status": status, "at": at.isoformat()}
    if row is None:
        conn.execute(
            wechat_bindings.insert().values(
                openid=openid, source="callback", subscribed=True, consents={template_id: entry}
            )
        )
        return
    consents = {**(row.consents or {}), template_id: entry}
    conn.execute(wechat_bindings.update().where(wechat_bindings.c.openid == openid).values(consents=consents))


def consent_of(conn: Connection, openid: str, template_id: str) -> str | None:
    """`accept`, `reject`, or None when the user was never asked for this template."""
    row = conn.execute(select(wechat_bindings.c.consents).where(wechat_bindings.c.openid == openid)).first()
    entry = (row[0] or {}).get(template_id) if row else None
    return entry["status"] if entry else None


def _locked(conn: Connection, openid: str) -> Any:
    """The row, locked for this transaction on PostgreSQL (two events for one user do not
    lose each other's consents); SQLite serialises writers anyway."""
    query = select(wechat_bindings).where(wechat_bindings.c.openid == openid).with_for_update()
    return conn.execute(query).first()


# --------------------------------------------------------------------------- import


@dataclass(frozen=True, slots=True)
class Rejection:
    """One CSV row not imported: its line number in the file, why (a text key), and a detail
    an operator may read (masked)."""

    line: int
    reason: str
    detail: str = ""


@dataclass
class ImportReport:
    imported: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Row:
    openid: str
    id_card: str | None
    his_id: str | None
    his_system: str | None
    phone: str | None
    role: str


def import_rows(
    engine: Engine, rows: Iterable[tuple[int, dict[str, str]]], at: datetime | None = None
) -> ImportReport:
    """Import (line number, CSV row) pairs in one transaction; each bad row is reported, the
    rest are written. A row for an openid already bound to the same person updates it."""
    at = at or now_utc()
    report = ImportReport()
    with engine.begin() as conn:
        seen: dict[str, _Row] = {}
        for line, raw in rows:
            row, rejection = _parse(line, raw)
            if rejection is None:
                assert row is not None
                rejection = _conflict(conn, line, row, seen.get(row.openid))
            if rejection is not None:
                report.rejected.append(rejection)
                continue
            assert row is not None
            seen[row.openid] = row
            if _write(conn, row, at):
                report.imported += 1
            else:
                report.unchanged += 1
    return report


def _clean(value: str | None) -> str | None:
    text = (value or "").strip()
    return text or None


def _phone(value: str | None) -> str | None:
    text = _clean(value)
    if text is None:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    return digits[-11:] if len(digits) >= 11 and digits[-11] == "1" else digits or text


def _parse(line: int, raw: dict[str, str]) -> tuple[_Row | None, Rejection | None]:
    openid = _clean(raw.get("openid"))
    if openid is None:
        return None, Rejection(line, "wx_reject_no_openid")
    if len(openid) > 64 or not openid.isascii():
        return None, Rejection(line, "wx_reject_bad_openid", mask_key(openid))
    id_card = _clean(raw.get("id_card"))
    if id_card is not None:
        id_card = normalise_id_card(id_card)
        blocking = [p for p in id_card_problems(id_card) if p.blocks_linking]
        if blocking:
            check = blocking[0].code == "id_card_check_digit"
            reason = "wx_reject_id_card_check" if check else "wx_reject_id_card"
            return None, Rejection(line, reason, mask_id_card(id_card))
    his_id, his_system = _clean(raw.get("his_id")), _clean(raw.get("his_system"))
    if his_id and not his_system:
        return None, Rejection(line, "wx_reject_his_system_missing")
    if id_card is None and his_id is None:
        return None, Rejection(line, "wx_reject_no_identifier")
    role = _clean(raw.get("role")) or PATIENT
    return _Row(openid, id_card, his_id, his_system if his_id else None, _phone(raw.get("phone")), role), None


def _same_person(a: Any, b: _Row) -> bool:
    """No identifier both carry disagrees, and they share at least one."""
    shared = False
    if a.id_card and b.id_card:
        if a.id_card != b.id_card:
            return False
        shared = True
    if a.his_id and b.his_id:
        if (a.his_system, a.his_id) != (b.his_system, b.his_id):
            return False
        shared = True
    return shared


def _conflict(conn: Connection, line: int, row: _Row, earlier: _Row | None) -> Rejection | None:
    c = wechat_bindings.c
    if earlier is not None and not _same_person(earlier, row):
        return Rejection(line, "wx_reject_openid_other_person", mask_key(row.openid))
    existing = conn.execute(select(wechat_bindings).where(c.openid == row.openid)).first()
    bound = existing is not None and (existing.id_card or existing.his_id)
    if bound and not _same_person(existing, row):
        return Rejection(line, "wx_reject_openid_other_person", mask_key(row.openid))
    if row.phone:
        same = []
        if row.id_card:
            same.append(c.id_card == row.id_card)
        if row.his_id:
            same.append((c.his_system == row.his_system) & (c.his_id == row.his_id))
        condition = same[0] if len(same) == 1 else same[0] | same[1]
        for other in conn.execute(select(c.phone).where(condition & c.phone.is_not(None))):
            if other.phone != row.phone:
                return Rejection(line, "wx_reject_phone_disagrees", _mask_phone(row.phone))
        if earlier is not None and earlier.phone and earlier.phone != row.phone:
            return Rejection(line, "wx_reject_phone_disagrees", _mask_phone(row.phone))
    return None


def _write(conn: Connection, row: _Row, at: datetime) -> bool:
    """Insert or complete the binding; False when it was already there as the file says."""
    c = wechat_bindings.c
    values = {
        "id_card": row.id_card,
        "his_id": row.his_id,
        "his_system": row.his_system,
        "phone": row.phone,
        "role": row.role,
    }
    existing = conn.execute(select(wechat_bindings).where(c.openid == row.openid)).first()
    if existing is None:
        conn.execute(
            wechat_bindings.insert().values(
                openid=row.openid, subscribed=True, consents={}, bound_at=at, source="import", **values
            )
        )
        return True
    merged = {k: v if v is not None else getattr(existing, k) for k, v in values.items()}
    if all(getattr(existing, k) == v for k, v in merged.items()):
        return False
    bound_at = existing.bound_at or at
    conn.execute(wechat_bindings.update().where(c.openid == row.openid).values(bound_at=bound_at, **merged))
    return True


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class BindingView:
    """A binding as an operator may see it: every identifier masked."""

    openid: str
    id_card: str
    his: str
    phone: str
    role: str
    subscribed: bool
    consents: dict[str, str]
    bound_at: datetime | None
    unsubscribed_at: datetime | None
    source: str


def list_bindings(
    engine: Engine, *, role: str | None = None, limit: int | None = None
) -> Iterator[BindingView]:
    c = wechat_bindings.c
    query = select(wechat_bindings).order_by(c.bound_at.desc(), c.openid)
    if role:
        query = query.where(c.role == role)
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        for r in conn.execute(query):
            yield BindingView(
                openid=mask_key(r.openid),
                id_card=mask_id_card(r.id_card) if r.id_card else "",
                his=f"{r.his_system}:{mask_key(r.his_id)}" if r.his_id else "",
                phone=_mask_phone(r.phone) if r.phone else "",
                role=r.role,
                subscribed=bool(r.subscribed),
                consents={k: v.get("status", "") for k, v in (r.consents or {}).items()},
                bound_at=r.bound_at,
                unsubscribed_at=r.unsubscribed_at,
                source=r.source,
            )


def _mask_phone(phone: str) -> str:
    """`139****1234`: any phone, mobile or landline, with only its ends shown."""
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 8 else "****"
