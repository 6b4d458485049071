"""`cloudcc up --demo`, as a newcomer runs it: a real process on a real NATS, sped up.

Within seconds the read models must show a living contact center (agents ringing or on
calls, answered and abandoned or missed calls, chats assigned to agents, the seeded
customers, routing decisions), and a second `up --demo` on the same data directory must
seed nothing twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from deploy.natsserver import free_port

ROOT = Path(__file__).parent.parent
READY = "traffic flowing"


class DemoInstance:
    """A `cloudcc up --demo` subprocess, ten times faster than life; output to a file."""

    def __init__(self, nats_url: str, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / f"{data.name}-demo-{self.port}.log"
        env = {
            **os.environ,
            "CLOUDCC_DATA": str(data),
            "NATS_URL": nats_url,
            "CLOUDCC_DEMO_SPEED": "10",
            # Agents back from wrap-up sooner, where the setting exists.
            "CLOUDCC_WRAP_UP_SECONDS": "3",
        }
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deploy.cli", "up", "--demo", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while READY not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"the demo did not start:\n{self.output()}"
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text()

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = httpx.get(f"{self.url}/health", timeout=5).json()
        return report

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(20) == 0, self.output()


def query(data: Path, readmodel: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a read model of the instance, read-only (the instance is the writer)."""
    path = data / "readmodels" / f"{readmodel}.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def count(data: Path, readmodel: str, sql: str) -> int:
    return int(query(data, readmodel, sql)[0][0])


LIVING = {
    "agents ringing or on a call": (
        "agent_board",
        "SELECT count(*) FROM agents WHERE tenant_id = 'demo' "
        "AND presence IN ('ringing', 'on_call')",
    ),
    "answered calls": (
        "call_log",
        "SELECT count(*) FROM calls WHERE tenant_id = 'demo' AND outcome = 'answered'",
    ),
    "abandoned or missed calls": (
        "call_log",
        "SELECT count(*) FROM calls WHERE tenant_id = 'demo' "
        "AND outcome IN ('abandoned', 'missed')",
    ),
    "chats assigned to agents": (
        "inbox",
        "SELECT count(*) FROM conversations WHERE tenant_id = 'demo' AND channel = 'chat' "
        "AND assignee IS NOT NULL",
    ),
    "routing decisions": (
        "routing",
        "SELECT count(*) FROM routings WHERE tenant_id = 'demo' AND offered_at IS NOT NULL",
    ),
    "SLA clocks on conversations": (
        "sla_timers",
        "SELECT count(*) FROM clocks WHERE tenant_id = 'demo' AND subject_kind = 'conversation'",
    ),
}
AGENTS = "SELECT count(*) FROM agents WHERE tenant_id = 'demo'"
CUSTOMERS = "SELECT count(*) FROM customers WHERE tenant_id = 'demo'"


def caught_up(instance: DemoInstance, *names: str) -> bool:
    services = instance.health()["services"]
    return all(services[n]["state"] == "running" and services[n]["lag"] == 0 for n in names)


def test_the_demo_is_a_living_contact_center_and_seeds_once(nats_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = DemoInstance(nats_url, data)
    try:
        deadline = time.monotonic() + 30
        while True:
            seen = {what: count(data, *where) for what, where in LIVING.items()}
            if all(seen.values()) and count(data, "customers", CUSTOMERS) == 50:
                break
            assert time.monotonic() < deadline, f"not alive yet: {seen}\n{first.output()}"
            time.sleep(0.25)
        assert count(data, "agent_board", AGENTS) == 14  # 12 agents, a supervisor, an admin
        assert first.health()["services"]["demo"]["state"] == "running"
    finally:
        first.stop()

    second = DemoInstance(nats_url, data)
    try:
        assert "nothing to seed" in second.output()
        deadline = time.monotonic() + 10
        while not caught_up(second, "agent_board", "customers"):
            assert time.monotonic() < deadline, second.health()
            time.sleep(0.1)
        assert count(data, "agent_board", AGENTS) == 14
        assert count(data, "customers", CUSTOMERS) == 50
        names = query(data, "customers", "SELECT name FROM customers WHERE tenant_id = 'demo'")
        assert len({name for (name,) in names}) == 50
    finally:
        second.stop()
