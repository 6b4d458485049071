"""Small helpers shared by the integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats

from deploy.natsserver import NatsServer
from eventstore.connection import NatsConnection
from eventstore.layout import StreamLayout
from eventstore.store import JetStreamStore

T = TypeVar("T")


def retry(fn: Callable[[], T], seconds: float = 20) -> T:
    """`fn()` until it stops raising: a restarted server or a cluster electing a leader
    refuses calls for a moment; after `seconds` the last error is raised."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def private_server(tmp_path: Path, app: str) -> Iterator[tuple[NatsServer, JetStreamStore]]:
    """A nats-server of the test's own (to stop, kill or restart) and a store on it."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    conn = NatsConnection(server.url)
    try:
        store = JetStreamStore(conn, StreamLayout(app))
        conn.run(store.ensure_stream())
        yield server, store
    finally:
        conn.close()
        server.stop()


ROOT = Path(__file__).parent.parent


@contextlib.contextmanager
def running_instance(
    data: Path, nats_url: str, port: int, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `cloudcc up` (every service) on `nats_url`, data in `data`, until the block
    ends; then SIGTERM, which must stop it cleanly. Its output is `data/up.log`: a file,
    not a pipe, since nobody reads a pipe after start-up and a full one would block the
    instance's next log line (and with it its event loop)."""
    log = data / "up.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "up", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "CLOUDCC_DATA": str(data), "NATS_URL": nats_url, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "cloudcc is up:" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "cloudcc up did not come up"
            time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log.read_text()[-3000:]


def wait_for(fetch: Callable[[], T], predicate: Callable[[T], bool], timeout: float = 15) -> T:
    """`fetch()` until `predicate` holds of it or `timeout` passes; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if predicate(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


async def panel(nats_url: str, verb: str, request: dict[str, Any]) -> dict[str, Any]:
    """Ask the built-in switch's panel (telephony_bridge.switchctl); its error fails."""
    nc = await nats.connect(nats_url)
    try:
        reply = await nc.request(f"switch.builtin.{verb}", msgspec.json.encode(request), 5)
    finally:
        await nc.close()
    answer: dict[str, Any] = msgspec.json.decode(reply.data)
    assert "error" not in answer, answer
    return answer


_KEYS: dict[tuple[str, str], str] = {}


def api_headers(base_url: str, nats_url: str, tenant: str) -> dict[str, str]:
    """An `Authorization` header with an API key of `tenant` (registered if it is not
    yet), once the instance at `base_url` accepts the key."""
    import hashlib

    import httpx

    from domain.apps import DomainApps
    from domain.tenants import TenantAlreadyRegistered
    from domain.vocabulary import Package

    key = _KEYS.get((nats_url, tenant))
    if key is None:
        apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
        try:
            # A hotline of its own (a number belongs to one tenant), from the name.
            digits = int(hashlib.sha256(tenant.encode()).hexdigest(), 16) % 10**7
            with contextlib.suppress(TenantAlreadyRegistered):
                apps.tenants.register(
                    tenant, tenant.title(), Package.CONTACT_CENTER, [f"+84286{digits:07d}"]
                )
            key = _KEYS[(nats_url, tenant)] = apps.tenants.issue_api_key(tenant, "tests")
        finally:
            apps.close()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base_url, timeout=10, headers=headers) as http:
        wait_for(
            lambda: http.get(f"/api/v1/tenants/{tenant}/customers").status_code,
            lambda code: code != 401,
        )
    return headers
