"""Agents API (CC16): the tenant's agents and supervisors with their presence, and what
each is on now (calls ringing or talking, open conversations) — the supervisor's board
as data, from the agent board read model.

Reads only: an agent's own status is set in the inbox (and by routing), users are made
by the tenant's admin. Another tenant's agent is "not found".
"""

from __future__ import annotations

from typing import Protocol

import msgspec
from litestar import Router, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery

from domain.vocabulary import Presence
from projections.boards import AgentBoardReadModel
from projections.inbox import InboxReadModel
from web.api.errors import READ_ERRORS, exception_handlers, tenant_path
from web.api.live_calls import AgentLiveCall
from web.api.params import Limit, Offset, choices, page, path_id, typed

PRESENCES = tuple(p.value for p in Presence)


class AgentsContext(Protocol):
    """What the agents API reads: the agent board, and the inbox's live calls."""

    @property
    def agent_board(self) -> AgentBoardReadModel: ...

    @property
    def inbox(self) -> InboxReadModel: ...


class AgentCallLeg(msgspec.Struct):
    call_id: str
    leg_id: str
    state: str
    since: str


class AgentConversation(msgspec.Struct):
    id: str
    channel: str
    status: str


class Agent(msgspec.Struct):
    """An agent (or supervisor): presence since when, the break's reason, the
    conversation or call the presence is about, live call legs, open conversations."""

    id: str
    name: str
    role: str
    active: bool
    presence: str
    since: str
    break_reason: str | None
    conversation_id: str | None
    calls: list[AgentCallLeg]
    conversations: list[AgentConversation]


class AgentPage(msgspec.Struct):
    items: list[Agent]
    limit: int
    offset: int
    next_offset: int | None


def agents_router(ctx: AgentsContext) -> Router:
    @get("/", responses=READ_ERRORS)
    async def list_agents(
        tenant_id: FromPath[str],
        presence: FromQuery[str | None] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> AgentPage:
        """The tenant's active agents and supervisors, by name; `presence` takes one
        state or several (comma-separated): offline, available, ringing, on_call,
        wrap_up, break."""
        tenant = tenant_path(tenant_id)
        wanted = choices("presence", presence, PRESENCES)
        rows = [
            a for a in ctx.agent_board.board(tenant) if wanted is None or a["presence"] in wanted
        ]
        return typed(page(rows[offset : offset + limit + 1], limit, offset), AgentPage)

    @get("/{agent_id:str}", responses=READ_ERRORS)
    async def show_agent(tenant_id: FromPath[str], agent_id: FromPath[str]) -> Agent:
        """One user of the tenant, whatever their role or state."""
        tenant = tenant_path(tenant_id)
        found = ctx.agent_board.agent(tenant, str(path_id("agent", agent_id)))
        if found is None:
            raise NotFoundException(f"agent {agent_id} not found")
        return typed(found, Agent)

    @get("/{agent_id:str}/calls", responses=READ_ERRORS)
    async def agent_calls(tenant_id: FromPath[str], agent_id: FromPath[str]) -> list[AgentLiveCall]:
        """The calls the agent is on now: ringing, talking or supervising."""
        tenant = tenant_path(tenant_id)
        aid = str(path_id("agent", agent_id))
        if ctx.agent_board.agent(tenant, aid) is None:
            raise NotFoundException(f"agent {agent_id} not found")
        return typed(ctx.inbox.agent_calls(tenant, aid), list[AgentLiveCall])

    return Router(
        path="/api/v1/tenants/{tenant_id:str}/agents",
        route_handlers=[list_agents, show_agent, agent_calls],
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        tags=["agents"],
    )
