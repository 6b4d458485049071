"""Reading an application's stream in order, fast: a push consumer read straight off the wire.

Used by subscriptions (a reading thread drains `items`) and by `select_notifications`
paging (a parked cursor keeps reading ahead for the next page). Everything here runs on
the connection's loop, except that another thread may `popleft` from `items`.

It does what nats-py's ordered consumer does — an ephemeral push consumer without acks,
with flow control and idle heartbeats, recreated from the last sequence taken in whenever
a delivery is missed — but each frame is handled synchronously where `FastClient` reads
it, without nats-py's `Msg`, header parsing, pending queue and task switch per message:
those cost more than the rest of reading an event. Other choices:
- the consumer is unfiltered and tracking/operator records are dropped here, because a
  subject filter makes nats-server 2.15 several times slower at delivering;
- when `items` reaches `high_water` the consumer is dropped, and `resume()` recreates it
  just after the last message taken in, so a slow reader costs bounded memory;
- a consumer silent for three heartbeats (server restarted, connection lost) is
  recreated the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING

from eventsourcing.persistence import Notification
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from eventstore.codec import UndecodableEventError, notification_from_message

if TYPE_CHECKING:
    from eventstore.connection import FastClient
    from eventstore.store import JetStreamStore

log = logging.getLogger(__name__)

Item = Notification | UndecodableEventError
HEARTBEAT = 5.0  # seconds between idle heartbeats of the server
_STATUS = 8  # index of the byte after "NATS/1.0": a space starts a status line
_STALLED = b"Nats-Consumer-Stalled:"
_LAST_CONSUMER = b"Nats-Last-Consumer:"


def _header(headers: bytes, name: bytes) -> str:
    """One header's value from a raw status frame, or ''."""
    start = headers.find(name)
    if start < 0:
        return ""
    start += len(name)
    end = headers.find(b"\r\n", start)
    return headers[start : end if end >= 0 else None].strip().decode()


