"""The switch, as the bridge sees it: a driver interface and the events a switch reports.

Two drivers implement `Driver`: `telephony_bridge.freeswitch` (FreeSWITCH's Event Socket,
the production switch) and `telephony_bridge.switch` (the built-in switch of the embedded
set-up and the tests). The bridge (`telephony_bridge.bridge`) speaks only this module, so
everything above it runs the same on either.

A channel is one leg of a call (the customer's, an agent's, a supervisor's), named by its
`channel_id` (FreeSWITCH's Unique-ID). Channels carry *variables*: the bridge tags every
channel it creates with `cloudcc_tenant`, `cloudcc_call_ref` and, for an agent's leg,
`cloudcc_agent_id`, so each event it gets back says whose call it belongs to; an inbound
channel's variables say which hotline was dialled.

Every event has an `event_id` unique for that switch (FreeSWITCH's `Event-UUID`): the
facts made from it are deduplicated by it, so an event delivered twice (a reconnect, a
resync) changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Protocol

import msgspec

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

# Channel variables the bridge sets and reads back.
VAR_TENANT = "cloudcc_tenant"
VAR_CALL_REF = "cloudcc_call_ref"
VAR_AGENT = "cloudcc_agent_id"
VAR_ROLE = "cloudcc_role"  # "customer" | "agent" | "supervisor" | "consult"
VAR_HOTLINE = "cloudcc_hotline"


class SwitchError(Exception):
    """The switch refused or failed a command; the message is the switch's reason."""


class NoSuchChannel(SwitchError):
    """The command named a channel the switch does not have (it hung up, or never was)."""


class SwitchUnavailable(SwitchError):
    """The driver has no connection to the switch now (it is reconnecting)."""


class EndpointKind(StrEnum):
    """Where a dial goes (the domain's endpoint kinds, plus plain external numbers)."""

    SIP_PHONE = "sip_phone"
    IP_PHONE = "ip_phone"
    WEBRTC = "webrtc"
    MOBILE = "mobile"
    EXTERNAL = "external"


class Dial(msgspec.Struct, frozen=True, kw_only=True):
    """A destination: an agent's registered phone or browser, or a number out a trunk."""

    kind: EndpointKind
    address: str


class SupervisionMode(StrEnum):
    LISTEN = "listen"  # hears both sides, heard by nobody
    WHISPER = "whisper"  # heard by the agent only
    BARGE = "barge"  # heard by both: a three-way call


