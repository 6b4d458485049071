"""The IVR walk on the built-in switch: a caller's path is reported node by node, and a
walk that breaks down sends the caller to a person rather than leaving them in silence."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest

from domain.ivr import FlowGraph, Node, NodeKind
from telephony_bridge import ivr
from telephony_bridge.driver import AnySwitchEvent
from telephony_bridge.ivr import IvrWalker
from telephony_bridge.switch import BuiltinSwitch, Party

QUEUE = uuid4()
FLOW = FlowGraph(
    uuid4(),
    1,
    "hello",
    {
        "hello": Node("hello", NodeKind.PLAYBACK, prompt="Welcome", next="menu"),
        "menu": Node("menu", NodeKind.MENU, prompt="Press 1", choices={"1": "q"}),
        "q": Node("q", NodeKind.QUEUE, queue_id=QUEUE),
    },
)


def walk(switch: BuiltinSwitch, digits: str) -> tuple[list[Any], list[tuple[Any, ...]]]:
    async def main() -> tuple[list[Any], list[tuple[Any, ...]]]:
        steps: list[Any] = []
        queued: list[tuple[Any, ...]] = []

        async def publish(fact: Any) -> None:
            steps.append(fact)

        async def queue(*args: Any) -> None:
            queued.append(args)

        walker = IvrWalker(switch, publish, queue)

        async def on_event(event: AnySwitchEvent) -> None:
            walker.notify(event)

        await switch.start(on_event)
        try:
            channel = switch.place_inbound_call("+8490", "1900", party=Party(digits=digits))
            await switch.answer(channel)
            await walker.walk("t1", channel, channel, FLOW, "origin", lambda: True)
        finally:
            await switch.close()
        return steps, queued

    return asyncio.run(main())


def test_the_caller_walks_to_the_queue_and_each_node_is_a_step() -> None:
    steps, queued = walk(BuiltinSwitch(speed=50, prompt_seconds=1.0), "1")
    assert [(s.node_id, s.digits) for s in steps] == [("hello", None), ("menu", None), ("q", "1")]
    assert queued == [("t1", steps[0].call_ref, QUEUE, "origin:ivr:3:queued")]


def test_a_prompt_that_never_finishes_sends_the_caller_to_the_flows_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ivr, "STEP_TIMEOUT", 0.2)
    # The switch takes far longer than the walker waits to say the greeting is over.
    steps, queued = walk(BuiltinSwitch(speed=1, prompt_seconds=30.0), "1")
    assert [s.node_id for s in steps] == ["hello"]
    assert queued == [("t1", steps[0].call_ref, QUEUE, "origin:ivr:failed:queued")]
