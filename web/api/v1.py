"""The read-mostly areas of the API in one place: what they read, and their routers.

deploy.services builds one `TenantApi` from the read models its process serves and puts
`tenant_routers` behind the API's door (web.api.auth) beside customers and calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from litestar import Router

from domain.apps import DomainApps
from domain.asyncapp import AsyncRunner
from projections.boards import AgentBoardReadModel, QueueBoardReadModel
from projections.inbox import InboxReadModel
from projections.tickets import TicketsReadModel
from web.api.agents import agents_router
from web.api.conversations import conversations_router
from web.api.live_calls import live_calls_router
from web.api.queues import queues_router
from web.api.tickets import tickets_router


@dataclass(frozen=True)
class TenantApi:
    """What the conversations, tickets, agents, queues and live-calls APIs read; the
    domain (`apps`, on `runner`'s threads) for a conversation's messages and the writes."""

    inbox: InboxReadModel
    tickets: TicketsReadModel
    agent_board: AgentBoardReadModel
    queue_board: QueueBoardReadModel
    apps: Callable[[], DomainApps]
    runner: AsyncRunner


def tenant_routers(api: TenantApi) -> list[Router]:
    return [
        conversations_router(api),
        tickets_router(api),
        agents_router(api),
        queues_router(api),
        live_calls_router(api),
    ]