class OrderedReader:
    """Notifications after `after`, appended to `items` as they are delivered."""

    def __init__(
        self,
        store: JetStreamStore,
        after: int,
        *,
        topics: Collection[str] = (),
        high_water: int = 20_000,
        on_new: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.items: deque[Item] = deque()
        self.last_seq = after  # of the last message taken in, event or not
        self.pending: int | None = None  # messages after it when it was delivered
        self.paused = False
        self.ended = False
        self.wanted = frozenset(topics)
        self._high_water = high_water
        self._on_new = on_new
        self._generation = 0
        self._resuming = False
        self._holding = False
        self._sid: int | None = None
        self._consumer: str | None = None
        self._next_delivery = 1
        self._heard = 0.0
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def caught_up(self) -> bool:
        """Everything stored when the last message was delivered has been taken in."""
        return self.pending == 0 and not self.paused

    @property
    def _nc(self) -> FastClient:
        return self.store.conn.nc  # type: ignore[return-value]

    async def start(self) -> None:
        """(Re)create the consumer just after `last_seq`."""
        await self._drop_consumer()
        self._generation += 1
        generation = self._generation
        self.paused = False
        self._resuming = False
        self._next_delivery = 1
        self._heard = time.monotonic()
        nc = self._nc
        inbox = nc.new_inbox()

        def on_frame(subject: str, reply: str, data: bytes, headers: bytes) -> None:
            if generation == self._generation:
                self._on_frame(subject, reply, data, headers)

        sub = await nc.subscribe(inbox, cb=_unused)
        self._sid = sub._id
        nc.direct_handlers[sub._id] = on_frame
        layout = self.store.layout
        info = await self.store.conn.js.add_consumer(
            layout.stream,
            ConsumerConfig(
                deliver_subject=inbox,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.last_seq + 1,
                ack_policy=AckPolicy.NONE,
                max_deliver=1,
                flow_control=True,
                idle_heartbeat=HEARTBEAT,
                mem_storage=True,
                num_replicas=1,
                inactive_threshold=3 * HEARTBEAT,
            ),
        )
        if generation != self._generation or self.ended:
            # Paused or closed while the consumer was being made: it is already stale.
            nc.direct_handlers.pop(sub._id, None)
            await _quietly(sub.unsubscribe())
            await _quietly(self.store.conn.js.delete_consumer(layout.stream, info.name))
            return
        self._consumer = info.name
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    def _on_frame(self, subject: str, reply: str, data: bytes, headers: bytes) -> None:
        self._heard = time.monotonic()
        if headers and headers[_STATUS] == 32:
            self._on_status(reply, headers)
            return
        if self.paused or self.ended:
            return
        tokens = reply.split(".")
        if len(tokens) != 9:  # JetStream domains add tokens to the reply subject
            tokens = Msg.Metadata._get_metadata_fields(reply)
        # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>
        if int(tokens[6]) != self._next_delivery:
            self.restart("missed a delivery")
            return
        self._next_delivery += 1
        seq = int(tokens[5])
        self.last_seq = seq
        self.pending = int(tokens[8])
        layout = self.store.layout
        if subject.startswith(layout.event_prefix):
            try:
                notification = notification_from_message(layout, seq, subject, data)
            except UndecodableEventError as error:
                # Whether an operator skipped it takes a read: hold delivery meanwhile,
                # and let no resume() start past it until that is settled.
                self.last_seq = seq - 1
                self._holding = True
                self._pause()
                self.store.conn.loop.create_task(self._undecodable(error))
                return
            if not self.wanted or notification.topic in self.wanted:
                self.items.append(notification)
                self._on_new()
                if len(self.items) >= self._high_water:
                    self._pause()
                return
        if self.pending == 0:
            self._on_new()  # a waiting page reader learns it has caught up

    def _on_status(self, reply: str, headers: bytes) -> None:
        # "NATS/1.0 100 FlowControl Request" carries the reply to answer; an idle
        # heartbeat names it in Nats-Consumer-Stalled when the server is waiting for one.
        # Frames are handled in order, so everything before it has been taken in.
        if self.paused or self.ended:
            return
        answer = reply or _header(headers, _STALLED)
        if answer:
            self.store.conn.loop.create_task(self._nc.publish(answer, b""))
        if not reply:
            # An idle heartbeat says how many deliveries the consumer made: a lost one
            # at the end of the stream shows here, as no later delivery will reveal it.
            delivered = _header(headers, _LAST_CONSUMER)
            if delivered and int(delivered) != self._next_delivery - 1:
                self.restart("a heartbeat shows a missed delivery")

    async def _undecodable(self, error: UndecodableEventError) -> None:
        pause = 0.5
        while True:
            try:
                skipped = await self.store.is_skipped(error.seq)
                break
            except Exception as failure:  # noqa: BLE001 - unknown yet: keep holding, ask again
                log.warning("checking skips of %s: %s", self.store.layout.stream, failure)
                if self.ended:
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)
        self._holding = False
        if skipped:
            self.last_seq = error.seq
            self.resume()
            return
        self.ended = True
        self.items.append(error)
        self._on_new()

    def _pause(self) -> None:
        self.paused = True
        self._generation += 1
        self.store.conn.loop.create_task(self._drop_consumer())

    def restart(self, why: str) -> None:
        """Recreate the consumer just after the last message taken in."""
        log.debug(
            "%s: recreating the consumer after %s (%s)",
            self.store.layout.stream,
            self.last_seq,
            why,
        )
        self._pause()
        self.resume()

    def resume(self) -> None:
        """Start delivering again after a pause; call on the loop."""
        if self.paused and not self.ended and not self._resuming and not self._holding:
            self._resuming = True
            self.store.conn.loop.create_task(self.start())

    async def _watch(self) -> None:
        while not self.ended:
            await asyncio.sleep(HEARTBEAT)
            if not self.paused and time.monotonic() - self._heard > 3 * HEARTBEAT:
                self.restart("silence")

    async def _drop_consumer(self) -> None:
        sid, self._sid = self._sid, None
        consumer, self._consumer = self._consumer, None
        nc = self._nc
        if sid is not None:
            nc.direct_handlers.pop(sid, None)
            sub = nc._subs.get(sid)
            if sub is not None:
                try:
                    await sub.unsubscribe()
                except Exception as error:  # noqa: BLE001 - the connection may be closing
                    log.debug("unsubscribe from %s: %s", self.store.layout.stream, error)
        if consumer is not None and nc.is_connected:
            try:
                await self.store.conn.js.delete_consumer(self.store.layout.stream, consumer)
            except Exception as error:  # noqa: BLE001 - it expires on its own anyway
                log.debug("delete consumer %s: %s", consumer, error)

    async def close(self) -> None:
        self.ended = True
        self._generation += 1
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        await self._drop_consumer()


async def _unused(msg: Msg) -> None:
    """Frames of a direct subscription never reach nats-py's per-message callback."""


async def _quietly(awaitable: Awaitable[object]) -> None:
    try:
        await awaitable
    except Exception as error:  # noqa: BLE001 - best effort: the server expires it anyway
        log.debug("cleaning up a stale consumer: %s", error)
