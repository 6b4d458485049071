"""Tickets (CT17, SDK2): a customer's complaint, request, question or feedback, worked to an end.

A ticket has a status, a priority, an assignee, the conversations it came from or led to,
comments (internal, or public: meant for the customer), and the SLA policy its timers
follow. SLA timers themselves are a process manager's job; it reads `StatusChanged`,
`PriorityChanged` and `SlaPolicySet` from here.

Status workflow (`change_status`; the same status again changes nothing):

| from \\ to | open         | pending | resolved | closed |
|-----------|--------------|---------|----------|--------|
| new       | yes          | yes     | yes      | yes    |
| open      | –            | yes     | yes      | yes    |
| pending   | yes          | –       | yes      | yes    |
| resolved  | yes (reopen) | no      | –        | yes    |
| closed    | no           | no      | no       | –      |

Nothing goes back to new: it means nobody has looked at the ticket yet. "pending" means
waiting on the customer (SLA timers pause). Resolved can be reopened; closed is final and
every command on a closed ticket raises `TicketClosed` — a follow-up is a new ticket.
Assigning does not change the status: status moves only by `change_status`.

Conversation and SLA policy ids are not checked against their own applications here
(each application reads only its own aggregates); the caller — the web layer or a
process manager — checks them in the same tenant before linking.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import event

from domain.base import DomainError, TenantAggregate, TenantApplication
from domain.checks import checked_enum, checked_text, clean_name, str_or_none
from domain.conversations import NotAssigned, StatusChangeRefused
from domain.vocabulary import Priority

MAX_TITLE = 200
MAX_DESCRIPTION = 10_000
MAX_COMMENT = 10_000
MAX_LINKS = 100


class TicketStatus(StrEnum):
    """Where a ticket is in its workflow (see the module's table)."""

    NEW = "new"
    OPEN = "open"
    PENDING = "pending"  # waiting on the customer
    RESOLVED = "resolved"
    CLOSED = "closed"


class TicketKind(StrEnum):
    """What the customer brought (CC2, CT17)."""

    COMPLAINT = "complaint"
    REQUEST = "request"
    QUESTION = "question"
    FEEDBACK = "feedback"


S = TicketStatus
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    S.NEW: frozenset({S.OPEN, S.PENDING, S.RESOLVED, S.CLOSED}),
    S.OPEN: frozenset({S.PENDING, S.RESOLVED, S.CLOSED}),
    S.PENDING: frozenset({S.OPEN, S.RESOLVED, S.CLOSED}),
    S.RESOLVED: frozenset({S.OPEN, S.CLOSED}),
    S.CLOSED: frozenset(),
}


class InvalidTicket(DomainError):
    """A ticket command with values the domain does not accept."""


class TicketClosed(DomainError):
    """The ticket is closed and takes no more commands; raise a new one."""


