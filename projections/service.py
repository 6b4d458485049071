"""A projection fed from the event store by faststream subscribers.

One ordered push consumer per upstream stream, each starting just after the read
model's tracked position for that stream. Each message is decoded with its application's
own mapper and applied with its position in one SQLite transaction, so a redelivered or
replayed event changes nothing. There are no acks to lose: if applying fails, the
service records the error, drops its consumers and starts new ones from the tracked
positions after a pause, so nothing is skipped and nothing is applied twice.

After each commit the read model's noted changes go out on NATS (projections.live).
A process manager (projections.process) is also woken to `act` after new events and at
its `next_due()`; its decisions are domain commands, run on a worker thread.

faststream is given `declare=False`: the event-store streams are managed by `eventstore`
(faststream's declare would rewrite their config and could switch atomic publish off).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage
from nats.js.api import ConsumerConfig, DeliverPolicy

from eventstore.codec import UndecodableEventError, notification_from_message
from eventstore.layout import StreamLayout
from projections import live
from projections.process import ActContext, ProcessManager
from projections.readmodel import SqliteReadModel

log = logging.getLogger(__name__)

MAX_IDLE_ACT = 30.0  # seconds: a process manager acts at least this often


class ProjectionService:
    """Keeps one read model up to date with its upstream applications' events."""

    def __init__(
        self,
        apps: Callable[[], Any],
        readmodel: SqliteReadModel,
        *,
        retry_after: float = 2.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # The applications are built once NATS is up, by the service started before this
        # one; `apps()` returns a container with `by_name()` (domain.apps.DomainApps).
        self._apps = apps
        self.readmodel = readmodel
        self.name = readmodel.name
        self.layouts = {upstream: StreamLayout(upstream) for upstream in readmodel.upstreams}
        self.retry_after = retry_after
        self.clock = clock
        self.state = "stopped"
        self.error: str | None = None
        self.act_error: str | None = None
        self.stream_last: dict[str, int] = dict.fromkeys(readmodel.upstreams, 0)
        self._url = ""
        self._nc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: NatsBroker | None = None
        self._failed = False
        self._failures = 0
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._retry: asyncio.Task[None] | None = None

    @property
    def acts(self) -> bool:
        return isinstance(self.readmodel, ProcessManager)

    async def start(self, runtime: Any) -> None:
        self._url = runtime.nats_url
        self._nc = runtime.nc
        self._loop = asyncio.get_running_loop()
        await self._subscribe()
        self._tasks.append(self._loop.create_task(self._watch_streams()))
        if self.acts:
            self._dirty.set()  # act once at start: what fell due while we were down
            self._tasks.append(self._loop.create_task(self._act_loop()))

    async def _watch_streams(self) -> None:
        # While events flow, each delivery says how many follow. A parked projection
        # receives nothing, so its lag comes from the stream's end (which may also count
        # a few tracking or operator records: an upper bound is what an operator needs).
        js = self._nc.jetstream()
        while True:
            await asyncio.sleep(1.0)
            if self.state != "error":
                continue
            for upstream, layout in self.layouts.items():
                try:
                    info = await js.stream_info(layout.stream)
                    self.stream_last[upstream] = max(
                        self.stream_last[upstream], info.state.last_seq
                    )
                except Exception as error:  # noqa: BLE001 - health reporting must not die
                    log.debug("stream info for %s: %s", layout.stream, error)

    async def _subscribe(self) -> None:
        positions = await asyncio.to_thread(self.readmodel.positions)
        # Per-message service logs at DEBUG: at INFO they are two lines per event, which
        # buries everything else (and a replay writes thousands).
        broker = NatsBroker(
            self._url.split(","), max_reconnect_attempts=-1, log_level=logging.DEBUG
        )
        for upstream, layout in self.layouts.items():
            broker.subscriber(
                layout.events_filter,
                stream=JStream(layout.stream, declare=False),
                ordered_consumer=True,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=positions[upstream] + 1,
                ),
                ack_policy=AckPolicy.MANUAL,  # an ordered consumer has nothing to ack
            )(self._handler(upstream))
        self._failed = False
        await broker.start()
        self._broker = broker
        self.state = "running"

    def _handler(self, upstream: str) -> Callable[[NatsMessage], Any]:
        layout = self.layouts[upstream]

        async def handle(msg: NatsMessage) -> None:
            await self._handle(upstream, layout, msg)

        return handle

    async def _handle(self, upstream: str, layout: StreamLayout, msg: NatsMessage) -> None:
        if self._failed:
            return
        raw = msg.raw_message
        seq = raw.metadata.sequence.stream
        self.stream_last[upstream] = max(self.stream_last[upstream], seq + raw.metadata.num_pending)
        try:
            notification = notification_from_message(layout, seq, raw.subject, raw.data)
        except UndecodableEventError as error:
            if await self._skipped(upstream, seq):
                await asyncio.to_thread(self.readmodel.advance, seq, upstream)
            else:
                self._fail(upstream, seq, error)
            return
        async with self._lock:  # one writer: the changes noted belong to this event
            try:
                app = self._apps().by_name()[upstream]
                event = app.mapper.to_domain_event(notification)
                await asyncio.to_thread(self.readmodel.apply, seq, event, upstream)
            except Exception as error:  # noqa: BLE001 - any failure parks the projection here
                self._fail(upstream, seq, error)
                return
            changes = self.readmodel.take_changes()
        self._failures = 0
        if self.acts:
            self._dirty.set()
        for change in changes:
            try:
                await self._nc.publish(live.subject(change), live.encode(change))
            except Exception as error:  # noqa: BLE001 - a push lost is refetched later
                log.debug("live update %s not published: %s", change, error)

    async def _skipped(self, upstream: str, seq: int) -> bool:
        """Whether an operator recorded that readers may pass this message."""
        store = getattr(self._apps().by_name()[upstream].recorder, "store", None)
        if store is None:
            return False
        pending = asyncio.run_coroutine_threadsafe(store.is_skipped(seq), store.conn.loop)
        return bool(await asyncio.wrap_future(pending))

    def _fail(self, upstream: str, seq: int, error: Exception) -> None:
        self._failed = True
        self.state = "error"
        self.error = f"stopped at {seq} in {self.layouts[upstream].stream}: {error}"
        log.error("projection %s %s", self.name, self.error)
        if isinstance(error, UndecodableEventError):
            # Waits for an operator: `cloudcc events skip`, then a restart resumes.
            self.error += " (inspect with `cloudcc events show`, skip with `cloudcc events skip`)"
        if self._retry is None or self._retry.done():
            self._retry = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        # Back off while the cause stays (an operator may take a while to decide).
        self._failures += 1
        await asyncio.sleep(min(self.retry_after * 2 ** (self._failures - 1), 60.0))
        await self._close_broker()
        try:
            await self._subscribe()
        except Exception as error:  # noqa: BLE001
            self.error = f"resubscribe failed: {error}"
            self._retry = asyncio.get_running_loop().create_task(self._restart())
            return
        self.error = None

    # ------------------------------------------------------------------ process managers
    async def _act_loop(self) -> None:
        manager = self.readmodel
        assert isinstance(manager, ProcessManager)
        while True:
            due = await asyncio.to_thread(manager.next_due)
            wait = MAX_IDLE_ACT
            if due is not None:
                wait = min(max((due - self.clock()).total_seconds(), 0.0), MAX_IDLE_ACT)
            try:
                await asyncio.wait_for(self._dirty.wait(), wait)
            except TimeoutError:
                pass
            self._dirty.clear()
            if self.state != "running":
                continue  # acting on state that stopped moving would repeat itself
            ctx = ActContext(apps=self._apps(), now=self.clock(), publish=self._publish_blocking)
            try:
                decisions = await asyncio.to_thread(manager.act, ctx)
            except Exception as error:  # noqa: BLE001 - a failed act is retried, never fatal
                self.act_error = f"{type(error).__name__}: {error}"
                log.warning("process manager %s could not act: %s", self.name, self.act_error)
                await asyncio.sleep(self.retry_after)
                self._dirty.set()
                continue
            self.act_error = None
            if decisions:
                log.debug("process manager %s decided %s", self.name, decisions)

    def _publish_blocking(self, subject: str, payload: bytes) -> None:
        """`ActContext.publish`: called from `act` on a worker thread."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._nc.publish(subject, payload), self._loop).result(
            timeout=10
        )

    async def _close_broker(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.stop()

    async def stop(self) -> None:
        for task in (self._retry, *self._tasks):
            if task is not None:
                task.cancel()
        self._tasks.clear()
        await self._close_broker()
        self.state = "stopped"

    def health(self) -> dict[str, Any]:
        positions = self.readmodel.positions()
        lag = sum(max(self.stream_last[u] - positions[u], 0) for u in positions)
        report: dict[str, Any] = {
            "state": self.state,
            "positions": positions,
            "lag": lag,
            "error": self.error,
        }
        if len(positions) == 1:
            report["position"] = next(iter(positions.values()))
        if self.acts:
            report["act_error"] = self.act_error
        return report
