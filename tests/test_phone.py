"""The agent's phone (CC4-CC7) on a real `cloudcc up` with the built-in switch: a caller
dials (switch panel) → the agent's event stream pops the call with its information
(caller, hotline, queue, IVR choices, the customer and their history) → hold, resume,
mute, record, a note and a transfer through the pages' routes show up on the call → an
attended transfer (consult, then complete, cancel or a three-way call) →
click-to-call rings the customer → the browser softphone rings, answers and hangs up on
the switch; while it is registered, the calls of an agent with a desk phone too ring in
the browser, and on the desk phone again once the last browser left, or a stream left unheard or mid-registration, or the process
died and the switch started again. Another tenant's user, a call the agent is not on, a
transfer to a deactivated user or to one who takes no calls, and click-to-call to a
number that is not the customer's are refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import time as clock
from typing import Any
from uuid import UUID

import httpx
import msgspec
import nats
import pytest
from helpers import api_headers, panel, running_instance, wait_for
from test_signin import Site, signed_in

from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.calendars import BusinessCalendar, OpeningHours, Weekday
from domain.calls import Call
from domain.ivr import Node, NodeKind
from domain.vocabulary import Channel, EndpointKind, Package, RoutingPolicy
from projections.registry import READMODELS_DIR

TENANT, OTHER = "phone-hue", "phone-vinh"
HOTLINE = "+842873004321"  # one no other test module registers (they share a NATS)
PASSWORD = "mật khẩu điện thoại 2024"
CUSTOMER_NUMBER = "0912345678"
ALWAYS = BusinessCalendar(
    time_zone="Asia/Ho_Chi_Minh",
    hours=tuple(OpeningHours(day=d, start=clock(0), end=clock(0)) for d in Weekday),
)


@dataclass
class Center:
    site: Site
    an: UUID  # agent on SIP phone 3001, skill "vn"
    binh: UUID  # agent on SIP phone 3002
    cuong: UUID  # agent on a browser (WebRTC), skill "web"
    dung: UUID  # agent on SIP desk phone 3004 first, a browser second, skill "desk"
    customer: UUID
    stranger: UUID  # an agent of the other tenant


@pytest.fixture(scope="module")
def center(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Center]:
    data = tmp_path_factory.mktemp("phone")
    port = free_port()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        with running_instance(data, nats_url, port, CLOUDCC_WRAP_UP_SECONDS="0"):
            url = f"http://127.0.0.1:{port}"
            apps.tenants.register(TENANT, "Phone Huế", Package.CONTACT_CENTER, [HOTLINE])
            api_headers(url, nats_url, OTHER)
            apps.tenants.define_calendar(TENANT, "always", ALWAYS)
            support = apps.queues.create(
                TENANT, "Hỗ trợ", policy=RoutingPolicy.SKILL, required_skills={"vn": 1}
            )
            web = apps.queues.create(
                TENANT, "Web", policy=RoutingPolicy.SKILL, required_skills={"web": 1}
            )
            desk = apps.queues.create(
                TENANT, "Bàn giấy", policy=RoutingPolicy.SKILL, required_skills={"desk": 1}
            )
            for q in (support, web, desk):
                apps.queues.set_waiting_rules(
                    TENANT, q, ring_timeout_seconds=30, max_wait_seconds=600
                )
            flow = apps.ivr.draft(TENANT, "Main")
            apps.ivr.set_node(
                TENANT,
                flow,
                Node(
                    "menu",
                    NodeKind.MENU,
                    prompt="1 support, 2 web, 3 desk",
                    choices={"1": "q", "2": "w", "3": "d"},
                ),
            )
            apps.ivr.set_node(TENANT, flow, Node("q", NodeKind.QUEUE, queue_id=support))
            apps.ivr.set_node(TENANT, flow, Node("w", NodeKind.QUEUE, queue_id=web))
            apps.ivr.set_node(TENANT, flow, Node("d", NodeKind.QUEUE, queue_id=desk))
            apps.ivr.set_entry(TENANT, flow, "menu")
            apps.ivr.publish(TENANT, flow)
            apps.tenants.route_hotline(TENANT, HOTLINE, "ivr", flow)
            users = {}
            for login, name, kind, address, skill in (
                ("an", "An Phạm", EndpointKind.SIP_PHONE, "3001", "vn"),
                ("binh", "Bình Võ", EndpointKind.SIP_PHONE, "3002", None),
                ("cuong", "Cường Đỗ", EndpointKind.WEBRTC, "", "web"),
                ("dung", "Dũng Lê", EndpointKind.SIP_PHONE, "3004", "desk"),
            ):
                uid = apps.agents.create_user(
                    TENANT, name, f"{login}@hue.vn", "agent", package=Package.CONTACT_CENTER
                )
                apps.agents.set_password(TENANT, uid, PASSWORD)
                apps.agents.add_endpoint(TENANT, uid, kind, address)
                if login == "dung":  # the browser after the desk phone
                    apps.agents.add_endpoint(TENANT, uid, EndpointKind.WEBRTC)
                if skill:
                    apps.agents.set_skill(TENANT, uid, skill, 3)
                apps.agents.go_available(TENANT, uid)
                users[login] = uid
            stranger = apps.agents.create_user(
                OTHER, "Người lạ", "la@vinh.vn", "agent", package=Package.CONTACT_CENTER
            )
            apps.agents.set_password(OTHER, stranger, PASSWORD)
            customer = apps.customers.register(TENANT, "Chị Lan", [("phone", CUSTOMER_NUMBER)])
            conversation = apps.conversations.start(TENANT, Channel.SMS, customer)
            apps.conversations.receive_message(TENANT, conversation, "s-1", "Hỏi về hoá đơn")
            yield Center(
                Site(url, apps, data, nats_url),
                users["an"],
                users["binh"],
                users["cuong"],
                users["dung"],
                customer,
                stranger,
            )
    finally:
        apps.close()


class PopStream:
    """The agent's event stream (server-sent events), read on a thread of its own from a
    socket of its own: closing it really hangs up, as a browser leaving the page does."""

    def __init__(self, http: httpx.Client, path: str) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        url = httpx.URL(str(http.base_url))
        cookies = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
        self._sock = socket.create_connection((url.host, url.port or 80), timeout=10)
        self._sock.settimeout(None)
        self._sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {url.host}\r\nCookie: {cookies}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.next(lambda e: e["kind"] == "hello")

    def _read(self) -> None:
        # Chunked transfer encoding around the events: the data lines are found as they are.
        buffer = b""
        try:
            while chunk := self._sock.recv(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.startswith(b"data:"):
                        self.events.put(json.loads(line[5:].strip()))
        except OSError:
            pass

    def next(self, wanted: Any, timeout: float = 20) -> dict[str, Any]:
        """The next event `wanted` holds of, skipping others; fails after `timeout`."""
        while True:
            event = self.events.get(timeout=timeout)
            if wanted(event):
                return event

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


@dataclass
class Agent:
    http: httpx.Client
    token: str

    def post(self, path: str, **fields: Any) -> httpx.Response:
        return self.http.post(
            f"/t/{TENANT}/phone{path}",
            json=fields,
            headers={"x-csrftoken": self.token, "accept": "application/json"},
        )


@pytest.fixture
def agent_of(center: Center) -> Iterator[Any]:
    opened: list[Any] = []

    def open_as(login: str, tenant: str = TENANT) -> Agent:
        manager = signed_in(center.site, tenant, login, PASSWORD)
        http = manager.__enter__()
        opened.append(manager)
        home = http.get(f"/t/{tenant}/")
        found = re.search(r'name="_csrf_token" value="([^"]+)"', home.text)
        assert found, home.text
        return Agent(http, found.group(1))

    yield open_as
    for manager in reversed(opened):
        manager.__exit__(None, None, None)


def call_view(apps: DomainApps, call_id: str) -> dict[str, Any] | None:
    try:
        return apps.calls.get(TENANT, UUID(call_id))
    except Exception:  # noqa: BLE001 - not there yet
        return None


def registrations(nats_url: str, address: str) -> int:
    """How many browsers the switch holds at `address` (one more is registered to ask,
    and let go at once)."""
    count = int(asyncio.run(panel(nats_url, "register", {"address": address}))["registrations"])
    asyncio.run(panel(nats_url, "unregister", {"address": address}))
    return count - 1


def routing_rings(site: Any, user: UUID) -> tuple[str, str] | None:
    """The endpoint the instance's routing rings for `user` instead of their first, as
    its state holds it now (it follows the user's events a moment later than the domain)."""
    path = site.data / READMODELS_DIR / "routing.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute(
            "SELECT kind, address FROM agent_preferred_endpoints WHERE agent_id = ?", (str(user),)
        ).fetchone()
    finally:
        db.close()
    return None if row is None else (row[0], row[1])


