"""connectors.handlers without NATS: facts turned into commands on in-memory applications."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from connectors.facts import (
    CallAnswered,
    CallHungUp,
    CallStarted,
    ChatMessageReceived,
    EmailReceived,
    SmsReceived,
)
from connectors.handlers import FactApps, handle
from domain.call_service import Calls
from domain.calls import Call
from domain.conversations import Conversations, thread_conversation_id
from domain.customers import Customers, identity_customer_id
from domain.vocabulary import Channel

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def apps(transcoder_env: dict[str, str]) -> Iterator[FactApps]:
    built = FactApps(
        customers=Customers(env=transcoder_env),
        conversations=Conversations(env=transcoder_env),
        calls=Calls(env=transcoder_env),
    )
    yield built
    for app in (built.customers, built.conversations, built.calls):
        app.close()


def chat(fact_id: str, text: str = "hello", session: str = "s1") -> ChatMessageReceived:
    return ChatMessageReceived(
        fact_id=fact_id,
        tenant_id="acme",
        at=T0,
        visitor_id="visitor-1",
        session_id=session,
        text=text,
        visitor_name="An",
    )


def conversation_of(apps: FactApps, fact_id: str) -> dict[str, Any]:
    """The conversation of chat session s1 holding a message, walking the thread's ids."""
    for generation in range(5):
        cid = thread_conversation_id("acme", Channel.CHAT, "s1", generation)
        view = apps.conversations.get("acme", cid)
        if any(m["id"] == fact_id for m in view["messages"]):
            return view
    raise AssertionError(f"no conversation holds {fact_id}")


def test_a_chat_message_registers_the_visitor_and_starts_a_conversation(apps: FactApps) -> None:
    assert handle(chat("m1"), apps) == "applied"

    customer_id = identity_customer_id("acme", "chat", "visitor-1")
    customer = apps.customers.get("acme", customer_id)
    assert customer["name"] == "An"
    assert customer["identities"] == [["chat", "visitor-1"]]
    conversation = conversation_of(apps, "m1")
    assert conversation["customer_id"] == str(customer_id)
    assert conversation["channel"] == "chat"
    assert [m["body"] for m in conversation["messages"]] == ["hello"]


def test_the_same_fact_twice_records_one_message(apps: FactApps) -> None:
    assert handle(chat("m1"), apps) == "applied"
    assert handle(chat("m1"), apps) == "duplicate"
    assert handle(chat("m2", "again"), apps) == "applied"
    messages = conversation_of(apps, "m1")["messages"]
    assert [m["id"] for m in messages] == ["m1", "m2"]


def test_a_closed_thread_continues_in_a_new_conversation_and_old_facts_stay_duplicates(
    apps: FactApps,
) -> None:
    handle(chat("m1"), apps)
    first = UUID(str(conversation_of(apps, "m1")["id"]))
    apps.conversations.close_conversation("acme", first)

    assert handle(chat("m2"), apps) == "applied"
    assert handle(chat("m1"), apps) == "duplicate"
    second = conversation_of(apps, "m2")
    assert second["id"] != str(first) and second["status"] == "open"
    assert second["customer_id"] == conversation_of(apps, "m1")["customer_id"]


def test_emails_of_one_thread_share_a_conversation(apps: FactApps) -> None:
    def mail(message_id: str, references: list[str]) -> EmailReceived:
        return EmailReceived(
            fact_id=message_id,
            tenant_id="acme",
            at=T0,
            from_address="An@Example.com",
            subject="Invoice",
            text="see attached",
            references=references,
        )

    assert handle(mail("<a@x>", []), apps) == "applied"
    assert handle(mail("<b@x>", ["<a@x>"]), apps) == "applied"
    customer_id = identity_customer_id("acme", "email", "an@example.com")
    assert apps.customers.get("acme", customer_id)["identities"] == [["email", "an@example.com"]]


def test_a_domain_refusal_is_an_outcome_not_an_exception(apps: FactApps) -> None:
    assert handle(chat("m1", text="   "), apps).startswith("rejected: InvalidConversation")
    sms = SmsReceived(
        fact_id="sms-1",
        tenant_id="acme",
        at=T0,
        from_number="not a number",
        hotline="1900",
        text="x",
    )
    assert handle(sms, apps).startswith("rejected: InvalidCustomer")


def call_facts() -> list[CallStarted | CallAnswered | CallHungUp]:
    return [
        CallStarted(
            fact_id="e1",
            tenant_id="acme",
            at=T0,
            call_ref="ref-1",
            direction="inbound",
            hotline="19001234",
            caller_number="+84901234567",
            caller_leg_id="leg-c",
        ),
        CallAnswered(fact_id="e2", tenant_id="acme", at=T0, call_ref="ref-1", leg_id="leg-c"),
        CallHungUp(
            fact_id="e3",
            tenant_id="acme",
            at=T0 + timedelta(seconds=30),
            call_ref="ref-1",
            leg_id="leg-c",
            cause="NORMAL_CLEARING",
        ),
    ]


def test_call_facts_drive_the_call_to_its_end_once(apps: FactApps) -> None:
    facts = call_facts()
    assert [handle(f, apps) for f in facts] == ["applied"] * 3
    assert [handle(f, apps) for f in facts] == ["duplicate"] * 3
    call = apps.calls.get("acme", Call.create_id("acme", "ref-1"))
    assert call["ended_at"] is not None and call["end_cause"] == "NORMAL_CLEARING"


