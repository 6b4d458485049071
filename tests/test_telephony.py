"""The telephony bridge end to end, in a running `cloudcc up` with the built-in switch:
a caller dials a hotline (switch panel) → the bridge answers and walks the IVR → the call
queues → routing rings an agent (RingAgent → the switch) → the agent answers and is
bridged → hold, recording, hang-up as commands → every step back as facts → the call's
events and the call log read model. Also: a missed call, a command for a call that is
gone, a malformed command."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
from helpers import api_headers, panel, running_instance, wait_for

from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.calendars import BusinessCalendar, OpeningHours, Weekday
from domain.calls import Call
from domain.campaigns import Window
from domain.ivr import Node, NodeKind
from domain.vocabulary import Channel, EndpointKind, Package, RoutingPolicy
from telephony_bridge import commands

ROOT = Path(__file__).parent.parent
ALWAYS = BusinessCalendar(
    time_zone="Asia/Ho_Chi_Minh",
    hours=tuple(OpeningHours(day=d, start=clock(0), end=clock(0)) for d in Weekday),
)
TENANT = "phoneco"
HOTLINE = "+842873009999"
SECOND_HOTLINE = "+842873008888"
MOBILE_AGENT = "+84977000222"


@pytest.fixture(scope="module")
def instance(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("telephony")
    with running_instance(data, nats_url, free_port(), CLOUDCC_WRAP_UP_SECONDS="0"):
        yield data


@pytest.fixture(scope="module")
def apps(nats_url: str) -> Iterator[DomainApps]:
    built = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    yield built
    built.close()


@pytest.fixture(scope="module")
def center(apps: DomainApps, instance: Path) -> dict[str, Any]:
    """Tenant `phoneco`: a hotline into an IVR menu (1: support queue, skill `vn`), two
    agents on SIP phones 2001 (has the skill) and 2002 (does not)."""
    apps.tenants.register(TENANT, "Phone Co", Package.CALL_CENTER, [HOTLINE, SECOND_HOTLINE])
    apps.tenants.define_calendar(TENANT, "always", ALWAYS)
    queue = apps.queues.create(
        TENANT, "Support", policy=RoutingPolicy.SKILL, required_skills={"vn": 1}
    )
    apps.queues.set_waiting_rules(TENANT, queue, ring_timeout_seconds=20, max_wait_seconds=600)
    flow = apps.ivr.draft(TENANT, "Main")
    apps.ivr.set_node(TENANT, flow, Node("hello", NodeKind.PLAYBACK, prompt="Welcome", next="menu"))
    # Key 2: the VIP line, recorded by policy (AX10), taken by an agent on a mobile (AX6).
    vip = apps.queues.create(TENANT, "VIP", policy=RoutingPolicy.SKILL, required_skills={"vip": 1})
    apps.queues.set_recording_policy(TENANT, vip, True)
    apps.ivr.set_node(
        TENANT,
        flow,
        Node("menu", NodeKind.MENU, prompt="Press 1 for support", choices={"1": "q", "2": "v"}),
    )
    apps.ivr.set_node(TENANT, flow, Node("q", NodeKind.QUEUE, queue_id=queue))
    apps.ivr.set_node(TENANT, flow, Node("v", NodeKind.QUEUE, queue_id=vip))
    apps.ivr.set_entry(TENANT, flow, "hello")
    apps.ivr.publish(TENANT, flow)
    apps.tenants.route_hotline(TENANT, HOTLINE, "ivr", flow)
    agents = {}
    for login, ext, skilled in (("an", "2001", True), ("binh", "2002", False)):
        aid = apps.agents.create_user(
            TENANT, login.title(), login, "agent", package=Package.CALL_CENTER
        )
        apps.agents.set_extension(TENANT, aid, ext)
        apps.agents.add_endpoint(TENANT, aid, EndpointKind.SIP_PHONE, ext)
        if skilled:
            apps.agents.set_skill(TENANT, aid, "vn", 3)
        apps.agents.go_available(TENANT, aid)
        agents[login] = aid
    # A supervisor, who takes no queue calls but listens in from desk phone 2900.
    chi = apps.agents.create_user(TENANT, "Chi", "chi", "supervisor", package=Package.CALL_CENTER)
    apps.agents.add_endpoint(TENANT, chi, EndpointKind.SIP_PHONE, "2900")
    dung = apps.agents.create_user(TENANT, "Dung", "dung", "agent", package=Package.CALL_CENTER)
    apps.agents.add_endpoint(TENANT, dung, EndpointKind.MOBILE, MOBILE_AGENT)
    apps.agents.set_skill(TENANT, dung, "vip", 1)
    apps.agents.go_available(TENANT, dung)
    agents["dung"] = dung
    return {"queue": queue, "vip": vip, "flow": flow, "agents": agents, "supervisor": chi}


async def send(nats_url: str, *sent: commands.Command | tuple[str, bytes]) -> None:
    nc = await nats.connect(nats_url)
    try:
        for command in sent:
            if isinstance(command, tuple):
                await nc.publish(*command)
            else:
                await nc.publish(commands.subject(TENANT, command), commands.encode(command))
        await nc.flush()
    finally:
        await nc.close()


def hang_up(nats_url: str, apps: DomainApps, ref: str) -> None:
    """End the call through the bridge (HangUpCall) and wait for the domain to say so."""
    asyncio.run(
        send(nats_url, commands.HangUpCall(command_id=cmd_id(), tenant_id=TENANT, call_ref=ref))
    )
    assert wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["ended_at"]))


def cmd_id() -> str:
    return str(uuid.uuid4())


def call_view(apps: DomainApps, ref: str) -> dict[str, Any] | None:
    try:
        return apps.calls.get(TENANT, Call.create_id(TENANT, ref))
    except Exception:  # noqa: BLE001 - not there yet
        return None


def test_an_inbound_call_through_ivr_to_a_skilled_agent_held_recorded_and_ended(
    nats_url: str, apps: DomainApps, center: dict[str, Any], instance: Path
) -> None:
    asyncio.run(panel(nats_url, "party", {"address": "2001", "party": {"answer_after": 0.3}}))
    placed = asyncio.run(
        panel(
            nats_url,
            "call",
            {"caller_number": "0901234567", "hotline": HOTLINE, "party": {"digits": "1"}},
        )
    )
    ref = placed["channel_id"]
    call = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["answered_at"]), 20)
    assert call is not None and call["answered_at"], call
    assert call["customer_number"] == "+84901234567" and call["hotline"] == HOTLINE
    assert [(s["node_id"], s["digits"]) for s in call["ivr_path"]] == [
        ("hello", None),
        ("menu", None),
        ("q", "1"),
    ]
    assert call["queue_id"] == str(center["queue"])
    assert call["agent_ids"] == [str(center["agents"]["an"])]  # the skilled one
    [agent_leg] = [leg for leg in call["legs"] if leg["party"] == "agent"]
    assert agent_leg["endpoint"] == "sip_phone" and agent_leg["address"] == "2001"

    # The switch really bridged them: each hears the other.
    assert hears(nats_url, ref, agent_leg["leg_id"]) and hears(nats_url, agent_leg["leg_id"], ref)

    asyncio.run(
        send(nats_url, commands.HoldCall(command_id=cmd_id(), tenant_id=TENANT, call_ref=ref))
    )
    assert wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["held"]))["held"]  # type: ignore[index]
    on_hold = asyncio.run(
        panel(nats_url, "hears", {"listener": ref, "speaker": agent_leg["leg_id"]})
    )
    assert on_hold["hears"] is False
    asyncio.run(
        send(
            nats_url,
            commands.ResumeCall(command_id=cmd_id(), tenant_id=TENANT, call_ref=ref),
            commands.StartRecording(command_id=cmd_id(), tenant_id=TENANT, call_ref=ref),
        )
    )
    recording_from = time.monotonic()
    started = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["recordings"]))
    assert started is not None and not started["held"] and started["recordings"]
    # The agent mutes their microphone (CC13): the customer stops hearing them.
    mute = commands.MuteLeg(
        command_id=cmd_id(), tenant_id=TENANT, call_ref=ref, leg_id=agent_leg["leg_id"]
    )
    asyncio.run(send(nats_url, mute))

    def agent_muted(c: dict[str, Any] | None) -> bool:
        return bool(c) and any(g["leg_id"] == agent_leg["leg_id"] and g["muted"] for g in c["legs"])  # type: ignore[index]

    assert agent_muted(wait_for(lambda: call_view(apps, ref), agent_muted))
    assert not hears(nats_url, ref, agent_leg["leg_id"])
    assert hears(nats_url, agent_leg["leg_id"], ref)
    unmute = commands.UnmuteLeg(
        command_id=cmd_id(), tenant_id=TENANT, call_ref=ref, leg_id=agent_leg["leg_id"]
    )
    asyncio.run(send(nats_url, unmute))
    assert not agent_muted(wait_for(lambda: call_view(apps, ref), lambda c: not agent_muted(c)))
    time.sleep(0.5)
    asyncio.run(
        send(nats_url, commands.StopRecording(command_id=cmd_id(), tenant_id=TENANT, call_ref=ref))
    )
    recorded_for = time.monotonic() - recording_from
    stored = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["recordings"][0]["uri"]))
    assert stored is not None
    [recording] = stored["recordings"]
    path = Path(recording["uri"])
    assert path.is_file() and path.is_relative_to(instance / "recordings" / TENANT)
    assert path.stat().st_size == recording["size_bytes"] > 44
    # As long as it ran (give or take the commands' way through NATS), and the WAV says so.
    assert abs(recording["duration_seconds"] - recorded_for) < 0.5
    with wave.open(str(path)) as wav:
        assert abs(wav.getnframes() / wav.getframerate() - recording["duration_seconds"]) < 0.05

    asyncio.run(
        send(nats_url, commands.HangUpCall(command_id=cmd_id(), tenant_id=TENANT, call_ref=ref))
    )
    ended = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["ended_at"]))
    assert ended is not None and ended["ended_at"] and not ended["abandoned"]

    # The call log read model (its SQLite file in the instance's data) has it all.
    def logged() -> sqlite3.Row | None:
        db = sqlite3.connect(instance / "readmodels" / "call_log.sqlite")
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM calls WHERE call_ref = ?", (ref,)).fetchone()

    row = wait_for(logged, lambda r: r is not None and r["ended_at"] is not None)
    assert row is not None and row["tenant_id"] == TENANT and row["answered_at"]

    # Through the HTTP API: the call log, the recording found by the customer's number
    # and downloaded (AX16, AX20, AX22), the call's detail record (billing), and nothing
    # of it through another tenant's path.
    api = f"{instance_url(instance)}/api/v1/tenants/{TENANT}"
    key = api_headers(instance_url(instance), nats_url, TENANT)
    with httpx.Client(timeout=10, headers=key) as http:
        calls = http.get(f"{api}/calls", params={"number": "901234567"}).json()["items"]
        assert [c["call_ref"] for c in calls] == [ref]
        found = http.get(f"{api}/recordings", params={"number": "901234567"}).json()["items"]
        assert len(found) == 1 and found[0]["duration_seconds"] == recording["duration_seconds"]
        audio = http.get(f"{instance_url(instance)}{found[0]['download_url']}")
        assert audio.status_code == 200 and audio.headers["content-type"].startswith("audio/")
        assert audio.content == path.read_bytes()
        other = found[0]["download_url"].replace(f"/tenants/{TENANT}/", "/tenants/someone-else/")
        assert http.get(f"{instance_url(instance)}{other}").status_code == 403
        stranger = api_headers(instance_url(instance), nats_url, "someone-else")
        assert http.get(f"{instance_url(instance)}{other}", headers=stranger).status_code == 404
        keyless = httpx.get(f"{instance_url(instance)}{found[0]['download_url']}")
        assert keyless.status_code == 401
        day = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z", "format": "json"}
        cdr = http.get(f"{api}/cdr", params=day).json()
        [record] = [
            r for r in (cdr["items"] if isinstance(cdr, dict) else cdr) if r["call_ref"] == ref
        ]
        assert record["direction"] == "inbound" and record["talk_seconds"] > 0


def instance_url(data: Path) -> str:
    return str(json.loads((data / "cloudcc.json").read_text())["http_url"])


def test_a_caller_who_hangs_up_while_queued_is_a_missed_call(
    nats_url: str, apps: DomainApps, center: dict[str, Any]
) -> None:
    # The skilled agent's phone rings and is never picked up; the caller gives up.
    asyncio.run(panel(nats_url, "party", {"address": "2001", "party": {"answer_after": None}}))
    placed = asyncio.run(
        panel(
            nats_url,
            "call",
            {
                "caller_number": "0907654321",
                "hotline": HOTLINE,
                "party": {"digits": "1", "abandon_after": 4.0},
            },
        )
    )
    ref = placed["channel_id"]
    call = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["ended_at"]), 20)
    assert call is not None and call["ended_at"] and call["abandoned"], call
    assert call["answered_at"] is None and call["queue_id"] == str(center["queue"])


def test_a_command_for_a_gone_call_is_a_clear_error_and_the_bridge_goes_on(
    nats_url: str, apps: DomainApps, center: dict[str, Any]
) -> None:
    gone = commands.HoldCall(command_id=cmd_id(), tenant_id=TENANT, call_ref="no-such-call")

    async def run() -> dict[str, Any]:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            failed = await js.subscribe(f"facts.{TENANT}.telephony", ordered_consumer=True)
            await nc.publish("cmd.phoneco.telephony.holdcall", b"{not json")
            await nc.publish(commands.subject(TENANT, gone), commands.encode(gone))
            await nc.flush()
            # Other failures of this tenant may be in the stream (a RingAgent that lost the
            # race with its caller hanging up, in the test before): find this command's.
            while True:
                fact = dict(msgspec.json.decode((await failed.next_msg(timeout=10)).data))
                if fact.get("command_id") == gone.command_id:
                    return fact
        finally:
            await nc.close()

    fact = asyncio.run(run())
    assert fact["type"] == "TelephonyCommandFailed"
    assert fact["command_id"] == gone.command_id and fact["command"] == "HoldCall"
    assert "no-such-call" in fact["reason"]
    # The bridge still works: another call reaches the queue.
    asyncio.run(panel(nats_url, "party", {"address": "2001", "party": {"answer_after": 0.2}}))
    placed = asyncio.run(
        panel(
            nats_url,
            "call",
            {"caller_number": "0912000111", "hotline": HOTLINE, "party": {"digits": "1"}},
        )
    )
    call = wait_for(
        lambda: call_view(apps, placed["channel_id"]), lambda c: bool(c and c["answered_at"]), 20
    )
    assert call is not None and call["answered_at"]
    asyncio.run(
        send(
            nats_url,
            commands.HangUpCall(
                command_id=cmd_id(), tenant_id=TENANT, call_ref=placed["channel_id"]
            ),
        )
    )
    assert wait_for(
        lambda: call_view(apps, placed["channel_id"]), lambda c: bool(c and c["ended_at"])
    )


def answered_call(nats_url: str, apps: DomainApps, caller: str) -> tuple[str, dict[str, Any]]:
    """A caller through the IVR to agent An (2001), answered: (call ref, An's leg)."""
    asyncio.run(panel(nats_url, "party", {"address": "2001", "party": {"answer_after": 0.2}}))
    placed = asyncio.run(
        panel(
            nats_url,
            "call",
            {"caller_number": caller, "hotline": HOTLINE, "party": {"digits": "1"}},
        )
    )
    ref = placed["channel_id"]
    call = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["answered_at"]), 20)
    assert call is not None and call["answered_at"], call
    [leg] = [leg for leg in call["legs"] if leg["party"] == "agent"]
    return ref, leg


