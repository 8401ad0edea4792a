"""A bundle stored in one call ends exactly as its envelopes stored one by one, in order.

Every test stores the same envelopes twice, on SQLite and on PostgreSQL: into one database
through `RecordStore.store` in bundles, into another through the one-envelope path, one
transaction each, and compares every row (all columns but the wall-clock `stored_at`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, text

from channels.record_store.envelope import store_envelope
from channels.record_store.queries import resolve_person
from channels.record_store.schema import person_identifiers, persons, records
from channels.record_store.store import RecordStore, ensure_schema
from core.database import make_engine
from core.errors import PermanentDeliveryError, TransientDeliveryError
from support import pg_schema

Envelope = dict[str, Any]
MOTHER = {"id_card": "500112199403151525", "his_id": "0010023456", "his_system": "HIS", "name": "陈思雨"}
BABY = {"his_id": "0010031207", "his_system": "HIS", "name": "陈思雨之女"}


class Pair:
    """Two empty stores of one backend: `bundled` takes bundles, `reference` one envelope a time."""

    def __init__(self, bundled: Engine, reference: Engine) -> None:
        self.bundled = bundled
        self.reference = reference
        for engine in (bundled, reference):
            ensure_schema(engine)

    def store(self, *bundles: Sequence[Envelope]) -> Engine:
        """Store the bundles both ways, check both stores agree, return the bundled one."""
        store = RecordStore(self.bundled)
        for bundle in bundles:
            store.store(bundle)
            for env in bundle:
                with self.reference.begin() as conn:
                    store_envelope(conn, env)
        assert dump(self.bundled) == dump(self.reference)
        return self.bundled

    def clear(self) -> None:
        for engine in (self.bundled, self.reference):
            with engine.begin() as conn:
                for table in (records, person_identifiers, persons):
                    conn.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            urls = [f"sqlite:///{tmp_path}/bundled.db", f"sqlite:///{tmp_path}/reference.db"]
        else:
            urls = [stack.enter_context(pg_schema()), stack.enter_context(pg_schema())]
        engines = [make_engine(url) for url in urls]
        for engine in engines:
            stack.callback(engine.dispose)
        yield Pair(*engines)


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the store, in a stable order, without `stored_at`."""
    out = {}
    with engine.connect() as conn:
        for table in (persons, person_identifiers, records):
            columns = [c for c in table.c if c.name != "stored_at"]
            rows = conn.execute(select(*columns)).all()
            out[table.name] = sorted(
                (
                    tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for v in row)
                    for row in rows
                ),
                key=repr,
            )
    return out


def env(
    kind: str,
    record_id: str,
    record: dict[str, Any],
    *,
    at: str | None = "2024-03-21T11:00:00+08:00",
    jid: int = 1,
) -> Envelope:
    return {
        "journal_id": jid,
        "channel": "hospital",
        "control_id": f"C{jid}",
        "record_type": kind,
        "record_id": record_id,
        "event_time": at,
        "record": {"record_id": record_id, **record},
    }


