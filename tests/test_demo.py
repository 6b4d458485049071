"""`cloudcc up --demo`, as a newcomer runs it: a real process on a real NATS, sped up.

Within seconds the read models must show a living contact center (agents ringing or on
calls, answered and abandoned or missed calls, chats assigned to agents, the seeded
customers, routing decisions), and a second `up --demo` on the same data directory must
seed nothing twice. The demo's calls go through the real path (the built-in switch's
panel, the telephony bridge, the hotline's IVR flow), so the telephony bridge carries out
routing's commands for them, nearly all without a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import nats

from deploy.natsserver import free_port
from domain.apps import DomainApps

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
CALLS = "SELECT count(*) FROM calls WHERE tenant_id = 'demo'"
ANSWERED_FROM_QUEUES = (
    "SELECT id FROM calls WHERE tenant_id = 'demo' AND queue_id IS NOT NULL "
    "AND answered_at IS NOT NULL"
)
CUSTOMERS = "SELECT count(*) FROM customers WHERE tenant_id = 'demo'"


async def failed_commands(nats_url: str) -> list[dict[str, Any]]:
    """The TelephonyCommandFailed facts of tenant demo in the FACTS stream."""
    subject = "facts.demo.telephony"
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("FACTS", subjects_filter=subject)
        total = (info.state.subjects or {}).get(subject, 0)
        found: list[dict[str, Any]] = []
        if total:
            sub = await js.subscribe(subject, ordered_consumer=True)
            for _ in range(total):
                fact = json.loads((await sub.next_msg(timeout=5)).data)
                if fact["type"] == "TelephonyCommandFailed":
                    found.append(fact)
            await sub.unsubscribe()
        return found
    finally:
        await nc.close()


def assert_calls_went_through_the_ivr(nats_url: str, data: Path) -> None:
    """Answered calls walked the hotline's IVR flow into a queue, as the bridge walks it."""
    answered = [UUID(i) for (i,) in query(data, "call_log", ANSWERED_FROM_QUEUES)]
    assert answered
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        for call_id in answered[:10]:
            call = apps.calls.get("demo", call_id)
            path = [step["node_id"] for step in call["ivr_path"]]
            assert path[:2] == ["greeting", "menu"] and path[-1].startswith("to_"), call
            assert call["ivr_path"][-1]["digits"] or path.count("menu") == 3, call
            assert call["queue_id"] and call["agent_ids"], call
    finally:
        apps.close()


def caught_up(instance: DemoInstance, *names: str) -> bool:
    services = instance.health()["services"]
    return all(services[n]["state"] == "running" and services[n]["lag"] == 0 for n in names)


def test_the_demo_is_a_living_contact_center_and_seeds_once(nats_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = DemoInstance(nats_url, data)
    try:
        deadline = time.monotonic() + 60
        while True:
            seen = {what: count(data, *where) for what, where in LIVING.items()}
            # Enough calls for the share of failed telephony commands below to mean something.
            seen["calls"] = count(data, "call_log", CALLS) >= 20
            if all(seen.values()) and count(data, "customers", CUSTOMERS) == 50:
                break
            assert time.monotonic() < deadline, f"not alive yet: {seen}\n{first.output()}"
            time.sleep(0.25)
        assert count(data, "agent_board", AGENTS) == 14  # 12 agents, a supervisor, an admin
        assert first.health()["services"]["demo"]["state"] == "running"
        assert first.health()["services"]["demo"]["traffic"].get("panel_errors", 0) == 0
        assert_calls_went_through_the_ivr(nats_url, data)
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

    # The bridge alone answers routing's commands for the demo's calls, and knows them all.
    # Not none at all: a caller may hang up (impatient, or in the IVR's last second) while
    # routing's RingAgent or SendToFallback is on its way, and the bridge then reports the
    # call gone. That race is rare; when the demo played the switch itself, the bridge
    # failed every RingAgent of its calls.
    failed = asyncio.run(failed_commands(nats_url))
    calls = count(data, "call_log", CALLS)
    assert len(failed) <= calls // 10, (calls, failed)