def hears(nats_url: str, listener: str, speaker: str) -> bool:
    return bool(
        asyncio.run(panel(nats_url, "hears", {"listener": listener, "speaker": speaker}))["hears"]
    )


def test_a_blind_transfer_to_another_agent(
    nats_url: str, apps: DomainApps, center: dict[str, Any]
) -> None:
    ref, an = answered_call(nats_url, apps, "0903000001")
    asyncio.run(panel(nats_url, "party", {"address": "2002", "party": {"answer_after": 0.3}}))
    binh = center["agents"]["binh"]
    target = commands.Target(agent_id=binh, endpoint_kind="sip_phone", address="2002")
    asyncio.run(
        send(
            nats_url,
            commands.TransferCall(
                command_id=cmd_id(),
                tenant_id=TENANT,
                call_ref=ref,
                from_leg_id=an["leg_id"],
                to=target,
            ),
        )
    )

    def binh_answered(c: dict[str, Any] | None) -> bool:
        return bool(c) and any(
            leg["user_id"] == str(binh) and leg["answered_at"]
            for leg in c["legs"]  # type: ignore[index]
        )

    call = wait_for(lambda: call_view(apps, ref), binh_answered)
    assert call is not None and binh_answered(call), call
    assert [t["kind"] for t in call["transfers"]] == ["blind"]
    assert not call["ended_at"]
    [binh_leg] = [leg for leg in call["legs"] if leg["user_id"] == str(binh)]
    [an_leg] = [leg for leg in call["legs"] if leg["leg_id"] == an["leg_id"]]
    assert an_leg["ended_at"]
    assert hears(nats_url, ref, binh_leg["leg_id"]) and hears(nats_url, binh_leg["leg_id"], ref)
    hang_up(nats_url, apps, ref)


