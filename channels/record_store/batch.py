"""Storing a bundle of envelopes with a few statements instead of several per envelope.

The outcome must be that of storing the envelopes one by one, in order. So the bundle's
identifiers are read once, the envelopes are then decided in order against that picture
(which learns the identifiers and skeleton persons each envelope adds), and the writes
go out as one executemany per statement. An envelope the picture cannot decide alone
(an A40 merge, or a reference that shows two known persons to be one) is stored by the
one-envelope path at its place in the order, after the writes decided before it; the
picture is then read again for the envelopes behind it.

Writing by statement rather than by envelope keeps the result because the statements
touch different things: identifier and skeleton inserts only add what is missing, a
person upsert overwrites every column a skeleton sets and never sets `mother_key`, and
the rows of one key reach the newest-wins upserts in envelope order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection

from channels.record_store.envelope import store_envelope
from channels.record_store.schema import Identifier, identifiers_of, person_key_for
from channels.record_store.statements import (
    MERGE_HOPS,
    Statements,
    common_values,
    lookup_params,
    person_values,
    skeleton_values,
    statements_for,
)
from core.clock import now_utc

_LOOKUP_CHUNK = 300  # identifiers and keys per SELECT: 1,200 bound values, under any SQLite limit


class _NeedsOneByOne(Exception):
    """This envelope must go through the one-envelope path."""


class _Known:
    """What the database says about the bundle's identifiers, plus what the bundle added so far."""

    def __init__(self, conn: Connection, sql: Statements, refs: list[list[Identifier]]) -> None:
        self.conn = conn
        self.sql = sql
        self.owner: dict[Identifier, str] = {}  # identifier -> person_key as stored
        # person_key -> merged_into, for the keys read. Read with the identifiers: the keys
        # new persons of the bundle would get, since one might exist already, merged away.
        keys = list({person_key_for(ids) for ids in refs})
        self.merged_into: dict[str, str | None] = dict.fromkeys(keys)
        idents = list({ident for ids in refs for ident in ids})
        for i in range(0, max(len(idents), len(keys)), _LOOKUP_CHUNK):
            params = lookup_params(conn, idents[i : i + _LOOKUP_CHUNK], keys[i : i + _LOOKUP_CHUNK])
            for kind, system, value, key, merged in conn.execute(sql.find_identifiers, params):
                if kind is not None:
                    self.owner[(kind, system, value)] = key
                self.merged_into[key] = merged

    def follow(self, key: str) -> str:
        """The person a key stands for now, following merges as the one-envelope path does."""
        for _ in range(MERGE_HOPS):
            if key not in self.merged_into:
                self.merged_into[key] = self.conn.execute(self.sql.merged_into, {"key": key}).scalar()
            nxt = self.merged_into[key]
            if not nxt:
                return key
            key = nxt
        return key


class _Writes:
    """Rows decided so far, in envelope order, one list per statement."""

    def __init__(self) -> None:
        self.identifiers: list[dict[str, str]] = []
        self.skeletons: list[dict[str, Any]] = []
        self.persons: list[dict[str, Any]] = []
        self.mothers: list[dict[str, str]] = []
        self.records: list[dict[str, Any]] = []

    def mark(self) -> tuple[int, ...]:
        return tuple(len(rows) for rows in self._lists())

    def rollback(self, mark: tuple[int, ...]) -> None:
        for rows, n in zip(self._lists(), mark, strict=True):
            del rows[n:]

    def flush(self, conn: Connection, sql: Statements) -> None:
        """Skeletons before the person upserts and mother links that may name them.

        Each statement takes its rows sorted by key (stably: where a key repeats, the
        envelope order stays), so two consumers storing bundles that share persons lock
        rows in the same order instead of deadlocking. Upserts of one key are split into
        rounds, so no statement sees a key twice."""
        if self.identifiers:
            conn.execute(sql.insert_identifier, sorted(self.identifiers, key=_identifier_key))
        if self.skeletons:
            conn.execute(sql.insert_skeleton, sorted(self.skeletons, key=itemgetter("person_key")))
        for rows in _rounds(self.persons, "person_key"):
            conn.execute(sql.upsert_person, rows)
        if self.mothers:
            conn.execute(sql.set_mother, sorted(self.mothers, key=itemgetter("b_key")))
        for rows in _rounds(self.records, "record_id"):
            conn.execute(sql.upsert_record, rows)
        for rows in self._lists():
            rows.clear()

    def _lists(self) -> tuple[list[Any], ...]:
        return (self.identifiers, self.skeletons, self.persons, self.mothers, self.records)


