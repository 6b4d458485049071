"""The bridge on the built-in switch, in process (no `cloudcc up`): races between the
router's commands and what the phones do."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import nats
from test_bridge_freeswitch import tenant_with_hotline, wait_until, watch_facts

from connectors.facts import ensure_facts_stream
from telephony_bridge import commands
from telephony_bridge.bridge import TelephonyBridge
from telephony_bridge.switch import BuiltinSwitch, Party


def test_an_agent_answering_after_another_took_the_call_is_put_down(
    nats_url: str, tmp_path: Path
) -> None:
    tenant, dialplan = tenant_with_hotline(nats_url, tmp_path, "+842873003333")

    async def scenario() -> tuple[list[dict[str, Any]], BuiltinSwitch, str, dict[str, str]]:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await ensure_facts_stream(js)
        seen = await watch_facts(nc, tenant)
        switch = BuiltinSwitch()
        switch.set_party("slow", Party(answer_after=0.6))
        switch.set_party("fast", Party(answer_after=0.2))
        bridge = TelephonyBridge(nc, js, switch, dialplan, tmp_path)
        await bridge.start()
        try:
            customer = switch.place_inbound_call("0901234567", "02873003333")
            await wait_until(lambda: Counter(f["type"] for f in seen)["CallQueued"] == 1)
            legs = {}
            for address in ("slow", "fast"):  # the first rang out as the router moved on
                agent = uuid.uuid4()
                legs[address] = str(agent)
                ring = commands.RingAgent(
                    command_id=str(uuid.uuid4()),
                    tenant_id=tenant,
                    call_id=uuid.uuid4(),
                    call_ref=customer,
                    agent_id=agent,
                    endpoint_kind="sip_phone",
                    endpoint_address=address,
                    ring_timeout_seconds=20,
                )
                await nc.publish(commands.subject(tenant, ring), commands.encode(ring))
            await wait_until(
                lambda: any(f["type"] == "CallHungUp" and f["cause"] == "LOSE_RACE" for f in seen)
            )
            await asyncio.sleep(0.2)
            await switch.idle()
            return seen, switch, customer, legs
        finally:
            await bridge.stop()
            await nc.close()

    async def run() -> None:
        seen, switch, customer, agents = await scenario()
        leg_of = {f["agent_id"]: f["leg_id"] for f in seen if f["type"] == "CallAgentRinging"}
        fast, slow = leg_of[agents["fast"]], leg_of[agents["slow"]]
        answered = [f["leg_id"] for f in seen if f["type"] == "CallAnswered"]
        assert answered == [fast]
        lost = [f for f in seen if f["type"] == "CallHungUp" and f["leg_id"] == slow]
        assert [f["cause"] for f in lost] == ["LOSE_RACE"]
        assert not any(f["type"] == "CallHungUp" and f["leg_id"] == customer for f in seen)

    asyncio.run(run())