def test_an_attended_transfer_to_an_outside_mobile(
    nats_url: str, apps: DomainApps, center: dict[str, Any]
) -> None:
    ref, an = answered_call(nats_url, apps, "0903000002")
    mobile = "+84987000111"
    asyncio.run(panel(nats_url, "party", {"address": mobile, "party": {"answer_after": 0.3}}))
    asyncio.run(
        send(
            nats_url,
            commands.ConsultTransfer(
                command_id=cmd_id(),
                tenant_id=TENANT,
                call_ref=ref,
                from_leg_id=an["leg_id"],
                to=commands.Target(address="0987000111"),
            ),
        )
    )

    def consulting(c: dict[str, Any] | None) -> bool:
        return bool(c and c["consulting"] and c["held"]) and any(
            leg["party"] == "external" and leg["answered_at"]
            for leg in c["legs"]  # type: ignore[index]
        )

    call = wait_for(lambda: call_view(apps, ref), consulting)
    assert call is not None and consulting(call), call
    [consult] = [leg for leg in call["legs"] if leg["party"] == "external"]
    assert consult["address"] == mobile
    # The agent talks with the mobile; the held customer hears neither.
    assert hears(nats_url, an["leg_id"], consult["leg_id"])
    assert not hears(nats_url, ref, an["leg_id"])
    asyncio.run(
        send(
            nats_url, commands.CompleteTransfer(command_id=cmd_id(), tenant_id=TENANT, call_ref=ref)
        )
    )
    done = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["transfers"]))
    assert done is not None and [t["kind"] for t in done["transfers"]] == ["attended"]
    done = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and not c["held"]))
    assert done is not None and not done["held"] and not done["ended_at"]
    assert hears(nats_url, ref, consult["leg_id"]) and hears(nats_url, consult["leg_id"], ref)
    hang_up(nats_url, apps, ref)