def _identifier_key(row: Mapping[str, Any]) -> tuple[str, str, str]:
    return row["kind"], row["system"], row["value"]


def _rounds(rows: list[dict[str, Any]], key: str) -> list[list[dict[str, Any]]]:
    """The rows cut so that a key's second occurrence goes to the next round, each round
    sorted by key. Rounds run in order, so every key still sees its rows in envelope
    order; usually there is one round."""
    seen: dict[Any, int] = {}
    rounds: list[list[dict[str, Any]]] = []
    for row in rows:
        n = seen.get(row[key], 0)
        seen[row[key]] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(row)
    for batch in rounds:
        batch.sort(key=itemgetter(key))
    return rounds


class _Planner:
    """Decides one envelope at a time against `_Known`, appending its rows to `_Writes`."""

    def __init__(self, known: _Known, writes: _Writes) -> None:
        self.known = known
        self.writes = writes
        self.stored_at = now_utc()
        self.added: list[Identifier] = []  # identifiers this envelope taught `known`

    def plan(self, env: dict[str, Any]) -> None:
        """Mirrors the one-envelope path; raises `_NeedsOneByOne` before deciding anything
        it cannot (the caller then forgets this envelope's rows)."""
        self.added.clear()
        record = env["record"]
        kind = env["record_type"]
        if kind == "PersonMerge":
            raise _NeedsOneByOne
        if kind == "Person":
            ref = record.get("person") or record
            key = self._resolve(ref) or f"record:{env['record_id']}"
            self.writes.persons.append(person_values(key, ref, env, self.stored_at))
            if record.get("mother"):
                self._link_mother(key, record["mother"])
            return
        person_key = self._resolve(record.get("person"))
        if record.get("mother") and person_key:
            self._link_mother(person_key, record["mother"])
        self.writes.records.append(
            {
                "record_id": env["record_id"],
                "record_type": kind,
                "person_key": person_key,
                **common_values(env, self.stored_at),
            }
        )

    def forget(self) -> None:
        """Undo what the last `plan` taught `known` (its rows are rolled back by the caller)."""
        for ident in self.added:
            del self.known.owner[ident]
        self.added.clear()

    def _link_mother(self, child: str, mother_ref: dict[str, Any]) -> None:
        mother = self._resolve(mother_ref)
        if mother and mother != child:
            self.writes.mothers.append({"b_key": child, "b_mother": mother})

    def _resolve(self, ref: dict[str, Any] | None) -> str | None:
        ids = identifiers_of(ref)
        if not ids:
            return None
        owner = self.known.owner
        found: list[str] = []
        for ident in ids:
            key = owner.get(ident)
            if key:
                key = self.known.follow(key)
                if key not in found:
                    found.append(key)
        if len(found) > 1:
            raise _NeedsOneByOne  # two known persons to merge: moves rows the bundle cannot see
        if found:
            survivor = found[0]
        else:
            survivor = person_key_for(ids)
            self.writes.skeletons.append(skeleton_values(survivor, ref or {}, self.stored_at))
        for ident in ids:
            if ident not in owner:
                owner[ident] = survivor
                self.added.append(ident)
                kind, system, value = ident
                self.writes.identifiers.append(
                    {"kind": kind, "system": system, "value": value, "person_key": survivor}
                )
        return survivor


def store_bundle(conn: Connection, envelopes: Sequence[dict[str, Any]]) -> None:
    """Store `envelopes` within the caller's transaction, as `store_envelope` would one by one."""
    sql = statements_for(conn)
    writes = _Writes()
    start = 0
    while start < len(envelopes):
        planner = _Planner(_Known(conn, sql, _references(envelopes[start:])), writes)
        for i in range(start, len(envelopes)):
            mark = writes.mark()
            try:
                planner.plan(envelopes[i])
            except _NeedsOneByOne:
                planner.forget()
                writes.rollback(mark)
                writes.flush(conn, sql)
                store_envelope(conn, envelopes[i])
                start = i + 1
                break
        else:
            start = len(envelopes)
    writes.flush(conn, sql)


def _references(envelopes: Sequence[dict[str, Any]]) -> list[list[Identifier]]:
    """The identifiers of every person reference in these envelopes, one list per reference."""
    out: list[list[Identifier]] = []
    for env in envelopes:
        record = env["record"]
        refs: list[Any] = [record.get("person") or record, record.get("mother"), record.get("survivor")]
        refs.extend(record.get("retired") or [])
        out.extend(ids for ref in refs if isinstance(ref, dict) and (ids := identifiers_of(ref)))
    return out
