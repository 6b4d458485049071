"""The read-mostly API an integrator expects, on a real `cloudcc up`: conversations with
their messages, tickets (raised and commented too), agents and their presence, queues
and their waits, live calls — typed in the OpenAPI document, paged with bounds, each
tenant's walled off; and the pages' own scripts reading it with a supervisor's session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from helpers import api_headers, running_instance, wait_for
from test_signin import Site, signed_in

from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.call_legs import LegSpec
from domain.vocabulary import Channel, Package
from web.api.queues import WAITING_SHOWN

HANOI, SAIGON = "api-hanoi", "api-saigon"
PASSWORD = "mật khẩu API 2024"


@dataclass
class Tenant:
    site: Site
    headers: dict[str, str]  # Hanoi's key
    other_headers: dict[str, str]  # Saigon's key
    an: UUID  # agent, offline (so that routing offers nothing while the test reads)
    mai: UUID  # supervisor
    customer: UUID
    queue: UUID
    chat: UUID  # An's chat
    email: UUID  # waiting in the queue
    call: UUID  # a call waiting in the queue
    saigons: UUID  # a conversation of the other tenant
    saigon_customer: UUID

    def url(self, path: str, tenant: str = HANOI) -> str:
        return f"/api/v1/tenants/{tenant}{path}"


@pytest.fixture(scope="module")
def hanoi(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    data = tmp_path_factory.mktemp("api")
    port = free_port()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        with running_instance(data, nats_url, port):
            url = f"http://127.0.0.1:{port}"
            headers = api_headers(url, nats_url, HANOI)
            other_headers = api_headers(url, nats_url, SAIGON)
            package = Package.CONTACT_CENTER
            an = apps.agents.create_user(HANOI, "An Nguyễn", "an@api.vn", "agent", package=package)
            mai = apps.agents.create_user(
                HANOI, "Mai Trần", "mai@api.vn", "supervisor", package=package
            )
            for user in (an, mai):
                apps.agents.set_password(HANOI, user, PASSWORD)
            customer = apps.customers.register(HANOI, "Chị Hoa", [("email", "hoa@example.vn")])
            queue = apps.queues.create(HANOI, "Hỗ trợ", [Channel.EMAIL, Channel.CALL])
            convs = apps.conversations
            chat = convs.start(HANOI, Channel.CHAT, customer, thread_key="s-1")
            convs.receive_message(HANOI, chat, "m-1", "Cho em hỏi giá gói cước")
            convs.assign(HANOI, chat, an)
            convs.send_message(HANOI, chat, "m-2", an, "Dạ, gói cước 100k ạ")
            email = convs.start(
                HANOI, Channel.EMAIL, customer, queue_id=queue, subject="Hoá đơn tháng 5"
            )
            convs.receive_message(HANOI, email, "e-1", "Hoá đơn tháng 5 bị sai")
            call = apps.calls.start_inbound(
                HANOI, "api-call-1", "1900", LegSpec.customer("c-1", "0912345678"), now()
            )
            apps.calls.offer_to_queue(HANOI, call, queue, now())
            saigon_customer = apps.customers.register(SAIGON, "Anh Tư")
            saigons = convs.start(SAIGON, Channel.CHAT, saigon_customer)
            convs.receive_message(SAIGON, saigons, "x-1", "Sài Gòn")
            yield Tenant(
                Site(url, apps, data, nats_url),
                headers,
                other_headers,
                an,
                mai,
                customer,
                queue,
                chat,
                email,
                call,
                saigons,
                saigon_customer,
            )
    finally:
        apps.close()


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def http(hanoi: Tenant) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hanoi.site.url, timeout=10, headers=hanoi.headers) as client:
        yield client


def until(http: httpx.Client, path: str, ok: Any, **params: Any) -> httpx.Response:
    """GET `path` until `ok(json)` holds (the read models follow the log)."""
    return wait_for(
        lambda: http.get(path, params=params),
        lambda r: r.status_code == 200 and ok(r.json()),
    )


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["items"]]


def test_conversations_are_listed_filtered_paged_and_one_read_with_its_messages(
    hanoi: Tenant, http: httpx.Client
) -> None:
    path = hanoi.url("/conversations")
    both = until(http, path, lambda b: len(b["items"]) == 2).json()
    # Newest activity first: the email came after the chat's reply.
    assert ids(both) == [str(hanoi.email), str(hanoi.chat)]
    assert str(hanoi.saigons) not in ids(both)
    chat = both["items"][1]
    assert chat["channel"] == "chat" and chat["assignee"] == str(hanoi.an)
    assert chat["last_message"]["preview"] == "Dạ, gói cước 100k ạ"

    assert ids(http.get(path, params={"channel": "email"}).json()) == [str(hanoi.email)]
    assert ids(http.get(path, params={"channel": "chat,sms"}).json()) == [str(hanoi.chat)]
    assert ids(http.get(path, params={"agent": str(hanoi.an)}).json()) == [str(hanoi.chat)]
    assert ids(http.get(path, params={"queue": str(hanoi.queue)}).json()) == [str(hanoi.email)]
    assert ids(http.get(path, params={"status": "resolved"}).json()) == []
    first = http.get(path, params={"limit": 1}).json()
    assert ids(first) == [str(hanoi.email)] and first["next_offset"] == 1
    second = http.get(path, params={"limit": 1, "offset": 1}).json()
    assert ids(second) == [str(hanoi.chat)] and second["next_offset"] is None

    for bad in ({"channel": "pigeon"}, {"status": "asleep"}, {"agent": "an"}, {"limit": 0}):
        refused = http.get(path, params=bad)
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["detail"]
    assert http.get(path, params={"limit": 501}).status_code == 400

    one = http.get(f"{path}/{hanoi.chat}")
    assert one.status_code == 200, one.text
    messages = one.json()["messages"]
    assert [(m["direction"], m["body"]) for m in messages] == [
        ("inbound", "Cho em hỏi giá gói cước"),
        ("outbound", "Dạ, gói cước 100k ạ"),
    ]
    assert messages[1]["agent_id"] == str(hanoi.an)
    # Another tenant's conversation is as unknown as a made-up one.
    for unknown in (hanoi.saigons, uuid4(), "not-an-id"):
        missing = http.get(f"{path}/{unknown}")
        assert missing.status_code == 404 and missing.json()["detail"], missing.text


def test_a_ticket_is_raised_commented_listed_and_read(hanoi: Tenant, http: httpx.Client) -> None:
    path = hanoi.url("/tickets")
    created = http.post(
        path,
        json={
            "title": "Hoá đơn sai",
            "kind": "complaint",
            "priority": "high",
            "description": "Tính cước hai lần",
            "customer_id": str(hanoi.customer),
            "conversation_ids": [str(hanoi.email)],
        },
    )
    assert created.status_code == 201, created.text
    ticket = created.json()["id"]
    comment_id = str(uuid4())
    body = {"author_id": str(hanoi.an), "body": "Đã gọi lại khách", "comment_id": comment_id}
    commented = http.post(f"{path}/{ticket}/comments", json=body)
    assert commented.status_code == 201 and commented.json()["id"] == comment_id
    # The same comment again (a retry) counts once.
    assert http.post(f"{path}/{ticket}/comments", json=body).status_code == 201

    shown = until(http, f"{path}/{ticket}", lambda t: t["comment_count"] == 1).json()
    assert shown["title"] == "Hoá đơn sai" and shown["status"] == "new"
    assert shown["priority"] == "high" and shown["customer_id"] == str(hanoi.customer)
    assert [c["body"] for c in shown["comments"]] == ["Đã gọi lại khách"]
    assert [c["id"] for c in shown["conversations"]] == [str(hanoi.email)]

    listed = http.get(path, params={"status": "new", "priority": "high,urgent"}).json()
    assert ticket in ids(listed)
    assert http.get(path, params={"kind": "question"}).json()["items"] == []
    assert ticket in ids(
        http.get(path, params={"customer": str(hanoi.customer), "q": "sai"}).json()
    )
    assert ticket in ids(http.get(path, params={"unassigned": "true", "order": "priority"}).json())
    no_clock = http.get(path, params={"sla": "none", "order": "due"}).json()
    assert ticket in ids(no_clock) and no_clock["items"][0]["sla_state"] == "none"
    assert http.get(path, params={"sla": "breached"}).json()["items"] == []
    for bad in ({"sla": "late"}, {"order": "random"}, {"unassigned": "maybe"}):
        assert http.get(path, params=bad).status_code == 400, bad

    # What the domain refuses, or names what is not the tenant's: 4xx with the reason.
    refusals = [
        {"title": "", "kind": "complaint"},
        {"title": "x" * 201, "kind": "complaint"},
        {"title": "Của khách khác", "kind": "request", "customer_id": str(hanoi.saigon_customer)},
        {"title": "Hội thoại khác", "kind": "request", "conversation_ids": [str(hanoi.saigons)]},
    ]
    for bad in refusals:
        refused = http.post(path, json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["detail"]
    for bad_body in (
        {"title": "Loại lạ", "kind": "rumour"},
        {"title": 5, "kind": "request"},
        {"kind": "request"},
        {"title": "x", "kind": "request", "x": 1},
    ):
        assert http.post(path, json=bad_body).status_code == 400, bad_body
    bad_comment = http.post(
        f"{path}/{ticket}/comments", json={"author_id": str(uuid4()), "body": "ai đây?"}
    )
    assert bad_comment.status_code == 422 and bad_comment.json()["detail"]
    nowhere = http.post(
        f"{path}/{uuid4()}/comments", json={"author_id": str(hanoi.an), "body": "?"}
    )
    assert nowhere.status_code == 404
    # Saigon's key sees none of Hanoi's tickets, at Hanoi's path or its own.
    assert http.get(path, headers=hanoi.other_headers).status_code == 403
    theirs = http.get(hanoi.url(f"/tickets/{ticket}", SAIGON), headers=hanoi.other_headers)
    assert theirs.status_code == 404


def test_agents_with_their_presence_and_calls(hanoi: Tenant, http: httpx.Client) -> None:
    path = hanoi.url("/agents")
    board = until(http, path, lambda b: len(b["items"]) == 2).json()
    by_id = {a["id"]: a for a in board["items"]}
    an = by_id[str(hanoi.an)]
    assert an["presence"] == "offline" and an["break_reason"] is None
    assert [c["id"] for c in an["conversations"]] == [str(hanoi.chat)]
    assert by_id[str(hanoi.mai)]["role"] == "supervisor"
    assert ids(http.get(path, params={"presence": "break,available"}).json()) == []
    offline = http.get(path, params={"presence": "offline", "limit": 1}).json()
    assert len(offline["items"]) == 1 and offline["next_offset"] == 1
    assert http.get(path, params={"presence": "napping"}).status_code == 400

    one = http.get(f"{path}/{hanoi.an}")
    assert one.status_code == 200 and one.json()["name"] == "An Nguyễn"
    assert http.get(f"{path}/{hanoi.an}/calls").json() == []
    assert http.get(f"{path}/{uuid4()}").status_code == 404
    assert http.get(f"{path}/{uuid4()}/calls").status_code == 404


def test_queues_with_their_waits_and_the_tenants_live_calls(
    hanoi: Tenant, http: httpx.Client
) -> None:
    path = hanoi.url("/queues")
    queues = until(http, path, lambda b: any(q["waiting"] == 2 for q in b["items"])).json()
    [queue] = queues["items"]
    assert queue["id"] == str(hanoi.queue) and queue["name"] == "Hỗ trợ"
    assert queue["waiting_by_channel"] == {"call": 1, "email": 1}
    one = http.get(f"{path}/{hanoi.queue}")
    assert one.status_code == 200, one.text
    detail = one.json()
    assert [c["id"] for c in detail["waiting_calls"]] == [str(hanoi.call)]
    assert detail["waiting_calls"][0]["state"] == "queued"
    assert [c["id"] for c in detail["waiting_conversations"]] == [str(hanoi.email)]
    assert http.get(f"{path}/{uuid4()}").status_code == 404
    period = {"from": "2025-03-03T09:00:00+07:00", "to": "2025-03-03T08:00:00+07:00"}
    assert http.get(path, params=period).status_code == 400

    live = until(http, hanoi.url("/live-calls"), lambda b: len(b) == 1).json()
    assert live[0]["id"] == str(hanoi.call) and live[0]["customer_number"] == "0912345678"
    assert http.get(hanoi.url("/live-calls", SAIGON), headers=hanoi.other_headers).json() == []


def test_a_crowded_queue_shows_its_longest_waiting_conversations(hanoi: Tenant) -> None:
    """With more waiting than one queue shows, the ones shown are the longest-waiting,
    whatever happened in the conversations since (in the other tenant, to leave Hanoi's
    queues as they are)."""
    apps, convs = hanoi.site.apps, hanoi.site.apps.conversations
    queue = apps.queues.create(SAIGON, "Đông khách", [Channel.EMAIL])
    customer = hanoi.saigon_customer
    waiting = []
    for n in range(WAITING_SHOWN + 1):
        cid = convs.start(SAIGON, Channel.EMAIL, customer, queue_id=queue, subject=f"Thư {n}")
        convs.receive_message(SAIGON, cid, f"crowd-{n}", f"Thư số {n}")
        waiting.append(str(cid))
    # The longest-waiting writes again: the newest activity, but still waiting since first.
    convs.receive_message(SAIGON, UUID(waiting[0]), "crowd-again", "Còn chờ ạ?")
    path = hanoi.url(f"/queues/{queue}", SAIGON)
    with httpx.Client(base_url=hanoi.site.url, timeout=10, headers=hanoi.other_headers) as http:
        # Once the inbox has the last message, it has every one before it too.
        until(
            http,
            hanoi.url("/conversations", SAIGON),
            lambda b: (
                [(i["last_message"] or {}).get("preview") for i in b["items"]] == ["Còn chờ ạ?"]
            ),
            queue=str(queue),
            limit=1,
        )
        detail = until(http, path, lambda b: b["waiting"] == WAITING_SHOWN + 1).json()
    shown = [c["id"] for c in detail["waiting_conversations"]]
    assert shown == waiting[:WAITING_SHOWN], (len(shown), shown[:3], waiting[:3])


def test_the_pages_scripts_read_the_api_with_a_supervisors_session(hanoi: Tenant) -> None:
    path = hanoi.url("/conversations")
    with signed_in(hanoi.site, HANOI, "mai@api.vn", PASSWORD) as page:
        read = page.get(path)
        assert read.status_code == 200, read.text
        assert str(hanoi.chat) in ids(read.json())
        assert page.get(hanoi.url("/agents")).status_code == 200
        # Another tenant's data, or a write: not with a session.
        assert page.get(hanoi.url("/conversations", SAIGON)).status_code == 403
        write = page.post(hanoi.url("/tickets"), json={"title": "Từ trang", "kind": "question"})
        assert write.status_code == 401, write.text
    with signed_in(hanoi.site, HANOI, "an@api.vn", PASSWORD) as page:
        refused = page.get(path)
        assert refused.status_code == 403 and "supervisors" in refused.json()["detail"]
    with hanoi.site.client() as stranger:
        assert stranger.get(path).status_code == 401
        stranger.cookies.set("cloudcc_session", "0" * 64)
        assert stranger.get(path).status_code == 401
        # A session file that is broken (a full disk, a hand edit) is no session either.
        (hanoi.site.data / "sessions" / ("ab" * 32)).write_bytes(b"\x00garbage{")
        stranger.cookies.set("cloudcc_session", "ab" * 32)
        broken = stranger.get(path)
        assert broken.status_code == 401 and broken.json()["detail"], broken.text


def test_the_openapi_document_types_every_route_and_names_the_schemes(hanoi: Tenant) -> None:
    doc = httpx.get(f"{hanoi.site.url}/schema/openapi.json", timeout=10).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["tenantApiKey"]["scheme"] == "bearer"
    assert schemes["pageSession"]["in"] == "cookie"
    paths = doc["paths"]
    base = "/api/v1/tenants/{tenant_id}"
    for route in (
        "/conversations",
        "/conversations/{conversation_id}",
        "/tickets",
        "/tickets/{ticket_id}",
        "/tickets/{ticket_id}/comments",
        "/agents",
        "/agents/{agent_id}",
        "/agents/{agent_id}/calls",
        "/queues",
        "/queues/{queue_id}",
        "/live-calls",
        "/customers",
        "/calls",
        "/cdr",
    ):
        assert base + route in paths, route
    for path, item in paths.items():
        if not path.startswith("/api/"):
            continue
        assert path.startswith(base), path
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            assert operation["security"] == [{"tenantApiKey": []}, {"pageSession": []}], path
            # The refusals are documented too, with their body.
            assert {"401", "403", "404"} <= set(operation["responses"]), path
    # The answers are typed: a conversation's page names its items' fields.
    page = doc["paths"][f"{base}/conversations"]["get"]["responses"]["200"]["content"]
    ref = page["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    items = doc["components"]["schemas"][ref]["properties"]["items"]["items"]["$ref"]
    summary = doc["components"]["schemas"][items.rsplit("/", 1)[-1]]
    assert {"channel", "status", "last_message", "tags"} <= set(summary["properties"])


def test_customers_are_searched_and_the_list_is_bounded(hanoi: Tenant, http: httpx.Client) -> None:
    path = hanoi.url("/customers")
    found = until(http, path, lambda b: len(b) == 1, q="hoa@example.vn").json()
    assert [c["id"] for c in found] == [str(hanoi.customer)]
    assert found[0]["identities"] == [["email", "hoa@example.vn"]]
    assert http.get(path, params={"q": "zzzz"}).json() == []
    assert [c["name"] for c in http.get(path, params={"limit": 1}).json()] == ["Chị Hoa"]
    for bad in ({"limit": 0}, {"limit": 501}, {"q": "x" * 201}):
        refused = http.get(path, params=bad)
        assert refused.status_code == 400 and refused.json()["detail"], bad
