"""A command that loses an optimistic-concurrency race is decided again on the winner's
state (domain.base.TenantApplication.change), rather than failing its caller."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from domain.agents import AgentNotAvailable, Agents
from domain.vocabulary import EndpointKind, Package

TENANT = "acme"


def available_agent(agents: Agents) -> Any:
    aid = agents.create_user(TENANT, "Lan", "lan", "agent", package=Package.CALL_CENTER)
    agents.add_endpoint(TENANT, aid, EndpointKind.SIP_PHONE, "sip:lan@pbx")
    agents.go_available(TENANT, aid)
    return aid


def test_a_command_that_lost_a_race_is_decided_again_on_the_winners_state() -> None:
    agents = Agents()
    aid = available_agent(agents)
    save = agents.save
    raced = []

    def save_after_another_writer(*objs: Any, **kwargs: Any) -> Any:
        if not raced:
            # Another process offers the agent a call between our load and our save.
            raced.append(True)
            other = agents.get_owned(TENANT, aid, type(objs[0]))
            other.offer("call-from-elsewhere")
            save(other)
            raise IntegrityError("the agent changed meanwhile")
        return save(*objs, **kwargs)

    agents.save = save_after_another_writer  # type: ignore[method-assign]
    # Decided again on the new state: the agent now rings for the other call.
    with pytest.raises(AgentNotAvailable):
        agents.offer(TENANT, aid, "call-here")
    assert agents.get(TENANT, aid)["conversation_id"] == "call-from-elsewhere"


def test_a_command_retried_after_a_race_succeeds_when_it_still_can() -> None:
    agents = Agents()
    aid = available_agent(agents)
    save = agents.save
    conflicts = []

    def save_conflicting_once(*objs: Any, **kwargs: Any) -> Any:
        if not conflicts:
            conflicts.append(True)
            raise IntegrityError("someone else wrote first")
        return save(*objs, **kwargs)

    agents.save = save_conflicting_once  # type: ignore[method-assign]
    agents.take_break(TENANT, aid, "lunch")
    assert conflicts and agents.get(TENANT, aid)["presence"] == "break"
