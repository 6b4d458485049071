"""Run cloudcc in one process and one asyncio loop: NATS, the services, and the web app.

`cloudcc up` builds a `Runtime`, lets `deploy.services` add services and routes, and
calls `run()`. In order, `run()`:

1. takes an exclusive lock on `<data_dir>/cloudcc.lock`, so two processes never share a
   data directory (the kernel drops the lock if the process dies, even by `kill -9`);
2. starts an embedded nats-server with JetStream under `<data_dir>/nats`, unless
   `NATS_URL` names servers to use instead;
3. connects one nats-py client, `runtime.nc`, which reconnects forever;
4. starts the services in the order they were added;
5. serves HTTP with uvicorn in the same loop, then writes `<data_dir>/cloudcc.json`
   (how `cloudcc status` and `cloudcc stop` find the instance) and prints the URL.

SIGTERM or SIGINT stops all of it in reverse order, removes `cloudcc.json`, and `run()`
returns normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import nats
import uvicorn
from litestar import Litestar
from litestar.types import ControllerRouterHandler
from nats.aio.client import Client as NATS

from deploy.natsserver import NatsServer
from deploy.settings import Settings
from web.app import create_app

log = logging.getLogger(__name__)

INSTANCE_FILE = "cloudcc.json"
LOCK_FILE = "cloudcc.lock"
SERVICE_STOP_TIMEOUT = 10.0


class Service(Protocol):
    """A long-running part of cloudcc (a projection, connector or bridge) that the runtime runs.

    `start` is called once NATS is connected (use `runtime.nc` and `runtime.settings`); it
    returns once the service runs, keeping its own tasks. `stop` ends those tasks; it is
    called in reverse start order, before NATS closes. `health` is called on every
    GET /health, so it must be cheap; it returns
    `{"state": "running"|"stopped"|"error", "error": str|None, "positions": {stream: int},
    "position": int, "lag": int}`. A service that does not follow the event log leaves
    out "positions", "position" and "lag"; one that does is also listed under
    "projections" in the health report ("position" alone when it follows one stream).
    """

    name: str

    async def start(self, runtime: Runtime) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, Any]: ...


class StartupError(RuntimeError):
    """cloudcc cannot start; the message says why."""


class AlreadyRunning(StartupError):
    """Another cloudcc process holds the lock of the data directory."""


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: list[Service] = []
        self.route_handlers: list[ControllerRouterHandler] = []
        self.http_url: str | None = None
        self._nats_url = settings.nats_url
        self._nc: NATS | None = None
        self._nats_server: NatsServer | None = None
        self._http: _HttpServer | None = None
        self._http_task: asyncio.Future[None] | None = None
        self._started: list[Service] = []
        self._lock_fd: int | None = None
        self._stopping = False
        self._stop_requested = asyncio.Event()

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def nc(self) -> NATS:
        """The shared NATS client; available from `Service.start` on."""
        if self._nc is None:
            raise RuntimeError("NATS is not connected yet; use runtime.nc from Service.start")
        return self._nc

    @property
    def nats_url(self) -> str:
        """The URL(s) to reach NATS, comma-separated for a cluster, credentials included."""
        if self._nats_url is None:
            raise RuntimeError("the embedded nats-server has not started yet")
        return self._nats_url

    @property
    def nats_public_url(self) -> str:
        """`nats_url` safe to print or serve: without user names, passwords or tokens."""
        return public_url(self.nats_url)

    def add_service(self, service: Service) -> None:
        if self._lock_fd is not None:
            raise RuntimeError(f"cannot add service {service.name!r}: the runtime already runs")
        self.services.append(service)

    def add_route_handlers(self, *handlers: ControllerRouterHandler) -> None:
        """Add pages or APIs to the web app; call before `run`."""
        if self._lock_fd is not None:
            raise RuntimeError("cannot add route handlers: the runtime already runs")
        self.route_handlers.extend(handlers)

    def stop(self) -> None:
        """Make `run` stop everything and return, as SIGTERM does; call from the loop."""
        self._stop_requested.set()

    async def run(self) -> None:
        """Start everything, serve until SIGTERM, SIGINT or `stop()`, then stop everything."""
        self._lock()
        loop = asyncio.get_running_loop()
        stop = self._stop_requested
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            startup = asyncio.ensure_future(self._start())
            if not await _wait_or_stop(startup, stop):
                # Stopped while starting, e.g. waiting for an unreachable NATS cluster.
                startup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await startup
                return
            startup.result()
            self._announce()
            assert self._http_task is not None
            if await _wait_or_stop(self._http_task, stop):
                self._http_task.result()
                raise RuntimeError("the HTTP server stopped on its own")
        finally:
            # Signal handlers stay installed until here so that a second Ctrl-C cannot
            # interrupt the shutdown halfway and leave nats-server or cloudcc.json behind.
            await self._shutdown()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            self._unlock()

    async def _start(self) -> None:
        # Binding ourselves, and first, makes a port in use fail at once with a clear
        # message (uvicorn would sys.exit after NATS and the services had started), and
        # gives the real port when 0 was asked for.
        sock = _listen(self.settings.http_host, self.settings.http_port)
        try:
            await self._connect_nats()
            for service in self.services:
                await service.start(self)
                self._started.append(service)
            app = create_app(self, self.route_handlers, data_dir=self.settings.data_dir)
        except BaseException:
            sock.close()
            raise
        await self._serve_http(app, sock)
        self._write_instance()

    async def _connect_nats(self) -> None:
        if self.settings.embedded:
            self._nats_server = NatsServer(
                data_dir=self.data_dir / "nats", sync_interval=self.settings.sync_interval
            )
            # Deliberately on the loop's (main) thread: PR_SET_PDEATHSIG fires when the
            # thread that forked nats-server ends, so starting it from a worker thread
            # would kill it as soon as that thread is retired.
            self._nats_server.start()
            self._nats_url = self._nats_server.url
        log.info("connecting to NATS at %s", self.nats_public_url)
        self._nc = await nats.connect(
            servers=[url.strip() for url in self.nats_url.split(",") if url.strip()],
            name=f"cloudcc-{os.getpid()}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            error_cb=self._on_nats_error,
            disconnected_cb=self._on_nats_disconnected,
            reconnected_cb=self._on_nats_reconnected,
        )

    async def _serve_http(self, app: Litestar, sock: socket.socket) -> None:
        host = self.settings.http_host
        port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            log_level="warning",
            # Long-lived connections (live boards) must not hold up a stop for long.
            timeout_graceful_shutdown=5,
        )
        self._http = _HttpServer(config)
        self._http_task = asyncio.ensure_future(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()
                raise StartupError("the web app failed to start; see the log above")
            await asyncio.sleep(0.01)
        self.http_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def _announce(self) -> None:
        where = (
            f"embedded, data in {self._nats_server.data_dir}"
            if self._nats_server is not None
            else "external"
        )
        print(f"cloudcc is up: {self.http_url}", flush=True)
        print(f"  NATS: {self.nats_public_url} ({where})", flush=True)
        print("  stop with Ctrl-C or `cloudcc stop`", flush=True)

    async def _shutdown(self) -> None:
        self._stopping = True
        # Front to back: no new requests, then no new work, then the event store.
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await asyncio.wait({self._http_task})
        for service in reversed(self._started):
            try:
                await asyncio.wait_for(service.stop(), SERVICE_STOP_TIMEOUT)
            except Exception:
                log.exception("stopping service %s failed", service.name)
        self._started.clear()
        if self._nc is not None and not self._nc.is_closed:
            try:
                await self._nc.close()
            except Exception:
                log.exception("closing the NATS connection failed")
        if self._nats_server is not None:
            self._nats_server.stop()
        (self.data_dir / INSTANCE_FILE).unlink(missing_ok=True)

    async def _on_nats_error(self, exc: Exception) -> None:
        # nats-py's default logs a full traceback for every failed reconnect attempt.
        log.warning("NATS: %s: %s", type(exc).__name__, exc)

    async def _on_nats_disconnected(self) -> None:
        # nats-py reports our own close() as a disconnect too.
        if not self._stopping:
            log.warning("NATS connection lost; reconnecting")

    async def _on_nats_reconnected(self) -> None:
        log.info("NATS connection restored")

    def _lock(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = find_instance(self.data_dir) or {}
            raise AlreadyRunning(
                f"cloudcc is already running on {self.data_dir} "
                f"(pid {info.get('pid') or '?'}, {info.get('http_url') or 'still starting'}); "
                "stop it with `cloudcc stop` or use another --data directory"
            ) from None
        # The pid in the lock file names the holder while cloudcc.json is not written yet.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _write_instance(self) -> None:
        info = {
            "pid": os.getpid(),
            "http_url": self.http_url,
            "nats_url": self.nats_public_url,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        path = self.data_dir / INSTANCE_FILE
        # Write then rename, so a reader never sees half a file.
        tmp = path.with_name(f".{INSTANCE_FILE}.tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, path)


def find_instance(data_dir: Path) -> dict[str, Any] | None:
    """Return {"pid", "http_url", "nats_url", "started_at"} of the cloudcc on `data_dir`.

    None when no process holds the lock: a cloudcc.json left by a `kill -9` is ignored.
    While the holder is still starting, only "pid" is known and the rest is None.
    """
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid_text = os.read(fd, 32).decode(errors="replace").strip()
        else:
            return None
    finally:
        os.close(fd)
    pid = int(pid_text) if pid_text.isdigit() else None
    info: dict[str, Any] = {"pid": pid, "http_url": None, "nats_url": None, "started_at": None}
    with contextlib.suppress(OSError, ValueError):
        written = json.loads((data_dir / INSTANCE_FILE).read_text())
        if isinstance(written, dict) and written.get("pid") == pid:
            info.update(written)
    return info


def public_url(url: str) -> str:
    """`url`, possibly a comma-separated list, without user names, passwords or tokens."""
    cleaned = []
    for one in url.split(","):
        parts = urlsplit(one.strip())
        cleaned.append(urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])))
    return ",".join(cleaned)


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling.

    The runtime owns SIGINT and SIGTERM: it must stop the services and NATS after the web
    server, and uvicorn would re-raise the signal after its shutdown, killing the process
    before that.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restart bind at once while connections of the last run sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port"
        ) from None
    return sock


async def _wait_or_stop(task: asyncio.Future[None], stop: asyncio.Event) -> bool:
    """Wait until `task` finishes or `stop` is set; True if `task` finished."""
    stopped = asyncio.ensure_future(stop.wait())
    waiting: set[asyncio.Future[Any]] = {task, stopped}
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    return task.done()
