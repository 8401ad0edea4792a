"""Record store statements, built once per SQL dialect, and the row values they take.

Building an upsert construct costs more than running it on a warm connection, so every
statement is made once per dialect and reused; SQLAlchemy's compiled cache then finds it
cheaply. Every statement takes plain bound parameters, so it runs as one executemany.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Executable,
    String,
    Table,
    and_,
    any_,
    bindparam,
    cast,
    func,
    null,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from channels.record_store.schema import Identifier, person_identifiers, persons, records
from core.upsert import insert_for

PERSON_COLUMNS = ("name", "sex", "birth_date", "id_card")
MERGE_HOPS = 10  # a chain of merged persons is followed this far
COMMON_COLUMNS = ("payload", "source_channel", "source_control_id", "journal_id", "event_time", "stored_at")


@dataclass(frozen=True)
class Statements:
    """Everything the store runs, for one dialect."""

    find_identifier: Executable  # kind, system, value -> person_key
    find_identifiers: Executable  # see lookup_params
    merged_into: Executable  # key -> merged_into
    insert_identifier: Executable  # ignores a known identifier
    reassign_identifier: Executable  # an identifier, known or not, now names person_key
    insert_skeleton: Executable  # ignores a known person
    upsert_person: Executable  # newest source event wins
    upsert_record: Executable  # newest source event wins
    set_mother: Executable  # b_key, b_mother
    move_identifiers: Executable  # b_retired, b_survivor
    move_records: Executable
    move_children: Executable
    retire_person: Executable


_BY_DIALECT: dict[str, Statements] = {}


def statements_for(conn: Connection) -> Statements:
    found = _BY_DIALECT.get(conn.dialect.name)
    if found is None:
        found = _BY_DIALECT[conn.dialect.name] = _build(conn)
    return found


def _build(conn: Connection) -> Statements:
    pi = person_identifiers
    retired: BindParameter[str] = bindparam("b_retired")
    survivor: BindParameter[str] = bindparam("b_survivor")
    reassign = insert_for(conn, pi)
    reassign = reassign.on_conflict_do_update(
        index_elements=["kind", "system", "value"], set_={"person_key": reassign.excluded.person_key}
    )
    return Statements(
        find_identifier=select(pi.c.person_key).where(
            pi.c.kind == bindparam("kind"),
            pi.c.system == bindparam("system"),
            pi.c.value == bindparam("value"),
        ),
        find_identifiers=_find_identifiers(conn),
        merged_into=select(persons.c.merged_into).where(persons.c.person_key == bindparam("key")),
        insert_identifier=insert_for(conn, pi).on_conflict_do_nothing(),
        reassign_identifier=reassign,
        insert_skeleton=insert_for(conn, persons).on_conflict_do_nothing(),
        upsert_person=_upsert_newest(conn, persons, "person_key", PERSON_COLUMNS + COMMON_COLUMNS),
        upsert_record=_upsert_newest(
            conn, records, "record_id", ("record_type", "person_key", *COMMON_COLUMNS)
        ),
        set_mother=update(persons)
        .where(persons.c.person_key == bindparam("b_key"))
        .values(mother_key=bindparam("b_mother")),
        move_identifiers=update(pi).where(pi.c.person_key == retired).values(person_key=survivor),
        move_records=update(records).where(records.c.person_key == retired).values(person_key=survivor),
        move_children=update(persons).where(persons.c.mother_key == retired).values(mother_key=survivor),
        retire_person=update(persons).where(persons.c.person_key == retired).values(merged_into=survivor),
    )


def _find_identifiers(conn: Connection) -> Executable:
    """One read for a bundle: the identifier rows of a list of (kind, system, value), with
    their person's merged_into, and (kind NULL) those of a list of person keys merged away.

    PostgreSQL gets arrays: one statement text whatever the lists' lengths, so it is
    prepared once, where a tuple IN list would be parsed and planned every time."""
    pi = person_identifiers
    columns = (pi.c.kind, pi.c.system, pi.c.value, pi.c.person_key, persons.c.merged_into)
    with_person = persons.c.person_key == pi.c.person_key
    if conn.dialect.name == "postgresql":
        wanted = (
            func.unnest(*(_array_param(name) for name in ("kinds", "systems", "values")))
            .table_valued("kind", "system", "value")
            .render_derived(name="wanted")
        )
        same = and_(pi.c.kind == wanted.c.kind, pi.c.system == wanted.c.system, pi.c.value == wanted.c.value)
        found = select(*columns).select_from(wanted.join(pi, same).outerjoin(persons, with_person))
    else:
        found = (
            select(*columns)
            .select_from(pi.outerjoin(persons, with_person))
            .where(tuple_(pi.c.kind, pi.c.system, pi.c.value).in_(bindparam("idents", expanding=True)))
        )
    merged = select(null(), null(), null(), persons.c.person_key, persons.c.merged_into).where(
        _in_list(conn, persons.c.person_key, "keys"), persons.c.merged_into.is_not(None)
    )
    return union_all(found, merged)


def lookup_params(conn: Connection, idents: list[Identifier], keys: list[str]) -> dict[str, Any]:
    """Bound values of `find_identifiers` for this dialect."""
    if conn.dialect.name == "postgresql":
        return {
            "kinds": [i[0] for i in idents],
            "systems": [i[1] for i in idents],
            "values": [i[2] for i in idents],
            "keys": keys,
        }
    return {"idents": idents, "keys": keys}


def _in_list(conn: Connection, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    if conn.dialect.name == "postgresql":
        return column == any_(_array_param(name))
    return column.in_(bindparam(name, expanding=True))


def _array_param(name: str) -> ColumnElement[Any]:
    return cast(bindparam(name), ARRAY(String))


def _upsert_newest(conn: Connection, table: Table, key: str, columns: tuple[str, ...]) -> Executable:
    """Insert, or update when this source event is not older than the stored one (the journal
    id breaks ties), so a late original never undoes its correction. A row made from the same
    journaled message is always replaced: a reprocess with a fixed mapping corrects that same
    event, even when the fix changed the event time the mapping reads."""
    stmt = insert_for(conn, table)
    newer = or_(
        table.c.event_time.is_(None),
        stmt.excluded.journal_id == table.c.journal_id,
        stmt.excluded.event_time > table.c.event_time,
        and_(
            stmt.excluded.event_time == table.c.event_time,
            stmt.excluded.journal_id >= table.c.journal_id,
        ),
    )
    result: Executable = stmt.on_conflict_do_update(
        index_elements=[key], set_={c: stmt.excluded[c] for c in columns}, where=newer
    )
    return result


def common_values(env: dict[str, Any], stored_at: datetime) -> dict[str, Any]:
    """The columns every stored row takes from its envelope."""
    event_time = env.get("event_time")
    return {
        "payload": env["record"],
        "source_channel": env["channel"],
        "source_control_id": env.get("control_id"),
        "journal_id": env["journal_id"],
        "event_time": datetime.fromisoformat(event_time) if event_time else None,
        "stored_at": stored_at,
    }


def person_values(key: str, ref: dict[str, Any], env: dict[str, Any], stored_at: datetime) -> dict[str, Any]:
    return {
        "person_key": key,
        "name": ref.get("name"),
        "sex": ref.get("sex"),
        "birth_date": ref.get("birth_date"),
        "id_card": ref.get("id_card"),
        **common_values(env, stored_at),
    }


def skeleton_values(key: str, ref: dict[str, Any], stored_at: datetime) -> dict[str, Any]:
    """A person known so far only from a record's reference; a registration fills it in."""
    return {
        "person_key": key,
        "name": ref.get("name"),
        "id_card": ref.get("id_card") if ref.get("id_card_valid") is not False else None,
        "payload": {},
        "stored_at": stored_at,
    }
