"""Throughput of the JetStream event store against raw nats-py and eventsourcing's SQLite.

Run: `python bench/eventstore_bench.py [--events N] [--read-events M] [--sync always|2m]
[--window W] [--json]`

One run starts one nats-server of its own (temporary directory, random port, JetStream
`sync_interval` from `--sync`; "always", the default, is what the embedded product ships:
every acknowledged write is fsynced first) and one `NatsConnection` (a loop thread and a
nats-py client, as the product uses). Every stored event carries the same ~200 B state (a
msgpack'd dict with a UUID, a datetime and a few strings); the raw publishes send the
store's own envelope of such an event, so both put the same bytes (~290 B) on the wire.

What each line measures (N messages or events per append line, M per read line: reads are
~20x faster, so they get more to last long enough to be more than noise; untimed warm-up
before each phase; both read streams are topped up to M untimed, as their phases wrote):

raw: nats-py on a plain R1 file stream, no store code
  raw_acked           `await js.publish` in a loop, one in flight (8 subjects).
  raw_acked_checked   same, plus the two expected-last-subject-sequence headers the store
                      sends: the server's cost of the concurrency check (diagnostic).
  raw_pipelined       `asyncio.gather` of `js.publish` in windows of W (W subjects).
  raw_pipelined_inbox `nc.publish` with one reply inbox, at most W unacknowledged, acks
                      counted in a callback: the client's ceiling (diagnostic).
  raw_ordered_read    `js.subscribe(ordered_consumer=True)`, a callback counting to N.
  raw_read_store_stream  same, on the store's stream (what store_append_b wrote), no
                      filter: what the headers stored with each event cost (diagnostic).
  raw_read_store_filter  same, with the store's subject filter `es.*.<app>.*`: what the
                      server's filtered delivery costs (diagnostic).

store: eventstore, one event per save, every save a new version of an aggregate the store
has seen (the cached-tail path: one publish with the expected-sequence check, no lookup)
  store_append_a        sync `JetStreamApplicationRecorder.insert_events([e])` in a loop
                        (8 aggregates, next versions after the warm-up): one at a time.
  store_append_a_async  `await store.insert([e])` in a loop on the connection's loop: (a)
                        without the thread hop of `NatsConnection.run` (diagnostic).
  store_append_b        `asyncio.gather` of `store.insert([e])` in windows of W on the
                        connection's loop (W aggregates, one new version of each per window).
  store_append_c        T threads calling the sync recorder, 4 aggregates per thread.
  store_read_paging     sync `select_notifications(start, 1000)` pages, as a projection
                        runner reads, decoded into `Notification`s.
  store_read_subscribe  sync recorder's `subscribe()` iterated from a thread (ordered push
                        consumer, notifications decoded on the loop, handed over by a queue).

sqlite: eventsourcing 9.5's `SQLiteApplicationRecorder` (file DB, WAL as it configures)
  sqlite_insert       `insert_events([e])` in a loop, 8 aggregates, as store_append_a.
  sqlite_read_paging  `select_notifications(start, 1000)` pages.

The footer gives the stored bytes per message of the raw and the store stream (same
payload: the difference is the headers the store's messages keep).

Ratios (goals from the design notes): store_append_b / raw_pipelined >= 0.7, store reads /
raw_ordered_read >= 0.7 (both the paging and the subscribe variant); store_append_a /
raw_acked and store / SQLite are reported without a goal. Append lines are single runs,
read lines the median of 3 (they are short). On a shared 2-core VM expect +-15 % between
runs, more with `--sync always`, where every append line is bound by fsync latency.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without install

from baselines import ordered_read  # noqa: E402

from deploy.natsserver import NatsServer, nats_server_binary
from eventstore.connection import NatsConnection
from eventstore.layout import StreamLayout, envelope
from eventstore.recorders import JetStreamApplicationRecorder
from eventstore.store import JetStreamStore

T = TypeVar("T")

DEFAULT_EVENTS = 8000
DEFAULT_READ_EVENTS = 40_000
DEFAULT_WINDOW = 512
THREADS = 12
SEQUENTIAL_AGGREGATES = 8
PAGE = 1000
WARMUP = 200
READ_REPEATS = 5
TOPIC = "domain.calls:Call.AgentAssigned"
RAW_STREAM = "RAWBENCH"
RAW_CHECKED_STREAM = "RAWBENCH_CHECKED"
STORE_READ_APP = "bench_b"  # the store stream the read lines read
GOAL = 0.7
GROUPS = ["raw append", "raw read", "store append", "store read", "sqlite"]

_envelope_encoder = msgspec.msgpack.Encoder(uuid_format="bytes")


# ----------------------------------------------------------------------------- data
def event_state(i: int) -> bytes:
    """A realistic transcoded event state: ~200 bytes of msgpack."""
    return msgspec.msgpack.encode(
        {
            "call_id": uuid.uuid4(),
            "at": dt.datetime.now(dt.UTC),
            "agent_id": f"agent-{i % 997:04d}",
            "queue": "support-en",
            "caller": "+4915112345678",
            "callee": "+498912345678",
            "disposition": "answered",
            "note": "asked about invoice 2024-11-0042; transferred to billing",
            "n": i,
        }
    )


def stored_event(originator_id: uuid.UUID, version: int, i: int) -> StoredEvent:
    return StoredEvent(originator_id, version, TOPIC, event_state(i))


def raw_payload() -> bytes:
    """The store's envelope of one such event: what the store puts on the wire."""
    return _envelope_encoder.encode(envelope(uuid.uuid4(), 2, TOPIC, event_state(0)))


