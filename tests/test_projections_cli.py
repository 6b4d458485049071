"""`cloudcc projections status|rebuild|verify`, and exactly-once projection under `kill -9`.

One data directory for the module: the first fixture kills a `cloudcc up` while its
projection is mid-stream and restarts it; the tests then verify, tamper, rebuild and
read the status of what it left.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.natsserver import free_port
from domain.conversations import Conversations
from domain.customers import Customers
from domain.vocabulary import Channel

ROOT = Path(__file__).parent.parent


def cloudcc(nats_url: str, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        cwd=ROOT,
        env={**os.environ, "NATS_URL": nats_url, "CLOUDCC_DATA": str(data)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Instance:
    """A `cloudcc up` subprocess; its output goes to a file so no pipe can fill up."""

    def __init__(self, nats_url: str, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / f"{data.name}-up-{self.port}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deploy.cli", "up", "--port", str(self.port)],
                cwd=ROOT,
                env={**os.environ, "CLOUDCC_DATA": str(data), "NATS_URL": nats_url},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while "cloudcc is up:" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "cloudcc up did not come up"
            time.sleep(0.05)

    def projection(self) -> dict[str, Any]:
        health: dict[str, Any] = httpx.get(f"{self.url}/health", timeout=5).json()
        return dict(health["services"]["customers"])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(20) == 0


def write_customers(nats_url: str, count: int, stop: threading.Event) -> int:
    """Append customers straight to the event store, from this process (so that the
    writes go on while the instance is killed); the customers stream's last id.

    Every fifth customer also writes in on chat, so that the read models following
    several streams (inbox, timeline, boards, routing, SLA) are mid-stream too.
    """
    env = {"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url}
    customers, conversations = Customers(env=env), Conversations(env=env)
    try:
        for i in range(count):
            if stop.is_set():
                break
            cid = customers.register("acme", f"c{i}")
            if i % 5 == 0:
                conversation = conversations.start("acme", Channel.CHAT, cid)
                conversations.receive_message("acme", conversation, f"m{i}", "xin chào")
        return int(customers.recorder.max_notification_id() or 0)
    finally:
        customers.close()
        conversations.close()


def sqlite_position(data: Path) -> int:
    db = sqlite3.connect(data / "readmodels" / "customers.sqlite")
    try:
        row = db.execute("SELECT position FROM tracking WHERE projection = 'customers'").fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


@pytest.fixture(scope="module")
def data(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data directory whose projection was killed mid-stream, restarted and caught up."""
    data = tmp_path_factory.mktemp("projections") / "data"
    first = Instance(nats_url, data)
    # The stream is shared with other tests: let the new read model catch up on what is
    # already there, so that the kill below falls inside our own burst of appends.
    deadline = time.monotonic() + 30
    while (seen := first.projection())["lag"] > 0 or seen["state"] != "running":
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    baseline = seen["position"]
    written: list[int] = []
    stop = threading.Event()
    writer = threading.Thread(target=lambda: written.append(write_customers(nats_url, 600, stop)))
    writer.start()
    killed_at: dict[str, Any] | None = None
    deadline = time.monotonic() + 30
    try:
        while writer.is_alive() and time.monotonic() < deadline:
            seen = first.projection()
            # Mid-stream: it has applied some of the burst while more is being appended.
            if seen["position"] > baseline:
                first.proc.send_signal(signal.SIGKILL)
                killed_at = seen
                break
            time.sleep(0.005)
        assert killed_at is not None, "the projection was never seen mid-burst"
    finally:
        first.proc.kill()  # also when the test failed first: never leave one running
        first.proc.wait(10)
        writer.join(60)  # the writes go on across the kill, as a busy system's would
        stop.set()
    last = written[0]
    assert last > killed_at["position"]

    second = Instance(nats_url, data)
    try:
        deadline = time.monotonic() + 30
        while (seen := second.projection())["position"] < last or seen["state"] != "running":
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
        # The restart resumed from the tracked position, not from zero, and went past
        # where the killed one had got to.
        assert seen["position"] > killed_at["position"]
    finally:
        second.stop()
    yield data


def test_exactly_once_across_kill_9_verify_finds_nothing(nats_url: str, data: Path) -> None:
    verified = cloudcc(nats_url, data, "projections", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "customers: identical to a rebuild up to position" in verified.stdout
    # The read models that follow several streams were killed mid-stream too.
    assert "inbox: identical to a rebuild up to conversations" in verified.stdout
    assert "timeline: identical to a rebuild up to customers" in verified.stdout
    assert "difference" not in verified.stdout
    # The rebuild reports its progress on stderr.
    assert "customers: position" in verified.stderr


def test_verify_catches_a_tampered_row_and_rebuild_restores_it(nats_url: str, data: Path) -> None:
    path = data / "readmodels" / "customers.sqlite"
    db = sqlite3.connect(path)
    cid, name = db.execute("SELECT id, name FROM customers ORDER BY id LIMIT 1").fetchone()
    with db:
        db.execute("UPDATE customers SET name = 'Mallory' WHERE id = ?", (cid,))
    db.close()

    caught = cloudcc(nats_url, data, "projections", "verify")
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert f"id='{cid}'" in caught.stdout
    assert f"name: live 'Mallory', rebuilt '{name}'" in caught.stdout

    rebuilt = cloudcc(nats_url, data, "projections", "rebuild", "customers")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "customers: rebuilt up to position" in rebuilt.stdout
    assert not list(path.parent.glob(".customers.sqlite.rebuild-*"))

    verified = cloudcc(nats_url, data, "projections", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_rebuild_is_refused_while_cloudcc_runs_and_status_shows_position_and_lag(
    nats_url: str, data: Path
) -> None:
    before = sqlite_position(data)
    assert (
        cloudcc(nats_url, data, "projections", "rebuild", "nosuch").stderr.count("no read model")
        == 1
    )
    running = Instance(nats_url, data)
    try:
        refused = cloudcc(nats_url, data, "projections", "rebuild")
        assert refused.returncode == 1
        assert "stop cloudcc first" in refused.stderr

        status = cloudcc(nats_url, data, "projections", "status")
        assert status.returncode == 0, status.stderr
        line = next(x for x in status.stdout.splitlines() if x.startswith("customers"))
        name, stream, position, lag, state = line.split(maxsplit=4)
        assert stream == "customers"
        assert int(position) >= before and int(lag) >= 0 and state == "running"

        # verify is safe while it runs: it compares up to the live position.
        verified = cloudcc(nats_url, data, "projections", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        running.stop()

    status = cloudcc(nats_url, data, "projections", "status")
    line = next(x for x in status.stdout.splitlines() if x.startswith("customers"))
    assert line.split()[2:5] == [str(sqlite_position(data)), "0", "not"]
