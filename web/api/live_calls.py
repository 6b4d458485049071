"""Live calls API (CC16, CC19): a tenant's calls in progress, from the inbox read model.

A call is here from its start until it ends (the call log keeps the history: web.api.calls),
with its state (connecting, queued, talking, on_hold) and the legs of the tenant's users
on it (agents ringing or talking, supervisors listening). Customers' legs are not listed.
"""

from __future__ import annotations

from typing import Protocol

import msgspec
from litestar import Router, get
from litestar.params import FromPath

from projections.inbox import InboxReadModel
from web.api.errors import READ_ERRORS, exception_handlers, tenant_path
from web.api.params import Limit, typed


class LiveCallsContext(Protocol):
    @property
    def inbox(self) -> InboxReadModel: ...


class LiveCall(msgspec.Struct):
    """A call in progress: `state` is connecting (in the IVR, dialling out, ringing an
    agent directly), queued, talking or on_hold."""

    id: str
    tenant_id: str
    channel: str
    direction: str
    hotline: str | None
    customer_number: str | None
    queue_id: str | None
    state: str
    started_at: str
    offered_at: str | None
    answered_at: str | None
    version: int
    updated_at: str


class UserLeg(msgspec.Struct):
    leg_id: str
    user_id: str
    party: str
    rang_at: str
    answered_at: str | None


class LiveCallWithLegs(LiveCall):
    legs: list[UserLeg]


class AgentLiveCall(LiveCall):
    """A call as one agent is on it: their leg, its party and state."""

    leg_id: str
    party: str
    leg_state: str
    leg_rang_at: str
    leg_answered_at: str | None


def live_calls_router(ctx: LiveCallsContext) -> Router:
    @get("/", responses=READ_ERRORS)
    async def list_live_calls(
        tenant_id: FromPath[str], limit: Limit = 500
    ) -> list[LiveCallWithLegs]:
        """The tenant's calls in progress, the oldest first (at most `limit`)."""
        tenant = tenant_path(tenant_id)
        return typed(ctx.inbox.live_calls(tenant, limit=limit), list[LiveCallWithLegs])

    return Router(
        path="/api/v1/tenants/{tenant_id:str}/live-calls",
        route_handlers=[list_live_calls],
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        tags=["calls"],
    )
