"""The agent's inbox (CT2, CC3): conversations across channels as they arrive, one opened
with its customer's timeline (CT12), replies (from a reply template too, CT13), notes,
tags, resolving, handing over to another agent or a queue, tickets made from or linked
to it (CT17) — and the agent's own status (available, a break with a reason, wrap-up).

- `GET /t/<tenant>/inbox` lists the signed-in user's conversations from the inbox read
  model: open and pending first, then the others, each part newest activity first.
  `channel`, `status` and `sla` (on time, at risk, breached) filter it; a value that is
  none of those is a 400 page, not an empty list that looks like "nothing to do". A
  supervisor may look at an agent's with `agent`. `GET .../inbox/rows` is the list alone.
- Live: `GET /t/<tenant>/inbox/live` is a server-sent event stream of the changes that
  concern the list (the agent's inbox, its conversations' SLA) or, with `conversation`,
  that conversation (messages, tickets). It reads NATS `live.<tenant>.>` for the
  session's tenant, never one the browser names, and lets through only what the user may
  see; web/static/inbox.js then fetches the list's rows or the conversation's messages
  (`GET .../inbox/<id>/messages`) again.
- `GET /t/<tenant>/inbox/<id>` shows the conversation from the domain (the read model has
  no message bodies), so what was just sent is there on the redirect after the POST.
  Another tenant's id is "not found", as an unknown one: its existence is not told.
  An agent opens only what is assigned to them; a supervisor opens any of the tenant's.
- Writes go to the domain on its worker threads; each POST redirects (303) back, and a
  refused one shows the page again with the reason (4xx), never a 500.
- A reply carries an idempotency key made when the form was drawn, so a form posted
  twice (a double click, a resend after a timeout) sends one message.
- The reply templates offered are the tenant's for the conversation's channel, from the
  templates read model (projections.templates); the chosen one is filled in by the domain.
- `POST .../<id>/handover` gives the conversation to an agent of the tenant (assigned,
  or transferred from whoever holds it) or to a queue (`to` = `agent:<id>` or
  `queue:<id>`); an agent hands over their own, a supervisor anyone's.
- `POST .../<id>/ticket` raises a ticket for the conversation's customer with the
  conversation linked; `POST .../<id>/link` links it to an existing ticket of the same
  customer (another tenant's or an unknown ticket is 404, another customer's 400). The
  tickets show on the page, linking to `/t/<tenant>/tickets/<id>`.
- `POST /t/<tenant>/status`: available, a break (with a reason), or the end of wrap-up.
- Offers: the router (projections.routing) rings an available agent for a queued
  conversation (their presence RINGING, naming it). Every inbox page's status bar then
  shows the offer — channel, customer, the first message, how long it has rung — from the
  domain (the presence) and the agent board (since when). `POST .../<id>/accept` assigns
  the conversation to the user, only if they ring for exactly that one (else 409; another
  tenant's or an unknown id is 404), and opens it; the router then puts them on it.
  `POST .../<id>/decline` declines the offer ("rejected", recorded as such in the
  conversation's routing history): the router offers it to the next agent, and to the
  decliner again only if nobody else can take it. `GET /t/<tenant>/inbox/status` is the
  status bar alone; the live stream passes the user's own agent board row's changes
  (never another's), on which web/static/inbox.js fetches it again — an offer arriving
  or ending, a status posted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from uuid import UUID, uuid4

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, ServerSentEvent, Template
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
)
from nats.aio.client import Client as NatsClient

from domain.apps import DomainApps
from domain.asyncapp import AsyncRunner
from domain.base import DomainError, NotFound
from domain.conversations import (
    MAX_BODY,
    MAX_NOTE,
    MAX_TAG,
    ConversationClosed,
    ConversationStatus,
)
from domain.routing import WorkKind
from domain.tickets import MAX_DESCRIPTION, MAX_TITLE, TicketClosed, TicketKind, TicketStatus
from domain.vocabulary import Channel, Priority
from projections import live
from projections.access import AccessReadModel, Principal
from projections.boards import AgentBoardReadModel, QueueBoardReadModel
from projections.customers import CustomersReadModel
from projections.inbox import SLA_STATES, InboxReadModel
from projections.templates import TemplatesReadModel
from projections.tickets import TicketsReadModel
from projections.timeline import TimelineReadModel
from web.pages.auth import (
    PAGE_EXCEPTION_HANDLERS,
    home_url,
    page,
    principal_of,
    signed_in_guard,
)
from web.pages.owned import is_uuid, own_page, owned
from web.pages.streams import change_events

log = logging.getLogger(__name__)

INBOX_ROLES = frozenset({"agent", "supervisor"})
# Who may open any conversation of the tenant and look at another agent's inbox.
OVERSEERS = frozenset({"supervisor"})
CHANNELS = tuple(c.value for c in Channel)
STATUSES = tuple(s.value for s in ConversationStatus)
ACTIVE = ("open", "pending")
DONE = ("resolved", "closed")
LIST_LIMIT = 100
TIMELINE_LIMIT = 50
MAX_BREAK_REASON = 100
# How much of an offered conversation's first message its card shows.
OFFER_PREVIEW = 300
# Who a conversation may be handed to: those who take conversations.
TAKERS = frozenset({"agent", "supervisor"})
PRIORITIES = tuple(p.value for p in Priority)
KINDS = tuple(k.value for k in TicketKind)
# A conversation is linked to tickets still being worked, not to closed ones.
LINKABLE = tuple(s.value for s in TicketStatus if s is not TicketStatus.CLOSED)


class RoleForbidden(Exception):
    """A signed-in user of the tenant whose role has no inbox."""

    # As an HTTP error: answered by its page, logged without a traceback (web.app).
    status_code = 403


class NotAssignedToYou(Exception):
    """An agent asked for a conversation someone else holds."""

    # As an HTTP error: answered by its page, logged without a traceback (web.app).
    status_code = 403


class NotOffered(Exception):
    """The user is not ringing for the conversation they accept or decline."""


class ReplyForm(msgspec.Struct, kw_only=True):
    body: str = ""
    key: str = ""
    template_id: str = ""


class NoteForm(msgspec.Struct, kw_only=True):
    body: str = ""


class TagForm(msgspec.Struct, kw_only=True):
    tag: str = ""


class StatusForm(msgspec.Struct, kw_only=True):
    presence: str = ""
    reason: str = ""
    back: str = ""


class HandoverForm(msgspec.Struct, kw_only=True):
    to: str = ""  # "agent:<id>" or "queue:<id>"


class TicketForm(msgspec.Struct, kw_only=True):
    title: str = ""
    kind: str = ""
    priority: str = ""
    description: str = ""


class LinkForm(msgspec.Struct, kw_only=True):
    ticket: str = ""


Form = Body(media_type=RequestEncodingType.URL_ENCODED)


def inbox_router(
    access: AccessReadModel,
    inbox: InboxReadModel,
    timeline: TimelineReadModel,
    customers: CustomersReadModel,
    tickets: TicketsReadModel,
    replies: TemplatesReadModel,
    agents: AgentBoardReadModel,
    queues: QueueBoardReadModel,
    apps: Callable[[], DomainApps],
    runner: AsyncRunner,
    nats: Callable[[], NatsClient],
) -> Router:
    def allowed(request: Request[Any, Any, Any]) -> Principal:
        principal = principal_of(request)
        if principal.role not in INBOX_ROLES:
            raise RoleForbidden
        return principal

    async def me(principal: Principal) -> dict[str, Any] | None:
        """The user's presence for the header; None if the domain no longer knows them."""
        try:
            return await runner(apps().agents.get, principal.tenant_id, UUID(principal.user_id))
        except (NotFound, ValueError):
            return None

    async def offer_of(principal: Principal, mine: dict[str, Any] | None) -> dict[str, Any] | None:
        """The conversation the user rings for, as its card shows it; None if none (a call
        rings on the phone panel)."""
        work = mine.get("conversation_id") if mine else None
        if mine is None or mine["presence"] != "ringing" or not work or not is_uuid(work):
            return None
        tenant = principal.tenant_id
        try:
            conversation = await runner(apps().conversations.get, tenant, UUID(work))
        except NotFound:
            return None
        messages = conversation["messages"]
        first = next((m for m in messages if m["direction"] == "inbound"), None)
        text = str((first or (messages[0] if messages else {})).get("body") or "")
        if len(text) > OFFER_PREVIEW:
            text = text[:OFFER_PREVIEW].rstrip() + "…"
        # Since when: the board's row, once it has caught up with this ring; else now.
        row = agents.agent(tenant, principal.user_id)
        since = datetime.now(UTC)
        if row and row["presence"] == "ringing" and row["conversation_id"] == work:
            since = datetime.fromisoformat(row["since"])
        return {
            "id": conversation["id"],
            "channel": conversation["channel"],
            "subject": conversation["subject"],
            "customer": _customer_name(customers, tenant, conversation["customer_id"]),
            "text": text,
            "seconds": max(0, int((datetime.now(UTC) - since).total_seconds())),
        }

    async def status_of(principal: Principal, back: str) -> dict[str, Any]:
        """What the status bar (inbox_status.html) draws, for a page at `back`."""
        mine = await me(principal)
        return {
            "me": mine,
            "offer": await offer_of(principal, mine),
            "back": back,
            "status_url": _list_url(principal.tenant_id, {"back": back}, "inbox/status"),
        }

    def list_filters(
        request: Request[Any, Any, Any], principal: Principal
    ) -> tuple[dict[str, str | None], str | None, dict[str, Any]]:
        """The list's filters from the query, and the reason (a message key) if one is bad."""
        query = request.query_params
        given = {
            "channel": query.get("channel") or None,
            "status": query.get("status") or None,
            "sla": query.get("sla") or None,
            "agent": query.get("agent") or principal.user_id,
        }
        channel, status, sla, agent = given.values()
        if channel is not None and channel not in CHANNELS:
            return given, "inbox.bad_channel", {"value": channel}
        if status is not None and status not in STATUSES:
            return given, "inbox.bad_status", {"value": status}
        if sla is not None and sla not in SLA_STATES:
            return given, "inbox.bad_sla", {"value": sla}
        if agent != principal.user_id and principal.role not in OVERSEERS:
            raise NotAssignedToYou
        if agent is None or not is_uuid(agent):
            return given, "inbox.bad_agent", {"value": agent}
        return given, None, {}

    def list_rows(tenant: str, filters: dict[str, str | None]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        status = filters["status"]
        # Open and pending first: what still needs the agent comes before the done.
        for part in (status,) if status else (ACTIVE, DONE):
            rows += inbox.for_agent(
                tenant,
                filters["agent"] or "",
                channel=filters["channel"],
                status=part,
                sla=filters["sla"],
                limit=LIST_LIMIT,
            )
        return rows

    async def list_page(
        request: Request[Any, Any, Any],
        principal: Principal,
        status_code: int = 200,
        error: str | None = None,
        fragment: bool = False,
        **error_values: Any,
    ) -> Template:
        tenant = principal.tenant_id
        filters, bad, bad_values = list_filters(request, principal)
        rows: list[dict[str, Any]] = []
        if error is None and bad is not None:
            error, error_values, status_code = bad, bad_values, HTTP_400_BAD_REQUEST
        if error is None:
            rows = list_rows(tenant, filters)
        names = {
            r["customer_id"]: _customer_name(customers, tenant, r["customer_id"]) for r in rows
        }
        other = filters["agent"] if filters["agent"] != principal.user_id else None
        shown = {**filters, "agent": other}
        back = _list_url(tenant, shown)
        status = {"me": None} if fragment else await status_of(principal, back)
        return page(
            request,
            "inbox_rows.html" if fragment else "inbox.html",
            status_code,
            tenant=tenant,
            principal=principal,
            rows=rows,
            names=names,
            channels=CHANNELS,
            statuses=STATUSES,
            sla_states=SLA_STATES,
            channel=filters["channel"] or "",
            status=filters["status"] or "",
            sla=filters["sla"] or "",
            agent=other or "",
            error=error,
            error_values=error_values,
            rows_url=_list_url(tenant, shown, "inbox/rows"),
            live_url=_list_url(tenant, {"agent": other}, "inbox/live"),
            **status,
        )

    async def conversation_page(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        status_code: int = 200,
        error: str | None = None,
        error_values: dict[str, Any] | None = None,
        reply: str = "",
        template_id: str = "",
        ticket: dict[str, str] | None = None,
    ) -> Template | Response[Any]:
        principal = allowed(request)
        conversation = await load(principal, conversation_id)
        if conversation is None:
            return await list_page(request, principal, HTTP_404_NOT_FOUND, "inbox.not_found")
        tenant = principal.tenant_id
        customer = customers.get(tenant, conversation["customer_id"]) or {}
        templates = replies.for_channel(tenant, conversation["channel"])
        chosen = request.query_params.get("template")
        if chosen and error is None and not reply:
            found = next((t for t in templates if t["id"] == chosen), None)
            if found is None:
                status_code, error = HTTP_404_NOT_FOUND, "conversation.no_template"
            else:
                context = _template_context(principal, customer, conversation)
                reply = await runner(apps().templates.render, tenant, UUID(found["id"]), context)
                template_id = found["id"]
        linked = tickets.for_conversation(tenant, conversation["id"])
        linked_ids = {t["id"] for t in linked}
        open_tickets = [
            t
            for t in tickets.list(tenant, customer_id=conversation["customer_id"], status=LINKABLE)
            if t["id"] not in linked_ids
        ]
        line = inbox.get(tenant, conversation["id"]) or {}
        now = datetime.now(UTC)
        back = _conversation_url(tenant, conversation["id"])
        return page(
            request,
            "conversation.html",
            status_code,
            tenant=tenant,
            principal=principal,
            **await status_of(principal, back),
            conversation=conversation,
            customer=customer,
            entries=timeline.for_customer(
                tenant, conversation["customer_id"], limit=TIMELINE_LIMIT
            ),
            templates=templates,
            reply=reply,
            template_id=template_id,
            key=str(uuid4()),
            error=error,
            error_values=error_values or {},
            limits={
                "reply": MAX_BODY,
                "note": MAX_NOTE,
                "tag": MAX_TAG,
                "title": MAX_TITLE,
                "description": MAX_DESCRIPTION,
            },
            sla_state=line.get("sla_state"),
            tickets=linked,
            open_tickets=open_tickets,
            takers=[
                a
                for a in agents.board(tenant)
                if a["role"] in TAKERS and a["id"] != conversation["assignee"]
            ],
            # The queues' names only: an empty period spares the board its day's counts.
            queues=[q for q in queues.board(tenant, since=now, until=now) if q["name"]],
            ticket=ticket or {"title": conversation["subject"] or ""},
            kinds=KINDS,
            priorities=PRIORITIES,
            live_url=_list_url(tenant, {"conversation": conversation["id"]}, "inbox/live"),
            messages_url=_conversation_url(tenant, conversation["id"]) + "/messages",
        )

    async def find(principal: Principal, conversation_id: str) -> dict[str, Any] | None:
        """The tenant's conversation, whoever holds it; None if the tenant has no such one."""
        return await owned(runner, apps().conversations.get, principal.tenant_id, conversation_id)

    async def load(principal: Principal, conversation_id: str) -> dict[str, Any] | None:
        """The conversation if the user may open it; None if the tenant has no such one."""
        conversation = await find(principal, conversation_id)
        if conversation is None:
            return None
        if principal.role not in OVERSEERS and conversation["assignee"] != principal.user_id:
            raise NotAssignedToYou
        return conversation

    async def command(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        run: Callable[[Principal, UUID], Any],
        then: str | None = None,
        **redraw: Any,
    ) -> Response[Any]:
        """Runs a domain command on a conversation the user may open, then back to it
        (or to `then`)."""
        principal = allowed(request)
        if await load(principal, conversation_id) is None:
            return await list_page(request, principal, HTTP_404_NOT_FOUND, "inbox.not_found")
        try:
            await runner(run, principal, UUID(conversation_id))
        except ConversationClosed:
            return await conversation_page(
                request, tenant_id, conversation_id, HTTP_409_CONFLICT, "conversation.closed"
            )
        except TicketClosed:
            return await conversation_page(
                request, tenant_id, conversation_id, HTTP_409_CONFLICT, "inbox.ticket_closed"
            )
        except DomainError as e:
            return await conversation_page(
                request,
                tenant_id,
                conversation_id,
                HTTP_400_BAD_REQUEST,
                "conversation.refused",
                {"reason": str(e)},
                **redraw,
            )
        back = then or _conversation_url(principal.tenant_id, conversation_id)
        return Redirect(back, status_code=303)

    async def refuse(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        error: str,
        values: dict[str, Any] | None = None,
        status: int = HTTP_400_BAD_REQUEST,
        **redraw: Any,
    ) -> Response[Any]:
        principal = allowed(request)
        if await load(principal, conversation_id) is None:
            return await list_page(request, principal, HTTP_404_NOT_FOUND, "inbox.not_found")
        return await conversation_page(
            request, tenant_id, conversation_id, status, error, values, **redraw
        )

    async def refuse_text(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        text: str,
        limit: int,
        empty: str,
        **redraw: Any,
    ) -> Response[Any] | None:
        """The page again with why, for text that is empty or over `limit`; else None."""
        if not text:
            return await refuse(request, tenant_id, conversation_id, empty)
        if len(text) > limit:
            values = {"limit": limit}
            return await refuse(
                request, tenant_id, conversation_id, "conversation.too_long", values, **redraw
            )
        return None

    @get("/t/{tenant_id:str}/inbox", include_in_schema=False)
    async def inbox_list(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        return await list_page(request, allowed(request))

    @get("/t/{tenant_id:str}/inbox/{conversation_id:str}", include_in_schema=False)
    async def conversation(
        request: Request[Any, Any, Any], tenant_id: str, conversation_id: str
    ) -> Template | Response[Any]:
        return await conversation_page(request, tenant_id, conversation_id)

    @post("/t/{tenant_id:str}/inbox/{conversation_id:str}/reply", include_in_schema=False)
    async def reply(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        data: Annotated[ReplyForm, Form],
    ) -> Response[Any]:
        body = data.body.strip()
        redraw = {"reply": data.body, "template_id": data.template_id}
        refused = await refuse_text(
            request,
            tenant_id,
            conversation_id,
            body,
            MAX_BODY,
            "conversation.empty_reply",
            **redraw,
        )
        if refused is not None:
            return refused
        # A key the form did not bring (or a forged one) is a new message, not an error.
        key = data.key if is_uuid(data.key) else str(uuid4())
        posted = str(UUID(data.template_id)) if is_uuid(data.template_id) else None

        def send(principal: Principal, cid: UUID) -> None:
            # Only one of the tenant's templates offered on the conversation's channel is
            # kept with the message; any other id (another tenant's, another channel's,
            # an archived or made-up one) is ignored.
            template = None
            if posted is not None:
                channel = apps().conversations.get(principal.tenant_id, cid)["channel"]
                offered = {t["id"] for t in replies.for_channel(principal.tenant_id, channel)}
                template = UUID(posted) if posted in offered else None
            apps().conversations.send_message(
                principal.tenant_id,
                cid,
                f"web-{key}",
                UUID(principal.user_id),
                body,
                template_id=template,
            )

        return await command(request, tenant_id, conversation_id, send, **redraw)

    @post("/t/{tenant_id:str}/inbox/{conversation_id:str}/note", include_in_schema=False)
    async def note(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        data: Annotated[NoteForm, Form],
    ) -> Response[Any]:
        body = data.body.strip()
        refused = await refuse_text(
            request, tenant_id, conversation_id, body, MAX_NOTE, "conversation.empty_note"
        )
        if refused is not None:
            return refused

        def add(principal: Principal, cid: UUID) -> None:
            apps().conversations.add_note(principal.tenant_id, cid, UUID(principal.user_id), body)

        return await command(request, tenant_id, conversation_id, add)

    @post("/t/{tenant_id:str}/inbox/{conversation_id:str}/tag", include_in_schema=False)
    async def tag(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        data: Annotated[TagForm, Form],
    ) -> Response[Any]:
        text = data.tag.strip()
        refused = await refuse_text(
            request, tenant_id, conversation_id, text, MAX_TAG, "conversation.empty_tag"
        )
        if refused is not None:
            return refused

        def add(principal: Principal, cid: UUID) -> None:
            apps().conversations.tag(principal.tenant_id, cid, text)

        return await command(request, tenant_id, conversation_id, add)

    @post("/t/{tenant_id:str}/inbox/{conversation_id:str}/resolve", include_in_schema=False)
    async def resolve(
        request: Request[Any, Any, Any], tenant_id: str, conversation_id: str
    ) -> Response[Any]:
        def done(principal: Principal, cid: UUID) -> None:
            apps().conversations.resolve(principal.tenant_id, cid)

        return await command(request, tenant_id, conversation_id, done)

    @get("/t/{tenant_id:str}/inbox/rows", include_in_schema=False)
    async def inbox_rows(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        return await list_page(request, allowed(request), fragment=True)

    @get("/t/{tenant_id:str}/inbox/status", include_in_schema=False)
    async def inbox_status(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        principal = allowed(request)
        back = _own_url(principal.tenant_id, request.query_params.get("back") or "")
        return page(
            request, "inbox_status.html", principal=principal, **await status_of(principal, back)
        )

    @post("/t/{tenant_id:str}/inbox/{conversation_id:str}/accept", include_in_schema=False)
    async def accept(
        request: Request[Any, Any, Any], tenant_id: str, conversation_id: str
    ) -> Response[Any]:
        principal = allowed(request)
        tenant, user = principal.tenant_id, UUID(principal.user_id)
        conversation = await find(principal, conversation_id)
        if conversation is None:
            return await list_page(request, principal, HTTP_404_NOT_FOUND, "inbox.not_found")
        cid = conversation["id"]

        def take() -> None:
            # Checked and taken on one worker thread, right before the assignment.
            mine = apps().agents.get(tenant, user)
            if mine["presence"] != "ringing" or mine["conversation_id"] != cid:
                raise NotOffered
            apps().conversations.assign(tenant, UUID(cid), user)

        try:
            await runner(take)
        except NotOffered:
            return await list_page(request, principal, HTTP_409_CONFLICT, "inbox.not_offered")
        except DomainError as e:
            return await list_page(
                request, principal, HTTP_409_CONFLICT, "inbox.offer_refused", reason=str(e)
            )
        # The router sees the conversation is theirs and puts them on it.
        return Redirect(_conversation_url(tenant, cid), status_code=303)

    @post("/t/{tenant_id:str}/inbox/{conversation_id:str}/decline", include_in_schema=False)
    async def decline(
        request: Request[Any, Any, Any], tenant_id: str, conversation_id: str
    ) -> Response[Any]:
        principal = allowed(request)
        tenant, user = principal.tenant_id, UUID(principal.user_id)
        conversation = await find(principal, conversation_id)
        if conversation is None:
            return await list_page(request, principal, HTTP_404_NOT_FOUND, "inbox.not_found")
        cid = conversation["id"]

        def reject() -> None:
            at = datetime.now(UTC)  # before the decline: the router re-offers after it
            # The domain refuses unless the user rings for exactly this conversation.
            apps().agents.decline_offer(tenant, user, cid, "rejected")
            # Then the routing history says they declined it (not that they did not
            # answer), and the router offers it to them again only after everyone else.
            # The decline stands if this fails: the router already puts the agent it last
            # offered the work to last.
            try:
                apps().routing.rejected(tenant, WorkKind.CONVERSATION, cid, user, at)
            except Exception:
                log.exception("the decline of %s by %s is not in its routing history", cid, user)

        try:
            await runner(reject)
        except DomainError:
            return await list_page(request, principal, HTTP_409_CONFLICT, "inbox.not_offered")
        return Redirect(f"{home_url(tenant)}inbox", status_code=303)

    @get("/t/{tenant_id:str}/inbox/live", include_in_schema=False)
    async def inbox_live(request: Request[Any, Any, Any], tenant_id: str) -> Response[Any]:
        principal = allowed(request)
        tenant = principal.tenant_id
        opened = request.query_params.get("conversation")
        agent = principal.user_id
        if opened is not None:
            conversation = await load(principal, opened)
            if conversation is None:
                return await list_page(request, principal, HTTP_404_NOT_FOUND, "inbox.not_found")
            opened = conversation["id"]
        else:
            filters, error, values = list_filters(request, principal)
            if error is not None:
                return await list_page(request, principal, HTTP_400_BAD_REQUEST, error, **values)
            agent = filters["agent"] or agent

        own = principal.user_id

        def concerns(change: live.LiveChange) -> bool:
            if change.readmodel == agents.name:
                # The status bar's: the user's own row, never another agent's.
                return change.kind == "agent" and change.key == own
            if opened is not None:
                return change.key == opened and (change.readmodel, change.kind) in _OPENED
            if change.readmodel != inbox.name:
                return False
            if change.kind == "agent_inbox":
                return change.key == agent
            if change.kind == "conversation_sla":
                line = inbox.get(tenant, change.key)
                return line is not None and line["assignee"] == agent
            return False

        # From the session's tenant (the guard made sure it is the path's): the wall.
        return ServerSentEvent(change_events(nats(), live.tenant_filter(tenant), concerns))

    @get("/t/{tenant_id:str}/inbox/{conversation_id:str}/messages", include_in_schema=False)
    async def messages(
        request: Request[Any, Any, Any], tenant_id: str, conversation_id: str
    ) -> Template | Response[Any]:
        principal = allowed(request)
        conversation = await load(principal, conversation_id)
        if conversation is None:
            return await list_page(request, principal, HTTP_404_NOT_FOUND, "inbox.not_found")
        tenant = principal.tenant_id
        return page(
            request,
            "conversation_messages.html",
            principal=principal,
            conversation=conversation,
            customer=customers.get(tenant, conversation["customer_id"]) or {},
        )

    @post("/t/{tenant_id:str}/inbox/{conversation_id:str}/handover", include_in_schema=False)
    async def handover(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        data: Annotated[HandoverForm, Form],
    ) -> Response[Any]:
        principal = allowed(request)
        tenant = principal.tenant_id
        kind, _, target = data.to.partition(":")
        if kind not in ("agent", "queue") or not is_uuid(target):
            values = {"value": data.to}
            return await refuse(request, tenant_id, conversation_id, "inbox.bad_handover", values)
        to = UUID(target)
        if kind == "agent":
            try:
                taker = await runner(apps().agents.get, tenant, to)
            except NotFound:
                taker = None
            if taker is None or not taker["active"]:
                return await refuse(
                    request, tenant_id, conversation_id, "inbox.no_agent", status=404
                )
            if taker["role"] not in TAKERS:
                return await refuse(request, tenant_id, conversation_id, "inbox.not_a_taker")
        else:
            try:
                await runner(apps().queues.get, tenant, to)
            except NotFound:
                return await refuse(
                    request, tenant_id, conversation_id, "inbox.no_queue", status=404
                )

        def hand(principal: Principal, cid: UUID) -> None:
            conversations = apps().conversations
            if kind == "queue":
                conversations.move_to_queue(tenant, cid, to)
            elif conversations.get(tenant, cid)["assignee"] is None:
                conversations.assign(tenant, cid, to)
            else:
                conversations.transfer(tenant, cid, to)

        # An agent who handed their conversation over can no longer open it: to the list.
        keeps = principal.role in OVERSEERS or str(to) == principal.user_id
        then = None if keeps else f"{home_url(tenant)}inbox"
        return await command(request, tenant_id, conversation_id, hand, then)

    @post("/t/{tenant_id:str}/inbox/{conversation_id:str}/ticket", include_in_schema=False)
    async def raise_ticket(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        data: Annotated[TicketForm, Form],
    ) -> Response[Any]:
        title, description = data.title.strip(), data.description.strip()
        redraw: dict[str, Any] = {"ticket": {"title": data.title, "description": data.description}}
        refused = await refuse_text(
            request, tenant_id, conversation_id, title, MAX_TITLE, "inbox.empty_title", **redraw
        )
        if refused is not None:
            return refused
        values: dict[str, Any]
        if len(description) > MAX_DESCRIPTION:
            values = {"limit": MAX_DESCRIPTION}
            return await refuse(
                request, tenant_id, conversation_id, "conversation.too_long", values, **redraw
            )
        if data.kind not in KINDS or data.priority not in PRIORITIES:
            values = {"value": data.kind if data.kind not in KINDS else data.priority}
            return await refuse(
                request, tenant_id, conversation_id, "inbox.bad_ticket", values, **redraw
            )

        def raise_it(principal: Principal, cid: UUID) -> None:
            tenant = principal.tenant_id
            conversation = apps().conversations.get(tenant, cid)
            # The ticket keeps the service commitment of the queue the conversation came
            # through (its SLA policy), so its due times count from now.
            policy = None
            if conversation["queue_id"]:
                with contextlib.suppress(NotFound):
                    queue = apps().queues.get(tenant, UUID(conversation["queue_id"]))
                    policy = queue["sla_policy_id"]
            apps().tickets.raise_ticket(
                tenant,
                title,
                kind=data.kind,
                description=description,
                priority=data.priority,
                customer_id=UUID(conversation["customer_id"]),
                conversation_ids=[cid],
                sla_policy_id=UUID(policy) if policy else None,
            )

        return await command(request, tenant_id, conversation_id, raise_it, **redraw)

    @post("/t/{tenant_id:str}/inbox/{conversation_id:str}/link", include_in_schema=False)
    async def link_ticket(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        data: Annotated[LinkForm, Form],
    ) -> Response[Any]:
        principal = allowed(request)
        tenant = principal.tenant_id
        conversation = await load(principal, conversation_id)
        if conversation is None:
            return await list_page(request, principal, HTTP_404_NOT_FOUND, "inbox.not_found")
        if not is_uuid(data.ticket):
            values = {"value": data.ticket}
            return await refuse(request, tenant_id, conversation_id, "inbox.bad_ticket", values)
        ticket_id = UUID(data.ticket)
        try:
            found = await runner(apps().tickets.get, tenant, ticket_id)
        except NotFound:
            return await refuse(request, tenant_id, conversation_id, "inbox.no_ticket", status=404)
        if found["customer_id"] != conversation["customer_id"]:
            return await refuse(request, tenant_id, conversation_id, "inbox.other_customer")

        def link(principal: Principal, cid: UUID) -> None:
            apps().tickets.link_conversation(principal.tenant_id, ticket_id, cid)

        return await command(request, tenant_id, conversation_id, link)

    @post("/t/{tenant_id:str}/status", include_in_schema=False)
    async def set_status(
        request: Request[Any, Any, Any], tenant_id: str, data: Annotated[StatusForm, Form]
    ) -> Response[Any]:
        principal = allowed(request)
        tenant, user = principal.tenant_id, UUID(principal.user_id)
        reason = data.reason.strip()
        if data.presence == "available":
            call: Callable[[], None] = lambda: apps().agents.go_available(tenant, user)  # noqa: E731
        elif data.presence == "break" and not reason:
            return await list_page(request, principal, HTTP_400_BAD_REQUEST, "status.no_reason")
        elif data.presence == "break" and len(reason) > MAX_BREAK_REASON:
            values: dict[str, Any] = {"limit": MAX_BREAK_REASON}
            return await list_page(
                request, principal, HTTP_400_BAD_REQUEST, "conversation.too_long", **values
            )
        elif data.presence == "break":
            call = lambda: apps().agents.take_break(tenant, user, reason)  # noqa: E731
        elif data.presence == "end_wrap_up":
            call = lambda: apps().agents.finish_wrap_up(tenant, user)  # noqa: E731
        else:
            return await list_page(request, principal, HTTP_400_BAD_REQUEST, "status.unknown")
        try:
            await runner(call)
        except DomainError as e:
            return await list_page(
                request, principal, HTTP_409_CONFLICT, "status.refused", reason=str(e)
            )
        return Redirect(_own_url(tenant, data.back), status_code=303)

    return Router(
        path="/",
        route_handlers=[
            inbox_list,
            inbox_rows,
            inbox_live,
            inbox_status,
            accept,
            decline,
            conversation,
            messages,
            reply,
            note,
            tag,
            resolve,
            handover,
            raise_ticket,
            link_ticket,
            set_status,
        ],
        guards=[signed_in_guard(access)],
        exception_handlers={
            **PAGE_EXCEPTION_HANDLERS,
            RoleForbidden: _forbidden("inbox.role_only"),
            NotAssignedToYou: _forbidden("inbox.not_assigned"),
        },
    )


# What an opened conversation's page fetches again for: its line, its SLA, its tickets.
_OPENED = frozenset(
    {("inbox", "conversation"), ("inbox", "conversation_sla"), ("tickets", "conversation_tickets")}
)


def _template_context(
    principal: Principal, customer: dict[str, Any], conversation: dict[str, Any]
) -> dict[str, Any]:
    identities = {kind: value for kind, value in customer.get("identities", [])[::-1]}
    return {
        "customer": {
            "name": customer.get("name"),
            "phone": identities.get("phone"),
            "email": identities.get("email"),
        },
        "agent": {
            "name": principal.name,
            "email": principal.login if "@" in principal.login else None,
        },
        "tenant": {"name": principal.tenant_id},
    }


def _customer_name(customers: CustomersReadModel, tenant: str, customer_id: str) -> str:
    found = customers.get(tenant, customer_id)
    return str(found["name"]) if found else ""


def _conversation_url(tenant_id: str, conversation_id: str) -> str:
    return f"{home_url(tenant_id)}inbox/{quote(conversation_id, safe='')}"


def _list_url(tenant_id: str, given: dict[str, str | None], path: str = "inbox") -> str:
    query = urlencode({k: v for k, v in given.items() if v})
    return f"{home_url(tenant_id)}{path}" + (f"?{query}" if query else "")


def _own_url(tenant_id: str, back: str) -> str:
    """`back` if it is one of this tenant's pages, never elsewhere; else the inbox."""
    return own_page(tenant_id, back) or home_url(tenant_id) + "inbox"


def _forbidden(message_key: str) -> Callable[[Request[Any, Any, Any], Exception], Response[Any]]:
    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        home = home_url(principal_of(request).tenant_id)
        return page(
            request, "forbidden.html", HTTP_403_FORBIDDEN, home=home, message_key=message_key
        )

    return handle
