"""The browser softphone on the built-in switch (CC7, telephony_bridge.switchctl): while a
browser is registered at an address, a leg there rings until the browser picks up; when
the last browser leaves, the party set there before comes back."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from telephony_bridge.driver import (
    AnySwitchEvent,
    ChannelAnswered,
    Dial,
    EndpointKind,
    SwitchError,
)
from telephony_bridge.switch import BuiltinSwitch, Party
from telephony_bridge.switchctl import SwitchPanel

BROWSER = Dial(kind=EndpointKind.WEBRTC, address="webrtc:an")
SPEED = 50.0


def run(scenario: Any) -> None:
    async def main() -> None:
        events: list[AnySwitchEvent] = []

        async def record(event: AnySwitchEvent) -> None:
            events.append(event)

        switch = BuiltinSwitch(speed=SPEED)
        await switch.start(record)
        try:
            # The panel's verbs, without NATS: what a request on `switch.builtin.<verb>` does.
            panel = SwitchPanel(None, switch)  # type: ignore[arg-type]

            async def ask(verb: str, request: dict[str, Any]) -> Any:
                return await panel._answer(verb, msgspec.json.encode(request))

            await scenario(switch, ask, events)
        finally:
            await switch.close()

    asyncio.run(main())


def answered(events: list[AnySwitchEvent], channel: str) -> bool:
    return any(isinstance(e, ChannelAnswered) and e.channel_id == channel for e in events)


def test_a_registered_browser_rings_until_it_picks_up() -> None:
    async def scenario(switch: BuiltinSwitch, ask: Any, events: list[AnySwitchEvent]) -> None:
        assert await ask("register", {"address": "webrtc:an"}) == {"registrations": 1}
        await switch.originate("leg-1", BROWSER, "+84901234567", {})
        await asyncio.sleep(5 / SPEED)  # five switch seconds: a simulated person would answer
        await switch.idle()
        assert not answered(events, "leg-1")
        assert await ask("answer", {"channel_id": "leg-1"}) == {}
        await switch.idle()
        assert answered(events, "leg-1")
        assert await ask("answer", {"channel_id": "leg-1"}) == {}  # again: nothing more

    run(scenario)


def test_the_party_before_comes_back_when_the_last_browser_leaves() -> None:
    async def scenario(switch: BuiltinSwitch, ask: Any, events: list[AnySwitchEvent]) -> None:
        switch.set_party("webrtc:an", Party(answer_after=0.5))
        assert await ask("register", {"address": "webrtc:an"}) == {"registrations": 1}
        assert await ask("register", {"address": "webrtc:an"}) == {"registrations": 2}
        assert await ask("unregister", {"address": "webrtc:an"}) == {"registrations": 1}
        assert switch.party_for("webrtc:an").answer_after is None
        assert await ask("unregister", {"address": "webrtc:an"}) == {"registrations": 0}
        assert switch.party_for("webrtc:an").answer_after == 0.5
        assert await ask("unregister", {"address": "webrtc:an"}) == {"registrations": 0}

    run(scenario)


def test_only_a_leg_ringing_someone_is_picked_up() -> None:
    async def scenario(switch: BuiltinSwitch, ask: Any, events: list[AnySwitchEvent]) -> None:
        caller = switch.place_inbound_call("+84901234567", "1900")
        with pytest.raises(SwitchError):  # an inbound caller is no leg ringing someone
            await ask("answer", {"channel_id": caller})
        with pytest.raises(msgspec.ValidationError):
            await ask("register", {"address": ""})

    run(scenario)