def round_robin(aggregates: list[uuid.UUID], count: int, first_version: int) -> list[StoredEvent]:
    """`count` events: the next version of each aggregate in turn."""
    k = len(aggregates)
    return [stored_event(aggregates[i % k], first_version + i // k, i) for i in range(count)]


# -------------------------------------------------------------------------- results
@dataclass
class Result:
    name: str
    group: str
    n: int
    seconds: float
    what: str

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")


class Bench:
    """Runs the phases against one server and one connection; collects `Result`s."""

    def __init__(
        self, url: str, tmp: Path, n: int, window: int, progress: bool, read_n: int = 0
    ) -> None:
        self.n = n
        # Reads are ~20x faster than fsynced appends: they get more events, so that a read
        # line lasts long enough (~0.5 s) to be more than noise.
        self.read_n = max(read_n, n)
        self.window = window
        self.tmp = tmp
        self.progress = progress
        self.results: dict[str, Result] = {}
        self.conn = NatsConnection(url, name="eventstore-bench")
        # The raw baselines use stock nats-py (not the store's FastClient), on the same loop.
        self.raw_nc: NATS = self.on_loop(nats.connect(url, name="eventstore-bench-raw"))
        self.payload = raw_payload()
        self.stored_bytes: dict[str, float] = {}

    def close(self) -> None:
        self.on_loop(self.raw_nc.close())
        self.conn.close()

    # ---------------------------------------------------------------- helpers
    def on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.conn.loop).result()

    def record(self, name: str, group: str, n: int, seconds: float, what: str) -> None:
        result = Result(name, group, n, seconds, what)
        self.results[name] = result
        if self.progress:
            print(f"  .. {name:<22} {result.rate:>10,.0f}/s", file=sys.stderr, flush=True)

    def timed(
        self,
        name: str,
        group: str,
        what: str,
        n: int,
        run: Callable[[], object],
        repeats: int = 1,
    ) -> None:
        """Time `run`; with repeats (short read phases), keep the median."""
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        if repeats > 1:
            what = f"{what} (median of {repeats})"
        self.record(name, group, n, statistics.median(times), what)

    def new_store(self, app: str) -> tuple[JetStreamStore, JetStreamApplicationRecorder]:
        store = JetStreamStore(self.conn, StreamLayout(app))
        self.on_loop(store.ensure_stream())
        return store, JetStreamApplicationRecorder(store)

    # -------------------------------------------------------------------- raw
    def raw(self) -> None:
        nc, n, w, payload = self.raw_nc, self.n, self.window, self.payload
        js = nc.jetstream()
        for name, subject in [(RAW_STREAM, "raw.>"), (RAW_CHECKED_STREAM, "rawck.>")]:
            config = StreamConfig(name=name, subjects=[subject], storage=StorageType.FILE)
            self.on_loop(js.add_stream(config))
        few = [f"raw._.bench.{uuid.uuid4()}" for _ in range(SEQUENTIAL_AGGREGATES)]
        # Own stream, so that RAW_STREAM holds only messages without headers.
        checked = [f"rawck._.bench.{uuid.uuid4()}" for _ in range(SEQUENTIAL_AGGREGATES)]
        many = [f"raw._.bench.{uuid.uuid4()}" for _ in range(w)]

        async def acked(count: int) -> None:
            for i in range(count):
                await js.publish(few[i % len(few)], payload)

        async def acked_checked(count: int) -> None:
            last: dict[str, int] = {}
            for s in checked:
                last[s] = (await js.publish(s, payload)).seq
            for i in range(count):
                s = checked[i % len(checked)]
                headers = {
                    "Nats-Expected-Last-Subject-Sequence": str(last[s]),
                    "Nats-Expected-Last-Subject-Sequence-Subject": s.replace("._.", ".*.", 1),
                }
                last[s] = (await js.publish(s, payload, headers=headers)).seq

        async def pipelined(count: int) -> None:
            for start in range(0, count, w):
                stop = min(start + w, count)
                await asyncio.gather(
                    *(js.publish(many[i % w], payload) for i in range(start, stop))
                )

        async def pipelined_inbox(count: int) -> None:
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            slots = asyncio.Semaphore(w)
            acks = errors = 0

            async def on_ack(msg: Msg) -> None:
                nonlocal acks, errors
                acks += 1
                errors += b'"error"' in msg.data
                slots.release()
                if acks == count and not done.done():
                    done.set_result(None)

            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox, cb=on_ack, pending_msgs_limit=4 * w)
            try:
                for i in range(count):
                    await slots.acquire()
                    await nc.publish(many[i % w], payload, reply=inbox)
                await asyncio.wait_for(done, 60)
            finally:
                await sub.unsubscribe()
            if errors:
                raise RuntimeError(f"{errors} publishes refused")

        def run(phase: Callable[[int], Coroutine[Any, Any, None]]) -> Callable[[], None]:
            return lambda: self.on_loop(phase(n))

        phases = [
            ("raw_acked", "js.publish awaited one by one", acked),
            ("raw_acked_checked", "same + expected-last-subject-seq headers", acked_checked),
            ("raw_pipelined", f"gather(js.publish) in windows of {w}", pipelined),
            ("raw_pipelined_inbox", f"nc.publish + reply inbox, {w} in flight", pipelined_inbox),
        ]
        for name, what, phase in phases:
            self.on_loop(phase(WARMUP))
            self.timed(name, "raw append", what, n, run(phase))

    def fill_reads(self) -> None:
        """Top up both read streams to `read_n` messages (untimed), as their phases wrote."""
        m, w = self.read_n, self.window
        store, _ = self.new_store(STORE_READ_APP)
        have = self.on_loop(store.max_notification_id()) or 0
        # Like (b): W aggregates, each created once and then given new versions.
        fresh = round_robin([uuid.uuid4() for _ in range(w)], max(m - have, 0), 1)

        async def store_windows() -> None:
            for start in range(0, len(fresh), w):
                await asyncio.gather(*(store.insert([e]) for e in fresh[start : start + w]))

        self.on_loop(store_windows())
        js = self.raw_nc.jetstream()
        have = self.on_loop(js.stream_info(RAW_STREAM)).state.messages
        subjects = [f"raw._.bench.{uuid.uuid4()}" for _ in range(w)]

        async def raw_windows(count: int) -> None:
            for start in range(0, count, w):
                stop = min(start + w, count)
                await asyncio.gather(
                    *(js.publish(subjects[i % w], self.payload) for i in range(start, stop))
                )

        self.on_loop(raw_windows(max(m - have, 0)))

    def raw_read(self) -> None:
        n = self.read_n

        async def read(subject: str, stream: str) -> None:
            await ordered_read(self.raw_nc, subject, stream, n, timeout=120)

        self.timed(
            "raw_ordered_read",
            "raw read",
            "ordered consumer, callback counts",
            n,
            lambda: self.on_loop(read("raw.>", RAW_STREAM)),
            READ_REPEATS,
        )
        layout = StreamLayout(STORE_READ_APP)
        self.timed(
            "raw_read_store_stream",
            "raw read",
            "same on the store's stream, no filter",
            n,
            lambda: self.on_loop(read(">", layout.stream)),
            READ_REPEATS,
        )
        self.timed(
            "raw_read_store_filter",
            "raw read",
            f"same, with the store's filter {layout.events_filter}",
            n,
            lambda: self.on_loop(read(layout.events_filter, layout.stream)),
            READ_REPEATS,
        )

    # ------------------------------------------------------------------ store
    def store_appends(self) -> None:
        n, w = self.n, self.window

        # (a) sync recorder, one save at a time.
        _, recorder = self.new_store("bench_a")
        aggs = [uuid.uuid4() for _ in range(SEQUENTIAL_AGGREGATES)]
        warm = round_robin(aggs, WARMUP, 1)
        events = round_robin(aggs, n, 1 + WARMUP // len(aggs))
        for e in warm:
            recorder.insert_events([e])

        def sequential() -> None:
            for e in events:
                recorder.insert_events([e])

        self.timed(
            "store_append_a", "store append", "sync insert_events([e]) one by one", n, sequential
        )

        # (a-async) same, awaited on the connection's loop.
        store, _ = self.new_store("bench_a_async")
        aggs = [uuid.uuid4() for _ in range(SEQUENTIAL_AGGREGATES)]
        warm = round_robin(aggs, WARMUP, 1)
        events = round_robin(aggs, n, 1 + WARMUP // len(aggs))

        async def awaited(batch: list[StoredEvent]) -> None:
            for e in batch:
                await store.insert([e])

        self.on_loop(awaited(warm))
        self.timed(
            "store_append_a_async",
            "store append",
            "await store.insert([e]) one by one",
            n,
            lambda: self.on_loop(awaited(events)),
        )

        # (b) many aggregates concurrently: one new version of each of W aggregates per window.
        store, _ = self.new_store(STORE_READ_APP)
        aggs = [uuid.uuid4() for _ in range(w)]
        warm = round_robin(aggs, w, 1)
        events = round_robin(aggs, n, 2)

        async def windows(batch: list[StoredEvent]) -> int:
            stored = 0
            for start in range(0, len(batch), w):
                ids = await asyncio.gather(*(store.insert([e]) for e in batch[start : start + w]))
                stored += len(ids)
            return stored

        self.on_loop(windows(warm))
        self.timed(
            "store_append_b",
            "store append",
            f"gather(store.insert([e])) in windows of {w}",
            n,
            lambda: self.on_loop(windows(events)),
        )

        # (c) THREADS threads on the sync recorder.
        _, recorder = self.new_store("bench_c")
        per_thread = n // THREADS
        barrier = threading.Barrier(THREADS + 1)
        errors: list[BaseException] = []

        def worker() -> None:
            mine = [uuid.uuid4() for _ in range(4)]
            for e in round_robin(mine, 4, 1):
                recorder.insert_events([e])
            batch = round_robin(mine, per_thread, 2)
            barrier.wait()
            try:
                for e in batch:
                    recorder.insert_events([e])
            except BaseException as error:  # noqa: BLE001 - reported after the run
                errors.append(error)

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        self.record(
            "store_append_c",
            "store append",
            per_thread * THREADS,
            time.perf_counter() - start,
            f"{THREADS} threads, sync insert_events([e])",
        )
        if errors:
            raise RuntimeError(f"threaded appends failed: {errors[0]!r}")

    def store_reads(self) -> None:
        n = self.read_n
        # Read what (b) and fill_reads wrote, concurrently as on a busy stream.
        _, recorder = self.new_store(STORE_READ_APP)

        def paging() -> None:
            got, start = 0, 1
            while got < n:
                page = recorder.select_notifications(start, min(PAGE, n - got))
                if not page:
                    raise RuntimeError(f"stream ended after {got} notifications")
                got += len(page)
                start = page[-1].id + 1

        def subscribing() -> None:
            with recorder.subscribe(gt=None) as subscription:
                for got, _ in enumerate(subscription, start=1):
                    if got == n:
                        return

        what = f"select_notifications pages of {PAGE}"
        self.timed("store_read_paging", "store read", what, n, paging, READ_REPEATS)
        what = "subscribe() iterated in a thread"
        self.timed("store_read_subscribe", "store read", what, n, subscribing, READ_REPEATS)

    # ----------------------------------------------------------------- sqlite
    def sqlite(self) -> None:
        n = self.n
        datastore = SQLiteDatastore(str(self.tmp / "sqlite" / "events.sqlite"))
        recorder = SQLiteApplicationRecorder(datastore)
        recorder.create_table()
        aggs = [uuid.uuid4() for _ in range(SEQUENTIAL_AGGREGATES)]
        for e in round_robin(aggs, WARMUP, 1):
            recorder.insert_events([e])
        events = round_robin(aggs, n, 1 + WARMUP // len(aggs))

        def insert() -> None:
            for e in events:
                recorder.insert_events([e])

        def read() -> None:
            got, start = 0, 1
            while got < n:
                page = recorder.select_notifications(start, min(PAGE, n - got))
                got += len(page)
                start = page[-1].id + 1

        self.timed("sqlite_insert", "sqlite", "insert_events([e]) one by one", n, insert)
        what = f"select_notifications pages of {PAGE}"
        self.timed("sqlite_read_paging", "sqlite", what, n, read, READ_REPEATS)
        datastore.close()

    def storage(self) -> dict[str, float]:
        """Stored bytes per message of the raw stream and of the store's stream."""

        async def per_message(stream: str) -> float:
            state = (await self.conn.js.stream_info(stream)).state
            return round(state.bytes / max(state.messages, 1), 1)

        return {
            "raw": self.on_loop(per_message(RAW_STREAM)),
            "store": self.on_loop(per_message(StreamLayout(STORE_READ_APP).stream)),
        }

    def run(self) -> None:
        (self.tmp / "sqlite").mkdir()
        self.raw()
        self.store_appends()
        self.fill_reads()
        self.raw_read()
        self.store_reads()
        self.sqlite()
        self.stored_bytes = self.storage()


# ---------------------------------------------------------------------------- report
RATIOS: list[tuple[str, str, str, float | None]] = [
    ("append_b_vs_raw_pipelined", "store_append_b", "raw_pipelined", GOAL),
    ("append_b_vs_raw_pipelined_inbox", "store_append_b", "raw_pipelined_inbox", None),
    ("append_a_vs_raw_acked", "store_append_a", "raw_acked", None),
    ("append_a_async_vs_raw_acked", "store_append_a_async", "raw_acked", None),
    ("raw_acked_checked_vs_raw_acked", "raw_acked_checked", "raw_acked", None),
    ("read_paging_vs_raw_ordered", "store_read_paging", "raw_ordered_read", GOAL),
    ("read_subscribe_vs_raw_ordered", "store_read_subscribe", "raw_ordered_read", GOAL),
    ("raw_read_store_stream_vs_raw_ordered", "raw_read_store_stream", "raw_ordered_read", None),
    ("raw_read_store_filter_vs_raw_ordered", "raw_read_store_filter", "raw_ordered_read", None),
    (
        "read_subscribe_vs_raw_read_store_filter",
        "store_read_subscribe",
        "raw_read_store_filter",
        None,
    ),
    ("append_a_vs_sqlite_insert", "store_append_a", "sqlite_insert", None),
    ("append_b_vs_sqlite_insert", "store_append_b", "sqlite_insert", None),
    ("read_paging_vs_sqlite_read", "store_read_paging", "sqlite_read_paging", None),
]


def machine(sync: str) -> dict[str, Any]:
    try:
        out = subprocess.run(
            [nats_server_binary(), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as error:
        out = f"unknown ({error})"
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "nats_server": out.removeprefix("nats-server: "),
        "nats_py": version("nats-py"),
        "eventsourcing": version("eventsourcing"),
        "sync_interval": sync,
    }


def ratios(results: dict[str, Result]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, num, den, goal in RATIOS:
        value = results[num].rate / results[den].rate
        out[name] = {
            "value": round(value, 3),
            "goal": goal,
            "met": None if goal is None else value >= goal,
        }
    return out


def print_table(info: dict[str, Any], bench: Bench, elapsed: float) -> None:
    print(
        f"eventstore bench: N={bench.n} per append line, {bench.read_n} per read line, "
        f"window {bench.window}, {THREADS} threads, "
        f"{len(bench.payload)} B payload on the wire"
    )
    print(
        f"machine: nproc={info['nproc']} (usable {info['cpus_usable']}), {info['platform']}, "
        f"Python {info['python']}, nats-server {info['nats_server']}, nats-py {info['nats_py']}, "
        f"eventsourcing {info['eventsourcing']}"
    )
    print(f"jetstream sync_interval: {info['sync_interval']}")
    print()
    print(f"{'line':<22} {'rate/s':>10} {'seconds':>8}  what")
    for group in GROUPS:
        print(f"-- {group}")
        for r in bench.results.values():
            if r.group == group:
                print(f"{r.name:<22} {r.rate:>10,.0f} {r.seconds:>8.2f}  {r.what}")
    print()
    print(f"{'ratio':<40} {'value':>6}  goal")
    for name, ratio in ratios(bench.results).items():
        goal = ""
        if ratio["goal"] is not None:
            goal = f">= {ratio['goal']}  " + ("met" if ratio["met"] else "MISSED")
        print(f"{name:<40} {ratio['value']:>6.2f}  {goal}")
    print()
    stored = bench.stored_bytes
    print(
        f"stored bytes per message: raw stream {stored['raw']:.0f}, "
        f"store stream {stored['store']:.0f} (same payload; the store's messages keep their "
        f"expected-sequence headers)"
    )
    print(f"total {elapsed:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="N per append line")
    parser.add_argument(
        "--read-events", type=int, default=DEFAULT_READ_EVENTS, help="N per read line"
    )
    parser.add_argument("--sync", default="always", help="JetStream sync_interval: always, 2m, ...")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="in-flight window")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    args = parser.parse_args(argv)
    if args.events < max(THREADS, args.window):
        parser.error(f"--events must be at least {max(THREADS, args.window)}")

    began = time.perf_counter()
    info = machine(args.sync)
    with tempfile.TemporaryDirectory(prefix="eventstore-bench-") as tmp:
        server = NatsServer(Path(tmp) / "nats", sync_interval=args.sync)
        server.start()
        try:
            bench = Bench(
                server.url,
                Path(tmp),
                args.events,
                args.window,
                progress=not args.json,
                read_n=args.read_events,
            )
            try:
                bench.run()
            finally:
                bench.close()
        finally:
            server.stop()
    elapsed = time.perf_counter() - began

    if args.json:
        print(
            json.dumps(
                {
                    "machine": info,
                    "events": args.events,
                    "window": args.window,
                    "threads": THREADS,
                    "payload_bytes": len(bench.payload),
                    "stored_bytes_per_message": bench.stored_bytes,
                    "results": {
                        r.name: {
                            "n": r.n,
                            "seconds": round(r.seconds, 4),
                            "rate": round(r.rate, 1),
                            "what": r.what,
                        }
                        for r in bench.results.values()
                    },
                    "ratios": ratios(bench.results),
                    "elapsed_seconds": round(elapsed, 1),
                },
                indent=2,
            )
        )
    else:
        print_table(info, bench, elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
