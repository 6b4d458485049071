"""What one domain command costs: wall and CPU time of `Agents.offer/answer/end_interaction`
on the JetStream event store, one after another, against a nats-server of its own.

Run: `python bench/command_cost.py [--commands 900]`

Baseline, same server, same run: one acknowledged JetStream publish (wall), the one
durable step a command cannot skip. The ratio says what the rest of a command costs (the
aggregate's check against the store, decoding, encoding, thread hand-offs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.natsserver import NatsServer  # noqa: E402
from domain.apps import DomainApps  # noqa: E402
from domain.vocabulary import EndpointKind, Package  # noqa: E402

TENANT = "bench"


async def publish_ack_ms(url: str, n: int = 300) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="BASELINE", subjects=["baseline.>"])
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            await js.publish(f"baseline.{i % 10}", b"x" * 200)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000
    finally:
        await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=900)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(data_dir=Path(tmp) / "nats")
        server.start()
        try:
            base = asyncio.run(publish_ack_ms(server.url))
            apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": server.url})
            try:
                agents = []
                for i in range(50):
                    aid = apps.agents.create_user(
                        TENANT, f"A{i}", f"a{i}", "agent", package=Package.CALL_CENTER
                    )
                    apps.agents.add_endpoint(TENANT, aid, EndpointKind.SIP_PHONE, f"a{i}")
                    apps.agents.go_available(TENANT, aid)
                    agents.append(aid)

                def cycle(n: int) -> None:
                    for k in range(n):
                        aid, work = agents[k % len(agents)], uuid.uuid4()
                        apps.agents.offer(TENANT, aid, work)
                        apps.agents.answer(TENANT, aid, work)
                        apps.agents.end_interaction(TENANT, aid, work, wrap_up=False)

                cycle(100)  # warm the caches
                cycles = max(args.commands // 3, 1)
                wall0, cpu0 = time.perf_counter(), time.process_time()
                cycle(cycles)
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            finally:
                apps.close()
        finally:
            server.stop()
    n = cycles * 3
    result = {
        "commands": n,
        "command_wall_ms": round(wall * 1000 / n, 3),
        "command_cpu_ms": round(cpu * 1000 / n, 3),
        "baseline_publish_ack_p50_ms": round(base, 3),
        "ratio_wall": round(wall * 1000 / n / base, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
