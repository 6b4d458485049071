"""An offer the agent rejects (the inbox's "Decline"): recorded on the work's routing
history as its own fact (WorkRouting.OfferRejected, not OfferExpired), and counted like a
ring that timed out — the router offers the work to the agents who rejected it (or let
it ring out) last. They are not excluded: if nobody else can take it, it is offered to
them again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from test_routing import ACME, GLOBEX, World, offered

from domain.routing import InvalidRouting, WorkKind, WorkRouting
from domain.vocabulary import Channel, Presence, RoutingPolicy
from projections.rebuild import compare
from projections.replay import catch_up
from projections.routing import Router

CONVERSATION = WorkKind.CONVERSATION


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "routing.sqlite")
    yield w
    w.apps.close()


def skill_queue(world: World) -> UUID:
    # Skill routing always names the best agent first (round robin would move on by
    # itself): without the rejection counting, the decliner would be offered it again.
    return world.queue(ACME, policy=RoutingPolicy.SKILL, required_skills={"vi": 1})


def conversation(world: World, queue: UUID) -> UUID:
    customer = world.apps.customers.register(ACME, "Khách")
    return world.apps.conversations.start(ACME, Channel.CHAT, customer, queue_id=queue)


def offer_settles(world: World) -> list[Any]:
    """Act once more after an offer: the router lets go of its in-flight claim on the
    offer once it sees the agent ringing (Router._forget_settled), which happens at its
    next act. (A decline before any such act finds the work still claimed, and it is
    planned again only after INFLIGHT_SECONDS, at an act something else triggers.)"""
    return world.act()


def reject(world: World, agent: UUID, work: UUID) -> bool:
    """What the inbox's decline route does, on one worker call."""
    at = world.now
    world.apps.agents.decline_offer(ACME, agent, work, "rejected")
    return world.apps.routing.rejected(ACME, CONVERSATION, str(work), agent, at)


def assert_rebuilds(world: World, tmp_path: Path) -> None:
    """The same tables from the events, in the streams' order and in reverse."""

    class Reversed(Router):
        upstreams = tuple(reversed(Router.upstreams))

    for rebuilt in (Router(tmp_path / "again.sqlite"), Reversed(tmp_path / "reversed.sqlite")):
        catch_up(rebuilt, world.apps)
        assert compare(world.router.connect(), rebuilt.connect()) == []


def decisions(world: World, work: UUID) -> list[tuple[str, Any]]:
    history = world.apps.routing.history(ACME, CONVERSATION, str(work))
    return [(h["decision"], h.get("agent_id")) for h in history]


def test_a_rejected_offer_goes_to_the_other_agent_and_the_history_says_rejected(
    world: World, tmp_path: Path
) -> None:
    a = world.agent(ACME, "An", skills={"vi": 5})
    b = world.agent(ACME, "Binh", skills={"vi": 2})
    work = conversation(world, skill_queue(world))
    assert offered(world.act()) == [(str(work), str(a))]
    offer_settles(world)

    assert reject(world, a, work) is True
    assert world.presence(ACME, a) == Presence.AVAILABLE
    # A is available and the best skilled, but rejected it: B is offered it, not A.
    assert offered(world.act()) == [(str(work), str(b))]
    assert world.presence(ACME, a) == Presence.AVAILABLE
    assert world.presence(ACME, b) == Presence.RINGING
    assert decisions(world, work) == [
        ("Offered", str(a)),
        ("OfferRejected", str(a)),  # declined: not "OfferExpired", they did not time out
        ("Offered", str(b)),
    ]
    routing = world.router.connect().execute("SELECT * FROM routings").fetchone()
    assert (routing["ringing"], routing["expired"]) == (str(b), f'["{a}"]')
    offer_settles(world)

    # B rejects it too: both were tried, so the route's own order holds again — A is
    # offered it once more (tried agents go last; they are not excluded).
    assert reject(world, b, work) is True
    assert offered(world.act()) == [(str(work), str(a))]
    assert [d for d, _ in decisions(world, work)][-2:] == ["OfferRejected", "Offered"]
    offer_settles(world)

    assert_rebuilds(world, tmp_path)


def test_the_only_agent_is_offered_it_again_after_rejecting_it(world: World) -> None:
    a = world.agent(ACME, "An", skills={"vi": 5})
    work = conversation(world, skill_queue(world))
    world.act()
    offer_settles(world)
    assert reject(world, a, work) is True
    # Nobody else could take it: the decliner is offered it again, a new attempt.
    assert offered(world.act()) == [(str(work), str(a))]
    assert world.presence(ACME, a) == Presence.RINGING
    history = world.apps.routing.history(ACME, CONVERSATION, str(work))
    assert [(h["decision"], h.get("attempt")) for h in history] == [
        ("Offered", 1),
        ("OfferRejected", None),
        ("Offered", 2),
    ]