def test_a_call_pops_with_its_information_and_is_held_muted_recorded_noted_transferred(
    center: Center, agent_of: Any, nats_url: str
) -> None:
    apps = center.site.apps
    an, binh = agent_of("an@hue.vn"), agent_of("binh@hue.vn")
    # The panel is on every page of the agent, with the stream's address.
    home = an.http.get(f"/t/{TENANT}/")
    assert (
        f'data-events="/t/{TENANT}/phone/events"' in home.text and "/static/phone.js" in home.text
    )
    pops = PopStream(an.http, f"/t/{TENANT}/phone/events")
    binh_pops = PopStream(binh.http, f"/t/{TENANT}/phone/events")
    try:
        asyncio.run(panel(nats_url, "party", {"address": "3001", "party": {"answer_after": 0.5}}))
        asyncio.run(panel(nats_url, "party", {"address": "3002", "party": {"answer_after": 0.3}}))
        asyncio.run(
            panel(
                nats_url,
                "call",
                {"caller_number": CUSTOMER_NUMBER, "hotline": HOTLINE, "party": {"digits": "1"}},
            )
        )
        ring = pops.next(lambda e: e["kind"] == "ringing")
        info = ring["info"]
        assert info["caller"] == "+84912345678" and info["hotline"] == HOTLINE
        assert info["queue"] == "Hỗ trợ" and info["direction"] == "inbound"
        assert [(s["node"], s["digits"]) for s in info["ivr"]] == [("menu", None), ("q", "1")]
        assert info["customer"] == {"id": str(center.customer), "name": "Chị Lan"}
        assert ring["endpoint"] == "sip_phone"
        call_id = ring["call_id"]
        assert pops.next(lambda e: e["kind"] == "answered")["call_id"] == call_id

        # The pop's part: the customer with a link and their last contacts, the controls.
        part = an.http.get(f"/t/{TENANT}/phone/calls/{call_id}?fragment=1&lang=en")
        assert part.status_code == 200, part.text
        assert f'href="/t/{TENANT}/customers/{center.customer}"' in part.text
        assert "Chị Lan" in part.text and "Hỏi về hoá đơn" in part.text
        assert "Hỗ trợ" in part.text and "menu" in part.text and "<html" not in part.text
        assert f'action="/t/{TENANT}/phone/calls/{call_id}/hold"' in part.text

        def view(predicate: Any) -> dict[str, Any]:
            found = wait_for(lambda: call_view(apps, call_id), lambda c: bool(c and predicate(c)))
            assert found is not None and predicate(found), found
            return found

        assert an.post(f"/calls/{call_id}/hold").status_code == 202
        view(lambda c: c["held"])
        assert pops.next(lambda e: e["kind"] == "held")["call_id"] == call_id
        refused = an.post(f"/calls/{call_id}/hold")
        assert refused.status_code == 409 and refused.json()["error"] == "phone.already_held"
        # Without a script the controls are forms: a refusal is a page saying why, a
        # success goes back to the call.
        page_url = f"/t/{TENANT}/phone/calls/{call_id}"
        again = an.http.post(f"{page_url}/hold?lang=en", data={"_csrf_token": an.token})
        assert again.status_code == 409 and "already on hold" in again.text
        resumed = an.http.post(f"{page_url}/resume", data={"_csrf_token": an.token})
        assert resumed.status_code == 303 and resumed.headers["location"] == page_url
        view(lambda c: not c["held"])
        assert an.post(f"/calls/{call_id}/mute").status_code == 202
        view(lambda c: any(g["muted"] for g in c["legs"] if g["user_id"] == str(center.an)))
        assert pops.next(lambda e: e["kind"] == "muted")["call_id"] == call_id
        assert an.post(f"/calls/{call_id}/unmute").status_code == 202
        assert an.post(f"/calls/{call_id}/record").status_code == 202
        view(lambda c: bool(c["recordings"]))
        assert an.post(f"/calls/{call_id}/stop-recording").status_code == 202
        view(lambda c: all(r["stopped_at"] for r in c["recordings"]))

        # A note, saved to the call; the same form sent twice is one note.
        key = str(uuid.uuid4())
        for _ in range(2):
            noted = an.post(f"/calls/{call_id}/note", body="Khách hỏi hoá đơn tháng 5", key=key)
            assert noted.status_code == 202, noted.text
        notes = view(lambda c: bool(c["notes"]))["notes"]
        assert [n["body"] for n in notes] == ["Khách hỏi hoá đơn tháng 5"]
        assert notes[0]["author_id"] == str(center.an)
        assert "Khách hỏi hoá đơn tháng 5" in an.http.get(f"/t/{TENANT}/phone/calls/{call_id}").text
        assert an.post(f"/calls/{call_id}/note", body="   ").status_code == 400
        # The note is in the customer's history too, for whoever talks with them next (CC5).
        history = wait_for(
            lambda: an.http.get(f"/t/{TENANT}/phone/calls/{call_id}?fragment=1").text,
            lambda text: 'data-kind="call_note"' in text,
        )
        assert 'data-kind="call_note"' in history

        # Binh is not on the call: nothing of it for him, yet.
        assert binh.post(f"/calls/{call_id}/hangup").status_code == 403
        assert binh.http.get(f"/t/{TENANT}/phone/calls/{call_id}").status_code == 403

        # Transfer to Binh (blind): An leaves, Binh's phone rings and takes the customer.
        bad = an.post(f"/calls/{call_id}/transfer", number="not a number")
        assert bad.status_code == 400 and bad.json()["error"] == "phone.bad_number"
        assert an.post(f"/calls/{call_id}/transfer").status_code == 400
        moved = an.post(f"/calls/{call_id}/transfer", agent_id=str(center.binh))
        assert moved.status_code == 202, moved.text
        done = view(lambda c: bool(c["transfers"]))
        assert [t["kind"] for t in done["transfers"]] == ["blind"]
        assert pops.next(lambda e: e["kind"] == "ended")["call_id"] == call_id
        assert binh_pops.next(lambda e: e["kind"] == "ringing")["call_id"] == call_id
        view(lambda c: any(g["answered_at"] for g in c["legs"] if g["user_id"] == str(center.binh)))
        # An has left: his controls are refused, his note after the call is still welcome.
        gone = an.post(f"/calls/{call_id}/hold")
        assert gone.status_code == 409 and gone.json()["error"] == "phone.left_call"
        assert an.post(f"/calls/{call_id}/note", body="Đã chuyển cho Bình").status_code == 202

        assert binh.post(f"/calls/{call_id}/hangup").status_code == 202
        ended = view(lambda c: bool(c["ended_at"]))
        assert [n["body"] for n in ended["notes"]] == [
            "Khách hỏi hoá đơn tháng 5",
            "Đã chuyển cho Bình",
        ]
        assert binh_pops.next(lambda e: e["kind"] == "ended")["call_id"] == call_id
        late = binh.post(f"/calls/{call_id}/hold")
        assert late.status_code == 409 and late.json()["error"] == "phone.call_ended"
    finally:
        pops.close()
        binh_pops.close()


