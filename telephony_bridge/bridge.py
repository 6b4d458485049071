"""The telephony bridge: telephony commands drive the switch; what the switch reports
comes back as facts.

    cmd.<tenant>.telephony.<verb>  ──►  bridge  ──►  driver (FreeSWITCH ESL | built-in)
    facts.<tenant>.call            ◄──  bridge  ◄──  switch events

- Commands arrive on core NATS in the queue group `telephony-bridge`, so several bridges
  share them. A command seen before (its `command_id`) is not carried out again. One the
  switch cannot carry out (the call is gone, a channel refused) becomes a
  `TelephonyCommandFailed` fact with the switch's reason, and nothing else stops.
- Switch events become facts whose `fact_id` is the switch's event id, so an event
  reported twice (after a reconnect, by two bridges watching one switch) is one fact.
- The bridge is also the dialplan: an inbound channel to a hotline is answered, reported
  as a call of the hotline's tenant, and sent where the tenant routed the hotline (a
  queue, or an IVR flow the bridge walks with the caller: prompts, menus, digits).

What a call's legs are is kept in memory, keyed by channel: the bridge tags each channel
it creates with its tenant, call and role, so after a restart `driver.channels()` gives
it all back (`resync`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from connectors import facts
from domain.ivr import FlowGraph, NodeKind, next_node
from domain.phones import InvalidPhoneNumber, normalize_phone_number
from domain.tenants import HotlineTarget
from projections.dialplan import DialplanReadModel
from telephony_bridge import commands
from telephony_bridge.driver import (
    VAR_AGENT,
    VAR_CALL_REF,
    VAR_HOTLINE,
    VAR_ROLE,
    VAR_TENANT,
    AnySwitchEvent,
    ChannelAnswered,
    ChannelCreated,
    ChannelHeld,
    ChannelHungUp,
    ChannelMuted,
    ChannelResumed,
    ChannelUnmuted,
    Dial,
    DigitsCollected,
    Driver,
    EndpointKind,
    PlaybackFinished,
    RecordingStarted,
    RecordingStopped,
    SwitchError,
)

log = logging.getLogger(__name__)

QUEUE_GROUP = "telephony-bridge"
SUBJECT = f"{commands.PREFIX}.*.telephony.>"
SEEN_COMMANDS = 10_000
# How long the bridge waits for the switch to say a prompt or a digit collection is done
# before it treats the IVR step as timed out (the switch's own timeout comes first).
IVR_STEP_TIMEOUT = 120.0


@dataclass
class Leg:
    tenant_id: str
    call_ref: str
    role: str  # "customer" | "agent"
    agent_id: str | None = None
    endpoint: str | None = None
    address: str = ""
    answered: bool = False
    number: str = ""  # the customer's number, shown on the agents' phones


class TelephonyBridge:
    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        driver: Driver,
        dialplan: DialplanReadModel,
        recordings_dir: Path,
        *,
        queue_group: str = QUEUE_GROUP,
        prompt_text: Callable[[str], str] | None = None,
    ) -> None:
        self.nc, self.js, self.driver, self.dialplan = nc, js, driver, dialplan
        self.recordings_dir = recordings_dir
        self.queue_group = queue_group
        self.legs: dict[str, Leg] = {}
        self.customer_legs: dict[tuple[str, str], str] = {}  # (tenant, call_ref) -> channel
        self.recording: dict[tuple[str, str], str] = {}  # (tenant, call_ref) -> path
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._waiters: dict[tuple[str, type[Any]], asyncio.Future[AnySwitchEvent]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sub: Any = None
        self.errors = 0
        self.commands_done = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.driver.start(self._on_event)
        await self.resync()
        self._sub = await self.nc.subscribe(SUBJECT, queue=self.queue_group, cb=self._on_command)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        for task in list(self._tasks):
            task.cancel()
        await self.driver.close()

    async def resync(self) -> None:
        """Learn the live channels the bridge tagged (after a restart or a reconnect)."""
        for channel in await self.driver.channels():
            v = channel.variables
            if VAR_TENANT in v and VAR_CALL_REF in v:
                leg = Leg(
                    v[VAR_TENANT],
                    v[VAR_CALL_REF],
                    v.get(VAR_ROLE, "customer"),
                    v.get(VAR_AGENT),
                    answered=channel.answered,
                    number=channel.caller_number,
                )
                self._remember(channel.channel_id, leg)

    def _remember(self, channel_id: str, leg: Leg) -> None:
        self.legs[channel_id] = leg
        if leg.role == "customer":
            self.customer_legs[(leg.tenant_id, leg.call_ref)] = channel_id

    def _forget(self, channel_id: str) -> Leg | None:
        leg = self.legs.pop(channel_id, None)
        if leg is not None and leg.role == "customer":
            self.customer_legs.pop((leg.tenant_id, leg.call_ref), None)
            self.recording.pop((leg.tenant_id, leg.call_ref), None)
        return leg

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, fact: facts.Fact) -> None:
        await facts.publish_fact(self.js, fact)

    # ------------------------------------------------------------------ switch events
    async def _on_event(self, event: AnySwitchEvent) -> None:
        try:
            await self._handle_event(event)
        except Exception:  # noqa: BLE001 - one bad event must not stop the bridge
            self.errors += 1
            log.exception("bridge: event %s of %s failed", type(event).__name__, event.channel_id)
        waiter = self._waiters.pop((event.channel_id, type(event)), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(event)

    async def _handle_event(self, event: AnySwitchEvent) -> None:
        if isinstance(event, ChannelCreated):
            await self._on_created(event)
            return
        leg = self.legs.get(event.channel_id)
        if leg is None:
            return  # not a channel of a call the bridge knows (a supervisor's, a stranger's)
        tenant, ref, fid, at = leg.tenant_id, leg.call_ref, event.event_id, event.at
        if isinstance(event, ChannelAnswered):
            leg.answered = True
            if leg.role == "agent":
                customer = self.customer_legs.get((tenant, ref))
                if customer is None:
                    await self.driver.hangup(event.channel_id, "ORIGINATOR_CANCEL")
                    return
                await self.driver.bridge(customer, event.channel_id)
                await self._publish(
                    facts.CallAnswered(
                        fact_id=fid, tenant_id=tenant, at=at, call_ref=ref, leg_id=event.channel_id
                    )
                )
        elif isinstance(event, ChannelHungUp):
            self._forget(event.channel_id)
            await self._publish(
                facts.CallHungUp(
                    fact_id=fid,
                    tenant_id=tenant,
                    at=at,
                    call_ref=ref,
                    leg_id=event.channel_id,
                    cause=event.cause or "NORMAL_CLEARING",
                )
            )
        elif isinstance(event, ChannelHeld) and leg.role == "customer":
            await self._publish(facts.CallHeld(fact_id=fid, tenant_id=tenant, at=at, call_ref=ref))
        elif isinstance(event, ChannelResumed) and leg.role == "customer":
            await self._publish(
                facts.CallResumed(fact_id=fid, tenant_id=tenant, at=at, call_ref=ref)
            )
        elif isinstance(event, ChannelMuted):
            await self._publish(
                facts.CallMuted(
                    fact_id=fid, tenant_id=tenant, at=at, call_ref=ref, leg_id=event.channel_id
                )
            )
        elif isinstance(event, ChannelUnmuted):
            await self._publish(
                facts.CallUnmuted(
                    fact_id=fid, tenant_id=tenant, at=at, call_ref=ref, leg_id=event.channel_id
                )
            )
        elif isinstance(event, RecordingStarted):
            await self._publish(
                facts.CallRecordingStarted(
                    fact_id=fid, tenant_id=tenant, at=at, call_ref=ref, recording_id=event.path
                )
            )
        elif isinstance(event, RecordingStopped):
            await self._publish(
                facts.CallRecordingStopped(
                    fact_id=fid,
                    tenant_id=tenant,
                    at=at,
                    call_ref=ref,
                    recording_id=event.path,
                    uri=event.path,
                    duration_seconds=event.seconds,
                    size_bytes=event.size,
                )
            )

    async def _on_created(self, event: ChannelCreated) -> None:
        v = event.variables
        if VAR_TENANT in v and VAR_CALL_REF in v:
            # A leg the bridge created (an agent's): it rings.
            leg = Leg(
                v[VAR_TENANT],
                v[VAR_CALL_REF],
                v.get(VAR_ROLE, "agent"),
                v.get(VAR_AGENT),
                endpoint=v.get("cloudcc_endpoint"),
                address=v.get("cloudcc_address", ""),
            )
            self._remember(event.channel_id, leg)
            if leg.role == "agent" and leg.agent_id and leg.endpoint:
                await self._publish(
                    facts.CallAgentRinging(
                        fact_id=event.event_id,
                        tenant_id=leg.tenant_id,
                        at=event.at,
                        call_ref=leg.call_ref,
                        leg_id=event.channel_id,
                        agent_id=UUID(leg.agent_id),
                        agent_endpoint=leg.endpoint,
                        address=leg.address,
                    )
                )
            return
        if event.direction != "inbound":
            return
        await self._inbound(event)

    async def _inbound(self, event: ChannelCreated) -> None:
        dialled = event.variables.get(VAR_HOTLINE) or event.destination_number
        hotline = _e164(dialled) or dialled
        route = self.dialplan.route(hotline)
        if route is None:
            log.warning("bridge: a call to %s, which is nobody's hotline, is refused", dialled)
            await self.driver.hangup(event.channel_id, "UNALLOCATED_NUMBER")
            return
        tenant, ref = route.tenant_id, event.channel_id
        # In E.164 like every number the domain keeps, so that the same customer is found
        # whichever way the network presented their number (0901..., +84901..., 84901...).
        caller = _e164(event.caller_number) or event.caller_number or "anonymous"
        self._remember(ref, Leg(tenant, ref, "customer", number=caller))
        await self._publish(
            facts.CallStarted(
                fact_id=event.event_id,
                tenant_id=tenant,
                at=event.at,
                call_ref=ref,
                direction="inbound",
                hotline=hotline,
                caller_number=caller,
                caller_leg_id=event.channel_id,
            )
        )
        await self.driver.answer(event.channel_id)
        if route.kind is HotlineTarget.QUEUE and route.target_id is not None:
            await self._queue(tenant, ref, route.target_id, f"{event.event_id}:queued")
        elif route.kind is HotlineTarget.IVR and route.target_id is not None:
            flow = self.dialplan.flow(tenant, route.target_id)
            if flow is None:
                log.warning("bridge: hotline %s's flow is not published; call ended", hotline)
                await self.driver.hangup(event.channel_id, "NO_ROUTE_DESTINATION")
                return
            self._spawn(self._walk(tenant, ref, event.channel_id, flow, event.event_id))
        else:
            log.warning("bridge: hotline %s of %s is not routed; call ended", hotline, tenant)
            await self.driver.hangup(event.channel_id, "NO_ROUTE_DESTINATION")

    async def _queue(self, tenant: str, ref: str, queue_id: UUID, fact_id: str) -> None:
        await self._publish(
            facts.CallQueued(
                fact_id=fact_id,
                tenant_id=tenant,
                at=datetime.now(UTC),
                call_ref=ref,
                queue_id=queue_id,
            )
        )

    # ------------------------------------------------------------------ IVR
    async def _walk(
        self, tenant: str, ref: str, channel: str, flow: FlowGraph, origin: str
    ) -> None:
        """Walk the caller through the flow: each node reached is a CallIvrStep fact."""
        node_id: str | None = flow.entry
        digits: str | None = None
        attempt, step = 1, 0
        try:
            while node_id is not None and channel in self.legs:
                node = flow.node(node_id)
                step += 1
                await self._publish(
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
                    await self._queue(tenant, ref, node.queue_id, f"{origin}:ivr:{step}:queued")
                    return
                if node.kind.leaves_flow:
                    # Voicemail, an agent directly, or a hang-up node: the message is played
                    # and the call ends (voicemail and direct agents are not walked yet).
                    if prompt:
                        await self._play(channel, prompt)
                    await self.driver.hangup(channel, "NORMAL_CLEARING")
                    return
                if node.kind is NodeKind.PLAYBACK:
                    await self._play(channel, prompt)
                    digits, node_id, attempt = None, node.next, 1
                    continue
                collected = await self._collect(
                    channel,
                    prompt,
                    node.min_digits if node.kind is NodeKind.COLLECT else 1,
                    node.max_digits if node.kind is NodeKind.COLLECT else 1,
                    float(node.timeout_seconds),
                )
                following = next_node(flow, node.node_id, collected or None, attempt)
                attempt = attempt + 1 if following == node.node_id else 1
                digits, node_id = collected or None, following
            if node_id is None and channel in self.legs:
                await self.driver.hangup(channel, "NORMAL_CLEARING")
        except SwitchError as error:
            log.info("bridge: IVR of %s ended: %s", ref, error)

    async def _wait(self, channel: str, kind: type[Any]) -> AnySwitchEvent:
        future: asyncio.Future[AnySwitchEvent] = asyncio.get_running_loop().create_future()
        self._waiters[(channel, kind)] = future
        return await asyncio.wait_for(future, IVR_STEP_TIMEOUT)

    async def _play(self, channel: str, prompt: str) -> None:
        waiting = asyncio.ensure_future(self._wait(channel, PlaybackFinished))
        await asyncio.sleep(0)
        await self.driver.play(channel, prompt)
        await waiting

    async def _collect(
        self, channel: str, prompt: str, min_digits: int, max_digits: int, timeout: float
    ) -> str:
        waiting = asyncio.ensure_future(self._wait(channel, DigitsCollected))
        await asyncio.sleep(0)
        await self.driver.collect_digits(channel, prompt, min_digits, max_digits, timeout)
        done = await waiting
        assert isinstance(done, DigitsCollected)
        return done.digits

    # ------------------------------------------------------------------ commands
    async def _on_command(self, msg: Msg) -> None:
        try:
            command = commands.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            self.errors += 1
            log.warning("bridge: a malformed command on %s refused: %s", msg.subject, error)
            return
        if msg.subject != commands.subject(command.tenant_id, command):
            self.errors += 1
            log.warning("bridge: %s on %s is not its tenant's subject", command, msg.subject)
            return
        if command.command_id in self._seen:
            return
        self._seen[command.command_id] = None
        while len(self._seen) > SEEN_COMMANDS:
            self._seen.popitem(last=False)
        try:
            await self._carry_out(command)
            self.commands_done += 1
        except (SwitchError, LookupError) as error:
            await self._failed(command, str(error) or type(error).__name__)

    async def _failed(self, command: commands.AnyCommand, reason: str) -> None:
        log.info("bridge: %s failed: %s", type(command).__name__, reason)
        await self._publish(
            facts.TelephonyCommandFailed(
                fact_id=f"failed:{command.command_id}",
                tenant_id=command.tenant_id,
                at=datetime.now(UTC),
                command_id=command.command_id,
                command=type(command).__name__,
                call_ref=getattr(command, "call_ref", None),
                reason=reason,
            )
        )

    def _customer(self, tenant: str, ref: str) -> str:
        channel = self.customer_legs.get((tenant, ref))
        if channel is None:
            raise LookupError(f"call {ref} is not live on this switch")
        return channel

    def _agent_leg(self, tenant: str, ref: str, agent_id: str) -> str | None:
        for channel, leg in self.legs.items():
            if (leg.tenant_id, leg.call_ref, leg.agent_id) == (tenant, ref, agent_id):
                return channel
        return None

    async def _carry_out(self, command: commands.AnyCommand) -> None:
        tenant = command.tenant_id
        if isinstance(command, commands.RingAgent):
            customer = self._customer(tenant, command.call_ref)
            caller = self.legs[customer].number
            await self.driver.originate(
                str(uuid4()),
                _dial(command.endpoint_kind, command.endpoint_address),
                caller,
                {
                    VAR_TENANT: tenant,
                    VAR_CALL_REF: command.call_ref,
                    VAR_ROLE: "agent",
                    VAR_AGENT: str(command.agent_id),
                    "cloudcc_endpoint": command.endpoint_kind,
                    "cloudcc_address": command.endpoint_address,
                },
            )
        elif isinstance(command, commands.StopRinging):
            leg = self._agent_leg(tenant, command.call_ref, str(command.agent_id))
            if leg is not None and not self.legs[leg].answered:
                await self.driver.hangup(leg, "ORIGINATOR_CANCEL")
        elif isinstance(command, commands.SendToFallback):
            customer = self._customer(tenant, command.call_ref)
            # A prompt takes seconds: played aside, so that other commands do not wait.
            self._spawn(self._fallback(command, customer))
        elif isinstance(command, commands.HoldCall):
            await self.driver.hold(self._customer(tenant, command.call_ref))
        elif isinstance(command, commands.ResumeCall):
            await self.driver.unhold(self._customer(tenant, command.call_ref))
        elif isinstance(command, commands.MuteLeg | commands.UnmuteLeg):
            known = self.legs.get(command.leg_id)
            if known is None or (known.tenant_id, known.call_ref) != (tenant, command.call_ref):
                raise LookupError(f"leg {command.leg_id} is not live in call {command.call_ref}")
            if isinstance(command, commands.MuteLeg):
                await self.driver.mute(command.leg_id)
            else:
                await self.driver.unmute(command.leg_id)
        elif isinstance(command, commands.StartRecording):
            customer = self._customer(tenant, command.call_ref)
            await self._start_recording(tenant, command.call_ref, customer)
        elif isinstance(command, commands.StopRecording):
            customer = self._customer(tenant, command.call_ref)
            path = self.recording.pop((tenant, command.call_ref), None)
            if path is None:
                raise LookupError(f"call {command.call_ref} is not being recorded")
            await self.driver.record_stop(customer, path)
        elif isinstance(command, commands.HangUpCall):
            await self.driver.hangup(self._customer(tenant, command.call_ref), command.cause)
        else:
            raise LookupError(f"{type(command).__name__} is not carried out by this bridge yet")

    async def _fallback(self, command: commands.SendToFallback, customer: str) -> None:
        try:
            if command.kind == "voicemail":
                await self._play(customer, command.message or "Please leave a message.")
                await self._start_recording(command.tenant_id, command.call_ref, customer)
            else:
                await self._play(customer, command.message or "Sorry, nobody can take your call.")
                await self.driver.hangup(customer, "NORMAL_CLEARING")
        except (SwitchError, TimeoutError) as error:
            await self._failed(command, str(error) or type(error).__name__)

    async def _start_recording(self, tenant: str, ref: str, channel: str) -> None:
        if (tenant, ref) in self.recording:
            return
        folder = self.recordings_dir / tenant
        folder.mkdir(parents=True, exist_ok=True)
        path = str(folder / f"{ref}-{uuid4().hex[:8]}.wav")
        self.recording[(tenant, ref)] = path
        await self.driver.record_start(channel, path)


def _dial(endpoint_kind: str, address: str) -> Dial:
    try:
        kind = EndpointKind(endpoint_kind)
    except ValueError:
        raise LookupError(f"unknown endpoint kind {endpoint_kind!r}") from None
    return Dial(kind=kind, address=address)


def _e164(number: str) -> str | None:
    try:
        return normalize_phone_number(number, e164=True)
    except InvalidPhoneNumber:
        return None