def test_a_supervisor_listens_whispers_barges_then_hangs_the_call_up(
    nats_url: str, apps: DomainApps, center: dict[str, Any]
) -> None:
    ref, an = answered_call(nats_url, apps, "0903000003")
    chi = center["supervisor"]
    asyncio.run(panel(nats_url, "party", {"address": "2900", "party": {"answer_after": 0.2}}))

    def supervise(mode: str) -> dict[str, Any]:
        asyncio.run(
            send(
                nats_url,
                commands.Supervise(
                    command_id=cmd_id(),
                    tenant_id=TENANT,
                    call_ref=ref,
                    supervisor_id=chi,
                    endpoint_kind="sip_phone",
                    address="2900",
                    mode=mode,
                ),
            )
        )

        def in_mode(c: dict[str, Any] | None) -> bool:
            return bool(c) and any(leg["supervision"] == mode for leg in c["legs"])  # type: ignore[index]

        call = wait_for(lambda: call_view(apps, ref), in_mode)
        assert call is not None and in_mode(call), call
        [sup] = [leg for leg in call["legs"] if leg["party"] == "supervisor"]
        return sup

    sup = supervise("listen")["leg_id"]
    assert hears(nats_url, sup, ref) and hears(nats_url, sup, an["leg_id"])
    assert not hears(nats_url, ref, sup) and not hears(nats_url, an["leg_id"], sup)
    assert supervise("whisper")["leg_id"] == sup
    assert hears(nats_url, an["leg_id"], sup) and not hears(nats_url, ref, sup)
    supervise("barge")
    assert hears(nats_url, an["leg_id"], sup) and hears(nats_url, ref, sup)
    asyncio.run(
        send(
            nats_url,
            commands.HangUpCall(
                command_id=cmd_id(), tenant_id=TENANT, call_ref=ref, supervisor_id=chi
            ),
        )
    )
    ended = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["ended_at"]))
    assert ended is not None and ended["forced_by"] == str(chi)
    channels = asyncio.run(panel(nats_url, "channels", {}))["channels"]
    assert not [c for c in channels if c["variables"].get("cloudcc_call_ref") == ref]


