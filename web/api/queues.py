"""Queues API (CC17): each queue with what waits in it now and how the period's waits
ended, and one queue's waiting calls and conversations, longest-waiting first.

From the queue board read model (counts, service level) and the inbox read model (the
calls and conversations waiting). The period's figures cover the stays that entered in
[`from`, `to`); without them, the last 24 hours. Another tenant's queue is "not found".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec
from litestar import Router, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery

from projections.boards import QueueBoardReadModel
from projections.inbox import InboxReadModel
from web.api.conversations import ConversationSummary
from web.api.errors import READ_ERRORS, exception_handlers, tenant_path
from web.api.live_calls import LiveCall
from web.api.params import Limit, Offset, Since, page, path_id, period, typed

DEFAULT_PERIOD = timedelta(hours=24)
# Of each kind of waiting item, the longest-waiting that one queue shows.
WAITING_SHOWN = 100


class QueuesContext(Protocol):
    @property
    def queue_board(self) -> QueueBoardReadModel: ...

    @property
    def inbox(self) -> InboxReadModel: ...


class QueueStats(msgspec.Struct):
    """A queue: waiting now (in all and per channel), the oldest waiting since when, and
    of the period's stays: answered, abandoned, ended unanswered, overflowed, the
    average wait of the answered and the service level (answered within 20 s over
    answered, abandoned and ended unanswered; null without any)."""

    id: str
    name: str | None
    waiting: int
    waiting_by_channel: dict[str, int]
    oldest_waiting_since: str | None
    answered: int
    abandoned: int
    ended_unanswered: int
    overflowed: int
    average_wait_seconds: float | None
    service_level: float | None


class QueuePage(msgspec.Struct):
    items: list[QueueStats]
    limit: int
    offset: int
    next_offset: int | None
    period_from: datetime
    period_to: datetime


class QueueDetail(QueueStats):
    period_from: datetime
    period_to: datetime
    waiting_calls: list[LiveCall]
    waiting_conversations: list[ConversationSummary]


def queues_router(ctx: QueuesContext) -> Router:
    def board(
        tenant: str, from_: str | None, to: str | None
    ) -> tuple[list[dict[str, Any]], datetime, datetime]:
        since, until = period(from_, to)
        end = until or (since + DEFAULT_PERIOD if since else datetime.now(UTC))
        start = since or end - DEFAULT_PERIOD
        return ctx.queue_board.board(tenant, since=start, until=end), start, end

    @get("/", responses=READ_ERRORS)
    async def list_queues(
        tenant_id: FromPath[str],
        from_: Since = None,
        to: FromQuery[str | None] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> QueuePage:
        """Every queue of the tenant, by name, with its waits; `from`/`to` the period
        (ISO 8601 with a zone, `to` exclusive; default the last 24 hours)."""
        rows, start, end = board(tenant_path(tenant_id), from_, to)
        found = page(rows[offset : offset + limit + 1], limit, offset)
        return typed({**found, "period_from": start, "period_to": end}, QueuePage)

    @get("/{queue_id:str}", responses=READ_ERRORS)
    async def show_queue(
        tenant_id: FromPath[str],
        queue_id: FromPath[str],
        from_: Since = None,
        to: FromQuery[str | None] = None,
    ) -> QueueDetail:
        """One queue's figures, and its waiting calls and unassigned open conversations,
        the longest-waiting first."""
        tenant = tenant_path(tenant_id)
        qid = str(path_id("queue", queue_id))
        rows, start, end = board(tenant, from_, to)
        found = next((r for r in rows if r["id"] == qid), None)
        if found is None:
            raise NotFoundException(f"queue {queue_id} not found")
        # Ordered by the wait before the limit: with more waiting than shown, the
        # longest-waiting are the ones shown.
        conversations = ctx.inbox.for_queue(
            tenant, qid, status="open", assigned=False, limit=WAITING_SHOWN, longest_waiting=True
        )
        return typed(
            {
                **found,
                "period_from": start,
                "period_to": end,
                "waiting_calls": ctx.inbox.waiting_calls(tenant, qid, limit=WAITING_SHOWN),
                "waiting_conversations": conversations,
            },
            QueueDetail,
        )

    return Router(
        path="/api/v1/tenants/{tenant_id:str}/queues",
        route_handlers=[list_queues, show_queue],
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        tags=["queues"],
    )