def test_click_to_call_rings_the_agent_then_the_customer(
    center: Center, agent_of: Any, nats_url: str
) -> None:
    binh = agent_of("binh@hue.vn")
    asyncio.run(panel(nats_url, "party", {"address": "3002", "party": {"answer_after": 0.2}}))
    asyncio.run(
        panel(nats_url, "party", {"address": "+84912345678", "party": {"answer_after": 0.2}})
    )
    pops = PopStream(binh.http, f"/t/{TENANT}/phone/events")

    async def watch() -> dict[str, Any]:
        nc = await nats.connect(nats_url)
        try:
            sub = await nc.subscribe(f"facts.{TENANT}.call")
            # As the customers page's button posts it: a form, the customer and the number.
            back = f"/t/{TENANT}/customers/{center.customer}"
            sent = await asyncio.to_thread(
                binh.http.post,
                f"/t/{TENANT}/phone/dial",
                data={
                    "customer_id": str(center.customer),
                    "number": CUSTOMER_NUMBER,
                    "back": back,
                    "_csrf_token": binh.token,
                },
            )
            assert sent.status_code == 303 and sent.headers["location"] == back, sent.text
            while True:
                fact = msgspec.json.decode((await sub.next_msg(timeout=10)).data)
                if fact["type"] == "CallStarted" and fact["direction"] == "outbound":
                    return dict(fact)
        finally:
            await nc.close()

    try:
        started = asyncio.run(watch())
        assert started["callee_number"] == "+84912345678"
        assert started["agent_id"] == str(center.binh) and started["agent_endpoint"] == "sip_phone"
        dialing = pops.next(lambda e: e["kind"] == "dialing")
        assert dialing["info"]["customer"]["name"] == "Chị Lan"
        call_id = str(Call.create_id(TENANT, started["call_ref"]))
        assert dialing["call_id"] == call_id
        call = wait_for(
            lambda: call_view(center.site.apps, call_id), lambda c: bool(c and c["answered_at"])
        )
        assert call is not None and call["direction"] == "outbound" and call["answered_at"]
        # From the customer alone (their phone identity), as JSON.
        by_id = binh.post("/dial", customer_id=str(center.customer))
        assert by_id.status_code == 202 and by_id.json()["number"] == "+84912345678"
        # A form without `back` goes back to the page it came from, if it is the tenant's.
        came_from = f"/t/{TENANT}/customers/{center.customer}?tab=1"
        for referer, location in (
            (center.site.url + came_from, came_from),
            ("http://elsewhere.example/t/x", f"/t/{TENANT}/"),
        ):
            sent = binh.http.post(
                f"/t/{TENANT}/phone/dial",
                data={"number": "0912 345 678", "_csrf_token": binh.token},
                headers={"referer": referer},
            )
            assert sent.status_code == 303 and sent.headers["location"] == location, sent.text
        hung_up = binh.post(f"/calls/{call_id}/hangup")
        assert hung_up.status_code == 202, hung_up.text
        for bad, status, error in (
            ({}, 400, "phone.no_number"),
            ({"number": "hello"}, 400, "phone.bad_number"),
            ({"customer_id": str(uuid.uuid4())}, 404, "phone.no_customer"),
            ({"customer_id": "nope"}, 404, "phone.no_customer"),
        ):
            answer = binh.post("/dial", **bad)
            assert answer.status_code == status and answer.json()["error"] == error, bad
    finally:
        pops.close()


def test_other_tenants_unknown_calls_and_forged_requests_are_refused(
    center: Center, agent_of: Any
) -> None:
    stranger, an = agent_of("la@vinh.vn", OTHER), agent_of("an@hue.vn")
    some_call = str(Call.create_id(TENANT, "whatever"))
    # Another tenant's user cannot reach this tenant's phone at all.
    assert stranger.http.get(f"/t/{TENANT}/phone/events").status_code == 403
    assert stranger.post(f"/calls/{some_call}/hangup").status_code == 403
    assert stranger.post("/dial", number="0912345678").status_code == 403
    # Through their own tenant's path, this tenant's customers and calls do not exist.
    answer = stranger.http.post(
        f"/t/{OTHER}/phone/dial",
        json={"customer_id": str(center.customer)},
        headers={"x-csrftoken": stranger.token, "accept": "application/json"},
    )
    assert answer.status_code == 404
    assert an.post(f"/calls/{some_call}/hold").status_code == 404
    assert an.post("/calls/not-an-id/hold").status_code == 404
    assert an.http.get(f"/t/{TENANT}/phone/calls/{uuid.uuid4()}").status_code == 404
    assert an.post(f"/calls/{some_call}/explode").status_code == 404
    # No CSRF token: refused before anything happens.
    assert an.http.post(f"/t/{TENANT}/phone/dial", json={"number": "0912345678"}).status_code == 403
    malformed = an.http.post(
        f"/t/{TENANT}/phone/dial",
        content=b"{not json",
        headers={"x-csrftoken": an.token, "content-type": "application/json"},
    )
    assert malformed.status_code == 400


