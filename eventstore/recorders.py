"""eventsourcing's recorder contract over `JetStreamStore`, for synchronous callers."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    Notification,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from eventstore.store import JetStreamStore, UndecodableEventError, notification_from_message

_END = object()


class JetStreamAggregateRecorder(AggregateRecorder):
    """Events of aggregates, one subject per aggregate, in one application's stream.

    `insert_events(..., tenant_id="acme")` puts the events under that tenant's subjects
    (`Application.save(aggregate, tenant_id=...)` passes it through); without it they go
    under the system tenant `_`.
    """

    def __init__(self, store: JetStreamStore) -> None:
        self.store = store
        self.conn = store.conn

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        self._insert(stored_events, **kwargs)
        return None  # the contract: only application recorders return notification ids

    def _insert(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> list[int]:
        return self.conn.run(
            self.store.insert(
                stored_events, tenant_id=kwargs.get("tenant_id"), tracking=kwargs.get("tracking")
            )
        )

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        return self.conn.run(
            self.store.select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
        )


class JetStreamApplicationRecorder(JetStreamAggregateRecorder, ApplicationRecorder):
    """Adds the application sequence: notification id = JetStream stream sequence."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return self._insert(stored_events, **kwargs)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        return self.conn.run(
            self.store.select_notifications(
                start, limit, stop, topics, inclusive_of_start=inclusive_of_start
            )
        )

    def max_notification_id(self) -> int | None:
        return self.conn.run(self.store.max_notification_id())

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return JetStreamSubscription(self, gt=gt, topics=topics)


class JetStreamTrackingRecorder(TrackingRecorder):
    """Tracking records on `trk.<app>.<upstream>`: the last message is the position."""

    def __init__(self, store: JetStreamStore) -> None:
        self.store = store
        self.conn = store.conn

    def insert_tracking(self, tracking: Tracking) -> None:
        self.conn.run(self.store.insert((), tracking=tracking))

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.conn.run(self.store.max_tracking_id(application_name))


class JetStreamProcessRecorder(
    JetStreamTrackingRecorder, JetStreamApplicationRecorder, ProcessRecorder
):
    """Events and their tracking record committed in one atomic batch."""

    def __init__(self, store: JetStreamStore) -> None:
        JetStreamTrackingRecorder.__init__(self, store)


class JetStreamSubscription(Subscription[JetStreamApplicationRecorder]):
    """Notifications after `gt`, then new ones as they are appended.

    Backed by an ordered push consumer (no server-side state to clean up, gaps are
    detected and the consumer recreated by nats-py). Messages cross from the NATS loop to
    the reading thread through a bounded queue, so a slow reader slows delivery instead of
    growing memory. An undecodable message that no operator has skipped is raised from
    `__next__` with its sequence, and the subscription ends there.
    """

    def __init__(
        self,
        recorder: JetStreamApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._store = recorder.store
        self._queue: queue.Queue[object] = queue.Queue(maxsize=10_000)
        self._wanted = frozenset(topics)
        self._failed = threading.Event()
        self._sub: Any = None
        self._sub = recorder.conn.run(self._start(gt or 0))

    async def _start(self, gt: int) -> Any:
        store = self._store
        layout = store.layout
        put = self._queue.put_nowait
        wanted = self._wanted

        async def deliver(item: object) -> None:
            try:
                put(item)
            except queue.Full:
                # Reader is behind: wait here, which holds back this consumer's delivery.
                await asyncio.to_thread(self._queue.put, item)

        async def on_msg(msg: Msg) -> None:
            if self._has_been_stopped or self._failed.is_set():
                return
            # Reply subject: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>...
            seq = int(msg.reply.split(".")[5])
            try:
                notification = notification_from_message(layout, seq, msg.subject, msg.data)
            except UndecodableEventError as error:
                if await store.is_skipped(seq):
                    return
                self._failed.set()
                await deliver(error)
                return
            if wanted and notification.topic not in wanted:
                return
            await deliver(notification)

        return await store.conn.js.subscribe(
            layout.events_filter,
            stream=layout.stream,
            cb=on_msg,
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=gt + 1
            ),
            pending_msgs_limit=20_000,
        )

    def stop(self) -> None:
        if self._has_been_stopped:
            return
        super().stop()
        sub, self._sub = self._sub, None
        if sub is not None:
            conn = self._store.conn
            if conn.in_loop_thread:
                asyncio.ensure_future(sub.unsubscribe())
            elif not conn.loop.is_closed():
                asyncio.run_coroutine_threadsafe(sub.unsubscribe(), conn.loop)
        # Wake a reader blocked in __next__.
        try:
            self._queue.put_nowait(_END)
        except queue.Full:
            pass

    def __next__(self) -> Notification:
        if self._has_been_stopped:
            raise StopIteration
        item = self._queue.get()
        if item is _END or self._has_been_stopped:
            raise StopIteration
        if isinstance(item, UndecodableEventError):
            self.stop()
            raise item
        assert isinstance(item, Notification)
        return item
