"""The bridge on the FreeSWITCH driver, against an Event Socket peer (tests/eslpeer.py:
real ESL framing, FreeSWITCH-shaped replies and events) and a real nats-server: an
inbound call is reported and queued, routing's RingAgent rings the agent, the answer is
bridged; then the switch connection drops mid-call, the caller hangs up while nobody
listens, and after the reconnect every leg's end is one fact, none lost, none doubled."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from eslpeer import EslPeer

from connectors.facts import STREAM, ensure_facts_stream
from deploy.natsserver import NatsServer
from domain.apps import DomainApps
from domain.vocabulary import Package
from projections.dialplan import DialplanReadModel
from projections.replay import catch_up
from telephony_bridge import commands
from telephony_bridge.bridge import TelephonyBridge
from telephony_bridge.freeswitch import FreeSwitchDriver

HOTLINE = "+842873007777"


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def watch_facts(nc: Any, tenant: str) -> list[dict[str, Any]]:
    """Every fact of the tenant published from now on, as the subscription sees it."""
    seen: list[dict[str, Any]] = []

    async def on_fact(msg: Any) -> None:
        seen.append(msgspec.json.decode(msg.data))

    await nc.subscribe(f"facts.{tenant}.>", cb=on_fact)
    return seen


def tenant_with_hotline(
    nats_url: str, tmp_path: Path, hotline: str
) -> tuple[str, DialplanReadModel]:
    """A new tenant whose hotline goes to a queue, and the dialplan the bridge reads."""
    tenant = f"fs{uuid.uuid4().hex[:8]}"
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        apps.tenants.register(tenant, "FS Co", Package.CALL_CENTER, [hotline])
        queue = apps.queues.create(tenant, "Support")
        apps.tenants.route_hotline(tenant, hotline, "queue", queue)
        dialplan = DialplanReadModel(tmp_path / "dialplan.sqlite")
        catch_up(dialplan, apps)
    finally:
        apps.close()
    return tenant, dialplan


def test_a_dropped_switch_connection_mid_call_loses_and_doubles_no_fact(
    nats_url: str, tmp_path: Path
) -> None:
    tenant, dialplan = tenant_with_hotline(nats_url, tmp_path, HOTLINE)

    async def scenario() -> list[dict[str, Any]]:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await ensure_facts_stream(js)
        seen: list[dict[str, Any]] = []

        async def on_fact(msg: Any) -> None:
            seen.append(msgspec.json.decode(msg.data))

        sub = await nc.subscribe(f"facts.{tenant}.>", cb=on_fact)
        async with EslPeer() as peer:
            driver = FreeSwitchDriver(peer.host, peer.port, "ClueCon")
            bridge = TelephonyBridge(nc, js, driver, dialplan, tmp_path / "recordings")
            await bridge.start()
            try:
                customer = peer.inject_inbound("0901234567", "02873007777")
                await wait_until(lambda: _kinds(seen)["CallQueued"] == 1)
                ring = commands.RingAgent(
                    command_id=str(uuid.uuid4()),
                    tenant_id=tenant,
                    call_id=uuid.uuid4(),
                    call_ref=customer,
                    agent_id=uuid.uuid4(),
                    endpoint_kind="sip_phone",
                    endpoint_address="1001",
                    ring_timeout_seconds=20,
                )
                await nc.publish(commands.subject(tenant, ring), commands.encode(ring))
                # The same command again (a redelivery): carried out once.
                await nc.publish(commands.subject(tenant, ring), commands.encode(ring))
                await wait_until(lambda: _kinds(seen)["CallAnswered"] == 1)
                agent = next(f["leg_id"] for f in seen if f["type"] == "CallAnswered")
                assert peer.channels[customer].bridged_to == agent

                peer.drop_connections()
                peer.hangup(customer, "NORMAL_CLEARING")  # while the bridge is not listening
                await wait_until(lambda: driver.client.reconnects >= 1)
                await wait_until(lambda: _kinds(seen)["CallHungUp"] == 2)
                # Another drop and resync later: nothing new.
                peer.drop_connections()
                await wait_until(lambda: driver.client.reconnects >= 2)
                await asyncio.sleep(0.5)
                # The bridge goes on: a command for the gone call is a clear failure.
                hold = commands.HoldCall(
                    command_id=str(uuid.uuid4()), tenant_id=tenant, call_ref=customer
                )
                await nc.publish(commands.subject(tenant, hold), commands.encode(hold))
                await wait_until(lambda: _kinds(seen)["TelephonyCommandFailed"] == 1)
            finally:
                await bridge.stop()
        await sub.unsubscribe()
        # What the stream kept (each fact once, by its id) is what was published.
        stored = await js.subscribe(f"facts.{tenant}.>", stream=STREAM, ordered_consumer=True)
        kept = [msgspec.json.decode((await stored.next_msg(timeout=5)).data) for _ in seen]
        await nc.close()
        assert sorted(f["fact_id"] for f in kept) == sorted(f["fact_id"] for f in seen)
        return seen

    facts = asyncio.run(scenario())
    assert _kinds(facts) == Counter(
        {
            "CallStarted": 1,
            "CallQueued": 1,
            "CallAgentRinging": 1,
            "CallAnswered": 1,
            "CallHungUp": 2,
            "TelephonyCommandFailed": 1,
        }
    )
    hung = {f["leg_id"]: f["cause"] for f in facts if f["type"] == "CallHungUp"}
    started = next(f for f in facts if f["type"] == "CallStarted")
    assert started["caller_number"] == "+84901234567" and started["hotline"] == HOTLINE
    assert started["caller_leg_id"] in hung and len(hung) == 2
    assert len({f["fact_id"] for f in facts}) == len(facts)


def _kinds(facts: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f["type"] for f in facts)


def test_a_restarted_bridge_knows_the_live_calls_again(nats_url: str, tmp_path: Path) -> None:
    """The bridge's memory of a call is rebuilt from the variables it tagged the channels
    with: after a restart, commands for a call it answered before still work."""
    tenant, dialplan = tenant_with_hotline(nats_url, tmp_path, "+842873006666")

    async def scenario() -> list[dict[str, Any]]:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await ensure_facts_stream(js)
        seen = await watch_facts(nc, tenant)
        async with EslPeer() as peer:
            first = TelephonyBridge(
                nc, js, FreeSwitchDriver(peer.host, peer.port, "ClueCon"), dialplan, tmp_path
            )
            await first.start()
            customer = peer.inject_inbound("0901234567", "02873006666")
            await wait_until(lambda: _kinds(seen)["CallQueued"] == 1)
            await first.stop()  # the process goes away; the switch keeps the call

            second = TelephonyBridge(
                nc, js, FreeSwitchDriver(peer.host, peer.port, "ClueCon"), dialplan, tmp_path
            )
            await second.start()
            try:
                hold = commands.HoldCall(
                    command_id=str(uuid.uuid4()), tenant_id=tenant, call_ref=customer
                )
                await nc.publish(commands.subject(tenant, hold), commands.encode(hold))
                await wait_until(lambda: _kinds(seen)["CallHeld"] == 1)
            finally:
                await second.stop()
        await nc.close()
        return seen

    seen = asyncio.run(scenario())
    assert _kinds(seen)["TelephonyCommandFailed"] == 0
    held = next(f for f in seen if f["type"] == "CallHeld")
    assert held["tenant_id"] == tenant


def test_a_fact_is_published_once_jetstream_is_back(tmp_path: Path) -> None:
    """The FACTS stream is away (a server restarting, a leader election) when a call
    comes in: the bridge keeps trying, and the call's facts arrive, in order, once it is
    back."""
    server = NatsServer(data_dir=tmp_path / "nats")
    server.start()
    try:
        tenant, dialplan = tenant_with_hotline(server.url, tmp_path, "+842873004444")

        async def scenario() -> list[dict[str, Any]]:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await ensure_facts_stream(js)
            # Every attempt, as core NATS delivers it whether a stream keeps it or not.
            seen = await watch_facts(nc, tenant)
            async with EslPeer() as peer:
                bridge = TelephonyBridge(
                    nc, js, FreeSwitchDriver(peer.host, peer.port, "ClueCon"), dialplan, tmp_path
                )
                await bridge.start()
                try:
                    await js.delete_stream(STREAM)
                    peer.inject_inbound("0901234567", "02873004444")
                    await wait_until(lambda: len(seen) >= 1)  # tried, and not stored
                    await asyncio.sleep(1.0)
                    await ensure_facts_stream(js)
                    await wait_until(lambda: _kinds(seen)["CallQueued"] >= 1, timeout=20)
                finally:
                    await bridge.stop()
            stored = await js.subscribe(f"facts.{tenant}.>", stream=STREAM, ordered_consumer=True)
            kept = [msgspec.json.decode((await stored.next_msg(timeout=5)).data) for _ in range(2)]
            with pytest.raises(nats.errors.TimeoutError):
                await stored.next_msg(timeout=0.5)  # and nothing more
            await nc.close()
            assert {f["fact_id"] for f in seen} == {f["fact_id"] for f in kept}
            return kept

        kept = asyncio.run(scenario())
        assert [f["type"] for f in kept] == ["CallStarted", "CallQueued"]
    finally:
        server.stop()


def test_a_ring_stopped_before_the_switch_created_the_leg_is_put_down_when_it_appears(
    nats_url: str, tmp_path: Path
) -> None:
    tenant, dialplan = tenant_with_hotline(nats_url, tmp_path, "+842873002222")

    async def scenario() -> tuple[list[dict[str, Any]], EslPeer, str]:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await ensure_facts_stream(js)
        seen = await watch_facts(nc, tenant)
        async with EslPeer(answer_delay=None) as peer:
            bridge = TelephonyBridge(
                nc, js, FreeSwitchDriver(peer.host, peer.port, "ClueCon"), dialplan, tmp_path
            )
            await bridge.start()
            try:
                customer = peer.inject_inbound("0901234567", "02873002222")
                await wait_until(lambda: _kinds(seen)["CallQueued"] == 1)
                peer.background_delay = 0.5  # the dial is slow to start
                agent = uuid.uuid4()
                ring = commands.RingAgent(
                    command_id=str(uuid.uuid4()),
                    tenant_id=tenant,
                    call_id=uuid.uuid4(),
                    call_ref=customer,
                    agent_id=agent,
                    endpoint_kind="sip_phone",
                    endpoint_address="1001",
                    ring_timeout_seconds=20,
                )
                stop = commands.StopRinging(
                    command_id=str(uuid.uuid4()),
                    tenant_id=tenant,
                    call_id=ring.call_id,
                    call_ref=customer,
                    agent_id=agent,
                    reason="withdrawn",
                )
                for command in (ring, stop):
                    await nc.publish(commands.subject(tenant, command), commands.encode(command))
                await asyncio.sleep(1.0)
                originated = [c for c in peer.commands if c.startswith("bgapi originate")]
                assert len(originated) == 1 and "originate_timeout=25" in originated[0]
            finally:
                await bridge.stop()
            await nc.close()
            return seen, peer, customer

    seen, peer, customer = asyncio.run(scenario())
    # The leg appeared after the StopRinging and was put down at once; the caller waits on.
    assert list(peer.channels) == [customer]
    assert _kinds(seen)["CallAgentRinging"] == 0 and _kinds(seen)["TelephonyCommandFailed"] == 0