def test_click_to_call_rings_the_agent_then_the_customer_from_a_random_hotline(
    nats_url: str, apps: DomainApps, center: dict[str, Any]
) -> None:
    an = center["agents"]["an"]
    asyncio.run(panel(nats_url, "party", {"address": "2001", "party": {"answer_after": 0.1}}))
    numbers = [f"+8490555{i:04d}" for i in range(16)]
    for number in numbers:
        asyncio.run(panel(nats_url, "party", {"address": number, "party": {"answer_after": 0.2}}))

    async def watch() -> list[dict[str, Any]]:
        nc = await nats.connect(nats_url)
        try:
            sub = await nc.subscribe(f"facts.{TENANT}.call")
            for number in numbers:
                await send(
                    nats_url,
                    commands.Originate(
                        command_id=cmd_id(),
                        tenant_id=TENANT,
                        hotline=None,
                        to_number=number,
                        agent_id=an,
                        agent_endpoint_kind="sip_phone",
                        agent_address="2001",
                    ),
                )
            started: list[dict[str, Any]] = []
            while len(started) < len(numbers):
                fact = msgspec.json.decode((await sub.next_msg(timeout=10)).data)
                if fact["type"] == "CallStarted" and fact["direction"] == "outbound":
                    started.append(fact)
            return started
        finally:
            await nc.close()

    started = asyncio.run(watch())
    assert {f["callee_number"] for f in started} == set(numbers)
    used = {f["hotline"] for f in started}
    assert used <= {HOTLINE, SECOND_HOTLINE} and len(used) == 2  # B2: 2^-15 to fail by chance
    ref = started[0]["call_ref"]
    call = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["answered_at"]), 20)
    assert call is not None and call["direction"] == "outbound" and call["answered_at"]
    assert call["agent_ids"] == [str(an)] and call["customer_number"] in numbers
    for fact in started:
        asyncio.run(
            send(
                nats_url,
                commands.HangUpCall(
                    command_id=cmd_id(), tenant_id=TENANT, call_ref=fact["call_ref"]
                ),
            )
        )


