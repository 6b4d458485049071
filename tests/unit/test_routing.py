"""The routing process manager (projections.routing) against the real domain, in memory.

Each test runs the manager the way the runner does: catch up on every stream, act, catch
up on the decisions' own events; the switch's part (ringing, answering, hanging up) is
played by calling the call verbs, as the telephony bridge's facts would.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain.apps import DomainApps
from domain.calendars import BusinessCalendar, OpeningHours, Weekday
from domain.call_legs import LegSpec
from domain.queues import Fallback
from domain.routing import WorkKind
from domain.vocabulary import Channel, EndpointKind, Package, Presence, RoutingPolicy
from projections.process import ActContext
from projections.rebuild import compare
from projections.replay import catch_up
from projections.routing import Router
from telephony_bridge import commands

ACME, GLOBEX = "acme", "globex"


class World:
    """The domain in memory, a router on a file, the switch commands it published."""

    def __init__(self, path: Path, wrap_up_seconds: float = 10.0) -> None:
        self.apps = DomainApps.build()
        self.path = path
        self.router = Router(path, wrap_up_seconds=wrap_up_seconds)
        self.sent: list[commands.AnyCommand] = []
        # The domain stamps its events with the wall clock (an agent's presence "since"
        # comes from there), so the test clock runs on it, moved ahead by `offset`.
        self.offset = timedelta(0)
        self.calls = 0

    @property
    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set_time(self, at: datetime) -> None:
        self.offset = at - datetime.now(UTC)

    def publish(self, subject: str, payload: bytes) -> None:
        command = commands.decode(payload)
        assert subject == commands.subject(command.tenant_id, command)
        self.sent.append(command)

    def act(self, seconds: float = 0.0) -> list[Any]:
        self.offset += timedelta(seconds=seconds)
        catch_up(self.router, self.apps)
        decided = self.router.act(ActContext(self.apps, self.now, self.publish))
        decided += self.router.drain()  # act does not wait for the commands it starts
        catch_up(self.router, self.apps)
        return decided

    def restart(self) -> None:
        self.router = Router(self.path, wrap_up_seconds=self.router.wrap_up_seconds)

    # --- set-up
    def agent(
        self,
        tenant: str,
        name: str,
        *,
        skills: dict[str, int] | None = None,
        department: str | None = None,
        group: str | None = None,
        available: bool = True,
    ) -> UUID:
        agents = self.apps.agents
        aid = agents.create_user(
            tenant, name, name.lower(), "agent", package=Package.CONTACT_CENTER
        )
        agents.add_endpoint(tenant, aid, EndpointKind.SIP_PHONE, f"sip:{name.lower()}@pbx")
        for skill, level in (skills or {}).items():
            agents.set_skill(tenant, aid, skill, level)
        if department:
            agents.join_department(tenant, aid, department)
        if group:
            agents.join_pickup_group(tenant, aid, group)
        if available:
            agents.go_available(tenant, aid)
        return aid

    def queue(self, tenant: str, name: str = "Support", **routing: Any) -> UUID:
        return self.apps.queues.create(tenant, name, [Channel.CALL, Channel.CHAT], **routing)

    def call(self, tenant: str, queue: UUID, number: str = "0901234567") -> UUID:
        self.calls += 1
        ref = f"call-{self.calls}"
        call_id = self.apps.calls.start_inbound(
            tenant, ref, "19001234", LegSpec.customer(f"{ref}-in", number), self.now
        )
        self.apps.calls.offer_to_queue(tenant, call_id, queue, self.now)
        return call_id

    # --- the switch
    def rings(self, call_id: UUID) -> list[commands.RingAgent]:
        return [c for c in self.sent if isinstance(c, commands.RingAgent) and c.call_id == call_id]

    def ringing_agent(self, call_id: UUID) -> UUID:
        return self.rings(call_id)[-1].agent_id

    def answer(self, tenant: str, call_id: UUID) -> UUID:
        ring = self.rings(call_id)[-1]
        leg = f"{ring.call_ref}-{ring.agent_id}"
        self.apps.calls.ring_agent(
            tenant,
            call_id,
            LegSpec.agent(
                leg, ring.agent_id, EndpointKind(ring.endpoint_kind), ring.endpoint_address
            ),
            self.now,
        )
        self.apps.calls.answer(tenant, call_id, leg, self.now)
        return ring.agent_id

    def end(self, tenant: str, call_id: UUID) -> None:
        self.apps.calls.end(tenant, call_id, "normal_clearing", self.now)

    def presence(self, tenant: str, agent: UUID) -> str:
        return str(self.apps.agents.get(tenant, agent)["presence"])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "routing.sqlite")
    yield w
    w.apps.close()


def offered(decisions: list[Any]) -> list[tuple[str, str]]:
    return [(d[2], d[3]) for d in decisions if d[0] == "offered"]


def test_skill_routing_offers_the_best_skilled_available_agent(world: World) -> None:
    low = world.agent(ACME, "Lan", skills={"vi": 2, "billing": 2})
    best = world.agent(ACME, "Minh", skills={"vi": 5, "billing": 4})
    unskilled = world.agent(ACME, "Hoa", skills={"en": 5})
    on_break = world.agent(ACME, "Tuan", skills={"vi": 5, "billing": 5})
    world.apps.agents.take_break(ACME, on_break, "lunch")
    queue = world.queue(ACME, policy=RoutingPolicy.SKILL, required_skills={"vi": 2, "billing": 1})

    first = world.call(ACME, queue)
    assert offered(world.act()) == [(str(first), str(best))]
    assert world.presence(ACME, best) == Presence.RINGING
    ring = world.rings(first)[0]
    assert (ring.endpoint_kind, ring.endpoint_address) == ("sip_phone", "sip:minh@pbx")

    # The best one is busy ringing: the next call goes to the next best, never to
    # the unskilled agent nor to the one on a break.
    second = world.call(ACME, queue)
    assert offered(world.act()) == [(str(second), str(low))]
    third = world.call(ACME, queue)
    assert offered(world.act()) == []
    # Ringing calls wait until answered; the third waits for someone to be free.
    assert [w["id"] for w in world.router.waiting(ACME)] == [str(first), str(second), str(third)]
    assert world.rings(third) == []
    assert world.presence(ACME, unskilled) == Presence.AVAILABLE
    assert world.presence(ACME, on_break) == Presence.BREAK


def test_a_browser_agent_is_rung_by_name(world: World) -> None:
    agent = world.agent(ACME, "Web", available=False)
    world.apps.agents.remove_endpoint(ACME, agent, EndpointKind.SIP_PHONE, "sip:web@pbx")
    world.apps.agents.add_endpoint(ACME, agent, EndpointKind.WEBRTC)
    world.apps.agents.go_available(ACME, agent)
    call = world.call(ACME, world.queue(ACME))
    world.act()
    ring = world.rings(call)[0]
    assert (ring.endpoint_kind, ring.endpoint_address) == ("webrtc", f"webrtc:{agent}")
    assert world.answer(ACME, call) == agent  # the leg takes that name


def test_round_robin_rotates_and_ignores_unavailable_agents(world: World) -> None:
    agents = sorted((world.agent(ACME, n) for n in ("An", "Binh", "Chi")), key=str)
    queue = world.queue(ACME, policy=RoutingPolicy.ROUND_ROBIN)
    chosen = []
    for _ in range(4):
        call = world.call(ACME, queue)
        world.act()
        agent = world.answer(ACME, call)
        world.act()
        assert world.presence(ACME, agent) == Presence.ON_CALL
        world.end(ACME, call)
        world.act()
        assert world.presence(ACME, agent) == Presence.WRAP_UP
        world.act(10)
        assert world.presence(ACME, agent) == Presence.AVAILABLE
        chosen.append(agent)
    assert chosen == [agents[0], agents[1], agents[2], agents[0]]

    world.apps.agents.go_offline(ACME, agents[1])
    calls = [world.call(ACME, queue) for _ in range(2)]
    world.act()
    assert {world.ringing_agent(c) for c in calls} == {agents[0], agents[2]}


def test_department_routing_offers_only_the_department(world: World) -> None:
    world.agent(ACME, "Sales1", department="sales")
    billing = world.agent(ACME, "Bill", department="billing")
    queue = world.queue(ACME, policy=RoutingPolicy.DEPARTMENT, department="billing")
    first, second = world.call(ACME, queue), world.call(ACME, queue)
    assert offered(world.act()) == [(str(first), str(billing))]
    assert world.rings(second) == []


def test_sticky_routing_prefers_the_agent_who_last_talked_with_the_caller(world: World) -> None:
    a, b = sorted((world.agent(ACME, "Khoa"), world.agent(ACME, "Linh")), key=str)
    rr = world.queue(ACME, "General", policy=RoutingPolicy.ROUND_ROBIN)
    sticky = world.queue(
        ACME, "VIP", policy=RoutingPolicy.STICKY, sticky_fallback=RoutingPolicy.ROUND_ROBIN
    )
    # The caller talks to b first (a takes another call meanwhile).
    busy = world.call(ACME, rr, number="0911111111")
    world.act()
    assert world.ringing_agent(busy) == a
    mine = world.call(ACME, rr, number="0987654321")
    world.act()
    assert world.answer(ACME, mine) == b
    world.answer(ACME, busy)
    world.act()
    world.end(ACME, busy)
    world.end(ACME, mine)
    world.act()
    world.act(10)
    assert world.presence(ACME, a) == world.presence(ACME, b) == Presence.AVAILABLE

    # Same number, sticky queue: b again, although round robin would pick a.
    again = world.call(ACME, sticky, number="0987654321")
    world.act()
    assert world.ringing_agent(again) == b
    # Another number: the fallback policy decides.
    other = world.call(ACME, sticky, number="0900000000")
    world.act()
    assert world.ringing_agent(other) == a


def test_pickup_group_queue_is_served_by_its_members_only(world: World) -> None:
    world.agent(ACME, "Outsider")
    member = world.agent(ACME, "Member", group="floor-2")
    queue = world.queue(ACME)
    world.apps.queues.add_pickup_group(ACME, queue, "floor-2")
    first, second = world.call(ACME, queue), world.call(ACME, queue)
    world.act()
    assert world.ringing_agent(first) == member
    assert world.rings(second) == []


def test_ring_timeout_moves_on_to_the_next_agent_and_history_explains(world: World) -> None:
    a, b = sorted((world.agent(ACME, "Quang"), world.agent(ACME, "Rose")), key=str)
    queue = world.queue(ACME)
    world.apps.queues.set_waiting_rules(ACME, queue, ring_timeout_seconds=15, max_wait_seconds=300)
    call = world.call(ACME, queue)
    world.act()
    assert world.ringing_agent(call) == a
    due = world.router.next_due()
    assert due is not None and abs((due - world.now).total_seconds() - 15) < 1
    assert offered(world.act(14)) == []
    decided = world.act(1)
    assert ("timed_out", ACME, str(call), str(a)) in decided
    stops = [c for c in world.sent if isinstance(c, commands.StopRinging)]
    assert [(s.agent_id, s.reason) for s in stops] == [(a, "timed_out")]
    world.act()
    assert world.ringing_agent(call) == b
    assert world.presence(ACME, a) == Presence.AVAILABLE
    history = world.apps.routing.history(ACME, WorkKind.CALL, str(call))
    assert [(h["decision"], h.get("agent_id")) for h in history] == [
        ("Offered", str(a)),
        ("OfferExpired", str(a)),
        ("Offered", str(b)),
    ]
    # b lets it ring out too: a (who timed out before) rings again rather than nobody.
    world.act(15)
    world.act()
    assert world.ringing_agent(call) == a
    # The caller hangs up while a rings: the ring is withdrawn.
    world.apps.calls.hang_up(ACME, call, "call-1-in", "normal_clearing", world.now)
    world.act()
    assert world.presence(ACME, a) == Presence.AVAILABLE
    assert world.router.waiting(ACME) == []


def test_an_agent_who_answers_as_the_ring_times_out_is_on_the_call(world: World) -> None:
    agent = world.agent(ACME, "Late")
    call = world.call(ACME, world.queue(ACME))
    world.act()
    assert world.ringing_agent(call) == agent

    class WithoutCalls(Router):
        upstreams = tuple(u for u in Router.upstreams if u != "calls")

    # The answer is in the calls stream, which the router has not read yet when the ring
    # timeout comes: it ends the ring.
    world.answer(ACME, call)
    world.offset += timedelta(seconds=20)
    catch_up(WithoutCalls(world.path), world.apps)
    world.router.act(ActContext(world.apps, world.now, world.publish))
    world.router.drain()
    assert world.presence(ACME, agent) == Presence.AVAILABLE
    decided = world.act()  # now it reads the answer
    assert ("on_answered_call", ACME, str(call), str(agent)) in decided
    assert world.presence(ACME, agent) == Presence.ON_CALL
    world.end(ACME, call)
    world.act()
    assert world.presence(ACME, agent) == Presence.WRAP_UP


def test_a_chat_is_never_sent_to_voicemail_and_is_routed_once_someone_comes(world: World) -> None:
    queue = world.queue(ACME)
    world.apps.queues.set_waiting_rules(ACME, queue, 20, 60, no_agent=Fallback.voicemail())
    customer = world.apps.customers.register(ACME, "Visitor")
    chat = world.apps.conversations.start(ACME, Channel.CHAT, customer, queue_id=queue)
    assert world.act() == []  # nobody logged in: a chat waits, it has no voicemail
    agent = world.agent(ACME, "Morning")
    assert offered(world.act()) == [(str(chat), str(agent))]


def test_overflow_after_max_wait_goes_to_the_overflow_queue(world: World) -> None:
    backup_agent = world.agent(ACME, "Backup", department="backup")
    sales = world.queue(ACME, "Sales", policy=RoutingPolicy.DEPARTMENT, department="sales")
    backup = world.queue(ACME, "Backup", policy=RoutingPolicy.DEPARTMENT, department="backup")
    world.apps.queues.set_waiting_rules(
        ACME,
        sales,
        ring_timeout_seconds=20,
        max_wait_seconds=60,
        overflow=Fallback.to_queue(backup),
    )
    call = world.call(ACME, sales)
    assert offered(world.act()) == []
    due = world.router.next_due()
    assert due is not None and abs((due - world.now).total_seconds() - 60) < 1
    world.act(59)
    assert world.rings(call) == []
    decided = world.act(1)
    assert ("fell_back", ACME, str(call), "max_wait", "queue") in decided
    world.act()
    assert world.ringing_agent(call) == backup_agent
    assert world.apps.calls.get(ACME, call)["queue_id"] == str(backup)


def test_no_agent_logged_in_sends_to_voicemail_and_closed_queue_plays_a_message(
    world: World,
) -> None:
    queue = world.queue(ACME)
    world.apps.queues.set_waiting_rules(
        ACME, queue, 20, 300, no_agent=Fallback.voicemail("Please leave a message")
    )
    world.agent(ACME, "Offline", available=False)
    call = world.call(ACME, queue)
    decided = world.act()
    assert ("fell_back", ACME, str(call), "no_agent", "voicemail") in decided
    sent = [c for c in world.sent if isinstance(c, commands.SendToFallback)]
    assert [(c.call_id, c.kind, c.message) for c in sent] == [
        (call, "voicemail", "Please leave a message")
    ]
    assert world.act() == []  # decided once

    world.apps.tenants.register(GLOBEX, "Globex", Package.CALL_CENTER, ["0281234567"])
    office = BusinessCalendar(
        time_zone="Asia/Ho_Chi_Minh",
        hours=tuple(
            OpeningHours(day=d, start=time(8), end=time(17))
            for d in (Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY)
        ),
    )
    world.apps.tenants.define_calendar(GLOBEX, "office", office)
    globex_queue = world.queue(GLOBEX)
    world.apps.queues.set_schedule(GLOBEX, globex_queue, "office", Fallback.play("We are closed"))
    world.agent(GLOBEX, "Night")
    world.set_time(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))  # 19:00 in Ho Chi Minh City
    late = world.call(GLOBEX, globex_queue)
    decided = world.act()
    assert ("fell_back", GLOBEX, str(late), "closed", "message") in decided
    world.set_time(datetime(2026, 11, 25, 3, 0, tzinfo=UTC))  # 10:00 there: open
    early = world.call(GLOBEX, globex_queue)
    world.act()
    assert len(world.rings(early)) == 1


def test_chat_conversations_are_offered_and_accepting_assigns(world: World) -> None:
    agent = world.agent(ACME, "Chat")
    queue = world.queue(ACME)
    customer = world.apps.customers.register(ACME, "Visitor")
    conversation = world.apps.conversations.start(ACME, Channel.CHAT, customer, queue_id=queue)
    decided = world.act()
    assert offered(decided) == [(str(conversation), str(agent))]
    assert world.sent == []  # a chat rings in the inbox, not on the switch
    world.apps.conversations.assign(ACME, conversation, agent)
    world.act()
    assert world.presence(ACME, agent) == Presence.ON_CALL
    world.apps.conversations.resolve(ACME, conversation)
    world.act()
    assert world.presence(ACME, agent) == Presence.AVAILABLE


def test_tenants_never_get_each_others_work(world: World) -> None:
    theirs = world.agent(GLOBEX, "Other")
    queue = world.queue(ACME)
    call = world.call(ACME, queue)
    world.act()
    assert world.rings(call) == []
    assert world.presence(GLOBEX, theirs) == Presence.AVAILABLE
    assert world.router.waiting(GLOBEX) == []
    assert [w["id"] for w in world.router.waiting(ACME)] == [str(call)]


def test_a_restart_catches_up_with_what_fell_due_while_down(world: World) -> None:
    a, b = sorted((world.agent(ACME, "Xuan"), world.agent(ACME, "Yen")), key=str)
    queue = world.queue(ACME)
    call = world.call(ACME, queue)
    world.act()
    assert world.ringing_agent(call) == a
    world.restart()  # down for a minute: the 20 s ring timeout passed meanwhile
    world.act(60)
    world.act()
    assert world.ringing_agent(call) == b
    assert world.presence(ACME, a) == Presence.AVAILABLE
    # Nothing is decided twice.
    assert len([c for c in world.sent if isinstance(c, commands.StopRinging)]) == 1


def test_a_rebuild_gives_the_same_tables_in_any_stream_order(world: World, tmp_path: Path) -> None:
    agents = [world.agent(ACME, n, skills={"vi": 3}) for n in ("P", "Q")]
    queue = world.queue(ACME, policy=RoutingPolicy.SKILL, required_skills={"vi": 1})
    for _ in range(3):
        call = world.call(ACME, queue)
        world.act()
        if world.rings(call):
            world.answer(ACME, call)
            world.act()
            world.end(ACME, call)
        world.act(30)
    world.act(30)
    assert {world.presence(ACME, a) for a in agents} == {Presence.AVAILABLE}

    class Reversed(Router):
        upstreams = tuple(reversed(Router.upstreams))

    again = Reversed(tmp_path / "reversed.sqlite")
    catch_up(again, world.apps)
    assert compare(world.router.connect(), again.connect()) == []


def test_presence_follows_a_blind_transfer_and_an_outbound_call(world: World) -> None:
    """The switch puts agents on calls routing never offered them (a transfer's target,
    an outbound call's agent) and takes them off calls that go on (the transferring
    agent): their presence follows the legs."""
    first, second = world.agent(ACME, "First"), world.agent(ACME, "Second")
    call = world.call(ACME, world.queue(ACME, policy=RoutingPolicy.ROUND_ROBIN))
    world.act()
    taker = world.answer(ACME, call)
    other = second if taker == first else first
    world.act()
    assert world.presence(ACME, taker) == Presence.ON_CALL
    leg = f"call-1-{taker}"
    target = LegSpec.agent("t-1", other, EndpointKind.SIP_PHONE, "sip:x@pbx")
    world.apps.calls.transfer_blind(ACME, call, leg, target, world.now)
    world.act()
    assert world.presence(ACME, taker) == Presence.WRAP_UP  # left the call, which goes on
    assert world.presence(ACME, other) == Presence.AVAILABLE  # rung, not answered yet
    world.apps.calls.answer(ACME, call, "t-1", world.now)
    decided = world.act()
    assert ("on_answered_call", ACME, str(call), str(other)) in decided
    assert world.presence(ACME, other) == Presence.ON_CALL
    world.end(ACME, call)
    world.offset += timedelta(seconds=11)
    world.act()
    world.act()
    assert world.presence(ACME, other) == Presence.AVAILABLE
    assert world.presence(ACME, taker) == Presence.AVAILABLE

    # An outbound call: its agent is on it from the start, and free again at its end.
    out = world.apps.calls.start_outbound(
        ACME,
        "out-1",
        "19001234",
        LegSpec.agent("o-a", taker, EndpointKind.SIP_PHONE, "sip:x@pbx"),
        LegSpec.customer("o-c", "0907000111"),
        world.now,
    )
    world.act()
    assert world.presence(ACME, taker) == Presence.ON_CALL
    world.apps.calls.answer(ACME, out, "o-c", world.now)
    world.apps.calls.hang_up(ACME, out, "o-c", "NORMAL_CLEARING", world.now)
    world.act()
    assert world.presence(ACME, taker) == Presence.WRAP_UP
