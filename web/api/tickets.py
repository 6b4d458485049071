"""Tickets API (CT17, SDK2): list and read a tenant's tickets, raise one, comment on one.

Reads come from the tickets read model, which follows the event store: a ticket raised a
moment ago shows in the list (and at its URL) within the projection's lag. Writes go to
the domain on a worker thread; the domain checks the text (title, description, comment)
and the workflow, and its refusals are 422s with the reason (web.api.errors).

The ids a write names are checked in the path's tenant first (the domain's tickets do
not read other applications): the customer, the linked conversations and a comment's
author must be the tenant's, else 422 — another tenant's id is as unknown as a made-up
one. Another tenant's ticket is "not found".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol
from uuid import UUID, uuid4

import msgspec
from litestar import Router, get, post
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery, QueryParameter

from domain.apps import DomainApps
from domain.asyncapp import AsyncRunner
from domain.base import NotFound
from domain.tickets import MAX_LINKS, TicketKind, TicketStatus
from domain.vocabulary import Priority
from projections.tickets import SLA_STATES, TicketsReadModel
from web.api.errors import READ_ERRORS, WRITE_ERRORS, exception_handlers, tenant_path
from web.api.params import Limit, Offset, choices, flag, page, path_id, typed, uuid_query

STATUSES = tuple(s.value for s in TicketStatus)
PRIORITIES = tuple(p.value for p in Priority)
KINDS = tuple(k.value for k in TicketKind)
ORDERS = ("updated", "created", "priority", "due")


class TicketsContext(Protocol):
    """What the tickets API reads and writes: the tickets read model and the domain."""

    @property
    def tickets(self) -> TicketsReadModel: ...

    @property
    def apps(self) -> Callable[[], DomainApps]: ...

    @property
    def runner(self) -> AsyncRunner: ...


class TicketSummary(msgspec.Struct):
    """A ticket as a list shows it (the tickets read model's row)."""

    id: str
    tenant_id: str
    title: str
    kind: str
    priority: str
    status: str
    customer_id: str | None
    assignee: str | None
    sla_policy_id: str | None
    created_at: str
    updated_at: str
    status_changed_at: str | None
    resolved_at: str | None
    closed_at: str | None
    comment_count: int
    public_comment_count: int
    last_comment_at: str | None
    conversation_count: int
    version: int


class ListedTicket(TicketSummary):
    """A ticket in a list, with its SLA state as of the request: on_time, at_risk,
    breached or none (no SLA clock)."""

    sla_state: str | None = None


class TicketPage(msgspec.Struct):
    items: list[ListedTicket]
    limit: int
    offset: int
    next_offset: int | None


class Comment(msgspec.Struct):
    id: str
    author_id: str
    body: str
    public: bool
    at: str


class LinkedConversation(msgspec.Struct):
    id: str
    linked_at: str


class TicketDetail(TicketSummary):
    """A ticket with its description, comments (oldest first) and linked conversations."""

    description: str
    comments: list[Comment]
    conversations: list[LinkedConversation]


class NewTicket(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    title: str
    kind: TicketKind
    description: str = ""
    priority: Priority = Priority.NORMAL
    customer_id: UUID | None = None
    conversation_ids: Annotated[list[UUID], msgspec.Meta(max_length=MAX_LINKS)] = []


class NewComment(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`author_id`: the user of the tenant who writes it; `comment_id` (optional) makes
    a retried request count once."""

    author_id: UUID
    body: str
    public: bool = False
    comment_id: UUID | None = None


class Created(msgspec.Struct):
    id: UUID


def tickets_router(ctx: TicketsContext) -> Router:
    async def check_owned(
        what: str, load: Callable[[str, UUID], Any], tenant: str, item_id: UUID
    ) -> None:
        """422 unless the domain has `item_id` in the tenant (another's is unknown too)."""
        try:
            await ctx.runner(load, tenant, item_id)
        except NotFound:
            raise ClientException(
                f"{what} {item_id} is not one of tenant {tenant}'s", status_code=422
            ) from None

    @get("/", responses=READ_ERRORS)
    async def list_tickets(
        tenant_id: FromPath[str],
        status: FromQuery[str | None] = None,
        priority: FromQuery[str | None] = None,
        kind: FromQuery[str | None] = None,
        assignee: FromQuery[str | None] = None,
        unassigned: FromQuery[str | None] = None,
        customer: FromQuery[str | None] = None,
        sla: FromQuery[str | None] = None,
        q: Annotated[str | None, QueryParameter(max_length=200)] = None,
        order: FromQuery[str] = "updated",
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> TicketPage:
        """Tickets matching every filter given: `status`, `priority` and `kind` take one
        value or several (comma-separated); `assignee` and `customer` ids; `unassigned`
        true for those nobody holds; `sla` one SLA state or several (on_time, at_risk,
        breached, none); `q` text in the title. `order`: updated (default, newest change
        first), created (newest first), priority (urgent first) or due (the SLA clock due
        soonest first)."""
        tenant = tenant_path(tenant_id)
        if order not in ORDERS:
            raise ValidationException(f"order: {order!r} is not one of {', '.join(ORDERS)}")
        rows = ctx.tickets.list(
            tenant,
            status=choices("status", status, STATUSES),
            priority=choices("priority", priority, PRIORITIES),
            kind=choices("kind", kind, KINDS),
            assignee=uuid_query("assignee", assignee),
            unassigned=bool(flag("unassigned", unassigned)),
            customer_id=uuid_query("customer", customer),
            sla=choices("sla", sla, SLA_STATES),
            text=q.strip() or None if q is not None else None,
            order=order,  # type: ignore[arg-type]  # checked against ORDERS
            limit=limit + 1,
            offset=offset,
        )
        return typed(page(rows, limit, offset), TicketPage)

    @get("/{ticket_id:str}", responses=READ_ERRORS)
    async def show_ticket(tenant_id: FromPath[str], ticket_id: FromPath[str]) -> TicketDetail:
        tenant = tenant_path(tenant_id)
        found = ctx.tickets.get(tenant, path_id("ticket", ticket_id))
        if found is None:
            raise NotFoundException(f"ticket {ticket_id} not found")
        return typed(found, TicketDetail)

    @post("/", status_code=201, responses=WRITE_ERRORS)
    async def raise_ticket(tenant_id: FromPath[str], data: NewTicket) -> Created:
        """A new ticket (status "new"); its customer and conversations must be the
        tenant's. `kind`: complaint, request, question or feedback; `priority`: low,
        normal (default), high or urgent."""
        tenant = tenant_path(tenant_id)
        apps = ctx.apps()
        if data.customer_id is not None:
            await check_owned("customer", apps.customers.get, tenant, data.customer_id)
        for conversation_id in dict.fromkeys(data.conversation_ids):
            await check_owned("conversation", apps.conversations.get, tenant, conversation_id)

        def raise_it() -> UUID:
            return apps.tickets.raise_ticket(
                tenant,
                data.title,
                kind=data.kind,
                description=data.description,
                priority=data.priority,
                customer_id=data.customer_id,
                conversation_ids=list(dict.fromkeys(data.conversation_ids)),
            )

        return Created(id=await ctx.runner(raise_it))

    @post("/{ticket_id:str}/comments", status_code=201, responses=WRITE_ERRORS)
    async def comment(
        tenant_id: FromPath[str], ticket_id: FromPath[str], data: NewComment
    ) -> Created:
        """A comment by a user of the tenant: internal unless `public`."""
        tenant = tenant_path(tenant_id)
        tid = path_id("ticket", ticket_id)
        apps = ctx.apps()
        await check_owned("user", apps.agents.get, tenant, data.author_id)
        comment_id = data.comment_id or uuid4()
        await ctx.runner(
            apps.tickets.comment, tenant, tid, data.author_id, data.body, data.public, comment_id
        )
        return Created(id=comment_id)

    return Router(
        path="/api/v1/tenants/{tenant_id:str}/tickets",
        route_handlers=[list_tickets, show_ticket, raise_ticket, comment],
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        tags=["tickets"],
    )