def test_the_browser_softphone_rings_answers_and_hangs_up_on_the_switch(
    center: Center, agent_of: Any, nats_url: str
) -> None:
    apps = center.site.apps
    cuong = agent_of("cuong@hue.vn")
    pops = PopStream(cuong.http, f"/t/{TENANT}/phone/events?softphone=1")
    try:
        registered = pops.next(lambda e: e["kind"] == "softphone")
        assert registered["state"] == "registered"
        assert registered["address"] == f"webrtc:{center.cuong}"
        asyncio.run(
            panel(
                nats_url,
                "call",
                {"caller_number": "0987654321", "hotline": HOTLINE, "party": {"digits": "2"}},
            )
        )
        ring = pops.next(lambda e: e["kind"] == "ringing")
        assert ring["endpoint"] == "webrtc" and ring["info"]["queue"] == "Web"
        call_id = ring["call_id"]
        # A registered browser never answers by itself: it rings until the user clicks.
        asyncio.run(asyncio.sleep(1.5))
        ringing = call_view(apps, call_id)
        assert ringing is not None and not ringing["answered_at"]
        part = cuong.http.get(f"/t/{TENANT}/phone/calls/{call_id}?fragment=1")
        assert f"/phone/calls/{call_id}/answer" in part.text
        early = cuong.post(f"/calls/{call_id}/hold")
        assert early.status_code == 409 and early.json()["error"] == "phone.not_answered"

        assert cuong.post(f"/calls/{call_id}/answer").status_code == 202
        assert pops.next(lambda e: e["kind"] == "answered")["call_id"] == call_id
        answered = wait_for(
            lambda: call_view(apps, call_id), lambda c: bool(c and c["answered_at"])
        )
        assert answered is not None and answered["answered_at"]
        [leg] = [g for g in answered["legs"] if g["user_id"] == str(center.cuong)]
        assert leg["endpoint"] == "webrtc" and leg["answered_at"]
        # The switch really bridged the browser's leg with the caller.
        caller = answered["call_ref"]  # an inbound call is named by the caller's channel
        hears = asyncio.run(
            panel(nats_url, "hears", {"listener": leg["leg_id"], "speaker": caller})
        )
        assert hears["hears"] is True
        assert cuong.post(f"/calls/{call_id}/dtmf", digit="5").status_code == 202
        assert cuong.post(f"/calls/{call_id}/dtmf", digit="x").status_code == 400
        # Transferred to an outside number: the browser's leg leaves, the caller stays.
        outside = "+84987000333"
        asyncio.run(panel(nats_url, "party", {"address": outside, "party": {"answer_after": 0.2}}))
        moved = cuong.post(f"/calls/{call_id}/transfer", number="0987 000 333")
        assert moved.status_code == 202, moved.text
        assert pops.next(lambda e: e["kind"] == "ended")["call_id"] == call_id
        done = wait_for(
            lambda: call_view(apps, call_id),
            lambda c: bool(
                c and any(g["party"] == "external" and g["answered_at"] for g in c["legs"])
            ),
        )
        assert done is not None and [t["kind"] for t in done["transfers"]] == ["blind"]
        [external] = [g for g in done["legs"] if g["party"] == "external"]
        assert external["address"] == outside and not done["ended_at"]
        asyncio.run(panel(nats_url, "hangup", {"channel_id": caller}))
        assert wait_for(lambda: call_view(apps, call_id), lambda c: bool(c and c["ended_at"]))
    finally:
        pops.close()

    # The browser gone, the switch no longer holds the address for it.
    assert (
        wait_for(lambda: registrations(nats_url, f"webrtc:{center.cuong}"), lambda n: n == 0) == 0
    )


def test_in_a_real_browser_the_softphone_pops_the_call_and_its_buttons_work(
    center: Center, nats_url: str
) -> None:
    from browser import chromium, screenshot

    apps, url = center.site.apps, center.site.url
    with chromium() as browser:
        page = browser.new_context(locale="en-GB").new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/signin?lang=en")
        page.fill("input[name=organisation]", TENANT)
        page.fill("input[name=login]", "cuong@hue.vn")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/t/{TENANT}/")
        page.check("#phone-softphone")
        page.wait_for_selector("#phone-softphone-state:has-text('signalling only')")
        # Playwright's own event loop runs on this thread: the panel is asked from another.
        request = {"caller_number": CUSTOMER_NUMBER, "hotline": HOTLINE, "party": {"digits": "2"}}
        with ThreadPoolExecutor(1) as aside:
            placed = aside.submit(asyncio.run, panel(nats_url, "call", request)).result()
        call_id = str(Call.create_id(TENANT, placed["channel_id"]))
        # The pop: the customer by name, with a link, and the browser's Answer button.
        page.wait_for_selector(f"#phone-call a[href='/t/{TENANT}/customers/{center.customer}']")
        assert "Chị Lan" in page.inner_text("#phone-call")
        assert page.inner_text("#phone-state") == "Incoming call"
        screenshot(page, "phone-pop")
        page.click("#phone-call form[data-phone-action=answer] button")
        page.wait_for_selector("#phone-state:has-text('On the call')")
        answered = call_view(apps, call_id)
        assert answered is not None and answered["answered_at"]
        page.click("#phone-call form[data-phone-action=hold] button")
        page.wait_for_selector("#phone-state:has-text('On hold')")
        held = call_view(apps, call_id)
        assert held is not None and held["held"]
        page.fill("#phone-call textarea[name=body]", "Khách gọi từ trình duyệt")
        page.click("#phone-call form[data-phone-action=note] button")
        page.wait_for_selector("#phone-call li:has-text('Khách gọi từ trình duyệt')")
        page.click("#phone-call form[data-phone-action=resume] button")
        page.wait_for_selector("#phone-state:has-text('On the call')")
        page.click("#phone-call form[data-phone-action=hangup] button")
        page.wait_for_selector("#phone-state:has-text('Ended')")
        ended = wait_for(lambda: call_view(apps, call_id), lambda c: bool(c and c["ended_at"]))
        assert ended is not None and [n["body"] for n in ended["notes"]] == [
            "Khách gọi từ trình duyệt"
        ]


def test_an_agent_without_a_browser_phone_adds_one_and_registers(
    center: Center, agent_of: Any
) -> None:
    binh = agent_of("binh@hue.vn")
    pops = PopStream(binh.http, f"/t/{TENANT}/phone/events?softphone=1")
    try:
        assert pops.next(lambda e: e["kind"] == "softphone")["state"] == "no_endpoint"
    finally:
        pops.close()
    assert binh.post("/softphone").status_code == 202
    endpoints = center.site.apps.agents.get(TENANT, center.binh)["endpoints"]
    assert endpoints == [
        {"kind": "sip_phone", "address": "3002"},  # still rung first, as before
        {"kind": "webrtc", "address": ""},
    ]
    pops = PopStream(binh.http, f"/t/{TENANT}/phone/events?softphone=1")
    try:
        registered = pops.next(lambda e: e["kind"] == "softphone")
        assert registered == {
            "kind": "softphone",
            "state": "registered",
            "address": f"webrtc:{center.binh}",
        }
        # Registered, the new browser phone is the one his calls ring...
        preferred = center.site.apps.agents.get(TENANT, center.binh)["preferred_endpoint"]
        assert preferred == {"kind": "webrtc", "address": ""}
    finally:
        pops.close()
    # ... and once it has left, his desk phone again.
    assert (
        wait_for(
            lambda: center.site.apps.agents.get(TENANT, center.binh)["preferred_endpoint"],
            lambda p: p is None,
        )
        is None
    )


