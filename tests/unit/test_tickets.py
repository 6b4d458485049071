"""Ticket aggregate and Tickets application (CT17), in memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.base import NotFound
from domain.conversations import NotAssigned, StatusChangeRefused
from domain.tickets import (
    MAX_LINKS,
    TRANSITIONS,
    InvalidTicket,
    Ticket,
    TicketClosed,
    TicketKind,
    Tickets,
    TicketStatus,
)
from domain.vocabulary import Priority

CUSTOMER, AGENT, OTHER_AGENT = uuid4(), uuid4(), uuid4()


@pytest.fixture
def app(transcoder_env: dict[str, str]) -> Tickets:
    return Tickets(env=transcoder_env)


@pytest.fixture
def ticket(app: Tickets) -> UUID:
    return app.raise_ticket("acme", "Cước tháng 3 sai", kind="complaint", customer_id=CUSTOMER)


def events(app: Tickets, tid: UUID) -> list[Any]:
    return list(app.repository.event_store.get(tid))


def version(app: Tickets, tid: UUID) -> int:
    return int(app.get("acme", tid)["version"])


# Raising


def test_a_raised_ticket_is_new_with_its_details_links_and_sla(app: Tickets) -> None:
    conversation, policy = uuid4(), uuid4()
    tid = app.raise_ticket(
        "acme",
        "  Không   gọi được hotline ",
        kind=TicketKind.REQUEST,
        description="Từ 8h sáng nay",
        priority="high",
        customer_id=CUSTOMER,
        conversation_ids=[conversation, conversation],
        sla_policy_id=policy,
    )
    shown = app.get("acme", tid)
    assert shown["title"] == "Không gọi được hotline"
    assert (shown["status"], shown["kind"], shown["priority"]) == ("new", "request", "high")
    assert shown["customer_id"] == str(CUSTOMER) and shown["assignee"] is None
    assert shown["conversation_ids"] == [str(conversation)]
    assert shown["sla_policy_id"] == str(policy)
    # Created, linked and given its policy in one save.
    assert [type(e).__name__ for e in events(app, tid)] == [
        "Raised",
        "ConversationLinked",
        "SlaPolicySet",
    ]


def test_a_ticket_without_customer_or_description_is_normal_priority(app: Tickets) -> None:
    tid = app.raise_ticket("acme", "Góp ý", kind="feedback")
    shown = app.get("acme", tid)
    assert (shown["priority"], shown["customer_id"], shown["description"]) == ("normal", None, "")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"title": "  "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"description": "x" * 10_001}, "description"),
        ({"kind": "praise"}, "TicketKind"),
        ({"priority": "asap"}, "Priority"),
    ],
)
def test_a_ticket_with_bad_values_is_not_raised(
    app: Tickets, kwargs: dict[str, Any], reason: str
) -> None:
    given: dict[str, Any] = {"title": "t", "kind": "question", **kwargs}
    with pytest.raises(InvalidTicket, match=reason):
        app.raise_ticket("acme", given.pop("title"), **given)


# Status workflow


ALLOWED = [(a, b) for a, targets in TRANSITIONS.items() for b in targets]
REFUSED = [
    (a, b)
    for a in TicketStatus
    for b in TicketStatus
    if a is not b and b not in TRANSITIONS[a] and a is not TicketStatus.CLOSED
]


def reach(app: Tickets, tid: UUID, status: TicketStatus) -> None:
    """Bring a new ticket to `status` by the shortest allowed path."""
    if status is not TicketStatus.NEW:
        app.change_status("acme", tid, status)


@pytest.mark.parametrize(("start", "goal"), ALLOWED)
def test_the_workflow_allows_these_moves(
    app: Tickets, ticket: UUID, start: TicketStatus, goal: TicketStatus
) -> None:
    reach(app, ticket, start)
    app.change_status("acme", ticket, goal)
    assert app.get("acme", ticket)["status"] == goal
    changed = events(app, ticket)[-1]
    assert isinstance(changed, Ticket.StatusChanged)
    assert (changed.previous, changed.status) == (start, goal)


@pytest.mark.parametrize(("start", "goal"), REFUSED)
def test_the_workflow_refuses_these_moves(
    app: Tickets, ticket: UUID, start: TicketStatus, goal: TicketStatus
) -> None:
    reach(app, ticket, start)
    with pytest.raises(StatusChangeRefused):
        app.change_status("acme", ticket, goal)


def test_the_refused_moves_are_back_to_new_and_resolved_to_pending() -> None:
    assert set(REFUSED) == {
        (TicketStatus.OPEN, TicketStatus.NEW),
        (TicketStatus.PENDING, TicketStatus.NEW),
        (TicketStatus.RESOLVED, TicketStatus.NEW),
        (TicketStatus.RESOLVED, TicketStatus.PENDING),
    }


def test_the_status_it_already_has_records_nothing(app: Tickets, ticket: UUID) -> None:
    app.change_status("acme", ticket, "new")
    app.change_status("acme", ticket, "open")
    app.change_status("acme", ticket, "open")
    assert version(app, ticket) == 2
    with pytest.raises(InvalidTicket, match="TicketStatus"):
        app.change_status("acme", ticket, "escalated")


def test_a_closed_ticket_is_final(app: Tickets, ticket: UUID) -> None:
    app.assign("acme", ticket, AGENT)
    app.change_status("acme", ticket, TicketStatus.CLOSED)
    refused: list[Callable[[], None]] = [
        lambda: app.change_status("acme", ticket, "open"),
        lambda: app.change_status("acme", ticket, "closed"),
        lambda: app.edit("acme", ticket, title="x"),
        lambda: app.change_kind("acme", ticket, "request"),
        lambda: app.change_customer("acme", ticket, None),
        lambda: app.change_priority("acme", ticket, "urgent"),
        lambda: app.assign("acme", ticket, OTHER_AGENT),
        lambda: app.unassign("acme", ticket),
        lambda: app.link_conversation("acme", ticket, uuid4()),
        lambda: app.unlink_conversation("acme", ticket, uuid4()),
        lambda: app.comment("acme", ticket, AGENT, "x"),
        lambda: app.set_sla_policy("acme", ticket, uuid4()),
    ]
    for command in refused:
        with pytest.raises(TicketClosed):
            command()


# Details, priority, assignee


def test_editing_changes_only_what_is_given(app: Tickets, ticket: UUID) -> None:
    app.edit("acme", ticket, description="Cước gọi quốc tế bị tính hai lần")
    app.edit("acme", ticket, title="Cước tháng 3 sai")  # unchanged: nothing recorded
    shown = app.get("acme", ticket)
    assert (shown["title"], shown["description"]) == (
        "Cước tháng 3 sai",
        "Cước gọi quốc tế bị tính hai lần",
    )
    assert version(app, ticket) == 2


def test_priority_kind_and_customer_change_once_per_new_value(app: Tickets, ticket: UUID) -> None:
    other = uuid4()
    for _ in range(2):
        app.change_priority("acme", ticket, Priority.URGENT)
        app.change_kind("acme", ticket, "request")
        app.change_customer("acme", ticket, other)
    shown = app.get("acme", ticket)
    assert (shown["priority"], shown["kind"], shown["customer_id"]) == (
        "urgent",
        "request",
        str(other),
    )
    assert version(app, ticket) == 4
    with pytest.raises(InvalidTicket, match="Priority"):
        app.change_priority("acme", ticket, "critical")


def test_a_ticket_is_assigned_reassigned_and_unassigned(app: Tickets, ticket: UUID) -> None:
    app.assign("acme", ticket, AGENT)
    app.assign("acme", ticket, AGENT)
    app.assign("acme", ticket, OTHER_AGENT)
    assert app.get("acme", ticket)["assignee"] == str(OTHER_AGENT)
    assert app.get("acme", ticket)["status"] == "new"  # assigning does not move the status
    app.unassign("acme", ticket)
    assert app.get("acme", ticket)["assignee"] is None
    with pytest.raises(NotAssigned):
        app.unassign("acme", ticket)
    assert [type(e).__name__ for e in events(app, ticket)[1:]] == [
        "Assigned",
        "Assigned",
        "Unassigned",
    ]


# Links, comments, SLA policy


def test_linking_and_unlinking_conversations_is_idempotent(app: Tickets, ticket: UUID) -> None:
    call, chat = uuid4(), uuid4()
    app.link_conversation("acme", ticket, call)
    app.link_conversation("acme", ticket, chat)
    app.link_conversation("acme", ticket, call)
    app.unlink_conversation("acme", ticket, call)
    app.unlink_conversation("acme", ticket, call)
    assert app.get("acme", ticket)["conversation_ids"] == [str(chat)]
    assert version(app, ticket) == 4


def test_a_ticket_links_a_bounded_number_of_conversations(app: Tickets, ticket: UUID) -> None:
    for _ in range(MAX_LINKS):
        app.link_conversation("acme", ticket, uuid4())
    with pytest.raises(InvalidTicket, match="at most"):
        app.link_conversation("acme", ticket, uuid4())


def test_comments_are_internal_unless_public_and_a_retried_one_counts_once(
    app: Tickets, ticket: UUID
) -> None:
    retried = uuid4()
    app.comment("acme", ticket, AGENT, "Đã chuyển phòng cước")
    app.comment("acme", ticket, AGENT, "Chúng tôi đang kiểm tra", public=True, comment_id=retried)
    app.comment("acme", ticket, AGENT, "Chúng tôi đang kiểm tra", public=True, comment_id=retried)
    comments = app.get("acme", ticket)["comments"]
    assert [(c["body"], c["public"]) for c in comments] == [
        ("Đã chuyển phòng cước", False),
        ("Chúng tôi đang kiểm tra", True),
    ]
    assert comments[1]["id"] == str(retried) and comments[0]["author_id"] == str(AGENT)
    with pytest.raises(InvalidTicket, match="comment"):
        app.comment("acme", ticket, AGENT, "   ")


def test_the_sla_policy_is_set_changed_and_cleared(app: Tickets, ticket: UUID) -> None:
    first, second = uuid4(), uuid4()
    app.set_sla_policy("acme", ticket, first)
    app.set_sla_policy("acme", ticket, first)
    app.set_sla_policy("acme", ticket, second)
    assert app.get("acme", ticket)["sla_policy_id"] == str(second)
    app.set_sla_policy("acme", ticket, None)
    assert app.get("acme", ticket)["sla_policy_id"] is None
    assert [e.policy_id for e in events(app, ticket)[1:]] == [first, second, None]


# Tenant walls and replay


def test_another_tenants_ticket_is_not_found(app: Tickets, ticket: UUID) -> None:
    with pytest.raises(NotFound):
        app.get("globex", ticket)
    with pytest.raises(NotFound):
        app.change_status("globex", ticket, "open")
    with pytest.raises(NotFound):
        app.comment("globex", ticket, AGENT, "x")
    with pytest.raises(NotFound):
        app.get("acme", uuid4())
    assert version(app, ticket) == 1


def test_a_reloaded_ticket_has_the_same_state(app: Tickets) -> None:
    t = Ticket(
        tenant_id="acme",
        title="Cước sai",
        description="",
        kind=TicketKind.COMPLAINT,
        priority=Priority.HIGH,
        customer_id=CUSTOMER,
    )
    conversation = uuid4()
    t.change_status("open")
    t.assign(AGENT)
    t.link_conversation(conversation)
    t.comment(AGENT, "internal")
    t.comment(AGENT, "public", public=True)
    t.set_sla_policy(uuid4())
    t.change_priority("urgent")
    t.change_kind("request")
    t.edit(description="chi tiết")
    t.change_status("pending")
    app.save(t)
    reloaded: Ticket = app.repository.get(t.id)
    assert vars(reloaded).keys() == vars(t).keys()
    for key, value in vars(t).items():
        if key != "_pending_events":
            assert getattr(reloaded, key) == value, key
    assert type(reloaded.status) is TicketStatus and type(reloaded.priority) is Priority
    reloaded.link_conversation(conversation)  # still linked after replay
    assert reloaded.version == t.version
