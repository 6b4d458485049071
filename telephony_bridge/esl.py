"""A hand-written asyncio client for FreeSWITCH's Event Socket (mod_event_socket, inbound mode).

Wire format: a block of `Key: Value` header lines ended by a blank line, then, when the
headers carry `Content-Length`, a body of exactly that many bytes. The server greets with
`auth/request`; replies to commands come back in the order the commands were sent
(`command/reply` with `Reply-Text`, or `api/response` with a body); events arrive
interleaved as `text/event-json` (a JSON object) or `text/event-plain` (a header block
whose values are URL-encoded, optionally followed by its own body).

`EslClient` sends one command at a time and matches each reply to it; `bgapi` jobs are
matched to their BACKGROUND_JOB event by a Job-UUID the client picks itself (so the
waiter exists before the event can arrive). When the connection drops, everything
pending fails with `SwitchUnavailable` and the client reconnects with backoff,
re-authenticates, re-subscribes and then calls `on_reconnect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

from telephony_bridge.driver import SwitchError, SwitchUnavailable

log = logging.getLogger(__name__)

# How long a command's reply may take before the connection is deemed stuck.
REPLY_TIMEOUT = 15.0

EventCallback = Callable[[dict[str, Any]], None]
ReconnectHook = Callable[[], Awaitable[None]]

# A header block larger than this is not ESL: stop before buffering without bound.
MAX_HEADER_BYTES = 64 * 1024


class EslError(SwitchError):
    """Something went wrong speaking ESL."""


class EslAuthError(EslError):
    """The switch refused the Event Socket password."""


class EslProtocolError(EslError):
    """The peer sent bytes that are not an ESL frame; the stream can no longer be trusted."""


@dataclass
class Frame:
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def parse_headers(block: bytes, *, url_decoded: bool = False) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in block.decode("utf-8", errors="replace").split("\n"):
        line = raw.rstrip("\r")
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise EslProtocolError(f"header line without a colon: {line[:80]!r}")
        value = value.strip()
        headers[key.strip()] = unquote(value) if url_decoded else value
    return headers


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """One frame, or None at a clean end of stream between frames."""
    block = bytearray()
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if not block and not exc.partial:
                return None
            raise
        except asyncio.LimitOverrunError as exc:
            raise EslProtocolError("header line too long") from exc
        if line in (b"\n", b"\r\n"):
            if not block:
                # Stray blank lines between frames are harmless; FreeSWITCH never sends them.
                continue
            break
        block += line
        if len(block) > MAX_HEADER_BYTES:
            raise EslProtocolError("header block too long")
    headers = parse_headers(bytes(block))
    body = b""
    if "Content-Length" in headers:
        try:
            length = int(headers["Content-Length"])
        except ValueError as exc:
            raise EslProtocolError(f"bad Content-Length {headers['Content-Length']!r}") from exc
        if length < 0:
            raise EslProtocolError(f"bad Content-Length {length}")
        body = await reader.readexactly(length)
    return Frame(headers, body)


def decode_event(frame: Frame) -> dict[str, Any]:
    """The event a `text/event-json` or `text/event-plain` frame carries, as one dict.

    Plain events: the URL-decoded headers, plus `_body` when the event has a body (the
    same key the JSON form uses). Raises ValueError for a body that does not decode."""
    if frame.content_type == "text/event-json":
        event = json.loads(frame.body.decode("utf-8"))
        if not isinstance(event, dict):
            raise ValueError("event JSON is not an object")
        return event
    head, sep, rest = frame.body.partition(b"\n\n")
    try:
        headers: dict[str, Any] = dict(parse_headers(head, url_decoded=True))
    except EslProtocolError as exc:
        raise ValueError(str(exc)) from exc
    if sep and "Content-Length" in headers:
        length = int(headers["Content-Length"])
        headers["_body"] = rest[:length].decode("utf-8", errors="replace")
    return headers


def reply_text(frame: Frame) -> str:
    """What a reply says: the body of an api/response, else the Reply-Text header."""
    if frame.content_type == "api/response":
        return frame.body.decode("utf-8", errors="replace")
    return frame.headers.get("Reply-Text", "")


class EslClient:
    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        on_event: EventCallback | None = None,
        on_reconnect: ReconnectHook | None = None,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.password = password
        # Called synchronously by the reader, in wire order: a callback that queues is
        # guaranteed to see every event that preceded a reply before that reply's waiter
        # resumes (the driver's resync relies on it). It must not block.
        self.on_event = on_event
        self.on_reconnect = on_reconnect
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.reconnects = 0
        self._writer: asyncio.StreamWriter | None = None
        self._ready = False
        self._closing = False
        self._lock = asyncio.Lock()
        self._pending: deque[asyncio.Future[Frame]] = deque()
        self._jobs: dict[str, asyncio.Future[str]] = {}
        self._subscriptions: set[str] = set()
        self._format: Literal["json", "plain"] = "json"
        self._supervisor: asyncio.Task[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._hook_tasks: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self._ready

    # ------------------------------------------------------------ connection lifecycle
    async def connect(self) -> None:
        """Connect and authenticate once; failures raise (OSError, EslAuthError). After
        this the client keeps itself connected until `close()`."""
        self._closing = False
        reader, writer = await self._open()
        self._start_reader(reader, writer)
        self._ready = True
        self._supervisor = asyncio.create_task(self._supervise(), name="esl-supervisor")

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.connect_timeout
        )
        try:
            greeting = await asyncio.wait_for(read_frame(reader), self.connect_timeout)
            if greeting is None or greeting.content_type != "auth/request":
                kind = greeting.content_type if greeting else "end of stream"
                raise EslProtocolError(f"expected auth/request, got {kind}")
            writer.write(f"auth {self.password}\n\n".encode())
            await writer.drain()
            reply = await asyncio.wait_for(read_frame(reader), self.connect_timeout)
            text = reply_text(reply) if reply else ""
            if not text.startswith("+OK"):
                raise EslAuthError(
                    f"FreeSWITCH at {self.host}:{self.port} refused the event socket "
                    f"password: {text or 'connection closed'}"
                )
        except BaseException:
            writer.close()
            raise
        return reader, writer

    def _start_reader(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read_loop(reader), name="esl-reader")

    async def _supervise(self) -> None:
        while not self._closing:
            assert self._reader_task is not None
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({self._reader_task})
            self._connection_lost()
            if self._closing:
                return
            reader, writer = await self._reconnect()
            if self._closing:
                writer.close()
                return
            self._start_reader(reader, writer)
            try:
                if self._subscriptions:
                    events = " ".join(sorted(self._subscriptions))
                    await self._command(f"event {self._format} {events}")
            except SwitchError as exc:
                log.warning("ESL re-subscribe failed (%s); reconnecting", exc)
                continue
            self._ready = True
            self.reconnects += 1
            log.info("ESL reconnected to %s:%s", self.host, self.port)
            if self.on_reconnect is not None:
                task = asyncio.create_task(self._run_hook(self.on_reconnect))
                self._hook_tasks.add(task)
                task.add_done_callback(self._hook_tasks.discard)

    async def _run_hook(self, hook: ReconnectHook) -> None:
        try:
            await hook()
        except SwitchUnavailable:
            log.info("ESL on_reconnect hook interrupted by another disconnect")
        except Exception:
            log.exception("ESL on_reconnect hook failed")

    async def _reconnect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        delay = self.backoff_min
        while True:
            await asyncio.sleep(delay)
            try:
                return await self._open()
            except EslAuthError as exc:
                log.error("%s; retrying", exc)
            except (TimeoutError, OSError, EslError, asyncio.IncompleteReadError) as exc:
                log.debug("ESL reconnect to %s:%s failed: %r", self.host, self.port, exc)
            delay = min(delay * 2, self.backoff_max)

    def _connection_lost(self) -> None:
        self._ready = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        error = SwitchUnavailable(f"connection to FreeSWITCH at {self.host}:{self.port} lost")
        while self._pending:
            fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(error)
        jobs, self._jobs = self._jobs, {}
        for job in jobs.values():
            if not job.done():
                job.set_exception(error)

    async def close(self) -> None:
        self._closing = True
        self._ready = False
        for task in (self._reader_task, self._supervisor, *self._hook_tasks):
            if task is not None:
                task.cancel()
        for task in (self._reader_task, self._supervisor, *self._hook_tasks):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._connection_lost()

    # ------------------------------------------------------------ reading
    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                frame = await read_frame(reader)
                if frame is None:
                    log.info("ESL connection closed by the switch")
                    return
                self._dispatch(frame)
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.info("ESL connection dropped: %r", exc)
        except EslProtocolError as exc:
            # Framing is lost: nothing after this point can be trusted, so start over.
            log.error("ESL protocol error, reconnecting: %s", exc)

    def _dispatch(self, frame: Frame) -> None:
        kind = frame.content_type
        if kind in ("command/reply", "api/response"):
            if not self._pending:
                log.warning("ESL reply with no command waiting: %r", reply_text(frame)[:200])
                return
            fut = self._pending.popleft()
            if not fut.done():
                fut.set_result(frame)
        elif kind in ("text/event-json", "text/event-plain"):
            try:
                event = decode_event(frame)
            except (ValueError, UnicodeDecodeError) as exc:
                log.error("ESL: skipping malformed %s event: %s", kind, exc)
                return
            self._on_event(event)
        elif kind == "text/disconnect-notice":
            log.info("ESL disconnect notice: %s", frame.body.decode(errors="replace").strip())
        elif kind == "text/rude-rejection":
            log.error("ESL rude rejection: %s", frame.body.decode(errors="replace").strip())
        elif kind == "auth/request":
            log.warning("ESL: unexpected auth/request on an authenticated connection")
        else:
            log.warning("ESL: skipping frame of unknown type %r", kind)

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("Event-Name") == "BACKGROUND_JOB":
            job = self._jobs.pop(str(event.get("Job-UUID", "")), None)
            if job is not None and not job.done():
                job.set_result(str(event.get("_body", "")))
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("ESL event callback failed")

    # ------------------------------------------------------------ commands
    async def _command(self, text: str) -> Frame:
        """Send one command (its first line, optional header lines) and await its reply."""
        async with self._lock:
            writer = self._writer
            if writer is None or writer.is_closing():
                raise SwitchUnavailable(f"not connected to FreeSWITCH at {self.host}:{self.port}")
            fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
            self._pending.append(fut)
            try:
                writer.write(text.encode() + b"\n\n")
                await writer.drain()
            except OSError as exc:
                raise SwitchUnavailable(f"write to FreeSWITCH failed: {exc}") from exc
            try:
                return await asyncio.wait_for(asyncio.shield(fut), REPLY_TIMEOUT)
            except TimeoutError:
                # Replies come back in command order: one that never comes would leave every
                # later reply matched to the wrong command, so the connection is made anew.
                writer.close()
                raise SwitchUnavailable(
                    f"FreeSWITCH did not answer {text.splitlines()[0]!r} in {REPLY_TIMEOUT:.0f} s"
                ) from None

    def _check_ready(self) -> None:
        if not self._ready:
            raise SwitchUnavailable(f"not connected to FreeSWITCH at {self.host}:{self.port}")

    async def api(self, cmd: str) -> str:
        """Run an API command; the body of its api/response (`+OK…`, `-ERR…` or data)."""
        self._check_ready()
        _single_line(cmd)
        return reply_text(await self._command(f"api {cmd}"))

    async def bgapi_start(self, cmd: str, job_uuid: str | None = None) -> asyncio.Future[str]:
        """Start a background API command; a future for its BACKGROUND_JOB body."""
        self._check_ready()
        _single_line(cmd)
        if "BACKGROUND_JOB" not in self._subscriptions:
            await self.subscribe(["BACKGROUND_JOB"], self._format)
        job_id = job_uuid or str(uuid.uuid4())
        job: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._jobs[job_id] = job
        try:
            reply = reply_text(await self._command(f"bgapi {cmd}\nJob-UUID: {job_id}"))
        except BaseException:
            self._jobs.pop(job_id, None)
            raise
        if not reply.startswith("+OK"):
            self._jobs.pop(job_id, None)
            raise SwitchError(reply.removeprefix("-ERR").strip() or "bgapi refused")
        return job

    async def bgapi(self, cmd: str) -> str:
        return await (await self.bgapi_start(cmd))

    async def sendmsg(
        self, channel_id: str, app: str, arg: str = "", event_lock: bool = True
    ) -> str:
        """Execute a dialplan application on a channel; the Reply-Text."""
        self._check_ready()
        for part in (channel_id, app, arg):
            _single_line(part)
        lines = [
            f"sendmsg {channel_id}",
            "call-command: execute",
            f"execute-app-name: {app}",
        ]
        if arg:
            lines.append(f"execute-app-arg: {arg}")
        if event_lock:
            lines.append("event-lock: true")
        return reply_text(await self._command("\n".join(lines)))

    async def subscribe(
        self, events: Iterable[str], format: Literal["json", "plain"] = "json"
    ) -> None:
        """Add events to the subscription (kept across reconnects). BACKGROUND_JOB is
        always included: without it a bgapi result would never arrive."""
        self._check_ready()
        if format != self._format:
            # ESL has one format per connection; a new `event` command switches it for all.
            self._subscriptions.clear()
        self._format = format
        names = {e for e in events} | {"BACKGROUND_JOB"}
        self._subscriptions |= names
        reply = reply_text(
            await self._command(f"event {format} {' '.join(sorted(self._subscriptions))}")
        )
        if not reply.startswith("+OK"):
            raise SwitchError(f"subscribe refused: {reply}")


def _single_line(text: str) -> None:
    # A newline would end the command early and smuggle in another one.
    if "\n" in text or "\r" in text:
        raise ValueError(f"ESL command text must be one line: {text!r}")