def test_a_decline_the_router_sees_before_its_rejection_still_counts(
    world: World, tmp_path: Path
) -> None:
    """The agent's stream and the routing stream reach the router separately: it may see
    the agent available again before the rejection arrives. The offer still ringing on
    the routing history is theirs, so they go last all the same."""
    a = world.agent(ACME, "An", skills={"vi": 5})
    b = world.agent(ACME, "Binh", skills={"vi": 2})
    work = conversation(world, skill_queue(world))
    world.act()
    offer_settles(world)
    at = world.now
    world.apps.agents.decline_offer(ACME, a, work, "rejected")
    assert offered(world.act()) == [(str(work), str(b))]  # before the rejection: B
    # The rejection arrives after B's offer: still recorded (A did decline), and B's
    # offer is untouched — B still rings, on the aggregate and in the tables.
    assert world.apps.routing.rejected(ACME, CONVERSATION, str(work), a, at) is True
    world.act()
    assert decisions(world, work) == [
        ("Offered", str(a)),
        ("Offered", str(b)),
        ("OfferRejected", str(a)),
    ]
    assert world.presence(ACME, b) == Presence.RINGING
    routing = world.router.connect().execute("SELECT * FROM routings").fetchone()
    assert (routing["ringing"], routing["expired"]) == (str(b), f'["{a}"]')
    # B lets it ring out: A, tried, is offered it again (nobody else is left).
    world.act(20)
    assert offered(world.act()) == [(str(work), str(a))]
    assert decisions(world, work)[-2:] == [("OfferExpired", str(b)), ("Offered", str(a))]
    assert_rebuilds(world, tmp_path)


def test_a_late_rejection_never_ends_the_next_offer_to_the_same_agent(world: World) -> None:
    a = world.agent(ACME, "An", skills={"vi": 5})
    queue = skill_queue(world)
    world.apps.queues.set_waiting_rules(ACME, queue, ring_timeout_seconds=15, max_wait_seconds=300)
    work = conversation(world, queue)
    world.act()
    offer_settles(world)
    at = world.now
    world.apps.agents.decline_offer(ACME, a, work, "rejected")
    assert offered(world.act(1)) == [(str(work), str(a))]  # offered again, attempt 2
    # The rejection is of the first offer (before the second was made): not recorded.
    assert world.apps.routing.rejected(ACME, CONVERSATION, str(work), a, at) is False
    assert world.presence(ACME, a) == Presence.RINGING
    # The second offer is still there to time out, and its expiry is recorded.
    world.act(15)
    assert decisions(world, work)[-1] == ("OfferExpired", str(a))


def test_a_rejection_needs_the_offer_to_that_agent(world: World) -> None:
    a = world.agent(ACME, "An")
    b = world.agent(ACME, "Binh")
    routing = world.apps.routing
    # No routing history for this work (nor one of this tenant's): nothing recorded.
    assert routing.rejected(ACME, CONVERSATION, str(uuid4()), a, world.now) is False
    work = conversation(world, world.queue(ACME))
    (decided,) = offered(world.act())
    ringing = UUID(decided[1])
    other = b if ringing == a else a
    assert routing.rejected(GLOBEX, CONVERSATION, str(work), ringing, world.now) is False
    assert routing.rejected(ACME, CONVERSATION, str(work), other, world.now) is False
    assert routing.rejected(ACME, CONVERSATION, str(work), ringing, world.now) is True
    assert routing.rejected(ACME, CONVERSATION, str(work), ringing, world.now) is False  # once
    assert [d for d, _ in decisions(world, work)] == ["Offered", "OfferRejected"]


def test_work_routing_reject_domain_rules() -> None:
    queue, agent, at = uuid4(), uuid4(), datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    routing = WorkRouting.begin(ACME, CONVERSATION, "w-1")
    assert routing.reject(agent, at) is False  # never offered
    routing.offer(queue, agent, RoutingPolicy.SKILL, 20, at)
    with pytest.raises(InvalidRouting):
        routing.reject(agent, at.replace(tzinfo=None))
    assert routing.reject(uuid4(), at) is False  # not offered it
    assert routing.reject(agent, at - timedelta(seconds=1)) is False  # an earlier offer's
    assert routing.reject(agent, at + timedelta(seconds=3)) is True
    assert routing.ringing is None
    assert routing.reject(agent, at + timedelta(seconds=3)) is False  # once per offer
    # The next offer may go to them again; its rejection may come after yet another
    # offer (to someone else, the router saw the decline first), which still rings.
    later = at + timedelta(seconds=4)
    assert routing.offer(queue, agent, RoutingPolicy.SKILL, 20, later) == 2
    other = uuid4()
    routing.settle(agent)
    assert routing.offer(queue, other, RoutingPolicy.SKILL, 20, later) == 3
    assert routing.reject(agent, later) is True
    assert routing.ringing == other
    events = routing.collect_events()
    rejected = [e for e in events if isinstance(e, WorkRouting.OfferRejected)]
    assert [(e.agent_id, e.at) for e in rejected] == [
        (agent, at + timedelta(seconds=3)),
        (agent, later),
    ]
    assert not any(isinstance(e, WorkRouting.OfferExpired) for e in events)


def test_a_decline_before_the_router_saw_its_offer_is_offered_again_once_the_claim_lapses(
    world: World,
) -> None:
    a = world.agent(ACME, "An", skills={"vi": 5})
    b = world.agent(ACME, "Binh", skills={"vi": 2})
    work = conversation(world, skill_queue(world))
    assert offered(world.act()) == [(str(work), str(a))]
    # Declined before the router's next act: its claim on the offer still holds the work.
    assert reject(world, a, work) is True
    assert offered(world.act()) == []
    # Nothing else happens in this tenant: the router must still wake to let it go.
    due = world.router.next_due()
    assert due is not None and 0 < (due - world.now).total_seconds() <= 10
    assert offered(world.act((due - world.now).total_seconds() + 0.1)) == [(str(work), str(b))]
