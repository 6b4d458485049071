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
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

T = TypeVar("T")
log = logging.getLogger(__name__)

_shared: dict[str, tuple[NatsConnection, int]] = {}
_shared_lock = threading.Lock()


class FastClient(Client):
    """nats-py's client with cheaper handling of the event store's reads.

    Every stored event keeps the expected-sequence header its append carried, and nats-py
    2.16 parses header names with a per-character loop: over a third of the loop's time
    when reading. This parser gives the same result (ASCII names without whitespace, UTF-8
    values with replacement). And a subscription registered in `direct_handlers` gets its
    frames handed over as they are read — subject, reply, payload, raw headers — with no
    `Msg`, no header parsing and no pending queue (see eventstore.reader). Both hooks are
    private nats-py API, which is why pyproject pins nats-py to 2.16.x.
    """

    def __init__(self) -> None:
        super().__init__()
        self.direct_handlers: dict[int, Callable[[str, str, bytes, bytes], None]] = {}

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            name = name.strip()
            # bytes.split() cuts on whitespace in C: one piece means a clean token.
            if sep and name.isascii() and name.split() == [name]:
                out[name.decode()] = value.strip().decode("utf-8", "replace")
        return out

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        handler = self.direct_handlers.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        handler(subject.decode(), reply.decode(), data, headers)


class Requests:
    """Request/reply over one inbox subscription, as many in flight as the callers want.

    nats-py's `request` draws a random token and arms an `asyncio.wait_for` per call, a
    quarter of the loop's time when appends are pipelined; here a token is a counter, the
    pending futures sit in a dict, and a timeout is one `call_later`.
    """

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        # Requests answered by several messages (a direct-get batch): the messages so far
        # and the future completed by the closing status message.
        self._streams: dict[str, tuple[list[Msg], asyncio.Future[dict[str, str]]]] = {}
        self._next = 0
        self._ready: asyncio.Task[Any] | None = None

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) + 1 :]
        stream = self._streams.get(token)
        if stream is not None:
            got, end = stream
            if msg.headers and "Status" in msg.headers:
                if not end.done():
                    end.set_result(msg.headers)
            else:
                got.append(msg)
            return
        future = self._pending.pop(token, None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(nats.errors.NoRespondersError())
        else:
            future.set_result(msg)

    async def _token(self) -> str:
        """A new reply token, once the shared inbox subscription is in place."""
        if self._ready is None:
            self._ready = asyncio.ensure_future(
                self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)
            )
        await self._ready
        self._next += 1
        return str(self._next)

    async def request(
        self, subject: str, payload: bytes, *, headers: dict[str, str] | None, timeout: float
    ) -> Msg:
        token = await self._token()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._pending[token] = future
        expire = loop.call_later(timeout, _expire, future)
        try:
            await self._nc.publish(
                subject, payload, reply=f"{self._prefix}.{token}", headers=headers
            )
            return await future
        finally:
            expire.cancel()
            self._pending.pop(token, None)

    async def request_many(
        self, subject: str, payload: bytes, *, timeout: float
    ) -> tuple[list[Msg], dict[str, str]]:
        """The replies to one request that answers with several messages and then a
        status message (JetStream's direct get of a batch): (messages, status headers).

        One shared inbox subscription instead of a subscribe and an unsubscribe per
        read, which cost more than the read itself when aggregates are loaded often.
        """
        token = await self._token()
        loop = asyncio.get_running_loop()
        got: list[Msg] = []
        end: asyncio.Future[dict[str, str]] = loop.create_future()
        self._streams[token] = (got, end)
        expire = loop.call_later(timeout, _expire, end)
        try:
            await self._nc.publish(subject, payload, reply=f"{self._prefix}.{token}")
            return got, await end
        finally:
            expire.cancel()
            self._streams.pop(token, None)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(nats.errors.TimeoutError())


class NatsConnection:
    """One nats-py client on its own loop thread."""

    def __init__(self, url: str, *, name: str = "cloudcc-eventstore") -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=name, daemon=True)
        self._thread.start()
        self.nc: Client = self.run(self._connect(name))
        self.js: JetStreamContext = self.nc.jetstream()
        self.requests = Requests(self.nc)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _connect(self, name: str) -> Client:
        nc = FastClient()
        await nc.connect(
            servers=[u.strip() for u in self.url.split(",")],
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            connect_timeout=5,
            # Pipelined appends from many threads can queue a lot before a flush.
            pending_size=64 * 1024 * 1024,
            flusher_queue_size=4096,
        )
        return nc

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "synchronous event-store call made on the event store's own loop; "
                "await the async API instead"
            )
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()  # do not leave the work running on the loop
            raise

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
