"""Unit tests for route matching on channel and MSH-9 (engine.router)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from core import settings
from engine.router import Route, Router
from transforms.mapping import Mapping

EMPTY_MAPPING = Mapping("test.yaml", ())


def route(
    name: str = "r",
    channels: Iterable[str] = ("hospital",),
    types: Iterable[str] | None = ("ADT^A04",),
    destinations: Iterable[str] = ("record_store",),
) -> Route:
    """A compiled route as routes.yaml would give it (`types=None`: no message_type key)."""
    spec: dict[str, Any] = {
        "name": name,
        "from": list(channels),
        "mapping": "test.yaml",
        "to": list(destinations),
    }
    if types is not None:
        spec["message_type"] = list(types)
    return Route(settings.Route.model_validate(spec), EMPTY_MAPPING)


class TestRouteMatches:
    @pytest.mark.parametrize("message_type", ["ADT^A04", "ADT^A04^ADT_A01", "adt^a04"])
    def test_type_and_event_match(self, message_type: str) -> None:
        """ADT^A04 matches MSH-9 ADT^A04 with or without the message structure, in any case."""
        assert route(types=["ADT^A04"]).matches("hospital", message_type)

    @pytest.mark.parametrize("message_type", ["ADT^A08^ADT_A01", "ORU^R01", "ADT", ""])
    def test_other_events_and_types_do_not_match(self, message_type: str) -> None:
        """ADT^A04 does not match another event, another type, or a type without an event."""
        assert not route(types=["ADT^A04"]).matches("hospital", message_type)

    @pytest.mark.parametrize("message_type", ["ADT^A01", "ADT^A40^ADT_A39", "ADT", "adt^a08"])
    def test_type_alone_matches_any_event(self, message_type: str) -> None:
        """ADT alone matches every ADT event."""
        assert route(types=["ADT"]).matches("hospital", message_type)

    def test_type_alone_does_not_match_other_types(self) -> None:
        """ADT alone does not match an ORU."""
        assert not route(types=["ADT"]).matches("hospital", "ORU^R01")

    @pytest.mark.parametrize("types", [["*"], None, ["*", "ORU^R01"]])
    @pytest.mark.parametrize("message_type", ["ADT^A04", "ORU^R01^ORU_R01", "ZXX^Z01", ""])
    def test_star_or_absent_matches_everything(self, types: list[str] | None, message_type: str) -> None:
        """A route with * (or no message_type at all) takes every message of its channels."""
        assert route(types=types).matches("hospital", message_type)

    def test_other_channel_does_not_match(self) -> None:
        """A message from a channel the route does not list never matches, even with *."""
        assert not route(channels=["hospital"], types=["ADT^A04"]).matches("lis", "ADT^A04")
        assert not route(channels=["hospital"], types=["*"]).matches("lis", "ADT^A04")

    def test_one_of_several_channels_and_types(self) -> None:
        """A route with several channels and types matches any combination of them."""
        r = route(channels=["hospital", "lis_gbk"], types=["ADT^A01", "ADT^A04", "ADT^A08"])
        assert r.matches("lis_gbk", "ADT^A08^ADT_A01")
        assert r.matches("hospital", "ADT^A01")
        assert not r.matches("hospital", "ADT^A40")

    def test_other_component_separator_in_msh9(self) -> None:
        """MSH-9 written with the sender's own component separator still matches TYPE^EVENT."""
        assert route(types=["ADT^A04"]).matches("hospital", "ADT!A04!ADT_A01")
        assert route(types=["ADT"]).matches("hospital", "ADT!A04!ADT_A01")


class TestRouter:
    def test_match_returns_matching_routes_in_order(self) -> None:
        """Router.match gives every matching route, in configuration order."""
        persons = route("persons", types=["ADT^A01", "ADT^A04", "ADT^A08"])
        everything = route("archive", channels=["hospital", "lis"], types=["*"])
        labs = route("labs", channels=["lis"], types=["ORU^R01"])
        router = Router([persons, everything, labs])
        assert tuple(router.match("hospital", "ADT^A04^ADT_A01")) == (persons, everything)
        assert tuple(router.match("lis", "ORU^R01")) == (everything, labs)
        assert tuple(router.match("lis", "ADT^A04")) == (everything,)

    def test_no_route_gives_empty_sequence(self) -> None:
        """A message no route takes gives an empty result (the message is unrouted)."""
        router = Router([route(types=["ORU^R01"])])
        assert list(router.match("hospital", "ADT^A04")) == []
        assert list(router.match("unknown", "ORU^R01")) == []

    def test_repeated_lookups_agree(self) -> None:
        """Asking twice for the same channel and type gives the same answer."""
        router = Router([route(types=["ADT"])])
        first = tuple(router.match("hospital", "ADT^A04"))
        assert len(first) == 1
        assert tuple(router.match("hospital", "ADT^A04")) == first
        assert list(router.match("hospital", "ORU^R01")) == []

    def test_router_without_routes(self) -> None:
        """A router with no routes matches nothing."""
        assert list(Router([]).match("hospital", "ADT^A04")) == []

    def test_route_carries_its_name_destinations_and_mapping(self) -> None:
        """A matched route tells its name, where to send and which mapping to apply."""
        r = route("persons", destinations=["record_store", "mq"])
        (found,) = Router([r]).match("hospital", "ADT^A04")
        assert found.name == "persons"
        assert tuple(found.destinations) == ("record_store", "mq")
        assert found.mapping is EMPTY_MAPPING