class Ticket(TenantAggregate):
    """A complaint, request, question or feedback, tracked from new to closed (CT17)."""

    class Raised(TenantAggregate.Created):
        tenant_id: str
        title: str
        description: str
        kind: TicketKind
        priority: Priority
        customer_id: UUID | None

    class Edited(TenantAggregate.Event):
        title: str
        description: str

    class KindChanged(TenantAggregate.Event):
        kind: TicketKind

    class CustomerChanged(TenantAggregate.Event):
        customer_id: UUID | None

    class StatusChanged(TenantAggregate.Event):
        status: TicketStatus
        previous: TicketStatus

    class PriorityChanged(TenantAggregate.Event):
        priority: Priority

    class Assigned(TenantAggregate.Event):
        agent_id: UUID

    class Unassigned(TenantAggregate.Event):
        agent_id: UUID

    class ConversationLinked(TenantAggregate.Event):
        conversation_id: UUID

    class ConversationUnlinked(TenantAggregate.Event):
        conversation_id: UUID

    class Commented(TenantAggregate.Event):
        """A comment; `public` ones are meant for the customer, the others stay internal."""

        comment_id: UUID
        author_id: UUID
        body: str
        public: bool

    class SlaPolicySet(TenantAggregate.Event):
        """The SLA policy the ticket's timers follow now (None: no SLA)."""

        policy_id: UUID | None

    @event(Raised)
    def __init__(
        self,
        tenant_id: str,
        title: str,
        description: str,
        kind: TicketKind,
        priority: Priority,
        customer_id: UUID | None,
    ) -> None:
        self.tenant_id = tenant_id
        self.title = title
        self.description = description
        # Enums again after a JSON round trip, which stores them as plain strings.
        self.kind = TicketKind(kind)
        self.priority = Priority(priority)
        self.customer_id = customer_id
        self.status = TicketStatus.NEW
        self.assignee: UUID | None = None
        self.conversation_ids: list[UUID] = []
        self.comments: list[dict[str, Any]] = []
        self.sla_policy_id: UUID | None = None

    @event(Edited)
    def _edit(self, title: str, description: str) -> None:
        self.title, self.description = title, description

    @event(KindChanged)
    def _change_kind(self, kind: TicketKind) -> None:
        self.kind = TicketKind(kind)

    @event(CustomerChanged)
    def _change_customer(self, customer_id: UUID | None) -> None:
        self.customer_id = customer_id

    @event(StatusChanged)
    def _change_status(self, status: TicketStatus, previous: TicketStatus) -> None:
        self.status = TicketStatus(status)

    @event(PriorityChanged)
    def _change_priority(self, priority: Priority) -> None:
        self.priority = Priority(priority)

    @event(Assigned)
    def _assign(self, agent_id: UUID) -> None:
        self.assignee = agent_id

    @event(Unassigned)
    def _unassign(self, agent_id: UUID) -> None:
        self.assignee = None

    @event(ConversationLinked)
    def _link(self, conversation_id: UUID) -> None:
        self.conversation_ids.append(conversation_id)

    @event(ConversationUnlinked)
    def _unlink(self, conversation_id: UUID) -> None:
        self.conversation_ids.remove(conversation_id)

    @event(Commented)
    def _comment(self, comment_id: UUID, author_id: UUID, body: str, public: bool) -> None:
        self.comments.append(
            {"id": comment_id, "author_id": author_id, "body": body, "public": public}
        )

    @event(SlaPolicySet)
    def _set_sla_policy(self, policy_id: UUID | None) -> None:
        self.sla_policy_id = policy_id

    def edit(self, title: str | None = None, description: str | None = None) -> None:
        """Change the title and/or the description (None leaves one as it is)."""
        self._check_not_closed()
        new_title = self.title if title is None else valid_title(title)
        new_description = (
            self.description if description is None else valid_description(description)
        )
        if (new_title, new_description) != (self.title, self.description):
            self._edit(new_title, new_description)

    def change_kind(self, kind: TicketKind | str) -> None:
        self._check_not_closed()
        kind = checked_enum(TicketKind, kind, InvalidTicket)
        if kind is not self.kind:
            self._change_kind(kind)

    def change_customer(self, customer_id: UUID | None) -> None:
        """Who the ticket is about: e.g. once a ticket fed in without one is identified,
        or after the customer was merged into another."""
        self._check_not_closed()
        if customer_id != self.customer_id:
            self._change_customer(customer_id)

    def change_status(self, status: TicketStatus | str) -> None:
        """Move along the workflow (the module's table); anything else is refused."""
        self._check_not_closed()
        status = checked_enum(TicketStatus, status, InvalidTicket)
        if status is self.status:
            return
        if status not in TRANSITIONS[self.status]:
            raise StatusChangeRefused(f"a {self.status} ticket cannot become {status}")
        self._change_status(status, self.status)

    def change_priority(self, priority: Priority | str) -> None:
        self._check_not_closed()
        priority = checked_enum(Priority, priority, InvalidTicket)
        if priority is not self.priority:
            self._change_priority(priority)

    def assign(self, agent_id: UUID) -> None:
        """Give the ticket to an agent; reassigning moves it straight to the new one."""
        self._check_not_closed()
        if agent_id != self.assignee:
            self._assign(agent_id)

    def unassign(self) -> None:
        self._check_not_closed()
        if self.assignee is None:
            raise NotAssigned(f"ticket {self.id} is not assigned")
        self._unassign(self.assignee)

    def link_conversation(self, conversation_id: UUID) -> None:
        """Idempotent: linking a linked conversation changes nothing."""
        self._check_not_closed()
        if conversation_id in self.conversation_ids:
            return
        if len(self.conversation_ids) >= MAX_LINKS:
            raise InvalidTicket(f"a ticket links at most {MAX_LINKS} conversations")
        self._link(conversation_id)

    def unlink_conversation(self, conversation_id: UUID) -> None:
        """Idempotent: unlinking a conversation that is not linked changes nothing."""
        self._check_not_closed()
        if conversation_id in self.conversation_ids:
            self._unlink(conversation_id)

    def comment(
        self, author_id: UUID, body: str, public: bool = False, comment_id: UUID | None = None
    ) -> None:
        """Internal unless `public`; `comment_id` makes a retried comment count once."""
        self._check_not_closed()
        if comment_id is not None and any(c["id"] == comment_id for c in self.comments):
            return
        body = checked_text(body, "a comment", MAX_COMMENT, InvalidTicket)
        self._comment(comment_id or uuid4(), author_id, body, public)

    def set_sla_policy(self, policy_id: UUID | None) -> None:
        self._check_not_closed()
        if policy_id != self.sla_policy_id:
            self._set_sla_policy(policy_id)

    def _check_not_closed(self) -> None:
        if self.status is TicketStatus.CLOSED:
            raise TicketClosed(f"ticket {self.id} is closed")


