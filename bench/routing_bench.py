"""Routing latency: from a call queued to the switch told to ring an agent.

Run: `python bench/routing_bench.py [--agents 200] [--rate 50] [--seconds 20] [--json]`

One run starts its own nats-server (as `cloudcc up` does, `sync_interval: always`),
registers `--agents` available agents and one round-robin queue through the domain
applications, and starts a real `cloudcc up` on that server (a subprocess with every
service but the telephony bridge: the fact subscribers, all read models and process
managers, HTTP). This
process then plays the switch, as the telephony bridge will: `--rate` new calls a second,
each a `CallStarted` and a `CallQueued` fact on NATS; when the instance's RingAgent
command for a call arrives, the agent's leg rings (`CallAgentRinging`), answers after
0.3 s (`CallAnswered`) and the caller hangs up after 0.5-1.5 s (`CallHungUp`); the router
makes the agent available again (no wrap-up), so that 200 agents can take 50 calls/s.

Measured: routing latency = the RingAgent command's arrival minus the moment just before
the `CallQueued` fact was published: the fact's way in (JetStream, the fact subscriber,
the Calls application's append), the routing projection's delivery and apply, the
decision (the agent's Offered and the WorkRouting record, two appends) and the
command's publish. Goal (issue 3): p99 < 50 ms with 200 agents and 50 new calls/s.

Baseline, same server, same run: one JetStream publish acknowledged — the cheapest
durable step anything on this path takes; the path takes at least five in a row (the
fact, the call's Offered, the agent's Offered, the decision, plus reads), so the ratio
says what the rest costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import nats
from nats.aio.msg import Msg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.facts import (  # noqa: E402
    CallAgentRinging,
    CallAnswered,
    CallHungUp,
    CallQueued,
    CallStarted,
    ensure_facts_stream,
    publish_fact,
)
from deploy.natsserver import NatsServer, free_port  # noqa: E402
from domain.apps import DomainApps  # noqa: E402
from domain.vocabulary import Channel, EndpointKind, Package, RoutingPolicy  # noqa: E402
from telephony_bridge import commands  # noqa: E402

TENANT = "bench"
# Calls are short so that 200 agents can take 50 a second: each agent is held for the
# ring, the talk and the router's follow-up (~2 s), i.e. ~100 agents busy at any time,
# and a call is never kept waiting for a free agent — what is measured is routing, not
# a floor too small for its traffic.
TALK_MIN, TALK_MAX = 0.5, 1.5


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * p), len(ordered) - 1)]


def seed(url: str, agents: int) -> UUID:
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": url})
    try:
        queue = apps.queues.create(TENANT, "Support", [Channel.CALL], RoutingPolicy.ROUND_ROBIN)
        for i in range(agents):
            aid = apps.agents.create_user(
                TENANT, f"Agent {i}", f"agent{i}", "agent", package=Package.CALL_CENTER
            )
            apps.agents.add_endpoint(TENANT, aid, EndpointKind.SIP_PHONE, f"agent{i}")
            apps.agents.go_available(TENANT, aid)
        return queue
    finally:
        apps.close()


def get_json(url: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:  # 503 while degraded still has a body
        return dict(json.loads(error.read()))


def start_instance(
    url: str, data: Path, name: str = "cloudcc", services: str = "all"
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = open(data / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    env = {
        **os.environ,
        "NATS_URL": url,
        "CLOUDCC_DATA": str(data / name),
        "CLOUDCC_SERVICES": services,
        # No wrap-up: with it, 200 agents could not take 50 calls a second (see below).
        "CLOUDCC_WRAP_UP_SECONDS": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


# --layout split: the scaled-out shape of ../shared/ARCHITECTURE.md on one machine — the
# fact consumers and API (with the customers read model the API answers from), the
# routing manager, and the other read models each in a process of their own, so that no
# one GIL carries all of it.
LAYOUTS = {
    # Every service but the telephony bridge: this process plays the switch (and the
    # bridge's part of it), so a bridge in the instance would answer the same commands.
    "embedded": {"cloudcc": "facts,api,readmodels"},
    # Only what the path from a queued call to a rung agent needs, in one process: what
    # the routing path costs without the other read models competing for the GIL.
    "lean": {"cloudcc": "facts,api,routing"},
    "split": {
        "facts": "facts,api",
        "routing": "routing",
        "readmodels": ",".join(
            name
            for name in (
                "inbox",
                "tickets",
                "call_log",
                "timeline",
                "agent_board",
                "queue_board",
                "sla_timers",
                "campaign_runner",
            )
        ),
    },
}


async def publish_ack_latencies(nc: Any, n: int = 500) -> list[float]:
    js = nc.jetstream()
    await js.add_stream(name="BASELINE", subjects=["baseline.>"])
    out = []
    for i in range(n):
        started = time.perf_counter()
        await js.publish(f"baseline.{i % 10}", b"x" * 200)
        out.append(time.perf_counter() - started)
    return out


async def traffic(args: argparse.Namespace, url: str, queue: UUID) -> dict[str, Any]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_facts_stream(js)
    queued_at: dict[str, float] = {}
    wall_queued: dict[str, float] = {}
    wall_rung: dict[str, float] = {}
    latencies: list[float] = []
    errors: list[str] = []
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def fact_id() -> str:
        return os.urandom(8).hex()

    async def talk(ring: commands.RingAgent) -> None:
        try:
            common = {"tenant_id": TENANT, "call_ref": ring.call_ref}
            leg = f"{ring.call_ref}-agent"
            await asyncio.sleep(0.3)
            now = datetime.now(UTC)
            await publish_fact(
                js,
                CallAgentRinging(
                    fact_id=fact_id(),
                    at=now,
                    leg_id=leg,
                    agent_id=ring.agent_id,
                    agent_endpoint=ring.endpoint_kind,
                    address=ring.endpoint_address,
                    **common,
                ),
            )
            await publish_fact(
                js, CallAnswered(fact_id=fact_id(), at=datetime.now(UTC), leg_id=leg, **common)
            )
            await asyncio.sleep(random.uniform(TALK_MIN, TALK_MAX))
            await publish_fact(
                js,
                CallHungUp(
                    fact_id=fact_id(),
                    at=datetime.now(UTC),
                    leg_id=f"{ring.call_ref}-in",
                    cause="NORMAL_CLEARING",
                    **common,
                ),
            )
        except Exception as error:  # noqa: BLE001 - counted and reported
            errors.append(f"{type(error).__name__}: {error}")

    async def on_command(msg: Msg) -> None:
        command = commands.decode(msg.data)
        if isinstance(command, commands.RingAgent):
            started = queued_at.pop(command.call_ref, None)
            wall_rung[command.call_ref] = time.time()
            if started is not None:
                latencies.append(time.perf_counter() - started)
                spawn(talk(command))

    await nc.subscribe(f"cmd.{TENANT}.telephony.>", cb=on_command)

    async def call(i: int) -> None:
        ref = f"bench-{i}"
        common = {"tenant_id": TENANT, "call_ref": ref}
        try:
            await publish_fact(
                js,
                CallStarted(
                    fact_id=fact_id(),
                    at=datetime.now(UTC),
                    direction="inbound",
                    hotline="19001234",
                    caller_number=f"09{i:08d}",
                    caller_leg_id=f"{ref}-in",
                    **common,
                ),
            )
            queued_at[ref] = time.perf_counter()
            wall_queued[ref] = time.time()
            await publish_fact(
                js, CallQueued(fact_id=fact_id(), at=datetime.now(UTC), queue_id=queue, **common)
            )
        except Exception as error:  # noqa: BLE001
            errors.append(f"{type(error).__name__}: {error}")

    total = int(args.rate * args.seconds)
    started = time.perf_counter()
    for i in range(total):
        # Open-loop arrivals at a steady rate: a slow router does not slow the callers.
        delay = started + i / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        spawn(call(i))
    deadline = time.perf_counter() + 30
    while (queued_at or len(latencies) < total) and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - started
    never_rung = total - len(latencies)
    while tasks and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    await nc.close()
    return {
        "calls": total,
        "wall_queued": wall_queued,
        "wall_rung": wall_rung,
        "latencies": latencies,
        "never_rung": never_rung,
        "errors": errors,
        "seconds": elapsed,
    }


def breakdown(url: str, result: dict[str, Any]) -> dict[str, Any]:
    """Where the time goes, from the events' own times (same machine, same clock): the
    fact's way in (publish to the call's Offered), the routing's reaction (to the
    decision's time) and the way out (decision to RingAgent received)."""
    from domain.calls import Call
    from domain.routing import WorkKind, WorkRouting

    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": url})
    stages: dict[str, list[float]] = {"fact_in": [], "router_react": [], "ring_out": []}
    try:
        refs = sorted(result["wall_rung"])[:: max(len(result["wall_rung"]) // 150, 1)]
        for ref in refs:
            call_id = Call.create_id(TENANT, ref)
            offered = next(e for e in apps.calls.events.get(call_id) if isinstance(e, Call.Offered))
            routing_id = WorkRouting.create_id(TENANT, WorkKind.CALL, str(call_id))
            decided = next(
                e for e in apps.routing.events.get(routing_id) if isinstance(e, WorkRouting.Offered)
            )
            stages["fact_in"].append(offered.timestamp.timestamp() - result["wall_queued"][ref])
            stages["router_react"].append(decided.at.timestamp() - offered.timestamp.timestamp())
            stages["ring_out"].append(result["wall_rung"][ref] - decided.at.timestamp())
    finally:
        apps.close()
    out: dict[str, Any] = {}
    for name, values in stages.items():
        ms = [v * 1000 for v in values]
        if ms:
            out[f"{name}_p50_ms"] = round(statistics.median(ms), 1)
            out[f"{name}_p99_ms"] = round(percentile(ms, 0.99), 1)
    return out


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def run(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    server = NatsServer(data_dir=data / "nats", sync_interval=args.sync)
    server.start()
    procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:

        async def baseline() -> list[float]:
            nc = await nats.connect(server.url)
            try:
                return await publish_ack_latencies(nc)
            finally:
                await nc.close()

        base = [x * 1000 for x in asyncio.run(baseline())]
        queue = seed(server.url, args.agents)
        for name, services in LAYOUTS[args.layout].items():
            procs[name] = start_instance(server.url, data, name, services)
        router = "routing" if args.layout == "split" else "cloudcc"
        deadline = time.monotonic() + 60
        while True:
            for name, (proc, _) in procs.items():
                assert proc.poll() is None, (data / f"{name}.log").read_text()
            assert time.monotonic() < deadline, "cloudcc up did not catch up"
            try:
                health = get_json(f"{procs[router][1]}/health")["services"]["routing"]
            except (OSError, KeyError, ValueError):
                time.sleep(0.2)
                continue
            if health["state"] == "running" and health["lag"] == 0:
                break
            time.sleep(0.2)
        time.sleep(2)  # the other read models catch up on the seeding too
        cpu_before = {name: process_cpu_seconds(p.pid) for name, (p, _) in procs.items()}
        result = asyncio.run(traffic(args, server.url, queue))
        cpu = {
            name: process_cpu_seconds(p.pid) - cpu_before[name] for name, (p, _) in procs.items()
        }
        healths = {name: get_json(f"{http}/health") for name, (_, http) in procs.items()}
        stages = breakdown(server.url, result) if args.breakdown else {}
        statuses = {name: h.get("status") for name, h in healths.items()}
        routing_health = healths[router]["services"]["routing"]
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            proc.wait(30)
        server.stop()
    ms = [x * 1000 for x in result["latencies"]]
    p99 = percentile(ms, 0.99) if ms else float("inf")
    return {
        "agents": args.agents,
        "calls_per_s": args.rate,
        "calls": result["calls"],
        "rung": len(ms),
        "never_rung": result["never_rung"],
        "errors": len(result["errors"]),
        "first_errors": result["errors"][:3],
        "seconds": round(result["seconds"], 1),
        "layout": args.layout,
        "sync_interval": args.sync,
        # Each process's CPU over the run, in cores: near 1.0 the GIL makes it a queue.
        "cpu_cores": {name: round(c / result["seconds"], 2) for name, c in cpu.items()},
        "cpu_ms_per_call": round(sum(cpu.values()) * 1000 / max(result["calls"], 1), 1),
        "status": statuses,
        "router_acts": routing_health.get("acts"),
        "router_act_ms_mean": routing_health.get("act_ms_mean"),
        **stages,
        "routing_p50_ms": round(statistics.median(ms), 2) if ms else None,
        "routing_p99_ms": round(p99, 2),
        "routing_max_ms": round(max(ms), 2) if ms else None,
        "baseline_publish_ack_p50_ms": round(statistics.median(base), 2),
        "baseline_publish_ack_p99_ms": round(percentile(base, 0.99), 2),
        "ratio_p99": round(p99 / percentile(base, 0.99), 1),
        "goal_p99_ms": 50,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="new calls per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--layout",
        choices=sorted(LAYOUTS),
        default="embedded",
        help="embedded: one `cloudcc up` (default); split: facts+API, routing and the "
        "other read models in three processes",
    )
    parser.add_argument(
        "--sync",
        default="always",
        help="nats-server sync_interval: always (what cloudcc ships) or e.g. 2m (NATS's default)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also split the latency into the fact's way in, the router's reaction and "
        "the command's way out (reads a sample of calls back from the store)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cloudcc-routing-bench-") as tmp:
        result = run(args, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")
        met = result["routing_p99_ms"] < result["goal_p99_ms"] and not result["never_rung"]
        print(f"{'goal':>28}: p99 < 50 ms — {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
