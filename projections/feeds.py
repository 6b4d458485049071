"""One reader per stream for all the projections of a process.

Without it, each read model following a stream has its own consumer: the calls stream
was read six times over, every event parsed off the wire and decoded by the mapper six
times, which profiles showed as a third of a busy instance's CPU. A `Feed` reads its
stream once (the recorder's `subscribe()`), decodes each event once, and hands each
burst to every attached projection through its own queue; each projection applies on
its own thread, at its own pace, exactly as before.

Positions stay the projections' own: a projection attaches with the position it has
applied up to, and is handed only what comes after it. If it is behind the feed (just
started, or back after a failure), the feed starts again from the lowest position of
those attached; the ones ahead are not handed anything twice (and would skip it anyway:
`SqliteReadModel.apply_batch` checks positions).

A message that does not decode, or an event the mapper cannot read, is handed to every
attached projection as the error it is: each parks, as it did reading alone, and the
feed reads nothing more until one attaches again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

BATCH = 500  # events handed over at once, at most


class Stopped(Exception):
    """The feed let this projection go (it stopped, or the process is stopping)."""


class Attachment:
    """A projection's place on a feed: what it is handed, and from where."""

    def __init__(self, position: int) -> None:
        self.position = position  # the last event id handed to it (or applied, at first)
        self.inbox: queue.SimpleQueue[list[tuple[int, Any]] | BaseException] = queue.SimpleQueue()

    def next(self) -> list[tuple[int, Any]]:
        """The next burst of (event id, domain event); raises what the feed ran into."""
        item = self.inbox.get()
        if isinstance(item, BaseException):
            raise item
        return item


class Feed:
    """The events of one stream, read once, for every projection attached to it."""

    def __init__(self, upstream: str, app: Callable[[], Any]) -> None:
        self.upstream = upstream
        self._app = app
        self._lock = threading.Lock()
        self._attached: list[Attachment] = []
        self._subscription: Any = None
        self._restart = False
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"feed-{upstream}", daemon=True)
        self._thread.start()

    def attach(self, position: int) -> Attachment:
        attachment = Attachment(position)
        with self._lock:
            self._attached.append(attachment)
            # Behind what the feed reads now: read again from there (those ahead are
            # not handed what they have had).
            self._restart = True
            subscription = self._subscription
        self._wake.set()
        if subscription is not None:
            subscription.stop()
        return attachment

    def detach(self, attachment: Attachment) -> None:
        with self._lock:
            if attachment in self._attached:
                self._attached.remove(attachment)
        attachment.inbox.put(Stopped())

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            attached, self._attached = self._attached, []
            subscription = self._subscription
        self._wake.set()
        if subscription is not None:
            subscription.stop()
        for attachment in attached:
            attachment.inbox.put(Stopped())

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                if self._stopping:
                    return
                self._wake.clear()
                self._restart = False
                if not self._attached:
                    continue
                start = min(a.position for a in self._attached)
            try:
                self._read_from(start)
            except Exception as error:  # noqa: BLE001 - handed to the projections
                self._hand_over_error(error)

    def _read_from(self, start: int) -> None:
        app = self._app()
        subscription = app.recorder.subscribe(gt=start)
        with self._lock:
            self._subscription = subscription
            again = self._restart or self._stopping
        try:
            if again:
                self._wake.set()
                return
            mapper = app.mapper
            while True:
                try:
                    drain = getattr(subscription, "drain", None)
                    batch = list(drain(BATCH)) if drain else [next(subscription)]
                except StopIteration:
                    self._wake.set()  # restarted or stopping: the loop says which
                    return
                events: list[tuple[int, Any]] = []
                failed: BaseException | None = None
                for notification in batch:
                    try:
                        events.append((notification.id, mapper.to_domain_event(notification)))
                    except Exception as error:  # noqa: BLE001 - handed over, named
                        failed = Unreadable(notification.id, error)
                        break
                self._hand_over(events)
                if failed is not None:
                    raise failed
        finally:
            with self._lock:
                self._subscription = None
            subscription.stop()

    def _hand_over(self, events: list[tuple[int, Any]]) -> None:
        if not events:
            return
        with self._lock:
            attached = list(self._attached)
        for attachment in attached:
            fresh = [(seq, event) for seq, event in events if seq > attachment.position]
            if fresh:
                attachment.position = fresh[-1][0]
                attachment.inbox.put(fresh)

    def _hand_over_error(self, error: BaseException) -> None:
        # Every projection attached parks on it and attaches again later; until then
        # the feed reads nothing (it would only run into the same message again).
        with self._lock:
            attached, self._attached = self._attached, []
        log.debug("feed %s: %s", self.upstream, error)
        for attachment in attached:
            attachment.inbox.put(error)


class Unreadable(Exception):
    """An event the application's mapper could not read: which, and why."""

    def __init__(self, seq: int, cause: Exception) -> None:
        super().__init__(f"event {seq}: {type(cause).__name__}: {cause}")
        self.seq = seq
        self.cause = f"{type(cause).__name__}: {cause}"


class Feeds:
    """The feeds of one process, one per stream, started as projections attach."""

    def __init__(self, apps: Callable[[], Any]) -> None:
        self._apps = apps
        self._feeds: dict[str, Feed] = {}
        self._lock = threading.Lock()

    def attach(self, upstream: str, position: int) -> tuple[Feed, Attachment]:
        with self._lock:
            feed = self._feeds.get(upstream)
            if feed is None:
                feed = self._feeds[upstream] = Feed(
                    upstream, lambda: self._apps().by_name()[upstream]
                )
        return feed, feed.attach(position)

    def stop(self) -> None:
        with self._lock:
            feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            feed.stop()
