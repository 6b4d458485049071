"""`cloudcc simulate`: a busy hour of phone calls on the running cloudcc's built-in switch.

It finds the instance of the data directory (cloudcc.json), seeds a simulation tenant
(a hotline into an IVR: greeting, then 1 for "Sales", 2 for "Support"; `--agents` agents
on SIP phones, all available), tells the switch panel how those agents answer (after
0.5-3 s; one in ten never does, so ring timeouts happen) and places calls at `--rate` a
second, never more than `--concurrency` live at once, with a mix of callers: most choose
and talk 3-20 s, some give up while waiting, some hang up in the IVR, some press nothing.

Everything is measured here, from core NATS: the tenant's call facts, its telephony
commands (RingAgent, StopRinging, SendToFallback) and TelephonyCommandFailed facts.
Routing latency is a call's first RingAgent seen minus its CallQueued seen; when every
agent is busy that is mostly the wait for one, so "dispatch" latency starts instead from
the later of CallQueued and the rung agent's previous leg hanging up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import time
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec

from telephony_bridge.switchctl import PartySpec, PlaceCall, SetParty

RING_TIMEOUT_SECONDS = 8  # short, so that phones nobody picks up soon ring someone else
MAX_WAIT_SECONDS = 600  # longer than any simulated caller's patience: callers give up first
START_TIMEOUT = 15.0  # a placed call with no CallStarted by then is lost
IVR_NAME = "Simulation"
# (profile, weight): who calls. "fumbler" presses a key the menu does not know, then chooses.
PROFILES = (("talker", 55), ("fumbler", 10), ("impatient", 15), ("ivr_hang_up", 10), ("silent", 10))


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser("simulate", help="place simulated calls on the running cloudcc")
    sim.add_argument("--data", help="data directory (default $CLOUDCC_DATA or ./var)")
    sim.add_argument("--rate", type=float, required=True, help="new calls a second")
    sim.add_argument("--duration", type=float, required=True, help="seconds of new calls")
    sim.add_argument("--concurrency", type=int, required=True, help="most calls live at once")
    sim.add_argument("--agents", type=int, default=20, help="agents working (20)")
    sim.add_argument("--tenant", default="sim", help="the simulation tenant (sim)")
    sim.add_argument("--drain", type=float, default=150.0, help="most seconds to end (150)")
    sim.add_argument("--seed", type=int, help="random seed, to replay the same callers")
    sim.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    sim.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deploy.runtime import find_instance
    from deploy.settings import Settings
    from domain.base import DomainError

    if min(args.rate, args.duration, args.concurrency, args.drain) <= 0:
        return _fail("--rate, --duration, --concurrency and --drain must be positive", 2)
    if not 1 <= args.agents <= 999:  # extensions 7001-7999
        return _fail("--agents must be 1 to 999", 2)
    data_dir = Settings.from_env(**({"data_dir": args.data} if args.data else {})).data_dir
    info = find_instance(data_dir)
    if info is None or not info.get("nats_url"):
        state = "is still starting" if info else "is not running"
        return _fail(f"cloudcc {state} on {data_dir}; start it with `cloudcc up`", 2)
    url = _nats_url(info["nats_url"])
    try:
        hotline, phones = seed(url, args.tenant, args.agents)
    except DomainError as exc:
        return _fail(f"cannot seed tenant {args.tenant!r}: {exc}", 1)
    if info.get("http_url"):
        _wait_until_caught_up(info["http_url"])
    sim = Simulation(args, url, hotline, phones)
    report = asyncio.run(sim.run())
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>22}: {value}")
    return 0


def _fail(message: str, code: int) -> int:
    print(f"cloudcc simulate: {message}", file=sys.stderr)
    return code


def _nats_url(public: str) -> str:
    # cloudcc.json names NATS without credentials; $NATS_URL may hold them for that server.
    from deploy.runtime import public_url

    env = os.environ.get("NATS_URL", "")
    return env if env and public_url(env) == public else public


# ---------------------------------------------------------------------------- seeding
def seed(url: str, tenant: str, agents: int) -> tuple[str, list[str]]:
    """Set up `tenant` (only what is missing); returns its hotline and the agents' phones.

    Aggregate ids are random, so what exists is found by name (or login) in the event
    store; every other step is a domain command that records nothing when it holds.
    """
    from domain.agents import User
    from domain.apps import DomainApps
    from domain.base import DomainError
    from domain.ivr import IvrFlow, Node, NodeKind
    from domain.queues import Queue
    from domain.tenants import TenantAlreadyRegistered
    from domain.vocabulary import EndpointKind, Package, RoutingPolicy

    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": url})
    package = Package.CALL_CENTER
    try:
        # A mobile number (AX1) of its own per tenant name, the same on every run.
        hotline = f"+8490{zlib.crc32(tenant.encode()) % 10_000_000:07d}"
        try:
            apps.tenants.register(tenant, f"Simulation {tenant}", package, [hotline])
        except TenantAlreadyRegistered:
            hotline = str(apps.tenants.get(tenant)["hotlines"][0])  # type: ignore[index]
        queues = _created(apps.queues, Queue.Created, tenant, "name")
        for name in ("Sales", "Support"):
            if name not in queues:
                queues[name] = apps.queues.create(tenant, name, policy=RoutingPolicy.ROUND_ROBIN)
            apps.queues.set_waiting_rules(
                tenant, queues[name], RING_TIMEOUT_SECONDS, MAX_WAIT_SECONDS
            )
        flow = _created(apps.ivr, IvrFlow.Drafted, tenant, "name").get(IVR_NAME)
        if flow is None:
            flow = apps.ivr.draft(tenant, IVR_NAME)
        for node in (
            Node("greeting", NodeKind.PLAYBACK, prompt="Welcome to the simulation", next="menu"),
            Node(
                "menu",
                NodeKind.MENU,
                prompt="Press 1 for sales, 2 for support",
                choices={"1": "sales", "2": "support"},
                timeout_seconds=3,
                max_attempts=2,
            ),
            Node("sales", NodeKind.QUEUE, queue_id=queues["Sales"]),
            Node("support", NodeKind.QUEUE, queue_id=queues["Support"]),
        ):
            apps.ivr.set_node(tenant, flow, node)
        apps.ivr.set_entry(tenant, flow, "greeting")
        apps.ivr.publish(tenant, flow)
        apps.tenants.route_hotline(tenant, hotline, "ivr", flow)
        users = _created(apps.agents, User.Created, tenant, "login")
        logins = [f"{tenant}-agent{i + 1:03d}" for i in range(agents)]
        phones = []
        for i, login in enumerate(logins):
            # Phones named after the tenant: the switch's parties are by address, shared.
            extension = str(7001 + i)
            phone = f"{tenant}-{extension}"
            uid = users.get(login) or apps.agents.create_user(
                tenant, f"Agent {i + 1}", login, "agent", package=package, extension=extension
            )
            apps.agents.add_endpoint(tenant, uid, EndpointKind.SIP_PHONE, phone)
            # One still on a call of an earlier run is made available by routing after it.
            with contextlib.suppress(DomainError):
                apps.agents.go_available(tenant, uid)
            phones.append(phone)
        for login in users.keys() - set(logins):  # an earlier run had more: they sign out
            with contextlib.suppress(DomainError):
                apps.agents.go_offline(tenant, users[login], "simulation")
        return hotline, phones
    finally:
        apps.close()


def _created(app: Any, event_class: type[Any], tenant: str, key: str) -> dict[str, UUID]:
    """{event.<key>: aggregate id} of the tenant's creation events of one kind."""
    from eventsourcing.utils import get_topic

    found: dict[str, UUID] = {}
    start = 1
    while True:
        page = app.recorder.select_notifications(start, 500, topics=[get_topic(event_class)])
        for notification in page:
            event = app.mapper.to_domain_event(notification)
            if getattr(event, "tenant_id", None) == tenant:
                found.setdefault(getattr(event, key), event.originator_id)
        if len(page) < 500:
            return found
        start = page[-1].id + 1


