"""The built-in switch: an in-process `Driver` for the embedded set-up and the tests.

It models what FreeSWITCH does with the legs the bridge drives (channels, bridges, hold,
mute, blind transfer, recordings, eavesdrop, prompts and digits) and who hears whom, so
every contact-center feature runs end to end without FreeSWITCH. The people at the ends
are simulated: a `Party` says how the person behind a dialled address (an agent's phone
or browser, an external number) or an inbound caller behaves.

Time is *switch time*: seconds on the switch's clock, which runs `speed` times faster
than the event loop's, so a test can play minutes of calls in a fraction of a second.
Party delays, prompt lengths, timeouts and recording lengths are all in switch seconds,
and events are stamped with the switch clock (the wall clock at `speed=1`).

Every behaviour is a loop timer on the channel it belongs to (nothing sleeps per
channel) and every command is O(1) and never awaits, so state changes are atomic and
there is no limit on concurrent calls. Events go through one queue to one delivery task:
a command never waits for the event handler, and the handler may issue commands.

After-bridge rule (FreeSWITCH's hangup_after_bridge, which the production dialplan sets):
when a channel's bridge ends because its peer hung up, moved to another bridge (`bridge`)
or was transferred away (`transfer`), the channel is hung up unless its variable
`park_after_bridge` is true. One exception: a *held* channel whose peer moved stays
parked on hold, because hold means "wait for me"; that is what lets an attended transfer
be built from hold + bridge (the driver has no primitive to set a variable on a live leg).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from telephony_bridge.driver import (
    VAR_CALL_REF,
    VAR_HOTLINE,
    VAR_TENANT,
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
    EventHandler,
    NoSuchChannel,
    PlaybackFinished,
    RecordingStarted,
    RecordingStopped,
    SupervisionMode,
    SwitchError,
    SwitchUnavailable,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000  # recordings: 8 kHz mono 16-bit PCM, as FreeSWITCH records narrowband
VAR_PARK_AFTER_BRIDGE = "park_after_bridge"
VAR_TRANSFERRED_FROM = "cloudcc_transferred_from"
DTMF_KEYS = frozenset("0123456789*#ABCD")
_TRUE = frozenset({"true", "yes", "on", "1", "enabled", "active", "allow"})  # switch_true()


@dataclass(frozen=True, slots=True)
class Party:
    """The simulated person at an endpoint; every time is in switch seconds.

    answer_after: an outbound leg to this party is answered after this long; None never
        answers (the switch gives up with NO_ANSWER after `originate_timeout`).
    hang_up_after: hangs up this long after first being connected (bridged, or for a
        supervisor's leg, eavesdropping); None stays until someone else hangs up.
    digits: keys pressed one by one, in order, whenever a `collect_digits` prompts this
        party; each collect takes what it needs (up to max_digits or "#") and leaves
        the rest for the next prompt.
    abandon_after: hangs up if not yet connected this long after the call began (an
        inbound caller: from arrival; an outbound leg: from its answer).
    reject: refuses an outbound leg with this hangup cause (e.g. USER_BUSY) after
        `answer_after` (or at once when that is None).
    digit_gap: time between two key presses, and from the prompt's end to the first.
    """

    answer_after: float | None = 1.0
    hang_up_after: float | None = None
    digits: str = ""
    abandon_after: float | None = None
    reject: str | None = None
    digit_gap: float = 0.2


@dataclass(slots=True, eq=False)
class _Collect:
    min_digits: int
    max_digits: int
    timeout_s: float
    digits: str = ""
    prompted: bool = False


@dataclass(slots=True, eq=False)
class _Channel:
    id: str
    direction: Literal["inbound", "outbound"]
    caller_number: str
    destination_number: str
    variables: dict[str, str]
    party: Party
    keys: str  # what the party has still to press
    answered: bool = False
    held: bool = False
    muted: bool = False
    bridged_to: str | None = None
    connected_once: bool = False
    eavesdrop: tuple[str, SupervisionMode] | None = None  # (target, mode) of a supervisor
    room: str | None = None  # the conference it talks in
    eavesdroppers: set[str] = field(default_factory=set)
    recordings: dict[str, float] = field(default_factory=dict)  # path -> start time
    collect: _Collect | None = None
    media_free_at: float = 0.0  # prompts queue behind each other, like uuid_broadcast
    plays: int = 0
    bridge_on_answer: str | None = None  # a transfer's new leg: whom to bridge on answer
    awaiting_leg: str | None = None  # a transferred channel: the leg it waits for
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)

    def parks_after_bridge(self) -> bool:
        return self.variables.get(VAR_PARK_AFTER_BRIDGE, "").lower() in _TRUE


class BuiltinSwitch:
    """An in-process switch implementing `driver.Driver` (see the module docstring)."""

    def __init__(
        self,
        *,
        speed: float = 1.0,
        default_party: Party | None = None,
        parties: dict[str, Party] | None = None,
        prompt_seconds: float = 1.0,
        originate_timeout: float = 60.0,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.default_party = default_party or Party()
        self.prompt_seconds = prompt_seconds
        self.originate_timeout = originate_timeout
        self._parties: dict[str, Party] = dict(parties or {})
        self._channels: dict[str, _Channel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[AnySwitchEvent] | None = None
        self._delivery: asyncio.Task[None] | None = None
        self._t0 = 0.0
        self._epoch = datetime.now(UTC)

    # ------------------------------------------------------------------ simulation set-up
    def set_party(self, address: str, party: Party) -> None:
        """Say how the person behind a dialled address behaves from now on."""
        self._parties[address] = party

    def swap_party(self, address: str, party: Party | None) -> Party | None:
        """Set (None: forget) the party at `address`; the one set before, if any."""
        before = self._parties.pop(address, None)
        if party is not None:
            self._parties[address] = party
        return before

    def party_for(self, address: str) -> Party:
        return self._parties.get(address, self.default_party)

    def now(self) -> float:
        """Switch seconds since `start`."""
        loop = self._running()
        return (loop.time() - self._t0) * self.speed

    def place_inbound_call(
        self,
        caller_number: str,
        hotline: str,
        *,
        party: Party | None = None,
        variables: dict[str, str] | None = None,
        channel_id: str | None = None,
    ) -> str:
        """A simulated caller dials `hotline`; returns the new inbound channel's id."""
        self._running()
        channel_id = channel_id or str(uuid.uuid4())
        if channel_id in self._channels:
            raise SwitchError(f"channel {channel_id} exists")
        ch = self._create(
            channel_id,
            "inbound",
            caller_number,
            hotline,
            {**(variables or {}), VAR_HOTLINE: hotline},
            party or Party(),
        )
        if ch.party.abandon_after is not None:
            self._later(ch, "abandon", ch.party.abandon_after, lambda: self._abandon(ch))
        return channel_id

    def pick_up(self, channel_id: str) -> None:
        """The person an outbound leg rings picks up by hand: a browser softphone whose
        party never answers by itself (`Party(answer_after=None)`, see switchctl)."""
        ch = self._get(channel_id)
        if ch.direction != "outbound":
            raise SwitchError(f"{channel_id} is not a leg ringing someone")
        if ch.answered:
            return
        self._cancel(ch, "ring")
        self._far_end_answers(ch)

    def dtmf(self, channel_id: str, digit: str) -> None:
        """The person on `channel_id` presses `digit`."""
        self._running()
        if digit not in DTMF_KEYS:
            raise SwitchError(f"not a DTMF key: {digit!r}")
        self._key(self._get(channel_id), digit)

    def hears(self, listener_channel: str, speaker_channel: str) -> bool:
        """Whether the person on `listener_channel` hears the one on `speaker_channel`."""
        listener = self._get(listener_channel)
        speaker = self._get(speaker_channel)
        if listener is speaker or speaker.muted or speaker.held or listener.held:
            return False
        if listener.bridged_to == speaker.id:
            return True
        if listener.room is not None and listener.room == speaker.room:
            return True
        if listener.eavesdrop is not None:
            target = self._channels.get(listener.eavesdrop[0])
            if target is not None and speaker.id in (target.id, target.bridged_to):
                return True
        if speaker.eavesdrop is not None:
            target_id, mode = speaker.eavesdrop
            target = self._channels.get(target_id)
            if target is not None:
                if listener is target:
                    return mode in (SupervisionMode.WHISPER, SupervisionMode.BARGE)
                if listener.id == target.bridged_to:
                    return mode is SupervisionMode.BARGE
        return False

    async def idle(self) -> None:
        """Wait until every event so far has been handled."""
        if self._queue is not None:
            await self._queue.join()

    # ------------------------------------------------------------------------ Driver
    async def start(self, on_event: EventHandler) -> None:
        if self._loop is not None:
            raise SwitchError("switch already started")
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._epoch = datetime.now(UTC)
        self._queue = asyncio.Queue()
        self._delivery = self._loop.create_task(self._deliver(self._queue, on_event))

    async def close(self) -> None:
        for ch in self._channels.values():
            self._cancel_all(ch)
        self._channels.clear()
        self._loop = None
        if self._delivery is not None:
            self._delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._delivery
            self._delivery = None

    async def channels(self) -> list[ChannelState]:
        self._running()
        return [
            ChannelState(
                channel_id=ch.id,
                direction=ch.direction,
                caller_number=ch.caller_number,
                destination_number=ch.destination_number,
                answered=ch.answered,
                held=ch.held,
                bridged_to=ch.bridged_to,
                variables=dict(ch.variables),
            )
            for ch in self._channels.values()
        ]

    async def originate(
        self, channel_id: str, dial: Dial, caller_id_number: str, variables: dict[str, str]
    ) -> None:
        self._running()
        if channel_id in self._channels:
            raise SwitchError(f"channel {channel_id} exists")
        self._dial(channel_id, dial, caller_id_number, dict(variables))

    async def set_variables(self, channel_id: str, variables: dict[str, str]) -> None:
        self._get(channel_id).variables.update(variables)

    async def answer(self, channel_id: str) -> None:
        ch = self._get(channel_id)
        if ch.answered:
            return  # uuid_answer on an answered channel is a no-op
        if ch.direction == "outbound":
            raise SwitchError(f"{channel_id}: an outbound leg is answered by the far end")
        self._mark_answered(ch)

    async def bridge(self, channel_a: str, channel_b: str) -> None:
        self._bridge(self._get(channel_a), self._get(channel_b))

    async def hold(self, channel_id: str) -> None:
        ch = self._get(channel_id)
        if not ch.answered:
            raise SwitchError(f"{channel_id} is not answered")
        if ch.held:
            raise SwitchError(f"{channel_id} is already on hold")
        ch.held = True
        self._emit(ChannelHeld(**self._head(ch)))

    async def unhold(self, channel_id: str) -> None:
        ch = self._get(channel_id)
        if not ch.held:
            raise SwitchError(f"{channel_id} is not on hold")
        ch.held = False
        self._emit(ChannelResumed(**self._head(ch)))

    async def mute(self, channel_id: str) -> None:
        ch = self._get(channel_id)
        if not ch.muted:  # uuid_audio mute is idempotent
            ch.muted = True
            self._emit(ChannelMuted(**self._head(ch)))

    async def unmute(self, channel_id: str) -> None:
        ch = self._get(channel_id)
        if ch.muted:
            ch.muted = False
            self._emit(ChannelUnmuted(**self._head(ch)))

    async def transfer(
        self,
        channel_id: str,
        dial: Dial,
        *,
        new_channel_id: str | None = None,
        variables: dict[str, str] | None = None,
    ) -> None:
        ch = self._get(channel_id)
        if not ch.answered and ch.direction == "outbound":
            raise SwitchError(f"{channel_id} is not answered")
        old_peer = self._unbridge(ch) if ch.bridged_to is not None else None
        self._leave_eavesdrop(ch)
        self._cancel_awaited_leg(ch)
        self._drop_collect(ch)
        if old_peer is not None:
            self._after_bridge(old_peer, peer_moved=True)
        carried = {k: v for k, v in ch.variables.items() if k in (VAR_TENANT, VAR_CALL_REF)}
        carried[VAR_TRANSFERRED_FROM] = ch.id
        caller = ch.caller_number if ch.direction == "inbound" else ch.destination_number
        leg = self._dial(
            new_channel_id or str(uuid.uuid4()), dial, caller, {**carried, **(variables or {})}
        )
        leg.bridge_on_answer = ch.id
        ch.awaiting_leg = leg.id

    async def record_start(self, channel_id: str, path: str) -> None:
        ch = self._get(channel_id)
        if not ch.answered:
            raise SwitchError(f"{channel_id} is not answered")
        if path in ch.recordings:
            raise SwitchError(f"{channel_id} is already recording to {path}")
        try:
            _write_wav(path, 0)
        except OSError as exc:
            raise SwitchError(f"cannot record to {path}: {exc}") from exc
        ch.recordings[path] = self.now()
        self._emit(RecordingStarted(**self._head(ch), path=path))

    async def record_stop(self, channel_id: str, path: str) -> None:
        ch = self._get(channel_id)
        if path not in ch.recordings:
            raise SwitchError(f"{channel_id} is not recording to {path}")
        self._finish_recording(ch, path)

    async def eavesdrop(
        self, supervisor_channel_id: str, target_channel_id: str, mode: SupervisionMode
    ) -> None:
        sup = self._get(supervisor_channel_id)
        target = self._get(target_channel_id)
        mode = SupervisionMode(mode)
        if sup is target:
            raise SwitchError("a channel cannot eavesdrop on itself")
        if not sup.answered:
            raise SwitchError(f"{sup.id} is not answered")
        if sup.bridged_to is not None:
            raise SwitchError(f"{sup.id} is bridged")
        if target.bridged_to is None:
            raise SwitchError(f"{target.id} is not bridged")
        if target.eavesdrop is not None:
            raise SwitchError(f"{target.id} is itself eavesdropping")
        if sup.eavesdrop is not None and sup.eavesdrop[0] != target.id:
            self._leave_eavesdrop(sup)
        sup.eavesdrop = (target.id, mode)
        target.eavesdroppers.add(sup.id)
        self._drop_collect(sup)
        self._connected(sup)
        self._emit(EavesdropStarted(**self._head(sup), target_channel_id=target.id, mode=mode))

    async def conference(self, room: str, channel_ids: list[str]) -> None:
        chans = [self._get(c) for c in channel_ids]
        for ch in chans:
            if not ch.answered or ch.held:
                raise SwitchError(f"{ch.id} is not answered, or is held")
        moving = {ch.id for ch in chans}
        left_behind = []
        for ch in chans:
            self._leave_room(ch)
            self._leave_eavesdrop(ch)
            self._drop_collect(ch)
            if ch.bridged_to is not None:
                peer = self._unbridge(ch)
                if peer.id not in moving:
                    left_behind.append(peer)
        for ch in chans:
            ch.room = room
            self._emit(ConferenceJoined(**self._head(ch), room=room))
            self._connected(ch)
        for peer in left_behind:
            self._after_bridge(peer, peer_moved=True)

    def _leave_room(self, ch: _Channel) -> None:
        """`ch` leaves its conference; one alone in a room is treated like a channel
        whose bridge ended (hung up unless it parks)."""
        room, ch.room = ch.room, None
        if room is None:
            return
        rest = [c for c in self._channels.values() if c.room == room and c is not ch]
        if len(rest) == 1:
            rest[0].room = None
            self._after_bridge(rest[0], peer_moved=False)

    async def play(self, channel_id: str, prompt: str) -> None:
        ch = self._get(channel_id)
        if not ch.answered:
            raise SwitchError(f"{channel_id} is not answered")
        ends = self._queue_prompt(ch)
        ch.plays += 1
        self._later(
            ch,
            f"play{ch.plays}",
            ends - self.now(),
            lambda: self._emit(PlaybackFinished(**self._head(ch), prompt=prompt)),
        )

    async def collect_digits(
        self, channel_id: str, prompt: str, min_digits: int, max_digits: int, timeout_s: float
    ) -> None:
        ch = self._get(channel_id)
        if not 0 <= min_digits <= max_digits or max_digits < 1:
            raise SwitchError(f"bad digit bounds {min_digits}..{max_digits}")
        if not ch.answered:
            raise SwitchError(f"{channel_id} is not answered")
        if ch.collect is not None:
            raise SwitchError(f"{channel_id} is already collecting digits")
        collect = _Collect(min_digits, max_digits, timeout_s)
        ch.collect = collect
        ends = self._queue_prompt(ch)
        self._later(ch, "prompt", ends - self.now(), lambda: self._prompted(ch, collect))

    async def hangup(self, channel_id: str, cause: str = "NORMAL_CLEARING") -> None:
        self._hangup(self._get(channel_id), cause)

    # ------------------------------------------------------------------ channel model
    def _create(
        self,
        channel_id: str,
        direction: Literal["inbound", "outbound"],
        caller: str,
        destination: str,
        variables: dict[str, str],
        party: Party,
    ) -> _Channel:
        ch = _Channel(channel_id, direction, caller, destination, variables, party, party.digits)
        self._channels[channel_id] = ch
        self._emit(
            ChannelCreated(
                **self._head(ch),
                direction=direction,
                caller_number=caller,
                destination_number=destination,
            )
        )
        return ch

    def _dial(
        self, channel_id: str, dial: Dial, caller: str, variables: dict[str, str]
    ) -> _Channel:
        party = self.party_for(dial.address)
        ch = self._create(channel_id, "outbound", caller, dial.address, variables, party)
        if party.reject is not None:
            cause = party.reject
            self._later(ch, "ring", party.answer_after or 0.0, lambda: self._hangup(ch, cause))
        elif party.answer_after is None or party.answer_after > self.originate_timeout:
            self._later(ch, "ring", self.originate_timeout, lambda: self._hangup(ch, "NO_ANSWER"))
        else:
            self._later(ch, "ring", party.answer_after, lambda: self._far_end_answers(ch))
        return ch

    def _far_end_answers(self, ch: _Channel) -> None:
        self._mark_answered(ch)
        if ch.party.abandon_after is not None:
            self._later(ch, "abandon", ch.party.abandon_after, lambda: self._abandon(ch))
        waiting = self._channels.get(ch.bridge_on_answer or "")
        if waiting is not None and waiting.awaiting_leg == ch.id:
            self._bridge(waiting, ch)

    def _mark_answered(self, ch: _Channel) -> None:
        ch.answered = True
        self._emit(ChannelAnswered(**self._head(ch)))

    def _abandon(self, ch: _Channel) -> None:
        if not ch.connected_once:
            self._hangup(ch, "NORMAL_CLEARING" if ch.answered else "ORIGINATOR_CANCEL")

    def _connected(self, ch: _Channel) -> None:
        if ch.connected_once:
            return
        ch.connected_once = True
        self._cancel(ch, "abandon")
        if ch.party.hang_up_after is not None:
            self._later(
                ch, "hang_up", ch.party.hang_up_after, lambda: self._hangup(ch, "NORMAL_CLEARING")
            )

    def _bridge(self, a: _Channel, b: _Channel) -> None:
        if a is b:
            raise SwitchError("cannot bridge a channel to itself")
        if a.bridged_to == b.id:
            return
        for ch in (a, b):
            if not ch.answered and ch.direction == "outbound":
                raise SwitchError(f"{ch.id} is not answered")
        for ch in (a, b):
            if not ch.answered:  # bridging a ringing inbound leg answers it
                self._mark_answered(ch)
        left_behind = [self._unbridge(ch) for ch in (a, b) if ch.bridged_to is not None]
        for ch in (a, b):
            self._leave_room(ch)
        for ch, other in ((a, b), (b, a)):
            self._leave_eavesdrop(ch)
            self._drop_collect(ch)
            if ch.awaiting_leg != other.id:
                self._cancel_awaited_leg(ch)
            ch.awaiting_leg = None
            ch.bridge_on_answer = None
        a.bridged_to, b.bridged_to = b.id, a.id
        self._emit(ChannelBridged(**self._head(a), other_channel_id=b.id))
        self._emit(ChannelBridged(**self._head(b), other_channel_id=a.id))
        self._connected(a)
        self._connected(b)
        for ch in left_behind:
            self._after_bridge(ch, peer_moved=True)

    def _unbridge(self, ch: _Channel) -> _Channel:
        peer = self._channels[ch.bridged_to or ""]
        ch.bridged_to = peer.bridged_to = None
        self._emit(ChannelUnbridged(**self._head(ch), other_channel_id=peer.id))
        self._emit(ChannelUnbridged(**self._head(peer), other_channel_id=ch.id))
        return peer

    def _after_bridge(self, ch: _Channel, *, peer_moved: bool) -> None:
        """`ch`'s bridge (or eavesdrop) ended because the other side left."""
        if self._channels.get(ch.id) is not ch or ch.bridged_to is not None:
            return
        if ch.parks_after_bridge() or (peer_moved and ch.held):
            return
        self._hangup(ch, "NORMAL_CLEARING")

    def _leave_eavesdrop(self, sup: _Channel) -> None:
        if sup.eavesdrop is not None:
            target = self._channels.get(sup.eavesdrop[0])
            if target is not None:
                target.eavesdroppers.discard(sup.id)
            sup.eavesdrop = None

    def _cancel_awaited_leg(self, ch: _Channel) -> None:
        leg = self._channels.get(ch.awaiting_leg or "")
        ch.awaiting_leg = None
        if leg is not None:
            leg.bridge_on_answer = None
            self._hangup(leg, "ORIGINATOR_CANCEL" if not leg.answered else "NORMAL_CLEARING")

    def _hangup(self, ch: _Channel, cause: str) -> None:
        if self._channels.get(ch.id) is not ch:
            return
        # Gone first, so the cascades below never come back to this channel.
        del self._channels[ch.id]
        self._cancel_all(ch)
        ch.collect = None
        peer = self._unbridge(ch) if ch.bridged_to is not None else None
        self._leave_eavesdrop(ch)
        for path in list(ch.recordings):
            self._finish_recording(ch, path)
        self._emit(ChannelHungUp(**self._head(ch), cause=cause))
        self._leave_room(ch)
        if peer is not None:
            self._after_bridge(peer, peer_moved=False)
        for sup_id in list(ch.eavesdroppers):
            sup = self._channels.get(sup_id)
            if sup is not None:
                sup.eavesdrop = None
                self._after_bridge(sup, peer_moved=False)
        waiting = self._channels.get(ch.bridge_on_answer or "")
        if waiting is not None and waiting.awaiting_leg == ch.id:
            # The transfer's destination failed or gave up: the transferred call ends.
            waiting.awaiting_leg = None
            if not waiting.parks_after_bridge():
                self._hangup(waiting, cause if not ch.answered else "NORMAL_CLEARING")
        self._cancel_awaited_leg(ch)

    # --------------------------------------------------------------------- media
    def _queue_prompt(self, ch: _Channel) -> float:
        now = self.now()
        ch.media_free_at = max(now, ch.media_free_at) + self.prompt_seconds
        return ch.media_free_at

    def _prompted(self, ch: _Channel, collect: _Collect) -> None:
        if ch.collect is not collect or collect.prompted:
            return
        collect.prompted = True
        self._arm_digit_timeout(ch, collect)
        if ch.keys:
            self._later(ch, "press", ch.party.digit_gap, lambda: self._party_presses(ch))

    def _party_presses(self, ch: _Channel) -> None:
        if ch.collect is None or not ch.keys:
            return
        digit, ch.keys = ch.keys[0], ch.keys[1:]
        self._key(ch, digit)
        if ch.collect is not None and ch.keys:
            self._later(ch, "press", ch.party.digit_gap, lambda: self._party_presses(ch))

    def _key(self, ch: _Channel, digit: str) -> None:
        self._emit(DtmfReceived(**self._head(ch), digit=digit))
        collect = ch.collect
        if collect is None:
            return
        if not collect.prompted:  # a key cuts the prompt short, as in play_and_get_digits
            self._cancel(ch, "prompt")
            collect.prompted = True
        if digit == "#":
            ok = len(collect.digits) >= collect.min_digits
            self._finish_collect(ch, collect.digits if ok else "")
            return
        collect.digits += digit
        if len(collect.digits) >= collect.max_digits:
            self._finish_collect(ch, collect.digits)
        else:
            self._arm_digit_timeout(ch, collect)

    def _arm_digit_timeout(self, ch: _Channel, collect: _Collect) -> None:
        def timed_out() -> None:
            if ch.collect is collect:
                ok = len(collect.digits) >= collect.min_digits
                self._finish_collect(ch, collect.digits if ok else "")

        self._later(ch, "digit_timeout", collect.timeout_s, timed_out)

    def _finish_collect(self, ch: _Channel, digits: str) -> None:
        self._drop_collect(ch)
        self._emit(DigitsCollected(**self._head(ch), digits=digits))

    def _drop_collect(self, ch: _Channel) -> None:
        ch.collect = None
        for key in ("prompt", "digit_timeout", "press"):
            self._cancel(ch, key)

    def _finish_recording(self, ch: _Channel, path: str) -> None:
        frames = round(max(0.0, self.now() - ch.recordings.pop(path)) * SAMPLE_RATE)
        try:
            _write_wav(path, frames)
            size = os.path.getsize(path)
        except OSError:
            log.exception("recording %s of %s could not be written", path, ch.id)
            size = 0
        self._emit(
            RecordingStopped(**self._head(ch), path=path, seconds=frames / SAMPLE_RATE, size=size)
        )

    # ------------------------------------------------------------------ plumbing
    def _running(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise SwitchUnavailable("the built-in switch is not started")
        return self._loop

    def _get(self, channel_id: str) -> _Channel:
        self._running()
        ch = self._channels.get(channel_id)
        if ch is None:
            raise NoSuchChannel(f"no such channel: {channel_id}")
        return ch

    def _head(self, ch: _Channel) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "at": self._epoch + timedelta(seconds=self.now()),
            "channel_id": ch.id,
            "variables": dict(ch.variables),
        }

    def _emit(self, event: AnySwitchEvent) -> None:
        assert self._queue is not None
        self._queue.put_nowait(event)

    @staticmethod
    async def _deliver(queue: asyncio.Queue[AnySwitchEvent], on_event: EventHandler) -> None:
        while True:
            event = await queue.get()
            try:
                await on_event(event)
            except Exception:
                # One bad event must not stop the switch reporting the rest.
                log.exception("switch event handler failed on %r", event)
            finally:
                queue.task_done()

    def _later(self, ch: _Channel, key: str, delay: float, action: Callable[[], None]) -> None:
        self._cancel(ch, key)
        ch.timers[key] = self._running().call_later(
            max(0.0, delay) / self.speed, self._fire, ch, key, action
        )

    def _fire(self, ch: _Channel, key: str, action: Callable[[], None]) -> None:
        ch.timers.pop(key, None)
        if self._channels.get(ch.id) is ch:
            action()

    @staticmethod
    def _cancel(ch: _Channel, key: str) -> None:
        handle = ch.timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    @staticmethod
    def _cancel_all(ch: _Channel) -> None:
        for handle in ch.timers.values():
            handle.cancel()
        ch.timers.clear()


def _write_wav(path: str, frames: int) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        second = b"\0\0" * SAMPLE_RATE
        while frames > 0:
            chunk = min(frames, SAMPLE_RATE)
            out.writeframes(second[: chunk * 2])
            frames -= chunk
