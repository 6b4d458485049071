"""The built-in switch lives and dies with its process: after a `kill -9` mid-call, the
restarted instance ends the calls the switch lost, so no agent stays "on call" and no
caller waits for ever."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, panel, running_instance, wait_for

from deploy.natsserver import NatsServer, free_port
from domain.apps import DomainApps
from domain.calls import Call
from domain.vocabulary import EndpointKind, Package

TENANT = "crashco"
HOTLINE = "+842873005555"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    # A server of its own: a second instance with a built-in switch on the session's
    # server would share the bridges' queue group with the other tests' instance.
    nats_server = NatsServer(data_dir=tmp_path / "nats")
    nats_server.start()
    yield nats_server
    nats_server.stop()


def test_calls_lost_in_a_crash_are_ended_after_the_restart(
    server: NatsServer, tmp_path: Path
) -> None:
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": server.url})
    try:
        apps.tenants.register(TENANT, "Crash Co", Package.CALL_CENTER, [HOTLINE])
        queue = apps.queues.create(TENANT, "Support")
        apps.tenants.route_hotline(TENANT, HOTLINE, "queue", queue)
        agent = apps.agents.create_user(TENANT, "An", "an", "agent", package=Package.CALL_CENTER)
        apps.agents.add_endpoint(TENANT, agent, EndpointKind.SIP_PHONE, "3001")
        apps.agents.go_available(TENANT, agent)
        data = tmp_path / "data"
        data.mkdir()
        env = {**os.environ, "CLOUDCC_DATA": str(data), "NATS_URL": server.url}
        env["CLOUDCC_WRAP_UP_SECONDS"] = "0"
        log = data / "first.log"
        with open(log, "w") as out:
            first = subprocess.Popen(
                [sys.executable, "-m", "deploy.cli", "up", "--port", str(free_port())],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(log.read_text, lambda text: "cloudcc is up:" in text, 30)
            asyncio.run(panel(server.url, "party", {"address": "3001", "party": {}}))
            placed = asyncio.run(
                panel(server.url, "call", {"caller_number": "0901234567", "hotline": HOTLINE})
            )
            ref = placed["channel_id"]

            def call() -> dict[str, Any] | None:
                try:
                    return apps.calls.get(TENANT, Call.create_id(TENANT, ref))
                except Exception:  # noqa: BLE001 - not there yet
                    return None

            answered = wait_for(call, lambda c: bool(c and c["answered_at"]))
            assert answered is not None and answered["answered_at"]
            assert wait_for(lambda: apps.agents.get(TENANT, agent)["presence"], "on_call".__eq__)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)

        with running_instance(data, server.url, free_port(), CLOUDCC_WRAP_UP_SECONDS="0"):
            ended = wait_for(call, lambda c: bool(c and c["ended_at"]), 30)
            assert ended is not None and ended["end_cause"] == "lost_in_restart", ended
            presence = wait_for(
                lambda: apps.agents.get(TENANT, agent)["presence"], "available".__eq__, 30
            )
            assert presence == "available"
            # The switch works after the restart: a new call is answered by the agent.
            placed = asyncio.run(
                panel(server.url, "call", {"caller_number": "0907654321", "hotline": HOTLINE})
            )
            ref = placed["channel_id"]
            again = wait_for(call, lambda c: bool(c and c["answered_at"]))
            assert again is not None and again["answered_at"]
    finally:
        apps.close()