def test_while_a_browser_is_registered_the_agents_calls_ring_there_not_on_the_desk_phone(
    center: Center, agent_of: Any, nats_url: str
) -> None:
    apps, site = center.site.apps, center.site
    dung = agent_of("dung@hue.vn")
    browser, events = f"webrtc:{center.dung}", f"/t/{TENANT}/phone/events"
    # The desk phone comes first, and picks up by itself at once when it rings.
    first = apps.agents.get(TENANT, center.dung)["endpoints"][0]
    assert first == {"kind": "sip_phone", "address": "3004"}
    asyncio.run(panel(nats_url, "party", {"address": "3004", "party": {"answer_after": 0.3}}))
    desk_queue = {"caller_number": "0987654321", "hotline": HOTLINE, "party": {"digits": "3"}}

    def preferred() -> Any:
        return apps.agents.get(TENANT, center.dung)["preferred_endpoint"]

    # "Take calls in this browser" ticked in two tabs.
    tab, other_tab = PopStream(dung.http, f"{events}?softphone=1"), None
    try:
        other_tab = PopStream(dung.http, f"{events}?softphone=1")
        for pops in (tab, other_tab):
            softphone = pops.next(lambda e: e["kind"] == "softphone")
            assert softphone["state"] == "registered" and softphone["address"] == browser
        # The decision is the user's, in the event log; routing follows it.
        assert preferred() == {"kind": "webrtc", "address": ""}
        assert wait_for(lambda: routing_rings(site, center.dung), bool) == ("webrtc", "")
        # One tab closes: the other still takes the calls.
        other_tab.close()
        assert wait_for(lambda: registrations(nats_url, browser), lambda n: n == 1) == 1
        assert preferred() == {"kind": "webrtc", "address": ""}

        # A call through the desk queue rings the browser, not the desk phone...
        asyncio.run(panel(nats_url, "call", desk_queue))
        ring = tab.next(lambda e: e["kind"] == "ringing")
        assert ring["endpoint"] == "webrtc" and ring["info"]["queue"] == "Bàn giấy"
        call_id = ring["call_id"]
        call = wait_for(lambda: call_view(apps, call_id), lambda c: bool(c and len(c["legs"]) > 1))
        assert call is not None
        [leg] = [g for g in call["legs"] if g["user_id"] == str(center.dung)]
        assert (leg["endpoint"], leg["address"]) == ("webrtc", browser)
        # ... and it rings on until answered from the page (the desk phone would have
        # picked up after 0.3 s).
        asyncio.run(asyncio.sleep(1.5))
        ringing = call_view(apps, call_id)
        assert ringing is not None and not ringing["answered_at"]
        assert dung.post(f"/calls/{call_id}/answer").status_code == 202
        assert tab.next(lambda e: e["kind"] == "answered")["call_id"] == call_id
        answered = wait_for(
            lambda: call_view(apps, call_id), lambda c: bool(c and c["answered_at"])
        )
        assert answered is not None
        [leg] = [g for g in answered["legs"] if g["user_id"] == str(center.dung)]
        assert leg["endpoint"] == "webrtc" and leg["answered_at"]
        assert dung.post(f"/calls/{call_id}/hangup").status_code == 202
        assert tab.next(lambda e: e["kind"] == "ended")["call_id"] == call_id
    finally:
        tab.close()
        if other_tab is not None:
            other_tab.close()

    # The last browser left (as unticking the box closes the stream): the preference is
    # cleared, in the log and then in routing.
    assert wait_for(preferred, lambda p: p is None) is None
    assert wait_for(lambda: routing_rings(site, center.dung), lambda r: r is None) is None
    assert registrations(nats_url, browser) == 0
    assert wait_for(
        lambda: apps.agents.get(TENANT, center.dung)["presence"], lambda p: p == "available"
    )
    pops = PopStream(dung.http, events)
    try:
        # The next call rings the desk phone, which picks up by itself.
        asyncio.run(panel(nats_url, "call", desk_queue))
        ring = pops.next(lambda e: e["kind"] == "ringing")
        assert ring["endpoint"] == "sip_phone"
        call_id = ring["call_id"]
        assert pops.next(lambda e: e["kind"] == "answered")["call_id"] == call_id
        answered = wait_for(
            lambda: call_view(apps, call_id), lambda c: bool(c and c["answered_at"])
        )
        assert answered is not None
        [leg] = [g for g in answered["legs"] if g["user_id"] == str(center.dung)]
        assert (leg["endpoint"], leg["address"]) == ("sip_phone", "3004") and leg["answered_at"]
        assert dung.post(f"/calls/{call_id}/hangup").status_code == 202
        assert wait_for(lambda: call_view(apps, call_id), lambda c: bool(c and c["ended_at"]))
    finally:
        pops.close()


def test_a_call_is_not_transferred_to_a_deactivated_agent_nor_to_a_user_taking_no_calls(
    center: Center, agent_of: Any, nats_url: str
) -> None:
    apps = center.site.apps
    # Both have a phone: what refuses them is who they are, as for a user not there.
    gone = apps.agents.create_user(
        TENANT, "Giang Hồ", "giang@hue.vn", "agent", package=Package.CONTACT_CENTER
    )
    apps.agents.add_endpoint(TENANT, gone, EndpointKind.SIP_PHONE, "3007")
    apps.agents.deactivate(TENANT, gone, "left the company")
    boss = apps.agents.create_user(
        TENANT, "Hạnh Trần", "hanh@hue.vn", "tenant_admin", package=Package.CONTACT_CENTER
    )
    apps.agents.add_endpoint(TENANT, boss, EndpointKind.SIP_PHONE, "3008")
    an = agent_of("an@hue.vn")
    pops = PopStream(an.http, f"/t/{TENANT}/phone/events")
    try:
        asyncio.run(panel(nats_url, "party", {"address": "3001", "party": {"answer_after": 0.2}}))
        asyncio.run(
            panel(
                nats_url,
                "call",
                {"caller_number": "0987000444", "hotline": HOTLINE, "party": {"digits": "1"}},
            )
        )
        call_id = pops.next(lambda e: e["kind"] == "ringing")["call_id"]
        assert pops.next(lambda e: e["kind"] == "answered")["call_id"] == call_id
        wait_for(lambda: call_view(apps, call_id), lambda c: bool(c and c["answered_at"]))
        for target in (gone, boss, uuid.uuid4()):
            refused = an.post(f"/calls/{call_id}/transfer", agent_id=str(target))
            assert refused.status_code == 404, (target, refused.text)
            assert refused.json()["error"] == "phone.no_agent"
        kept = call_view(apps, call_id)
        assert kept is not None and not kept["transfers"] and not kept["ended_at"]
        assert an.post(f"/calls/{call_id}/hangup").status_code == 202
        assert wait_for(lambda: call_view(apps, call_id), lambda c: bool(c and c["ended_at"]))
    finally:
        pops.close()


def hears(nats_url: str, listener: str, speaker: str) -> bool:
    """Whether the switch carries `speaker`'s voice to `listener` now."""
    answer = asyncio.run(panel(nats_url, "hears", {"listener": listener, "speaker": speaker}))
    return bool(answer["hears"])


