"""eventsourcing's recorder contract over `JetStreamStore`, for synchronous callers."""

from __future__ import annotations

import asyncio
import logging
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

from eventstore.codec import UndecodableEventError
from eventstore.reader import OrderedReader
from eventstore.store import JetStreamStore

log = logging.getLogger(__name__)


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

    An `OrderedReader` fills a deque on the NATS loop; `__next__` drains it from the
    reading thread, sleeping only when it is empty, and wakes the reader up again once it
    has caught up to `LOW_WATER` after a pause (see eventstore.reader). An undecodable
    message that no operator has skipped is raised from `__next__` with its sequence,
    and the subscription ends there.
    """

    HIGH_WATER = 20_000
    LOW_WATER = 5_000

    def __init__(
        self,
        recorder: JetStreamApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._conn = recorder.conn
        self._wakeup = threading.Event()
        self._waiting = False
        self._wake_scheduled = False
        self._reader = OrderedReader(
            recorder.store,
            gt or 0,
            topics=topics,
            high_water=self.HIGH_WATER,
            on_new=self._on_new,
        )
        self._items = self._reader.items
        self._conn.run(self._reader.start())

    def _on_new(self) -> None:
        # Wake the reader once per burst, not per message: the call runs when the loop
        # has nothing more queued, so the reader then finds many notifications at once
        # instead of trading the GIL with the loop for each one.
        if self._waiting and not self._wake_scheduled:
            self._wake_scheduled = True
            self._conn.loop.call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_scheduled = False
        self._wakeup.set()

    def stop(self) -> None:
        if self._has_been_stopped:
            return
        super().stop()
        self._reader.ended = True
        if not self._conn.loop.is_closed():
            if self._conn.in_loop_thread:
                asyncio.ensure_future(self._reader.close())
            else:
                asyncio.run_coroutine_threadsafe(self._reader.close(), self._conn.loop)
        self._wakeup.set()

    def drain(self, limit: int) -> list[Notification]:
        """The notifications ready now, at least one (waiting for it), at most `limit`.

        A projection applies what arrived in a burst in one transaction; draining takes
        the burst without a thread wake-up per notification. An undecodable message ends
        the batch before it and is raised on the next call, as `__next__` does.
        """
        batch = [next(self)]
        items = self._items
        while len(batch) < limit:
            try:
                item = items.popleft()
            except IndexError:
                break
            if isinstance(item, UndecodableEventError):
                items.appendleft(item)
                break
            batch.append(item)
        if self._reader.paused and len(items) <= self.LOW_WATER:
            self._conn.loop.call_soon_threadsafe(self._reader.resume)
        return batch

    def __next__(self) -> Notification:
        items = self._items
        while True:
            if self._has_been_stopped:
                raise StopIteration
            try:
                item = items.popleft()
            except IndexError:
                # Clear, announce, re-check, then sleep: an append in between sets the flag.
                self._wakeup.clear()
                self._waiting = True
                if not items and not self._has_been_stopped:
                    self._wakeup.wait()
                self._waiting = False
                continue
            if isinstance(item, UndecodableEventError):
                self.stop()
                raise item
            if self._reader.paused and len(items) <= self.LOW_WATER:
                self._conn.loop.call_soon_threadsafe(self._reader.resume)
            return item
