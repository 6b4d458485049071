"""`cloudcc up`, `status` and `stop` as an operator uses them: real processes, real NATS.

Each test starts `python -m deploy.cli up` with its own data directory and checks what an
operator would: the URL line, /health, the instance file, the lock against a second `up`,
a clean stop on SIGTERM/SIGINT, and a restart after `kill -9`. One test runs the Runtime
in-process to check how services and extra routes plug in.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import nats
import pytest
from litestar import get

from deploy.natsserver import free_port, pid_alive
from deploy.runtime import Runtime
from deploy.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
UP_LINE = "cloudcc is up: "


def _env(data: Path, nats_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDCC_", "NATS_"))}
    env["CLOUDCC_DATA"] = str(data)
    if nats_url is not None:
        env["NATS_URL"] = nats_url
    return env


@dataclass
class Instance:
    proc: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def read_output(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_up(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(UP_LINE):
                    return line[len(UP_LINE) :].strip()
            assert self.proc.poll() is None, f"cloudcc up exited:\n{self.output()}"
            time.sleep(0.05)
        raise AssertionError(f"cloudcc up did not come up in {timeout}s:\n{self.output()}")

    def wait_exit(self, timeout: float = 20.0) -> int:
        code = self.proc.wait(timeout)
        if self.reader is not None:
            self.reader.join(5)  # so output() includes the last lines
        return code


@pytest.fixture
def launch() -> Iterator[Callable[..., Instance]]:
    instances: list[Instance] = []

    def start(data: Path, nats_url: str | None = None) -> Instance:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "up", "--port", str(port)],
            cwd=ROOT,
            env=_env(data, nats_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        instance = Instance(proc, port)
        instance.reader = threading.Thread(target=instance.read_output, daemon=True)
        instance.reader.start()
        instances.append(instance)
        return instance

    yield start
    for instance in instances:
        if instance.proc.poll() is None:
            instance.proc.kill()
            instance.proc.wait()


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        cwd=ROOT,
        env=_env(data),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,  # the tests assert on the exit code
    )


def get_health(http_url: str) -> tuple[int, dict[str, Any]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{http_url}/health", timeout=5) as response:
            return response.status, json.load(response)
    except HTTPError as exc:
        return exc.code, json.load(exc)


def test_up_status_lock_and_sigterm(tmp_path: Path, launch: Callable[..., Instance]) -> None:
    up = launch(tmp_path)
    url = up.wait_up()
    assert url == f"http://127.0.0.1:{up.port}"

    code, health = get_health(url)
    assert code == 200, health
    assert health["status"] == "ok"
    assert health["nats"]["connected"] is True
    assert health["nats"]["url"].startswith("nats://127.0.0.1:")

    info = json.loads((tmp_path / "cloudcc.json").read_text())
    assert info["pid"] == up.proc.pid
    assert info["http_url"] == url
    assert info["nats_url"] == health["nats"]["url"]
    nats_pid = int((tmp_path / "nats" / "nats-server.pid").read_text())
    assert pid_alive(nats_pid)

    status = cli(tmp_path, "status")
    assert status.returncode == 0, status.stderr
    assert url in status.stdout
    assert '"status": "ok"' in status.stdout

    second = cli(tmp_path, "up", "--port", str(free_port()))
    assert second.returncode == 1
    assert "already running" in second.stderr
    assert f"pid {up.proc.pid}" in second.stderr
    assert up.proc.poll() is None, "the second `up` must leave the first alone"

    up.proc.send_signal(signal.SIGTERM)
    assert up.wait_exit() == 0, up.output()
    assert not pid_alive(nats_pid)
    assert not (tmp_path / "cloudcc.json").exists()
    after = cli(tmp_path, "status")
    assert after.returncode == 1
    assert "not running" in after.stderr


async def _append_marker(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(name="UPTEST", subjects=["uptest.>"])
    await js.publish("uptest.marker", b"before kill -9")
    await nc.close()


async def _marker_count(nats_url: str) -> int:
    nc = await nats.connect(nats_url)
    info = await nc.jetstream().stream_info("UPTEST")
    await nc.close()
    return int(info.state.messages)


def test_restart_after_kill_9(tmp_path: Path, launch: Callable[..., Instance]) -> None:
    first = launch(tmp_path)
    first.wait_up()
    info = json.loads((tmp_path / "cloudcc.json").read_text())
    asyncio.run(_append_marker(info["nats_url"]))
    old_nats_pid = int((tmp_path / "nats" / "nats-server.pid").read_text())

    first.proc.kill()
    first.proc.wait()

    # The stale cloudcc.json and the lock file are still there; neither may block this.
    second = launch(tmp_path)
    url = second.wait_up()
    assert not pid_alive(old_nats_pid)
    code, health = get_health(url)
    assert code == 200, health
    assert health["nats"]["connected"] is True
    info = json.loads((tmp_path / "cloudcc.json").read_text())
    assert info["pid"] == second.proc.pid
    # The JetStream store survived the crash and the new nats-server took it over.
    assert asyncio.run(_marker_count(info["nats_url"])) == 1

    stop = cli(tmp_path, "stop")
    assert stop.returncode == 0, stop.stderr
    assert second.wait_exit() == 0, second.output()


def test_external_nats(tmp_path: Path, nats_url: str, launch: Callable[..., Instance]) -> None:
    up = launch(tmp_path, nats_url=nats_url)
    url = up.wait_up()
    assert "(external)" in up.output()
    assert not (tmp_path / "nats").exists(), "no nats-server may start when NATS_URL is set"

    code, health = get_health(url)
    assert code == 200, health
    assert health["nats"] == {
        "connected": True,
        "url": nats_url,
        "server": health["nats"]["server"],
    }
    assert health["nats"]["server"].startswith("nats-server ")

    # Ctrl-C in a terminal sends SIGINT: it must stop as cleanly as SIGTERM.
    up.proc.send_signal(signal.SIGINT)
    assert up.wait_exit() == 0, up.output()
    assert not (tmp_path / "cloudcc.json").exists()


@dataclass
class FailingProjection:
    """A projection whose health reports an error, so /health must say "degraded"."""

    name: str = "tickets"
    connected_at_start: bool = False
    stopped: bool = False

    async def start(self, runtime: Runtime) -> None:
        self.connected_at_start = runtime.nc.is_connected

    async def stop(self) -> None:
        self.stopped = True

    def health(self) -> dict[str, Any]:
        return {"state": "error", "error": "boom", "position": 7, "lag": 3}


@get("/ping", media_type="text/plain")
async def ping() -> str:
    return "pong"


def test_services_and_routes_plug_in(tmp_path: Path, nats_url: str) -> None:
    projection = FailingProjection()

    async def scenario() -> tuple[int, dict[str, Any], str]:
        runtime = Runtime(Settings.from_env({}, data_dir=tmp_path, nats_url=nats_url, http_port=0))
        runtime.add_service(projection)
        runtime.add_route_handlers(ping)
        running = asyncio.create_task(runtime.run())
        while not (tmp_path / "cloudcc.json").exists():
            assert not running.done(), running.exception()
            await asyncio.sleep(0.02)
        assert runtime.http_url is not None
        code, health = await asyncio.to_thread(get_health, runtime.http_url)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with await asyncio.to_thread(opener.open, f"{runtime.http_url}/ping", None, 5) as r:
            pong = r.read().decode()
        runtime.stop()
        await running
        return code, health, pong

    code, health, pong = asyncio.run(scenario())
    assert code == 503
    assert health["status"] == "degraded"
    assert health["projections"] == {"tickets": {"position": 7, "lag": 3, "state": "error"}}
    assert health["services"]["tickets"]["error"] == "boom"
    assert pong == "pong"
    assert projection.connected_at_start
    assert projection.stopped
    assert not (tmp_path / "cloudcc.json").exists()
