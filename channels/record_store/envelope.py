"""One envelope at a time: the reference behaviour of the store, and the path a bundle
takes for what it cannot decide alone (A40 merges, references that join two persons).

Every statement here is a read or write of one row or one person, so this is the slow
path; `batch` (channels/record_store/batch.py) must give the same result for a bundle as this does for its
envelopes in order.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import Connection

from channels.record_store.schema import identifiers_of, person_key_for
from channels.record_store.statements import (
    MERGE_HOPS,
    common_values,
    person_values,
    skeleton_values,
    statements_for,
)
from core.clock import now_utc
from core.errors import PermanentDeliveryError

log = structlog.get_logger("channels.record_store")


def store_envelope(conn: Connection, env: dict[str, Any]) -> None:
    """Store one envelope: the reference every bundle must agree with."""
    record = env["record"]
    kind = env["record_type"]
    if kind == "PersonMerge":
        _merge(conn, record)
        return
    if kind == "Person":
        _upsert_person(conn, env, record)
        return
    sql = statements_for(conn)
    person_key = _resolve(conn, record.get("person"), create=True)
    if record.get("mother") and person_key:
        mother_key = _resolve(conn, record["mother"], create=True)
        if mother_key and mother_key != person_key:
            conn.execute(sql.set_mother, {"b_key": person_key, "b_mother": mother_key})
    row = {
        "record_id": env["record_id"],
        "record_type": kind,
        "person_key": person_key,
        **common_values(env, now_utc()),
    }
    conn.execute(sql.upsert_record, row)


def _upsert_person(conn: Connection, env: dict[str, Any], record: dict[str, Any]) -> None:
    sql = statements_for(conn)
    ref = record.get("person") or record
    key = _resolve(conn, ref, create=True) or f"record:{env['record_id']}"
    conn.execute(sql.upsert_person, person_values(key, ref, env, now_utc()))
    if record.get("mother"):
        mother_key = _resolve(conn, record["mother"], create=True)
        if mother_key and mother_key != key:
            conn.execute(sql.set_mother, {"b_key": key, "b_mother": mother_key})


def _resolve(conn: Connection, ref: dict[str, Any] | None, *, create: bool) -> str | None:
    """The person these identifiers belong to; registers new identifiers; merges two
    known persons that this reference shows to be one."""
    ids = identifiers_of(ref)
    if not ids:
        return None
    sql = statements_for(conn)
    found: list[str] = []
    for kind, system, value in ids:
        key = conn.execute(sql.find_identifier, {"kind": kind, "system": system, "value": value}).scalar()
        if key:
            key = _follow_merges(conn, key)
            if key not in found:
                found.append(key)
    if found:
        survivor = found[0]
        for other in found[1:]:
            log.info("persons_linked", survivor=survivor, merged=other)
            _move_person(conn, other, survivor)
    elif create:
        survivor = person_key_for(ids)
        conn.execute(sql.insert_skeleton, skeleton_values(survivor, ref or {}, now_utc()))
    else:
        return None
    for kind, system, value in ids:
        conn.execute(
            sql.insert_identifier,
            {"kind": kind, "system": system, "value": value, "person_key": survivor},
        )
    return survivor


def _merge(conn: Connection, record: dict[str, Any]) -> None:
    """A40: the retired identifiers and everything filed under them go to the survivor."""
    survivor = _resolve(conn, record.get("survivor"), create=True)
    if survivor is None:
        raise PermanentDeliveryError("PersonMerge without identifiers for the surviving person")
    sql = statements_for(conn)
    for retired_ref in record.get("retired") or []:
        retired = _resolve(conn, retired_ref, create=False)
        if retired and retired != survivor:
            _move_person(conn, retired, survivor)
        # The retired identifiers now name the survivor, known before or not, so a
        # message still filed under an old id links to the right person.
        for kind, system, value in identifiers_of(retired_ref):
            conn.execute(
                sql.reassign_identifier,
                {"kind": kind, "system": system, "value": value, "person_key": survivor},
            )


def _follow_merges(conn: Connection, key: str) -> str:
    sql = statements_for(conn)
    for _ in range(MERGE_HOPS):
        nxt = conn.execute(sql.merged_into, {"key": key}).scalar()
        if not nxt:
            return key
        key = nxt
    return key


def _move_person(conn: Connection, retired: str, survivor: str) -> None:
    sql = statements_for(conn)
    names = {"b_retired": retired, "b_survivor": survivor}
    for stmt in (sql.move_identifiers, sql.move_records, sql.move_children, sql.retire_person):
        conn.execute(stmt, names)
