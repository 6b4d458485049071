"""Projection rebuild rate against the raw ordered read of the same stream, in one run.

Run: `python bench/projections_bench.py [--events N] [--json]`

One run starts one nats-server of its own, fills the `customers` application's stream
with N real Customer events (registrations, renames and added identities, saved through
the domain application on the event store), then times, on that same stream:

  raw_ordered_read   stock nats-py ordered consumer, a callback counting to N: the
                     ceiling of any Python reader of this stream;
  rebuild            `projections.rebuild.rebuild_into` of the customers read model
                     from zero, as `cloudcc projections rebuild` does it: notification
                     pages through the store, each event decoded by the application's
                     mapper and applied with its position to a fresh SQLite file.

and prints rebuild / raw (the issue's goal: >= 0.5). The server runs with
`sync_interval: 2m` so that filling the stream is quick; reading does not touch fsync.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baselines import ordered_read  # noqa: E402

from deploy.natsserver import NatsServer  # noqa: E402
from domain.customers import Customers  # noqa: E402
from eventstore.layout import StreamLayout  # noqa: E402
from projections.rebuild import rebuild_into  # noqa: E402
from projections.registry import CUSTOMERS  # noqa: E402

REPEATS = 3


def fill(app: Customers, n: int, threads: int = 8) -> None:
    """About n events: each customer registered, renamed and given a second identity."""
    per_thread = max(n // 3 // threads, 1)

    def work(t: int) -> None:
        for i in range(per_thread):
            tenant = f"bench{t % 4}"
            cid = app.register(tenant, f"Khách {t}-{i}", [("phone", f"09{t:02d}{i:06d}")])
            app.rename(tenant, cid, f"Khách hàng {t}-{i}")
            app.add_identity(tenant, cid, "email", f"c{t}-{i}@example.vn")

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


async def raw_read(url: str, stream: str, n: int) -> float:
    nc = await nats.connect(url)
    try:
        started = time.perf_counter()
        await ordered_read(nc, ">", stream, n)
        return time.perf_counter() - started
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000, help="events in the stream")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats", sync_interval="2m")
        server.start()
        os.environ.update(PERSISTENCE_MODULE="eventstore", NATS_URL=server.url)
        app = Customers()
        try:
            started = time.perf_counter()
            fill(app, args.events)
            n = app.recorder.max_notification_id() or 0
            if not args.json:
                print(
                    f"filled {n} events in {time.perf_counter() - started:.1f} s", file=sys.stderr
                )
            stream = StreamLayout(Customers.name).stream
            raw = [asyncio.run(raw_read(server.url, stream, n)) for _ in range(REPEATS)]
            rebuilt = []
            for r in range(REPEATS):
                path = Path(tmp) / f"rebuild-{r}-{uuid.uuid4().hex}.sqlite"
                started = time.perf_counter()
                with open(os.devnull, "w") as quiet:
                    positions = rebuild_into(CUSTOMERS, {Customers.name: app}, path, progress=quiet)
                rebuilt.append(time.perf_counter() - started)
                assert positions == {Customers.name: n}, (positions, n)
        finally:
            app.close()
            server.stop()
    raw_rate = n / statistics.median(raw)
    rebuild_rate = n / statistics.median(rebuilt)
    result = {
        "events": n,
        "raw_ordered_read_per_s": round(raw_rate),
        "rebuild_per_s": round(rebuild_rate),
        "ratio": round(rebuild_rate / raw_rate, 2),
        "goal": 0.5,
        "repeats": REPEATS,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"projection rebuild bench: {n} customer events, median of {REPEATS}")
        print(f"raw ordered read (stock nats-py)   {raw_rate:>10,.0f}/s")
        print(f"customers read model rebuild       {rebuild_rate:>10,.0f}/s")
        verdict = "met" if result["ratio"] >= 0.5 else "MISSED"
        print(f"rebuild / raw                      {result['ratio']:>10}  goal >= 0.5  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