def test_an_attended_transfer_is_completed_cancelled_or_made_a_three_way_call(
    center: Center, agent_of: Any, nats_url: str
) -> None:
    """An consults Bình (whose desk phone picks up by itself) from the panel: once the
    transfer is completed Bình has the caller; once it is cancelled An has them back;
    with three-way all three talk, and An may leave the other two."""
    apps = center.site.apps
    an, binh, stranger = (
        agent_of("an@hue.vn"),
        agent_of("binh@hue.vn"),
        agent_of("la@vinh.vn", OTHER),
    )
    pops = PopStream(an.http, f"/t/{TENANT}/phone/events")
    binh_pops = PopStream(binh.http, f"/t/{TENANT}/phone/events")
    asyncio.run(panel(nats_url, "party", {"address": "3001", "party": {"answer_after": 0.2}}))
    asyncio.run(panel(nats_url, "party", {"address": "3002", "party": {"answer_after": 0.3}}))

    def view(call_id: str, predicate: Any) -> dict[str, Any]:
        found = wait_for(lambda: call_view(apps, call_id), lambda c: bool(c and predicate(c)))
        assert found is not None and predicate(found), found
        return found

    def leg_of(call: dict[str, Any], user: UUID) -> dict[str, Any]:
        [leg] = [g for g in call["legs"] if g["user_id"] == str(user)]
        return leg

    def answered_call(number: str) -> tuple[str, str, str]:
        """A caller through An's queue, An on the line: the call's id, the caller's leg
        (the call's reference) and An's leg."""
        wait_for(lambda: apps.agents.get(TENANT, center.an)["presence"], lambda p: p == "available")
        request = {"caller_number": number, "hotline": HOTLINE, "party": {"digits": "1"}}
        asyncio.run(panel(nats_url, "call", request))
        call_id = pops.next(lambda e: e["kind"] == "ringing")["call_id"]
        assert pops.next(lambda e: e["kind"] == "answered")["call_id"] == call_id
        call = view(
            call_id, lambda c: bool(c["answered_at"] and leg_of(c, center.an)["answered_at"])
        )
        return call_id, call["call_ref"], leg_of(call, center.an)["leg_id"]

    def consult_binh(call_id: str) -> str:
        """An consults Bình; Bình's phone rings, pops and picks up: his leg."""
        sent = an.post(f"/calls/{call_id}/consult", agent_id=str(center.binh))
        assert sent.status_code == 202, sent.text
        assert pops.next(lambda e: e["kind"] == "consulting")["call_id"] == call_id
        ring = binh_pops.next(lambda e: e["kind"] == "ringing")
        assert ring["call_id"] == call_id and ring["info"]["caller"]
        assert pops.next(lambda e: e["kind"] == "consult_answered")["call_id"] == call_id
        call = view(call_id, lambda c: c["consulting"] and c["held"])
        binh_leg = leg_of(call, center.binh)
        assert binh_leg["answered_at"] and call["consulting"][1] == binh_leg["leg_id"]
        return str(binh_leg["leg_id"])

    try:
        # 1. Consult, then complete: Bình has the caller, An has left.
        call_id, caller, an_leg = answered_call("0987000501")
        # Nothing to complete, cancel or join before a consult.
        for act in ("complete-transfer", "cancel-transfer", "three-way"):
            early = an.post(f"/calls/{call_id}/{act}")
            assert early.status_code == 409 and early.json()["error"] == "phone.not_consulting"
        # Not to someone of another tenant, nor to nobody, nor from a call one is not on.
        for target, error in (
            (center.stranger, "phone.no_agent"),
            (uuid.uuid4(), "phone.no_agent"),
        ):
            refused = an.post(f"/calls/{call_id}/consult", agent_id=str(target))
            assert refused.status_code == 404 and refused.json()["error"] == error
        assert an.post(f"/calls/{call_id}/consult").json()["error"] == "phone.no_target"
        not_on = binh.post(f"/calls/{call_id}/consult", agent_id=str(center.an))
        assert not_on.status_code == 403 and not_on.json()["error"] == "phone.not_your_call"
        assert (
            stranger.post(f"/calls/{call_id}/consult", agent_id=str(center.binh)).status_code == 403
        )
        part = an.http.get(f"/t/{TENANT}/phone/calls/{call_id}?fragment=1&lang=en").text
        assert f'formaction="/t/{TENANT}/phone/calls/{call_id}/consult"' in part

        binh_leg = consult_binh(call_id)
        # An talks with Bình, the held caller hears neither.
        assert hears(nats_url, an_leg, binh_leg) and hears(nats_url, binh_leg, an_leg)
        assert not hears(nats_url, caller, an_leg) and not hears(nats_url, caller, binh_leg)
        part = an.http.get(f"/t/{TENANT}/phone/calls/{call_id}?fragment=1&lang=en").text
        assert "Talking with Bình Võ" in part and "on the line" in part
        for act in ("complete-transfer", "cancel-transfer", "three-way"):
            assert f'action="/t/{TENANT}/phone/calls/{call_id}/{act}"' in part
        assert f"/calls/{call_id}/transfer" not in part
        binh_part = binh.http.get(f"/t/{TENANT}/phone/calls/{call_id}?fragment=1&lang=en").text
        assert "An Phạm is consulting you" in binh_part and "complete-transfer" not in binh_part
        # One consult at a time, no blind transfer meanwhile; only An completes it.
        for act in ("consult", "transfer"):
            busy = an.post(f"/calls/{call_id}/{act}", number="0987000999")
            assert busy.status_code == 409 and busy.json()["error"] == "phone.consulting_now"
        # Bình, consulted, may only mute: not complete it, nor hang up the customer.
        for act in ("complete-transfer", "hangup", "record", "hold"):
            notyours = binh.post(f"/calls/{call_id}/{act}")
            assert notyours.status_code == 409, act
            assert notyours.json()["error"] == "phone.consulted_only_mute", act
        assert binh.post(f"/calls/{call_id}/mute").status_code == 202
        assert binh.post(f"/calls/{call_id}/unmute").status_code == 202

        assert an.post(f"/calls/{call_id}/complete-transfer").status_code == 202
        assert pops.next(lambda e: e["kind"] == "transferred")["call_id"] == call_id
        assert pops.next(lambda e: e["kind"] == "ended")["call_id"] == call_id
        assert binh_pops.next(lambda e: e["kind"] == "transfer_completed")["call_id"] == call_id
        done = view(call_id, lambda c: bool(c["transfers"]) and not c["held"])
        assert [t["kind"] for t in done["transfers"]] == ["attended"]
        assert leg_of(done, center.an)["ended_at"] and not leg_of(done, center.binh)["ended_at"]
        assert not done["ended_at"] and done["consulting"] is None
        assert hears(nats_url, caller, binh_leg) and hears(nats_url, binh_leg, caller)
        gone = an.post(f"/calls/{call_id}/cancel-transfer")
        assert gone.status_code == 409 and gone.json()["error"] == "phone.left_call"
        assert binh.post(f"/calls/{call_id}/hangup").status_code == 202
        assert binh_pops.next(lambda e: e["kind"] == "ended")["call_id"] == call_id
        view(call_id, lambda c: bool(c["ended_at"]))

        # 2. Consult, then back to the customer: the consult leg is dropped.
        call_id, caller, an_leg = answered_call("0987000502")
        binh_leg = consult_binh(call_id)
        # Without a script the controls are forms: a refusal is a page saying why.
        no_three = binh.http.post(
            f"/t/{TENANT}/phone/calls/{call_id}/three-way?lang=en",
            data={"_csrf_token": binh.token},
        )
        assert no_three.status_code == 409 and "you may only mute" in no_three.text
        back = an.http.post(
            f"/t/{TENANT}/phone/calls/{call_id}/cancel-transfer", data={"_csrf_token": an.token}
        )
        assert back.status_code == 303, back.text
        assert pops.next(lambda e: e["kind"] == "consult_cancelled")["call_id"] == call_id
        assert binh_pops.next(lambda e: e["kind"] == "ended")["call_id"] == call_id
        kept = view(call_id, lambda c: c["consulting"] is None and not c["held"])
        assert leg_of(kept, center.binh)["ended_at"] and not leg_of(kept, center.an)["ended_at"]
        assert not kept["transfers"] and not kept["ended_at"]
        assert hears(nats_url, caller, an_leg) and hears(nats_url, an_leg, caller)
        part = an.http.get(f"/t/{TENANT}/phone/calls/{call_id}?fragment=1&lang=en").text
        assert "Talking with" not in part and f"/calls/{call_id}/hold" in part
        assert an.post(f"/calls/{call_id}/hangup").status_code == 202
        view(call_id, lambda c: bool(c["ended_at"]))

        # 3. Consult, then three-way: all three hear one another; An leaves the other two.
        call_id, caller, an_leg = answered_call("0987000503")
        binh_leg = consult_binh(call_id)
        not_yet = an.post(f"/calls/{call_id}/leave")
        assert not_yet.status_code == 409 and not_yet.json()["error"] == "phone.not_three_way"
        assert an.post(f"/calls/{call_id}/three-way").status_code == 202
        assert pops.next(lambda e: e["kind"] == "conference")["call_id"] == call_id
        assert binh_pops.next(lambda e: e["kind"] == "conference")["call_id"] == call_id
        joined = view(call_id, lambda c: c["conference_leg_ids"] == [binh_leg] and not c["held"])
        everyone = [caller, an_leg, binh_leg]
        for listener in everyone:
            for speaker in everyone:
                if listener != speaker:
                    assert hears(nats_url, listener, speaker), (listener, speaker)
        assert joined["consulting"] is None
        part = an.http.get(f"/t/{TENANT}/phone/calls/{call_id}?fragment=1&lang=en").text
        assert "Three-way call" in part and f"/calls/{call_id}/leave" in part
        over = an.post(f"/calls/{call_id}/complete-transfer")
        assert over.status_code == 409 and over.json()["error"] == "phone.not_consulting"
        assert an.post(f"/calls/{call_id}/leave").status_code == 202
        assert pops.next(lambda e: e["kind"] == "ended")["call_id"] == call_id
        left = view(call_id, lambda c: bool(leg_of(c, center.an)["ended_at"]))
        assert not left["ended_at"] and not leg_of(left, center.binh)["ended_at"]
        assert hears(nats_url, caller, binh_leg) and hears(nats_url, binh_leg, caller)
        assert binh.post(f"/calls/{call_id}/hangup").status_code == 202
        view(call_id, lambda c: bool(c["ended_at"]))
    finally:
        pops.close()
        binh_pops.close()


