"""Commands from facts, end to end on a real nats-server: facts published on FACTS, the
fact consumers of connectors.bus, the applications on the JetStream event store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec
import nats
import pytest
from nats.js import JetStreamContext

from connectors.bus import ensure_facts_stream, start_fact_consumers
from connectors.facts import (
    PARKED_PREFIX,
    STREAM,
    CallAgentRinging,
    CallAnswered,
    CallHungUp,
    CallQueued,
    CallStarted,
    ChatMessageReceived,
    Parked,
    publish_fact,
)
from connectors.handlers import FactApps
from domain.asyncapp import AsyncRunner
from domain.base import NotFound
from domain.call_service import Calls
from domain.calls import Call
from domain.conversations import Conversations, thread_conversation_id
from domain.customers import Customers, identity_customer_id
from domain.vocabulary import Channel

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
R = TypeVar("R")


@pytest.fixture(scope="module")
def apps(nats_url: str) -> Iterator[FactApps]:
    env = {"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url}
    built = FactApps(
        customers=Customers(env=env), conversations=Conversations(env=env), calls=Calls(env=env)
    )
    yield built
    for app in (built.customers, built.conversations, built.calls):
        app.close()


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def handlers_running(nats_url: str, apps: FactApps) -> AsyncIterator[JetStreamContext]:
    """The fact subscribers of one process, and a JetStream context to publish with."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_facts_stream(js)
    runner = AsyncRunner(max_workers=4)
    consumers = await start_fact_consumers(js, apps, runner, retry_delay=0.2)
    try:
        yield js
    finally:
        for consumer in consumers:
            await consumer.stop()
        runner.close()
        await nc.close()


