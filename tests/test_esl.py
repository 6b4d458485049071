"""The ESL client and the FreeSWITCH driver against `EslPeer` (real framing over TCP)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from eslpeer import EslPeer

from telephony_bridge.driver import (
    AnySwitchEvent,
    ChannelAnswered,
    ChannelBridged,
    ChannelCreated,
    ChannelHeld,
    ChannelHungUp,
    ChannelMuted,
    ChannelResumed,
    ChannelUnbridged,
    ChannelUnmuted,
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
from telephony_bridge.esl import EslAuthError, EslClient, decode_event, read_frame
from telephony_bridge.freeswitch import FreeSwitchDriver, check_reply, event_id

T = TypeVar("T")
E = TypeVar("E", bound=AnySwitchEvent)
VARS = {"cloudcc_tenant": "t1", "cloudcc_call_ref": "c-1"}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 15))


async def wait_until(pred: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class Recorder:
    def __init__(self) -> None:
        self.events: list[AnySwitchEvent] = []

    async def __call__(self, event: AnySwitchEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[E], channel: str | None = None) -> list[E]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (channel is None or e.channel_id == channel)
        ]

    async def one(self, kind: type[E], channel: str | None = None) -> E:
        await wait_until(lambda: self.of(kind, channel))
        return self.of(kind, channel)[0]


async def with_driver(
    body: Callable[[EslPeer, FreeSwitchDriver, Recorder], Awaitable[None]], **peer_kw: Any
) -> None:
    async with EslPeer(**peer_kw) as peer:
        driver = FreeSwitchDriver(peer.host, peer.port, "ClueCon", gateway="trunk1")
        rec = Recorder()
        await driver.start(rec)
        try:
            await body(peer, driver, rec)
        finally:
            await driver.close()


def sent(peer: EslPeer, prefix: str) -> list[str]:
    return [c for c in peer.commands if c.startswith(prefix)]


# ---------------------------------------------------------------- codec
def test_frame_body_split_across_reads_and_plain_event_decoding() -> None:
    inner = (
        b"Event-Name: CHANNEL_CREATE\n"
        b"Unique-ID: abc\n"
        b"Caller-Caller-ID-Name: Jane%20Doe%20%26%20Co\n"
        b"variable_cloudcc_tenant: t%3A1\n"
        b"Content-Length: 5\n\nhello"
    )
    wire = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(inner) + inner
    wire += b"Content-Type: api/response\nContent-Length: 4\n\n+OK\n"

    async def main() -> None:
        reader = asyncio.StreamReader()

        async def feed() -> None:
            for i in range(0, len(wire), 7):  # headers and body both cut mid-way
                reader.feed_data(wire[i : i + 7])
                await asyncio.sleep(0)
            reader.feed_eof()

        feeder = asyncio.create_task(feed())
        first = await read_frame(reader)
        second = await read_frame(reader)
        assert await read_frame(reader) is None
        await feeder
        assert first is not None and second is not None
        assert first.content_type == "text/event-plain"
        event = decode_event(first)
        assert event["Caller-Caller-ID-Name"] == "Jane Doe & Co"
        assert event["variable_cloudcc_tenant"] == "t:1"
        assert event["_body"] == "hello"
        assert second.body == b"+OK\n"

    run(main())


def test_check_reply_maps_errors() -> None:
    assert check_reply("+OK Success\n") == "+OK Success"
    with pytest.raises(NoSuchChannel):
        check_reply("-ERR No such channel!\n")
    with pytest.raises(NoSuchChannel):
        check_reply("-ERR invalid session id [x]")
    with pytest.raises(SwitchError) as info:
        check_reply("-ERR Operation failed\n")
    assert not isinstance(info.value, NoSuchChannel)
    assert str(info.value) == "Operation failed"


# ---------------------------------------------------------------- client
def test_auth_api_bgapi_and_plain_events() -> None:
    async def main() -> None:
        async with EslPeer() as peer:
            got: list[dict[str, Any]] = []
            client = EslClient(peer.host, peer.port, "ClueCon", on_event=got.append)
            await client.connect()
            assert peer.commands[0] == "auth ClueCon"
            assert (await client.api("status")).startswith("UP ")
            assert (await client.bgapi("status")).startswith("UP ")
            bg = sent(peer, "bgapi status")[0].split("\n")
            assert bg[1].startswith("Job-UUID: ")
            await client.subscribe(["CHANNEL_CREATE"], format="plain")
            assert peer.commands[-1] == "event plain BACKGROUND_JOB CHANNEL_CREATE"
            uid = peer.inject_inbound("+15551234", "8000", {"cloudcc_hotline": "sales & support"})
            await wait_until(lambda: any(e.get("Event-Name") == "CHANNEL_CREATE" for e in got))
            create = [e for e in got if e.get("Event-Name") == "CHANNEL_CREATE"][0]
            assert create["Unique-ID"] == uid
            assert create["variable_cloudcc_hotline"] == "sales & support"
            await client.close()

    run(main())


def test_auth_failure_is_a_clear_error() -> None:
    async def main() -> None:
        async with EslPeer(password="secret") as peer:
            client = EslClient(peer.host, peer.port, "wrong")
            with pytest.raises(EslAuthError, match="refused the event socket password"):
                await client.connect()

    run(main())


def test_malformed_frames_are_skipped_or_reconnected(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with EslPeer() as peer:
            client = EslClient(peer.host, peer.port, "ClueCon")
            await client.connect()
            await client.subscribe(["CHANNEL_CREATE"])
            # A well-framed event with an unreadable body: logged, skipped, same connection.
            peer.send_raw(b"Content-Length: 9\nContent-Type: text/event-json\n\n{not json")
            peer.send_raw(b"Content-Type: text/mystery\n\n")
            assert (await client.api("status")).startswith("UP")
            assert client.reconnects == 0
            assert "skipping malformed text/event-json event" in caplog.text
            # Broken framing cannot be skipped (where would the next frame start?): the client
            # drops the connection and reconnects, and keeps working.
            peer.send_raw(b"Content-Length: lots\n\n")
            await wait_until(lambda: client.reconnects == 1)
            assert (await client.api("status")).startswith("UP")
            await client.close()

    with caplog.at_level(logging.INFO):
        run(main())


def test_drop_fails_pending_commands_then_reconnects_and_resubscribes() -> None:
    async def main() -> None:
        async with EslPeer(answer_delay=None) as peer:
            reconnected = asyncio.Event()

            async def hook() -> None:
                reconnected.set()

            client = EslClient(peer.host, peer.port, "ClueCon", on_reconnect=hook)
            await client.connect()
            await client.subscribe(["CHANNEL_CREATE"])
            # A plain api originate blocks until answer: a command pending at the drop.
            pending = asyncio.create_task(client.api("originate user/1001 &park()"))
            await wait_until(lambda: peer.channels)
            peer.drop_connections()
            with pytest.raises(SwitchUnavailable):
                await pending
            with pytest.raises(SwitchUnavailable):
                await client.api("status")
            await asyncio.wait_for(reconnected.wait(), 3)
            assert peer.commands[-1] == "event json BACKGROUND_JOB CHANNEL_CREATE"
            assert sent(peer, "auth ClueCon") == ["auth ClueCon"] * 2
            assert (await client.api("status")).startswith("UP")
            await client.close()

    run(main())


# ---------------------------------------------------------------- driver
def test_driver_call_flow_commands_and_events() -> None:
    async def body(peer: EslPeer, driver: FreeSwitchDriver, rec: Recorder) -> None:
        customer = peer.inject_inbound("+15550001", "8000", {"cloudcc_hotline": "h1"})
        created = await rec.one(ChannelCreated, customer)
        assert (created.direction, created.caller_number, created.destination_number) == (
            "inbound",
            "+15550001",
            "8000",
        )
        assert created.variables == {"cloudcc_hotline": "h1"}
        header = next(e for e in peer.emitted if e["Event-UUID"] == created.event_id)
        micros = int(header["Event-Date-Timestamp"])
        assert created.at == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)

        await driver.answer(customer)
        await rec.one(ChannelAnswered, customer)

        agent = "11111111-1111-4111-8111-111111111111"
        agent_vars = VARS | {"cloudcc_agent_id": "a1", "cloudcc_role": "agent"}
        await driver.originate(
            agent, Dial(kind=EndpointKind.SIP_PHONE, address="1001"), "+15550001", agent_vars
        )
        leg = await rec.one(ChannelCreated, agent)
        assert leg.direction == "outbound" and leg.variables == agent_vars
        await rec.one(ChannelAnswered, agent)
        assert sent(peer, "bgapi originate ")[0].split("\n")[0] == (
            "bgapi originate {origination_uuid=" + agent + ",origination_caller_id_number="
            "+15550001,park_after_bridge=true,cloudcc_tenant=t1,cloudcc_call_ref=c-1,"
            "cloudcc_agent_id=a1,cloudcc_role=agent}user/1001 &park()"
        )

        await driver.bridge(customer, agent)
        bridged = await rec.one(ChannelBridged, customer)
        assert bridged.other_channel_id == agent

        await driver.hold(customer)
        await rec.one(ChannelHeld, customer)
        await driver.unhold(customer)
        await rec.one(ChannelResumed, customer)
        assert sent(peer, "api uuid_hold") == [
            f"api uuid_hold {customer}",
            f"api uuid_hold off {customer}",
        ]

        await driver.mute(agent)
        muted = await rec.one(ChannelMuted, agent)
        await driver.unmute(agent)
        unmuted = await rec.one(ChannelUnmuted, agent)
        assert sent(peer, "api uuid_audio") == [
            f"api uuid_audio {agent} start read mute 1",
            f"api uuid_audio {agent} stop",
        ]
        # No ESL event for uuid_audio: ids chain from the channel's last reported event.
        answered_agent = rec.of(ChannelAnswered, agent)[0]
        assert muted.event_id == event_id(f"{answered_agent.event_id}|muted|{agent}")
        assert unmuted.event_id == event_id(f"{muted.event_id}|unmuted|{agent}")

        await driver.record_start(customer, "/rec/c-1.wav")
        assert (await rec.one(RecordingStarted, customer)).path == "/rec/c-1.wav"
        await driver.record_stop(customer, "/rec/c-1.wav")
        stopped = await rec.one(RecordingStopped, customer)
        assert stopped.path == "/rec/c-1.wav" and stopped.seconds >= 0 and stopped.size == 0

        peer.inject_dtmf(customer, "5")
        assert (await rec.one(DtmfReceived, customer)).digit == "5"

        await driver.play(customer, "/prompts/welcome.wav")
        assert (await rec.one(PlaybackFinished, customer)).prompt == "/prompts/welcome.wav"
        assert sent(peer, "api uuid_broadcast") == [
            f"api uuid_broadcast {customer} /prompts/welcome.wav aleg"
        ]

        await driver.collect_digits(customer, "/prompts/pin.wav", 4, 6, 5.0)
        assert (await rec.one(DigitsCollected, customer)).digits == "1234"
        assert sent(peer, f"sendmsg {customer}")[0] == "\n".join(
            [
                f"sendmsg {customer}",
                "call-command: execute",
                "execute-app-name: play_and_get_digits",
                "execute-app-arg: 4 6 1 5000 # /prompts/pin.wav silence_stream://250 "
                "collected_digits \\d+",
                "event-lock: true",
            ]
        )

        sup = "22222222-2222-4222-8222-222222222222"
        await driver.originate(
            sup, Dial(kind=EndpointKind.WEBRTC, address="webrtc:sup-1"), "8000", VARS
        )
        await rec.one(ChannelAnswered, sup)
        assert sent(peer, "bgapi originate ")[1].split("\n")[0].endswith("}user/sup-1 &park()")
        await driver.eavesdrop(sup, customer, SupervisionMode.LISTEN)
        started = await rec.one(EavesdropStarted, sup)
        assert (started.target_channel_id, started.mode) == (customer, SupervisionMode.LISTEN)
        await driver.eavesdrop(sup, customer, SupervisionMode.WHISPER)
        await wait_until(lambda: len(rec.of(EavesdropStarted, sup)) == 2)
        await driver.eavesdrop(sup, customer, SupervisionMode.BARGE)
        assert [m.split("\n")[2] for m in sent(peer, f"sendmsg {sup}")] == [
            "execute-app-name: set",
            "execute-app-name: eavesdrop",
        ]
        assert peer.channels[sup].eavesdrop_target == customer
        assert peer.channels[sup].variables["eavesdrop_enable_dtmf"] == "true"
        # 1 = "speak with the other half" (the agent): whisper when the target is the customer
        assert peer.channels[sup].dtmf_sent == ["0", "1", "3"]

        await driver.transfer(customer, Dial(kind=EndpointKind.EXTERNAL, address="+15559999"))
        assert sent(peer, "api uuid_transfer") == [
            f"api uuid_transfer {customer} m:^:bridge:{{cloudcc_hotline=h1}}"
            "sofia/gateway/trunk1/+15559999 inline"
        ]
        unbridged = await rec.one(ChannelUnbridged, customer)
        assert unbridged.other_channel_id == agent
        await wait_until(lambda: len(rec.of(ChannelBridged, customer)) == 2)
        new_leg = rec.of(ChannelBridged, customer)[1].other_channel_id
        assert rec.of(ChannelCreated, new_leg)[0].destination_number == "+15559999"

        await driver.hangup(agent, "USER_BUSY")
        assert (await rec.one(ChannelHungUp, agent)).cause == "USER_BUSY"
        assert sent(peer, "api uuid_kill") == [f"api uuid_kill {agent} USER_BUSY"]

        states = {c.channel_id: c for c in await driver.channels()}
        assert set(states) == {customer, sup, new_leg}
        assert states[customer].answered and states[customer].bridged_to == new_leg
        assert states[customer].variables == {"cloudcc_hotline": "h1"}
        assert states[sup].variables == VARS
        # Every reported id is unique.
        assert len({e.event_id for e in rec.events}) == len(rec.events)

    run(with_driver(body))


def test_no_such_channel_and_the_driver_keeps_working() -> None:
    async def body(peer: EslPeer, driver: FreeSwitchDriver, rec: Recorder) -> None:
        ghost = "33333333-3333-4333-8333-333333333333"
        for call in (
            driver.hold(ghost),
            driver.hangup(ghost),
            driver.bridge(ghost, ghost),
            driver.collect_digits(ghost, "/p.wav", 1, 1, 1),
            driver.eavesdrop(ghost, ghost, SupervisionMode.LISTEN),
        ):
            with pytest.raises(NoSuchChannel):
                await call
        customer = peer.inject_inbound("+1555", "8000")
        await rec.one(ChannelCreated, customer)
        await driver.answer(customer)
        await rec.one(ChannelAnswered, customer)

    run(with_driver(body))


def test_originate_that_never_creates_a_channel_reports_a_hangup() -> None:
    async def body(peer: EslPeer, driver: FreeSwitchDriver, rec: Recorder) -> None:
        peer.unregistered.add("1009")
        leg = "44444444-4444-4444-8444-444444444444"
        await driver.originate(leg, Dial(kind=EndpointKind.IP_PHONE, address="1009"), "1", VARS)
        hung = await rec.one(ChannelHungUp, leg)
        assert hung.cause == "USER_NOT_REGISTERED" and hung.variables == VARS
        assert hung.event_id == event_id(f"{leg}|hangup")

    run(with_driver(body))


def test_dropped_connection_mid_call_loses_and_duplicates_nothing() -> None:
    async def body(peer: EslPeer, driver: FreeSwitchDriver, rec: Recorder) -> None:
        customer = peer.inject_inbound("+15550001", "8000", VARS | {"cloudcc_role": "customer"})
        await rec.one(ChannelCreated, customer)
        await driver.answer(customer)
        agent = "55555555-5555-4555-8555-555555555555"
        await driver.originate(agent, Dial(kind=EndpointKind.SIP_PHONE, address="1001"), "1", VARS)
        await rec.one(ChannelAnswered, agent)
        await driver.bridge(customer, agent)
        await rec.one(ChannelBridged, customer)

        peer.drop_connections()
        peer.hangup(customer, "NORMAL_CLEARING")  # while nobody listens: never delivered
        late = peer.inject_inbound("+15550002", "8000", VARS)  # a call arriving meanwhile
        peer.answer(late)
        await wait_until(lambda: driver.client.reconnects == 1)

        hung = await rec.one(ChannelHungUp, customer)
        assert hung.cause == "NORMAL_CLEARING"
        assert hung.event_id == event_id(f"{customer}|hangup")
        assert hung.variables["cloudcc_call_ref"] == "c-1"
        unbridged = await rec.one(ChannelUnbridged, agent)
        assert unbridged.other_channel_id == customer
        assert (await rec.one(ChannelCreated, late)).event_id == event_id(f"{late}|create")
        await rec.one(ChannelAnswered, late)

        # Events after the reconnect flow again, and another drop + resync adds nothing.
        await driver.hold(agent)
        await rec.one(ChannelHeld, agent)
        before = list(rec.events)
        peer.drop_connections()
        await wait_until(lambda: driver.client.reconnects == 2)
        await driver.unhold(agent)
        await rec.one(ChannelResumed, agent)
        assert rec.events[: len(before)] == before
        assert [type(e) for e in rec.events[len(before) :]] == [ChannelResumed]
        assert len(rec.of(ChannelHungUp, customer)) == 1
        peer.hangup(agent, "NORMAL_CLEARING")
        await rec.one(ChannelHungUp, agent)
        assert len({e.event_id for e in rec.events}) == len(rec.events)

    run(with_driver(body))


def test_resync_replayed_from_the_same_history_gives_the_same_ids() -> None:
    # Two drivers that saw the same events and then the same snapshot report the same
    # synthesized events, ids included: the facts made from them deduplicate.
    async def main() -> list[list[tuple[str, str]]]:
        results = []
        create = {
            "Event-Name": "CHANNEL_CREATE",
            "Event-UUID": "e-1",
            "Event-Date-Timestamp": "1700000000000000",
            "Unique-ID": "ch-1",
            "Call-Direction": "inbound",
            "Caller-Caller-ID-Number": "+1",
            "Caller-Destination-Number": "8000",
            "variable_cloudcc_tenant": "t1",
        }
        answer = create | {"Event-Name": "CHANNEL_ANSWER", "Event-UUID": "e-2"}
        for _ in range(2):
            driver = FreeSwitchDriver("127.0.0.1", 1, "x")
            out: list[AnySwitchEvent] = []
            for h in (create, answer):
                out += driver._translate(json.loads(json.dumps(h)))
            out += driver._resync([], silent=False)
            out += driver._resync([], silent=False)
            results.append([(type(e).__name__, e.event_id) for e in out])
        return results

    first, second = run(main())
    assert first == second
    assert first[-1] == ("ChannelHungUp", event_id("ch-1|hangup"))
    assert len(first) == 3


def test_a_conference_moves_each_leg_and_reports_each_join_and_tags_a_leg() -> None:
    async def body(peer: EslPeer, driver: FreeSwitchDriver, rec: Recorder) -> None:
        customer = peer.inject_inbound("+1555", "8000")
        await rec.one(ChannelCreated, customer)
        await driver.answer(customer)
        await driver.set_variables(customer, {"cloudcc_tenant": "t1", "cloudcc_call_ref": "c-9"})
        assert peer.channels[customer].variables["cloudcc_call_ref"] == "c-9"
        assert sent(peer, "api uuid_setvar ") == [
            f"api uuid_setvar {customer} cloudcc_tenant t1",
            f"api uuid_setvar {customer} cloudcc_call_ref c-9",
        ]
        agent = "66666666-6666-4666-8666-666666666666"
        await driver.originate(agent, Dial(kind=EndpointKind.SIP_PHONE, address="1001"), "1", VARS)
        await rec.one(ChannelAnswered, agent)
        await driver.bridge(customer, agent)
        await driver.conference("c-9", [customer, agent])
        assert sent(peer, "api uuid_transfer") == [
            f"api uuid_transfer {customer} conference:c-9@default inline",
            f"api uuid_transfer {agent} conference:c-9@default inline",
        ]
        joined = [await rec.one(ConferenceJoined, c) for c in (customer, agent)]
        assert [j.room for j in joined] == ["c-9", "c-9"]
        assert joined[0].variables.get("cloudcc_call_ref") == "c-9"
        with pytest.raises(NoSuchChannel):
            await driver.conference("c-9", ["77777777-7777-4777-8777-777777777777"])

    run(with_driver(body))


def test_whisper_to_an_agent_leg_speaks_with_the_eavesdropped_leg_itself() -> None:
    async def body(peer: EslPeer, driver: FreeSwitchDriver, rec: Recorder) -> None:
        agent = "88888888-8888-4888-8888-888888888888"
        sup = "99999999-9999-4999-8999-999999999999"
        await driver.originate(
            agent,
            Dial(kind=EndpointKind.SIP_PHONE, address="1001"),
            "1",
            VARS | {"cloudcc_role": "agent"},
        )
        await driver.originate(sup, Dial(kind=EndpointKind.SIP_PHONE, address="1900"), "1", VARS)
        await rec.one(ChannelAnswered, agent)
        await rec.one(ChannelAnswered, sup)
        await driver.eavesdrop(sup, agent, SupervisionMode.WHISPER)
        # mod_dptools eavesdrop: 2 = "speak with the uuid" — here the agent, and only them.
        assert peer.channels[sup].dtmf_sent == ["2"]

    run(with_driver(body))


def test_a_call_created_while_the_resync_snapshot_is_taken_is_not_hung_up() -> None:
    async def body(peer: EslPeer, driver: FreeSwitchDriver, rec: Recorder) -> None:
        peer.snapshot_delay = 0.3
        peer.drop_connections()
        await wait_until(lambda: driver.client.reconnects == 1)
        # Reconnected: the snapshot is being answered; a caller arrives meanwhile.
        late = peer.inject_inbound("+15550003", "8000", VARS)
        await rec.one(ChannelCreated, late)
        await asyncio.sleep(0.5)  # the snapshot, without `late`, has been compared
        assert rec.of(ChannelHungUp, late) == []
        peer.snapshot_delay = 0.0
        peer.hangup(late, "NORMAL_CLEARING")
        hung = await rec.one(ChannelHungUp, late)
        assert hung.cause == "NORMAL_CLEARING" and len(rec.of(ChannelHungUp, late)) == 1

    run(with_driver(body))


def test_a_reply_that_never_comes_fails_the_command_and_the_connection_is_made_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from telephony_bridge import esl

    monkeypatch.setattr(esl, "REPLY_TIMEOUT", 0.3)

    async def body(peer: EslPeer, driver: FreeSwitchDriver, rec: Recorder) -> None:
        customer = peer.inject_inbound("+1555", "8000")
        await rec.one(ChannelCreated, customer)
        peer.stalled = True
        with pytest.raises(SwitchUnavailable, match="did not answer"):
            await driver.answer(customer)
        peer.stalled = False
        await wait_until(lambda: driver.client.reconnects == 1)
        await driver.answer(customer)  # in step again: replies match their commands
        await rec.one(ChannelAnswered, customer)

    run(with_driver(body))