def test_in_a_real_browser_the_panel_consults_then_makes_a_three_way_call(
    center: Center, nats_url: str
) -> None:
    from browser import chromium, screenshot

    apps, url = center.site.apps, center.site.url
    aside = ThreadPoolExecutor(1)  # Playwright's event loop runs on this thread
    aside.submit(
        asyncio.run, panel(nats_url, "party", {"address": "3001", "party": {"answer_after": 0.2}})
    ).result()
    aside.submit(
        asyncio.run, panel(nats_url, "party", {"address": "3002", "party": {"answer_after": 0.2}})
    ).result()
    assert wait_for(
        lambda: apps.agents.get(TENANT, center.an)["presence"], lambda p: p == "available"
    )
    with aside, chromium() as browser:
        page = browser.new_context(locale="en-GB").new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/signin?lang=en")
        page.fill("input[name=organisation]", TENANT)
        page.fill("input[name=login]", "an@hue.vn")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/t/{TENANT}/")
        request = {"caller_number": "0987000504", "hotline": HOTLINE, "party": {"digits": "1"}}
        placed = aside.submit(asyncio.run, panel(nats_url, "call", request)).result()
        call_id = str(Call.create_id(TENANT, placed["channel_id"]))
        page.wait_for_selector("#phone-state:has-text('On the call')")
        page.wait_for_selector("#phone-call select[name=agent_id]")
        page.select_option("#phone-call select[name=agent_id]", str(center.binh))
        page.click("#phone-call button[data-phone-action=consult]")
        page.wait_for_selector("#phone-state:has-text('Consulting')")
        page.wait_for_selector("#phone-call form[data-phone-action=three-way] button")
        assert "Talking with Bình Võ" in page.inner_text("#phone-call")
        screenshot(page, "phone-consult")
        consulting = call_view(apps, call_id)
        assert consulting is not None and consulting["consulting"] and not consulting["transfers"]
        page.click("#phone-call form[data-phone-action=three-way] button")
        page.wait_for_selector("#phone-state:has-text('Three-way call')")
        page.wait_for_selector("#phone-call form[data-phone-action=leave] button")
        joined = call_view(apps, call_id)
        assert joined is not None and joined["conference_leg_ids"]
        page.click("#phone-call form[data-phone-action=leave] button")
        page.wait_for_selector("#phone-state:has-text('Ended')")
        left = call_view(apps, call_id)
        assert left is not None and not left["ended_at"]
        aside.submit(
            asyncio.run, panel(nats_url, "hangup", {"channel_id": placed["channel_id"]})
        ).result()
        assert wait_for(lambda: call_view(apps, call_id), lambda c: bool(c and c["ended_at"]))


def test_an_agents_click_to_call_refuses_a_number_that_is_not_the_customers(
    center: Center, agent_of: Any
) -> None:
    binh = agent_of("binh@hue.vn")
    for number in ("0987 111 222", "+84 987 111 222"):
        answer = binh.post("/dial", customer_id=str(center.customer), number=number)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "phone.not_customers_number"
    page = binh.http.post(
        f"/t/{TENANT}/phone/dial?lang=en",
        data={
            "customer_id": str(center.customer),
            "number": "0987111222",
            "_csrf_token": binh.token,
        },
    )
    assert page.status_code == 400 and "not one of this customer" in page.text


def test_a_softphone_preference_a_crash_left_behind_is_cleared_when_the_switch_starts(
    tmp_path: Any,
) -> None:
    """The stream that registered a browser never ran its end (the process died): once
    the switch is up again, no browser is registered at it, and the agent's calls ring
    their desk phone again."""
    from deploy.natsserver import NatsServer

    tenant, hotline = "phone-hoian", "+842873008888"
    server = NatsServer(tmp_path / "nats")
    server.start()
    data = tmp_path / "data"
    data.mkdir()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": server.url})
    site = Site("", apps, data, server.url)
    try:
        with running_instance(data, server.url, free_port(), CLOUDCC_WRAP_UP_SECONDS="0"):
            apps.tenants.register(tenant, "Phone Hội An", Package.CONTACT_CENTER, [hotline])
            desk = apps.queues.create(
                tenant, "Bàn giấy", policy=RoutingPolicy.SKILL, required_skills={"desk": 1}
            )
            apps.queues.set_waiting_rules(
                tenant, desk, ring_timeout_seconds=30, max_wait_seconds=600
            )
            apps.tenants.route_hotline(tenant, hotline, "queue", desk)
            user = apps.agents.create_user(
                tenant, "Dũng Lê", "dung@hoian.vn", "agent", package=Package.CONTACT_CENTER
            )
            apps.agents.add_endpoint(tenant, user, EndpointKind.SIP_PHONE, "3004")
            apps.agents.add_endpoint(tenant, user, EndpointKind.WEBRTC)
            apps.agents.set_skill(tenant, user, "desk", 3)
            apps.agents.go_available(tenant, user)
            # As the stream does once the switch registered the browser; then the process
            # is gone without the stream's end (no browser unregistered, nothing cleared).
            apps.agents.prefer_endpoint(tenant, user, EndpointKind.WEBRTC)
            assert wait_for(lambda: routing_rings(site, user), bool) == ("webrtc", "")
        assert apps.agents.get(tenant, user)["preferred_endpoint"] == {
            "kind": "webrtc",
            "address": "",
        }

        with running_instance(data, server.url, free_port(), CLOUDCC_WRAP_UP_SECONDS="0"):
            assert apps.agents.get(tenant, user)["preferred_endpoint"] is None
            assert wait_for(lambda: routing_rings(site, user), lambda r: r is None) is None
            assert registrations(server.url, f"webrtc:{user}") == 0
            # The next call rings the desk phone, which picks up by itself.
            asyncio.run(
                panel(server.url, "party", {"address": "3004", "party": {"answer_after": 0.2}})
            )
            placed = asyncio.run(
                panel(server.url, "call", {"caller_number": "0987654321", "hotline": hotline})
            )
            call_id = Call.create_id(tenant, placed["channel_id"])

            def mine() -> list[dict[str, Any]]:
                with contextlib.suppress(Exception):
                    call = apps.calls.get(tenant, call_id)
                    return [g for g in call["legs"] if g["user_id"] == str(user)]
                return []

            legs = wait_for(mine, lambda found: any(g["answered_at"] for g in found))
            assert [(g["endpoint"], g["address"]) for g in legs] == [("sip_phone", "3004")]
            assert legs[0]["answered_at"]
            asyncio.run(panel(server.url, "hangup", {"channel_id": placed["channel_id"]}))
    finally:
        apps.close()
        server.stop()


