"""Whom a destination reaches decides which records it is handed (core/audience.py): every
record type with a fixed audience is withheld from a `patient` destination, whatever `to:` says."""

from __future__ import annotations

import pytest

from core.audience import PATIENT, REACHES, STAFF, SYSTEM, audience_of, may_receive
from core.settings import Route as RouteSpec
from engine.router import Route
from transforms.mapping.compiler import Mapping
from transforms.records import RECORD_TYPES, fixed_audience

FIXED = {name: fixed_audience(name) for name in RECORD_TYPES if fixed_audience(name)}


def route_to(reaches: dict[str, str]) -> Route:
    spec = RouteSpec(name="r", from_=["hospital"], mapping="m.yaml", to=list(reaches))
    return Route.build(spec, Mapping("m.yaml", ()), reaches)


def test_the_pmtct_case_is_a_type_with_a_fixed_audience() -> None:
    assert FIXED == {"PmtctCase": "pmtct_officer"}


@pytest.mark.parametrize("record_type", sorted(FIXED))
def test_a_type_with_a_fixed_audience_is_refused_to_a_patient_destination(record_type: str) -> None:
    """Each destination kind once: the patient's is withheld, as is staff (not its audience);
    a system destination and the exact audience receive it."""
    audience = FIXED[record_type]
    default = RECORD_TYPES[record_type].model_fields["audience"].default
    assert audience_of({"record_type": record_type, "audience": default}) == audience
    route = route_to({"store": SYSTEM, "officer": audience, "ward": STAFF, "family": PATIENT})
    allowed, withheld = route.destinations_for(audience)
    assert allowed == ["store", "officer"]
    assert withheld == ["ward", "family"]
    assert not may_receive(PATIENT, audience)


@pytest.mark.parametrize("reaches", REACHES)
def test_a_record_without_an_audience_goes_everywhere(reaches: str) -> None:
    assert route_to({"d": reaches}).destinations_for(None) == (["d"], [])


def test_no_audience_may_reach_a_patient_destination() -> None:
    assert [a for a in REACHES if may_receive(PATIENT, a)] == []
