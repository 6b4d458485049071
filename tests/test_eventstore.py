"""The event store's own guarantees, beyond the library's conformance cases."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent, Tracking
from helpers import private_server, retry
from nats.aio.msg import Msg

import eventstore
from eventstore import connection
from eventstore.layout import StreamLayout
from eventstore.store import JetStreamStore, TenantMismatchError, UndecodableEventError


@pytest.fixture
def store(nats_url: str) -> Iterator[JetStreamStore]:
    conn = connection.acquire(nats_url)
    s = JetStreamStore(conn, StreamLayout(f"t{uuid.uuid4().hex[:12]}"))
    conn.run(s.ensure_stream())
    yield s
    connection.release(conn)


def ev(
    originator_id: uuid.UUID, version: int, topic: str = "t", state: bytes = b"{}"
) -> StoredEvent:
    return StoredEvent(originator_id, version, topic, state)


def test_two_writers_saving_the_same_version_exactly_one_wins(nats_url: str) -> None:
    # Two processes' worth of state: separate connections and caches, racing per round.
    conns = [connection.NatsConnection(nats_url), connection.NatsConnection(nats_url)]
    app = f"race{uuid.uuid4().hex[:8]}"
    stores = [JetStreamStore(c, StreamLayout(app)) for c in conns]
    conns[0].run(stores[0].ensure_stream())
    recorders = [eventstore.JetStreamApplicationRecorder(s) for s in stores]
    try:
        for _ in range(30):
            agg = uuid.uuid4()
            recorders[0].insert_events([ev(agg, 1)])
            for r in recorders:  # both writers have read version 1
                assert len(r.select_events(agg)) == 1
            barrier = threading.Barrier(2)
            outcomes: list[str] = []

            def write(
                r: eventstore.JetStreamApplicationRecorder,
                state: bytes,
                agg: uuid.UUID = agg,
                barrier: threading.Barrier = barrier,
                outcomes: list[str] = outcomes,
            ) -> None:
                barrier.wait()
                try:
                    r.insert_events([ev(agg, 2, state=state)])
                    outcomes.append("won")
                except IntegrityError:
                    outcomes.append("lost")

            threads = [
                threading.Thread(target=write, args=(r, f"w{i}".encode()))
                for i, r in enumerate(recorders)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(outcomes) == ["lost", "won"]
            assert [e.originator_version for e in recorders[1].select_events(agg)] == [1, 2]
    finally:
        for c in conns:
            c.close()


def test_a_writer_with_a_stale_view_gets_integrity_error(store: JetStreamStore) -> None:
    a = eventstore.JetStreamApplicationRecorder(store)
    other = connection.NatsConnection(store.conn.url)
    try:
        b = eventstore.JetStreamApplicationRecorder(JetStreamStore(other, store.layout))
        agg = uuid.uuid4()
        a.insert_events([ev(agg, 1)])
        b.select_events(agg)
        a.insert_events([ev(agg, 2)])
        with pytest.raises(IntegrityError):
            b.insert_events([ev(agg, 2)])
        b.insert_events([ev(agg, 3)])  # having learnt version 2, b can go on
        assert [e.originator_version for e in a.select_events(agg)] == [1, 2, 3]
    finally:
        other.close()


def test_a_failed_multi_event_save_stores_none_of_its_events(store: JetStreamStore) -> None:
    r = eventstore.JetStreamApplicationRecorder(store)
    a, b = uuid.uuid4(), uuid.uuid4()
    r.insert_events([ev(b, 1)])
    with pytest.raises(IntegrityError):
        # a is new and would be fine; b's version 1 is taken: nothing of the save lands.
        r.insert_events([ev(a, 1), ev(a, 2), ev(b, 1)])
    assert r.select_events(a) == []
    assert r.max_notification_id() == 1


def test_a_save_is_atomic_even_if_the_process_dies_mid_save(
    store: JetStreamStore, tmp_path: Path
) -> None:
    agg = uuid.uuid4()
    script = tmp_path / "die_mid_save.py"
    # The real insert path, killed by SIGKILL just before it would send the commit.
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, uuid
            from eventsourcing.persistence import StoredEvent
            from eventstore import connection
            from eventstore.layout import StreamLayout
            from eventstore.store import JetStreamStore
            conn = connection.NatsConnection({store.conn.url!r})
            store = JetStreamStore(conn, StreamLayout({store.layout.app_name!r}))
            real_request = conn.requests.request
            async def request(subject, payload, *, headers, timeout):
                if headers and headers.get("Nats-Batch-Commit"):
                    await conn.nc.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                return await real_request(subject, payload, headers=headers, timeout=timeout)
            conn.requests.request = request
            agg = uuid.UUID({str(agg)!r})
            conn.run(store.insert([StoredEvent(agg, v, "t", b"x") for v in (1, 2, 3)]))
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=Path(__file__).parent.parent, timeout=60, check=False
    )
    assert proc.returncode == -9
    r = eventstore.JetStreamApplicationRecorder(store)
    assert r.select_events(agg) == []
    assert r.max_notification_id() is None
    # The staged batch is abandoned by the server after 10 s idle; it never lands.
    time.sleep(11)
    assert r.select_events(agg) == []
    r.insert_events([ev(agg, 1)])
    assert r.max_notification_id() == 1


def test_concurrent_saves_of_many_aggregates_all_land_with_unique_ids(
    store: JetStreamStore,
) -> None:
    r = eventstore.JetStreamApplicationRecorder(store)
    ids: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            got = r.insert_events([ev(uuid.uuid4(), 1)])
            assert got is not None
            with lock:
                ids.extend(got)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids) == list(range(1, 401))


def test_subjects_carry_the_tenant(store: JetStreamStore) -> None:
    r = eventstore.JetStreamApplicationRecorder(store)
    app = store.layout.app

    async def watch() -> tuple[list[str], list[str]]:
        nc = await nats.connect(store.conn.url)
        acme: list[str] = []
        globex: list[str] = []

        async def on_acme(m: Msg) -> None:
            acme.append(m.subject)

        async def on_globex(m: Msg) -> None:
            globex.append(m.subject)

        await nc.subscribe(f"es.acme.{app}.*", cb=on_acme)
        await nc.subscribe("es.globex.>", cb=on_globex)
        await nc.flush()
        return acme, globex

    acme, globex = asyncio.run_coroutine_threadsafe(watch(), store.conn.loop).result(5)
    agg = uuid.uuid4()
    r.insert_events([ev(agg, 1)], tenant_id="acme")
    r.insert_events([ev(agg, 2)], tenant_id="acme")
    deadline = time.monotonic() + 5
    while len(acme) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert acme == [f"es.acme.{app}.{agg}"] * 2
    assert globex == []
    with pytest.raises(TenantMismatchError):
        r.insert_events([ev(agg, 3)], tenant_id="globex")
    with pytest.raises(ValueError):
        r.insert_events([ev(uuid.uuid4(), 1)], tenant_id="acme.corp")


def test_process_recorder_commits_events_and_tracking_together(store: JetStreamStore) -> None:
    r = eventstore.JetStreamProcessRecorder(store)
    a = uuid.uuid4()
    r.insert_events([ev(a, 1), ev(a, 2)], tracking=Tracking("upstream", 7))
    with pytest.raises(IntegrityError):
        r.insert_events([ev(uuid.uuid4(), 1)], tracking=Tracking("upstream", 7))
    assert r.max_tracking_id("upstream") == 7
    assert [n.id for n in r.select_notifications(None, 10)] == [1, 2]


def test_an_undecodable_message_stops_readers_at_its_sequence_until_skipped(
    store: JetStreamStore,
) -> None:
    r = eventstore.JetStreamApplicationRecorder(store)
    good = uuid.uuid4()
    r.insert_events([ev(good, 1)])

    async def write_garbage() -> None:
        await store.conn.js.publish(
            f"es.acme.{store.layout.app}.{uuid.uuid4()}", b"\xc1not msgpack"
        )

    store.conn.run(write_garbage())
    r.insert_events([ev(good, 2)])

    # A page that reaches the bad message hands over what precedes it...
    assert [n.id for n in r.select_notifications(None, 10)] == [1]
    # ...and the next read, starting there, says which message and why.
    with pytest.raises(UndecodableEventError) as raised:
        r.select_notifications(2, 10)
    assert raised.value.seq == 2
    assert "es.acme." in raised.value.subject

    with r.subscribe(gt=None) as subscription:
        assert next(subscription).id == 1
        with pytest.raises(UndecodableEventError) as raised_live:
            next(subscription)
        assert raised_live.value.seq == 2

    store.conn.run(store.skip(2, reason="test garbage", by="operator"))
    assert [n.id for n in r.select_notifications(None, 10)] == [1, 3]
    with r.subscribe(gt=None) as subscription:
        assert [next(subscription).id, next(subscription).id] == [1, 3]


def test_reads_and_writes_keep_going_when_the_server_restarts(tmp_path: Path) -> None:
    with private_server(tmp_path, "restart") as (server, s):
        r = eventstore.JetStreamApplicationRecorder(s)
        agg = uuid.uuid4()
        r.insert_events([ev(agg, 1)])
        server.stop()
        server.start()  # same port, same data
        retry(lambda: r.insert_events([ev(agg, 2)]))
        assert [e.originator_version for e in r.select_events(agg)] == [1, 2]


def test_an_acknowledged_append_survives_a_crash_of_nats_server(tmp_path: Path) -> None:
    with private_server(tmp_path, "crash") as (server, s):
        # The embedded default, which this test is about.
        assert "sync_interval: always" in server.config_file.read_text()
        r = eventstore.JetStreamApplicationRecorder(s)
        aggs = [uuid.uuid4() for _ in range(200)]
        for agg in aggs:
            r.insert_events([ev(agg, 1), ev(agg, 2)])
        server.kill()  # SIGKILL: no flush, no goodbye
        server.start()
        notifications = retry(lambda: r.select_notifications(None, 1000))
        assert len(notifications) == 400
        assert {n.originator_id for n in notifications} == set(aggs)


def test_a_slow_subscriber_pauses_delivery_and_loses_nothing(
    store: JetStreamStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventstore.recorders import JetStreamSubscription

    monkeypatch.setattr(JetStreamSubscription, "HIGH_WATER", 40)
    monkeypatch.setattr(JetStreamSubscription, "LOW_WATER", 10)
    r = eventstore.JetStreamProcessRecorder(store)
    for i in range(1, 301):
        # Tracking records interleave with events: the reader must pass over them.
        r.insert_events([ev(uuid.uuid4(), 1)], tracking=Tracking("up", i) if i % 7 == 0 else None)
    seen: list[int] = []
    with r.subscribe(gt=None) as subscription:
        for notification in subscription:
            seen.append(notification.id)
            if len(seen) % 25 == 0:
                time.sleep(0.02)  # the reader is slower than delivery
            assert len(subscription._items) <= 40
            if len(seen) == 300:
                break
    ids = [n.id for n in r.select_notifications(None, 1000)]
    assert len(ids) == 300
    assert seen == ids


def test_notifications_read_back_equal_the_library_s_own() -> None:
    from eventsourcing.persistence import Notification

    from eventstore.codec import notification_from_message
    from eventstore.layout import envelope

    agg = uuid.uuid4()
    data = msgspec.msgpack.Encoder(uuid_format="bytes").encode(envelope(agg, 3, "t", b"s"))
    got = notification_from_message(StreamLayout("x"), 9, "es._.x.y", data)
    want = Notification(id=9, originator_id=agg, originator_version=3, topic="t", state=b"s")
    assert got == want and hash(got) == hash(want) and repr(got) == repr(want)
    assert isinstance(got, Notification)


def test_long_pages_read_ahead_and_still_see_every_write(store: JetStreamStore) -> None:
    # Pages of 256 or more go through a read-ahead cursor parked between calls.
    r = eventstore.JetStreamProcessRecorder(store)
    for i in range(1, 601):
        topic = "odd" if i % 2 else "even"
        r.insert_events(
            [ev(uuid.uuid4(), 1, topic)], tracking=Tracking("up", i) if i % 5 == 0 else None
        )
    all_ids = [n.id for n in r.select_notifications(None, 10_000)]
    assert len(all_ids) == 600

    pages: list[int] = []
    start = 0
    while page := r.select_notifications(start, 256, inclusive_of_start=False):
        pages += [n.id for n in page]
        start = page[-1].id
    assert pages == all_ids

    # Read-your-writes: the parked cursor serves what was stored after it was parked.
    r.insert_events([ev(uuid.uuid4(), 1, "odd")])
    fresh = r.select_notifications(start, 256, inclusive_of_start=False)
    assert [n.id for n in fresh] == [r.max_notification_id()]

    assert [n.id for n in r.select_notifications(None, 300, stop=all_ids[9])] == all_ids[:10]
    odd = r.select_notifications(None, 300, topics=["odd"])
    assert len(odd) == 300 and {n.topic for n in odd} == {"odd"}


def test_a_long_page_stops_before_an_undecodable_message(store: JetStreamStore) -> None:
    r = eventstore.JetStreamApplicationRecorder(store)
    for _ in range(5):
        r.insert_events([ev(uuid.uuid4(), 1)])
    store.conn.run(store.conn.js.publish(f"es._.{store.layout.app}.{uuid.uuid4()}", b"junk"))
    r.insert_events([ev(uuid.uuid4(), 1)])
    assert [n.id for n in r.select_notifications(None, 500)] == [1, 2, 3, 4, 5]
    with pytest.raises(UndecodableEventError) as raised:
        r.select_notifications(6, 500)
    assert raised.value.seq == 6


def test_a_long_read_answers_flow_control_and_never_stalls(
    store: JetStreamStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventstore import reader

    statuses: list[bool] = []
    restarts: list[str] = []
    on_status, restart = reader.OrderedReader._on_status, reader.OrderedReader.restart

    def count_status(self: reader.OrderedReader, reply: str, headers: bytes) -> None:
        statuses.append(bool(reply))  # a flow-control request carries a reply subject
        on_status(self, reply, headers)

    def count_restart(self: reader.OrderedReader, why: str) -> None:
        restarts.append(why)
        restart(self, why)

    monkeypatch.setattr(reader.OrderedReader, "_on_status", count_status)
    monkeypatch.setattr(reader.OrderedReader, "restart", count_restart)

    async def fill() -> None:
        for _ in range(40):
            await asyncio.gather(
                *(store.insert([ev(uuid.uuid4(), 1, state=b"x" * 400)]) for _ in range(500))
            )

    store.conn.run(fill(), timeout=120)
    r = eventstore.JetStreamApplicationRecorder(store)
    with r.subscribe(gt=None) as subscription:
        ids = [next(subscription).id for _ in range(20_000)]
    assert ids == list(range(1, 20_001))
    assert any(statuses), "the server asked for flow control and was answered"
    assert restarts == []


def test_a_subscription_carries_on_after_the_server_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventstore import reader

    monkeypatch.setattr(reader, "HEARTBEAT", 0.5)  # notice the silence within 1.5 s
    with private_server(tmp_path, "resub") as (server, s):
        r = eventstore.JetStreamApplicationRecorder(s)
        r.insert_events([ev(uuid.uuid4(), 1)])
        with r.subscribe(gt=None) as subscription:
            assert next(subscription).id == 1
            server.stop()
            server.start()
            retry(lambda: r.insert_events([ev(uuid.uuid4(), 1)]))
            assert next(subscription).id == 2


def _drop_first_reply(conn: connection.NatsConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next append reaches the server, but its acknowledgement is lost."""
    real = conn.requests.request
    dropped: list[str] = []

    async def request(
        subject: str, payload: bytes, *, headers: dict[str, str] | None, timeout: float
    ):  # type: ignore[no-untyped-def]
        reply = await real(subject, payload, headers=headers, timeout=timeout)
        if not dropped and not subject.startswith("$JS.API"):
            dropped.append(subject)
            raise nats.errors.TimeoutError
        return reply

    monkeypatch.setattr(conn.requests, "request", request)