class FakePanel:
    """The switch's panel played by the test (the instance runs no switch): it notes each
    `register` and `unregister` it gets, and answers them only if told to."""

    def __init__(self, nats_url: str, *, answer_register: bool, answer_unregister: bool) -> None:
        self.asked: queue.Queue[str] = queue.Queue()
        self.answers = {"register": answer_register, "unregister": answer_unregister}
        self._url, self._ready = nats_url, threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._nc = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> Any:
        nc = await nats.connect(self._url)

        async def serve(msg: Any) -> None:
            verb = msg.subject.rsplit(".", 1)[-1]
            self.asked.put(verb)
            if self.answers[verb]:
                count = 1 if verb == "register" else 0
                await msg.respond(msgspec.json.encode({"registrations": count}))

        for verb in ("register", "unregister"):
            await nc.subscribe(f"switch.builtin.{verb}", cb=serve)
        await nc.flush()
        return nc

    def next(self, timeout: float = 10) -> str:
        return self.asked.get(timeout=timeout)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._nc.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_a_softphone_stream_that_leaves_mid_registration_or_unheard_lets_its_browser_go(
    tmp_path: Any,
) -> None:
    """A browser's stream is cancelled while the switch has its registration but has not
    answered: it unregisters all the same. The switch does not answer the unregistering:
    the agent's preference for the browser goes all the same."""
    from deploy.natsserver import NatsServer

    tenant = "phone-dalat"
    server = NatsServer(tmp_path / "nats")
    server.start()
    data = tmp_path / "data"
    data.mkdir()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": server.url})
    port = free_port()
    try:
        # No switch in the instance: the test's panel plays it.
        with running_instance(data, server.url, port, CLOUDCC_SERVICES="api,facts,readmodels"):
            site = Site(f"http://127.0.0.1:{port}", apps, data, server.url)
            apps.tenants.register(tenant, "Phone Đà Lạt", Package.CONTACT_CENTER, ["+842873009999"])
            user = apps.agents.create_user(
                tenant, "Cường Đỗ", "cuong@dalat.vn", "agent", package=Package.CONTACT_CENTER
            )
            apps.agents.set_password(tenant, user, PASSWORD)
            apps.agents.add_endpoint(tenant, user, EndpointKind.SIP_PHONE, "3001")
            apps.agents.add_endpoint(tenant, user, EndpointKind.WEBRTC)
            events = f"/t/{tenant}/phone/events?softphone=1"

            def preferred() -> Any:
                return apps.agents.get(tenant, user)["preferred_endpoint"]

            with signed_in(site, tenant, "cuong@dalat.vn", PASSWORD) as http:
                # The registration reaches the switch, whose answer is still to come when
                # the browser leaves.
                fake = FakePanel(server.url, answer_register=False, answer_unregister=True)
                try:
                    pops = PopStream(http, events)
                    try:
                        assert fake.next() == "register"
                    finally:
                        pops.close()
                    assert fake.next() == "unregister"
                finally:
                    fake.close()
                assert preferred() is None

                # Registered and preferred; then the switch never answers the leaving.
                fake = FakePanel(server.url, answer_register=True, answer_unregister=False)
                try:
                    pops = PopStream(http, events)
                    try:
                        softphone = pops.next(lambda e: e["kind"] == "softphone")
                        assert softphone["state"] == "registered"
                        assert fake.next() == "register"
                        assert preferred() == {"kind": "webrtc", "address": ""}
                    finally:
                        pops.close()
                    assert fake.next() == "unregister"
                    assert wait_for(preferred, lambda p: p is None) is None
                finally:
                    fake.close()
    finally:
        apps.close()
        server.stop()


def test_a_call_the_agent_dialled_is_transferred_without_dropping_the_customer(
    center: Center, agent_of: Any, nats_url: str
) -> None:
    """Bình dials the customer from the panel, then hands the call to An: the leg that
    dialled is put down, and the customer talks with An (the dialling leg no longer holds
    the call up once it has handed it over)."""
    apps = center.site.apps
    binh = agent_of("binh@hue.vn")
    for address, after in (("3002", 0.2), ("3001", 0.3), (CUSTOMER_NUMBER, 0.2)):
        asyncio.run(
            panel(nats_url, "party", {"address": address, "party": {"answer_after": after}})
        )
    pops = PopStream(binh.http, f"/t/{TENANT}/phone/events")
    try:
        dialled = binh.post("/dial", number=CUSTOMER_NUMBER)
        assert dialled.status_code == 202, dialled.text
        dialing = pops.next(lambda e: e["kind"] == "dialing")
        call_id = dialing["call_id"]

        def answered(c: dict[str, Any] | None) -> bool:
            return bool(
                c and c["answered_at"] and len([g for g in c["legs"] if g["answered_at"]]) >= 2
            )

        assert wait_for(lambda: call_view(apps, call_id), answered, 20)
        moved = binh.post(f"/calls/{call_id}/transfer", agent_id=str(center.an))
        assert moved.status_code == 202, moved.text

        def with_an(c: dict[str, Any] | None) -> bool:
            return bool(c) and any(
                g["user_id"] == str(center.an) and g["answered_at"] and not g["ended_at"]
                for g in c["legs"]  # type: ignore[index]
            )

        call = wait_for(lambda: call_view(apps, call_id), with_an, 20)
        assert call is not None and with_an(call) and not call["ended_at"], call
        customer = next(g for g in call["legs"] if g["user_id"] is None)
        an_leg = next(g for g in call["legs"] if g["user_id"] == str(center.an))
        binh_leg = next(g for g in call["legs"] if g["user_id"] == str(center.binh))
        assert binh_leg["ended_at"] and not customer["ended_at"]
        assert hears(nats_url, customer["leg_id"], an_leg["leg_id"])
        assert hears(nats_url, an_leg["leg_id"], customer["leg_id"])
        asyncio.run(
            panel(
                nats_url, "hangup", {"channel_id": customer["leg_id"], "cause": "NORMAL_CLEARING"}
            )
        )
        assert wait_for(lambda: call_view(apps, call_id), lambda c: bool(c and c["ended_at"]))
    finally:
        pops.close()