def q(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def his(value: str, system: str = "HIS") -> dict[str, str]:
    return {"his_id": value, "his_system": system}


class TestBundles:
    def test_two_records_of_one_new_person(self, pair: Pair) -> None:
        """Both records of a person first seen in this bundle link to one new person."""
        store = pair.store(
            [
                env("LabResult", "lab:1", {"person": his("H1")}),
                env("LabResult", "lab:2", {"person": {**his("H1"), "id_card": MOTHER["id_card"]}}, jid=2),
                env("ImagingReport", "us:1", {"person": {"id_card": MOTHER["id_card"]}}, jid=3),
            ]
        )
        assert q(store, "select count(*) from persons") == 1
        assert q(store, "select count(distinct person_key) from records") == 1
        assert q(store, "select count(*) from records where person_key = 'his:HIS:H1'") == 3

    def test_result_before_its_registration(self, pair: Pair) -> None:
        lab = env("LabResult", "lab:1", {"person": his("0010023456")}, jid=1)
        reg = env(
            "Person", "person:HIS:0010023456", {"person": MOTHER}, at="2024-03-21T08:32:00+08:00", jid=2
        )
        store = pair.store([lab, reg])
        key = resolve_person(store, MOTHER["id_card"])
        assert key == resolve_person(store, "0010023456") == "his:HIS:0010023456"
        assert q(store, "select name from persons where person_key = :k", k=key) == MOTHER["name"]
        assert q(store, "select count(*) from persons") == 1

    @pytest.mark.parametrize("order", ["older_first", "newer_first"])
    def test_same_record_twice_in_one_bundle(self, pair: Pair, order: str) -> None:
        older = env("LabResult", "lab:1", {"person": his("H1"), "v": "older"}, at="2024-07-10T11:42:00+08:00")
        newer = env(
            "LabResult", "lab:1", {"person": his("H1"), "v": "newer"}, at="2024-07-11T09:03:00+08:00", jid=2
        )
        bundle = [older, newer] if order == "older_first" else [newer, older]
        store = pair.store(bundle)
        assert q(store, "select source_control_id from records") == "C2"

    def test_same_event_time_later_journal_entry_wins_within_a_bundle(self, pair: Pair) -> None:
        at = "2024-07-10T11:42:00+08:00"
        first = env("Person", "p:1", {"person": {**his("H1"), "name": "王小红"}}, at=at, jid=5)
        second = env("Person", "p:1", {"person": {**his("H1"), "name": "王晓红"}}, at=at, jid=6)
        store = pair.store([first, second, first])
        assert q(store, "select name from persons") == "王晓红"

    def test_flagged_id_card_never_links(self, pair: Pair) -> None:
        bad = {"id_card": "500112199210052283", "id_card_valid": False}
        store = pair.store(
            [
                env("Person", "p:1", {"person": {**bad, **his("1"), "name": "甲"}}),
                env("Person", "p:2", {"person": {**bad, **his("2"), "name": "乙"}}, jid=2),
                env("LabResult", "lab:1", {"person": bad}, jid=3),
            ]
        )
        assert q(store, "select count(*) from persons") == 2
        assert q(store, "select person_key from records") is None

    def test_mother_links(self, pair: Pair) -> None:
        """The mother registered in the bundle, a newborn record and a newborn's own registration."""
        store = pair.store(
            [
                env("Person", "person:HIS:0010023456", {"person": MOTHER}),
                env("NewbornRecord", "nb:1", {"person": BABY, "mother": MOTHER}, jid=2),
                env("Person", "person:HIS:B2", {"person": his("B2"), "mother": his("M-new")}, jid=3),
            ]
        )
        mother = resolve_person(store, MOTHER["id_card"])
        child = resolve_person(store, BABY["his_id"])
        assert q(store, "select mother_key from persons where person_key = :k", k=child) == mother
        assert q(store, "select mother_key from persons where person_key = 'his:HIS:B2'") == "his:HIS:M-new"

    def test_person_merge_in_the_middle_of_a_bundle(self, pair: Pair) -> None:
        """Records filed under the retired id before and after the A40 end with the survivor."""
        merge = {"survivor": his("0010023333"), "retired": [his("0010025555")]}
        store = pair.store(
            [
                env(
                    "Person",
                    "person:HIS:0010023333",
                    {"person": {**his("0010023333"), "id_card": "50011219950220168X"}},
                )
            ],
            [
                env("LabResult", "lab:before", {"person": his("0010025555")}, jid=2),
                env("PersonMerge", "merge:1", merge, jid=3),
                env("LabResult", "lab:after", {"person": his("0010025555")}, jid=4),
            ],
        )
        survivor = resolve_person(store, "50011219950220168X")
        assert survivor == resolve_person(store, "0010025555")
        assert q(store, "select count(*) from records where person_key = :k", k=survivor) == 2

    def test_bundle_that_links_two_known_persons(self, pair: Pair) -> None:
        store = pair.store(
            [env("ImagingReport", "us:1", {"person": {"id_card": MOTHER["id_card"]}})],
            [env("LabResult", "lab:1", {"person": his("0010023456")}, jid=2)],
            [
                env("LabResult", "lab:2", {"person": his("0010023456")}, jid=3),
                env("Person", "person:HIS:0010023456", {"person": MOTHER}, jid=4),
                env("LabResult", "lab:3", {"person": his("0010023456")}, jid=5),
                env("NewbornRecord", "nb:1", {"person": BABY, "mother": his("0010023456")}, jid=6),
            ],
        )
        key = resolve_person(store, MOTHER["id_card"])
        assert resolve_person(store, "0010023456") == key
        assert q(store, "select count(distinct person_key) from records where record_id <> 'nb:1'") == 1
        assert q(store, "select count(*) from persons where merged_into is null") == 2  # mother and baby

    def test_bundle_larger_than_one_lookup(self, pair: Pair) -> None:
        """Hundreds of persons, each with two identifiers, some known before: read in several chunks."""
        known = [env("LabResult", f"old:{n}", {"person": his(f"H{n}")}, jid=n) for n in range(0, 400, 7)]
        bundle = [
            env("LabResult", f"lab:{n}", {"person": {**his(f"H{n}"), "id_card": f"C{n}"}}, jid=1000 + n)
            for n in range(400)
        ]
        store = pair.store(known, bundle)
        assert q(store, "select count(*) from persons") == 400
        assert q(store, "select count(*) from person_identifiers") == 800

    def test_replaying_a_bundle_changes_nothing(self, pair: Pair) -> None:
        bundle = [
            env("LabResult", "lab:1", {"person": his("H1")}),
            env("Person", "person:HIS:H1", {"person": {**his("H1"), "id_card": MOTHER["id_card"]}}, jid=2),
            env("PersonMerge", "merge:1", {"survivor": his("H1"), "retired": [his("H0")]}, jid=3),
            env("NewbornRecord", "nb:1", {"person": BABY, "mother": his("H0")}, jid=4),
        ]
        store = pair.store(bundle)
        before = dump(store)
        pair.store(bundle, list(reversed(bundle)))
        assert dump(store) == before


class TestFailures:
    """A bundle is one transaction: when it fails nothing of it stays, and the error keeps its kind."""

    def _refuse(self, engine: Engine, record_id: str, sqlstate: str) -> None:
        """Make storing `record_id` fail: SQLite aborts (a constraint error), PostgreSQL raises `sqlstate`."""
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.execute(
                    text(
                        "CREATE TRIGGER refuse BEFORE INSERT ON records FOR EACH ROW "
                        f"WHEN NEW.record_id = '{record_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                    )
                )
                return
            conn.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"RAISE EXCEPTION 'refused' USING ERRCODE = '{sqlstate}'; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON records FOR EACH ROW "
                    f"WHEN (NEW.record_id = '{record_id}') EXECUTE FUNCTION refuse()"
                )
            )

    def test_failed_bundle_leaves_nothing_and_is_transient(self, pair: Pair) -> None:
        self._refuse(pair.bundled, "lab:bad", "40001")
        good = env("Person", "person:HIS:H1", {"person": his("H1")})
        bundle = [good, env("LabResult", "lab:bad", {"person": his("H2")}, jid=2)]
        with pytest.raises(TransientDeliveryError):
            RecordStore(pair.bundled).store(bundle)
        assert dump(pair.bundled) == dump(pair.reference)  # both empty
        pair.store([good])

    def test_other_database_errors_are_permanent(self) -> None:
        """PostgreSQL only: a SQLite trigger can only abort, which is a constraint error."""
        with pg_schema() as url:
            engine = make_engine(url)
            try:
                ensure_schema(engine)
                self._refuse(engine, "lab:bad", "P0001")
                with pytest.raises(PermanentDeliveryError):
                    RecordStore(engine).store([env("LabResult", "lab:bad", {"person": his("H2")})])
            finally:
                engine.dispose()


