"""Queues: configuration invariants, and the pure routing function for every policy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from domain.base import NotFound
from domain.queues import (
    Candidate,
    Fallback,
    InvalidQueue,
    Queues,
    RoutingRules,
    route,
)
from domain.vocabulary import Channel, Presence, RoutingPolicy

TENANT = "acme"
NOW = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
# Fixed ids, so the round-robin order (by id) is the alphabetical one below.
ANA, BAO, CHI, DUNG, EM = (UUID(int=i) for i in range(1, 6))


def agent(
    agent_id: UUID,
    presence: Presence = Presence.AVAILABLE,
    skills: Mapping[str, int] | None = None,
    departments: frozenset[str] = frozenset(),
    groups: frozenset[str] = frozenset(),
    idle_minutes: float | None = 1,
) -> Candidate:
    ended = None if idle_minutes is None else NOW - timedelta(minutes=idle_minutes)
    return Candidate(agent_id, presence, dict(skills or {}), departments, groups, ended)


@pytest.fixture
def queues(transcoder_env: dict[str, str]) -> Queues:
    return Queues(env=transcoder_env)


SKILL_RULES = RoutingRules(RoutingPolicy.SKILL, required_skills={"billing": 3})
DEPT_RULES = RoutingRules(RoutingPolicy.DEPARTMENT, department="sales")
RR_RULES = RoutingRules(RoutingPolicy.ROUND_ROBIN)
STICKY_RULES = RoutingRules(
    RoutingPolicy.STICKY, required_skills={"billing": 3}, sticky_fallback=RoutingPolicy.SKILL
)


# Never anyone not AVAILABLE


@pytest.mark.parametrize("rules", [SKILL_RULES, DEPT_RULES, RR_RULES, STICKY_RULES])
@pytest.mark.parametrize("presence", [p for p in Presence if p is not Presence.AVAILABLE])
def test_routing_never_offers_to_an_agent_who_is_not_available(
    rules: RoutingRules, presence: Presence
) -> None:
    # The busy agent would win on every policy: best skill, longest idle, sticky, next in turn.
    busy = agent(ANA, presence, {"billing": 9}, frozenset({"sales"}), idle_minutes=None)
    free = agent(BAO, Presence.AVAILABLE, {"billing": 4}, frozenset({"sales"}))
    assert route(rules, [busy, free], cursor=DUNG, last_agent_id=ANA) == [BAO]


def test_no_available_member_gives_nobody() -> None:
    everyone_busy = [agent(a, Presence.ON_CALL, {"billing": 5}) for a in (ANA, BAO, CHI)]
    for rules in (SKILL_RULES, DEPT_RULES, RR_RULES, STICKY_RULES):
        assert route(rules, everyone_busy, last_agent_id=ANA) == []


# Skill (CC9)


def test_skill_routing_prefers_the_best_level_match() -> None:
    agents = [
        agent(ANA, skills={"billing": 3}),
        agent(BAO, skills={"billing": 8}),
        agent(CHI, skills={"billing": 5, "sales": 9}),
    ]
    assert route(SKILL_RULES, agents) == [BAO, CHI, ANA]


def test_skill_routing_skips_agents_below_the_minimum_level_or_without_the_skill() -> None:
    agents = [
        agent(ANA, skills={"billing": 2}),
        agent(BAO, skills={"sales": 9}),
        agent(CHI, skills={"billing": 3}),
    ]
    assert route(SKILL_RULES, agents) == [CHI]


def test_skill_routing_with_several_skills_needs_all_and_sums_the_levels() -> None:
    rules = RoutingRules(RoutingPolicy.SKILL, required_skills={"billing": 2, "vietnamese": 2})
    agents = [
        agent(ANA, skills={"billing": 9}),  # no Vietnamese
        agent(BAO, skills={"billing": 4, "vietnamese": 4}),  # 8
        agent(CHI, skills={"billing": 2, "vietnamese": 9}),  # 11
        agent(DUNG, skills={"billing": 5, "vietnamese": 1}),  # Vietnamese too low
    ]
    assert route(rules, agents) == [CHI, BAO]


def test_skill_routing_breaks_level_ties_by_longest_idle() -> None:
    agents = [
        agent(ANA, skills={"billing": 5}, idle_minutes=2),
        agent(BAO, skills={"billing": 5}, idle_minutes=30),
        agent(CHI, skills={"billing": 5}, idle_minutes=None),  # no call yet today
        agent(DUNG, skills={"billing": 7}, idle_minutes=0),
    ]
    assert route(SKILL_RULES, agents) == [DUNG, CHI, BAO, ANA]


# Sticky (CC10)


def test_sticky_routing_prefers_last_agent_who_called() -> None:
    agents = [
        agent(ANA, skills={"billing": 9}),
        agent(BAO, skills={"billing": 4}),
        agent(CHI, skills={"billing": 6}),
    ]
    assert route(STICKY_RULES, agents, last_agent_id=BAO) == [BAO, ANA, CHI]


def test_sticky_routing_falls_back_to_its_policy_when_the_last_agent_is_busy() -> None:
    agents = [
        agent(ANA, skills={"billing": 9}),
        agent(BAO, Presence.WRAP_UP, skills={"billing": 4}),
        agent(CHI, skills={"billing": 6}),
    ]
    assert route(STICKY_RULES, agents, last_agent_id=BAO) == [ANA, CHI]


def test_sticky_routing_without_a_last_agent_is_its_fallback() -> None:
    agents = [agent(ANA, skills={"billing": 4}), agent(BAO, skills={"billing": 6})]
    assert route(STICKY_RULES, agents) == route(SKILL_RULES, agents) == [BAO, ANA]


def test_the_customers_last_agent_comes_first_even_without_the_fallbacks_skills() -> None:
    # CC10 is about the relationship: the agent who knows the customer takes the call.
    agents = [agent(ANA, skills={"billing": 9}), agent(BAO, skills={})]
    assert route(STICKY_RULES, agents, last_agent_id=BAO) == [BAO, ANA]


def test_sticky_routing_with_round_robin_fallback_rotates_the_others() -> None:
    rules = RoutingRules(RoutingPolicy.STICKY, sticky_fallback=RoutingPolicy.ROUND_ROBIN)
    agents = [agent(a) for a in (ANA, BAO, CHI, DUNG)]
    assert route(rules, agents, cursor=BAO, last_agent_id=DUNG) == [DUNG, CHI, ANA, BAO]


def test_sticky_agent_outside_the_queues_pickup_groups_is_not_offered() -> None:
    rules = RoutingRules(
        RoutingPolicy.STICKY,
        sticky_fallback=RoutingPolicy.ROUND_ROBIN,
        pickup_groups=frozenset({"front-desk"}),
    )
    agents = [agent(ANA, groups=frozenset({"front-desk"})), agent(BAO)]
    assert route(rules, agents, last_agent_id=BAO) == [ANA]


# Round robin (AX12)


def test_round_robin_starts_after_the_cursor_and_wraps_around() -> None:
    agents = [agent(a) for a in (DUNG, BAO, ANA, CHI)]
    assert route(RR_RULES, agents, cursor=BAO) == [CHI, DUNG, ANA, BAO]
    assert route(RR_RULES, agents, cursor=DUNG) == [ANA, BAO, CHI, DUNG]


def test_round_robin_without_a_cursor_starts_at_the_first_agent() -> None:
    agents = [agent(a) for a in (CHI, ANA, BAO)]
    assert route(RR_RULES, agents) == [ANA, BAO, CHI]


def test_round_robin_goes_on_when_the_cursor_agent_has_logged_out() -> None:
    agents = [agent(a) for a in (ANA, BAO, DUNG, EM)]  # CHI, offered last, is gone
    assert route(RR_RULES, agents, cursor=CHI) == [DUNG, EM, ANA, BAO]


def test_round_robin_spreads_offers_evenly() -> None:
    agents = [agent(a) for a in (ANA, BAO, CHI)]
    cursor: UUID | None = None
    offered: Counter[UUID] = Counter()
    for _ in range(9):
        cursor = route(RR_RULES, agents, cursor=cursor)[0]
        offered[cursor] += 1
    assert offered == {ANA: 3, BAO: 3, CHI: 3}


def test_round_robin_ignores_idle_time_and_skills() -> None:
    agents = [agent(ANA, idle_minutes=0), agent(BAO, idle_minutes=90, skills={"x": 9})]
    assert route(RR_RULES, agents, cursor=None) == [ANA, BAO]


# Department (AX11)


def test_department_routing_offers_only_the_department_longest_idle_first() -> None:
    sales, support = frozenset({"sales"}), frozenset({"support"})
    agents = [
        agent(ANA, departments=sales, idle_minutes=5),
        agent(BAO, departments=support, idle_minutes=60),
        agent(CHI, departments=sales | support, idle_minutes=20),
        agent(DUNG, departments=sales, idle_minutes=1),
    ]
    assert route(DEPT_RULES, agents) == [CHI, ANA, DUNG]


# Pickup groups (AX15)


def test_pickup_groups_limit_who_takes_the_queues_calls() -> None:
    rules = RoutingRules(RoutingPolicy.ROUND_ROBIN, pickup_groups=frozenset({"night", "vip"}))
    agents = [
        agent(ANA, groups=frozenset({"night"})),
        agent(BAO, groups=frozenset({"day"})),
        agent(CHI, groups=frozenset({"vip", "day"})),
        agent(DUNG),
    ]
    assert route(rules, agents) == [ANA, CHI]


def test_routing_rules_without_their_parameters_are_refused() -> None:
    with pytest.raises(InvalidQueue):
        route(RoutingRules(RoutingPolicy.STICKY), [agent(ANA)])


# The Queue aggregate


def test_a_new_queue_routes_round_robin_on_calls(queues: Queues) -> None:
    queue = queues.get(TENANT, queues.create(TENANT, "  Support   line "))
    assert queue["name"] == "Support line"
    assert queue["policy"] == "round_robin"
    assert queue["channels"] == ["call"]
    assert queue["version"] == 1


def test_routing_from_the_application_uses_the_stored_rules(queues: Queues) -> None:
    queue_id = queues.create(
        TENANT, "Billing", policy=RoutingPolicy.SKILL, required_skills={"billing": 3}
    )
    assert queues.rules(TENANT, queue_id) == SKILL_RULES
    agents = [agent(ANA, skills={"billing": 3}), agent(BAO, skills={"billing": 6})]
    assert queues.route(TENANT, queue_id, agents) == [BAO, ANA]


def test_skill_routing_needs_required_skills(queues: Queues) -> None:
    with pytest.raises(InvalidQueue):
        queues.create(TENANT, "Billing", policy=RoutingPolicy.SKILL)


def test_skill_levels_go_from_1_to_10(queues: Queues) -> None:
    for level in (0, 11):
        with pytest.raises(InvalidQueue):
            queues.create(
                TENANT, "Billing", policy=RoutingPolicy.SKILL, required_skills={"billing": level}
            )


def test_department_routing_needs_a_department(queues: Queues) -> None:
    with pytest.raises(InvalidQueue):
        queues.create(TENANT, "Sales", policy=RoutingPolicy.DEPARTMENT)


def test_sticky_routing_needs_a_fallback_other_than_sticky(queues: Queues) -> None:
    for fallback in (None, RoutingPolicy.STICKY):
        with pytest.raises(InvalidQueue):
            queues.create(TENANT, "VIP", policy=RoutingPolicy.STICKY, sticky_fallback=fallback)


def test_sticky_with_skill_fallback_needs_the_skills(queues: Queues) -> None:
    with pytest.raises(InvalidQueue):
        queues.create(
            TENANT, "VIP", policy=RoutingPolicy.STICKY, sticky_fallback=RoutingPolicy.SKILL
        )
    queue_id = queues.create(
        TENANT,
        "VIP",
        policy=RoutingPolicy.STICKY,
        sticky_fallback=RoutingPolicy.SKILL,
        required_skills={"billing": 3},
    )
    assert queues.rules(TENANT, queue_id) == STICKY_RULES


def test_only_sticky_routing_has_a_fallback(queues: Queues) -> None:
    with pytest.raises(InvalidQueue):
        queues.create(
            TENANT, "Sales", policy=RoutingPolicy.ROUND_ROBIN, sticky_fallback=RoutingPolicy.SKILL
        )


def test_reconfiguring_with_the_same_values_records_nothing(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Sales", policy=RoutingPolicy.DEPARTMENT, department="sales")
    before = queues.get(TENANT, queue_id)["version"]
    queues.configure_routing(TENANT, queue_id, RoutingPolicy.DEPARTMENT, department="sales")
    queues.rename(TENANT, queue_id, "Sales")
    queues.set_schedule(TENANT, queue_id, None)
    assert queues.get(TENANT, queue_id)["version"] == before


def test_waiting_rules_and_their_destinations_are_kept(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Support")
    overflow = uuid4()
    queues.set_waiting_rules(
        TENANT,
        queue_id,
        ring_timeout_seconds=15,
        max_wait_seconds=120,
        overflow=Fallback.to_queue(overflow),
        no_agent=Fallback.voicemail("Please leave a message"),
    )
    queue = queues.get(TENANT, queue_id)
    assert (queue["ring_timeout_seconds"], queue["max_wait_seconds"]) == (15, 120)
    assert queue["overflow"] == {"kind": "queue", "queue_id": str(overflow), "message": None}
    assert queue["no_agent"] == {
        "kind": "voicemail",
        "queue_id": None,
        "message": "Please leave a message",
    }


def test_a_queue_cannot_overflow_into_itself(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Support")
    with pytest.raises(InvalidQueue):
        queues.set_waiting_rules(TENANT, queue_id, 20, 300, overflow=Fallback.to_queue(queue_id))


def test_an_agent_cannot_ring_longer_than_a_caller_may_wait(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Support")
    with pytest.raises(InvalidQueue):
        queues.set_waiting_rules(TENANT, queue_id, ring_timeout_seconds=60, max_wait_seconds=30)


def test_a_message_destination_needs_the_message(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Support")
    with pytest.raises(InvalidQueue):
        queues.set_waiting_rules(TENANT, queue_id, 20, 300, no_agent=Fallback.play("   "))


def test_a_scheduled_queue_needs_somewhere_to_send_calls_while_closed(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Support")
    with pytest.raises(InvalidQueue):
        queues.set_schedule(TENANT, queue_id, "office-hours")
    queues.set_schedule(
        TENANT, queue_id, "office-hours", Fallback.play("We open at 8am, Monday to Friday")
    )
    queue = queues.get(TENANT, queue_id)
    assert queue["calendar_name"] == "office-hours"
    assert queue["when_closed"]["kind"] == "message"


def test_a_queue_open_around_the_clock_has_no_closed_destination(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Support")
    with pytest.raises(InvalidQueue):
        queues.set_schedule(TENANT, queue_id, None, Fallback.voicemail())


def test_a_queue_serves_at_least_one_channel(queues: Queues) -> None:
    with pytest.raises(InvalidQueue):
        queues.create(TENANT, "Nothing", channels=[])
    queue_id = queues.create(TENANT, "Inbox", channels=[Channel.EMAIL, Channel.CHAT])
    queues.change_channels(TENANT, queue_id, [Channel.CHAT, Channel.EMAIL, Channel.MESSENGER])
    assert queues.get(TENANT, queue_id)["channels"] == ["chat", "email", "messenger"]


def test_pickup_groups_are_added_once_and_removed(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Front desk")
    queues.add_pickup_group(TENANT, queue_id, "reception")
    queues.add_pickup_group(TENANT, queue_id, "reception")
    queues.add_pickup_group(TENANT, queue_id, "night")
    queues.remove_pickup_group(TENANT, queue_id, "night")
    queue = queues.get(TENANT, queue_id)
    assert queue["pickup_groups"] == ["reception"]
    assert queue["version"] == 4
    assert queues.rules(TENANT, queue_id).pickup_groups == {"reception"}


def test_another_tenant_cannot_read_or_change_the_queue(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Support")
    with pytest.raises(NotFound):
        queues.get("other", queue_id)
    with pytest.raises(NotFound):
        queues.rename("other", queue_id, "Mine")


def test_required_skills_are_named_in_lower_case_as_agents_skills_are(queues: Queues) -> None:
    queue_id = queues.create(
        TENANT, "Billing", policy=RoutingPolicy.SKILL, required_skills={" Billing ": 3}
    )
    assert queues.rules(TENANT, queue_id).required_skills == {"billing": 3}


# The SLA policy of the queue's conversations (CC22)


def test_a_queue_names_the_sla_policy_of_its_conversations(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Chat")
    assert queues.get(TENANT, queue_id)["sla_policy_id"] is None
    policy, other = uuid4(), uuid4()
    queues.set_sla_policy(TENANT, queue_id, policy)
    queue = queues.get(TENANT, queue_id)
    assert queue["sla_policy_id"] == str(policy)
    # The same policy again records nothing; another replaces it; None clears it.
    queues.set_sla_policy(TENANT, queue_id, policy)
    assert queues.get(TENANT, queue_id)["version"] == queue["version"]
    queues.set_sla_policy(TENANT, queue_id, other)
    assert queues.get(TENANT, queue_id)["sla_policy_id"] == str(other)
    queues.set_sla_policy(TENANT, queue_id, None)
    queues.set_sla_policy(TENANT, queue_id, None)
    queue = queues.get(TENANT, queue_id)
    assert (queue["sla_policy_id"], queue["version"]) == (None, 4)


def test_the_sla_policy_survives_replay_as_an_id(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Chat")
    policy = uuid4()
    queues.set_sla_policy(TENANT, queue_id, policy)
    [event] = [
        e for e in queues.repository.event_store.get(queue_id) if type(e).__name__ == "SlaPolicySet"
    ]
    assert event.policy_id == policy
    # A fresh load replays the stored events through the transcoder.
    assert queues.repository.get(queue_id, version=None).sla_policy_id == policy


def test_an_sla_policy_is_named_by_its_id(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Chat")
    with pytest.raises(InvalidQueue):
        queues.set_sla_policy(TENANT, queue_id, str(uuid4()))  # type: ignore[arg-type]
    assert queues.get(TENANT, queue_id)["sla_policy_id"] is None


def test_another_tenant_cannot_set_the_queues_sla_policy(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Chat")
    with pytest.raises(NotFound):
        queues.set_sla_policy("other", queue_id, uuid4())
    assert queues.get(TENANT, queue_id)["sla_policy_id"] is None


def test_a_queue_may_record_every_call_its_agents_answer(queues: Queues) -> None:
    queue_id = queues.create(TENANT, "Sales")
    assert queues.get(TENANT, queue_id)["record_calls"] is False
    queues.set_recording_policy(TENANT, queue_id, True)
    version = queues.get(TENANT, queue_id)["version"]
    queues.set_recording_policy(TENANT, queue_id, True)  # again: nothing recorded
    assert queues.get(TENANT, queue_id)["version"] == version
    assert queues.repository.get(queue_id, version=None).record_calls is True
    with pytest.raises(InvalidQueue):
        queues.set_recording_policy(TENANT, queue_id, "yes")  # type: ignore[arg-type]
    queues.set_recording_policy(TENANT, queue_id, False)
    assert queues.get(TENANT, queue_id)["record_calls"] is False