def valid_title(title: str) -> str:
    return clean_name(title, "a ticket title", MAX_TITLE, InvalidTicket)


def valid_description(description: str) -> str:
    return checked_text(
        description, "a ticket description", MAX_DESCRIPTION, InvalidTicket, required=False
    )


class Tickets(TenantApplication):
    """The ticket verbs; returns ids and plain dicts, never aggregates."""

    name = "tickets"

    def raise_ticket(
        self,
        tenant_id: str,
        title: str,
        *,
        kind: TicketKind | str,
        description: str = "",
        priority: Priority | str = Priority.NORMAL,
        customer_id: UUID | None = None,
        conversation_ids: list[UUID] | None = None,
        sla_policy_id: UUID | None = None,
    ) -> UUID:
        """A new ticket, with its first links and SLA policy in the same atomic save."""
        ticket = Ticket(
            tenant_id=tenant_id,
            title=valid_title(title),
            description=valid_description(description),
            kind=checked_enum(TicketKind, kind, InvalidTicket),
            priority=checked_enum(Priority, priority, InvalidTicket),
            customer_id=customer_id,
        )
        for conversation_id in conversation_ids or ():
            ticket.link_conversation(conversation_id)
        ticket.set_sla_policy(sla_policy_id)
        self.save(ticket)
        return ticket.id

    def edit(
        self,
        tenant_id: str,
        ticket_id: UUID,
        title: str | None = None,
        description: str | None = None,
    ) -> None:
        self.change(tenant_id, ticket_id, Ticket, lambda t: t.edit(title, description))

    def change_kind(self, tenant_id: str, ticket_id: UUID, kind: TicketKind | str) -> None:
        self.change(tenant_id, ticket_id, Ticket, lambda t: t.change_kind(kind))

    def change_customer(self, tenant_id: str, ticket_id: UUID, customer_id: UUID | None) -> None:
        self.change(tenant_id, ticket_id, Ticket, lambda t: t.change_customer(customer_id))

    def change_status(self, tenant_id: str, ticket_id: UUID, status: TicketStatus | str) -> None:
        self.change(tenant_id, ticket_id, Ticket, lambda t: t.change_status(status))

    def change_priority(self, tenant_id: str, ticket_id: UUID, priority: Priority | str) -> None:
        self.change(tenant_id, ticket_id, Ticket, lambda t: t.change_priority(priority))

    def assign(self, tenant_id: str, ticket_id: UUID, agent_id: UUID) -> None:
        self.change(tenant_id, ticket_id, Ticket, lambda t: t.assign(agent_id))

    def unassign(self, tenant_id: str, ticket_id: UUID) -> None:
        self.change(tenant_id, ticket_id, Ticket, Ticket.unassign)

    def link_conversation(self, tenant_id: str, ticket_id: UUID, conversation_id: UUID) -> None:
        self.change(tenant_id, ticket_id, Ticket, lambda t: t.link_conversation(conversation_id))

    def unlink_conversation(self, tenant_id: str, ticket_id: UUID, conversation_id: UUID) -> None:
        self.change(tenant_id, ticket_id, Ticket, lambda t: t.unlink_conversation(conversation_id))

    def comment(
        self,
        tenant_id: str,
        ticket_id: UUID,
        author_id: UUID,
        body: str,
        public: bool = False,
        comment_id: UUID | None = None,
    ) -> None:
        self.change(
            tenant_id, ticket_id, Ticket, lambda t: t.comment(author_id, body, public, comment_id)
        )

    def set_sla_policy(self, tenant_id: str, ticket_id: UUID, policy_id: UUID | None) -> None:
        self.change(tenant_id, ticket_id, Ticket, lambda t: t.set_sla_policy(policy_id))

    def get(self, tenant_id: str, ticket_id: UUID) -> dict[str, Any]:
        t = self.get_owned(tenant_id, ticket_id, Ticket)
        return {
            "id": str(t.id),
            "tenant_id": t.tenant_id,
            "title": t.title,
            "description": t.description,
            "kind": str(t.kind),
            "priority": str(t.priority),
            "status": str(t.status),
            "customer_id": str_or_none(t.customer_id),
            "assignee": str_or_none(t.assignee),
            "conversation_ids": [str(c) for c in t.conversation_ids],
            "comments": [
                {**c, "id": str(c["id"]), "author_id": str(c["author_id"])} for c in t.comments
            ],
            "sla_policy_id": str_or_none(t.sla_policy_id),
            "version": t.version,
        }
