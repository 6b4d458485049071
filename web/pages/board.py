"""The supervisor's live board (CC16-CC18): agents and their state, queues and their
waits, today's productivity — and the changes pushed as they happen.

`GET /t/<tenant>/board` is the page, `GET /t/<tenant>/board/tables` its tables alone (what
the page's script fetches again when something changed), and `GET /t/<tenant>/live` a
server-sent event stream of the tenant's read-model changes (`projections.live`, NATS
`live.<tenant>.>`): the subject is built from the signed-in user's tenant, never from
anything the browser sends, so a stream carries one tenant's changes only.
Supervisors and tenant admins see the board; an agent of the tenant gets a 403 that says
why.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Request, Response, Router, get
from litestar.response import ServerSentEvent, Template
from litestar.status_codes import HTTP_403_FORBIDDEN
from nats.aio.client import Client as NatsClient

from projections import live
from projections.access import AccessReadModel
from projections.boards import AgentBoardReadModel, QueueBoardReadModel
from web.pages.auth import (
    PAGE_EXCEPTION_HANDLERS,
    home_url,
    page,
    principal_of,
    signed_in_guard,
)

BOARD_ROLES = frozenset({"supervisor", "tenant_admin"})
# Whose day "today" is: the brochure's country; a tenant's own calendar is a later step.
DAY_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# What the board shows comes from these read models; other changes do not redraw it.
BOARD_READMODELS = ("agent_board", "queue_board")


class RoleForbidden(Exception):
    """A signed-in user of the tenant whose role may not see the page."""

    # As an HTTP error: answered by its page, logged without a traceback (web.app).
    status_code = 403


def board_router(
    access: AccessReadModel,
    agents: AgentBoardReadModel,
    queues: QueueBoardReadModel,
    nats: Callable[[], NatsClient],
) -> Router:
    def tables(tenant_id: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        today: date = now.astimezone(DAY_ZONE).date()
        midnight = datetime.combine(today, datetime.min.time(), DAY_ZONE)
        return {
            "agents": agents.board(tenant_id),
            "queues": queues.board(tenant_id, since=midnight, until=now),
            "productivity": agents.productivity(tenant_id, today, DAY_ZONE, now=now),
        }

    def allowed(request: Request[Any, Any, Any]) -> None:
        if principal_of(request).role not in BOARD_ROLES:
            raise RoleForbidden

    @get("/t/{tenant_id:str}/board", include_in_schema=False)
    async def board(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        allowed(request)
        return page(request, "board.html", tenant=tenant_id, **tables(tenant_id))

    @get("/t/{tenant_id:str}/board/tables", include_in_schema=False)
    async def board_tables(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        allowed(request)
        return page(request, "board_tables.html", **tables(tenant_id))

    @get("/t/{tenant_id:str}/live", include_in_schema=False)
    async def changes(request: Request[Any, Any, Any], tenant_id: str) -> ServerSentEvent:
        allowed(request)
        # From the session's tenant (the guard made sure it is the path's): the wall.
        subject = live.tenant_filter(principal_of(request).tenant_id)
        return ServerSentEvent(_stream(nats(), subject))

    return Router(
        path="/",
        route_handlers=[board, board_tables, changes],
        guards=[signed_in_guard(access)],
        exception_handlers={**PAGE_EXCEPTION_HANDLERS, RoleForbidden: _role_forbidden},
    )


async def _stream(nc: NatsClient, subject: str) -> AsyncGenerator[str, None]:
    """Each change as one event (`{"readmodel", "kind", "key"}`) until the browser goes."""
    sub = await nc.subscribe(subject)
    try:
        # A first event at once, so that the browser knows it is connected.
        yield '{"readmodel": "", "kind": "hello", "key": ""}'
        async for msg in sub.messages:
            yield msg.data.decode()
    finally:
        await sub.unsubscribe()


def _role_forbidden(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    home = home_url(principal_of(request).tenant_id)
    return page(
        request, "forbidden.html", HTTP_403_FORBIDDEN, home=home, message_key="board.role_only"
    )