def test_a_stored_append_whose_ack_was_lost_is_reported_stored(
    store: JetStreamStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = eventstore.JetStreamProcessRecorder(store)
    agg = uuid.uuid4()
    r.insert_events([ev(agg, 1)])
    _drop_first_reply(store.conn, monkeypatch)
    assert r.insert_events([ev(agg, 2), ev(agg, 3)]) == [2, 3]
    _drop_first_reply(store.conn, monkeypatch)
    r.insert_tracking(Tracking("up", 5))  # a tracking record alone, too
    assert r.max_tracking_id("up") == 5
    assert [e.originator_version for e in r.select_events(agg)] == [1, 2, 3]


def test_appending_while_disconnected_fails_at_once_and_lands_nowhere(tmp_path: Path) -> None:
    with private_server(tmp_path, "offline") as (server, s):
        conn = s.conn
        r = eventstore.JetStreamApplicationRecorder(s)
        server.stop()
        started = time.monotonic()
        with pytest.raises(OperationalError, match="not connected"):
            r.insert_events([ev(uuid.uuid4(), 1)])
        assert time.monotonic() - started < 2
        server.start()
        deadline = time.monotonic() + 20
        while not conn.nc.is_connected and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # anything buffered would have been flushed by now
        assert r.max_notification_id() is None


def test_a_delivery_lost_at_the_end_of_the_stream_is_noticed_by_the_heartbeat(
    store: JetStreamStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventstore import reader

    monkeypatch.setattr(reader, "HEARTBEAT", 0.5)
    real = reader.OrderedReader._on_frame
    lost: list[int] = []

    def lossy(
        self: reader.OrderedReader, subject: str, reply: str, data: bytes, headers: bytes
    ) -> None:
        if reply and not lost and reply.split(".")[5] == "2":
            lost.append(2)  # as if the network ate it
            return
        real(self, subject, reply, data, headers)

    monkeypatch.setattr(reader.OrderedReader, "_on_frame", lossy)
    r = eventstore.JetStreamApplicationRecorder(store)
    r.insert_events([ev(uuid.uuid4(), 1)])
    r.insert_events([ev(uuid.uuid4(), 1)])
    started = time.monotonic()
    with r.subscribe(gt=None) as subscription:
        assert [next(subscription).id, next(subscription).id] == [1, 2]
    assert lost == [2]
    assert time.monotonic() - started < 5


def test_stopped_subscriptions_leave_no_consumer_behind(
    store: JetStreamStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventstore.recorders import JetStreamSubscription

    monkeypatch.setattr(JetStreamSubscription, "HIGH_WATER", 5)
    monkeypatch.setattr(JetStreamSubscription, "LOW_WATER", 1)
    r = eventstore.JetStreamApplicationRecorder(store)
    for _ in range(50):
        r.insert_events([ev(uuid.uuid4(), 1)])
    for _ in range(20):
        with r.subscribe(gt=None) as subscription:
            for _ in range(7):  # enough to pause and resume at least once
                next(subscription)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        info = store.conn.run(store.conn.js.stream_info(store.layout.stream))
        if info.state.consumer_count == 0:
            break
        time.sleep(0.1)
    assert info.state.consumer_count == 0
