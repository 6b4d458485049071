"""The built-in switch (telephony_bridge.switch): legs, bridges, hold, mute, transfers,
recordings, eavesdrop, prompts and digits behave as the Driver protocol and FreeSWITCH
say, with simulated callers and agents, and hundreds of calls run at once."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from telephony_bridge.driver import (
    VAR_CALL_REF,
    VAR_HOTLINE,
    VAR_ROLE,
    VAR_TENANT,
    AnySwitchEvent,
    ChannelAnswered,
    ChannelBridged,
    ChannelCreated,
    ChannelHungUp,
    ChannelUnbridged,
    ConferenceJoined,
    Dial,
    DigitsCollected,
    DtmfReceived,
    EavesdropStarted,
    EndpointKind,
    NoSuchChannel,
    PlaybackFinished,
    RecordingStarted,
    RecordingStopped,
    SupervisionMode,
    SwitchError,
    SwitchUnavailable,
)
from telephony_bridge.switch import BuiltinSwitch, Party

SPEED = 100.0  # one switch second is 10 ms
AGENT_A = Dial(kind=EndpointKind.SIP_PHONE, address="sip:alice@cc")
AGENT_B = Dial(kind=EndpointKind.WEBRTC, address="webrtc:bob")
MOBILE = Dial(kind=EndpointKind.MOBILE, address="+15550001111")
SUPERVISOR = Dial(kind=EndpointKind.IP_PHONE, address="sip:sue@cc")
AGENT_VARS = {VAR_TENANT: "t1", VAR_CALL_REF: "call-1", VAR_ROLE: "agent"}
PARK = {"park_after_bridge": "true"}


class Recorder:
    def __init__(self) -> None:
        self.events: list[AnySwitchEvent] = []

    async def __call__(self, event: AnySwitchEvent) -> None:
        self.events.append(event)

    def of(self, channel_id: str) -> list[str]:
        return [type(e).__name__ for e in self.events if e.channel_id == channel_id]

    def last(self, kind: type[Any], channel_id: str | None = None) -> Any:
        found = [
            e
            for e in self.events
            if isinstance(e, kind) and (channel_id is None or e.channel_id == channel_id)
        ]
        assert found, f"no {kind.__name__} for {channel_id}"
        return found[-1]

    async def wait_for(self, kind: type[Any], channel_id: str, timeout: float = 2.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if isinstance(e, kind) and e.channel_id == channel_id:
                    return e
            await asyncio.sleep(0.002)
        raise AssertionError(f"no {kind.__name__} for {channel_id}: {self.of(channel_id)}")


Scenario = Callable[[BuiltinSwitch, Recorder], Awaitable[None]]


def run(scenario: Scenario, **switch_options: Any) -> None:
    async def main() -> None:
        switch = BuiltinSwitch(**{"speed": SPEED, **switch_options})
        recorder = Recorder()
        await switch.start(recorder)
        try:
            await scenario(switch, recorder)
        finally:
            await switch.close()

    asyncio.run(main())


async def sim(switch: BuiltinSwitch, seconds: float) -> None:
    """Let `seconds` of switch time pass, then let the handler catch up."""
    await asyncio.sleep(seconds / switch.speed)
    await switch.idle()


async def connected_call(
    switch: BuiltinSwitch,
    rec: Recorder,
    agent: Dial = AGENT_A,
    agent_vars: dict[str, str] | None = None,
    customer_vars: dict[str, str] | None = None,
) -> tuple[str, str]:
    """A customer's inbound call answered and bridged to an agent's leg."""
    customer = switch.place_inbound_call("+15557654321", "+18005550100", variables=customer_vars)
    await switch.answer(customer)
    agent_leg = f"agent-{customer}"
    await switch.originate(agent_leg, agent, "+18005550100", {**AGENT_VARS, **(agent_vars or {})})
    await rec.wait_for(ChannelAnswered, agent_leg)
    await switch.bridge(customer, agent_leg)
    await switch.idle()
    return customer, agent_leg


def names(events: list[AnySwitchEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


# ------------------------------------------------------------------------------ basics
def test_inbound_call_answered_by_agent_and_bridged_reports_events_in_order() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        switch.set_party(AGENT_A.address, Party(answer_after=2.0))
        customer = switch.place_inbound_call("+15557654321", "+18005550100")
        await switch.answer(customer)
        await switch.originate("leg-a", AGENT_A, "+18005550100", AGENT_VARS)
        await sim(switch, 1.0)
        assert "ChannelAnswered" not in rec.of("leg-a")  # still ringing
        await rec.wait_for(ChannelAnswered, "leg-a")
        await switch.bridge(customer, "leg-a")
        await switch.idle()

        assert names(rec.events) == [
            "ChannelCreated",
            "ChannelAnswered",
            "ChannelCreated",
            "ChannelAnswered",
            "ChannelBridged",
            "ChannelBridged",
        ]
        created = rec.events[0]
        assert isinstance(created, ChannelCreated)
        assert (created.direction, created.destination_number) == ("inbound", "+18005550100")
        assert created.variables[VAR_HOTLINE] == "+18005550100"
        leg = rec.events[2]
        assert isinstance(leg, ChannelCreated) and leg.direction == "outbound"
        assert leg.destination_number == AGENT_A.address
        assert rec.last(ChannelBridged, customer).other_channel_id == "leg-a"
        assert rec.last(ChannelBridged, "leg-a").other_channel_id == customer
        # Every event carries its channel's variables, a unique id and an aware UTC time.
        assert all(e.variables == AGENT_VARS for e in rec.events if e.channel_id == "leg-a")
        assert len({e.event_id for e in rec.events}) == len(rec.events)
        assert all(e.at.utcoffset() is not None for e in rec.events)
        assert [e.at for e in rec.events] == sorted(e.at for e in rec.events)
        assert switch.hears(customer, "leg-a") and switch.hears("leg-a", customer)

    run(scenario)


def test_commands_before_start_and_after_close_say_the_switch_is_unavailable() -> None:
    async def main() -> None:
        switch = BuiltinSwitch(speed=SPEED)
        with pytest.raises(SwitchUnavailable):
            await switch.originate("x", AGENT_A, "1", {})
        await switch.start(Recorder())
        await switch.close()
        with pytest.raises(SwitchUnavailable):
            await switch.channels()

    asyncio.run(main())


def test_channels_reflect_live_state() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        customer, agent = await connected_call(switch, rec)
        await switch.hold(customer)
        states = {c.channel_id: c for c in await switch.channels()}
        assert set(states) == {customer, agent}
        assert states[customer].direction == "inbound" and states[customer].held
        assert states[customer].bridged_to == agent and states[agent].bridged_to == customer
        assert states[agent].answered and states[agent].variables == AGENT_VARS
        await switch.hangup(customer)
        assert await switch.channels() == []

    run(scenario)


def test_a_gone_channel_is_no_such_channel_and_the_switch_keeps_working() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        customer, agent = await connected_call(switch, rec)
        await switch.hangup(customer)
        for command in (
            switch.hold(customer),
            switch.bridge(customer, agent),
            switch.play("never-was", "hello"),
            switch.hangup(agent),
        ):
            with pytest.raises(NoSuchChannel):
                await command
        with pytest.raises(NoSuchChannel):
            switch.hears(customer, agent)
        with pytest.raises(SwitchError):
            await switch.originate("dup", AGENT_A, "1", {})
            await switch.originate("dup", AGENT_A, "1", {})
        second, agent2 = await connected_call(switch, rec, AGENT_B)
        assert switch.hears(second, agent2)

    run(scenario)


# --------------------------------------------------------------------- hangup rules
def test_hanging_up_one_side_ends_the_other_unless_it_parks_after_bridge() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        customer, agent = await connected_call(switch, rec)
        await switch.hangup(customer)
        await switch.idle()
        assert rec.of(customer)[-2:] == ["ChannelUnbridged", "ChannelHungUp"]
        assert rec.of(agent)[-2:] == ["ChannelUnbridged", "ChannelHungUp"]
        assert rec.last(ChannelHungUp, agent).cause == "NORMAL_CLEARING"

        customer, agent = await connected_call(switch, rec, AGENT_B, PARK)
        await switch.hangup(customer, "USER_BUSY")
        await switch.idle()
        assert rec.last(ChannelHungUp, customer).cause == "USER_BUSY"
        assert rec.of(agent)[-1] == "ChannelUnbridged"
        [state] = await switch.channels()
        assert state.channel_id == agent and state.bridged_to is None and state.answered

    run(scenario)


def test_bridging_a_bridged_channel_moves_it() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        customer, agent = await connected_call(switch, rec, agent_vars=PARK)
        await switch.originate("other", AGENT_B, "1", {})
        await rec.wait_for(ChannelAnswered, "other")
        await switch.bridge(customer, "other")
        await switch.idle()
        assert rec.last(ChannelUnbridged, agent).other_channel_id == customer
        states = {c.channel_id: c.bridged_to for c in await switch.channels()}
        assert states == {customer: "other", "other": customer, agent: None}
        # Without park_after_bridge the channel left behind is hung up.
        await switch.originate("third", MOBILE, "1", {})
        await rec.wait_for(ChannelAnswered, "third")
        await switch.bridge("third", customer)
        await switch.idle()
        assert rec.of("other")[-1] == "ChannelHungUp"
        assert not switch.hears(customer, agent) and switch.hears(customer, "third")

    run(scenario)


def test_an_agent_that_never_answers_or_is_busy_ends_the_leg() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        switch.set_party(AGENT_A.address, Party(answer_after=None))
        switch.set_party(AGENT_B.address, Party(reject="USER_BUSY", answer_after=0.5))
        await switch.originate("a", AGENT_A, "1", {})
        await switch.originate("b", AGENT_B, "1", {})
        assert (await rec.wait_for(ChannelHungUp, "b")).cause == "USER_BUSY"
        assert (await rec.wait_for(ChannelHungUp, "a")).cause == "NO_ANSWER"
        assert rec.of("a") == ["ChannelCreated", "ChannelHungUp"]

    run(scenario, originate_timeout=5.0)


def test_an_agent_leg_cannot_be_answered_or_bridged_by_the_switch_before_the_agent_picks_up() -> (
    None
):
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        switch.set_party(AGENT_A.address, Party(answer_after=10.0))
        customer = switch.place_inbound_call("+1555", "+1800")
        await switch.originate("a", AGENT_A, "1", {})
        with pytest.raises(SwitchError):
            await switch.answer("a")
        with pytest.raises(SwitchError):
            await switch.bridge(customer, "a")
        await switch.hangup("a", "ORIGINATOR_CANCEL")  # what StopRinging does
        await switch.idle()
        assert rec.of("a") == ["ChannelCreated", "ChannelHungUp"]
        assert rec.of(customer) == ["ChannelCreated"]

    run(scenario)


def test_a_caller_abandons_before_being_answered_and_one_hangs_up_after_talking() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        impatient = switch.place_inbound_call("+1", "+1800", party=Party(abandon_after=3.0))
        await switch.answer(impatient)
        await switch.play(impatient, "queue-music")
        hung_up = await rec.wait_for(ChannelHungUp, impatient)
        assert hung_up.cause == "NORMAL_CLEARING"
        ringing = switch.place_inbound_call("+2", "+1800", party=Party(abandon_after=1.0))
        assert (await rec.wait_for(ChannelHungUp, ringing)).cause == "ORIGINATOR_CANCEL"

        talker = switch.place_inbound_call(
            "+3", "+1800", party=Party(abandon_after=3.0, hang_up_after=5.0)
        )
        await switch.originate("a", AGENT_A, "1", AGENT_VARS)
        await rec.wait_for(ChannelAnswered, "a")
        await switch.bridge(talker, "a")  # answers the ringing inbound leg
        started = time.monotonic()
        await rec.wait_for(ChannelHungUp, talker)
        assert time.monotonic() - started >= 4.5 / SPEED  # talked, did not abandon
        assert rec.of(talker)[:3] == ["ChannelCreated", "ChannelAnswered", "ChannelBridged"]
        await rec.wait_for(ChannelHungUp, "a")

    run(scenario)


# ---------------------------------------------------------------- hold, mute, hearing
def test_hold_and_unhold_change_who_hears_whom() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        ringing = switch.place_inbound_call("+1", "+1800")
        with pytest.raises(SwitchError):
            await switch.hold(ringing)
        customer, agent = await connected_call(switch, rec)
        await switch.hold(customer)
        with pytest.raises(SwitchError):
            await switch.hold(customer)  # like FreeSWITCH: already on hold
        assert not switch.hears(customer, agent)  # music on hold, nobody of the call
        assert not switch.hears(agent, customer)
        await switch.unhold(customer)
        with pytest.raises(SwitchError):
            await switch.unhold(customer)
        assert switch.hears(customer, agent) and switch.hears(agent, customer)
        await switch.idle()
        assert rec.of(customer)[-2:] == ["ChannelHeld", "ChannelResumed"]

    run(scenario)


def test_a_muted_channel_is_heard_by_nobody_but_still_hears() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        customer, agent = await connected_call(switch, rec)
        await switch.originate("sup", SUPERVISOR, "1", {VAR_ROLE: "supervisor"})
        await rec.wait_for(ChannelAnswered, "sup")
        await switch.eavesdrop("sup", agent, SupervisionMode.BARGE)
        await switch.mute(agent)
        await switch.mute(agent)  # idempotent, one event
        assert not switch.hears(customer, agent) and not switch.hears("sup", agent)
        assert switch.hears(agent, customer) and switch.hears(agent, "sup")
        await switch.unmute(agent)
        assert switch.hears(customer, agent)
        await switch.idle()
        assert rec.of(agent)[-2:] == ["ChannelMuted", "ChannelUnmuted"]

    run(scenario)


def test_eavesdrop_listen_whisper_barge_and_who_hears_whom() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        customer, agent = await connected_call(switch, rec)
        await switch.originate("sup", SUPERVISOR, "1", {VAR_ROLE: "supervisor"})
        with pytest.raises(SwitchError):
            await switch.eavesdrop("sup", agent, SupervisionMode.LISTEN)  # still ringing
        await rec.wait_for(ChannelAnswered, "sup")
        idle_agent = "idle"
        await switch.originate(idle_agent, AGENT_B, "1", {})
        await rec.wait_for(ChannelAnswered, idle_agent)
        with pytest.raises(SwitchError):
            await switch.eavesdrop("sup", idle_agent, SupervisionMode.LISTEN)  # not bridged

        # (listener, speaker) -> hears, per mode; c = customer, a = agent, s = supervisor.
        expected = {
            SupervisionMode.LISTEN: {"sc": 1, "sa": 1, "as": 0, "cs": 0, "ac": 1, "ca": 1},
            SupervisionMode.WHISPER: {"sc": 1, "sa": 1, "as": 1, "cs": 0, "ac": 1, "ca": 1},
            SupervisionMode.BARGE: {"sc": 1, "sa": 1, "as": 1, "cs": 1, "ac": 1, "ca": 1},
        }
        ids = {"c": customer, "a": agent, "s": "sup"}
        for mode, table in expected.items():
            await switch.eavesdrop("sup", agent, mode)
            actual = {pair: int(switch.hears(ids[pair[0]], ids[pair[1]])) for pair in table}
            assert actual == table, mode
        await switch.idle()
        started = [e for e in rec.events if isinstance(e, EavesdropStarted)]
        assert [e.mode for e in started] == list(expected)
        assert all(e.target_channel_id == agent for e in started)

        # On hold the customer hears nobody, the barging supervisor included.
        await switch.hold(customer)
        assert not switch.hears(customer, "sup") and not switch.hears("sup", customer)
        assert switch.hears("sup", agent) and switch.hears(agent, "sup")
        await switch.unhold(customer)

        # The call ends: the supervisor's eavesdrop ends, and so does its leg.
        await switch.hangup(customer)
        await rec.wait_for(ChannelHungUp, "sup")

    run(scenario)


# ------------------------------------------------------------------------- transfers
def test_blind_transfer_to_another_agent() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        switch.set_party(AGENT_B.address, Party(answer_after=2.0))
        # The customer leg carries the call's tags, as the production dialplan sets them.
        tags = {VAR_TENANT: "t1", VAR_CALL_REF: "call-1"}
        customer, agent_a = await connected_call(switch, rec, customer_vars=tags)
        await switch.transfer(customer, AGENT_B)
        await switch.idle()
        assert rec.of(agent_a)[-2:] == ["ChannelUnbridged", "ChannelHungUp"]
        new_leg = rec.last(ChannelCreated)
        assert new_leg.destination_number == AGENT_B.address
        assert new_leg.variables[VAR_CALL_REF] == "call-1"
        assert new_leg.variables[VAR_TENANT] == "t1"
        await rec.wait_for(ChannelBridged, new_leg.channel_id)
        assert rec.last(ChannelBridged, customer).other_channel_id == new_leg.channel_id
        assert switch.hears(customer, new_leg.channel_id)
        assert {c.channel_id for c in await switch.channels()} == {customer, new_leg.channel_id}

    run(scenario)


def test_blind_transfer_to_an_external_mobile_keeps_a_parked_agent() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        switch.set_party(MOBILE.address, Party(answer_after=1.0, hang_up_after=3.0))
        customer, agent = await connected_call(switch, rec, agent_vars=PARK)
        await switch.transfer(customer, MOBILE)
        await switch.idle()
        mobile = rec.last(ChannelCreated)
        assert mobile.destination_number == MOBILE.address
        await rec.wait_for(ChannelBridged, mobile.channel_id)
        assert [c.bridged_to for c in await switch.channels() if c.channel_id == agent] == [None]
        # The mobile party hangs up after talking: the customer goes with it.
        await rec.wait_for(ChannelHungUp, customer)
        assert rec.last(ChannelHungUp, mobile.channel_id).cause == "NORMAL_CLEARING"

    run(scenario)


def test_a_blind_transfer_nobody_answers_ends_the_transferred_call() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        switch.set_party(MOBILE.address, Party(answer_after=None))
        customer, _agent = await connected_call(switch, rec)
        await switch.transfer(customer, MOBILE)
        assert (await rec.wait_for(ChannelHungUp, customer)).cause == "NO_ANSWER"
        assert await switch.channels() == []

    run(scenario, originate_timeout=3.0)


def test_attended_transfer_built_from_hold_originate_and_bridge() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        # The agent leg parks after bridge (set when it was originated): it survives the
        # consult leg moving to the customer, and goes to wrap-up.
        customer, agent = await connected_call(switch, rec, agent_vars=PARK)
        await switch.hold(customer)
        await switch.originate("consult", AGENT_B, "1", {**AGENT_VARS, VAR_ROLE: "consult"})
        await rec.wait_for(ChannelAnswered, "consult")
        await switch.bridge(agent, "consult")  # the held customer stays, parked on hold
        assert switch.hears(agent, "consult") and switch.hears("consult", agent)
        assert not switch.hears(customer, agent) and not switch.hears(customer, "consult")
        states = {c.channel_id: c for c in await switch.channels()}
        assert states[customer].held and states[customer].bridged_to is None

        await switch.bridge(customer, "consult")
        await switch.unhold(customer)
        await switch.idle()
        assert switch.hears(customer, "consult") and switch.hears("consult", customer)
        assert not switch.hears(agent, "consult") and not switch.hears(customer, agent)
        states = {c.channel_id: c for c in await switch.channels()}
        assert states[agent].bridged_to is None and not states[customer].held
        assert "ChannelHungUp" not in rec.of(agent) + rec.of(customer)
        await switch.hangup(agent)  # wrap-up done
        await switch.idle()
        assert set(states) - {agent} == {c.channel_id for c in await switch.channels()}

    run(scenario)


# ------------------------------------------------------------------- media and digits
def test_recording_writes_a_wav_as_long_as_the_recording(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "call-1.wav"

    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        customer, agent = await connected_call(switch, rec)
        await switch.record_start(customer, str(path))
        with pytest.raises(SwitchError):
            await switch.record_start(customer, str(path))
        began = switch.now()
        await asyncio.sleep(0.3)  # 1.5 switch seconds
        await switch.record_stop(customer, str(path))
        took = switch.now() - began
        with pytest.raises(SwitchError):
            await switch.record_stop(customer, str(path))
        await switch.idle()
        assert rec.last(RecordingStarted, customer).path == str(path)
        stopped = rec.last(RecordingStopped, customer)
        with wave.open(str(path), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
            seconds = wav.getnframes() / wav.getframerate()
        assert seconds == pytest.approx(took, abs=0.2)
        assert seconds == pytest.approx(1.5, abs=0.2)
        assert stopped.seconds == pytest.approx(seconds, abs=0.001)
        assert stopped.size == path.stat().st_size > 44

        # A recording still running when the call ends is stopped before the hangup.
        second = tmp_path / "second.wav"
        await switch.record_start(agent, str(second))
        await sim(switch, 1.0)
        await switch.hangup(customer)
        await switch.idle()
        assert rec.of(agent)[-2:] == ["RecordingStopped", "ChannelHungUp"]
        assert rec.last(RecordingStopped, agent).seconds == pytest.approx(1.0, abs=0.2)

    run(scenario, speed=5.0)


def test_play_and_collect_digits_from_a_simulated_caller() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        caller = switch.place_inbound_call("+1", "+1800", party=Party(digits="24321#"))
        with pytest.raises(SwitchError):
            await switch.play(caller, "welcome")  # not answered
        await switch.answer(caller)
        await switch.play(caller, "welcome")
        await switch.collect_digits(caller, "menu", 1, 1, 5.0)
        await rec.wait_for(DigitsCollected, caller)
        await switch.collect_digits(caller, "account", 3, 8, 5.0)
        await sim(switch, 5.0)
        await switch.idle()
        assert [e.digits for e in rec.events if isinstance(e, DigitsCollected)] == ["2", "4321"]
        assert [e.digit for e in rec.events if isinstance(e, DtmfReceived)] == list("24321#")
        assert rec.of(caller)[2] == "PlaybackFinished"  # the prompts queue in order
        assert rec.last(PlaybackFinished, caller).prompt == "welcome"

        # Nothing left to press: the next prompt times out with "".
        began = switch.now()
        await switch.collect_digits(caller, "again", 1, 4, 2.0)
        await sim(switch, 4.0)
        assert rec.last(DigitsCollected, caller).digits == ""
        assert len([e for e in rec.events if isinstance(e, DigitsCollected)]) == 3
        assert switch.now() - began >= 3.0  # prompt (1 s) then the 2 s timeout

    run(scenario)


def test_collect_digits_with_keys_pressed_by_hand() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        caller = switch.place_inbound_call("+1", "+1800")
        await switch.answer(caller)
        with pytest.raises(SwitchError):
            await switch.collect_digits(caller, "bad", 3, 2, 1.0)
        await switch.collect_digits(caller, "pin", 2, 4, 3.0)
        with pytest.raises(SwitchError):
            await switch.collect_digits(caller, "again", 1, 1, 1.0)
        switch.dtmf(caller, "7")  # cuts the prompt short
        switch.dtmf(caller, "8")
        await sim(switch, 4.0)
        assert rec.last(DigitsCollected, caller).digits == "78"  # timed out with enough

        await switch.collect_digits(caller, "pin", 2, 4, 3.0)
        switch.dtmf(caller, "1")
        switch.dtmf(caller, "#")  # too few digits: invalid
        await switch.idle()
        assert rec.last(DigitsCollected, caller).digits == ""
        with pytest.raises(SwitchError):
            switch.dtmf(caller, "x")
        switch.dtmf(caller, "5")  # no collect running: only the DTMF event
        await switch.idle()
        assert rec.last(DtmfReceived, caller).digit == "5"

    run(scenario)


# ----------------------------------------------------------------------------- scale
def test_five_hundred_calls_are_bridged_at_once() -> None:
    calls = 500

    async def main() -> None:
        switch = BuiltinSwitch(speed=50.0, default_party=Party(answer_after=2.0))
        rec = Recorder()
        bridged: set[str] = set()
        peak = 0

        async def controller(event: AnySwitchEvent) -> None:
            # The bridge's part, minimally: answer the caller, ring an agent, bridge.
            nonlocal peak
            await rec(event)
            if isinstance(event, ChannelCreated) and event.direction == "inbound":
                await switch.answer(event.channel_id)
                dial = Dial(kind=EndpointKind.WEBRTC, address=f"webrtc:agent-{event.channel_id}")
                leg = f"agent-{event.channel_id}"
                await switch.originate(leg, dial, event.destination_number, {})
            elif isinstance(event, ChannelAnswered) and event.channel_id.startswith("agent-"):
                await switch.bridge(event.channel_id.removeprefix("agent-"), event.channel_id)
            elif isinstance(event, ChannelBridged):
                bridged.add(event.channel_id)
                peak = max(peak, len(bridged))
            elif isinstance(event, ChannelUnbridged):
                bridged.discard(event.channel_id)

        await switch.start(controller)
        began = time.monotonic()
        deadline = began + 5.0
        for i in range(calls):
            switch.place_inbound_call(
                f"+1555{i:07d}", "+18005550100", party=Party(hang_up_after=20.0), channel_id=f"c{i}"
            )
        while len(bridged) < 2 * calls and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        states = await switch.channels()
        assert len(states) == 2 * calls
        assert all(s.answered and s.bridged_to is not None for s in states)
        assert all(switch.hears(f"c{i}", f"agent-c{i}") for i in range(calls))
        assert peak == 2 * calls
        while await switch.channels() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await switch.idle()
        assert await switch.channels() == []
        assert sum(isinstance(e, ChannelHungUp) for e in rec.events) == 2 * calls
        assert time.monotonic() - began < 5.0
        await switch.close()

    asyncio.run(main())


# ------------------------------------------------------------------------------ conference
def test_a_conference_lets_everyone_hear_everyone_and_ends_with_its_last_but_one() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        customer, agent = await connected_call(switch, rec)
        await switch.originate("consult", MOBILE, "+18005550100", AGENT_VARS)
        await rec.wait_for(ChannelAnswered, "consult")
        with pytest.raises(SwitchError):  # a held channel does not join
            await switch.hold(customer)
            await switch.conference("room-1", [customer, agent, "consult"])
        await switch.unhold(customer)
        await switch.conference("room-1", [customer, agent, "consult"])
        await switch.idle()
        assert [rec.last(ConferenceJoined, c).room for c in (customer, agent, "consult")] == [
            "room-1"
        ] * 3
        people = [customer, agent, "consult"]
        assert all(switch.hears(a, b) for a in people for b in people if a != b)
        await switch.mute("consult")
        assert not switch.hears(customer, "consult") and switch.hears("consult", customer)
        await switch.unmute("consult")
        # The agent leaves: the other two talk on; then one of them leaves, and the last
        # one, alone, is hung up like a channel whose bridge ended.
        await switch.hangup(agent)
        await switch.idle()
        assert switch.hears(customer, "consult")
        await switch.hangup("consult")
        await switch.idle()
        assert rec.last(ChannelHungUp, customer).cause == "NORMAL_CLEARING"

    run(scenario)


def test_a_conference_of_two_of_three_leaves_the_third_to_the_after_bridge_rule() -> None:
    async def scenario(switch: BuiltinSwitch, rec: Recorder) -> None:
        customer, agent = await connected_call(switch, rec)
        other = switch.place_inbound_call("+15550000002", "+18005550100")
        await switch.answer(other)
        await switch.conference("room-2", [customer, other])
        await switch.idle()
        # The agent's bridge ended because its peer moved away: hung up (no park).
        assert rec.last(ChannelHungUp, agent) is not None
        assert switch.hears(customer, other)

    run(scenario)
