"""Tickets (CT17, CC22): the tenant's complaints and requests, filtered and sorted, and one
ticket with its SLA countdown, comments, status, assignee and linked interactions.

- `GET /t/<tenant>/tickets` lists from the tickets read model. Filters: `status`,
  `priority`, `sla` (on_time, at_risk, breached, none — worked out at the time of the
  request), `assignee` (a user's id, or `none`: unassigned), `mine=1` (the user's own);
  `order`: updated (default), created (newest first), priority (most urgent first) or
  due (the SLA clock due soonest first). A value that is none of these is a 400 page,
  not an empty list that looks like "nothing to do".
- `POST /t/<tenant>/tickets` raises a ticket (title, kind, priority, description and,
  from a customer's page, the customer), then shows it.
- `GET /t/<tenant>/tickets/<id>` shows the ticket from the domain (so what was just done
  is there on the redirect after a POST), with the read model's times and SLA clocks:
  the due time of the first response and of the resolution, the state the server worked
  out, and a countdown that web/static/countdown.js ticks from the server's due time
  (a paused clock shows what is left, without ticking). Another tenant's id is "not
  found", as an unknown one.
- `POST .../comment|status|assign|priority` go to the domain's Tickets on its worker
  threads and redirect (303) back; a refused one is the page again with the reason (4xx).
  A comment carries an id made when the form was drawn, so a form posted twice comments
  once. The status buttons are those the domain's workflow allows from where the ticket
  is (domain.tickets TRANSITIONS).

Who may do what: a supervisor or tenant admin acts on any of the tenant's tickets; an
agent changes the status or priority of, and assigns to themself (or gives back), only a
ticket that is theirs or nobody's — another agent's is a 403 page that says why. Any
agent comments on any ticket of the tenant (colleagues add what they know). A ticket is
given only to an active agent or supervisor of the tenant (else a 400).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID, uuid4

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
)

from domain.apps import DomainApps
from domain.asyncapp import AsyncRunner
from domain.base import DomainError, NotFound
from domain.conversations import StatusChangeRefused
from domain.tickets import MAX_COMMENT, TRANSITIONS, TicketClosed, TicketKind, TicketStatus
from domain.vocabulary import Priority
from projections.access import AccessReadModel, Principal
from projections.boards import AgentBoardReadModel
from projections.customers import CustomersReadModel
from projections.inbox import InboxReadModel
from projections.sql import iso
from projections.tickets import SLA_STATES, TicketsReadModel
from web.pages.auth import (
    PAGE_EXCEPTION_HANDLERS,
    home_url,
    page,
    principal_of,
    signed_in_guard,
)
from web.pages.customers import RoleForbidden, desk_principal, forbidden
from web.pages.owned import is_uuid, owned

STATUSES = tuple(s.value for s in TicketStatus)
PRIORITIES = tuple(p.value for p in Priority)
KINDS = tuple(k.value for k in TicketKind)
ORDERS = ("updated", "created", "priority", "due")
LIST_LIMIT = 100
UNASSIGNED = "none"
# Who acts on any ticket of the tenant; an agent, on their own and unassigned ones only.
MANAGER_ROLES = frozenset({"supervisor", "tenant_admin"})
# Whom a ticket may be given to (and then only while the user is active).
ASSIGNABLE_ROLES = frozenset({"agent", "supervisor"})


class TicketForbidden(Exception):
    """An agent acting on a ticket that is not theirs to act on: the reason's key."""

    # As an HTTP error: answered by its page, logged without a traceback (web.app).
    status_code = 403

    def __init__(self, message_key: str) -> None:
        super().__init__(message_key)
        self.message_key = message_key


def may_work_on(principal: Principal, ticket: dict[str, Any]) -> bool:
    """Whether the user may change the ticket's status, priority or assignee: a
    supervisor's or tenant admin's any ticket, an agent's own or an unassigned one."""
    return principal.role in MANAGER_ROLES or ticket["assignee"] in (None, principal.user_id)


def check_work_on(principal: Principal, ticket: dict[str, Any]) -> None:
    if not may_work_on(principal, ticket):
        raise TicketForbidden("tickets.not_yours")


class CommentForm(msgspec.Struct, kw_only=True):
    body: str = ""
    public: str = ""
    key: str = ""


class NewTicketForm(msgspec.Struct, kw_only=True):
    title: str = ""
    kind: str = ""
    priority: str = ""
    description: str = ""
    customer_id: str = ""


class StatusForm(msgspec.Struct, kw_only=True):
    status: str = ""


class AssignForm(msgspec.Struct, kw_only=True):
    agent: str = ""


class PriorityForm(msgspec.Struct, kw_only=True):
    priority: str = ""


Form = Body(media_type=RequestEncodingType.URL_ENCODED)


