"""Conversations API (CT2, CC3): a tenant's conversations across channels, and one with
its messages.

The list comes from the inbox read model, newest activity first, filtered by `channel`,
`status` (one value or several, comma-separated), `agent` (the assignee), `queue` and
`tag`. One conversation is read from the domain, since the read model keeps no message
bodies: what was just written is there at once.

Reads only, for now: replies, notes and hand-overs are made in the agent's inbox.
Another tenant's conversation is "not found", as an unknown one is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from litestar import Router, get
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery

from domain.apps import DomainApps
from domain.asyncapp import AsyncRunner
from domain.base import NotFound
from domain.conversations import ConversationStatus
from domain.vocabulary import Channel
from projections.inbox import InboxReadModel
from web.api.errors import READ_ERRORS, exception_handlers, tenant_path
from web.api.params import Limit, Offset, choices, page, path_id, typed, uuid_query

CHANNELS = tuple(c.value for c in Channel)
STATUSES = tuple(s.value for s in ConversationStatus)


class ConversationsContext(Protocol):
    """What the conversations API reads: the inbox read model and the domain."""

    @property
    def inbox(self) -> InboxReadModel: ...

    @property
    def apps(self) -> Callable[[], DomainApps]: ...

    @property
    def runner(self) -> AsyncRunner: ...


class LastMessage(msgspec.Struct):
    at: str
    direction: str
    preview: str | None
    agent_id: str | None
    attachments: int


class ConversationSummary(msgspec.Struct):
    """A conversation as a list shows it (the inbox read model's row)."""

    id: str
    tenant_id: str
    channel: str
    direction: str
    status: str
    customer_id: str
    assignee: str | None
    queue_id: str | None
    subject: str | None
    thread_key: str | None
    started_at: str
    last_activity_at: str
    last_message: LastMessage | None
    message_count: int
    awaiting_reply: bool
    waiting_since: str | None
    first_response_at: str | None
    note_count: int
    tags: list[str]
    status_changed_at: str | None
    version: int
    updated_at: str


class ConversationPage(msgspec.Struct):
    items: list[ConversationSummary]
    limit: int
    offset: int
    next_offset: int | None


class Attachment(msgspec.Struct):
    name: str
    content_type: str
    size: int
    url: str


class Message(msgspec.Struct):
    id: str
    direction: str
    body: str
    attachments: list[Attachment]
    at: str
    agent_id: str | None
    template_id: str | None


class Note(msgspec.Struct):
    id: str
    author_id: str
    body: str


class ConversationDetail(msgspec.Struct):
    """A conversation with its messages and internal notes, oldest first."""

    id: str
    tenant_id: str
    channel: str
    customer_id: str
    direction: str
    queue_id: str | None
    subject: str | None
    thread_key: str | None
    status: str
    assignee: str | None
    started_at: str
    first_response_at: str | None
    messages: list[Message]
    notes: list[Note]
    tags: list[str]
    version: int


def conversations_router(ctx: ConversationsContext) -> Router:
    @get("/", responses=READ_ERRORS)
    async def list_conversations(
        tenant_id: FromPath[str],
        channel: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        agent: FromQuery[str | None] = None,
        queue: FromQuery[str | None] = None,
        tag: FromQuery[str | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> ConversationPage:
        """The tenant's conversations, most recent activity first: `channel` and `status`
        take one value or several (comma-separated), `agent` the assignee's id, `queue`
        a queue's id (one of the two), `tag` one tag."""
        tenant = tenant_path(tenant_id)
        filters: dict[str, Any] = {
            "channel": choices("channel", channel, CHANNELS),
            "status": choices("status", status, STATUSES),
            "tag": tag.strip() or None if tag is not None else None,
            # One more than asked: whether there is a next page.
            "limit": limit + 1,
            "offset": offset,
        }
        agent_id, queue_id = uuid_query("agent", agent), uuid_query("queue", queue)
        if agent_id is not None and queue_id is not None:
            raise ValidationException("agent and queue: one of them, not both")
        if agent_id is not None:
            rows = ctx.inbox.for_agent(tenant, agent_id, **filters)
        elif queue_id is not None:
            rows = ctx.inbox.for_queue(tenant, queue_id, **filters)
        else:
            rows = ctx.inbox.for_tenant(tenant, **filters)
        return typed(page(rows, limit, offset), ConversationPage)

    @get("/{conversation_id:str}", responses=READ_ERRORS)
    async def show_conversation(
        tenant_id: FromPath[str], conversation_id: FromPath[str]
    ) -> ConversationDetail:
        """One conversation from the domain, with every message and note."""
        tenant = tenant_path(tenant_id)
        cid = path_id("conversation", conversation_id)
        try:
            found = await ctx.runner(ctx.apps().conversations.get, tenant, cid)
        except NotFound:
            raise NotFoundException(f"conversation {cid} not found") from None
        return typed(found, ConversationDetail)

    return Router(
        path="/api/v1/tenants/{tenant_id:str}/conversations",
        route_handlers=[list_conversations, show_conversation],
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        tags=["conversations"],
    )
