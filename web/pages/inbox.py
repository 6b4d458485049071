"""The agent's inbox (CT2, CC3), first slice: conversations across channels, one opened
with its customer's timeline (CT12), replies (from a reply template too, CT13), notes,
tags, resolving — and the agent's own status (available, or a break with a reason).

- `GET /t/<tenant>/inbox` lists the signed-in user's conversations from the inbox read
  model: open and pending first, then the others, each part newest activity first.
  `channel` and `status` filter it; a value that is neither is a 400 page, not an empty
  list that looks like "nothing to do". A supervisor may look at an agent's with `agent`.
- `GET /t/<tenant>/inbox/<id>` shows the conversation from the domain (the read model has
  no message bodies), so what was just sent is there on the redirect after the POST.
  Another tenant's id is "not found", as an unknown one: its existence is not told.
  An agent opens only what is assigned to them; a supervisor opens any of the tenant's.
- Writes go to the domain on its worker threads; each POST redirects (303) back, and a
  refused one shows the page again with the reason (4xx), never a 500.
- A reply carries an idempotency key made when the form was drawn, so a form posted
  twice (a double click, a resend after a timeout) sends one message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from uuid import UUID, uuid4

import msgspec
from eventsourcing.utils import get_topic
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
from domain.conversations import (
    MAX_BODY,
    MAX_NOTE,
    MAX_TAG,
    ConversationClosed,
    ConversationStatus,
)
from domain.templates import ReplyTemplate, ReplyTemplates
from domain.vocabulary import Channel
from projections.access import AccessReadModel, Principal
from projections.customers import CustomersReadModel
from projections.inbox import InboxReadModel
from projections.timeline import TimelineReadModel
from web.pages.auth import (
    PAGE_EXCEPTION_HANDLERS,
    home_url,
    page,
    principal_of,
    signed_in_guard,
)

INBOX_ROLES = frozenset({"agent", "supervisor"})
# Who may open any conversation of the tenant and look at another agent's inbox.
OVERSEERS = frozenset({"supervisor"})
CHANNELS = tuple(c.value for c in Channel)
STATUSES = tuple(s.value for s in ConversationStatus)
ACTIVE = ("open", "pending")
DONE = ("resolved", "closed")
LIST_LIMIT = 100
TIMELINE_LIMIT = 50
# Templates are found by scanning their stream's "created" records (no read model yet);
# a page of that many at a time.
TEMPLATE_SCAN_PAGE = 500
MAX_BREAK_REASON = 100


class RoleForbidden(Exception):
    """A signed-in user of the tenant whose role has no inbox."""

    # As an HTTP error: answered by its page, logged without a traceback (web.app).
    status_code = 403


class NotAssignedToYou(Exception):
    """An agent asked for a conversation someone else holds."""

    # As an HTTP error: answered by its page, logged without a traceback (web.app).
    status_code = 403


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


Form = Body(media_type=RequestEncodingType.URL_ENCODED)


def inbox_router(
    access: AccessReadModel,
    inbox: InboxReadModel,
    timeline: TimelineReadModel,
    customers: CustomersReadModel,
    apps: Callable[[], DomainApps],
    runner: AsyncRunner,
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

    async def list_page(
        request: Request[Any, Any, Any],
        principal: Principal,
        status_code: int = 200,
        error: str | None = None,
        **error_values: Any,
    ) -> Template:
        tenant = principal.tenant_id
        query = request.query_params
        channel, status = query.get("channel") or None, query.get("status") or None
        agent = query.get("agent") or principal.user_id
        rows: list[dict[str, Any]] = []
        if error is None:
            if channel is not None and channel not in CHANNELS:
                error, error_values = "inbox.bad_channel", {"value": channel}
            elif status is not None and status not in STATUSES:
                error, error_values = "inbox.bad_status", {"value": status}
            elif agent != principal.user_id and principal.role not in OVERSEERS:
                raise NotAssignedToYou
            elif not _is_uuid(agent):
                error, error_values = "inbox.bad_agent", {"value": agent}
            if error is not None:
                status_code = HTTP_400_BAD_REQUEST
        if error is None:
            # Open and pending first: what still needs the agent comes before the done.
            for part in (status,) if status else (ACTIVE, DONE):
                rows += inbox.for_agent(
                    tenant, agent, channel=channel, status=part, limit=LIST_LIMIT
                )
        names = {
            r["customer_id"]: _customer_name(customers, tenant, r["customer_id"]) for r in rows
        }
        return page(
            request,
            "inbox.html",
            status_code,
            tenant=tenant,
            principal=principal,
            me=await me(principal),
            rows=rows,
            names=names,
            channels=CHANNELS,
            statuses=STATUSES,
            channel=channel or "",
            status=status or "",
            agent=agent if agent != principal.user_id else "",
            error=error,
            error_values=error_values,
            back=_list_url(tenant, channel, status, agent if agent != principal.user_id else None),
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
    ) -> Template | Response[Any]:
        principal = allowed(request)
        conversation = await load(principal, conversation_id)
        if conversation is None:
            return await list_page(request, principal, HTTP_404_NOT_FOUND, "inbox.not_found")
        tenant = principal.tenant_id
        customer = customers.get(tenant, conversation["customer_id"]) or {}
        templates = await runner(
            tenant_templates, apps().templates, tenant, conversation["channel"]
        )
        chosen = request.query_params.get("template")
        if chosen and error is None and not reply:
            found = next((t for t in templates if t["id"] == chosen), None)
            if found is None:
                status_code, error = HTTP_404_NOT_FOUND, "conversation.no_template"
            else:
                context = _template_context(principal, customer, conversation)
                reply = await runner(apps().templates.render, tenant, UUID(found["id"]), context)
                template_id = found["id"]
        return page(
            request,
            "conversation.html",
            status_code,
            tenant=tenant,
            principal=principal,
            me=await me(principal),
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
            limits={"reply": MAX_BODY, "note": MAX_NOTE, "tag": MAX_TAG},
            back=_conversation_url(tenant, conversation["id"]),
        )

    async def load(principal: Principal, conversation_id: str) -> dict[str, Any] | None:
        """The conversation if the user may open it; None if the tenant has no such one."""
        if not _is_uuid(conversation_id):
            return None
        try:
            conversation: dict[str, Any] = await runner(
                apps().conversations.get, principal.tenant_id, UUID(conversation_id)
            )
        except NotFound:
            return None
        if principal.role not in OVERSEERS and conversation["assignee"] != principal.user_id:
            raise NotAssignedToYou
        return conversation

    async def command(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        run: Callable[[Principal, UUID], Any],
        **redraw: Any,
    ) -> Response[Any]:
        """Runs a domain command on a conversation the user may open, then back to it."""
        principal = allowed(request)
        if await load(principal, conversation_id) is None:
            return await list_page(request, principal, HTTP_404_NOT_FOUND, "inbox.not_found")
        try:
            await runner(run, principal, UUID(conversation_id))
        except ConversationClosed:
            return await conversation_page(
                request, tenant_id, conversation_id, HTTP_409_CONFLICT, "conversation.closed"
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
        return Redirect(_conversation_url(principal.tenant_id, conversation_id), status_code=303)

    async def refuse(
        request: Request[Any, Any, Any],
        tenant_id: str,
        conversation_id: str,
        error: str,
        values: dict[str, Any] | None = None,
        **redraw: Any,
    ) -> Response[Any]:
        principal = allowed(request)
        if await load(principal, conversation_id) is None:
            return await list_page(request, principal, HTTP_404_NOT_FOUND, "inbox.not_found")
        return await conversation_page(
            request, tenant_id, conversation_id, HTTP_400_BAD_REQUEST, error, values, **redraw
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
        key = data.key if _is_uuid(data.key) else str(uuid4())
        template = UUID(data.template_id) if _is_uuid(data.template_id) else None

        def send(principal: Principal, cid: UUID) -> None:
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
            values = {"limit": MAX_BREAK_REASON}
            return await list_page(
                request, principal, HTTP_400_BAD_REQUEST, "conversation.too_long", **values
            )
        elif data.presence == "break":
            call = lambda: apps().agents.take_break(tenant, user, reason)  # noqa: E731
        else:
            return await list_page(request, principal, HTTP_400_BAD_REQUEST, "status.unknown")
        try:
            await runner(call)
        except DomainError as e:
            return await list_page(
                request, principal, HTTP_409_CONFLICT, "status.refused", reason=str(e)
            )
        # Back to the page the form was on, if it is one of this tenant's: never elsewhere.
        own = home_url(tenant)
        back = data.back if data.back.startswith(own) and "//" not in data.back else own + "inbox"
        return Redirect(back, status_code=303)

    return Router(
        path="/",
        route_handlers=[inbox_list, conversation, reply, note, tag, resolve, set_status],
        guards=[signed_in_guard(access)],
        exception_handlers={
            **PAGE_EXCEPTION_HANDLERS,
            RoleForbidden: _forbidden("inbox.role_only"),
            NotAssignedToYou: _forbidden("inbox.not_assigned"),
        },
    )


def tenant_templates(app: ReplyTemplates, tenant_id: str, channel: str) -> list[dict[str, Any]]:
    """The tenant's templates offered on `channel`, by name; archived ones left out.

    Read from the templates' "created" records in the event store: a tenant has a few
    dozen, and a reply-templates read model is a later step (then this goes).
    """
    topic = get_topic(ReplyTemplate.Created)
    ids: list[UUID] = []
    start = 1
    while True:
        batch = app.recorder.select_notifications(start, TEMPLATE_SCAN_PAGE, topics=[topic])
        for notification in batch:
            created = app.mapper.to_domain_event(notification)
            if getattr(created, "tenant_id", None) == tenant_id:
                ids.append(created.originator_id)
        if len(batch) < TEMPLATE_SCAN_PAGE:
            break
        start = batch[-1].id + 1
    found = []
    for template_id in ids:
        template = app.get(tenant_id, template_id)
        if not template["archived"] and channel in template["channels"]:
            found.append(template)
    return sorted(found, key=lambda t: (t["name"].casefold(), t["id"]))


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


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def _conversation_url(tenant_id: str, conversation_id: str) -> str:
    return f"{home_url(tenant_id)}inbox/{quote(conversation_id, safe='')}"


def _list_url(tenant_id: str, channel: str | None, status: str | None, agent: str | None) -> str:
    given = {"channel": channel, "status": status, "agent": agent}
    query = urlencode({k: v for k, v in given.items() if v})
    return f"{home_url(tenant_id)}inbox" + (f"?{query}" if query else "")


def _forbidden(message_key: str) -> Callable[[Request[Any, Any, Any], Exception], Response[Any]]:
    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        home = home_url(principal_of(request).tenant_id)
        return page(
            request, "forbidden.html", HTTP_403_FORBIDDEN, home=home, message_key=message_key
        )

    return handle