def _wait_until_caught_up(http_url: str, timeout: float = 30.0) -> None:
    """Until the instance's dialplan and router have read the seeding (else the first
    calls find no hotline or no available agent)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    # The instance refreshes the streams' ends every second: an earlier "lag 0" is stale.
    time.sleep(1.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with opener.open(f"{http_url}/health", timeout=5) as response:
                services = json.load(response).get("services", {})
        except (OSError, ValueError):
            services = None  # 503 while degraded, or busy: ask again
        if services is not None and all(
            services.get(name, {}).get("lag", 0) == 0 for name in ("dialplan", "routing")
        ):
            return
        time.sleep(0.2)
    print("cloudcc simulate: the instance has not caught up; starting anyway", file=sys.stderr)


# ------------------------------------------------------------------------- the traffic
class _Wire(msgspec.Struct):
    """What is read of a fact or command: enough to follow the calls."""

    type: str = ""
    call_ref: str | None = None
    leg_id: str | None = None
    agent_id: str | None = None
    reason: str | None = None


def _decode(data: bytes) -> _Wire | None:
    try:
        return msgspec.json.decode(data, type=_Wire)
    except msgspec.DecodeError:  # someone else's garbage on the subject: not our calls
        return None


@dataclass
class Trace:
    profile: str = ""
    placed_at: float = 0.0
    started: bool = False
    queued_at: float | None = None
    routing_ms: float | None = None
    dispatch_ms: float | None = None
    answered_at: float | None = None
    fallback: bool = False
    ring_timeouts: int = 0
    ended: bool = False
    lost: bool = False  # never started, or still live when the drain ran out

    def outcome(self) -> str:
        if self.lost:
            return "unresolved"
        if self.answered_at is not None:
            return "answered"
        if self.fallback:
            return "sent_to_fallback"
        return "abandoned" if self.queued_at is not None else "left_in_ivr"


class Simulation:
    def __init__(self, args: argparse.Namespace, url: str, hotline: str, phones: list[str]):
        self.args, self.url, self.hotline, self.phones = args, url, hotline, phones
        self.rng = random.Random(args.seed)
        self.traces: dict[str, Trace] = {}  # by call ref; facts may beat the panel's reply
        self.leg_agents: dict[str, str] = {}  # agent leg -> agent
        self.agent_free_at: dict[str, float] = {}  # agent -> when their last leg ended
        self.ours: set[str] = set()
        self.live: set[str] = set()
        self.placing = 0
        self.offered = self.not_placed = self.panel_errors = self.command_failures = 0
        self.max_concurrent = 0
        self.t0 = time.perf_counter()
        self.nc: Any = None

    async def run(self) -> dict[str, Any]:
        import nats

        from eventstore.layout import tenant_token

        token = tenant_token(self.args.tenant)
        self.nc = await nats.connect(self.url, name=f"cloudcc-simulate-{os.getpid()}")
        try:
            for subject in (f"facts.{token}.call", f"facts.{token}.telephony"):
                await self.nc.subscribe(subject, cb=self._on_fact)
            await self.nc.subscribe(f"cmd.{token}.telephony.>", cb=self._on_command)
            await self.nc.flush()
            await self._set_agents()
            progress = asyncio.create_task(self._progress())
            self.t0 = time.perf_counter()
            await self._place_calls()
            await self._drain()
            progress.cancel()
            self._show_progress(final=True)
            return self._report()
        finally:
            await self.nc.close()

    async def _panel(self, verb: str, request: msgspec.Struct | dict[str, Any]) -> Any:
        try:
            reply = await self.nc.request(f"switch.builtin.{verb}", msgspec.json.encode(request), 5)
            answer = msgspec.json.decode(reply.data)
        except Exception as exc:  # noqa: BLE001 - no panel, a timeout: counted and shown
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        if "error" in answer:
            self.panel_errors += 1
            print(f"\ncloudcc simulate: switch.builtin.{verb}: {answer['error']}", file=sys.stderr)
            return None
        return answer

    async def _set_agents(self) -> None:
        for i, phone in enumerate(self.phones):
            # Every tenth phone is never picked up (but with fewer than five agents).
            never = len(self.phones) >= 5 and i % 10 == 4
            answer_after = None if never else 0.5 + 2.5 * ((i * 7) % 11) / 10
            await self._panel(
                "party", SetParty(address=phone, party=PartySpec(answer_after=answer_after))
            )

    def _caller(self) -> tuple[str, PartySpec]:
        rng = self.rng
        profile = rng.choices([p for p, _ in PROFILES], [w for _, w in PROFILES])[0]
        choice = "1" if rng.random() < 0.6 else "2"
        talk, patience = rng.uniform(3, 20), rng.uniform(45, 90)
        party = {
            "talker": PartySpec(digits=choice, hang_up_after=talk, abandon_after=patience),
            "fumbler": PartySpec(digits="9" + choice, hang_up_after=talk, abandon_after=patience),
            "impatient": PartySpec(
                digits=choice, hang_up_after=talk, abandon_after=rng.uniform(4, 15)
            ),
            # The greeting and the menu take ~2.2 s: this caller is gone before choosing.
            "ivr_hang_up": PartySpec(digits=choice, abandon_after=rng.uniform(0.5, 2.0)),
            "silent": PartySpec(digits="", abandon_after=patience),
        }[profile]
        return profile, party

    async def _place_calls(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        end, i = self.t0 + self.args.duration, 0
        while (due := self.t0 + i / self.args.rate) < end:
            # Open-loop arrivals: a slow center does not slow its callers down...
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            # ...but there are `--concurrency` lines: a caller waits for a free one.
            while len(self.live) + self.placing >= self.args.concurrency:
                if time.perf_counter() >= end:
                    break
                await asyncio.sleep(0.01)
            if time.perf_counter() >= end:
                break
            # Counted before the task runs, so the next caller sees this line taken.
            self.offered, self.placing, i = self.offered + 1, self.placing + 1, i + 1
            self.max_concurrent = max(self.max_concurrent, len(self.live) + self.placing)
            task = asyncio.create_task(self._place(*self._caller()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)

    async def _place(self, profile: str, party: PartySpec) -> None:
        caller = f"09{self.rng.randrange(10**8):08d}"
        placed_at = time.perf_counter()
        call = PlaceCall(caller_number=caller, hotline=self.hotline, party=party)
        reply = await self._panel("call", call)
        self.placing -= 1
        if reply is None:
            self.not_placed += 1
            return
        ref = str(reply["channel_id"])
        trace = self.traces.setdefault(ref, Trace())
        trace.profile, trace.placed_at = profile, placed_at
        self.ours.add(ref)
        if not trace.ended:
            self.live.add(ref)

    async def _on_fact(self, msg: Any) -> None:
        now = time.perf_counter()
        fact = _decode(msg.data)
        if fact is None:
            return
        if fact.type == "TelephonyCommandFailed":
            self.command_failures += 1
            return
        if not fact.call_ref:
            return
        trace = self.traces.setdefault(fact.call_ref, Trace())
        if fact.type == "CallAgentRinging" and fact.leg_id and fact.agent_id:
            self.leg_agents[fact.leg_id] = fact.agent_id
        elif fact.type == "CallHungUp" and fact.leg_id in self.leg_agents:
            self.agent_free_at[self.leg_agents.pop(fact.leg_id or "")] = now
        if fact.type == "CallStarted":
            trace.started = True
        elif fact.type == "CallQueued":
            trace.queued_at = now
        elif fact.type == "CallAnswered" and fact.leg_id != fact.call_ref:
            trace.answered_at = trace.answered_at or now
        elif fact.type == "CallHungUp" and fact.leg_id == fact.call_ref:  # the caller's leg
            trace.ended = True
            self.live.discard(fact.call_ref)

    async def _on_command(self, msg: Any) -> None:
        now = time.perf_counter()
        command = _decode(msg.data)
        trace = self.traces.get(command.call_ref or "") if command else None
        if command is None or trace is None:
            return
        if command.type == "RingAgent" and trace.routing_ms is None and trace.queued_at:
            trace.routing_ms = (now - trace.queued_at) * 1000
            # Under overload the above is mostly the wait for a free agent; this is not.
            free_at = self.agent_free_at.get(command.agent_id or "", 0.0)
            trace.dispatch_ms = (now - max(trace.queued_at, free_at)) * 1000
        elif command.type == "StopRinging" and command.reason == "timed_out":
            trace.ring_timeouts += 1
        elif command.type == "SendToFallback":
            trace.fallback = True

    async def _drain(self) -> None:
        deadline = time.perf_counter() + self.args.drain
        while self.live and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)  # the progress task gives up on calls that never start
        for ref in sorted(self.live):
            self.traces[ref].lost = True
            # Left on the switch, it would hold an agent and a line after we are gone.
            await self._panel("hangup", {"channel_id": ref, "cause": "NORMAL_CLEARING"})
        self.live.clear()

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for ref in list(self.live):
                trace = self.traces[ref]
                if not trace.started and time.perf_counter() - trace.placed_at > START_TIMEOUT:
                    trace.lost = True
                    self.live.discard(ref)
            self._show_progress()

    def _show_progress(self, final: bool = False) -> None:
        traces = [self.traces[ref] for ref in self.ours]
        outcomes = Counter(t.outcome() for t in traces if t.ended or t.lost)
        waiting = sum(1 for t in traces if t.queued_at and not t.answered_at and not t.ended)
        line = (
            f"{time.perf_counter() - self.t0:6.1f}s offered {self.offered} live "
            f"{len(self.live)} waiting {waiting} answered "
            f"{sum(1 for t in traces if t.answered_at)} abandoned {outcomes['abandoned']} "
            f"errors {self._errors(outcomes)}"
        )
        if sys.stderr.isatty():
            print(f"\r{line}\033[K", end="\n" if final else "", file=sys.stderr, flush=True)
        elif not final:
            print(line, file=sys.stderr, flush=True)

    def _errors(self, outcomes: Counter[str]) -> int:
        return self.panel_errors + self.command_failures + outcomes["unresolved"]

    def _report(self) -> dict[str, Any]:
        ours = [self.traces[ref] for ref in self.ours]
        outcomes = Counter(t.outcome() for t in ours)
        routing = sorted(t.routing_ms for t in ours if t.routing_ms is not None)
        dispatch = sorted(t.dispatch_ms for t in ours if t.dispatch_ms is not None)
        waits = sorted(t.answered_at - t.queued_at for t in ours if t.answered_at and t.queued_at)
        return {
            "tenant": self.args.tenant,
            "agents": len(self.phones),
            "offered": self.offered,
            # Callers due who found all `--concurrency` lines busy until the end.
            "blocked": max(math.ceil(self.args.rate * self.args.duration) - self.offered, 0),
            "answered": outcomes["answered"],
            "abandoned": outcomes["abandoned"],
            "left_in_ivr": outcomes["left_in_ivr"],
            "sent_to_fallback": outcomes["sent_to_fallback"],
            "unresolved": outcomes["unresolved"],
            "not_placed": self.not_placed,
            "max_concurrent": self.max_concurrent,
            "ring_timeouts": sum(t.ring_timeouts for t in ours),
            "errors": self._errors(outcomes),
            "panel_errors": self.panel_errors,
            "command_failures": self.command_failures,
            "routing_samples": len(routing),
            "routing_p50_ms": _percentile(routing, 0.50),
            "routing_p99_ms": _percentile(routing, 0.99),
            "routing_max_ms": round(routing[-1], 2) if routing else None,
            # From the later of the call queued and the rung agent's last call ended (which
            # includes the instance's wrap-up): routing's own reaction, whatever the load.
            "dispatch_p50_ms": _percentile(dispatch, 0.50),
            "dispatch_p99_ms": _percentile(dispatch, 0.99),
            "wait_p50_s": _percentile(waits, 0.50),
            "profiles": dict(Counter(t.profile for t in ours)),
            "duration_s": round(time.perf_counter() - self.t0, 2),
            "calls_per_s": round(self.offered / self.args.duration, 2),
        }


def _percentile(ordered: list[float], p: float) -> float | None:
    """Nearest rank, of values sorted already."""
    if not ordered:
        return None
    return round(ordered[max(math.ceil(len(ordered) * p) - 1, 0)], 2)