def test_a_campaign_call_is_dialled_by_the_runner_and_reaches_an_agent(
    nats_url: str, apps: DomainApps, center: dict[str, Any], instance: Path
) -> None:
    customer = uuid.uuid4()
    number = "+84906000777"
    asyncio.run(panel(nats_url, "party", {"address": "2001", "party": {"answer_after": 0.2}}))
    asyncio.run(
        panel(nats_url, "party", {"address": number, "party": {"answer_after": 0.3, "digits": "1"}})
    )
    campaigns = apps.campaigns
    campaign = campaigns.draft(TENANT, "Renewals", Channel.CALL)
    campaigns.add_targets(TENANT, campaign, [(customer, number)])
    now = datetime.now(UTC)
    campaigns.set_schedule(
        TENANT, campaign, [Window("always", now - timedelta(hours=1), now + timedelta(hours=1))]
    )
    campaigns.schedule(TENANT, campaign, now)
    campaigns.start(TENANT, campaign, now)

    def reached() -> list[dict[str, Any]]:
        return campaigns.targets(TENANT, campaign)

    [target] = wait_for(reached, lambda ts: ts[0]["status"] == "reached", 20)
    assert target["status"] == "reached" and target["attempts"] == 1

    def the_call() -> sqlite3.Row | None:
        db = sqlite3.connect(instance / "readmodels" / "call_log.sqlite")
        db.row_factory = sqlite3.Row
        return db.execute(
            "SELECT * FROM calls WHERE tenant_id = ? AND customer_number = ?", (TENANT, number)
        ).fetchone()

    row = wait_for(the_call, lambda r: r is not None and r["answered_at"] is not None, 20)
    assert row is not None and row["direction"] == "outbound" and row["answered_at"]
    call = call_view(apps, row["call_ref"])
    assert call is not None and call["agent_ids"] == [str(center["agents"]["an"])]
    assert call["queue_id"] == str(center["queue"])  # through the hotline's IVR, pressing 1
    asyncio.run(
        send(
            nats_url,
            commands.HangUpCall(command_id=cmd_id(), tenant_id=TENANT, call_ref=row["call_ref"]),
        )
    )


def test_an_internal_call_from_extension_to_extension(
    nats_url: str, apps: DomainApps, center: dict[str, Any]
) -> None:
    asyncio.run(panel(nats_url, "party", {"address": "2002", "party": {"answer_after": 0.2}}))
    placed = asyncio.run(
        panel(nats_url, "call", {"caller_number": "2001", "hotline": "2002", "tenant": TENANT})
    )
    ref = placed["channel_id"]
    call = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["answered_at"]), 20)
    assert call is not None and call["direction"] == "internal" and call["answered_at"]
    assert set(call["agent_ids"]) == {str(center["agents"]["an"]), str(center["agents"]["binh"])}
    assert hears(nats_url, ref, call["answered_leg_id"])
    asyncio.run(panel(nats_url, "hangup", {"channel_id": ref}))
    assert wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["ended_at"]))


def test_a_vip_call_reaches_an_agent_on_a_mobile_and_is_recorded_by_policy(
    nats_url: str, apps: DomainApps, center: dict[str, Any], instance: Path
) -> None:
    asyncio.run(panel(nats_url, "party", {"address": MOBILE_AGENT, "party": {"answer_after": 0.3}}))
    placed = asyncio.run(
        panel(
            nats_url,
            "call",
            {"caller_number": "0903000009", "hotline": HOTLINE, "party": {"digits": "2"}},
        )
    )
    ref = placed["channel_id"]
    call = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["recordings"]), 20)
    assert call is not None and call["answered_at"] and call["queue_id"] == str(center["vip"])
    [leg] = [leg for leg in call["legs"] if leg["party"] == "agent"]
    assert (leg["user_id"], leg["endpoint"], leg["address"]) == (
        str(center["agents"]["dung"]),
        "mobile",
        MOBILE_AGENT,
    )
    assert hears(nats_url, ref, leg["leg_id"])
    time.sleep(0.5)
    # Nobody asked for it: the queue's policy did. The caller hangs up; the file is kept.
    asyncio.run(panel(nats_url, "hangup", {"channel_id": ref}))
    ended = wait_for(
        lambda: call_view(apps, ref),
        lambda c: bool(c and c["ended_at"] and c["recordings"][0]["uri"]),
    )
    assert ended is not None and ended["ended_at"]
    [recording] = ended["recordings"]
    assert Path(recording["uri"]).is_file() and recording["duration_seconds"] >= 0.4


