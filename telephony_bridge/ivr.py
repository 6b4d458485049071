"""Walking a caller through a published IVR flow (CC15, AX13), as the switch side does.

Each node reached is a `CallIvrStep` fact (with the digits that led there), so the call's
history holds the path; prompts and digit collection go to the switch through the driver
and the walker waits for the switch to say they are done (PlaybackFinished,
DigitsCollected). A queue node hands the call to routing (`CallQueued`); the flow's other
exits play their prompt and end the call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from connectors import facts
from domain.ivr import FlowGraph, NodeKind, next_node
from telephony_bridge.driver import (
    AnySwitchEvent,
    DigitsCollected,
    Driver,
    PlaybackFinished,
    SwitchError,
)

log = logging.getLogger(__name__)

# How long the walker waits for the switch to finish a prompt or a collection before it
# gives up on the step (the switch's own digit timeout comes first).
STEP_TIMEOUT = 120.0

Publish = Callable[[facts.Fact], Awaitable[None]]
Queue = Callable[[str, str, UUID, str], Awaitable[None]]  # tenant, call ref, queue, fact id


class IvrWalker:
    def __init__(self, driver: Driver, publish: Publish, queue: Queue) -> None:
        self.driver, self.publish, self.queue = driver, publish, queue
        self._waiters: dict[tuple[str, type[Any]], asyncio.Future[AnySwitchEvent]] = {}

    def notify(self, event: AnySwitchEvent) -> None:
        """Every switch event passes here: a prompt or a collection may be waiting for it."""
        waiter = self._waiters.pop((event.channel_id, type(event)), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(event)

    async def walk(
        self,
        tenant: str,
        ref: str,
        channel: str,
        flow: FlowGraph,
        origin: str,
        alive: Callable[[], bool],
    ) -> None:
        node_id: str | None = flow.entry
        digits: str | None = None
        attempt, step = 1, 0
        try:
            while node_id is not None and alive():
                node = flow.node(node_id)
                step += 1
                await self.publish(
                    facts.CallIvrStep(
                        fact_id=f"{origin}:ivr:{step}",
                        tenant_id=tenant,
                        at=datetime.now(UTC),
                        call_ref=ref,
                        flow_id=flow.flow_id,
                        flow_version=flow.version,
                        node_id=node.node_id,
                        digits=digits,
                    )
                )
                prompt = node.audio or node.prompt or ""
                if node.kind is NodeKind.QUEUE and node.queue_id is not None:
                    await self.queue(tenant, ref, node.queue_id, f"{origin}:ivr:{step}:queued")
                    return
                if node.kind.leaves_flow:
                    # Voicemail, an agent directly, or a hang-up node: its message is played
                    # and the call ends (voicemail and direct agents are not walked yet).
                    if prompt:
                        await self.play(channel, prompt)
                    await self.driver.hangup(channel, "NORMAL_CLEARING")
                    return
                if node.kind is NodeKind.PLAYBACK:
                    await self.play(channel, prompt)
                    digits, node_id, attempt = None, node.next, 1
                    continue
                collecting = node.kind is NodeKind.COLLECT
                collected = await self.collect(
                    channel,
                    prompt,
                    node.min_digits if collecting else 1,
                    node.max_digits if collecting else 1,
                    float(node.timeout_seconds),
                )
                following = next_node(flow, node.node_id, collected or None, attempt)
                attempt = attempt + 1 if following == node.node_id else 1
                digits, node_id = collected or None, following
            if node_id is None and alive():
                await self.driver.hangup(channel, "NORMAL_CLEARING")
        except (SwitchError, TimeoutError) as error:
            log.warning("ivr: the walk of %s failed (%s); the caller goes to a person", ref, error)
            await self._fall_back(tenant, ref, channel, flow, origin, alive)

    async def _fall_back(
        self,
        tenant: str,
        ref: str,
        channel: str,
        flow: FlowGraph,
        origin: str,
        alive: Callable[[], bool],
    ) -> None:
        """A walk that broke down (a prompt or its digits never reported) must not leave
        the caller in silence: into the flow's first queue, or else the call ends."""
        if not alive():
            return
        queue = next(
            (n.queue_id for n in flow.nodes.values() if n.kind is NodeKind.QUEUE and n.queue_id),
            None,
        )
        try:
            if queue is not None:
                await self.queue(tenant, ref, queue, f"{origin}:ivr:failed:queued")
            else:
                await self.driver.hangup(channel, "NORMAL_TEMPORARY_FAILURE")
        except SwitchError as error:
            log.warning("ivr: %s could not be sent on: %s", ref, error)

    async def play(self, channel: str, prompt: str) -> None:
        await self._until(channel, PlaybackFinished, self.driver.play(channel, prompt))

    async def collect(
        self, channel: str, prompt: str, min_digits: int, max_digits: int, timeout: float
    ) -> str:
        asked = self.driver.collect_digits(channel, prompt, min_digits, max_digits, timeout)
        done = await self._until(channel, DigitsCollected, asked)
        assert isinstance(done, DigitsCollected)
        return done.digits

    async def _until(
        self, channel: str, kind: type[Any], command: Awaitable[None]
    ) -> AnySwitchEvent:
        """Send `command` and wait for the switch's `kind` event on the channel."""
        # Registered before the command, so that an event reported at once is not missed;
        # dropped however the wait ends (a hang-up, a time-out), so nothing piles up.
        future: asyncio.Future[AnySwitchEvent] = asyncio.get_running_loop().create_future()
        self._waiters[(channel, kind)] = future
        try:
            await command
            return await asyncio.wait_for(future, STEP_TIMEOUT)
        finally:
            if self._waiters.get((channel, kind)) is future:
                del self._waiters[(channel, kind)]