async def eventually(read: Callable[[], R], ok: Callable[[R], bool], timeout: float = 10) -> R:
    """`read()` (blocking, so in a thread) until `ok` says yes, or the last value read."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            value = await asyncio.to_thread(read)
        except NotFound:
            value = None
        if value is not None and ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached in {timeout}s; last read {value!r}")
        await asyncio.sleep(0.05)


def chat(tenant_id: str, fact_id: str, text: str = "hello") -> ChatMessageReceived:
    return ChatMessageReceived(
        fact_id=fact_id,
        tenant_id=tenant_id,
        at=T0,
        visitor_id="visitor-1",
        session_id="session-1",
        text=text,
    )


def conversation(apps: FactApps, tenant_id: str) -> Callable[[], dict[str, Any]]:
    cid = thread_conversation_id(tenant_id, Channel.CHAT, "session-1")
    return lambda: apps.conversations.get(tenant_id, cid)


def message_ids(view: dict[str, Any]) -> list[str]:
    return [m["id"] for m in view["messages"]]


def run(scenario: Callable[[JetStreamContext], Awaitable[None]], url: str, apps: FactApps) -> None:
    async def main() -> None:
        async with handlers_running(url, apps) as js:
            await scenario(js)

    asyncio.run(main())


def test_a_chat_fact_registers_the_customer_and_records_the_message(
    nats_url: str, apps: FactApps
) -> None:
    acme = tenant()

    async def scenario(js: JetStreamContext) -> None:
        await publish_fact(js, chat(acme, "frame-1"))
        view = await eventually(conversation(apps, acme), lambda v: len(v["messages"]) == 1)
        customer_id = identity_customer_id(acme, "chat", "visitor-1")
        assert view["customer_id"] == str(customer_id)
        assert view["messages"][0]["body"] == "hello"
        customer = await asyncio.to_thread(apps.customers.get, acme, customer_id)
        assert customer["identities"] == [["chat", "visitor-1"]]

    run(scenario, nats_url, apps)


def test_the_same_fact_delivered_twice_records_one_message(nats_url: str, apps: FactApps) -> None:
    acme = tenant()

    async def scenario(js: JetStreamContext) -> None:
        fact = chat(acme, "frame-1")
        await publish_fact(js, fact)
        # A second copy past the server's dedupe (another Nats-Msg-Id), as after the window.
        await publish_fact(js, fact, msg_id=f"{fact.fact_id}-again")
        await publish_fact(js, chat(acme, "frame-2", "and then"))
        view = await eventually(conversation(apps, acme), lambda v: "frame-2" in message_ids(v))
        assert message_ids(view) == ["frame-1", "frame-2"]

    run(scenario, nats_url, apps)


def test_a_malformed_fact_is_parked_and_the_next_one_still_handled(
    nats_url: str, apps: FactApps
) -> None:
    acme = tenant()

    async def scenario(js: JetStreamContext) -> None:
        await js.publish(f"facts.{acme}.chat", b"{not json", stream=STREAM)
        wrong = {"type": "ChatMessageReceived", "fact_id": "x", "tenant_id": acme}
        await js.publish(f"facts.{acme}.chat", msgspec.json.encode(wrong), stream=STREAM)
        await publish_fact(js, chat(acme, "frame-1"))
        view = await eventually(conversation(apps, acme), lambda v: len(v["messages"]) == 1)
        assert message_ids(view) == ["frame-1"]

        sub = await js.subscribe(f"{PARKED_PREFIX}.{acme}", ordered_consumer=True)
        parked = [
            msgspec.json.decode((await sub.next_msg(timeout=5)).data, type=Parked) for _ in range(2)
        ]
        await sub.unsubscribe()
        assert [p.payload for p in parked] == ["{not json", msgspec.json.encode(wrong).decode()]
        assert all(p.subject == f"facts.{acme}.chat" for p in parked)
        assert "undecodable chat fact" in parked[0].reason
        assert "missing required field `at`" in parked[1].reason

    run(scenario, nats_url, apps)


def test_call_facts_take_the_call_from_start_to_end(nats_url: str, apps: FactApps) -> None:
    acme = tenant()
    common: dict[str, Any] = {"tenant_id": acme, "call_ref": "sw-call-1"}

    async def scenario(js: JetStreamContext) -> None:
        await publish_fact(
            js,
            CallStarted(
                fact_id=str(uuid.uuid4()),
                at=T0,
                direction="inbound",
                hotline="19001234",
                caller_number="+84901234567",
                caller_leg_id="leg-customer",
                **common,
            ),
        )
        await publish_fact(
            js, CallAnswered(fact_id=str(uuid.uuid4()), at=T0, leg_id="leg-customer", **common)
        )
        await publish_fact(
            js,
            CallHungUp(
                fact_id=str(uuid.uuid4()),
                at=T0 + timedelta(seconds=20),
                leg_id="leg-customer",
                cause="NORMAL_CLEARING",
                **common,
            ),
        )
        call_id = Call.create_id(acme, "sw-call-1")
        call = await eventually(
            lambda: apps.calls.get(acme, call_id), lambda c: c["ended_at"] is not None
        )
        assert call["end_cause"] == "NORMAL_CLEARING"
        assert call["legs"][0]["answered_at"] == T0.isoformat()

    run(scenario, nats_url, apps)


def test_a_queued_call_rings_an_agent_who_answers(nats_url: str, apps: FactApps) -> None:
    acme = tenant()
    common: dict[str, Any] = {"tenant_id": acme, "call_ref": "sw-call-2"}
    queue_id, agent_id = uuid.uuid4(), uuid.uuid4()

    async def scenario(js: JetStreamContext) -> None:
        facts: list[Any] = [
            CallStarted(
                fact_id="f1",
                at=T0,
                direction="inbound",
                hotline="19001234",
                caller_number="+84901234567",
                caller_leg_id="leg-customer",
                **common,
            ),
            CallQueued(fact_id="f2", at=T0, queue_id=queue_id, **common),
            CallAgentRinging(
                fact_id="f3",
                at=T0 + timedelta(seconds=3),
                leg_id="leg-agent",
                agent_id=agent_id,
                agent_endpoint="sip_phone",
                address="sip:lan@pbx",
                **common,
            ),
            CallAgentRinging(
                fact_id="f4",
                at=T0,
                leg_id="leg-other",
                agent_id=agent_id,
                agent_endpoint="pigeon",
                **common,
            ),
            CallAnswered(fact_id="f5", at=T0 + timedelta(seconds=5), leg_id="leg-agent", **common),
        ]
        for fact in facts:
            await publish_fact(js, fact)
        call_id = Call.create_id(acme, "sw-call-2")
        call = await eventually(
            lambda: apps.calls.get(acme, call_id), lambda c: c["answered_at"] is not None
        )
        assert call["queue_id"] == str(queue_id)
        agent_leg = next(leg for leg in call["legs"] if leg["leg_id"] == "leg-agent")
        assert (agent_leg["user_id"], agent_leg["endpoint"]) == (str(agent_id), "sip_phone")
        # The fact with an unknown endpoint kind was refused, not applied.
        assert all(leg["leg_id"] != "leg-other" for leg in call["legs"])

    run(scenario, nats_url, apps)


def test_facts_of_two_tenants_stay_apart(nats_url: str, apps: FactApps) -> None:
    acme, globex = tenant(), tenant()

    async def scenario(js: JetStreamContext) -> None:
        # The same visitor id, session key and even fact id in both tenants: the server's
        # dedupe must not drop the second either.
        await publish_fact(js, chat(acme, "frame-1", "for acme"))
        await publish_fact(js, chat(globex, "frame-1", "for globex"))
        for name, text in ((acme, "for acme"), (globex, "for globex")):
            view = await eventually(conversation(apps, name), lambda v: len(v["messages"]) == 1)
            assert [m["body"] for m in view["messages"]] == [text]
            assert view["tenant_id"] == name
        acme_customer = identity_customer_id(acme, "chat", "visitor-1")
        assert acme_customer != identity_customer_id(globex, "chat", "visitor-1")
        with pytest.raises(NotFound):
            await asyncio.to_thread(apps.customers.get, globex, acme_customer)

    run(scenario, nats_url, apps)
