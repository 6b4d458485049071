"""An agent's preferred endpoint (CC7): the user records it (domain.agents), routing rings
it instead of the agent's first endpoint (projections.routing), until it is cleared or
the endpoint is removed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from test_routing import ACME, World

from domain.agents import Agents, InvalidEndpoint, UnknownEndpoint, User
from domain.vocabulary import EndpointKind, Package
from projections.rebuild import compare
from projections.replay import catch_up
from projections.routing import Router

DESK = "sip:desk@pbx"


def desk_and_browser() -> User:
    user = User.create(
        "acme", "Trần Thị Bình", "binh@acme.vn", "agent", package=Package.CALL_CENTER
    )
    user.add_endpoint(EndpointKind.SIP_PHONE, DESK)
    user.add_endpoint(EndpointKind.WEBRTC)
    user.collect_events()
    return user


def names(user: User) -> list[str]:
    return [type(e).__name__ for e in user.collect_events()]


def test_an_agent_prefers_one_of_their_endpoints_and_clears_it() -> None:
    user = desk_and_browser()
    user.prefer_endpoint(EndpointKind.WEBRTC)
    assert names(user) == ["EndpointPreferred"]
    assert user.preferred_endpoint is not None
    assert user.preferred_endpoint.kind is EndpointKind.WEBRTC
    user.prefer_endpoint("webrtc", "")
    assert names(user) == []  # already so: no event
    # Clearing another endpoint's preference leaves this one (a stale request).
    user.clear_endpoint_preference(EndpointKind.SIP_PHONE, DESK)
    assert names(user) == [] and user.preferred_endpoint is not None
    user.clear_endpoint_preference(EndpointKind.WEBRTC)
    assert names(user) == ["EndpointPreferenceCleared"] and user.preferred_endpoint is None
    user.clear_endpoint_preference(EndpointKind.WEBRTC)
    assert names(user) == []


def test_only_an_endpoint_of_the_users_is_preferred() -> None:
    user = desk_and_browser()
    with pytest.raises(UnknownEndpoint):
        user.prefer_endpoint(EndpointKind.SIP_PHONE, "sip:someone-else@pbx")
    with pytest.raises(InvalidEndpoint):
        user.prefer_endpoint(EndpointKind.WEBRTC, "an address")
    assert names(user) == []


def test_removing_the_preferred_endpoint_ends_the_preference() -> None:
    user = desk_and_browser()
    user.prefer_endpoint(EndpointKind.WEBRTC)
    user.remove_endpoint(EndpointKind.WEBRTC)
    assert user.preferred_endpoint is None
    assert names(user) == ["EndpointPreferred", "EndpointRemoved"]


def test_the_preference_is_shown_and_survives_a_reload(transcoder_env: dict[str, str]) -> None:
    agents = Agents(env=transcoder_env)
    uid = agents.create_user("acme", "Bình", "binh@acme.vn", "agent", package=Package.CALL_CENTER)
    agents.add_endpoint("acme", uid, EndpointKind.SIP_PHONE, DESK)
    agents.add_endpoint("acme", uid, EndpointKind.WEBRTC)
    assert agents.get("acme", uid)["preferred_endpoint"] is None
    agents.prefer_endpoint("acme", uid, EndpointKind.WEBRTC)
    # `get` loads the user from its events: the preference is in the log.
    assert agents.get("acme", uid)["preferred_endpoint"] == {"kind": "webrtc", "address": ""}
    agents.clear_endpoint_preference("acme", uid, EndpointKind.WEBRTC)
    assert agents.get("acme", uid)["preferred_endpoint"] is None


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "routing.sqlite")
    yield w
    w.apps.close()


def ring_of(world: World, queue: UUID) -> tuple[str, str]:
    call = world.call(ACME, queue)
    world.act()
    ring = world.rings(call)[-1]
    world.answer(ACME, call)
    world.act()
    world.end(ACME, call)
    world.act()  # to wrap-up
    world.act(30)  # wrap-up over: available again
    assert world.presence(ACME, ring.agent_id) == "available"
    return ring.endpoint_kind, ring.endpoint_address


def test_routing_rings_the_preferred_endpoint_until_it_is_cleared(world: World) -> None:
    agent = world.agent(ACME, "Desk")  # sip:desk@pbx first
    world.apps.agents.add_endpoint(ACME, agent, EndpointKind.WEBRTC)
    queue = world.queue(ACME)
    assert ring_of(world, queue) == ("sip_phone", DESK)
    world.apps.agents.prefer_endpoint(ACME, agent, EndpointKind.WEBRTC)
    assert ring_of(world, queue) == ("webrtc", f"webrtc:{agent}")
    assert ring_of(world, queue) == ("webrtc", f"webrtc:{agent}")
    world.apps.agents.clear_endpoint_preference(ACME, agent, EndpointKind.WEBRTC)
    assert ring_of(world, queue) == ("sip_phone", DESK)
    # A preferred endpoint that is removed is rung no more.
    world.apps.agents.prefer_endpoint(ACME, agent, EndpointKind.WEBRTC)
    world.apps.agents.go_offline(ACME, agent)
    world.apps.agents.remove_endpoint(ACME, agent, EndpointKind.WEBRTC)
    world.apps.agents.go_available(ACME, agent)
    assert ring_of(world, queue) == ("sip_phone", DESK)


def test_a_rebuild_keeps_the_preferences(world: World, tmp_path: Path) -> None:
    kept, dropped = world.agent(ACME, "Kept"), world.agent(ACME, "Dropped")
    for agent in (kept, dropped):
        world.apps.agents.add_endpoint(ACME, agent, EndpointKind.WEBRTC)
        world.apps.agents.prefer_endpoint(ACME, agent, EndpointKind.WEBRTC)
    world.apps.agents.clear_endpoint_preference(ACME, dropped, EndpointKind.WEBRTC)
    world.act()
    rows = world.router.connect().execute("SELECT agent_id FROM agent_preferred_endpoints")
    assert [r[0] for r in rows] == [str(kept)]

    class Reversed(Router):
        upstreams = tuple(reversed(Router.upstreams))

    again = Reversed(tmp_path / "reversed.sqlite")
    catch_up(again, world.apps)
    assert compare(world.router.connect(), again.connect()) == []
