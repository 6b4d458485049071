"""One thin path through every layer: HTTP POST → command → events in JetStream →
projection → read model → HTTP GET, with the event loop never blocked; read-model changes
pushed on NATS; a call fact routed to an agent by the running instance."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest
from helpers import api_headers, running_instance
from nats.aio.msg import Msg

from deploy.natsserver import free_port
from domain.asyncapp import AsyncRunner

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def instance(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("thin")
    port = free_port()
    with running_instance(data, nats_url, port):
        yield f"http://127.0.0.1:{port}"


def wait_for(fetch, predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if predicate(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_a_posted_customer_reaches_the_read_model_through_the_event_store(
    instance: str, nats_url: str
) -> None:
    acme = api_headers(instance, nats_url, "acme")
    with httpx.Client(base_url=instance, timeout=10, headers=acme) as http:
        created = http.post(
            "/api/v1/tenants/acme/customers",
            json={
                "name": "Nguyễn Văn An",
                "identities": [{"kind": "phone", "value": "+84901234567"}],
            },
        )
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        shown = wait_for(
            lambda: http.get(f"/api/v1/tenants/acme/customers/{cid}"),
            lambda r: r.status_code == 200,
        )
        assert shown.json()["name"] == "Nguyễn Văn An"
        assert shown.json()["identities"] == [["phone", "+84901234567"]]

        assert (
            http.patch(f"/api/v1/tenants/acme/customers/{cid}", json={"name": "An"}).status_code
            == 200
        )
        renamed = wait_for(
            lambda: http.get(f"/api/v1/tenants/acme/customers/{cid}"),
            lambda r: r.json()["version"] == 2,
        )
        assert renamed.json()["name"] == "An"

        # Walled off: acme's key opens nothing of globex's (403), and globex's own key
        # finds nothing of acme's there (404); no key, or a made-up one, opens nothing.
        assert http.get(f"/api/v1/tenants/globex/customers/{cid}").status_code == 403
        assert http.get("/api/v1/tenants/globex/customers").status_code == 403
        patched = http.patch(f"/api/v1/tenants/globex/customers/{cid}", json={"name": "x"})
        assert patched.status_code == 403 and "globex" in patched.json()["detail"]
        globex = api_headers(instance, nats_url, "globex")
        assert (
            http.get(f"/api/v1/tenants/globex/customers/{cid}", headers=globex).status_code == 404
        )
        assert http.get("/api/v1/tenants/globex/customers", headers=globex).json() == []
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer cc.0000.nope"}):
            denied = http.get(f"/api/v1/tenants/acme/customers/{cid}", headers=headers)
            assert denied.status_code == 401 and "API key" in denied.json()["detail"]

        health = http.get("/health").json()
        assert health["nats"]["connected"] is True
        assert health["projections"]["customers"]["lag"] == 0

    # The events are really in JetStream, under the tenant's subject, in order.
    async def read_stream() -> list[tuple[str, int]]:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        sub = await js.subscribe(f"es.acme.customers.{cid}", ordered_consumer=True)
        got = [await sub.next_msg(timeout=5), await sub.next_msg(timeout=5)]
        await nc.close()
        return [(m.subject, m.metadata.sequence.stream) for m in got]

    stored = asyncio.run(read_stream())
    assert [s for s, _ in stored] == [f"es.acme.customers.{cid}"] * 2
    assert stored[0][1] < stored[1][1]


def test_bad_requests_get_4xx_with_a_reason(instance: str, nats_url: str) -> None:
    acme = api_headers(instance, nats_url, "acme")
    with httpx.Client(base_url=instance, timeout=10, headers=acme) as http:
        empty = http.post("/api/v1/tenants/acme/customers", json={"name": "  "})
        assert empty.status_code == 422 and "name" in empty.json()["detail"]
        unknown = http.post("/api/v1/tenants/acme/customers", json={"nam": "x"})
        assert unknown.status_code == 400
        bad_tenant = http.post("/api/v1/tenants/ac.me/customers", json={"name": "x"})
        assert bad_tenant.status_code == 403  # not acme's: the key decides before the path
        not_json = http.post(
            "/api/v1/tenants/acme/customers",
            content=b"{",
            headers={"content-type": "application/json"},
        )
        assert not_json.status_code == 400
        bad_kind = http.post(
            "/api/v1/tenants/acme/customers",
            json={"name": "x", "identities": [{"kind": "fax", "value": "1"}]},
        )
        assert bad_kind.status_code == 422


def test_the_loop_keeps_serving_while_many_commands_append(instance: str, nats_url: str) -> None:
    acme = api_headers(instance, nats_url, "acme")

    async def run() -> tuple[float, list[int]]:
        async with httpx.AsyncClient(base_url=instance, timeout=30, headers=acme) as http:
            posts = [
                http.post("/api/v1/tenants/acme/customers", json={"name": f"c{i}"})
                for i in range(100)
            ]
            started = time.perf_counter()
            pending = asyncio.gather(*posts)
            # /health answers from the same server loop while the appends are in flight.
            await asyncio.sleep(0.01)
            health = await http.get("/health")
            health_ms = (time.perf_counter() - started) * 1000
            assert health.status_code == 200
            return health_ms, [r.status_code for r in await pending]

    health_ms, codes = asyncio.run(run())
    assert codes == [201] * 100
    assert health_ms < 2000


def test_the_async_runner_keeps_the_calling_loop_free() -> None:
    async def run() -> float:
        runner = AsyncRunner(max_workers=4)
        stalls: list[float] = []

        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                stalls.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        # Four blocking calls of 0.3 s each, as a slow append would be.
        await asyncio.gather(*(runner(time.sleep, 0.3) for _ in range(4)))
        tick.cancel()
        runner.close()
        return max(stalls)

    assert asyncio.run(run()) < 0.1


def test_calling_the_sync_store_on_its_own_loop_is_refused(nats_url: str) -> None:
    from eventstore.connection import NatsConnection

    conn = NatsConnection(nats_url)
    try:

        async def inside() -> None:
            conn.run(asyncio.sleep(0))

        with pytest.raises(RuntimeError, match="own loop"):
            asyncio.run_coroutine_threadsafe(inside(), conn.loop).result(5)
    finally:
        conn.close()


def test_a_projection_parks_at_a_bad_message_until_an_operator_skips_it(
    instance: str, nats_url: str
) -> None:
    async def write_garbage() -> int:
        nc = await nats.connect(nats_url)
        ack = await nc.jetstream().publish(
            f"es.acme.customers.{uuid.uuid4()}", b"not an event", stream="ES_CUSTOMERS"
        )
        await nc.close()
        return int(ack.seq)

    acme = api_headers(instance, nats_url, "acme")
    with httpx.Client(base_url=instance, timeout=10, headers=acme) as http:
        bad = asyncio.run(write_garbage())
        parked = wait_for(
            lambda: http.get("/health").json()["services"]["customers"],
            lambda h: h["state"] == "error",
        )
        assert f"stopped at {bad}" in parked["error"]
        assert http.get("/health").status_code == 503  # degraded, for a load balancer

        # Appends go on while the projection waits; the read model does not move.
        cid = http.post("/api/v1/tenants/acme/customers", json={"name": "after"}).json()["id"]
        assert http.get(f"/api/v1/tenants/acme/customers/{cid}").status_code == 404

        skipped = subprocess.run(
            [
                sys.executable,
                "-m",
                "deploy.cli",
                "events",
                "skip",
                "customers",
                str(bad),
                "--reason",
                "test garbage",
            ],
            cwd=ROOT,
            env={**os.environ, "NATS_URL": nats_url},
            capture_output=True,
            text=True,
            check=False,
        )
        assert skipped.returncode == 0, skipped.stderr
        shown = wait_for(
            lambda: http.get(f"/api/v1/tenants/acme/customers/{cid}"),
            lambda r: r.status_code == 200,
            timeout=20,
        )
        assert shown.json()["name"] == "after"
        assert http.get("/health").json()["services"]["customers"]["state"] == "running"


def test_a_chat_fact_becomes_a_customer_in_the_read_model(instance: str, nats_url: str) -> None:
    # fact on NATS → fact handler → domain → event store → projection → HTTP
    from datetime import UTC, datetime

    from connectors.facts import ChatMessageReceived, publish_fact

    tenant = f"chat{uuid.uuid4().hex[:8]}"
    fact = ChatMessageReceived(
        fact_id=f"frame-{uuid.uuid4()}",
        tenant_id=tenant,
        at=datetime.now(UTC),
        visitor_id="visitor-42",
        session_id="session-1",
        text="Xin chào",
        visitor_name="Khách 42",
    )

    async def publish() -> None:
        nc = await nats.connect(nats_url)
        await publish_fact(nc.jetstream(), fact)
        await nc.close()

    asyncio.run(publish())
    headers = api_headers(instance, nats_url, tenant)
    with httpx.Client(base_url=instance, timeout=10, headers=headers) as http:
        listed = wait_for(
            lambda: http.get(f"/api/v1/tenants/{tenant}/customers").json(), lambda c: len(c) > 0
        )
        assert [c["identities"] for c in listed] == [[["chat", "visitor-42"]]]
        assert http.get("/health").json()["services"]["facts"]["state"] == "running"


def test_read_model_changes_are_pushed_on_nats_to_their_tenant_only(
    instance: str, nats_url: str
) -> None:
    # HTTP → domain → event store → projections → live.<tenant>.<readmodel>.<kind>
    from projections import live

    tenant, other = f"live{uuid.uuid4().hex[:8]}", f"live{uuid.uuid4().hex[:8]}"
    headers = api_headers(instance, nats_url, tenant)

    async def scenario() -> tuple[str, list[live.LiveChange], list[bytes]]:
        nc = await nats.connect(nats_url)
        mine: asyncio.Queue[live.LiveChange] = asyncio.Queue()
        theirs: list[bytes] = []

        async def on_mine(msg: Msg) -> None:
            await mine.put(live.decode(msg.data))

        async def on_theirs(msg: Msg) -> None:
            theirs.append(msg.data)

        await nc.subscribe(live.tenant_filter(tenant), cb=on_mine)
        await nc.subscribe(live.tenant_filter(other), cb=on_theirs)
        async with httpx.AsyncClient(base_url=instance, timeout=10, headers=headers) as http:
            created = await http.post(f"/api/v1/tenants/{tenant}/customers", json={"name": "Lan"})
            cid = created.json()["id"]
            seen: list[live.LiveChange] = []
            deadline = time.monotonic() + 10
            while not any(c.key == cid and c.readmodel == "customers" for c in seen):
                assert time.monotonic() < deadline, seen
                seen.append(await asyncio.wait_for(mine.get(), 10))
            # A reader told of the change finds it when it fetches.
            assert (await http.get(f"/api/v1/tenants/{tenant}/customers/{cid}")).status_code == 200
        await asyncio.sleep(0.3)
        await nc.close()
        return cid, seen, theirs

    cid, seen, theirs = asyncio.run(scenario())
    assert live.LiveChange("customers", "customer", cid) in seen
    assert theirs == []


def test_the_running_instance_routes_a_queued_call_to_an_available_agent(
    instance: str, nats_url: str
) -> None:
    # switch facts → domain → routing process manager → RingAgent command on NATS
    from datetime import UTC, datetime

    from connectors.facts import CallQueued, CallStarted, publish_fact
    from domain.apps import DomainApps
    from domain.vocabulary import Channel, EndpointKind, Package
    from telephony_bridge import commands

    tenant = f"route{uuid.uuid4().hex[:8]}"
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        agent = apps.agents.create_user(tenant, "Lan", "lan", "agent", package=Package.CALL_CENTER)
        apps.agents.add_endpoint(tenant, agent, EndpointKind.SIP_PHONE, "sip:lan@pbx")
        apps.agents.go_available(tenant, agent)
        queue = apps.queues.create(tenant, "Support", [Channel.CALL])
    finally:
        apps.close()

    async def scenario() -> commands.AnyCommand:
        nc = await nats.connect(nats_url)
        sub = await nc.subscribe(f"cmd.{tenant}.telephony.>")
        js = nc.jetstream()
        common = {"tenant_id": tenant, "call_ref": "c1", "at": datetime.now(UTC)}
        await publish_fact(
            js,
            CallStarted(
                fact_id="s1",
                direction="inbound",
                hotline="19001234",
                caller_number="0901234567",
                caller_leg_id="in",
                **common,  # type: ignore[arg-type]
            ),
        )
        await publish_fact(js, CallQueued(fact_id="q1", queue_id=queue, **common))  # type: ignore[arg-type]
        msg = await sub.next_msg(timeout=15)
        await nc.close()
        return commands.decode(msg.data)

    ring = asyncio.run(scenario())
    assert isinstance(ring, commands.RingAgent)
    assert (ring.agent_id, ring.endpoint_address, ring.call_ref) == (agent, "sip:lan@pbx", "c1")
    with httpx.Client(base_url=instance, timeout=10) as http:
        routing = http.get("/health").json()["services"]["routing"]
        assert routing["state"] == "running", routing


def test_the_api_is_described_at_the_default_openapi_path(instance: str) -> None:
    with httpx.Client(base_url=instance, timeout=10) as http:
        doc = http.get("/schema/openapi.json")
    assert doc.status_code == 200
    schema = doc.json()
    paths = schema["paths"]
    assert "/api/v1/tenants/{tenant_id}/customers" in paths
    assert "/api/v1/tenants/{tenant_id}/recordings/{recording_key}/audio" in paths
    scheme = schema["components"]["securitySchemes"]["tenantApiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    listed = paths["/api/v1/tenants/{tenant_id}/customers"]["get"]
    # A key, or a page session for reads (web.api.auth): either opens it.
    assert listed["security"] == [{"tenantApiKey": []}, {"pageSession": []}]
