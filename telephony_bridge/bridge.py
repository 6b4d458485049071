"""The telephony bridge: telephony commands drive the switch; what the switch reports
comes back as facts.

    cmd.<tenant>.telephony.<verb>  ──►  bridge  ──►  driver (FreeSWITCH ESL | built-in)
    facts.<tenant>.call            ◄──  bridge  ◄──  switch events

- Commands arrive on core NATS in the queue group `telephony-bridge`. A command seen
  before (its `command_id`) is not carried out again by this bridge. Run one bridge per
  switch: each bridge acts on every event of its switch (answers callers, walks IVRs),
  so a second one on the same switch is a standby to start when the first is gone, and
  the queue group spreads commands only across bridges of different switches. One the
  switch cannot carry out (the call is gone, a channel refused) becomes a
  `TelephonyCommandFailed` fact with the reason, and nothing else stops.
- Switch events become facts whose `fact_id` is the switch's event id, so an event
  reported twice (after a reconnect, by two bridges watching one switch) is one fact.
  Facts a command causes before the switch reports anything (a transfer decided, a
  supervisor barging in) take the command's id.
- The bridge is also the dialplan: an inbound channel to a hotline is answered, reported
  as a call of the hotline's tenant, and sent where the tenant routed the hotline (a
  queue, or an IVR flow walked with the caller: telephony_bridge.ivr). A channel from a
  tenant's own phone (its `cloudcc_tenant` variable set by the user directory) dialling
  an extension is an internal call; dialling anything else, an outbound call.

Legs the bridge creates are named by it before the switch is asked for them, so every
event about them finds what the leg is for (`Leg`); they carry their tenant, call and role
as channel variables too, so after a restart `driver.channels()` gives them back (`resync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError

from connectors import facts
from domain.phones import InvalidPhoneNumber, normalize_phone_number
from domain.tenants import HotlineTarget
from projections.dialplan import DialplanReadModel, HotlineRoute
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
    ConferenceJoined,
    Dial,
    Driver,
    EavesdropStarted,
    EndpointKind,
    NoSuchChannel,
    RecordingStarted,
    RecordingStopped,
    SupervisionMode,
    SwitchError,
)
from telephony_bridge.ivr import IvrWalker

log = logging.getLogger(__name__)

QUEUE_GROUP = "telephony-bridge"
SUBJECT = f"{commands.PREFIX}.*.telephony.>"
SEEN_COMMANDS = 10_000
# About a minute of retries at most (back-off up to 2 s) before a fact is given up on.
PUBLISH_ATTEMPTS = 40
# What a publish may fail with while the server or its stream is briefly away (a refusal,
# say a message too large, is not retried).
TRANSIENT = (TimeoutError, NoRespondersError, NoStreamResponseError, ConnectionClosedError)
# Seconds a rung leg may outlast the queue's ring timeout on the switch: the router's own
# StopRinging comes first; this bounds a ring whose StopRinging never arrives.
RING_GRACE = 5
# When, after a start, calls the switch lost are looked for (seconds between looks).
LOST = (3.0, 30.0, 120.0)
# The legs a call is there for: when one of them leaves, the call is over for everyone.
ANCHOR_ROLES = frozenset({"customer", "customer_out", "origin"})
# Roles whose answer is the answer of someone the call is for (not the caller's own leg).
ANSWER_FACT_ROLES = frozenset({"agent", "transfer", "consult", "callee", "customer_out"})


@dataclass
class Leg:
    """What the bridge knows of one channel of a call."""

    tenant_id: str
    call_ref: str
    # customer (inbound caller) | customer_out (the customer an outbound call dials) |
    # agent (rung by routing) | origin (the agent placing a call) | callee (an agent an
    # internal call rings) | transfer | consult | supervisor
    role: str
    user_id: str | None = None
    endpoint: str | None = None
    address: str = ""
    number: str = ""  # the customer's number (shown on agents' phones)
    answered: bool = False
    held: bool = False
    cancelled: bool = False  # stopped before the switch had it: put down when it appears
    bridge_on_answer: str | None = None  # the channel to connect it with when it answers
    then: Callable[[], Awaitable[None]] | None = None  # an origin leg: dial the other side
    supervise: tuple[str, SupervisionMode] | None = None  # a supervisor leg: target, mode
    campaign: commands.Originate | None = None  # a campaign's dial-out
    queue_id: UUID | None = None  # a customer's leg: the queue the call waits in
    route: HotlineRoute | None = None  # where a dial-out goes once the customer answers

    def info(self, channel_id: str) -> facts.LegInfo:
        party = {"supervisor": "supervisor"}.get(self.role, "agent" if self.user_id else "external")
        return facts.LegInfo(
            leg_id=channel_id,
            party=party,  # type: ignore[arg-type]
            user_id=UUID(self.user_id) if self.user_id else None,
            endpoint=self.endpoint or "pstn",
            address=self.address,
        )


class LegTable(dict[str, Leg]):
    """The live legs by channel, and by call: every command and many events look for the
    legs of one call, which on a busy switch must not mean reading all of them."""

    def __init__(self) -> None:
        super().__init__()
        self._by_call: dict[tuple[str, str], dict[str, Leg]] = {}

    def __setitem__(self, channel: str, leg: Leg) -> None:
        self.pop(channel, None)
        super().__setitem__(channel, leg)
        self._by_call.setdefault((leg.tenant_id, leg.call_ref), {})[channel] = leg

    def __delitem__(self, channel: str) -> None:
        leg = self[channel]
        super().__delitem__(channel)
        call = self._by_call[(leg.tenant_id, leg.call_ref)]
        del call[channel]
        if not call:
            del self._by_call[(leg.tenant_id, leg.call_ref)]

    def pop(self, channel: str, default: Any = None) -> Any:
        if channel not in self:
            return default
        leg = self[channel]
        del self[channel]
        return leg

    def of_call(self, tenant: str, ref: str) -> dict[str, Leg]:
        """The call's legs by channel (a copy: the caller may add or drop legs meanwhile)."""
        return dict(self._by_call.get((tenant, ref), {}))


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
        owns_every_call: bool = False,
    ) -> None:
        self.nc, self.js, self.driver, self.dialplan = nc, js, driver, dialplan
        # True for a switch that lives and dies with this process (the built-in one):
        # a call the domain has live that it does not carry was lost in a restart.
        self.owns_every_call = owns_every_call
        self.recordings_dir = recordings_dir
        self.queue_group = queue_group
        self.legs = LegTable()
        self.recording: dict[tuple[str, str], str] = {}  # (tenant, call_ref) -> path
        # (tenant, call_ref) -> (the transferring agent's leg, the consult leg)
        self.consulting: dict[tuple[str, str], tuple[str, str]] = {}
        self.ivr = IvrWalker(driver, self._publish, self._route_customer_waiting)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sub: Any = None
        self.errors = 0
        self.commands_done = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        started = datetime.now(UTC)
        await self.driver.start(self._on_event)
        await self.resync()
        self._sub = await self.nc.subscribe(SUBJECT, queue=self.queue_group, cb=self._on_command)
        if self.owns_every_call:
            self._spawn(self._end_lost_calls(started))

    async def _end_lost_calls(self, started: datetime, delays: tuple[float, ...] = LOST) -> None:
        """End the calls that were live when this process last stopped (a `kill -9`, a
        crash): their switch went with it. Looked at a few times, as the dialplan read
        model catches up after a start; only calls started before this bridge did."""
        for delay in delays:
            await asyncio.sleep(delay)
            carried = {(leg.tenant_id, leg.call_ref) for leg in self.legs.values()}
            for tenant, ref in self.dialplan.live_calls(started):
                if (tenant, ref) not in carried:
                    await self._publish(
                        facts.CallLost(
                            fact_id=f"lost:{ref}",
                            tenant_id=tenant,
                            at=datetime.now(UTC),
                            call_ref=ref,
                            reason="lost_in_restart",
                        )
                    )

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
            if channel.channel_id not in self.legs:
                leg = self._leg_from_variables(channel.variables, channel.caller_number)
                if leg is not None:
                    leg.answered = channel.answered
                    self.legs[channel.channel_id] = leg

    def _leg_from_variables(self, v: dict[str, str], number: str) -> Leg | None:
        if VAR_TENANT not in v or VAR_CALL_REF not in v:
            return None
        return Leg(
            v[VAR_TENANT],
            v[VAR_CALL_REF],
            v.get(VAR_ROLE, "customer"),
            v.get(VAR_AGENT),
            endpoint=v.get("cloudcc_endpoint"),
            address=v.get("cloudcc_address", ""),
            number=number,
        )

    def _variables(self, channel_leg: Leg) -> dict[str, str]:
        variables = {
            VAR_TENANT: channel_leg.tenant_id,
            VAR_CALL_REF: channel_leg.call_ref,
            VAR_ROLE: channel_leg.role,
        }
        if channel_leg.user_id:
            variables[VAR_AGENT] = channel_leg.user_id
        if channel_leg.endpoint:
            variables["cloudcc_endpoint"] = channel_leg.endpoint
        if channel_leg.address:
            variables["cloudcc_address"] = channel_leg.address
        return variables

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, fact: facts.Fact) -> None:
        # A fact not published is a call's history lost: try until JetStream takes it
        # (the server restarting, a cluster electing a leader), in order, since the
        # switch's events wait behind this one. Its id makes a retried publish one fact.
        delay = 0.05
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                await facts.publish_fact(self.js, fact)
                return
            except TRANSIENT as error:
                if attempt == PUBLISH_ATTEMPTS - 1:
                    raise
                log.warning("bridge: publishing %s failed (%s); retrying", fact.fact_id, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def customer_leg(self, tenant: str, ref: str) -> str | None:
        for channel, leg in self.legs.of_call(tenant, ref).items():
            if leg.role in ("customer", "customer_out"):
                return channel
        return None

    def _taken(self, tenant: str, ref: str, channel: str) -> bool:
        """Whether another agent's leg of the call has answered already."""
        return any(
            c != channel and leg.answered and leg.role in ("agent", "transfer", "callee")
            for c, leg in self.legs.of_call(tenant, ref).items()
        )

    def _call_legs(self, tenant: str, ref: str) -> list[str]:
        return list(self.legs.of_call(tenant, ref))

    # ------------------------------------------------------------------ switch events
    async def _on_event(self, event: AnySwitchEvent) -> None:
        try:
            await self._handle_event(event)
        except Exception:  # noqa: BLE001 - one bad event must not stop the bridge
            self.errors += 1
            log.exception("bridge: event %s of %s failed", type(event).__name__, event.channel_id)
        self.ivr.notify(event)

    async def _handle_event(self, event: AnySwitchEvent) -> None:
        if isinstance(event, ChannelCreated):
            await self._on_created(event)
            return
        leg = self.legs.get(event.channel_id)
        if leg is None:
            return  # a channel of no call the bridge knows
        tenant, ref, fid, at, channel = (
            leg.tenant_id,
            leg.call_ref,
            event.event_id,
            event.at,
            event.channel_id,
        )
        common: dict[str, Any] = {"fact_id": fid, "tenant_id": tenant, "at": at, "call_ref": ref}
        if isinstance(event, ChannelAnswered):
            await self._on_answered(event, leg, common)
        elif isinstance(event, ChannelHungUp):
            del self.legs[channel]
            if leg.cancelled:
                return  # never announced (no CallAgentRinging): nothing to report
            if leg.role in ("customer", "customer_out"):
                self.recording.pop((tenant, ref), None)
            cause = event.cause or "NORMAL_CLEARING"
            await self._publish(facts.CallHungUp(**common, leg_id=channel, cause=cause))
            if leg.campaign is not None and not leg.answered:
                await self._campaign_outcome(leg.campaign, fid, at, reached=False, reason=cause)
            if leg.role in ANCHOR_ROLES:
                # The call is over for everyone: whatever a switch does with the legs left
                # (FreeSWITCH parks a leg with park_after_bridge), nobody stays on the line.
                self.consulting.pop((tenant, ref), None)
                for other in self._call_legs(tenant, ref):
                    with contextlib.suppress(NoSuchChannel):
                        await self.driver.hangup(other, cause)
            elif (
                leg.role == "consult" and self.consulting.get((tenant, ref), ("", ""))[1] == channel
            ):
                await self._consult_gone(tenant, ref)
        elif isinstance(event, ChannelHeld):
            leg.held = True
            if leg.role in ("customer", "customer_out"):
                await self._publish(facts.CallHeld(**common))
        elif isinstance(event, ChannelResumed):
            leg.held = False
            if leg.role in ("customer", "customer_out"):
                await self._publish(facts.CallResumed(**common))
        elif isinstance(event, ChannelMuted):
            await self._publish(facts.CallMuted(**common, leg_id=channel))
        elif isinstance(event, ChannelUnmuted):
            await self._publish(facts.CallUnmuted(**common, leg_id=channel))
        elif isinstance(event, RecordingStarted):
            await self._publish(facts.CallRecordingStarted(**common, recording_id=event.path))
        elif isinstance(event, RecordingStopped):
            await self._publish(
                facts.CallRecordingStopped(
                    **common,
                    recording_id=event.path,
                    uri=event.path,
                    duration_seconds=event.seconds,
                    size_bytes=event.size,
                )
            )
        elif isinstance(event, ConferenceJoined) and leg.role == "consult":
            await self._publish(facts.CallConferenceJoined(**common, leg_id=channel))
        elif isinstance(event, EavesdropStarted) and leg.role == "supervisor":
            await self._publish(
                facts.CallSupervised(
                    **common,
                    supervisor_leg=leg.info(channel),
                    mode=event.mode.value,
                )
            )

    async def _on_answered(self, event: ChannelAnswered, leg: Leg, common: dict[str, Any]) -> None:
        channel = event.channel_id
        if leg.role == "agent" and self._taken(leg.tenant_id, leg.call_ref, channel):
            # Routing rang the next agent while this one's answer was on its way: the call
            # is someone else's now; this phone is put down, the customer stays put.
            await self.driver.hangup(channel, "LOSE_RACE")
            return
        leg.answered = True
        if leg.bridge_on_answer is not None:
            other = self.legs.get(leg.bridge_on_answer)
            if other is None:
                # The other side left while this one rang: nobody to talk to.
                await self.driver.hangup(channel, "ORIGINATOR_CANCEL")
                return
            await self.driver.bridge(leg.bridge_on_answer, channel)
            if (
                leg.role == "agent"
                and other.queue_id is not None
                and self.dialplan.records(leg.tenant_id, other.queue_id)
            ):
                # The queue's policy (AX10): recorded from the agent's answer on.
                await self._start_recording(leg.tenant_id, leg.call_ref, leg.bridge_on_answer)
        if leg.role in ANSWER_FACT_ROLES:
            await self._publish(facts.CallAnswered(**common, leg_id=channel))
        if leg.supervise is not None:
            target, mode = leg.supervise
            await self.driver.eavesdrop(channel, target, mode)
        if leg.then is not None:
            then, leg.then = leg.then, None
            await then()
        if leg.campaign is not None:
            await self._campaign_outcome(leg.campaign, event.event_id, event.at, reached=True)
            if leg.route is not None:
                await self._route_customer(leg.route, leg.call_ref, channel, event.event_id)

    async def _on_created(self, event: ChannelCreated) -> None:
        leg = self.legs.get(event.channel_id)
        if leg is None:
            leg = self._leg_from_variables(event.variables, event.caller_number)
            if leg is not None:
                self.legs[event.channel_id] = leg
        if leg is not None and leg.cancelled:
            await self.driver.hangup(event.channel_id, "ORIGINATOR_CANCEL")
        elif leg is not None:
            await self._announce(event, leg)
        elif event.direction == "inbound" and VAR_TENANT in event.variables:
            await self._from_a_phone(event)
        elif event.direction == "inbound":
            await self._inbound(event)

    async def _announce(self, event: ChannelCreated, leg: Leg) -> None:
        """The fact a new leg the bridge asked for calls for, by what it is for."""
        common: dict[str, Any] = {
            "fact_id": event.event_id,
            "tenant_id": leg.tenant_id,
            "at": event.at,
            "call_ref": leg.call_ref,
        }
        if leg.role in ("agent", "callee") and leg.user_id and leg.endpoint:
            await self._publish(
                facts.CallAgentRinging(
                    **common,
                    leg_id=event.channel_id,
                    agent_id=UUID(leg.user_id),
                    agent_endpoint=leg.endpoint,
                    address=leg.address,
                )
            )
        elif leg.campaign is not None:
            hotline = leg.route.number if leg.route else (leg.campaign.hotline or "")
            await self._publish(
                facts.CallStarted(
                    **common,
                    direction="outbound",
                    hotline=hotline,
                    caller_number=hotline or "campaign",
                    callee_number=leg.number,
                    caller_leg_id=event.channel_id,
                )
            )

    # ------------------------------------------------------------------ dialplan
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
        leg = self.legs[ref] = Leg(tenant, ref, "customer", number=caller)
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
        # Tagged like the legs the bridge creates, so that a restarted bridge knows it again.
        await self.driver.set_variables(event.channel_id, self._variables(leg))
        await self.driver.answer(event.channel_id)
        await self._route_customer(route, ref, event.channel_id, event.event_id)

    async def _route_customer(
        self, route: HotlineRoute, ref: str, channel: str, origin: str
    ) -> None:
        """Send a customer's call where the hotline leads: a queue, or an IVR flow."""
        tenant = route.tenant_id
        if route.kind is HotlineTarget.QUEUE and route.target_id is not None:
            await self._route_customer_waiting(tenant, ref, route.target_id, f"{origin}:queued")
            return
        flow = None
        if route.kind is HotlineTarget.IVR and route.target_id is not None:
            flow = self.dialplan.flow(tenant, route.target_id)
        if flow is None:
            log.warning("bridge: hotline %s of %s leads nowhere; call ended", route.number, tenant)
            await self.driver.hangup(channel, "NO_ROUTE_DESTINATION")
            return
        self._spawn(self.ivr.walk(tenant, ref, channel, flow, origin, lambda: channel in self.legs))

    async def _route_customer_waiting(
        self, tenant: str, ref: str, queue_id: UUID, fact_id: str
    ) -> None:
        customer = self.customer_leg(tenant, ref)
        if customer is not None:
            self.legs[customer].queue_id = queue_id
        await self._publish(
            facts.CallQueued(
                fact_id=fact_id,
                tenant_id=tenant,
                at=datetime.now(UTC),
                call_ref=ref,
                queue_id=queue_id,
            )
        )

    async def _from_a_phone(self, event: ChannelCreated) -> None:
        """A tenant's user dialled from their phone: an extension (internal, AX8 and CC1),
        or an outside number (outbound, AX2) from one of the tenant's hotlines."""
        tenant, channel = event.variables[VAR_TENANT], event.channel_id
        caller = self.dialplan.user(tenant, address=event.caller_number)
        if caller is None:
            log.warning("bridge: %s is no phone of a user of %s", event.caller_number, tenant)
            await self.driver.hangup(channel, "CALL_REJECTED")
            return
        kind, address = next(
            ((k, a) for k, a in caller.endpoints if a == event.caller_number),
            caller.endpoints[0],
        )
        origin = Leg(tenant, channel, "origin", str(caller.user_id), kind, address, answered=True)
        self.legs[channel] = origin
        await self.driver.answer(channel)
        common: dict[str, Any] = {
            "fact_id": event.event_id,
            "tenant_id": tenant,
            "at": event.at,
            "call_ref": channel,
        }
        callee = self.dialplan.user(tenant, extension=event.destination_number)
        if callee is not None and callee.endpoints:
            await self._publish(
                facts.CallStarted(
                    **common,
                    direction="internal",
                    caller_number=caller.extension or address or "internal",
                    callee_number=event.destination_number,
                    caller_leg_id=channel,
                    agent_id=caller.user_id,
                    agent_endpoint=kind,
                )
            )
            ckind, caddress = callee.endpoints[0]
            leg = Leg(tenant, channel, "callee", str(callee.user_id), ckind, caddress)
            await self._dial(leg, channel, caller.extension or address)
            return
        number = _e164(event.destination_number)
        hotlines = self.dialplan.hotlines(tenant)
        if number is None or not hotlines:
            await self.driver.hangup(channel, "UNALLOCATED_NUMBER")
            return
        customer_id = str(uuid4())
        await self._publish(
            facts.CallStarted(
                **common,
                direction="outbound",
                hotline=hotlines[0],
                caller_number=address or caller.extension or "agent",
                callee_number=number,
                caller_leg_id=channel,
                callee_leg_id=customer_id,
                agent_id=caller.user_id,
                agent_endpoint=kind,
            )
        )
        customer = Leg(tenant, channel, "customer_out", number=number, address=number)
        await self._dial(customer, channel, hotlines[0], new_id=customer_id)

    async def _dial(
        self,
        leg: Leg,
        bridge_to: str | None,
        caller_id: str,
        *,
        new_id: str | None = None,
        ring_seconds: int | None = None,
    ) -> str:
        """Originate a leg the bridge names (and so recognises in every event)."""
        channel = new_id or str(uuid4())
        leg.bridge_on_answer = bridge_to
        self.legs[channel] = leg
        kind = leg.endpoint if leg.user_id else EndpointKind.EXTERNAL
        dial = _dial(kind or EndpointKind.EXTERNAL, leg.address)
        variables = self._variables(leg)
        if ring_seconds is not None:
            # FreeSWITCH's own give-up time for the dial, so that a ring the router stopped
            # (a StopRinging lost, a bridge restarted) does not ring on for a minute.
            variables["originate_timeout"] = str(ring_seconds)
        try:
            await self.driver.originate(channel, dial, caller_id, variables)
        except BaseException:
            self.legs.pop(channel, None)
            raise
        return channel

    async def _campaign_outcome(
        self,
        command: commands.Originate,
        fact_id: str,
        at: datetime,
        *,
        reached: bool,
        reason: str = "",
    ) -> None:
        if command.campaign_id is None or command.customer_id is None:
            return
        await self._publish(
            facts.CallCampaignOutcome(
                fact_id=f"{fact_id}:outcome",
                tenant_id=command.tenant_id,
                at=at,
                campaign_id=command.campaign_id,
                customer_id=command.customer_id,
                attempt=command.attempt or 1,
                reached=reached,
                reason=reason,
            )
        )

    # ------------------------------------------------------------------ commands
    async def _on_command(self, msg: Msg) -> None:
        try:
            await self._command(msg)
        except Exception:  # noqa: BLE001 - one bad command must not stop the others
            self.errors += 1
            log.exception("bridge: a command on %s failed", msg.subject)

    async def _command(self, msg: Msg) -> None:
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
        except (SwitchError, LookupError, ValueError) as error:
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
        channel = self.customer_leg(tenant, ref)
        if channel is None:
            raise LookupError(f"call {ref} is not live on this switch")
        return channel

    def _hand_over(self, channel: str) -> None:
        """The agent who dialled a call hands it over and leaves: their leg no longer
        holds the call up (an `origin` leg's hang-up ends the call for everyone)."""
        leg = self.legs.get(channel)
        if leg is not None and leg.role == "origin":
            leg.role = "agent"

    def _own_leg(self, tenant: str, ref: str, channel: str) -> Leg:
        leg = self.legs.get(channel)
        if leg is None or (leg.tenant_id, leg.call_ref) != (tenant, ref):
            raise LookupError(f"leg {channel} is not live in call {ref}")
        return leg

    async def _carry_out(self, command: commands.AnyCommand) -> None:
        tenant = command.tenant_id
        common: dict[str, Any] = {
            "fact_id": f"cmd:{command.command_id}",
            "tenant_id": tenant,
            "at": datetime.now(UTC),
        }
        if isinstance(command, commands.RingAgent):
            customer = self._customer(tenant, command.call_ref)
            if self._taken(tenant, command.call_ref, ""):
                raise LookupError(f"call {command.call_ref} is answered already")
            leg = Leg(
                tenant,
                command.call_ref,
                "agent",
                str(command.agent_id),
                command.endpoint_kind,
                command.endpoint_address,
            )
            await self._dial(
                leg,
                customer,
                self.legs[customer].number,
                ring_seconds=command.ring_timeout_seconds + RING_GRACE,
            )
        elif isinstance(command, commands.StopRinging):
            for channel, leg in self.legs.of_call(tenant, command.call_ref).items():
                if (leg.user_id, leg.role) == (str(command.agent_id), "agent") and not leg.answered:
                    try:
                        await self.driver.hangup(channel, "ORIGINATOR_CANCEL")
                    except NoSuchChannel:
                        # Dialled in the background (FreeSWITCH's bgapi), it is not on the
                        # switch yet: put down the moment it appears.
                        leg.cancelled = True
        elif isinstance(command, commands.SendToFallback):
            customer = self._customer(tenant, command.call_ref)
            # A prompt takes seconds: played aside, so that other commands do not wait.
            self._spawn(self._fallback(command, customer))
        elif isinstance(command, commands.Originate):
            await self._originate(command)
        elif isinstance(command, commands.HoldCall):
            await self.driver.hold(self._customer(tenant, command.call_ref))
        elif isinstance(command, commands.ResumeCall):
            await self.driver.unhold(self._customer(tenant, command.call_ref))
        elif isinstance(command, commands.MuteLeg):
            self._own_leg(tenant, command.call_ref, command.leg_id)
            await self.driver.mute(command.leg_id)
        elif isinstance(command, commands.UnmuteLeg):
            self._own_leg(tenant, command.call_ref, command.leg_id)
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
            customer = self._customer(tenant, command.call_ref)
            if command.supervisor_id is not None:
                await self._publish(
                    facts.CallForceEnded(
                        **common, call_ref=command.call_ref, supervisor_id=command.supervisor_id
                    )
                )
            await self.driver.hangup(customer, command.cause)
            for channel in self._call_legs(tenant, command.call_ref):
                # The switch may take the others down with the customer: gone is fine.
                with contextlib.suppress(NoSuchChannel):
                    await self.driver.hangup(channel, command.cause)
        elif isinstance(command, commands.TransferCall):
            await self._transfer(command, common)
        elif isinstance(command, commands.ConsultTransfer):
            await self._consult(command, common)
        elif isinstance(command, commands.CompleteTransfer | commands.CancelTransfer):
            await self._end_consult(command, common)
        elif isinstance(command, commands.ThreeWay):
            await self._three_way(command)
        elif isinstance(command, commands.Supervise):
            await self._supervise(command)
        elif isinstance(command, commands.TakeOver):
            await self._take_over(command, common)

    async def _transfer(self, command: commands.TransferCall, common: dict[str, Any]) -> None:
        tenant, ref = command.tenant_id, command.call_ref
        customer = self._customer(tenant, ref)
        self._own_leg(tenant, ref, command.from_leg_id)
        target = _target_leg(tenant, ref, "transfer", command.to)
        new_id = str(uuid4())
        # Recorded before the switch moves anyone, so that the agent's leg ending next is
        # read as the transfer it is, not as the call's end.
        await self._publish(
            facts.CallTransferred(
                **common, call_ref=ref, from_leg_id=command.from_leg_id, to_leg=target.info(new_id)
            )
        )
        self.legs[new_id] = target
        if self.legs[customer].held:
            await self.driver.unhold(customer)  # as the domain does: nobody holds them now
        kind = target.endpoint if target.user_id else EndpointKind.EXTERNAL
        await self.driver.transfer(
            customer,
            _dial(kind or EndpointKind.EXTERNAL, target.address),
            new_channel_id=new_id,
            variables=self._variables(target),
        )
        # The agent leaves now, whether the switch hangs up a leg whose partner moved away
        # (the built-in one) or parks it (FreeSWITCH with park_after_bridge).
        self._hand_over(command.from_leg_id)
        with contextlib.suppress(NoSuchChannel):
            await self.driver.hangup(command.from_leg_id, "NORMAL_CLEARING")

    async def _consult(self, command: commands.ConsultTransfer, common: dict[str, Any]) -> None:
        tenant, ref = command.tenant_id, command.call_ref
        customer = self._customer(tenant, ref)
        self._own_leg(tenant, ref, command.from_leg_id)
        if (tenant, ref) in self.consulting:
            raise LookupError(f"call {ref} is consulting already")
        target = _target_leg(tenant, ref, "consult", command.to)
        new_id = str(uuid4())
        await self._publish(
            facts.CallTransferRequested(
                **common,
                call_ref=ref,
                from_leg_id=command.from_leg_id,
                consult_leg=target.info(new_id),
            )
        )
        # Neither the held customer nor the agent is hung up when their bridge ends while
        # the legs are moved about (the agent goes to the consult leg on its answer, and
        # comes back if it hangs up): parked, as FreeSWITCH's park_after_bridge does.
        park = {"park_after_bridge": "true"}
        await self.driver.set_variables(customer, park)
        await self.driver.set_variables(command.from_leg_id, park)
        if not self.legs[customer].held:
            await self.driver.hold(customer)
        self.consulting[(tenant, ref)] = (command.from_leg_id, new_id)
        await self._dial(target, command.from_leg_id, self.legs[customer].number, new_id=new_id)

    async def _consult_gone(self, tenant: str, ref: str) -> None:
        """The consulted party hung up (or never answered): the agent is back with the
        customer, as if the agent had cancelled (the domain ended the consult leg)."""
        agent, _ = self.consulting.pop((tenant, ref))
        customer = self.customer_leg(tenant, ref)
        if customer is None or agent not in self.legs:
            return
        if self.legs[customer].held:
            await self.driver.unhold(customer)
        await self.driver.bridge(customer, agent)

    async def _end_consult(
        self,
        command: commands.CompleteTransfer | commands.CancelTransfer,
        common: dict[str, Any],
    ) -> None:
        tenant, ref = command.tenant_id, command.call_ref
        customer = self._customer(tenant, ref)
        agent, consult = self.consulting.pop((tenant, ref), (None, None))
        if agent is None or consult is None:
            raise LookupError(f"call {ref} has no transfer being consulted")
        completing = isinstance(command, commands.CompleteTransfer)
        fact = facts.CallTransferCompleted if completing else facts.CallTransferCancelled
        await self._publish(fact(**common, call_ref=ref))
        await self.driver.unhold(customer)
        stays = consult if completing else agent
        leaves = agent if completing else consult
        if stays in self.legs and self.legs[stays].answered:
            await self.driver.bridge(customer, stays)
        # Whether the switch hung up a leg whose partner moved away or parked it.
        if completing:
            self._hand_over(leaves)
        with contextlib.suppress(NoSuchChannel):
            await self.driver.hangup(leaves, "NORMAL_CLEARING")

    async def _three_way(self, command: commands.ThreeWay) -> None:
        tenant, ref = command.tenant_id, command.call_ref
        customer = self._customer(tenant, ref)
        agent, consult = self.consulting.get((tenant, ref), (None, None))
        if agent is None or consult is None or not self.legs.get(consult, Leg("", "", "")).answered:
            raise LookupError(f"call {ref} has no answered consult leg to talk with")
        await self.driver.unhold(customer)
        # The three leave their bridges for one room; the transfer is over as a transfer
        # (the agent may now leave the other two).
        del self.consulting[(tenant, ref)]
        await self.driver.conference(ref, [customer, agent, consult])

    async def _supervise(self, command: commands.Supervise) -> None:
        tenant, ref = command.tenant_id, command.call_ref
        self._customer(tenant, ref)
        mode = SupervisionMode(command.mode)
        legs = self.legs.of_call(tenant, ref)
        talking = [
            c
            for c, leg in legs.items()
            if leg.role in ("agent", "transfer", "consult", "callee", "origin") and leg.answered
        ]
        if not talking:
            raise LookupError(f"call {ref} has no agent on it to supervise")
        mine = [
            c
            for c, leg in legs.items()
            if (leg.role, leg.user_id) == ("supervisor", str(command.supervisor_id))
        ]
        if mine:
            leg = self.legs[mine[0]]
            leg.supervise = (talking[-1], mode)
            if leg.answered:
                await self.driver.eavesdrop(mine[0], talking[-1], mode)
            return
        sup = Leg(
            tenant,
            ref,
            "supervisor",
            str(command.supervisor_id),
            command.endpoint_kind,
            command.address,
            supervise=(talking[-1], mode),
        )
        await self._dial(sup, None, self.legs[self._customer(tenant, ref)].number)

    async def _take_over(self, command: commands.TakeOver, common: dict[str, Any]) -> None:
        tenant, ref = command.tenant_id, command.call_ref
        customer = self._customer(tenant, ref)
        sup = next(
            (
                c
                for c, leg in self.legs.of_call(tenant, ref).items()
                if (leg.role, leg.user_id) == ("supervisor", str(command.supervisor_id))
                and leg.answered
                and leg.supervise is not None
            ),
            None,
        )
        if sup is None:
            raise LookupError(f"supervisor {command.supervisor_id} is not listening to {ref}")
        leg = self.legs[sup]
        agent = leg.supervise[0] if leg.supervise else ""
        await self._publish(
            facts.CallTakenOver(**common, call_ref=ref, leg_id=sup, from_leg_id=agent)
        )
        leg.role, leg.supervise = "agent", None
        await self.driver.bridge(customer, sup)
        # Its bridge gone, the agent's leg would be parked by a switch that parks: ended.
        with contextlib.suppress(NoSuchChannel):
            await self.driver.hangup(agent, "NORMAL_CLEARING")

    async def _originate(self, command: commands.Originate) -> None:
        """An outbound call (AX2, B2): from the hotline asked for, else a random one of the
        tenant's. With an agent, their endpoint rings first and the customer is dialled
        once they answer; without one (a campaign), the customer is dialled and, once they
        answer, goes where the hotline's inbound calls go."""
        tenant = command.tenant_id
        hotlines = self.dialplan.hotlines(tenant)
        hotline = _e164(command.hotline) if command.hotline else None
        if hotline is None:
            if not hotlines:
                raise LookupError(f"tenant {tenant} has no hotline to call from")
            hotline = random.choice(hotlines)
        elif hotline not in hotlines:
            raise LookupError(f"{command.hotline} is not a hotline of {tenant}")
        number = _e164(command.to_number)
        if number is None:
            raise ValueError(f"{command.to_number!r} is not a phone number")
        ref = str(uuid4())
        if command.agent_id is None:
            # The answered customer goes where the hotline's own callers go; from a hotline
            # not routed anywhere, where the tenant's first routed one goes.
            routes = [self.dialplan.route(h) for h in [hotline, *hotlines]]
            route = next((r for r in routes if r is not None and r.kind is not None), None)
            customer = Leg(
                tenant,
                ref,
                "customer_out",
                number=number,
                address=number,
                campaign=command,
                route=route,
            )
            await self._dial(customer, None, hotline)
            return
        if not command.agent_endpoint_kind:
            raise LookupError("an agent's call needs the agent's endpoint")
        agent = Leg(
            tenant,
            ref,
            "origin",
            str(command.agent_id),
            command.agent_endpoint_kind,
            command.agent_address or "",
        )
        customer_id = str(uuid4())
        agent_channel = str(uuid4())

        async def dial_customer() -> None:
            customer = Leg(tenant, ref, "customer_out", number=number, address=number)
            await self._dial(customer, agent_channel, hotline, new_id=customer_id)

        agent.then = dial_customer
        await self._dial(agent, None, hotline, new_id=agent_channel)
        await self._publish(
            facts.CallStarted(
                fact_id=f"cmd:{command.command_id}",
                tenant_id=tenant,
                at=datetime.now(UTC),
                call_ref=ref,
                direction="outbound",
                hotline=hotline,
                caller_number=command.agent_address or hotline,
                callee_number=number,
                caller_leg_id=agent_channel,
                callee_leg_id=customer_id,
                agent_id=command.agent_id,
                agent_endpoint=command.agent_endpoint_kind,
            )
        )

    async def _fallback(self, command: commands.SendToFallback, customer: str) -> None:
        try:
            if command.kind == "voicemail":
                await self.ivr.play(customer, command.message or "Please leave a message.")
                await self._start_recording(command.tenant_id, command.call_ref, customer)
            else:
                message = command.message or "Sorry, nobody can take your call."
                await self.ivr.play(customer, message)
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


def _target_leg(tenant: str, ref: str, role: str, to: commands.Target) -> Leg:
    if to.agent_id is None:
        number = _e164(to.address)
        if number is None:
            raise ValueError(f"{to.address!r} is not a phone number")
        return Leg(tenant, ref, role, None, None, number)
    return Leg(tenant, ref, role, str(to.agent_id), to.endpoint_kind, to.address)


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
