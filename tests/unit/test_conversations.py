"""Conversation aggregate and Conversations application (CT2, CT4-CT9), in memory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.base import NotFound
from domain.conversations import (
    MAX_TAGS,
    AlreadyAssigned,
    Conversation,
    ConversationClosed,
    Conversations,
    ConversationStatus,
    InvalidConversation,
    NotAssigned,
    StatusChangeRefused,
)
from domain.vocabulary import Channel, Direction

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
CUSTOMER, AGENT, OTHER_AGENT, QUEUE = uuid4(), uuid4(), uuid4(), uuid4()
PDF = {"name": "hoa-don.pdf", "content_type": "application/pdf", "size": 1234, "url": "https://f/1"}


@pytest.fixture
def app(transcoder_env: dict[str, str]) -> Conversations:
    return Conversations(env=transcoder_env)


@pytest.fixture
def chat(app: Conversations) -> UUID:
    return app.start("acme", Channel.CHAT, CUSTOMER, thread_key="session-1", at=T0)


def events(app: Conversations, cid: UUID) -> list[Any]:
    return list(app.repository.event_store.get(cid))


def status(app: Conversations, cid: UUID) -> str:
    return str(app.get("acme", cid)["status"])


def version(app: Conversations, cid: UUID) -> int:
    return int(app.get("acme", cid)["version"])


# Starting


def test_starting_records_channel_customer_queue_subject_and_thread_key(app: Conversations) -> None:
    cid = app.start(
        "acme",
        "email",
        CUSTOMER,
        queue_id=QUEUE,
        subject="  Hoá đơn tháng 3 ",
        thread_key="<root@mail.example.vn>",
        at=T0,
    )
    shown = app.get("acme", cid)
    assert shown["channel"] == "email" and shown["direction"] == "inbound"
    assert shown["customer_id"] == str(CUSTOMER) and shown["queue_id"] == str(QUEUE)
    assert shown["subject"] == "Hoá đơn tháng 3"
    assert shown["thread_key"] == "<root@mail.example.vn>"
    assert shown["status"] == "open" and shown["assignee"] is None
    assert shown["started_at"] == T0.isoformat()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"channel": "fax"}, "Channel"),
        ({"direction": Direction.INTERNAL}, "inbound or outbound"),
        ({"at": datetime(2025, 3, 3, 8, 0)}, "timezone"),
        ({"subject": "x" * 501}, "subject"),
    ],
)
def test_a_conversation_with_bad_values_is_not_started(
    app: Conversations, kwargs: dict[str, Any], reason: str
) -> None:
    given: dict[str, Any] = {"channel": Channel.SMS, **kwargs}
    with pytest.raises(InvalidConversation, match=reason):
        app.start("acme", given.pop("channel"), CUSTOMER, **given)


# Messages and idempotency


def test_the_same_inbound_message_twice_adds_it_once(app: Conversations, chat: UUID) -> None:
    app.receive_message("acme", chat, "m1", "Xin chào", at=T0)
    app.receive_message("acme", chat, "m1", "Xin chào", at=T0)
    app.receive_message("acme", chat, " m1 ", "a different body, same fact id", at=T0)
    assert [m["id"] for m in app.get("acme", chat)["messages"]] == ["m1"]
    assert version(app, chat) == 2


def test_the_same_outbound_message_twice_adds_it_once(app: Conversations, chat: UUID) -> None:
    app.send_message("acme", chat, "out-1", AGENT, "Chào anh")
    app.send_message("acme", chat, "out-1", AGENT, "Chào anh")
    assert version(app, chat) == 2


def test_inbound_and_outbound_share_one_id_space(app: Conversations, chat: UUID) -> None:
    # An email we sent can come back in through the mailbox with its own Message-ID.
    app.send_message("acme", chat, "<out-1@acme>", AGENT, "Chào anh")
    app.receive_message("acme", chat, "<out-1@acme>", "Chào anh")
    assert version(app, chat) == 2


def test_a_message_delivered_again_after_close_is_ignored(app: Conversations, chat: UUID) -> None:
    app.receive_message("acme", chat, "m1", "Xin chào")
    app.close_conversation("acme", chat)
    app.receive_message("acme", chat, "m1", "Xin chào")
    assert version(app, chat) == 3


def test_a_new_message_on_a_closed_conversation_raises_conversation_closed(
    app: Conversations, chat: UUID
) -> None:
    app.close_conversation("acme", chat)
    with pytest.raises(ConversationClosed):
        app.receive_message("acme", chat, "m2", "Còn đó không?")
    with pytest.raises(ConversationClosed):
        app.send_message("acme", chat, "o2", AGENT, "Dạ còn")


def test_messages_keep_their_channel_time_direction_and_attachments(
    app: Conversations, chat: UUID
) -> None:
    template = uuid4()
    app.receive_message("acme", chat, "m1", "", [PDF], at=T0 + timedelta(minutes=1))
    app.send_message(
        "acme", chat, "o1", AGENT, "Đã nhận", template_id=template, at=T0 + timedelta(minutes=2)
    )
    received, sent = app.get("acme", chat)["messages"]
    assert received == {
        "id": "m1",
        "direction": "inbound",
        "body": "",
        "attachments": [PDF],
        "at": (T0 + timedelta(minutes=1)).isoformat(),
        "agent_id": None,
        "template_id": None,
    }
    assert sent["direction"] == "outbound" and sent["agent_id"] == str(AGENT)
    assert sent["template_id"] == str(template)


@pytest.mark.parametrize(
    ("body", "attachments", "reason"),
    [
        ("  ", [], "body or an attachment"),
        ("x" * 100_001, [], "at most"),
        ("", [{**PDF, "size": -1}], "size"),
        ("", [{**PDF, "size": "12"}], "size"),
        ("", [{**PDF, "bytes": b"%PDF"}], "exactly"),
        ("", [{k: v for k, v in PDF.items() if k != "url"}], "exactly"),
        ("", [{**PDF, "content_type": "pdf"}], "content type"),
        ("", [{**PDF, "url": "https://f/a b"}], "url"),
        ("", [PDF] * 21, "attachments"),
    ],
)
def test_a_bad_message_is_refused(
    app: Conversations, chat: UUID, body: str, attachments: list[Any], reason: str
) -> None:
    with pytest.raises(InvalidConversation, match=reason):
        app.receive_message("acme", chat, "m1", body, attachments)
    assert version(app, chat) == 1


@pytest.mark.parametrize("bad", ["", "  ", "two words"])
def test_a_message_needs_an_external_id_without_spaces(
    app: Conversations, chat: UUID, bad: str
) -> None:
    with pytest.raises(InvalidConversation, match="message id"):
        app.receive_message("acme", chat, bad, "hi")


# First response (SLA)


def test_the_first_agent_reply_after_the_customer_wrote_is_the_first_response(
    app: Conversations, chat: UUID
) -> None:
    app.receive_message("acme", chat, "m1", "Xin chào", at=T0)
    app.send_message("acme", chat, "o1", AGENT, "Chào anh", at=T0 + timedelta(minutes=3))
    app.send_message("acme", chat, "o2", AGENT, "Anh cần gì ạ", at=T0 + timedelta(minutes=4))
    sent = [e for e in events(app, chat) if isinstance(e, Conversation.MessageSent)]
    assert [e.first_response for e in sent] == [True, False]
    assert app.get("acme", chat)["first_response_at"] == (T0 + timedelta(minutes=3)).isoformat()


def test_an_automatic_reply_is_not_a_first_response(app: Conversations, chat: UUID) -> None:
    app.receive_message("acme", chat, "m1", "Xin chào")
    app.send_message("acme", chat, "auto-1", None, "Chúng tôi sẽ trả lời sớm")
    assert app.get("acme", chat)["first_response_at"] is None
    app.send_message("acme", chat, "o1", AGENT, "Chào anh")
    assert app.get("acme", chat)["first_response_at"] is not None


def test_an_agent_opening_an_outbound_conversation_is_not_a_response(
    app: Conversations,
) -> None:
    cid = app.start("acme", Channel.SMS, CUSTOMER, direction="outbound")
    app.send_message("acme", cid, "o1", AGENT, "Đơn hàng của anh đã giao")
    assert app.get("acme", cid)["first_response_at"] is None
    app.receive_message("acme", cid, "m1", "Cảm ơn")
    app.send_message("acme", cid, "o2", AGENT, "Dạ")
    sent = [e for e in events(app, cid) if isinstance(e, Conversation.MessageSent)]
    assert [e.first_response for e in sent] == [False, True]


# Status workflow


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (["set_pending"], "pending"),
        (["resolve"], "resolved"),
        (["close_conversation"], "closed"),
        (["set_pending", "reopen"], "open"),
        (["set_pending", "resolve"], "resolved"),
        (["set_pending", "close_conversation"], "closed"),
        (["resolve", "reopen"], "open"),
        (["resolve", "close_conversation"], "closed"),
    ],
)
def test_the_workflow_allows_these_moves(
    app: Conversations, chat: UUID, path: list[str], expected: str
) -> None:
    for verb in path:
        getattr(app, verb)("acme", chat)
    assert status(app, chat) == expected


@pytest.mark.parametrize("verb", ["set_pending", "resolve", "reopen", "close_conversation"])
def test_asking_for_the_status_it_has_records_nothing(
    app: Conversations, chat: UUID, verb: str
) -> None:
    getattr(app, verb)("acme", chat)
    before = version(app, chat)
    getattr(app, verb)("acme", chat)
    assert version(app, chat) == before


def test_a_resolved_conversation_cannot_become_pending(app: Conversations, chat: UUID) -> None:
    app.resolve("acme", chat)
    with pytest.raises(StatusChangeRefused):
        app.set_pending("acme", chat)


@pytest.mark.parametrize("status_before", ["set_pending", "resolve"])
def test_a_customer_writing_again_reopens_the_conversation(
    app: Conversations, chat: UUID, status_before: str
) -> None:
    getattr(app, status_before)("acme", chat)
    app.receive_message("acme", chat, "m1", "Vẫn chưa được")
    assert status(app, chat) == "open"
    reopened = events(app, chat)[-1]
    assert isinstance(reopened, Conversation.StatusChanged)
    assert reopened.by_customer and reopened.status == "open"


def test_an_agent_writing_after_resolving_leaves_it_resolved(
    app: Conversations, chat: UUID
) -> None:
    app.resolve("acme", chat)
    app.send_message("acme", chat, "o1", AGENT, "Cảm ơn anh đã liên hệ")
    assert status(app, chat) == "resolved"


def test_a_closed_conversation_is_final(app: Conversations, chat: UUID) -> None:
    app.assign("acme", chat, AGENT)
    app.close_conversation("acme", chat)
    refused: list[Callable[[], None]] = [
        lambda: app.reopen("acme", chat),
        lambda: app.resolve("acme", chat),
        lambda: app.set_pending("acme", chat),
        lambda: app.assign("acme", chat, AGENT),
        lambda: app.transfer("acme", chat, OTHER_AGENT),
        lambda: app.unassign("acme", chat),
        lambda: app.move_to_queue("acme", chat, QUEUE),
        lambda: app.add_note("acme", chat, AGENT, "note"),
        lambda: app.tag("acme", chat, "vip"),
        lambda: app.untag("acme", chat, "vip"),
    ]
    for command in refused:
        with pytest.raises(ConversationClosed):
            command()


# Assignment


def test_assign_transfer_and_unassign_move_the_conversation_between_agents(
    app: Conversations, chat: UUID
) -> None:
    app.assign("acme", chat, AGENT)
    app.assign("acme", chat, AGENT)  # the same again: nothing new
    app.transfer("acme", chat, OTHER_AGENT)
    app.transfer("acme", chat, OTHER_AGENT)
    assert app.get("acme", chat)["assignee"] == str(OTHER_AGENT)
    app.unassign("acme", chat)
    assert app.get("acme", chat)["assignee"] is None
    moves = [type(e).__name__ for e in events(app, chat)[1:]]
    assert moves == ["Assigned", "Transferred", "Unassigned"]
    transferred = events(app, chat)[2]
    assert (transferred.from_agent_id, transferred.to_agent_id) == (AGENT, OTHER_AGENT)


def test_assigning_a_conversation_another_agent_has_is_refused(
    app: Conversations, chat: UUID
) -> None:
    app.assign("acme", chat, AGENT)
    with pytest.raises(AlreadyAssigned):
        app.assign("acme", chat, OTHER_AGENT)


def test_transfer_or_unassign_without_an_agent_raises_not_assigned(
    app: Conversations, chat: UUID
) -> None:
    with pytest.raises(NotAssigned):
        app.transfer("acme", chat, AGENT)
    with pytest.raises(NotAssigned):
        app.unassign("acme", chat)


def test_moving_to_a_queue_lets_go_of_the_agent(app: Conversations, chat: UUID) -> None:
    app.assign("acme", chat, AGENT)
    app.move_to_queue("acme", chat, QUEUE)
    app.move_to_queue("acme", chat, QUEUE)
    shown = app.get("acme", chat)
    assert (shown["queue_id"], shown["assignee"]) == (str(QUEUE), None)
    moved = events(app, chat)[-1]
    assert isinstance(moved, Conversation.MovedToQueue) and moved.from_agent_id == AGENT
    assert version(app, chat) == 3


# Notes and tags


def test_notes_are_internal_and_a_retried_note_counts_once(app: Conversations, chat: UUID) -> None:
    note = uuid4()
    app.add_note("acme", chat, AGENT, "  Khách VIP, gọi lại sau 5h ", note_id=note)
    app.add_note("acme", chat, AGENT, "Khách VIP, gọi lại sau 5h", note_id=note)
    app.add_note("acme", chat, OTHER_AGENT, "Đã gọi")
    shown = app.get("acme", chat)
    assert [n["body"] for n in shown["notes"]] == ["Khách VIP, gọi lại sau 5h", "Đã gọi"]
    assert shown["messages"] == []  # a note is never a message to the customer
    with pytest.raises(InvalidConversation, match="note"):
        app.add_note("acme", chat, AGENT, " ")


def test_tags_are_normalised_deduplicated_and_bounded(app: Conversations, chat: UUID) -> None:
    app.tag("acme", chat, "  VIP   Customer ")
    app.tag("acme", chat, "vip customer")
    app.tag("acme", chat, "billing")
    app.untag("acme", chat, "VIP customer")
    app.untag("acme", chat, "never-there")
    assert app.get("acme", chat)["tags"] == ["billing"]
    assert version(app, chat) == 4
    for i in range(MAX_TAGS - 1):
        app.tag("acme", chat, f"t{i}")
    with pytest.raises(InvalidConversation, match="at most"):
        app.tag("acme", chat, "one-too-many")
    with pytest.raises(InvalidConversation, match="tag"):
        app.tag("acme", chat, "x" * 51)


# Tenant walls and replay


def test_another_tenants_conversation_is_not_found(app: Conversations, chat: UUID) -> None:
    with pytest.raises(NotFound):
        app.get("globex", chat)
    with pytest.raises(NotFound):
        app.receive_message("globex", chat, "m1", "hi")
    with pytest.raises(NotFound):
        app.assign("globex", chat, AGENT)
    with pytest.raises(NotFound):
        app.get("acme", uuid4())
    assert version(app, chat) == 1


def test_a_reloaded_conversation_has_the_same_state(app: Conversations) -> None:
    c = Conversation(
        tenant_id="acme",
        channel=Channel.EMAIL,
        customer_id=CUSTOMER,
        direction=Direction.INBOUND,
        queue_id=QUEUE,
        subject="Hoá đơn",
        thread_key="<root@x>",
        at=T0,
    )
    c.receive_message("<m1@x>", "Xin chào", [PDF], at=T0)
    c.assign(AGENT)
    c.send_message("<o1@acme>", AGENT, "Chào anh", template_id=uuid4(), at=T0)
    c.add_note(AGENT, "note")
    c.tag("billing")
    c.set_pending()
    c.receive_message("<m2@x>", "Còn đó không?", at=T0)
    c.transfer(OTHER_AGENT)
    app.save(c)
    reloaded: Conversation = app.repository.get(c.id)
    assert vars(reloaded).keys() == vars(c).keys()
    for key, value in vars(c).items():
        if key != "_pending_events":
            assert getattr(reloaded, key) == value, key
    assert type(reloaded.status) is ConversationStatus and type(reloaded.channel) is Channel
    reloaded.receive_message("<m1@x>", "Xin chào")  # still known after replay
    assert reloaded.version == c.version
