"""The tickets read model: filters, ordering, comments and links, tenant walls, rebuilds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.apps import DomainApps
from projections.rebuild import compare
from projections.replay import catch_up
from projections.tickets import TicketsReadModel

A, B = "acme", "bravo"
AGENT_1, AGENT_2 = uuid4(), uuid4()
CUSTOMER, OTHER_CUSTOMER = uuid4(), uuid4()
CONVERSATION = uuid4()


@pytest.fixture
def apps(transcoder_env: dict[str, str]) -> Iterator[DomainApps]:
    built = DomainApps.build(transcoder_env)
    yield built
    built.close()


@pytest.fixture
def model(tmp_path: Path) -> TicketsReadModel:
    return TicketsReadModel(tmp_path / "tickets.sqlite")


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


def desk(apps: DomainApps) -> dict[str, UUID]:
    """Tenant A: four tickets in raising order; tenant B: one with the same agent,
    customer and conversation ids, which must never show in A."""
    tickets = apps.tickets
    late = tickets.raise_ticket(
        A, "Order 42 is late", kind="complaint", priority="high", customer_id=CUSTOMER
    )
    tickets.assign(A, late, AGENT_1)
    tickets.change_status(A, late, "open")
    refund = tickets.raise_ticket(
        A,
        "Refund 100% please",
        kind="request",
        customer_id=CUSTOMER,
        conversation_ids=[CONVERSATION],
    )
    tickets.assign(A, refund, AGENT_2)
    question = tickets.raise_ticket(A, "How do I reset my password?", kind="question")
    urgent = tickets.raise_ticket(
        A, "Site is down", kind="complaint", priority="urgent", customer_id=OTHER_CUSTOMER
    )
    tickets.assign(A, urgent, AGENT_1)
    other = tickets.raise_ticket(
        B,
        "Tenant B ticket",
        kind="complaint",
        customer_id=CUSTOMER,
        conversation_ids=[CONVERSATION],
    )
    tickets.assign(B, other, AGENT_1)
    return {"late": late, "refund": refund, "question": question, "urgent": urgent, "other": other}


def test_lists_newest_change_first_within_the_tenant(
    apps: DomainApps, model: TicketsReadModel
) -> None:
    t = desk(apps)
    catch_up(model, apps)

    assert ids(model.list(A)) == [str(t[k]) for k in ("urgent", "question", "refund", "late")]
    assert ids(model.list(B)) == [str(t["other"])]
    assert model.get(B, t["late"]) is None
    assert model.get(A, t["other"]) is None

    apps.tickets.comment(A, t["late"], AGENT_1, "Asked the courier")
    catch_up(model, apps)
    assert ids(model.list(A))[0] == str(t["late"])
    assert ids(model.list(A, order="created"))[0] == str(t["urgent"])
    assert ids(model.list(A, order="priority")) == [
        str(t[k]) for k in ("urgent", "late", "question", "refund")
    ]


def test_filters(apps: DomainApps, model: TicketsReadModel) -> None:
    t = desk(apps)
    catch_up(model, apps)

    assert ids(model.list(A, status="open")) == [str(t["late"])]
    assert ids(model.list(A, status=["new"], priority="urgent")) == [str(t["urgent"])]
    assert ids(model.list(A, priority=("high", "urgent"))) == [str(t["urgent"]), str(t["late"])]
    assert ids(model.list(A, kind="question")) == [str(t["question"])]
    assert ids(model.list(A, assignee=AGENT_1)) == [str(t["urgent"]), str(t["late"])]
    assert ids(model.list(A, unassigned=True)) == [str(t["question"])]
    assert ids(model.list(A, customer_id=CUSTOMER)) == [str(t["refund"]), str(t["late"])]
    assert ids(model.list(A, text="password")) == [str(t["question"])]
    # LIKE's wildcards in the text are plain characters.
    assert ids(model.list(A, text="100%")) == [str(t["refund"])]
    assert model.list(A, text="_") == []
    assert ids(model.list(A, limit=2, offset=1)) == [str(t["question"]), str(t["refund"])]
    assert model.list(B, assignee=AGENT_2) == []
    assert model.counts(A) == {"new": 3, "open": 1}
    assert model.counts(A, assignee=AGENT_1) == {"new": 1, "open": 1}
    assert model.counts(B) == {"new": 1}


def test_a_ticket_with_its_comments_and_conversations(
    apps: DomainApps, model: TicketsReadModel
) -> None:
    t = desk(apps)
    tickets = apps.tickets
    refund = t["refund"]
    second = uuid4()
    tickets.link_conversation(A, refund, second)
    tickets.comment(A, refund, AGENT_2, "Checking the payment", comment_id=uuid4())
    retried = uuid4()
    tickets.comment(A, refund, AGENT_2, "We refunded you", public=True, comment_id=retried)
    tickets.comment(A, refund, AGENT_2, "We refunded you", public=True, comment_id=retried)
    tickets.unlink_conversation(A, refund, CONVERSATION)
    tickets.edit(A, refund, description="Customer wants the money back")
    tickets.change_priority(A, refund, "low")
    tickets.change_kind(A, refund, "complaint")
    policy = uuid4()
    tickets.set_sla_policy(A, refund, policy)
    tickets.change_status(A, refund, "resolved")
    catch_up(model, apps)

    ticket = model.get(A, refund)
    assert ticket is not None
    assert ticket == {
        **ticket,
        "title": "Refund 100% please",
        "description": "Customer wants the money back",
        "kind": "complaint",
        "priority": "low",
        "status": "resolved",
        "customer_id": str(CUSTOMER),
        "assignee": str(AGENT_2),
        "sla_policy_id": str(policy),
        "comment_count": 2,
        "public_comment_count": 1,
        "conversation_count": 1,
    }
    assert [(c["body"], c["public"]) for c in ticket["comments"]] == [
        ("Checking the payment", False),
        ("We refunded you", True),
    ]
    assert ticket["comments"][1]["id"] == str(retried)
    assert [c["id"] for c in ticket["conversations"]] == [str(second)]
    assert ticket["resolved_at"] == ticket["status_changed_at"] is not None
    assert ticket["last_comment_at"] == ticket["comments"][1]["at"]
    assert ticket["version"] == apps.tickets.get(A, refund)["version"]

    assert ids(model.for_conversation(A, second)) == [str(refund)]
    assert model.for_conversation(A, CONVERSATION) == []
    assert ids(model.for_conversation(B, CONVERSATION)) == [str(t["other"])]
    assert model.for_conversation(B, second) == []

    tickets.change_status(A, refund, "open")
    tickets.unassign(A, refund)
    tickets.change_status(A, refund, "closed")
    catch_up(model, apps)
    closed = model.get(A, refund)
    assert closed is not None
    assert (closed["resolved_at"], closed["assignee"], closed["status"]) == (None, None, "closed")
    assert closed["closed_at"] is not None


def test_changes_name_the_ticket_and_the_lists_it_joins(
    apps: DomainApps, model: TicketsReadModel
) -> None:
    ticket = apps.tickets.raise_ticket(A, "Late", kind="complaint", customer_id=CUSTOMER)
    catch_up(model, apps)
    assert {(c.tenant_id, c.kind, c.key) for c in model.take_changes()} == {
        (A, "ticket", str(ticket)),
        (A, "customer_tickets", str(CUSTOMER)),
    }

    apps.tickets.change_customer(A, ticket, OTHER_CUSTOMER)
    apps.tickets.link_conversation(A, ticket, CONVERSATION)
    catch_up(model, apps)
    assert {(c.tenant_id, c.kind, c.key) for c in model.take_changes()} == {
        (A, "ticket", str(ticket)),
        (A, "customer_tickets", str(CUSTOMER)),
        (A, "customer_tickets", str(OTHER_CUSTOMER)),
        (A, "conversation_tickets", str(CONVERSATION)),
    }
    assert model.list(A, customer_id=CUSTOMER) == []
    assert ids(model.list(A, customer_id=OTHER_CUSTOMER)) == [str(ticket)]


def test_applying_twice_changes_nothing_and_a_rebuild_is_identical(
    apps: DomainApps, model: TicketsReadModel, tmp_path: Path
) -> None:
    t = desk(apps)
    apps.tickets.comment(A, t["late"], AGENT_1, "Asked the courier", public=True)
    apps.tickets.change_status(A, t["late"], "closed")
    first = catch_up(model, apps)
    assert first > 0
    assert catch_up(model, apps) == 0

    rebuilt = TicketsReadModel(tmp_path / "rebuilt.sqlite")
    assert catch_up(rebuilt, apps) == first
    assert compare(model.connect(), rebuilt.connect()) == []