def tickets_router(
    access: AccessReadModel,
    tickets: TicketsReadModel,
    customers: CustomersReadModel,
    inbox: InboxReadModel,
    agents: AgentBoardReadModel,
    apps: Callable[[], DomainApps],
    runner: AsyncRunner,
) -> Router:
    def names(tenant: str) -> dict[str, str]:
        """The tenant's agents and supervisors by id: whom a ticket may be given to."""
        return {a["id"]: a["name"] for a in agents.board(tenant)}

    def user_name(tenant: str, known: dict[str, str], user_id: str | None) -> str:
        if user_id is None:
            return ""
        if user_id in known:
            return known[user_id]
        user = access.user(user_id)
        return user.name if user is not None and user.tenant_id == tenant else user_id

    def list_page(
        request: Request[Any, Any, Any],
        principal: Principal,
        status_code: int = 200,
        error: str | None = None,
        **error_values: Any,
    ) -> Template:
        tenant = principal.tenant_id
        query = request.query_params
        chosen = {
            name: query.get(name) or ""
            for name in ("status", "priority", "sla", "assignee", "mine", "order")
        }
        rows: list[dict[str, Any]] = []
        if error is None:
            error, error_values = _bad_filter(chosen)
            if error is not None:
                status_code = HTTP_400_BAD_REQUEST
        if error is None:
            assignee = chosen["assignee"]
            if chosen["mine"]:
                assignee = principal.user_id
            rows = tickets.list(
                tenant,
                status=chosen["status"] or None,
                priority=chosen["priority"] or None,
                sla=chosen["sla"] or None,
                assignee=assignee if assignee and assignee != UNASSIGNED else None,
                unassigned=assignee == UNASSIGNED,
                order=chosen["order"] or "updated",  # type: ignore[arg-type]
                limit=LIST_LIMIT,
            )
        known = names(tenant)
        return page(
            request,
            "tickets.html",
            status_code,
            tenant=tenant,
            principal=principal,
            rows=rows,
            assignees={r["id"]: user_name(tenant, known, r["assignee"]) for r in rows},
            customers={r["id"]: _customer_name(customers, tenant, r["customer_id"]) for r in rows},
            agents=known,
            chosen=chosen,
            statuses=STATUSES,
            priorities=PRIORITIES,
            kinds=KINDS,
            sla_states=SLA_STATES,
            orders=ORDERS,
            error=error,
            error_values=error_values,
        )

    async def load(principal: Principal, ticket_id: str) -> dict[str, Any] | None:
        """The ticket from the domain; None if the tenant has no such one."""
        return await owned(runner, apps().tickets.get, principal.tenant_id, ticket_id)

    async def ticket_page(
        request: Request[Any, Any, Any],
        ticket_id: str,
        status_code: int = 200,
        error: str | None = None,
        error_values: dict[str, Any] | None = None,
        comment: str = "",
    ) -> Template:
        principal = desk_principal(request)
        tenant = principal.tenant_id
        ticket = await load(principal, ticket_id)
        if ticket is None:
            return list_page(request, principal, HTTP_404_NOT_FOUND, "tickets.not_found")
        now = datetime.now(UTC)
        row = tickets.get(tenant, ticket["id"]) or {}
        times = {c["id"]: c["at"] for c in row.get("comments", [])}
        known = names(tenant)
        customer = None
        if ticket["customer_id"]:
            survivor = customers.merged_into(tenant, ticket["customer_id"])
            customer = customers.get(tenant, survivor or ticket["customer_id"])
        conversations = [
            inbox.get(tenant, cid) or {"id": cid, "channel": None, "status": None}
            for cid in ticket["conversation_ids"]
        ]
        return page(
            request,
            "ticket.html",
            status_code,
            tenant=tenant,
            principal=principal,
            ticket=ticket,
            row=row,
            sla=tickets.sla(tenant, ticket["id"], now),
            now=iso(now),
            comments=[
                {
                    **c,
                    "at": times.get(c["id"]),
                    "author": user_name(tenant, known, c["author_id"]),
                }
                for c in ticket["comments"]
            ],
            assignee=user_name(tenant, known, ticket["assignee"]),
            agents=known,
            customer=customer,
            conversations=conversations,
            moves=[
                s.value for s in TicketStatus if s in TRANSITIONS[TicketStatus(ticket["status"])]
            ],
            may_act=may_work_on(principal, ticket),
            manager=principal.role in MANAGER_ROLES,
            priorities=PRIORITIES,
            key=str(uuid4()),
            comment=comment,
            max_comment=MAX_COMMENT,
            error=error,
            error_values=error_values or {},
        )

    async def command(
        request: Request[Any, Any, Any],
        ticket_id: str,
        run: Callable[[Principal, UUID], Any],
        comment: str = "",
        check: Callable[[Principal, dict[str, Any]], None] | None = check_work_on,
    ) -> Response[Any]:
        """Runs a domain command on the tenant's ticket, then back to it; `check` raises
        TicketForbidden if the user may not (by default: unless the ticket is theirs to
        work on)."""
        principal = desk_principal(request)
        ticket = await load(principal, ticket_id)
        if ticket is None:
            return list_page(request, principal, HTTP_404_NOT_FOUND, "tickets.not_found")
        if check is not None:
            check(principal, ticket)
        try:
            await runner(run, principal, UUID(ticket_id))
        except TicketClosed:
            return await ticket_page(
                request, ticket_id, HTTP_409_CONFLICT, "tickets.closed", comment=comment
            )
        except DomainError as e:
            code = HTTP_409_CONFLICT if isinstance(e, StatusChangeRefused) else HTTP_400_BAD_REQUEST
            return await ticket_page(
                request, ticket_id, code, "tickets.refused", {"reason": str(e)}, comment=comment
            )
        return Redirect(ticket_url(principal.tenant_id, ticket_id), status_code=303)

    @get("/t/{tenant_id:str}/tickets", include_in_schema=False)
    async def ticket_list(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        return list_page(request, desk_principal(request))

    @post("/t/{tenant_id:str}/tickets", include_in_schema=False)
    async def raise_ticket(
        request: Request[Any, Any, Any], tenant_id: str, data: Annotated[NewTicketForm, Form]
    ) -> Response[Any]:
        principal = desk_principal(request)
        tenant = principal.tenant_id
        priority = data.priority or Priority.NORMAL.value
        customer = data.customer_id.strip()
        error: tuple[str, dict[str, Any]] | None = None
        if data.kind not in KINDS:
            error = "tickets.bad_kind", {"value": data.kind}
        elif priority not in PRIORITIES:
            error = "tickets.bad_priority", {"value": priority}
        elif customer and not await _tenants_customer(apps, runner, tenant, customer):
            error = "tickets.bad_customer", {"value": customer}
        if error is not None:
            return list_page(request, principal, HTTP_400_BAD_REQUEST, error[0], **error[1])
        try:
            ticket_id = await runner(
                lambda: apps().tickets.raise_ticket(
                    tenant,
                    data.title,
                    kind=data.kind,
                    description=data.description,
                    priority=priority,
                    customer_id=UUID(customer) if customer else None,
                )
            )
        except DomainError as e:
            return list_page(
                request, principal, HTTP_400_BAD_REQUEST, "tickets.refused", reason=str(e)
            )
        return Redirect(ticket_url(tenant, str(ticket_id)), status_code=303)

    @get("/t/{tenant_id:str}/tickets/{ticket_id:str}", include_in_schema=False)
    async def ticket(request: Request[Any, Any, Any], tenant_id: str, ticket_id: str) -> Template:
        return await ticket_page(request, ticket_id)

    @post("/t/{tenant_id:str}/tickets/{ticket_id:str}/comment", include_in_schema=False)
    async def comment(
        request: Request[Any, Any, Any],
        tenant_id: str,
        ticket_id: str,
        data: Annotated[CommentForm, Form],
    ) -> Response[Any]:
        body = data.body.strip()
        error = None
        if not body:
            error, values = "tickets.empty_comment", {}
        elif len(body) > MAX_COMMENT:
            error, values = "tickets.too_long", {"limit": MAX_COMMENT}
        if error is not None:
            principal = desk_principal(request)
            if await load(principal, ticket_id) is None:
                return list_page(request, principal, HTTP_404_NOT_FOUND, "tickets.not_found")
            return await ticket_page(
                request, ticket_id, HTTP_400_BAD_REQUEST, error, values, comment=data.body
            )
        # A key the form did not bring (or a forged one) is a new comment, not an error.
        key = UUID(data.key) if is_uuid(data.key) else uuid4()
        public = data.public in ("1", "on", "true")

        def add(principal: Principal, tid: UUID) -> None:
            apps().tickets.comment(
                principal.tenant_id, tid, UUID(principal.user_id), body, public, comment_id=key
            )

        # Any agent of the tenant comments on any of its tickets.
        return await command(request, ticket_id, add, comment=data.body, check=None)

    @post("/t/{tenant_id:str}/tickets/{ticket_id:str}/status", include_in_schema=False)
    async def status(
        request: Request[Any, Any, Any],
        tenant_id: str,
        ticket_id: str,
        data: Annotated[StatusForm, Form],
    ) -> Response[Any]:
        if data.status not in STATUSES:
            return await refuse(request, ticket_id, "tickets.bad_status", value=data.status)

        def move(principal: Principal, tid: UUID) -> None:
            apps().tickets.change_status(principal.tenant_id, tid, data.status)

        return await command(request, ticket_id, move)

    @post("/t/{tenant_id:str}/tickets/{ticket_id:str}/assign", include_in_schema=False)
    async def assign(
        request: Request[Any, Any, Any],
        tenant_id: str,
        ticket_id: str,
        data: Annotated[AssignForm, Form],
    ) -> Response[Any]:
        principal = desk_principal(request)
        agent = principal.user_id if data.agent == "me" else data.agent.strip()
        if is_uuid(agent):
            agent = str(UUID(agent))
        ticket = await load(principal, ticket_id)
        if ticket is None:
            return list_page(request, principal, HTTP_404_NOT_FOUND, "tickets.not_found")
        check_work_on(principal, ticket)
        if principal.role not in MANAGER_ROLES and agent not in ("", principal.user_id):
            raise TicketForbidden("tickets.assign_self_only")
        if agent:
            user = access.user(agent) if is_uuid(agent) else None
            if user is None or user.tenant_id != principal.tenant_id:
                return await refuse(request, ticket_id, "tickets.bad_assignee", value=agent)
            if user.role not in ASSIGNABLE_ROLES:
                return await refuse(request, ticket_id, "tickets.not_assignable", name=user.name)

        def give(principal: Principal, tid: UUID) -> None:
            if agent:
                apps().tickets.assign(principal.tenant_id, tid, UUID(agent))
            else:
                apps().tickets.unassign(principal.tenant_id, tid)

        return await command(request, ticket_id, give)

    @post("/t/{tenant_id:str}/tickets/{ticket_id:str}/priority", include_in_schema=False)
    async def priority(
        request: Request[Any, Any, Any],
        tenant_id: str,
        ticket_id: str,
        data: Annotated[PriorityForm, Form],
    ) -> Response[Any]:
        if data.priority not in PRIORITIES:
            return await refuse(request, ticket_id, "tickets.bad_priority", value=data.priority)

        def change(principal: Principal, tid: UUID) -> None:
            apps().tickets.change_priority(principal.tenant_id, tid, data.priority)

        return await command(request, ticket_id, change)

    async def refuse(
        request: Request[Any, Any, Any], ticket_id: str, error: str, **values: Any
    ) -> Template:
        """The ticket's page again with why (400), or the list's 404 for no such ticket."""
        principal = desk_principal(request)
        if await load(principal, ticket_id) is None:
            return list_page(request, principal, HTTP_404_NOT_FOUND, "tickets.not_found")
        return await ticket_page(request, ticket_id, HTTP_400_BAD_REQUEST, error, values)

    return Router(
        path="/",
        route_handlers=[ticket_list, raise_ticket, ticket, comment, status, assign, priority],
        guards=[signed_in_guard(access)],
        exception_handlers={
            **PAGE_EXCEPTION_HANDLERS,
            RoleForbidden: forbidden("tickets.role_only"),
            TicketForbidden: ticket_forbidden,
        },
    )


def ticket_forbidden(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The 403 page of an agent acting on a ticket that is not theirs, saying why."""
    assert isinstance(exc, TicketForbidden)
    home = home_url(principal_of(request).tenant_id)
    return page(
        request, "forbidden.html", HTTP_403_FORBIDDEN, home=home, message_key=exc.message_key
    )


def _bad_filter(chosen: dict[str, str]) -> tuple[str | None, dict[str, Any]]:
    """The message key and values for the first filter that is none of its values."""
    allowed: dict[str, tuple[str, ...]] = {
        "status": STATUSES,
        "priority": PRIORITIES,
        "sla": SLA_STATES,
        "order": ORDERS,
        "mine": ("1",),
    }
    for name, values in allowed.items():
        if chosen[name] and chosen[name] not in values:
            return f"tickets.bad_{name}", {"value": chosen[name]}
    assignee = chosen["assignee"]
    if assignee and assignee != UNASSIGNED and not is_uuid(assignee):
        return "tickets.bad_assignee", {"value": assignee}
    return None, {}


async def _tenants_customer(
    apps: Callable[[], DomainApps], runner: AsyncRunner, tenant: str, customer_id: str
) -> bool:
    """Whether the id is of a live customer of the tenant (the domain's word, not a
    read model's, which may lag behind a customer registered a moment ago)."""
    if not is_uuid(customer_id):
        return False
    try:
        found = await runner(apps().customers.get, tenant, UUID(customer_id))
    except NotFound:
        return False
    return not found["merged_into"]


def _customer_name(customers: CustomersReadModel, tenant: str, customer_id: str | None) -> str:
    if customer_id is None:
        return ""
    found = customers.get(tenant, customer_id)
    if found is None:
        survivor = customers.merged_into(tenant, customer_id)
        found = customers.get(tenant, survivor) if survivor else None
    return str(found["name"]) if found else ""


def ticket_url(tenant_id: str, ticket_id: str) -> str:
    return f"{home_url(tenant_id)}tickets/{quote(ticket_id, safe='')}"