def test_a_three_way_call_then_the_agent_leaves_the_other_two(
    nats_url: str, apps: DomainApps, center: dict[str, Any]
) -> None:
    ref, an = answered_call(nats_url, apps, "0903000004")
    binh = center["agents"]["binh"]
    asyncio.run(panel(nats_url, "party", {"address": "2002", "party": {"answer_after": 0.2}}))
    target = commands.Target(agent_id=binh, endpoint_kind="sip_phone", address="2002")
    consult = commands.ConsultTransfer(
        command_id=cmd_id(), tenant_id=TENANT, call_ref=ref, from_leg_id=an["leg_id"], to=target
    )
    asyncio.run(send(nats_url, consult))

    def binh_leg(c: dict[str, Any] | None) -> dict[str, Any] | None:
        legs = [leg for leg in (c or {}).get("legs", []) if leg["user_id"] == str(binh)]
        return legs[0] if legs and legs[0]["answered_at"] else None

    call = wait_for(lambda: call_view(apps, ref), lambda c: binh_leg(c) is not None)
    leg = binh_leg(call)
    assert leg is not None, call
    asyncio.run(
        send(nats_url, commands.ThreeWay(command_id=cmd_id(), tenant_id=TENANT, call_ref=ref))
    )
    joined = wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["conference_leg_ids"]))
    assert joined is not None and joined["conference_leg_ids"] == [leg["leg_id"]]
    everyone = [ref, an["leg_id"], leg["leg_id"]]
    for listener in everyone:
        for speaker in everyone:
            if listener != speaker:
                assert hears(nats_url, listener, speaker), (listener, speaker)
    # The agent leaves; the customer and Binh go on talking.
    asyncio.run(panel(nats_url, "hangup", {"channel_id": an["leg_id"]}))
    left = wait_for(
        lambda: call_view(apps, ref),
        lambda c: bool(c) and any(g["leg_id"] == an["leg_id"] and g["ended_at"] for g in c["legs"]),  # type: ignore[index]
    )
    assert left is not None and not left["ended_at"] and not left["held"]
    assert hears(nats_url, ref, leg["leg_id"]) and hears(nats_url, leg["leg_id"], ref)
    hang_up(nats_url, apps, ref)


def test_a_supervisor_takes_a_call_over(
    nats_url: str, apps: DomainApps, center: dict[str, Any]
) -> None:
    ref, an = answered_call(nats_url, apps, "0903000005")
    chi = center["supervisor"]
    asyncio.run(panel(nats_url, "party", {"address": "2900", "party": {"answer_after": 0.2}}))
    listen = commands.Supervise(
        command_id=cmd_id(),
        tenant_id=TENANT,
        call_ref=ref,
        supervisor_id=chi,
        endpoint_kind="sip_phone",
        address="2900",
        mode="listen",
    )
    asyncio.run(send(nats_url, listen))

    def supervisor_leg(c: dict[str, Any] | None) -> dict[str, Any] | None:
        legs = [g for g in (c or {}).get("legs", []) if g["user_id"] == str(chi)]
        return legs[0] if legs else None

    listening = wait_for(lambda: call_view(apps, ref), lambda c: supervisor_leg(c) is not None)
    sup = supervisor_leg(listening)
    assert sup is not None and sup["supervision"] == "listen"
    take = commands.TakeOver(command_id=cmd_id(), tenant_id=TENANT, call_ref=ref, supervisor_id=chi)
    asyncio.run(send(nats_url, take))

    def taken(c: dict[str, Any] | None) -> bool:
        leg = supervisor_leg(c)
        return bool(leg and leg["party"] == "agent")

    call = wait_for(lambda: call_view(apps, ref), taken)
    assert call is not None and taken(call) and not call["ended_at"]
    [agent_leg] = [g for g in call["legs"] if g["leg_id"] == an["leg_id"]]
    assert agent_leg["ended_at"]
    assert hears(nats_url, ref, sup["leg_id"]) and hears(nats_url, sup["leg_id"], ref)
    asyncio.run(panel(nats_url, "hangup", {"channel_id": ref}))
    assert wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["ended_at"]))


