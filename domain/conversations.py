"""Conversations (CT2, CT4-CT9, CT12): one thread with one customer on one channel.

A conversation is a call, a chat session, an email thread, a Facebook comment thread, a
Messenger thread or an SMS thread. It records the messages in (from the customer) and out
(from an agent, or from automation when no agent is named), who it is assigned to,
internal notes and tags.

Connectors deliver facts more than once, so every message carries the channel's own id
(email Message-ID, Facebook message or comment id, chat message id, SMS id, or the agent
UI's idempotency key) and the same id twice records nothing the second time — also after
the conversation was closed, so a late redelivery is not an error.

Finding a conversation by its `thread_key` (email Message-ID root, Facebook post or
comment id, chat session id, caller number) needs no read model for inbound facts:
`receive_in_thread` derives the conversation's id from (tenant, channel, thread key,
generation). Generation 0 is the thread's first conversation; when it is closed, the next
message starts generation 1, and so on, so a thread is a chain of ids walked from 0. A
message already recorded in any of them (a redelivery after closing) records nothing.
The walk costs one load per closed conversation of the thread: fine for sessions and mail
threads; a long-lived thread (an SMS number) may later want an index in a read model.

Status workflow (same status again changes nothing; anything else is refused):

| from \\ to | open                        | pending     | resolved  | closed  |
|-----------|-----------------------------|-------------|-----------|---------|
| open      | –                           | set_pending | resolve   | close   |
| pending   | reopen, or customer writes  | –           | resolve   | close   |
| resolved  | reopen, or customer writes  | refused     | –         | close   |
| closed    | refused: ConversationClosed | refused     | refused   | –       |

"pending" means waiting on the customer (SLA timers pause there). A customer writing
into a pending or resolved conversation moves it back to open (`StatusChanged` with
`by_customer`). Closed is final: every command raises `ConversationClosed`.

The first agent reply after the customer's first message is the first response (SLA): it
is the `MessageSent` with `first_response=True`, and its time is `first_response_at`.
Messages sent without an agent (auto-acknowledgements) never count as a response.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import event

from domain.base import DomainError, TenantAggregate, TenantApplication
from domain.checks import (
    aware,
    checked_enum,
    checked_text,
    clean_name,
    iso_or_none,
    optional_text,
    str_or_none,
)
from domain.vocabulary import Channel, Direction

MAX_BODY = 100_000  # characters; larger email bodies belong in an attachment
MAX_NOTE = 10_000
MAX_ATTACHMENTS = 20
MAX_ATTACHMENT_SIZE = 100 * 1024 * 1024
MAX_TAGS = 20
MAX_TAG = 50
ATTACHMENT_FIELDS = ("name", "content_type", "size", "url")

# Namespace of the ids of conversations found by their thread (receive_in_thread).
_THREAD_NAMESPACE = UUID("7a4e2c90-5d3b-4f61-b0a8-1e9c6d2f8a37")


class ConversationStatus(StrEnum):
    """Where a conversation is in its workflow (see the module's table)."""

    OPEN = "open"
    PENDING = "pending"  # waiting on the customer
    RESOLVED = "resolved"
    CLOSED = "closed"


class InvalidConversation(DomainError):
    """A conversation command with values the domain does not accept."""


class ConversationClosed(DomainError):
    """The conversation is closed and takes no more commands; start a new one."""


class NotAssigned(DomainError):
    """The command needs an assigned agent and nobody is assigned."""


class AlreadyAssigned(DomainError):
    """Assigned to another agent already; transfer it instead."""


class StatusChangeRefused(DomainError):
    """The workflow does not allow this status change."""


class Conversation(TenantAggregate):
    """One thread with one customer on one channel, with its messages, notes and tags."""

    class Started(TenantAggregate.Created):
        tenant_id: str
        channel: Channel
        customer_id: UUID
        direction: Direction
        queue_id: UUID | None
        subject: str | None
        thread_key: str | None
        at: datetime

    class MessageReceived(TenantAggregate.Event):
        message_id: str
        body: str
        attachments: list[dict[str, Any]]
        at: datetime

    class MessageSent(TenantAggregate.Event):
        message_id: str
        agent_id: UUID | None
        body: str
        attachments: list[dict[str, Any]]
        template_id: UUID | None
        first_response: bool
        at: datetime

    class StatusChanged(TenantAggregate.Event):
        status: ConversationStatus
        previous: ConversationStatus
        by_customer: bool

    class Assigned(TenantAggregate.Event):
        agent_id: UUID

    class Transferred(TenantAggregate.Event):
        from_agent_id: UUID
        to_agent_id: UUID

    class Unassigned(TenantAggregate.Event):
        agent_id: UUID

    class MovedToQueue(TenantAggregate.Event):
        """Handed to a queue for routing; the agent it had, if any, lets go of it."""

        queue_id: UUID
        from_agent_id: UUID | None

    class NoteAdded(TenantAggregate.Event):
        """An internal note: never sent to the customer."""

        note_id: UUID
        author_id: UUID
        body: str

    class Tagged(TenantAggregate.Event):
        tag: str

    class Untagged(TenantAggregate.Event):
        tag: str

    @event(Started)
    def __init__(
        self,
        tenant_id: str,
        channel: Channel,
        customer_id: UUID,
        direction: Direction,
        queue_id: UUID | None,
        subject: str | None,
        thread_key: str | None,
        at: datetime,
    ) -> None:
        self.tenant_id = tenant_id
        # Enums again after a JSON round trip, which stores them as plain strings.
        self.channel = Channel(channel)
        self.customer_id = customer_id
        self.direction = Direction(direction)
        self.queue_id = queue_id
        self.subject = subject
        self.thread_key = thread_key
        self.started_at = at
        self.status = ConversationStatus.OPEN
        self.assignee: UUID | None = None
        self.messages: list[dict[str, Any]] = []
        self.message_ids: set[str] = set()
        self.first_inbound_at: datetime | None = None
        self.first_response_at: datetime | None = None
        self.notes: list[dict[str, Any]] = []
        self.tags: list[str] = []

    @event(MessageReceived)
    def _receive(
        self, message_id: str, body: str, attachments: list[dict[str, Any]], at: datetime
    ) -> None:
        self._record(message_id, Direction.INBOUND, body, attachments, at, None, None)
        if self.first_inbound_at is None:
            self.first_inbound_at = at

    @event(MessageSent)
    def _send(
        self,
        message_id: str,
        agent_id: UUID | None,
        body: str,
        attachments: list[dict[str, Any]],
        template_id: UUID | None,
        first_response: bool,
        at: datetime,
    ) -> None:
        self._record(message_id, Direction.OUTBOUND, body, attachments, at, agent_id, template_id)
        if first_response:
            self.first_response_at = at

    def _record(
        self,
        message_id: str,
        direction: Direction,
        body: str,
        attachments: list[dict[str, Any]],
        at: datetime,
        agent_id: UUID | None,
        template_id: UUID | None,
    ) -> None:
        self.message_ids.add(message_id)
        self.messages.append(
            {
                "id": message_id,
                "direction": direction,
                "body": body,
                "attachments": [dict(a) for a in attachments],
                "at": at,
                "agent_id": agent_id,
                "template_id": template_id,
            }
        )

    @event(StatusChanged)
    def _change_status(
        self, status: ConversationStatus, previous: ConversationStatus, by_customer: bool
    ) -> None:
        self.status = ConversationStatus(status)

    @event(Assigned)
    def _assign(self, agent_id: UUID) -> None:
        self.assignee = agent_id

    @event(Transferred)
    def _transfer(self, from_agent_id: UUID, to_agent_id: UUID) -> None:
        self.assignee = to_agent_id

    @event(Unassigned)
    def _unassign(self, agent_id: UUID) -> None:
        self.assignee = None

    @event(MovedToQueue)
    def _move_to_queue(self, queue_id: UUID, from_agent_id: UUID | None) -> None:
        self.queue_id = queue_id
        self.assignee = None

    @event(NoteAdded)
    def _add_note(self, note_id: UUID, author_id: UUID, body: str) -> None:
        self.notes.append({"id": note_id, "author_id": author_id, "body": body})

    @event(Tagged)
    def _tag(self, tag: str) -> None:
        self.tags.append(tag)

    @event(Untagged)
    def _untag(self, tag: str) -> None:
        self.tags.remove(tag)

    def receive_message(
        self,
        message_id: str,
        body: str,
        attachments: Iterable[Mapping[str, Any]] = (),
        at: datetime | None = None,
    ) -> None:
        """A message from the customer; reopens a pending or resolved conversation."""
        message_id = _message_id(message_id)
        if message_id in self.message_ids:
            return  # the same fact delivered again
        self._check_not_closed()
        body, files = _message(body, attachments)
        self._receive(message_id, body, files, fact_time(at))
        if self.status in (ConversationStatus.PENDING, ConversationStatus.RESOLVED):
            self._change_status(ConversationStatus.OPEN, self.status, by_customer=True)

    def send_message(
        self,
        message_id: str,
        agent_id: UUID | None,
        body: str,
        attachments: Iterable[Mapping[str, Any]] = (),
        template_id: UUID | None = None,
        at: datetime | None = None,
    ) -> None:
        """A message to the customer, by an agent (None: automation), maybe from a template.

        Any agent of the tenant may send (a supervisor stepping in); the status is left as
        it is, so a courtesy note after resolving does not reopen the conversation.
        """
        message_id = _message_id(message_id)
        if message_id in self.message_ids:
            return
        self._check_not_closed()
        body, files = _message(body, attachments)
        first = (
            agent_id is not None
            and self.first_inbound_at is not None
            and self.first_response_at is None
        )
        self._send(message_id, agent_id, body, files, template_id, first, fact_time(at))

    def set_pending(self) -> None:
        """Waiting on the customer."""
        self._move(ConversationStatus.PENDING)

    def resolve(self) -> None:
        self._move(ConversationStatus.RESOLVED)

    def reopen(self) -> None:
        self._move(ConversationStatus.OPEN)

    def close(self) -> None:
        if self.status is not ConversationStatus.CLOSED:
            self._change_status(ConversationStatus.CLOSED, self.status, by_customer=False)

    def assign(self, agent_id: UUID) -> None:
        """Give an unassigned conversation to an agent (routing, or an agent picking it)."""
        self._check_not_closed()
        if self.assignee == agent_id:
            return
        if self.assignee is not None:
            raise AlreadyAssigned(f"conversation {self.id} is assigned to {self.assignee}")
        self._assign(agent_id)

    def transfer(self, to_agent_id: UUID) -> None:
        """Hand an assigned conversation from its agent to another agent."""
        self._check_not_closed()
        if self.assignee is None:
            raise NotAssigned(f"conversation {self.id} is not assigned; assign it instead")
        if self.assignee != to_agent_id:
            self._transfer(self.assignee, to_agent_id)

    def unassign(self) -> None:
        self._check_not_closed()
        if self.assignee is None:
            raise NotAssigned(f"conversation {self.id} is not assigned")
        self._unassign(self.assignee)

    def move_to_queue(self, queue_id: UUID) -> None:
        """Hand the conversation to a queue; its agent, if any, lets go of it."""
        self._check_not_closed()
        if self.queue_id != queue_id or self.assignee is not None:
            self._move_to_queue(queue_id, self.assignee)

    def add_note(self, author_id: UUID, body: str, note_id: UUID | None = None) -> None:
        """An internal note (CC6), never sent to the customer; `note_id` makes it idempotent."""
        self._check_not_closed()
        if note_id is not None and any(n["id"] == note_id for n in self.notes):
            return
        body = checked_text(body, "a note", MAX_NOTE, InvalidConversation)
        self._add_note(note_id or uuid4(), author_id, body)

    def tag(self, tag: str) -> None:
        self._check_not_closed()
        tag = normal_tag(tag, InvalidConversation)
        if tag in self.tags:
            return
        if len(self.tags) >= MAX_TAGS:
            raise InvalidConversation(f"a conversation has at most {MAX_TAGS} tags")
        self._tag(tag)

    def untag(self, tag: str) -> None:
        self._check_not_closed()
        tag = normal_tag(tag, InvalidConversation)
        if tag in self.tags:
            self._untag(tag)

    def _move(self, status: ConversationStatus) -> None:
        self._check_not_closed()
        if status is self.status:
            return
        if self.status is ConversationStatus.RESOLVED and status is ConversationStatus.PENDING:
            raise StatusChangeRefused("a resolved conversation cannot become pending; reopen it")
        self._change_status(status, self.status, by_customer=False)

    def _check_not_closed(self) -> None:
        if self.status is ConversationStatus.CLOSED:
            raise ConversationClosed(f"conversation {self.id} is closed")


def fact_time(at: datetime | None) -> datetime:
    """The time of a fact: given by the channel (timezone-aware), or now."""
    return datetime.now(UTC) if at is None else aware(at, InvalidConversation)


def thread_conversation_id(
    tenant_id: str, channel: Channel, thread_key: str, generation: int = 0
) -> UUID:
    """The id of a thread's `generation`-th conversation (see receive_in_thread)."""
    return uuid5(_THREAD_NAMESPACE, f"{tenant_id}/{channel.value}/{generation}/{thread_key}")


def normal_tag(tag: str, error: type[DomainError]) -> str:
    """Tags compare case- and spacing-insensitively: "  VIP  customer" is "vip customer"."""
    return clean_name(tag.lower(), "a tag", MAX_TAG, error)


def _message_id(message_id: str) -> str:
    message_id = checked_text(message_id, "a message id", 1000, InvalidConversation)
    if any(c.isspace() for c in message_id):
        raise InvalidConversation(f"a message id has no spaces: {message_id!r}")
    return message_id


def _message(
    body: str, attachments: Iterable[Mapping[str, Any]]
) -> tuple[str, list[dict[str, Any]]]:
    body = checked_text(body, "a message body", MAX_BODY, InvalidConversation, required=False)
    files = [_attachment(a) for a in attachments]
    if not body and not files:
        raise InvalidConversation("a message needs a body or an attachment")
    if len(files) > MAX_ATTACHMENTS:
        raise InvalidConversation(f"a message has at most {MAX_ATTACHMENTS} attachments")
    return body, files


def _attachment(given: Mapping[str, Any]) -> dict[str, Any]:
    """Attachment metadata only (name, type, size, url): the bytes live in file storage."""
    if set(given) != set(ATTACHMENT_FIELDS):
        raise InvalidConversation(f"an attachment has exactly {list(ATTACHMENT_FIELDS)}")
    size = given["size"]
    if type(size) is not int or not 0 <= size <= MAX_ATTACHMENT_SIZE:
        raise InvalidConversation(f"attachment size is 0 to {MAX_ATTACHMENT_SIZE} bytes")
    content_type = checked_text(given["content_type"], "a content type", 255, InvalidConversation)
    if "/" not in content_type:
        raise InvalidConversation(f"not a content type: {content_type!r}")
    url = checked_text(given["url"], "an attachment url", 2048, InvalidConversation)
    if any(c.isspace() for c in url):
        raise InvalidConversation(f"an attachment url has no spaces: {url!r}")
    return {
        "name": checked_text(given["name"], "an attachment name", 255, InvalidConversation),
        "content_type": content_type.lower(),
        "size": size,
        "url": url,
    }


class Conversations(TenantApplication):
    """The conversation verbs; returns ids and plain dicts, never aggregates."""

    name = "conversations"

    def start(
        self,
        tenant_id: str,
        channel: Channel | str,
        customer_id: UUID,
        *,
        direction: Direction | str = Direction.INBOUND,
        queue_id: UUID | None = None,
        subject: str | None = None,
        thread_key: str | None = None,
        at: datetime | None = None,
    ) -> UUID:
        channel = checked_enum(Channel, channel, InvalidConversation)
        direction = checked_enum(Direction, direction, InvalidConversation)
        if direction is Direction.INTERNAL:
            raise InvalidConversation("a conversation with a customer is inbound or outbound")
        conversation = Conversation(
            tenant_id=tenant_id,
            channel=channel,
            customer_id=customer_id,
            direction=direction,
            queue_id=queue_id,
            subject=optional_text(subject, "a subject", 500, InvalidConversation),
            thread_key=optional_text(thread_key, "a thread key", 1000, InvalidConversation),
            at=fact_time(at),
        )
        self.save(conversation)
        return conversation.id

    def receive_message(
        self,
        tenant_id: str,
        conversation_id: UUID,
        message_id: str,
        body: str,
        attachments: Iterable[Mapping[str, Any]] = (),
        at: datetime | None = None,
    ) -> None:
        self.change(
            tenant_id,
            conversation_id,
            Conversation,
            lambda c: c.receive_message(message_id, body, attachments, at),
        )

    def receive_in_thread(
        self,
        tenant_id: str,
        channel: Channel | str,
        thread_key: str,
        customer_id: UUID,
        message_id: str,
        body: str,
        attachments: Iterable[Mapping[str, Any]] = (),
        *,
        subject: str | None = None,
        at: datetime | None = None,
    ) -> tuple[UUID, bool]:
        """An inbound message of a channel's thread, in the thread's open conversation.

        Starts the conversation (for `customer_id`) when the thread has none open. Returns
        the conversation's id and whether anything was recorded (False: a redelivery).
        """
        channel = checked_enum(Channel, channel, InvalidConversation)
        thread_key = checked_text(thread_key, "a thread key", 1000, InvalidConversation)
        message_id = _message_id(message_id)
        generation = 0
        while True:
            conversation_id = thread_conversation_id(tenant_id, channel, thread_key, generation)
            if conversation_id not in self.repository:
                # eventsourcing's constructor for a given id (calling the class makes one up).
                conversation = Conversation._create(
                    Conversation.Started,
                    id=conversation_id,
                    tenant_id=tenant_id,
                    channel=channel,
                    customer_id=customer_id,
                    direction=Direction.INBOUND,
                    queue_id=None,
                    subject=optional_text(subject, "a subject", 500, InvalidConversation),
                    thread_key=thread_key,
                    at=fact_time(at),
                )
                break
            conversation = self.get_owned(tenant_id, conversation_id, Conversation)
            if message_id in conversation.message_ids:
                return conversation_id, False
            if conversation.status is not ConversationStatus.CLOSED:
                break
            generation += 1
        # Started and first message in one save: a thread never has an empty conversation.
        conversation.receive_message(message_id, body, attachments, at)
        self.save(conversation)
        return conversation_id, True

    def send_message(
        self,
        tenant_id: str,
        conversation_id: UUID,
        message_id: str,
        agent_id: UUID | None,
        body: str,
        attachments: Iterable[Mapping[str, Any]] = (),
        template_id: UUID | None = None,
        at: datetime | None = None,
    ) -> None:
        self.change(
            tenant_id,
            conversation_id,
            Conversation,
            lambda c: c.send_message(message_id, agent_id, body, attachments, template_id, at),
        )

    def set_pending(self, tenant_id: str, conversation_id: UUID) -> None:
        self.change(tenant_id, conversation_id, Conversation, Conversation.set_pending)

    def resolve(self, tenant_id: str, conversation_id: UUID) -> None:
        self.change(tenant_id, conversation_id, Conversation, Conversation.resolve)

    def reopen(self, tenant_id: str, conversation_id: UUID) -> None:
        self.change(tenant_id, conversation_id, Conversation, Conversation.reopen)

    def close_conversation(self, tenant_id: str, conversation_id: UUID) -> None:
        # Not `close`: that is Application.close(), which shuts the application down.
        self.change(tenant_id, conversation_id, Conversation, Conversation.close)

    def assign(self, tenant_id: str, conversation_id: UUID, agent_id: UUID) -> None:
        self.change(tenant_id, conversation_id, Conversation, lambda c: c.assign(agent_id))

    def transfer(self, tenant_id: str, conversation_id: UUID, to_agent_id: UUID) -> None:
        self.change(tenant_id, conversation_id, Conversation, lambda c: c.transfer(to_agent_id))

    def unassign(self, tenant_id: str, conversation_id: UUID) -> None:
        self.change(tenant_id, conversation_id, Conversation, Conversation.unassign)

    def move_to_queue(self, tenant_id: str, conversation_id: UUID, queue_id: UUID) -> None:
        self.change(tenant_id, conversation_id, Conversation, lambda c: c.move_to_queue(queue_id))

    def add_note(
        self,
        tenant_id: str,
        conversation_id: UUID,
        author_id: UUID,
        body: str,
        note_id: UUID | None = None,
    ) -> None:
        self.change(
            tenant_id, conversation_id, Conversation, lambda c: c.add_note(author_id, body, note_id)
        )

    def tag(self, tenant_id: str, conversation_id: UUID, tag: str) -> None:
        self.change(tenant_id, conversation_id, Conversation, lambda c: c.tag(tag))

    def untag(self, tenant_id: str, conversation_id: UUID, tag: str) -> None:
        self.change(tenant_id, conversation_id, Conversation, lambda c: c.untag(tag))

    def get(self, tenant_id: str, conversation_id: UUID) -> dict[str, Any]:
        c = self.get_owned(tenant_id, conversation_id, Conversation)
        return {
            "id": str(c.id),
            "tenant_id": c.tenant_id,
            "channel": str(c.channel),
            "customer_id": str(c.customer_id),
            "direction": str(c.direction),
            "queue_id": str_or_none(c.queue_id),
            "subject": c.subject,
            "thread_key": c.thread_key,
            "status": str(c.status),
            "assignee": str_or_none(c.assignee),
            "started_at": c.started_at.isoformat(),
            "first_response_at": iso_or_none(c.first_response_at),
            "messages": [
                {
                    **m,
                    "direction": str(m["direction"]),
                    "at": m["at"].isoformat(),
                    "agent_id": str_or_none(m["agent_id"]),
                    "template_id": str_or_none(m["template_id"]),
                }
                for m in c.messages
            ],
            "notes": [{**n, "id": str(n["id"]), "author_id": str(n["author_id"])} for n in c.notes],
            "tags": list(c.tags),
            "version": c.version,
        }