# ---------------------------------------------------------------- events from the switch
class SwitchEvent(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    event_id: str
    at: AwareDatetime
    channel_id: str
    # The channel's variables as the switch reported them with this event (tenant, call).
    variables: dict[str, str] = {}


class ChannelCreated(SwitchEvent, frozen=True, kw_only=True, tag=True):
    """A new leg: `inbound` is a caller reaching the switch, `outbound` a leg it dialled."""

    direction: Literal["inbound", "outbound"]
    caller_number: str
    destination_number: str


class ChannelAnswered(SwitchEvent, frozen=True, kw_only=True, tag=True):
    pass


class ChannelBridged(SwitchEvent, frozen=True, kw_only=True, tag=True):
    other_channel_id: str


class ChannelUnbridged(SwitchEvent, frozen=True, kw_only=True, tag=True):
    other_channel_id: str


class ChannelHeld(SwitchEvent, frozen=True, kw_only=True, tag=True):
    pass


class ChannelResumed(SwitchEvent, frozen=True, kw_only=True, tag=True):
    pass


class ChannelMuted(SwitchEvent, frozen=True, kw_only=True, tag=True):
    pass


class ChannelUnmuted(SwitchEvent, frozen=True, kw_only=True, tag=True):
    pass


class DtmfReceived(SwitchEvent, frozen=True, kw_only=True, tag=True):
    digit: str


class DigitsCollected(SwitchEvent, frozen=True, kw_only=True, tag=True):
    """A prompt-and-collect finished: `digits` is what was entered ("" on timeout)."""

    digits: str


class PlaybackFinished(SwitchEvent, frozen=True, kw_only=True, tag=True):
    prompt: str


class RecordingStarted(SwitchEvent, frozen=True, kw_only=True, tag=True):
    path: str


class RecordingStopped(SwitchEvent, frozen=True, kw_only=True, tag=True):
    path: str
    seconds: float
    size: int


class EavesdropStarted(SwitchEvent, frozen=True, kw_only=True, tag=True):
    """`channel_id` (a supervisor's leg) now listens in on `target_channel_id`."""

    target_channel_id: str
    mode: SupervisionMode


class ConferenceJoined(SwitchEvent, frozen=True, kw_only=True, tag=True):
    """`channel_id` talks in conference `room`: everyone there hears everyone (group talk)."""

    room: str


class ChannelHungUp(SwitchEvent, frozen=True, kw_only=True, tag=True):
    cause: str  # FreeSWITCH's Hangup-Cause, e.g. NORMAL_CLEARING, NO_ANSWER, USER_BUSY


AnySwitchEvent = (
    ChannelCreated
    | ChannelAnswered
    | ChannelBridged
    | ChannelUnbridged
    | ChannelHeld
    | ChannelResumed
    | ChannelMuted
    | ChannelUnmuted
    | DtmfReceived
    | DigitsCollected
    | PlaybackFinished
    | RecordingStarted
    | RecordingStopped
    | EavesdropStarted
    | ConferenceJoined
    | ChannelHungUp
)

EventHandler = Callable[[AnySwitchEvent], Awaitable[None]]


class ChannelState(msgspec.Struct, frozen=True, kw_only=True):
    """A live channel as the switch knows it: what a resync after a reconnect compares."""

    channel_id: str
    direction: Literal["inbound", "outbound"]
    caller_number: str
    destination_number: str
    answered: bool
    held: bool
    bridged_to: str | None
    variables: dict[str, str] = {}


class Driver(Protocol):
    """What the bridge asks of a switch. Every command raises `NoSuchChannel` for a
    channel the switch does not have, `SwitchError` for anything else it refuses and
    `SwitchUnavailable` while the connection is down."""

    async def start(self, on_event: EventHandler) -> None:
        """Connect; from now on every switch event goes to `on_event`, in order."""

    async def close(self) -> None: ...

    async def channels(self) -> list[ChannelState]:
        """Every live channel (for the bridge's resync after a reconnect)."""

    async def originate(
        self, channel_id: str, dial: Dial, caller_id_number: str, variables: dict[str, str]
    ) -> None:
        """Create an outbound leg named `channel_id` to `dial`; it rings, then is parked
        on answer (ChannelCreated now, ChannelAnswered or ChannelHungUp later)."""

    async def answer(self, channel_id: str) -> None: ...

    async def set_variables(self, channel_id: str, variables: dict[str, str]) -> None:
        """Tag a live channel (an inbound caller's, once the dialplan knows whose call it
        is): later events and `channels()` carry the variables."""

    async def bridge(self, channel_a: str, channel_b: str) -> None: ...

    async def hold(self, channel_id: str) -> None: ...

    async def unhold(self, channel_id: str) -> None: ...

    async def mute(self, channel_id: str) -> None: ...

    async def unmute(self, channel_id: str) -> None: ...

    async def transfer(
        self,
        channel_id: str,
        dial: Dial,
        *,
        new_channel_id: str | None = None,
        variables: dict[str, str] | None = None,
    ) -> None:
        """Blind transfer: `channel_id` leaves its bridge and is connected to `dial`, a new
        leg named `new_channel_id` (the switch picks one if None) carrying the call's
        tenant and call ref plus `variables`."""

    async def record_start(self, channel_id: str, path: str) -> None: ...

    async def record_stop(self, channel_id: str, path: str) -> None: ...

    async def eavesdrop(
        self, supervisor_channel_id: str, target_channel_id: str, mode: SupervisionMode
    ) -> None:
        """The (answered) supervisor leg listens in on the target leg's call in `mode`;
        called again, it changes the mode."""

    async def conference(self, room: str, channel_ids: list[str]) -> None:
        """Move the (answered, not held) channels into conference `room`, out of their
        bridges: group talk, e.g. a three-way call (ConferenceJoined for each)."""

    async def play(self, channel_id: str, prompt: str) -> None:
        """Play a prompt to the channel (PlaybackFinished when done)."""

    async def collect_digits(
        self, channel_id: str, prompt: str, min_digits: int, max_digits: int, timeout_s: float
    ) -> None:
        """Play `prompt` and collect digits (DigitsCollected when done)."""

    async def hangup(self, channel_id: str, cause: str = "NORMAL_CLEARING") -> None: ...


_event_decoder = msgspec.json.Decoder(AnySwitchEvent)
_encoder = msgspec.json.Encoder()


def encode_event(event: SwitchEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(payload: bytes) -> AnySwitchEvent:
    return _event_decoder.decode(payload)
