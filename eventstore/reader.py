"""Reading an application's stream in order, fast: an ordered consumer with a bounded buffer.

Used by subscriptions (a reading thread drains the buffer) and by `select_notifications`
paging (a parked cursor keeps reading ahead for the next page). Everything here runs on
the connection's loop, except that another thread may `popleft` from `items`.

Three choices make it fast and safe:
- the consumer is unfiltered and tracking/operator records are dropped here, because a
  subject filter makes nats-server 2.15 several times slower at delivering;
- data messages skip header parsing (`FastClient`): the sequence and the pending count are
  in the reply subject;
- when the buffer reaches `high_water` the consumer is dropped, and `resume()` recreates
  it just after the last message taken in. Blocking nats-py's callback instead would
  overflow its pending queue, which silently drops messages.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Notification
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from eventstore.codec import UndecodableEventError, notification_from_message

if TYPE_CHECKING:
    from eventstore.store import JetStreamStore

log = logging.getLogger(__name__)

Item = Notification | UndecodableEventError


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
        self._sub: Any = None
        self._generation = 0
        self._resuming = False

    @property
    def caught_up(self) -> bool:
        """Everything stored when the last message was delivered has been taken in."""
        return self.pending == 0 and not self.paused

    async def start(self) -> None:
        # Each consumer gets its own generation: a message an older, dropped consumer
        # still had queued must not move `last_seq` past what the new one will deliver.
        self._generation += 1
        generation = self._generation
        self.paused = False
        self._resuming = False

        async def on_msg(msg: Msg) -> None:
            if generation == self._generation:
                await self._on_msg(msg)

        store = self.store
        self._sub = await store.conn.js.subscribe(
            "",
            stream=store.layout.stream,
            cb=on_msg,
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.last_seq + 1
            ),
            pending_msgs_limit=self._high_water * 2,
        )
        self._sub._sub.headerless = True

    async def _on_msg(self, msg: Msg) -> None:
        if self.paused or self.ended:
            return
        # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>
        tokens = Msg.Metadata._get_metadata_fields(msg.reply)
        seq = int(tokens[5])
        if seq <= self.last_seq:
            return  # delivered again after nats-py reset the consumer
        self.last_seq = seq
        self.pending = int(tokens[8])
        layout = self.store.layout
        if not msg.subject.startswith(layout.event_prefix):
            if self.pending == 0:
                self._on_new()  # a waiting page reader learns it has caught up
            return
        try:
            notification = notification_from_message(layout, seq, msg.subject, msg.data)
        except UndecodableEventError as error:
            if not await self.store.is_skipped(seq):
                self.ended = True
                self._take(error)
                await self.close()
            return
        if self.wanted and notification.topic not in self.wanted:
            if self.pending == 0:
                self._on_new()
            return
        self._take(notification)
        if len(self.items) >= self._high_water and not self.ended:
            self.paused = True
            self._generation += 1
            await self.close()

    def _take(self, item: Item) -> None:
        self.items.append(item)
        self._on_new()

    def resume(self) -> None:
        """Start delivering again after a pause; call on the loop."""
        if self.paused and not self.ended and not self._resuming:
            self._resuming = True
            self.store.conn.loop.create_task(self.start())

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as error:  # noqa: BLE001 - the connection may be closing
                log.debug("unsubscribe from %s: %s", self.store.layout.stream, error)