def test_a_call_fact_before_its_start_is_deferred(apps: FactApps) -> None:
    started, answered, _ = call_facts()
    assert handle(answered, apps).startswith("deferred")
    assert handle(started, apps) == "applied"
    assert handle(answered, apps) == "applied"


def test_an_outbound_start_with_half_an_agent_is_rejected(apps: FactApps) -> None:
    fact = CallStarted(
        fact_id="e9",
        tenant_id="acme",
        at=T0,
        call_ref="ref-9",
        direction="outbound",
        hotline="19001234",
        caller_number="1001",
        caller_leg_id="leg-a",
        agent_endpoint="sip_phone",
    )
    assert handle(fact, apps).startswith("rejected: InvalidCall")


def test_a_campaign_dial_out_starts_with_the_customer_alone(apps: FactApps) -> None:
    fact = CallStarted(
        fact_id="e10",
        tenant_id="acme",
        at=T0,
        call_ref="ref-10",
        direction="outbound",
        hotline="+842873000111",
        caller_number="+842873000111",
        callee_number="+84901234567",
        caller_leg_id="leg-c",
    )
    assert handle(fact, apps) == "applied"
    call = apps.calls.get("acme", Call.create_id("acme", "ref-10"))
    assert call["direction"] == "outbound" and call["customer_number"] == "+84901234567"
    assert [(leg["leg_id"], leg["party"]) for leg in call["legs"]] == [("leg-c", "customer")]
    # The customer picking up is not an answer: an agent's is.
    answered = CallAnswered(
        fact_id="e11", tenant_id="acme", at=T0, call_ref="ref-10", leg_id="leg-c"
    )
    assert handle(answered, apps) == "applied"
    assert apps.calls.get("acme", Call.create_id("acme", "ref-10"))["answered_at"] is None


def test_switch_reports_during_a_call_become_its_events(apps: FactApps) -> None:
    """IVR steps, hold, mute and a recording reported by the bridge, each once."""
    from uuid import uuid4

    from connectors.facts import (
        CallAgentRinging,
        CallHeld,
        CallIvrStep,
        CallMuted,
        CallQueued,
        CallRecordingStarted,
        CallRecordingStopped,
        CallResumed,
        CallUnmuted,
        TelephonyCommandFailed,
    )

    flow, queue, agent = uuid4(), uuid4(), uuid4()
    common: dict[str, Any] = {"tenant_id": "acme", "call_ref": "ref-7"}
    later = [T0 + timedelta(seconds=s) for s in range(20)]
    script = [
        CallStarted(
            fact_id="s",
            at=later[0],
            direction="inbound",
            hotline="19001234",
            caller_number="+84901234567",
            caller_leg_id="leg-c",
            **common,
        ),
        CallIvrStep(
            fact_id="i1", at=later[1], flow_id=flow, flow_version=2, node_id="menu", **common
        ),
        CallIvrStep(
            fact_id="i2",
            at=later[2],
            flow_id=flow,
            flow_version=2,
            node_id="sales",
            digits="1",
            **common,
        ),
        CallQueued(fact_id="q", at=later[3], queue_id=queue, **common),
        CallAgentRinging(
            fact_id="r",
            at=later[4],
            leg_id="leg-a",
            agent_id=agent,
            agent_endpoint="sip_phone",
            address="1001",
            **common,
        ),
        CallAnswered(fact_id="a", at=later[5], leg_id="leg-a", **common),
        CallHeld(fact_id="h", at=later[6], **common),
        CallResumed(fact_id="u", at=later[7], **common),
        CallMuted(fact_id="m", at=later[8], leg_id="leg-a", **common),
        CallUnmuted(fact_id="n", at=later[9], leg_id="leg-a", **common),
        CallRecordingStarted(fact_id="rs", at=later[10], recording_id="/rec/1.wav", **common),
        CallRecordingStopped(
            fact_id="rt",
            at=later[11],
            recording_id="/rec/1.wav",
            uri="/rec/1.wav",
            duration_seconds=1.0,
            size_bytes=16044,
            **common,
        ),
    ]
    assert [handle(f, apps) for f in script] == ["applied"] * len(script)
    assert [handle(f, apps) for f in script] == ["duplicate"] * len(script)
    call = apps.calls.get("acme", Call.create_id("acme", "ref-7"))
    assert [(s["node_id"], s["digits"]) for s in call["ivr_path"]] == [
        ("menu", None),
        ("sales", "1"),
    ]
    assert call["queue_id"] == str(queue) and not call["held"]
    [agent_leg] = [leg for leg in call["legs"] if leg["leg_id"] == "leg-a"]
    assert agent_leg["muted"] is False and agent_leg["answered_at"]
    [recording] = call["recordings"]
    assert recording["uri"] == "/rec/1.wav" and recording["stopped_at"]
    assert (recording["duration_seconds"], recording["size_bytes"]) == (1.0, 16044)
    failed = TelephonyCommandFailed(
        fact_id="f",
        tenant_id="acme",
        at=T0,
        command_id="c1",
        command="HoldCall",
        call_ref="gone",
        reason="call gone is not live on this switch",
    )
    assert handle(failed, apps) == (
        "rejected: HoldCall c1 failed: call gone is not live on this switch"
    )
