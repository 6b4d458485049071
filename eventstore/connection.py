"""A NATS connection owned by a private asyncio loop thread, usable from synchronous code.

eventsourcing is synchronous and threaded; nats-py is asyncio-only. Each `NatsConnection`
runs one event loop in a daemon thread and a nats-py client on it; synchronous callers
submit coroutines with `run()` and block only their own thread. Many threads can call at
once: their requests interleave on the one connection, which is what pipelines appends.

Calling `run()` from the loop thread itself would deadlock, so it raises instead. Async
code (Litestar, faststream) must not call the synchronous recorders on its own loop
either: it goes through `domain.asyncapp` (a worker thread per call), or uses the async
methods of `eventstore.store.JetStreamStore` on this connection's loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

T = TypeVar("T")
log = logging.getLogger(__name__)

_shared: dict[str, tuple[NatsConnection, int]] = {}
_shared_lock = threading.Lock()


class NatsConnection:
    """One nats-py client on its own loop thread."""

    def __init__(self, url: str, *, name: str = "cloudcc-eventstore") -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=name, daemon=True)
        self._thread.start()
        self.nc: Client = self.run(self._connect(name))
        self.js: JetStreamContext = self.nc.jetstream()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _connect(self, name: str) -> Client:
        return await nats.connect(
            servers=[u.strip() for u in self.url.split(",")],
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            # Pipelined appends from many threads can queue a lot before a flush.
            pending_size=64 * 1024 * 1024,
            flusher_queue_size=4096,
        )

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "synchronous event-store call made on the event store's own loop; "
                "await the async API instead"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    async def _shutdown(self) -> None:
        try:
            await self.nc.drain()
        except Exception:  # noqa: BLE001 - the server may already be gone
            await self.nc.close()
        # nats-py leaves reader tasks behind; end them so the loop closes quietly.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.run(self._shutdown(), timeout=15)
        except Exception as error:  # noqa: BLE001 - closing must not fail on a dead connection
            log.debug("closing NATS connection to %s: %s", self.url, error)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def acquire(url: str) -> NatsConnection:
    """A connection shared by every recorder of this process that uses the same URL."""
    with _shared_lock:
        conn, refs = _shared.get(url, (None, 0))
        if conn is None or conn.loop.is_closed():
            conn, refs = NatsConnection(url), 0
        _shared[url] = (conn, refs + 1)
        return conn


def release(conn: NatsConnection) -> None:
    with _shared_lock:
        current, refs = _shared.get(conn.url, (None, 0))
        if current is not conn:
            conn.close()
            return
        if refs <= 1:
            del _shared[conn.url]
            conn.close()
        else:
            _shared[conn.url] = (conn, refs - 1)
