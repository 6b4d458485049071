"""The production driver: FreeSWITCH over its Event Socket (see `telephony_bridge.esl`).

Commands map onto FreeSWITCH API commands and dialplan applications:

- originate: `bgapi originate {origination_uuid=<id>,origination_caller_id_number=<n>,
  park_after_bridge=true,cloudcc_…=…}<dial string> &park()`. bgapi, because a plain `api
  originate` blocks the socket until the far end answers. If the job fails before the
  channel ever existed (no CHANNEL_CREATE, e.g. `-ERR USER_NOT_REGISTERED`), the driver
  reports a ChannelHungUp with the job's cause so the bridge is never left waiting.
- dial strings: sip_phone, ip_phone and webrtc → `user/<address>[@<domain>]`: the user
  directory's `dial-string` decides how the user is reached (sofia registration, or
  sofia's WSS transport for a browser), so the driver does not need to know; a `webrtc:`
  prefix (the bridge's address for a browser) is stripped. mobile and external →
  `sofia/gateway/<gateway>/<number>`.
- transfer (blind): `uuid_transfer <id> m:^:bridge:{cloudcc vars}<dial string> inline`.
  The named leg itself moves (no `-bleg`): it leaves its bridge and an inline dialplan
  bridges it to the new destination; its old partner is parked or hung up per its own
  `park_after_bridge`. `m:^:` switches the inline dialplan's separator so the commas
  inside `{…}` survive.
- hold `uuid_hold [off] <id>`; mute `uuid_audio <id> start read mute 1`, unmute
  `uuid_audio <id> stop`; record `uuid_record <id> start|stop <path>`; play
  `uuid_broadcast <id> <path> aleg` (PlaybackFinished from the `playback` application's
  CHANNEL_EXECUTE_COMPLETE); digits: sendmsg `play_and_get_digits` into the channel
  variable `collected_digits` (DigitsCollected from its CHANNEL_EXECUTE_COMPLETE); hangup
  `uuid_kill <id> <cause>`; answer `uuid_answer <id>`.
- eavesdrop: on the (answered) supervisor leg, sendmsg `set eavesdrop_enable_dtmf=true`
  then `eavesdrop <target>`; the mode is DTMF sent into the supervisor leg with
  `uuid_recv_dtmf`: 0 listen, 3 barge (three-way); whisper is 2 ("speak with the uuid":
  the eavesdropped leg itself) when the target is an agent's leg (`cloudcc_role=agent`),
  1 ("speak with the other half": its bridge partner) when it is the customer's, so
  "heard by the agent only" holds either way (mod_dptools: eavesdrop's DTMF list). Calling it again for the same target only sends the new digit.

Errors: a `-ERR` reply whose reason says the channel does not exist (FreeSWITCH words it
several ways: "No such channel!", "Invalid uuid", "invalid session id", "Cannot locate
session") raises NoSuchChannel; any other `-ERR` SwitchError(reason).

Events: Event-UUID becomes `event_id`, Event-Date-Timestamp (µs since the epoch, UTC)
`at`, Unique-ID `channel_id`, and `variable_cloudcc_*` headers (prefix dropped) the
`variables`.

Events FreeSWITCH does not send are synthesized with deterministic ids, uuid5 in
`EVENT_NAMESPACE` of a key:

- ChannelMuted/Unmuted (no ESL event for uuid_audio) and EavesdropStarted (the eavesdrop
  application reports only when it ends): after `+OK`, keyed by the id of the last event
  the driver reported for that channel (its "anchor"), the kind and the channel. Each
  report moves the anchor, so two mutes in a row get different ids, and the same history
  gives the same ids.
- After a reconnect (and nothing else) the driver compares `channels()` with what it last
  reported for each channel, through the same ordered queue as live events, so every
  event that arrived before the snapshot was taken is applied first. Then: a channel it
  knew that is gone → ChannelHungUp keyed `<channel>|hangup` (a channel hangs up once;
  the real cause was lost with the connection, so NORMAL_CLEARING if it was answered,
  else NO_ANSWER for an outbound leg or ORIGINATOR_CANCEL for an inbound one); a channel it
  never saw → ChannelCreated `<channel>|create`; answered since → ChannelAnswered
  `<channel>|answer`; bridge and hold changes → ChannelUnbridged/Bridged/Held/Resumed keyed
  by anchor like mute. A resync replayed on the same history therefore yields the same
  ids, and the facts built from them deduplicate.
- Once the driver has reported a channel's hangup it drops any later event for that
  channel (a hangup that raced the snapshot), and it never reports one Event-UUID twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from telephony_bridge.driver import (
    VAR_ROLE,
    AnySwitchEvent,
    ChannelAnswered,
    ChannelBridged,
    ChannelCreated,
    ChannelHeld,
    ChannelHungUp,
    ChannelMuted,
    ChannelResumed,
    ChannelState,
    ChannelUnbridged,
    ChannelUnmuted,
    ConferenceJoined,
    Dial,
    DigitsCollected,
    DtmfReceived,
    EavesdropStarted,
    EndpointKind,
    EventHandler,
    NoSuchChannel,
    PlaybackFinished,
    RecordingStarted,
    RecordingStopped,
    SupervisionMode,
    SwitchError,
    SwitchUnavailable,
)
from telephony_bridge.esl import EslClient

log = logging.getLogger(__name__)

EVENT_NAMESPACE = uuid.UUID("7f0c2a52-3c55-4d0e-9a51-6b1d0c7c1c11")
SUBSCRIBED_EVENTS = (
    "CHANNEL_CREATE",
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_HOLD",
    "CHANNEL_UNHOLD",
    "DTMF",
    "RECORD_START",
    "RECORD_STOP",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_HANGUP_COMPLETE",
    "BACKGROUND_JOB",
)
DIGITS_VARIABLE = "collected_digits"
EAVESDROP_DIGITS = {SupervisionMode.LISTEN: "0", SupervisionMode.BARGE: "3"}
_NO_SUCH_CHANNEL = re.compile(
    r"no such channel|invalid uuid|invalid session|cannot locate session|no such uuid", re.I
)
# Characters that would break a `{k=v,…}` dial string or the inline dialplan around it.
_UNSAFE_VALUE = re.compile(r"[\s'\"{}^\[\]<>]")
# How many hung-up channels / reported ids to remember for de-duplication.
_MEMORY = 20_000


def event_id(key: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, key))


def check_reply(reply: str) -> str:
    """The reply, or NoSuchChannel / SwitchError for a `-ERR`."""
    text = reply.strip()
    if text.startswith("-ERR") or text.startswith("-USAGE"):
        reason = text.removeprefix("-ERR").strip() or text
        if _NO_SUCH_CHANNEL.search(reason):
            raise NoSuchChannel(reason)
        raise SwitchError(reason)
    return text


def parse_timestamp(value: Any) -> datetime:
    try:
        micros = int(value)
    except (TypeError, ValueError):
        return datetime.now(UTC)
    # Integer arithmetic keeps every microsecond (a float would round past 2^53 µs).
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def cloudcc_variables(headers: dict[str, Any]) -> dict[str, str]:
    return {
        key.removeprefix("variable_"): str(value)
        for key, value in headers.items()
        if key.startswith("variable_cloudcc_")
    }


def _direction(value: Any) -> Literal["inbound", "outbound"]:
    return "outbound" if str(value).lower() == "outbound" else "inbound"


@dataclass
class _Known:
    """What the driver last reported about a live channel."""

    direction: Literal["inbound", "outbound"]
    caller_number: str = ""
    destination_number: str = ""
    answered: bool = False
    held: bool = False
    bridged_to: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    anchor: str = ""  # id of the last event reported for the channel


class _Bounded:
    """An insertion-ordered set that forgets its oldest members."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def add(self, item: str) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __contains__(self, item: object) -> bool:
        return item in self._items