# -- any bundles of any envelopes -------------------------------------------------------

_TIMES = [None, "2024-03-21T08:00:00+08:00", "2024-03-21T09:00:00+08:00", "2024-03-21T01:00:00+00:00"]


def _ref() -> st.SearchStrategy[dict[str, Any]]:
    """Person references over a few identifiers, so that people meet, link and collide."""
    return st.fixed_dictionaries(
        {},
        optional={
            "id_card": st.sampled_from(["C1", "C2", "C3"]),
            "id_card_valid": st.booleans(),
            "id_card_for_linking": st.sampled_from(["C1", "C4"]),
            "his_id": st.sampled_from(["H1", "H2", "H3", "H4"]),
            "his_system": st.sampled_from(["HIS", "LIS"]),
            "mch_handbook_no": st.sampled_from(["M1", "M2"]),
            "birth_certificate_no": st.sampled_from(["B1", "B2"]),
            "name": st.sampled_from(["甲", "乙"]),
        },
    )


@st.composite
def _envelope(draw: st.DrawFn) -> Envelope:
    kind = draw(st.sampled_from(["Person", "LabResult", "NewbornRecord", "PersonMerge"]))
    if kind == "PersonMerge":
        survivor = {**draw(_ref()), "his_id": draw(st.sampled_from(["H1", "H2", "H3", "H4"]))}
        record: dict[str, Any] = {"survivor": survivor, "retired": draw(st.lists(_ref(), max_size=2))}
    else:
        record = {"person": draw(st.none() | _ref())}
        if draw(st.booleans()):
            record["mother"] = draw(_ref())
    return env(
        kind,
        draw(st.sampled_from(["r1", "r2", "r3"])),
        record,
        at=draw(st.sampled_from(_TIMES)),
        jid=draw(st.integers(1, 4)),
    )


_BUNDLES = st.lists(st.lists(_envelope(), min_size=1, max_size=8), min_size=1, max_size=5)


@settings(
    max_examples=int(os.environ.get("MCH_STORE_BUNDLE_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bundles=_BUNDLES)
def test_any_bundles_end_as_one_by_one(pair: Pair, bundles: list[list[Envelope]]) -> None:
    """Whatever the envelopes and however they are bundled, both stores hold the same rows."""
    pair.clear()
    pair.store(*bundles)
