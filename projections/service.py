"""A projection fed from the event store, one applying thread per upstream stream.

Each thread follows its stream from just after the read model's tracked position for
that stream: through the process's shared feed of it (projections.feeds, what `cloudcc
up` uses: each stream read and decoded once for all the projections of the process), or
else through its own subscription, the application recorder's `subscribe()` (the
eventsourcing recorder contract; eventstore's is an ordered push consumer on the
stream's event subjects). What arrived in a burst is decoded with the application's own
mapper and applied with its last position in one SQLite transaction, so a redelivered or replayed
event changes nothing, and a burst costs one commit. There are no acks to lose: if
applying fails, the service records the error (the event at fault and why), drops the
subscription and starts a new one from the tracked position after a pause, so nothing
is skipped and nothing is applied twice. An undecodable message waits for an operator
(`cloudcc events skip`); the store's reader passes skipped ones.

Why not a faststream subscriber per event, as the projections first had: profiled at
50 routed calls a second, faststream's per-message machinery (dependency injection,
logging middleware, a thread hop per message to apply it) cost more than applying the
events did, in the one process that also runs the domain.

After each commit the read model's noted changes go out on NATS (projections.live).
A process manager (projections.process) is also woken to `act` after new events and at
its `next_due()`; its decisions are domain commands, run on a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import Subscription

from eventstore.codec import UndecodableEventError
from eventstore.layout import StreamLayout
from projections import live
from projections.feeds import Attachment, Feed, Feeds, Stopped, Unreadable
from projections.process import ActContext, ProcessManager
from projections.readmodel import Change, SqliteReadModel

log = logging.getLogger(__name__)

MAX_IDLE_ACT = 30.0  # seconds: a process manager acts at least this often
MIN_REACT = 1.0  # seconds before acting again on a due time the last act did not move
BATCH = 500  # events applied in one transaction at most


class ProjectionService:
    """Keeps one read model up to date with its upstream applications' events."""

    def __init__(
        self,
        apps: Callable[[], Any],
        readmodel: SqliteReadModel,
        *,
        retry_after: float = 2.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        feeds: Feeds | None = None,
    ) -> None:
        # The applications are built once NATS is up, by the service started before this
        # one; `apps()` returns a container with `by_name()` (domain.apps.DomainApps).
        self._apps = apps
        self.readmodel = readmodel
        self.name = readmodel.name
        self.layouts = {upstream: StreamLayout(upstream) for upstream in readmodel.upstreams}
        self.retry_after = retry_after
        self.clock = clock
        self.errors: dict[str, str] = {}
        self.act_error: str | None = None
        self.acts_run = 0
        self.act_seconds = 0.0
        self.decisions = 0
        self.stream_last: dict[str, int] = dict.fromkeys(readmodel.upstreams, 0)
        self._running = False
        self._nc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._apply_lock = threading.Lock()  # one writer: the changes noted are its own
        self._threads: list[threading.Thread] = []
        self._subscriptions: dict[str, Subscription[Any]] = {}
        # With feeds (projections.feeds), the process reads each stream once for all
        # its projections; without, this service reads its streams itself.
        self._feeds = feeds
        self._attachments: dict[str, tuple[Feed, Attachment]] = {}
        self._failures: dict[str, int] = {}
        self._dirty = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def acts(self) -> bool:
        return isinstance(self.readmodel, ProcessManager)

    @property
    def state(self) -> str:
        if not self._running:
            return "stopped"
        return "error" if self.errors else "running"

    @property
    def error(self) -> str | None:
        return "; ".join(self.errors.values()) if self.errors else None

    async def start(self, runtime: Any) -> None:
        self._nc = runtime.nc
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        await self._poll_streams()  # so that the first /health already knows the lag
        self._running = True
        for upstream in self.readmodel.upstreams:
            thread = threading.Thread(
                target=self._follow,
                args=(upstream,),
                name=f"projection-{self.name}-{upstream}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self._tasks.add(self._loop.create_task(self._watch_streams()))
        if self.acts:
            self._dirty.set()  # act once at start: what fell due while we were down
            self._tasks.add(self._loop.create_task(self._act_loop()))

    async def _poll_streams(self) -> None:
        # Each stream's end, for the lag in /health (an upper bound: it may also count a
        # few tracking or operator records).
        js = self._nc.jetstream()
        for upstream, layout in self.layouts.items():
            try:
                info = await js.stream_info(layout.stream)
                self.stream_last[upstream] = max(self.stream_last[upstream], info.state.last_seq)
            except Exception as error:  # noqa: BLE001 - health reporting must not die
                log.debug("stream info for %s: %s", layout.stream, error)

    async def _watch_streams(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self._poll_streams()

    # ---------------------------------------------------------------- the reading threads
    def _follow(self, upstream: str) -> None:
        while not self._stopping.is_set():
            try:
                self._follow_once(upstream)
                return  # stopped
            except Exception as error:  # noqa: BLE001 - any failure parks this stream here
                self._failures[upstream] = self._failures.get(upstream, 0) + 1
                self._park(upstream, error)
            # Back off while the cause stays (an operator may take a while to decide).
            failures = self._failures[upstream]
            self._stopping.wait(min(self.retry_after * 2 ** (failures - 1), 60.0))

    def _follow_once(self, upstream: str) -> None:
        if self._feeds is not None:
            self._follow_feed(upstream, self._feeds)
            return
        app = self._apps().by_name()[upstream]
        position = self.readmodel.position(upstream)
        subscription = app.recorder.subscribe(gt=position)
        self._subscriptions[upstream] = subscription
        # Following again (after a skip, say): healthy until the next failure, which a
        # cause that stays brings at once. Waiting for the next event to say so would
        # keep a quiet stream's projection "in error" for nothing.
        self.errors.pop(upstream, None)
        try:
            if self._stopping.is_set():
                return
            mapper = app.mapper
            while True:
                try:
                    batch = _drain(subscription)
                except StopIteration:
                    return
                events = [(n.id, n) for n in batch]
                try:
                    decoded = [(seq, mapper.to_domain_event(n)) for seq, n in events]
                    with self._apply_lock:
                        self.readmodel.apply_batch(decoded, upstream)
                        changes = self.readmodel.take_changes()
                except Exception:  # noqa: BLE001 - find the event at fault, or go on
                    self._apply_one_by_one(upstream, mapper, events)
                else:
                    self._after_apply(changes, self._wakes(e for _, e in decoded))
                self._failures.pop(upstream, None)  # the cause has gone: back off afresh
        finally:
            self._subscriptions.pop(upstream, None)
            subscription.stop()

    def _follow_feed(self, upstream: str, feeds: Feeds) -> None:
        feed, attachment = feeds.attach(upstream, self.readmodel.position(upstream))
        self._attachments[upstream] = (feed, attachment)
        self.errors.pop(upstream, None)  # as when subscribing again: see _follow_once
        try:
            if self._stopping.is_set():
                return
            while True:
                try:
                    events = attachment.next()
                except Stopped:
                    return
                try:
                    with self._apply_lock:
                        self.readmodel.apply_batch(events, upstream)
                        changes = self.readmodel.take_changes()
                except Exception:  # noqa: BLE001 - find the event at fault, or go on
                    for seq, event in events:
                        try:
                            with self._apply_lock:
                                self.readmodel.apply(seq, event, upstream)
                                changes = self.readmodel.take_changes()
                        except Exception as error:
                            raise _EventFailed(seq, error) from error
                        self._after_apply(changes, self._wakes([event]))
                else:
                    self._after_apply(changes, self._wakes(e for _, e in events))
                self._failures.pop(upstream, None)  # the cause has gone: back off afresh
        finally:
            self._attachments.pop(upstream, None)
            feed.detach(attachment)

    def _apply_one_by_one(self, upstream: str, mapper: Any, events: list[tuple[int, Any]]) -> None:
        """Apply a failed batch event by event, so the error names the event at fault."""
        for seq, notification in events:
            try:
                with self._apply_lock:
                    self.readmodel.apply(seq, mapper.to_domain_event(notification), upstream)
                    changes = self.readmodel.take_changes()
            except Exception as error:
                raise _EventFailed(seq, error) from error
            self._after_apply(changes)

    def _wakes(self, events: Iterable[Any]) -> bool:
        """Whether applied events may give a process manager something to do."""
        manager = self.readmodel
        return isinstance(manager, ProcessManager) and any(map(manager.actionable, events))

    def _after_apply(self, changes: list[Change], wake: bool = True) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._announce, changes, wake)
        except RuntimeError:
            pass  # the loop closed meanwhile: the service is stopping

    def _announce(self, changes: list[Change], wake: bool = True) -> None:
        if self.acts and wake:
            self._dirty.set()
        if not changes:
            return
        # One task per burst, each change once: a burst often touches a row many times.
        # Fire and forget: a push lost is refetched by the browser when it reconnects.
        task = asyncio.ensure_future(self._publish_changes(list(dict.fromkeys(changes))))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_changes(self, changes: list[Change]) -> None:
        for change in changes:
            try:
                await self._nc.publish(live.subject(change), live.encode(change))
            except Exception as error:  # noqa: BLE001
                log.debug("live update %s not published: %s", change, error)
                return

    def _park(self, upstream: str, error: Exception) -> None:
        stream = self.layouts[upstream].stream
        if isinstance(error, UndecodableEventError):
            message = (
                f"stopped at {error.seq} in {stream}: {error} (inspect with "
                "`cloudcc events show`, skip with `cloudcc events skip`)"
            )
        elif isinstance(error, _EventFailed | Unreadable):
            message = f"stopped at {error.seq} in {stream}: {error.cause}"
        else:
            message = f"stopped in {stream}: {type(error).__name__}: {error}"
        self.errors[upstream] = message
        log.error("projection %s %s", self.name, message)

    # ------------------------------------------------------------------ process managers
    async def _act_loop(self) -> None:
        manager = self.readmodel
        assert isinstance(manager, ProcessManager)
        # First catch up with what the streams held at start: acting on tables that are
        # still behind would redo what was decided before the restart (ring an agent for
        # a call another already answered).
        start = await asyncio.to_thread(self._last_events)
        seen, still = manager.positions(), 0.0
        while not self.errors and any(seen[u] < start[u] for u in start) and still < 5.0:
            await asyncio.sleep(0.05)
            now = manager.positions()
            # No progress for a while (the last event was skipped by an operator, say):
            # as caught up as it gets.
            still = 0.0 if now != seen else still + 0.05
            seen = now
        last_due: datetime | None = None
        while True:
            wait = MAX_IDLE_ACT
            if self.errors:
                # Parked: the state does not move; look again after a while.
                wait = self.retry_after
            else:
                try:
                    due = await asyncio.to_thread(manager.next_due)
                except Exception as error:  # noqa: BLE001 - reported, retried
                    self.act_error = f"next_due: {type(error).__name__}: {error}"
                    due, wait = None, self.retry_after
                if due is not None:
                    wait = min(max((due - self.clock()).total_seconds(), 0.0), MAX_IDLE_ACT)
                    if due == last_due:
                        # The last act did not move it (the work it names is in hand,
                        # or waits for something else): do not spin on it.
                        wait = max(wait, MIN_REACT)
                last_due = due
            try:
                await asyncio.wait_for(self._dirty.wait(), wait)
            except TimeoutError:
                pass
            self._dirty.clear()
            if self.errors:
                continue  # acting on state that stopped moving would repeat itself
            ctx = ActContext(apps=self._apps(), now=self.clock(), publish=self._publish_blocking)
            started = time.perf_counter()
            try:
                decisions = await asyncio.to_thread(manager.act, ctx)
            except Exception as error:  # noqa: BLE001 - a failed act is retried, never fatal
                self.act_error = f"{type(error).__name__}: {error}"
                log.warning("process manager %s could not act: %s", self.name, self.act_error)
                await asyncio.sleep(self.retry_after)
                self._dirty.set()
                continue
            self.act_error = None
            self.acts_run += 1
            self.act_seconds += time.perf_counter() - started
            self.decisions += len(decisions)
            if decisions:
                log.debug("process manager %s decided %s", self.name, decisions)

    def _last_events(self) -> dict[str, int]:
        """Each upstream stream's last event id (0 for a stream not there yet)."""
        apps = self._apps().by_name()
        last: dict[str, int] = {}
        for upstream in self.readmodel.upstreams:
            try:
                last[upstream] = apps[upstream].recorder.max_notification_id() or 0
            except Exception:  # noqa: BLE001 - no stream yet: nothing to wait for
                last[upstream] = 0
        return last

    def _publish_blocking(self, subject: str, payload: bytes) -> None:
        """`ActContext.publish`: called from `act` on a worker thread."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._nc.publish(subject, payload), self._loop).result(
            timeout=10
        )

    async def stop(self) -> None:
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        drain = getattr(self.readmodel, "drain", None)
        if drain is not None:  # commands a process manager still has running
            await asyncio.to_thread(drain)
        for subscription in list(self._subscriptions.values()):
            subscription.stop()
        for feed, attachment in list(self._attachments.values()):
            feed.detach(attachment)
        threads, self._threads = self._threads, []
        for thread in threads:
            await asyncio.to_thread(thread.join, 10.0)
        self._running = False

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
            report["acts"] = self.acts_run
            report["decisions"] = self.decisions
            report["act_ms_mean"] = round(self.act_seconds * 1000 / max(self.acts_run, 1), 1)
        return report


def _drain(subscription: Any) -> list[Any]:
    """A burst of notifications: eventstore's subscription hands them over at once; any
    other recorder's, one at a time."""
    drain = getattr(subscription, "drain", None)
    return list(drain(BATCH)) if drain is not None else [next(subscription)]


class _EventFailed(Exception):
    """One event could not be applied: which, and why."""

    def __init__(self, seq: int, cause: Exception) -> None:
        super().__init__(f"event {seq}: {cause}")
        self.seq = seq
        self.cause = f"{type(cause).__name__}: {cause}"