# Items of the driver's ordered queue: an ESL event, a snapshot to resync against (or to
# seed from, silently, at start), or a command result to report.
@dataclass
class _EslItem:
    event: dict[str, Any]


@dataclass
class _SnapshotItem:
    channels: list[ChannelState]
    silent: bool


@dataclass
class _SnapshotStart:
    """Queued when a snapshot is asked for: events between it and the snapshot are newer
    than what the snapshot may show for their channels."""


@dataclass
class _SynthItem:
    kind: Literal["muted", "unmuted", "eavesdrop", "conference"]
    channel_id: str
    target: str = ""  # eavesdrop: the target channel; conference: the room
    mode: SupervisionMode = SupervisionMode.LISTEN


@dataclass
class _Originate:
    channel_id: str
    variables: dict[str, str]


_Item = _EslItem | _SnapshotStart | _SnapshotItem | _SynthItem


class FreeSwitchDriver:
    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        gateway: str = "default",
        domain: str | None = None,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self.gateway = gateway
        self.domain = domain
        self.client = EslClient(
            host,
            port,
            password,
            on_event=self._on_esl_event,
            on_reconnect=self._on_reconnect,
            backoff_min=backoff_min,
            backoff_max=backoff_max,
        )
        self._handler: EventHandler | None = None
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._known: dict[str, _Known] = {}
        self._ended = _Bounded(_MEMORY)
        self._reported = _Bounded(_MEMORY)
        # Channels with events since a resync's snapshot was asked for (None: no resync).
        self._touched: set[str] | None = None
        self._originating: dict[str, _Originate] = {}
        self._eavesdropping: dict[str, str] = {}  # supervisor leg → target leg

    # ------------------------------------------------------------ lifecycle
    async def start(self, on_event: EventHandler) -> None:
        self._handler = on_event
        try:
            await self.client.connect()
        except (OSError, TimeoutError) as exc:
            raise SwitchUnavailable(f"cannot reach FreeSWITCH: {exc}") from exc
        await self.client.subscribe(SUBSCRIBED_EVENTS, "json")
        # Seed what the driver knows from the switch, silently: channels that were live
        # before it started are not news, but a later resync must know them.
        self._queue.put_nowait(_SnapshotItem(await self.channels(), silent=True))
        self._consumer = asyncio.create_task(self._consume(), name="freeswitch-events")

    async def close(self) -> None:
        await self.client.close()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer

    async def _on_reconnect(self) -> None:
        self._queue.put_nowait(_SnapshotStart())
        self._queue.put_nowait(_SnapshotItem(await self.channels(), silent=False))

    def _on_esl_event(self, event: dict[str, Any]) -> None:
        self._queue.put_nowait(_EslItem(event))

    # ------------------------------------------------------------ event pipeline
    async def _consume(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                events = self._process(item)
            except Exception:
                log.exception("FreeSWITCH driver: could not process %r", item)
                continue
            for event in events:
                if self._handler is None:
                    continue
                try:
                    await self._handler(event)
                except Exception:
                    log.exception("FreeSWITCH driver: event handler failed on %r", event)

    def _process(self, item: _Item) -> list[AnySwitchEvent]:
        if isinstance(item, _EslItem):
            if self._touched is not None:
                self._touched.add(str(item.event.get("Unique-ID", "")))
            return self._translate(item.event)
        if isinstance(item, _SnapshotStart):
            self._touched = set()
            return []
        if isinstance(item, _SnapshotItem):
            touched, self._touched = self._touched or set(), None
            # A channel with events since the snapshot was asked for is as those events
            # say: the snapshot may predate it (a call created meanwhile is not in it).
            return self._resync(item.channels, silent=item.silent, skip=touched)
        return self._synthesize(item)

    def _report(self, event: AnySwitchEvent) -> list[AnySwitchEvent]:
        if event.event_id in self._reported:
            return []
        self._reported.add(event.event_id)
        known = self._known.get(event.channel_id)
        if known is not None:
            known.anchor = event.event_id
        if isinstance(event, ChannelHungUp):
            self._known.pop(event.channel_id, None)
            self._ended.add(event.channel_id)
            self._eavesdropping.pop(event.channel_id, None)
        return [event]

    def _translate(self, h: dict[str, Any]) -> list[AnySwitchEvent]:
        name = h.get("Event-Name", "")
        if name == "BACKGROUND_JOB":
            return self._background_job(h)
        channel = str(h.get("Unique-ID", ""))
        if not channel or channel in self._ended:
            return []
        ev_id = str(h.get("Event-UUID") or "")
        if not ev_id:
            log.warning("FreeSWITCH event %s without Event-UUID; skipped", name)
            return []
        at = parse_timestamp(h.get("Event-Date-Timestamp"))
        known = self._known.get(channel)
        if known is None:
            known = self._known[channel] = _Known(
                direction=_direction(h.get("Call-Direction")),
                caller_number=str(h.get("Caller-Caller-ID-Number", "")),
                destination_number=str(h.get("Caller-Destination-Number", "")),
            )
        known.variables.update(cloudcc_variables(h))
        common: dict[str, Any] = {
            "event_id": ev_id,
            "at": at,
            "channel_id": channel,
            "variables": dict(known.variables),
        }
        event: AnySwitchEvent | None = None
        if name == "CHANNEL_CREATE":
            event = ChannelCreated(
                **common,
                direction=known.direction,
                caller_number=known.caller_number,
                destination_number=known.destination_number,
            )
        elif name == "CHANNEL_ANSWER":
            known.answered = True
            event = ChannelAnswered(**common)
        elif name in ("CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE"):
            other = str(h.get("Other-Leg-Unique-ID") or "")
            if not other:
                a, b = str(h.get("Bridge-A-Unique-ID", "")), str(h.get("Bridge-B-Unique-ID", ""))
                other = b if a == channel else a
            bridged = name == "CHANNEL_BRIDGE"
            self._set_bridge(channel, other if bridged else None)
            if bridged:
                event = ChannelBridged(**common, other_channel_id=other)
            else:
                event = ChannelUnbridged(**common, other_channel_id=other)
        elif name == "CHANNEL_HOLD":
            known.held = True
            event = ChannelHeld(**common)
        elif name == "CHANNEL_UNHOLD":
            known.held = False
            event = ChannelResumed(**common)
        elif name == "DTMF":
            event = DtmfReceived(**common, digit=str(h.get("DTMF-Digit", "")))
        elif name == "RECORD_START":
            event = RecordingStarted(**common, path=str(h.get("Record-File-Path", "")))
        elif name == "RECORD_STOP":
            path = str(h.get("Record-File-Path", ""))
            event = RecordingStopped(
                **common, path=path, seconds=_recorded_seconds(h), size=_file_size(path)
            )
        elif name == "CHANNEL_EXECUTE_COMPLETE":
            event = self._execute_complete(h, common)
        elif name == "CHANNEL_HANGUP_COMPLETE":
            event = ChannelHungUp(**common, cause=str(h.get("Hangup-Cause") or "NORMAL_CLEARING"))
        if event is None:
            return []
        return self._report(event)

    def _set_bridge(self, channel: str, other: str | None) -> None:
        known = self._known.get(channel)
        if known is None:
            return
        previous = known.bridged_to
        known.bridged_to = other
        for leg in (previous, other):
            partner = self._known.get(leg) if leg else None
            if partner is not None:
                partner.bridged_to = channel if other else None

    def _execute_complete(self, h: dict[str, Any], common: dict[str, Any]) -> AnySwitchEvent | None:
        app = str(h.get("Application", ""))
        data = str(h.get("Application-Data", ""))
        if app == "playback":
            return PlaybackFinished(**common, prompt=data)
        if app == "play_and_get_digits":
            args = data.split()
            var = args[7] if len(args) > 7 else DIGITS_VARIABLE
            return DigitsCollected(**common, digits=str(h.get(f"variable_{var}", "")))
        return None

    def _background_job(self, h: dict[str, Any]) -> list[AnySwitchEvent]:
        job = self._originating.pop(str(h.get("Job-UUID", "")), None)
        if job is None:
            return []
        body = str(h.get("_body", "")).strip()
        if not body.startswith("-ERR"):
            return []
        channel = job.channel_id
        if channel in self._known or channel in self._ended:
            return []  # the channel existed: its own CHANNEL_HANGUP_COMPLETE reports the end
        cause = (body.removeprefix("-ERR").split() or ["DESTINATION_OUT_OF_ORDER"])[0]
        return self._report(
            ChannelHungUp(
                event_id=event_id(f"{channel}|hangup"),
                at=parse_timestamp(h.get("Event-Date-Timestamp")),
                channel_id=channel,
                variables=job.variables,
                cause=cause,
            )
        )

    def _synthesize(self, item: _SynthItem) -> list[AnySwitchEvent]:
        channel = item.channel_id
        if channel in self._ended:
            return []
        known = self._known.get(channel)
        anchor = known.anchor if known else ""
        variables = dict(known.variables) if known else {}
        now = datetime.now(UTC)

        def head(key: str) -> dict[str, Any]:
            return {
                "event_id": event_id(key),
                "at": now,
                "channel_id": channel,
                "variables": variables,
            }

        if item.kind == "eavesdrop":
            key = f"{anchor}|eavesdrop:{item.target}:{item.mode.value}|{channel}"
            return self._report(
                EavesdropStarted(**head(key), target_channel_id=item.target, mode=item.mode)
            )
        if item.kind == "conference":
            key = f"{anchor}|conference:{item.target}|{channel}"
            return self._report(ConferenceJoined(**head(key), room=item.target))
        cls = ChannelMuted if item.kind == "muted" else ChannelUnmuted
        return self._report(cls(**head(f"{anchor}|{item.kind}|{channel}")))

    def _resync(
        self,
        snapshot: list[ChannelState],
        *,
        silent: bool,
        skip: frozenset[str] | set[str] = frozenset(),
    ) -> list[AnySwitchEvent]:
        live = {c.channel_id: c for c in snapshot if c.channel_id not in self._ended}
        if silent:
            for ch in live.values():
                if ch.channel_id not in self._known:
                    self._known[ch.channel_id] = _Known(
                        direction=ch.direction,
                        caller_number=ch.caller_number,
                        destination_number=ch.destination_number,
                        answered=ch.answered,
                        held=ch.held,
                        bridged_to=ch.bridged_to,
                        variables=dict(ch.variables),
                    )
            return []
        now = datetime.now(UTC)
        out: list[AnySwitchEvent] = []

        def base(channel: str, key: str) -> dict[str, Any]:
            known = self._known[channel]
            return {
                "event_id": event_id(key),
                "at": now,
                "channel_id": channel,
                "variables": dict(known.variables),
            }

        for channel, ch in live.items():
            if channel not in self._known:
                self._known[channel] = _Known(
                    direction=ch.direction,
                    caller_number=ch.caller_number,
                    destination_number=ch.destination_number,
                    variables=dict(ch.variables),
                )
                out += self._report(
                    ChannelCreated(
                        **base(channel, f"{channel}|create"),
                        direction=ch.direction,
                        caller_number=ch.caller_number,
                        destination_number=ch.destination_number,
                    )
                )
        for channel, known in list(self._known.items()):
            if channel in skip:
                continue
            state = live.get(channel)
            if state is None:
                if known.answered:
                    cause = "NORMAL_CLEARING"
                elif known.direction == "outbound":
                    cause = "NO_ANSWER"
                else:
                    cause = "ORIGINATOR_CANCEL"
                out += self._report(
                    ChannelHungUp(**base(channel, f"{channel}|hangup"), cause=cause)
                )
                continue
            known.variables.update(state.variables)
            if state.answered and not known.answered:
                known.answered = True
                out += self._report(ChannelAnswered(**base(channel, f"{channel}|answer")))
        for channel, ch in live.items():
            known_or_none = self._known.get(channel)
            if known_or_none is None or channel in skip:
                continue
            known = known_or_none
            if known.bridged_to != ch.bridged_to:
                old = known.bridged_to
                if old is not None and old != ch.bridged_to:
                    self._set_bridge(channel, None)
                    key = f"{known.anchor}|resync-unbridged:{old}|{channel}"
                    out += self._report(
                        ChannelUnbridged(**base(channel, key), other_channel_id=old)
                    )
                new = ch.bridged_to
                if new is not None and known.bridged_to != new and new in self._known:
                    self._set_bridge(channel, new)
                    key = f"{known.anchor}|resync-bridged:{new}|{channel}"
                    out += self._report(ChannelBridged(**base(channel, key), other_channel_id=new))
            if ch.held != known.held:
                known.held = ch.held
                kind = "held" if ch.held else "resumed"
                key = f"{known.anchor}|resync-{kind}|{channel}"
                cls = ChannelHeld if ch.held else ChannelResumed
                out += self._report(cls(**base(channel, key)))
        return out

    # ------------------------------------------------------------ queries
    async def channels(self) -> list[ChannelState]:
        body = check_reply(await self.client.api("show channels as json"))
        try:
            rows = json.loads(body).get("rows") or [] if body else []
        except (ValueError, AttributeError) as exc:
            raise SwitchError(f"unreadable channel list: {body[:200]!r}") from exc
        states: list[ChannelState] = []
        for row in rows:
            channel = str(row.get("uuid", ""))
            if not channel:
                continue
            try:
                dump = await self._dump(channel)
            except NoSuchChannel:
                continue  # hung up since the list was taken
            callstate = str(row.get("callstate", "")).upper()
            states.append(
                ChannelState(
                    channel_id=channel,
                    direction=_direction(row.get("direction")),
                    caller_number=str(row.get("cid_num") or ""),
                    destination_number=str(row.get("dest") or ""),
                    answered=callstate in ("ACTIVE", "HELD")
                    or dump.get("Answer-State") == "answered",
                    held=callstate == "HELD",
                    bridged_to=str(dump.get("variable_bridge_to") or "") or None,
                    variables=cloudcc_variables(dump),
                )
            )
        return states

    async def _dump(self, channel: str) -> dict[str, Any]:
        body = check_reply(await self.client.api(f"uuid_dump {channel} json"))
        try:
            dump = json.loads(body)
        except ValueError as exc:
            raise SwitchError(f"unreadable uuid_dump for {channel}") from exc
        return dump if isinstance(dump, dict) else {}

    # ------------------------------------------------------------ commands
    async def _api(self, cmd: str) -> str:
        return check_reply(await self.client.api(cmd))

    def dial_string(self, dial: Dial) -> str:
        address = dial.address
        _check_value(address)
        if dial.kind in (EndpointKind.MOBILE, EndpointKind.EXTERNAL):
            return f"sofia/gateway/{self.gateway}/{address}"
        address = address.removeprefix("webrtc:")
        if self.domain and "@" not in address:
            address = f"{address}@{self.domain}"
        return f"user/{address}"

    async def originate(
        self, channel_id: str, dial: Dial, caller_id_number: str, variables: dict[str, str]
    ) -> None:
        channel_vars = {
            "origination_uuid": channel_id,
            "origination_caller_id_number": caller_id_number,
            "park_after_bridge": "true",
            **variables,
        }
        command = f"originate {_var_block(channel_vars)}{self.dial_string(dial)} &park()"
        job_id = str(uuid.uuid4())
        # Registered before sending: the job's event can arrive right behind the reply.
        self._originating[job_id] = _Originate(channel_id, dict(variables))
        try:
            await self.client.bgapi_start(command, job_uuid=job_id)
        except BaseException:
            self._originating.pop(job_id, None)
            raise

    async def set_variables(self, channel_id: str, variables: dict[str, str]) -> None:
        # One uuid_setvar each, not uuid_setvar_multi: its `;` separator may well be in a
        # value (a SIP address's `;transport=tcp`).
        for key, value in variables.items():
            _check_value(key)
            _check_value(value)
            await self._api(f"uuid_setvar {_id(channel_id)} {key} {value}")
        known = self._known.get(channel_id)
        if known is not None:
            known.variables.update(variables)

    async def answer(self, channel_id: str) -> None:
        await self._api(f"uuid_answer {_id(channel_id)}")

    async def bridge(self, channel_a: str, channel_b: str) -> None:
        await self._api(f"uuid_bridge {_id(channel_a)} {_id(channel_b)}")

    async def hold(self, channel_id: str) -> None:
        await self._api(f"uuid_hold {_id(channel_id)}")

    async def unhold(self, channel_id: str) -> None:
        await self._api(f"uuid_hold off {_id(channel_id)}")

    async def conference(self, room: str, channel_ids: list[str]) -> None:
        # mod_conference reports members as CUSTOM conference::maintenance events, which
        # the driver does not subscribe to: each join is reported once its transfer is
        # accepted, like a mute.
        _check_value(room)
        for channel in channel_ids:
            await self._api(f"uuid_transfer {_id(channel)} conference:{room}@default inline")
            self._queue.put_nowait(_SynthItem("conference", channel, room))

    async def mute(self, channel_id: str) -> None:
        await self._api(f"uuid_audio {_id(channel_id)} start read mute 1")
        self._queue.put_nowait(_SynthItem("muted", channel_id))

    async def unmute(self, channel_id: str) -> None:
        await self._api(f"uuid_audio {_id(channel_id)} stop")
        self._queue.put_nowait(_SynthItem("unmuted", channel_id))

    async def transfer(
        self,
        channel_id: str,
        dial: Dial,
        *,
        new_channel_id: str | None = None,
        variables: dict[str, str] | None = None,
    ) -> None:
        known = self._known.get(channel_id)
        carried = {k: v for k, v in (known.variables if known else {}).items() if k != VAR_ROLE}
        carried.update(variables or {})
        if new_channel_id is not None:
            # FreeSWITCH names the bridged leg after origination_uuid, so the bridge knows
            # the new leg before any event about it.
            carried["origination_uuid"] = new_channel_id
        target = f"bridge:{_var_block(carried)}{self.dial_string(dial)}"
        await self._api(f"uuid_transfer {_id(channel_id)} m:^:{target} inline")

    async def record_start(self, channel_id: str, path: str) -> None:
        _check_value(path)
        await self._api(f"uuid_record {_id(channel_id)} start {path}")

    async def record_stop(self, channel_id: str, path: str) -> None:
        _check_value(path)
        await self._api(f"uuid_record {_id(channel_id)} stop {path}")

    async def eavesdrop(
        self, supervisor_channel_id: str, target_channel_id: str, mode: SupervisionMode
    ) -> None:
        sup, target = _id(supervisor_channel_id), _id(target_channel_id)
        if self._eavesdropping.get(sup) != target:
            if (await self._api(f"uuid_exists {target}")) != "true":
                raise NoSuchChannel(f"no such channel {target}")
            check_reply(await self.client.sendmsg(sup, "set", "eavesdrop_enable_dtmf=true"))
            check_reply(await self.client.sendmsg(sup, "eavesdrop", target))
            self._eavesdropping[sup] = target
        await self._api(f"uuid_recv_dtmf {sup} {self._eavesdrop_digit(target, mode)}")
        self._queue.put_nowait(_SynthItem("eavesdrop", sup, target, mode))

    def _eavesdrop_digit(self, target: str, mode: SupervisionMode) -> str:
        if mode in EAVESDROP_DIGITS:
            return EAVESDROP_DIGITS[mode]
        known = self._known.get(target)
        target_is_agent = known is not None and known.variables.get(VAR_ROLE) == "agent"
        return "2" if target_is_agent else "1"

    async def play(self, channel_id: str, prompt: str) -> None:
        _check_value(prompt)
        await self._api(f"uuid_broadcast {_id(channel_id)} {prompt} aleg")

    async def collect_digits(
        self, channel_id: str, prompt: str, min_digits: int, max_digits: int, timeout_s: float
    ) -> None:
        _check_value(prompt)
        args = (
            f"{min_digits} {max_digits} 1 {round(timeout_s * 1000)} # {prompt} "
            f"silence_stream://250 {DIGITS_VARIABLE} \\d+"
        )
        check_reply(await self.client.sendmsg(_id(channel_id), "play_and_get_digits", args))

    async def hangup(self, channel_id: str, cause: str = "NORMAL_CLEARING") -> None:
        _check_value(cause)
        await self._api(f"uuid_kill {_id(channel_id)} {cause}")


def _id(channel_id: str) -> str:
    if not channel_id or _UNSAFE_VALUE.search(channel_id) or "," in channel_id:
        raise SwitchError(f"not a channel id: {channel_id!r}")
    return channel_id


def _check_value(value: str) -> None:
    if not value or _UNSAFE_VALUE.search(value):
        raise SwitchError(f"value unsafe in a FreeSWITCH command: {value!r}")


def _var_block(variables: dict[str, str]) -> str:
    if not variables:
        return ""
    parts = []
    for key, value in variables.items():
        _check_value(key)
        if value:
            _check_value(value)
        escaped = value.replace(",", "\\,")
        parts.append(f"{key}={escaped}")
    return "{" + ",".join(parts) + "}"


def _recorded_seconds(h: dict[str, Any]) -> float:
    for key, scale in (("variable_record_ms", 1000.0), ("variable_record_seconds", 1.0)):
        try:
            return float(h[key]) / scale
        except (KeyError, TypeError, ValueError):
            continue
    return 0.0


def _file_size(path: str) -> int:
    # FreeSWITCH reports no size; the file is only readable here when the recordings
    # directory is shared with the switch, otherwise 0 means "unknown".
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


__all__: Sequence[str] = ("FreeSwitchDriver", "check_reply", "event_id", "EVENT_NAMESPACE")
