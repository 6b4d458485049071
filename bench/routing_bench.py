"""Routing latency: from a call offered to a queue to the switch told to ring an agent.

Run: `python bench/routing_bench.py [--agents 200] [--rate 50] [--seconds 20] [--json]`

One run starts its own nats-server (as `cloudcc up` does, `sync_interval: always`), puts
the domain applications on it, registers `--agents` available agents and one
round-robin queue, and runs the routing process manager exactly as `cloudcc up` runs it
(projections.service.ProjectionService: ordered consumers on the agents, queues, calls,
conversations and routing streams, SQLite state, `act` after new events).

A simulated switch in the same process then offers `--rate` new calls a second: each
call is started and queued through the Calls application (what the fact handlers do);
when its RingAgent command arrives the switch answers after 0.3 s, talks for 1-3 s and
hangs up, and the router brings the agent back (wrap-up 1 s), so the agents stay in
circulation as on a busy floor.

Measured: routing latency = the RingAgent command's arrival minus the moment just
before the call's Offered event was appended — the append, the projection's delivery,
the SQLite apply, the decision (two appends: the agent's Offered and the WorkRouting
decision) and the command's publish. Goal (issue 3): p99 < 50 ms with 200 agents and
50 new calls/s. Baseline, same server, same run: one JetStream publish acknowledged
(the cheapest durable step any decision must take), p50 and p99; the ratio says how many
such steps the routing path costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import nats
from nats.aio.msg import Msg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.natsserver import NatsServer  # noqa: E402
from domain.apps import DomainApps  # noqa: E402
from domain.asyncapp import AsyncRunner  # noqa: E402
from domain.call_legs import LegSpec  # noqa: E402
from domain.vocabulary import Channel, EndpointKind, Package, RoutingPolicy  # noqa: E402
from projections.routing import Router  # noqa: E402
from projections.service import ProjectionService  # noqa: E402
from telephony_bridge import commands  # noqa: E402

TENANT = "bench"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * p), len(ordered) - 1)]


class Runtime:
    """What ProjectionService.start needs of the runtime."""

    def __init__(self, url: str, nc: Any) -> None:
        self.nats_url = url
        self.nc = nc


async def publish_ack_latencies(nc: Any, n: int = 500) -> list[float]:
    js = nc.jetstream()
    await js.add_stream(name="BASELINE", subjects=["baseline.>"])
    out = []
    for i in range(n):
        started = time.perf_counter()
        await js.publish(f"baseline.{i % 10}", b"x" * 200)
        out.append(time.perf_counter() - started)
    return out


async def run(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    server = NatsServer(data_dir=data / "nats")
    server.start()
    runner = AsyncRunner(max_workers=64)
    apps: DomainApps | None = None
    service: ProjectionService | None = None
    nc = await nats.connect(server.url)
    try:
        baseline = await publish_ack_latencies(nc)
        env = {"PERSISTENCE_MODULE": "eventstore", "NATS_URL": server.url}
        apps = await runner(DomainApps.build, env)
        queue = await runner(apps.queues.create, TENANT, "Support", [Channel.CALL])
        await runner(apps.queues.configure_routing, TENANT, queue, RoutingPolicy.ROUND_ROBIN)

        async def agent(i: int) -> None:
            assert apps is not None
            aid = await runner(
                apps.agents.create_user,
                TENANT,
                f"Agent {i}",
                f"agent{i}",
                "agent",
                package=Package.CALL_CENTER,
            )
            await runner(apps.agents.add_endpoint, TENANT, aid, EndpointKind.SIP_PHONE, f"a{i}")
            await runner(apps.agents.go_available, TENANT, aid)

        await asyncio.gather(*(agent(i) for i in range(args.agents)))
        router = Router(data / "routing.sqlite", wrap_up_seconds=1.0)
        built = apps
        service = ProjectionService(lambda: built, router, retry_after=0.5)
        await service.start(Runtime(server.url, nc))
        while len([a for a in router_agents(router) if a == "available"]) < args.agents:
            await asyncio.sleep(0.1)

        offered_at: dict[UUID, float] = {}
        latencies: list[float] = []
        errors: list[str] = []
        tasks: set[asyncio.Task[None]] = set()

        async def talk(ring: commands.RingAgent) -> None:
            assert apps is not None
            try:
                await asyncio.sleep(0.3)
                leg = f"{ring.call_ref}-agent-{ring.agent_id}"
                spec = LegSpec.agent(
                    leg, ring.agent_id, EndpointKind(ring.endpoint_kind), ring.endpoint_address
                )
                now = datetime.now(UTC)
                await runner(apps.calls.ring_agent, TENANT, ring.call_id, spec, now)
                await runner(apps.calls.answer, TENANT, ring.call_id, leg, datetime.now(UTC))
                await asyncio.sleep(random.uniform(1.0, 3.0))
                await runner(apps.calls.end, TENANT, ring.call_id, "normal", datetime.now(UTC))
            except Exception as error:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(error).__name__}: {error}")

        async def on_command(msg: Msg) -> None:
            command = commands.decode(msg.data)
            if isinstance(command, commands.RingAgent):
                started = offered_at.pop(command.call_id, None)
                if started is not None:
                    latencies.append(time.perf_counter() - started)
                    task = asyncio.create_task(talk(command))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

        await nc.subscribe("cmd.*.telephony.>", cb=on_command)

        async def call(i: int) -> None:
            assert apps is not None
            try:
                ref = f"bench-{i}"
                customer = LegSpec.customer(f"{ref}-in", f"09{i:08d}")
                call_id = await runner(
                    apps.calls.start_inbound, TENANT, ref, "19001234", customer, datetime.now(UTC)
                )
                offered_at[call_id] = time.perf_counter()
                await runner(apps.calls.offer_to_queue, TENANT, call_id, queue, datetime.now(UTC))
            except Exception as error:  # noqa: BLE001
                errors.append(f"{type(error).__name__}: {error}")

        total = int(args.rate * args.seconds)
        lags: list[int] = []

        async def watch() -> None:
            assert service is not None
            while True:
                await asyncio.sleep(1.0)
                lags.append(int(service.health()["lag"]))

        watcher = asyncio.create_task(watch())
        started = time.perf_counter()
        cpu_started = time.process_time()
        for i in range(total):
            # Open-loop arrivals at a steady rate: a slow router does not slow the callers.
            delay = started + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(call(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        deadline = time.perf_counter() + 30
        while offered_at and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        never_rung = len(offered_at)
        while tasks and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        watcher.cancel()
    finally:
        if service is not None:
            await service.stop()
        await nc.close()
        if apps is not None:
            apps.close()
        runner.close()
        server.stop()
    ms = [x * 1000 for x in latencies]
    base = [x * 1000 for x in baseline]
    p99 = percentile(ms, 0.99) if ms else float("inf")
    return {
        "agents": args.agents,
        "calls_per_s": args.rate,
        "calls": total,
        "rung": len(ms),
        "never_rung": never_rung,
        "errors": len(errors),
        "first_errors": errors[:3],
        "seconds": round(elapsed, 1),
        "max_projection_lag_events": max(lags, default=0),
        # Over 1.0 means more than one core's worth: the GIL makes that a queue.
        "process_cpu_per_wall_s": round(cpu / elapsed, 2),
        "cpu_ms_per_call": round(cpu * 1000 / max(total, 1), 1),
        "routing_p50_ms": round(statistics.median(ms), 2) if ms else None,
        "routing_p99_ms": round(p99, 2),
        "routing_max_ms": round(max(ms), 2) if ms else None,
        "baseline_publish_ack_p50_ms": round(statistics.median(base), 2),
        "baseline_publish_ack_p99_ms": round(percentile(base, 0.99), 2),
        "ratio_p99": round(p99 / percentile(base, 0.99), 1),
        "goal_p99_ms": 50,
    }


def router_agents(router: Router) -> list[str]:
    return [r[0] for r in router.connect().execute("SELECT presence FROM agents")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="new calls per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cloudcc-routing-bench-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")
        met = result["routing_p99_ms"] < result["goal_p99_ms"] and not result["never_rung"]
        print(f"{'goal':>28}: p99 < 50 ms — {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
