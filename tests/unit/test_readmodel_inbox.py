"""The inbox read model: conversations per agent and per queue, live calls, tenant walls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from domain.apps import DomainApps
from domain.call_legs import LegSpec, SupervisionMode
from domain.sla_clocks import ClockTerms
from domain.vocabulary import EndpointKind
from projections.inbox import PREVIEW, InboxReadModel
from projections.rebuild import compare
from projections.replay import catch_up

A, B = "acme", "bravo"
AGENT_1, AGENT_2, SUPERVISOR = uuid4(), uuid4(), uuid4()
QUEUE, OTHER_QUEUE = uuid4(), uuid4()
# Fact times after the wall clock: the messages' own times decide the order, not the
# moment the test ran (assignments and status changes carry the event's time).
T0 = datetime(2030, 5, 1, 9, 0, tzinfo=UTC)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def apps(transcoder_env: dict[str, str]) -> Iterator[DomainApps]:
    built = DomainApps.build(transcoder_env)
    yield built
    built.close()


@pytest.fixture
def model(tmp_path: Path) -> InboxReadModel:
    return InboxReadModel(tmp_path / "inbox.sqlite")


def start(
    apps: DomainApps,
    tenant: str,
    channel: str,
    at: float,
    *,
    queue: UUID | None = None,
    subject: str | None = None,
) -> UUID:
    return apps.conversations.start(
        tenant, channel, uuid4(), queue_id=queue, subject=subject, at=t(at)
    )


def ids(rows: list[dict[str, object]]) -> list[object]:
    return [r["id"] for r in rows]


def inbox(apps: DomainApps) -> dict[str, UUID]:
    """Tenant A: a chat and an email for agent 1, an SMS waiting in the queue, a closed
    email; tenant B: the same agent and queue ids, which must never show in A."""
    conv = apps.conversations
    chat = start(apps, A, "chat", 0)
    conv.receive_message(A, chat, "m1", "Hello, my order is late", at=t(10))
    conv.assign(A, chat, AGENT_1)
    conv.send_message(A, chat, "r1", AGENT_1, "Looking into it", at=t(20))
    conv.tag(A, chat, "  VIP  ")

    email = start(apps, A, "email", 30, queue=QUEUE, subject="Refund")
    conv.receive_message(A, email, "e1", "Please refund order 42", at=t(40))
    conv.assign(A, email, AGENT_1)

    sms = start(apps, A, "sms", 50, queue=QUEUE)
    conv.receive_message(A, sms, "s1", "Call me back", at=t(55))

    closed = start(apps, A, "email", 5)
    conv.receive_message(A, closed, "c1", "Thanks", at=t(6))
    conv.assign(A, closed, AGENT_1)
    conv.close_conversation(A, closed)

    other = start(apps, B, "chat", 100, queue=QUEUE)
    conv.receive_message(B, other, "b1", "Tenant B here", at=t(101))
    conv.assign(B, other, AGENT_1)
    return {"chat": chat, "email": email, "sms": sms, "closed": closed, "other": other}


def test_an_agents_inbox_is_newest_first_and_walled_by_tenant(
    apps: DomainApps, model: InboxReadModel
) -> None:
    c = inbox(apps)
    catch_up(model, apps)

    assert ids(model.for_agent(A, AGENT_1)) == [str(c["email"]), str(c["chat"]), str(c["closed"])]
    assert ids(model.for_agent(B, AGENT_1)) == [str(c["other"])]
    assert model.for_agent(A, AGENT_2) == []
    assert model.get(B, c["chat"]) is None
    assert model.get(A, c["other"]) is None
    assert model.get(A, c["chat"]) is not None


def test_filters_by_channel_status_tag_and_limit(apps: DomainApps, model: InboxReadModel) -> None:
    c = inbox(apps)
    catch_up(model, apps)

    assert ids(model.for_agent(A, AGENT_1, channel="chat")) == [str(c["chat"])]
    assert ids(model.for_agent(A, AGENT_1, channel=["email"])) == [
        str(c["email"]),
        str(c["closed"]),
    ]
    assert ids(model.for_agent(A, AGENT_1, status="closed")) == [str(c["closed"])]
    assert ids(model.for_agent(A, AGENT_1, status=("open", "pending"))) == [
        str(c["email"]),
        str(c["chat"]),
    ]
    assert ids(model.for_agent(A, AGENT_1, tag="vip")) == [str(c["chat"])]
    assert ids(model.for_agent(A, AGENT_1, limit=1, offset=1)) == [str(c["chat"])]


def test_a_queue_lists_its_conversations_taken_or_not(
    apps: DomainApps, model: InboxReadModel
) -> None:
    c = inbox(apps)
    catch_up(model, apps)

    assert ids(model.for_queue(A, QUEUE)) == [str(c["sms"]), str(c["email"])]
    assert ids(model.for_queue(A, QUEUE, assigned=False)) == [str(c["sms"])]
    assert ids(model.for_queue(A, QUEUE, assigned=True)) == [str(c["email"])]
    assert ids(model.for_queue(A, QUEUE, channel="sms", status="open")) == [str(c["sms"])]
    assert ids(model.for_queue(B, QUEUE)) == [str(c["other"])]
    assert model.for_queue(A, OTHER_QUEUE) == []


def test_a_line_shows_what_an_agent_needs(apps: DomainApps, model: InboxReadModel) -> None:
    c = inbox(apps)
    catch_up(model, apps)

    chat = model.get(A, c["chat"])
    assert chat is not None
    assert chat["channel"] == "chat"
    assert chat["status"] == "open"
    assert chat["assignee"] == str(AGENT_1)
    assert chat["message_count"] == 2
    assert chat["last_message"] == {
        "at": t(20).isoformat(timespec="microseconds"),
        "direction": "outbound",
        "preview": "Looking into it",
        "agent_id": str(AGENT_1),
        "attachments": 0,
    }
    assert chat["awaiting_reply"] is False
    assert chat["first_response_at"] == t(20).isoformat(timespec="microseconds")
    assert chat["tags"] == ["vip"]

    email = model.get(A, c["email"])
    assert email is not None
    assert email["subject"] == "Refund"
    assert email["queue_id"] == str(QUEUE)
    assert email["awaiting_reply"] is True
    assert email["waiting_since"] == t(40).isoformat(timespec="microseconds")
    assert email["last_message"]["preview"] == "Please refund order 42"


def test_previews_late_messages_and_automation(apps: DomainApps, model: InboxReadModel) -> None:
    conv = apps.conversations
    cid = start(apps, A, "email", 0)
    conv.receive_message(A, cid, "m2", "second", at=t(20))
    # Delivered late: an older message counts, but the newer one stays the preview.
    conv.receive_message(A, cid, "m1", "first", at=t(10))
    catch_up(model, apps)
    row = model.get(A, cid)
    assert row is not None
    assert (row["message_count"], row["last_message"]["preview"]) == (2, "second")
    assert row["last_activity_at"] == t(20).isoformat(timespec="microseconds")

    # An auto-acknowledgement is no answer: the customer still waits.
    conv.send_message(A, cid, "auto", None, "We got your mail", at=t(30))
    catch_up(model, apps)
    row = model.get(A, cid)
    assert row is not None
    assert row["message_count"] == 3
    assert row["last_message"]["preview"] == "We got your mail"
    assert row["last_message"]["agent_id"] is None
    assert row["awaiting_reply"] is True
    assert row["waiting_since"] == t(10).isoformat(timespec="microseconds")

    long_body = "word\n\n  " * 100
    conv.send_message(A, cid, "r1", AGENT_1, long_body, at=t(40))
    catch_up(model, apps)
    row = model.get(A, cid)
    assert row is not None
    preview = row["last_message"]["preview"]
    assert len(preview) == PREVIEW and preview.startswith("word word") and preview.endswith("…")
    assert row["awaiting_reply"] is False


def test_hand_overs_move_a_conversation_between_lists(
    apps: DomainApps, model: InboxReadModel, tmp_path: Path
) -> None:
    conv = apps.conversations
    cid = start(apps, A, "chat", 0, queue=QUEUE)
    conv.assign(A, cid, AGENT_1)
    conv.transfer(A, cid, AGENT_2)
    catch_up(model, apps)
    assert model.for_agent(A, AGENT_1) == []
    assert ids(model.for_agent(A, AGENT_2)) == [str(cid)]
    model.take_changes()

    conv.move_to_queue(A, cid, OTHER_QUEUE)
    catch_up(model, apps)
    assert model.for_agent(A, AGENT_2) == []
    assert model.for_queue(A, QUEUE) == []
    assert ids(model.for_queue(A, OTHER_QUEUE, assigned=False)) == [str(cid)]
    # Every list the row left or joined is told, and the row itself.
    changes = {(ch.tenant_id, ch.kind, ch.key) for ch in model.take_changes()}
    assert changes == {
        (A, "conversation", str(cid)),
        (A, "agent_inbox", str(AGENT_2)),
        (A, "queue_inbox", str(QUEUE)),
        (A, "queue_inbox", str(OTHER_QUEUE)),
    }

    conv.untag(A, cid, "none")  # no event: nothing to untag
    conv.tag(A, cid, "billing")
    conv.tag(A, cid, "urgent")
    conv.untag(A, cid, "BILLING")
    conv.add_note(A, cid, AGENT_2, "customer is upset")
    conv.set_pending(A, cid)
    catch_up(model, apps)
    row = model.get(A, cid)
    assert row is not None
    assert (row["tags"], row["note_count"], row["status"]) == (["urgent"], 1, "pending")


def test_hand_overs_and_notes_bump_the_activity_but_tags_do_not(
    apps: DomainApps, model: InboxReadModel
) -> None:
    # Messages in the past here, so that the events' own times are the latest activity.
    conv = apps.conversations
    past = datetime(2020, 1, 1, tzinfo=UTC)
    first = conv.start(A, "chat", uuid4(), queue_id=QUEUE, at=past)
    second = conv.start(A, "chat", uuid4(), queue_id=QUEUE, at=past + timedelta(seconds=1))
    catch_up(model, apps)
    assert ids(model.for_queue(A, QUEUE)) == [str(second), str(first)]

    conv.tag(A, first, "vip")
    catch_up(model, apps)
    assert ids(model.for_queue(A, QUEUE)) == [str(second), str(first)]

    conv.assign(A, first, AGENT_1)
    catch_up(model, apps)
    assert ids(model.for_queue(A, QUEUE)) == [str(first), str(second)]

    conv.add_note(A, second, AGENT_1, "called back, no answer")
    catch_up(model, apps)
    assert ids(model.for_queue(A, QUEUE)) == [str(second), str(first)]


def test_calls_waiting_in_a_queue_and_an_agents_live_calls(
    apps: DomainApps, model: InboxReadModel
) -> None:
    calls = apps.calls
    customer = LegSpec.customer("c-1", "0912345678")
    agent = LegSpec.agent("a-1", AGENT_1, EndpointKind.WEBRTC, "1001")
    call = calls.start_inbound(A, "sw-1", "1900", customer, t(0))
    calls.offer_to_queue(A, call, QUEUE, t(5))
    later = calls.start_inbound(A, "sw-2", "1900", LegSpec.customer("c-2", "0987"), t(6))
    calls.offer_to_queue(A, later, QUEUE, t(8))
    # Tenant B, same queue and agent ids: never in A's lists.
    other = calls.start_inbound(B, "sw-1", "1900", customer, t(1))
    calls.offer_to_queue(B, other, QUEUE, t(2))
    calls.ring_agent(B, other, agent, t(3))
    catch_up(model, apps)

    waiting = model.waiting_calls(A, QUEUE)
    assert ids(waiting) == [str(call), str(later)]
    assert waiting[0]["state"] == "queued"
    assert waiting[0]["customer_number"] == "0912345678"
    assert model.agent_calls(A, AGENT_1) == []
    assert ids(model.agent_calls(B, AGENT_1)) == [str(other)]

    calls.ring_agent(A, call, agent, t(10))
    catch_up(model, apps)
    (ringing,) = model.agent_calls(A, AGENT_1)
    assert (ringing["id"], ringing["leg_state"], ringing["party"]) == (
        str(call),
        "ringing",
        "agent",
    )

    calls.answer(A, call, "a-1", t(12))
    calls.hold(A, call, t(20))
    supervisor = LegSpec.supervisor("s-1", SUPERVISOR, EndpointKind.WEBRTC, "1009")
    calls.supervise(A, call, supervisor, SupervisionMode.LISTEN, t(21))
    catch_up(model, apps)
    assert ids(model.waiting_calls(A, QUEUE)) == [str(later)]
    (talking,) = model.agent_calls(A, AGENT_1)
    assert (talking["state"], talking["leg_state"]) == ("on_hold", "connected")
    assert model.agent_calls(A, SUPERVISOR)[0]["party"] == "supervisor"

    calls.resume(A, call, t(25))
    catch_up(model, apps)
    assert model.agent_calls(A, AGENT_1)[0]["state"] == "talking"

    calls.hang_up(A, call, "c-1", "normal_clearing", t(60))
    calls.hang_up(A, later, "c-2", "normal_clearing", t(61))
    catch_up(model, apps)
    assert model.agent_calls(A, AGENT_1) == []
    assert model.agent_calls(A, SUPERVISOR) == []
    assert model.waiting_calls(A, QUEUE) == []
    assert ids(model.waiting_calls(B, QUEUE)) == [str(other)]


def test_a_transfer_hands_the_live_call_over(apps: DomainApps, model: InboxReadModel) -> None:
    calls = apps.calls
    call = calls.start_inbound(A, "sw-1", "1900", LegSpec.customer("c-1", "0912"), t(0))
    calls.ring_agent(A, call, LegSpec.agent("a-1", AGENT_1, EndpointKind.WEBRTC, "1001"), t(1))
    calls.answer(A, call, "a-1", t(2))
    calls.hold(A, call, t(3))
    to = LegSpec.agent("a-2", AGENT_2, EndpointKind.WEBRTC, "1002")
    calls.transfer_blind(A, call, "a-1", to, t(4))
    catch_up(model, apps)

    assert model.agent_calls(A, AGENT_1) == []
    (handed,) = model.agent_calls(A, AGENT_2)
    assert (handed["state"], handed["leg_state"]) == ("talking", "ringing")


def test_applying_twice_changes_nothing_and_a_rebuild_is_identical(
    apps: DomainApps, model: InboxReadModel, tmp_path: Path
) -> None:
    inbox(apps)
    call = apps.calls.start_inbound(A, "sw-1", "1900", LegSpec.customer("c-1", "0912"), t(0))
    apps.calls.offer_to_queue(A, call, QUEUE, t(1))
    first = catch_up(model, apps)
    assert first > 0
    assert catch_up(model, apps) == 0

    rebuilt = InboxReadModel(tmp_path / "rebuilt.sqlite")
    assert catch_up(rebuilt, apps) == first
    assert compare(model.connect(), rebuilt.connect()) == []

    # The streams in the other order give the same tables (one stream writes each row).
    class CallsFirst(InboxReadModel):
        upstreams = ("calls", "conversations")

    other_order = CallsFirst(tmp_path / "calls-first.sqlite")
    catch_up(other_order, apps)
    assert compare(model.connect(), other_order.connect()) == []


def test_a_conversations_sla_state_comes_from_its_clocks_and_filters_the_lists(
    apps: DomainApps, model: InboxReadModel
) -> None:
    conv, clocks = apps.conversations, apps.sla_clocks
    terms = ClockTerms(policy_id=uuid4(), key="k", target_seconds=100, warning_seconds=50)
    made = {}
    for name, at in (("calm", 0), ("risky", 1), ("late", 2), ("answered", 3), ("none", 4)):
        made[name] = start(apps, A, "chat", at, queue=QUEUE)
        conv.assign(A, made[name], AGENT_1)

    def clock(name: str, metric: str = "first_response") -> UUID:
        return clocks.start(A, "conversation", made[name], metric, terms, t(0)).id

    clock("calm")
    clocks.warn(A, clock("risky"), t(60))
    clock("risky", "resolution")
    clocks.breach(A, clock("late"), t(120))
    # Warned, then answered in time: on time again.
    answered = clock("answered")
    clocks.warn(A, answered, t(60))
    clocks.meet(A, answered, t(70), t(70))
    # A ticket's clock with the same subject id says nothing of the conversation.
    clocks.breach(A, clocks.start(A, "ticket", made["none"], "resolution", terms, t(0)).id, t(200))
    catch_up(model, apps)

    def states(rows: list[dict[str, object]]) -> dict[object, object]:
        return {r["id"]: r["sla_state"] for r in rows}

    expected = {
        str(made["calm"]): "on_time",
        str(made["risky"]): "at_risk",
        str(made["late"]): "breached",
        str(made["answered"]): "on_time",
        str(made["none"]): None,
    }
    assert states(model.for_agent(A, AGENT_1, channel="chat")) == expected
    assert model.get(A, made["late"])["sla_state"] == "breached"  # type: ignore[index]
    assert ids(model.for_agent(A, AGENT_1, sla="at_risk")) == [str(made["risky"])]
    assert set(ids(model.for_agent(A, AGENT_1, sla="on_time"))) == {
        str(made["calm"]),
        str(made["answered"]),
    }
    assert ids(model.for_queue(A, QUEUE, sla=["breached"])) == [str(made["late"])]
    assert model.for_agent(B, AGENT_1, sla="breached") == []
    # A breach stays once met late; the change is told under the conversation's id.
    model.take_changes()
    clocks.meet(A, clock("late"), t(130), t(130))
    catch_up(model, apps)
    assert model.get(A, made["late"])["sla_state"] == "breached"  # type: ignore[index]
    assert ("conversation_sla", str(made["late"])) in {
        (c.kind, c.key) for c in model.take_changes()
    }