def test_an_operator_registers_a_tenant_and_issues_and_revokes_api_keys(
    nats_url: str, center: dict[str, Any], instance: Path
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CLOUDCC_DATA": str(instance)}
        env.pop("NATS_URL", None)  # found through the running instance, as an operator would
        return subprocess.run(
            [sys.executable, "-m", "deploy.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=Path(__file__).parent.parent,
            check=False,
        )

    # A business is opened to the API: registered, then given a key.
    slug = f"cli{uuid.uuid4().hex[:6]}"
    register = ("tenant", "register", slug, "--name", "CLI Co", "--hotline", "02873001234")
    registered = cli(*register)
    assert registered.returncode == 0 and registered.stdout.strip() == slug, registered.stderr
    again = cli(*register)
    assert again.returncode == 1 and "registered already" in again.stderr
    assert cli("apikey", "issue", slug).returncode == 0

    issued = cli("apikey", "issue", TENANT, "--name", "crm")
    assert issued.returncode == 0, issued.stderr
    key = issued.stdout.strip()
    key_id = key.split(".")[1]
    listed = cli("apikey", "list", TENANT).stdout
    assert key_id in listed and key not in listed
    url = f"{instance_url(instance)}/api/v1/tenants/{TENANT}/calls"
    headers = {"Authorization": f"Bearer {key}"}
    assert wait_for(lambda: httpx.get(url, headers=headers).status_code, (200).__eq__) == 200
    assert cli("apikey", "revoke", TENANT, key_id).returncode == 0
    assert wait_for(lambda: httpx.get(url, headers=headers).status_code, (401).__eq__) == 401
    unknown = cli("apikey", "revoke", TENANT, key_id)
    assert unknown.returncode == 1 and "no key" in unknown.stderr


def test_a_consulted_party_who_hangs_up_leaves_the_agent_with_the_customer(
    nats_url: str, apps: DomainApps, center: dict[str, Any]
) -> None:
    ref, an = answered_call(nats_url, apps, "0903000006")
    mobile = "+84987000333"
    asyncio.run(
        panel(
            nats_url,
            "party",
            {"address": mobile, "party": {"answer_after": 0.2, "hang_up_after": 0.5}},
        )
    )
    consult = commands.ConsultTransfer(
        command_id=cmd_id(),
        tenant_id=TENANT,
        call_ref=ref,
        from_leg_id=an["leg_id"],
        to=commands.Target(address=mobile),
    )
    asyncio.run(send(nats_url, consult))

    def consult_over(c: dict[str, Any] | None) -> bool:
        return bool(c) and any(
            g["party"] == "external" and g["answered_at"] and g["ended_at"]
            for g in c["legs"]  # type: ignore[index]
        )

    call = wait_for(lambda: call_view(apps, ref), lambda c: consult_over(c) and not c["held"])  # type: ignore[index]
    assert call is not None and consult_over(call) and not call["held"], call
    assert not call["ended_at"] and call["consulting"] is None
    assert hears(nats_url, ref, an["leg_id"]) and hears(nats_url, an["leg_id"], ref)
    hang_up(nats_url, apps, ref)


def test_a_held_customer_transferred_blind_is_taken_off_hold(
    nats_url: str, apps: DomainApps, center: dict[str, Any]
) -> None:
    ref, an = answered_call(nats_url, apps, "0903000007")
    asyncio.run(
        send(nats_url, commands.HoldCall(command_id=cmd_id(), tenant_id=TENANT, call_ref=ref))
    )
    assert wait_for(lambda: call_view(apps, ref), lambda c: bool(c and c["held"]))
    mobile = "+84987000444"
    asyncio.run(panel(nats_url, "party", {"address": mobile, "party": {"answer_after": 0.2}}))
    transfer = commands.TransferCall(
        command_id=cmd_id(),
        tenant_id=TENANT,
        call_ref=ref,
        from_leg_id=an["leg_id"],
        to=commands.Target(address=mobile),
    )
    asyncio.run(send(nats_url, transfer))

    def target(c: dict[str, Any] | None) -> dict[str, Any] | None:
        legs = [g for g in (c or {}).get("legs", []) if g["address"] == mobile and g["answered_at"]]
        return legs[0] if legs else None

    call = wait_for(lambda: call_view(apps, ref), lambda c: target(c) is not None)
    leg = target(call)
    assert call is not None and leg is not None and not call["held"]
    assert hears(nats_url, ref, leg["leg_id"]) and hears(nats_url, leg["leg_id"], ref)
    hang_up(nats_url, apps, ref)
