"""The live chat channel (CT8, CT9) on a real `cloudcc up`: the widget script, a visitor on
the WebSocket, their messages as facts becoming a conversation in the agent's inbox, the
agent's replies pushed live, the returning visitor, the offline form — and each tenant's
visitors walled off from the others'."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from helpers import api_headers, running_instance, wait_for
from test_signin import Site, signed_in
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from connectors.livechat.inbound import (
    HELLO_SECONDS,
    MAX_SOCKETS_PER_IP,
    NEW_VISITORS_PER_IP,
    Admission,
    visitor_of,
)
from connectors.livechat.services import LiveChat
from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.conversations import thread_conversation_id
from domain.vocabulary import Channel, Package
from web.pages.auth import instance_secret

SHOP, OTHER, QUIET, LATE = "chat-shop", "chat-other", "chat-quiet", "chat-late"
PASSWORD = "mật khẩu chat 2024"

# The instance limits sockets and new visitors per client address: each test's sockets
# come from a loopback address of its own (all of 127/8 is loopback), so that no test
# spends another's allowance.
_addresses = (f"127.0.{n // 250}.{n % 250 + 2}" for n in itertools.count())
_source = ["127.0.0.1"]


@pytest.fixture(autouse=True)
def own_address() -> str:
    _source[0] = next(_addresses)
    return _source[0]


def connect(url: str, source: str | None = None) -> ClientConnection:
    return ws_connect(url, source_address=(source or _source[0], 0))


@dataclass
class Shop:
    site: Site
    an: UUID  # the shop's agent
    chat_queue: UUID
    quiet_agent: UUID  # the quiet tenant's agent, offline at first

    @property
    def ws(self) -> str:
        return self.site.url.replace("http://", "ws://")

    def visitor(self, tenant: str, token: str) -> str:
        visitor = visitor_of(instance_secret(self.site.data), tenant, token)
        assert visitor is not None
        return visitor

    def conversation(self, tenant: str, token: str) -> dict[str, Any]:
        """The visitor's conversation, once the fact handlers have made it."""
        cid = thread_conversation_id(tenant, Channel.CHAT, self.visitor(tenant, token))
        apps = self.site.apps
        found = wait_for(
            lambda: cid in apps.conversations.repository and apps.conversations.get(tenant, cid),
            bool,
        )
        assert found, "the visitor's conversation was not made"
        return found


@pytest.fixture(scope="module")
def shop(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    data = tmp_path_factory.mktemp("livechat")
    port = free_port()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        with running_instance(data, nats_url, port):
            url = f"http://127.0.0.1:{port}"
            for tenant in (SHOP, OTHER, QUIET):
                api_headers(url, nats_url, tenant)  # registers the tenant
            package = Package.CONTACT_CENTER
            an = apps.agents.create_user(SHOP, "An Nguyễn", "an@shop.vn", "agent", package=package)
            apps.agents.set_password(SHOP, an, PASSWORD)
            apps.queues.create(SHOP, "Calls only", [Channel.CALL])
            chat_queue = apps.queues.create(SHOP, "Chat", [Channel.CHAT, Channel.EMAIL])
            quiet = apps.agents.create_user(
                QUIET, "Bình Lê", "binh@quiet.vn", "agent", package=package
            )
            apps.agents.add_endpoint(QUIET, quiet, "sip_phone", "binh-desk")
            yield Shop(Site(url, apps, data, nats_url), an, chat_queue, quiet)
    finally:
        apps.close()


def frame(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return answer


def hello(ws: ClientConnection, token: str | None = None, name: str = "") -> dict[str, Any]:
    ws.send(json.dumps({"type": "hello", "token": token, "name": name}))
    welcome = frame(ws)
    assert welcome["type"] == "welcome", welcome
    return welcome


def say(ws: ClientConnection, text: str, message_id: str | None = None) -> str:
    message_id = message_id or uuid4().hex
    ws.send(json.dumps({"type": "say", "id": message_id, "text": text}))
    assert frame(ws) == {"type": "accepted", "id": message_id}
    return message_id


def line_saying(ws: ClientConnection, text: str) -> dict[str, Any]:
    """The next `line` frame with this text (the visitor's own lines come back too)."""
    while True:
        got = frame(ws, timeout=15)
        if got["type"] == "line" and got["text"] == text:
            return got


def test_the_widget_script_is_one_tag_for_a_tenant_with_live_chat(shop: Shop) -> None:
    with shop.site.client() as http:
        script = http.get(f"/widget/{SHOP}.js")
        assert script.status_code == 200, script.text
        assert script.headers["content-type"].startswith("text/javascript")
        assert '"tenant":"chat-shop"' in script.text and "/*CONFIG*/null" not in script.text
        assert "attachShadow" in script.text  # its CSS stays inside its own root
        assert "Chat với chúng tôi" in script.text  # Vietnamese by default
        assert "Chat with us" in http.get(f"/widget/{SHOP}.js?lang=en").text
        for missing in ("/widget/nobody.js", f"/widget/{SHOP}", "/widget/..js"):
            refused = http.get(missing)
            assert refused.status_code == 404, missing
            assert refused.headers["content-type"].startswith("text/javascript")

        site = http.get(f"/site/{SHOP}?lang=en")
        assert site.status_code == 200 and "Sample shop" in site.text
        assert f'<script src="{shop.site.url}/widget/{SHOP}.js?lang=en" async>' in site.text
        assert http.get("/site/nobody").status_code == 404


def test_an_unknown_tenant_has_no_chat_socket(shop: Shop) -> None:
    with connect(f"{shop.ws}/chat/nobody/ws") as ws:
        refused = frame(ws)
        assert refused["type"] == "error" and refused["code"] == "no_chat"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


def test_a_visitor_chats_it_reaches_the_agents_inbox_and_the_reply_comes_back_live(
    shop: Shop,
) -> None:
    apps = shop.site.apps
    with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
        welcome = hello(ws, name="Chị Hoa")
        token = welcome["token"]
        assert len(token) > 40 and welcome["messages"] == [] and welcome["online"] is False
        mine = say(ws, "Cho em hỏi gói Internet 100 Mbps")
        echoed = line_saying(ws, "Cho em hỏi gói Internet 100 Mbps")
        assert echoed["id"] == mine and echoed["by"] == "visitor"

        conversation = shop.conversation(SHOP, token)
        cid = UUID(conversation["id"])
        assert conversation["channel"] == "chat"
        customer = apps.customers.get(SHOP, UUID(conversation["customer_id"]))
        assert customer["name"] == "Chị Hoa"
        # CT9: handed to the tenant's queue that serves chat, for routing.
        queued = wait_for(lambda: apps.conversations.get(SHOP, cid), lambda c: c["queue_id"])
        assert queued["queue_id"] == str(shop.chat_queue)

        apps.conversations.assign(SHOP, cid, shop.an)  # as routing and an accept would
        with signed_in(shop.site, SHOP, "an@shop.vn", PASSWORD) as http:
            inbox = wait_for(
                lambda: http.get(f"/t/{SHOP}/inbox", params={"channel": "chat"}),
                lambda r: str(cid) in r.text,
            )
            assert "Cho em hỏi gói Internet 100 Mbps" in inbox.text
            opened = http.get(f"/t/{SHOP}/inbox/{cid}")
            assert opened.status_code == 200
            fields = {
                name: re.search(rf'name="{name}" value="([^"]+)"', opened.text).group(1)  # type: ignore[union-attr]
                for name in ("_csrf_token", "key")
            }
            sent = http.post(
                f"/t/{SHOP}/inbox/{cid}/reply", data={**fields, "body": "Dạ gói 100 Mbps 220k ạ"}
            )
            assert sent.status_code == 303, sent.text

        reply = line_saying(ws, "Dạ gói 100 Mbps 220k ạ")
        assert reply["by"] == "agent" and reply["agent"] == "An Nguyễn"


def test_a_returning_visitor_finds_their_conversation_with_the_replies_sent_meanwhile(
    shop: Shop,
) -> None:
    apps = shop.site.apps
    with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
        token = hello(ws)["token"]
        first = say(ws, "Shop còn sim số đẹp không?")
    cid = UUID(shop.conversation(SHOP, token)["id"])
    apps.conversations.assign(SHOP, cid, shop.an)
    apps.conversations.send_message(SHOP, cid, "away-1", shop.an, "Dạ còn ạ, anh xem nhé")

    with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
        welcome = hello(ws, token)
        assert welcome["token"] == token
        assert [(m["id"], m["by"], m["text"]) for m in welcome["messages"]] == [
            (first, "visitor", "Shop còn sim số đẹp không?"),
            ("away-1", "agent", "Dạ còn ạ, anh xem nhé"),
        ]
        # The same message sent again after a lost connection is recorded once.
        assert say(ws, "Shop còn sim số đẹp không?", first) == first
        say(ws, "Cảm ơn shop")
        line_saying(ws, "Cảm ơn shop")
        messages = apps.conversations.get(SHOP, cid)["messages"]
        assert [m["body"] for m in messages] == [
            "Shop còn sim số đẹp không?",
            "Dạ còn ạ, anh xem nhé",
            "Cảm ơn shop",
        ]
        # Two tabs of one visitor: both see the agent's next reply.
        with connect(f"{shop.ws}/chat/{SHOP}/ws") as tab:
            assert len(hello(tab, token)["messages"]) == 3
            apps.conversations.send_message(SHOP, cid, "away-2", shop.an, "Anh cần thêm gì ạ?")
            assert line_saying(tab, "Anh cần thêm gì ạ?")["by"] == "agent"
            assert line_saying(ws, "Anh cần thêm gì ạ?")["id"] == "away-2"


def test_another_tenants_widget_or_a_made_up_token_sees_nothing_of_the_visitor(
    shop: Shop,
) -> None:
    apps = shop.site.apps
    with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
        token = hello(ws)["token"]
        say(ws, "Tin nhắn riêng của shop")
    cid = UUID(shop.conversation(SHOP, token)["id"])
    apps.conversations.assign(SHOP, cid, shop.an)

    forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
    for tenant, given in ((OTHER, token), (SHOP, forged), (SHOP, "short.token")):
        with connect(f"{shop.ws}/chat/{tenant}/ws") as ws:
            welcome = hello(ws, given)
            assert welcome["token"] != given and welcome["messages"] == [], tenant
            if tenant == OTHER:
                say(ws, "Tôi là khách của tenant khác")
                other = shop.conversation(OTHER, welcome["token"])
                assert other["id"] != str(cid)
                # The shop's agent answers the shop's visitor: nothing arrives here.
                apps.conversations.send_message(SHOP, cid, "wall-1", shop.an, "Chỉ cho shop")
                with pytest.raises(TimeoutError):
                    while True:
                        got = frame(ws, timeout=2)
                        assert "Chỉ cho shop" not in json.dumps(got, ensure_ascii=False)
    with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
        assert [m["text"] for m in hello(ws, token)["messages"]][-1] == "Chỉ cho shop"


def test_bad_frames_get_error_frames_and_the_socket_stays_open(shop: Shop) -> None:
    with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
        ws.send(json.dumps({"type": "say", "id": "before-hello", "text": "hi"}))
        assert frame(ws) | {"message": ""} == {
            "type": "error",
            "code": "hello_first",
            "message": "",
            "id": "before-hello",
        }
        token = hello(ws)["token"]
        bad: list[tuple[str | bytes, str]] = [
            ("not json", "malformed"),
            (b"\xff\xfe", "malformed"),
            (json.dumps({"type": "shout", "text": "x"}), "invalid"),
            (json.dumps({"type": "say", "id": "short", "text": "x"}), "invalid"),
            (json.dumps({"type": "say", "id": "x" * 20, "text": "x" * 2001}), "invalid"),
            (json.dumps({"type": "say", "id": "y" * 20, "text": "   "}), "empty"),
            (json.dumps({"type": "say", "id": "z" * 20, "text": "x" * 20_000}), "too_big"),
            (json.dumps({"type": "hello", "token": token}), "hello_again"),
        ]
        for data, code in bad:
            ws.send(data)
            refused = frame(ws)
            assert refused["type"] == "error" and refused["code"] == code, (data, refused)
            assert refused["message"]
        say(ws, "Vẫn gửi được")  # still open, still working

        # A flood: the first few go through, then the socket says to slow down.
        codes = []
        for n in range(20):
            ws.send(json.dumps({"type": "say", "id": f"flood-{n:04d}", "text": f"spam {n}"}))
        while len(codes) < 20:
            got = frame(ws)
            if got["type"] in ("accepted", "error"):
                codes.append(got.get("code", "accepted"))
        assert "rate_limited" in codes and codes.count("accepted") >= 5


def test_offline_the_visitor_leaves_a_message_that_becomes_a_conversation(shop: Shop) -> None:
    apps = shop.site.apps
    with connect(f"{shop.ws}/chat/{QUIET}/ws") as ws:
        welcome = hello(ws)
        assert welcome["online"] is False
        token = welcome["token"]
        form = {"type": "leave", "id": uuid4().hex, "name": "Anh Tư", "text": "Gọi lại cho tôi"}
        for extra, code in (
            ({}, "no_contact"),
            ({"email": "not-an-address"}, "bad_email"),
            ({"phone": "call me"}, "bad_phone"),
            ({"email": "tu@example.vn", "name": " "}, "no_name"),
        ):
            ws.send(json.dumps({**form, **extra}))
            refused = frame(ws)
            assert refused["type"] == "error" and refused["code"] == code, refused
            assert refused["id"] == form["id"]
        ws.send(json.dumps({**form, "email": "tu@example.vn", "phone": "0903 123 456"}))
        assert frame(ws) == {"type": "accepted", "id": form["id"]}

        conversation = shop.conversation(QUIET, token)
        [message] = conversation["messages"]
        assert message["body"].startswith("Gọi lại cho tôi")
        assert "Anh Tư" in message["body"] and "tu@example.vn" in message["body"]
        assert "0903 123 456" in message["body"]
        customer = apps.customers.get(QUIET, UUID(conversation["customer_id"]))
        assert customer["name"] == "Anh Tư"
        line_saying(ws, message["body"])

        # An agent comes online: the widget is told, without asking.
        apps.agents.go_available(QUIET, shop.quiet_agent)
        while (got := frame(ws, timeout=15))["type"] != "online":
            pass
        assert got == {"type": "online", "online": True}
    with connect(f"{shop.ws}/chat/{QUIET}/ws") as ws:
        assert hello(ws, token)["online"] is True


def test_in_a_browser_the_widget_chats_keeps_the_visitor_and_offers_the_offline_form(
    shop: Shop,
) -> None:
    from browser import chromium

    apps = shop.site.apps
    # Someone on duty at the shop: the widget offers the chat box, not the offline form.
    chi = apps.agents.create_user(
        SHOP, "Chi Đỗ", "chi@shop.vn", "agent", package=Package.CONTACT_CENTER
    )
    apps.agents.add_endpoint(SHOP, chi, "sip_phone", "chi-desk")
    apps.agents.go_available(SHOP, chi)
    with chromium() as browser:
        page: Any = browser.new_context().new_page()  # type: ignore[attr-defined]
        page.goto(f"{shop.site.url}/site/{SHOP}?lang=en")
        widget = page.locator("#cloudcc-chat .button")
        widget.click()
        # The shop's loud CSS (pink buttons) stops at the widget's shadow root.
        colour = widget.evaluate("b => getComputedStyle(b).backgroundColor")
        assert colour == "rgb(21, 101, 192)", colour
        # Chi is on duty: the chat box, soon (not the offline form, nor after a cache expires).
        page.locator("#cloudcc-chat .say textarea").wait_for(state="visible", timeout=8_000)
        page.locator("#cloudcc-chat .say textarea").fill("Hello from the browser")
        page.locator("#cloudcc-chat .say textarea").press("Enter")
        page.locator("#cloudcc-chat .line.visitor:not(.sending)").wait_for(timeout=10_000)

        token = page.evaluate(f"localStorage.getItem('cloudcc.chat.{SHOP}.token')")
        cid = UUID(shop.conversation(SHOP, token)["id"])
        apps.conversations.assign(SHOP, cid, shop.an)
        apps.conversations.send_message(SHOP, cid, "browser-1", shop.an, "Hi, how can I help?")
        reply = page.locator("#cloudcc-chat .line.agent")
        reply.wait_for(timeout=15_000)
        assert "Hi, how can I help?" in reply.inner_text() and "An Nguyễn" in reply.inner_text()

        # A returning visitor: the page again, the same conversation drawn from the server.
        page.reload()
        page.locator("#cloudcc-chat .button").click()
        page.locator("#cloudcc-chat .line.agent").wait_for(timeout=10_000)
        texts = page.locator("#cloudcc-chat .line").all_inner_texts()
        assert len(texts) == 2 and "Hello from the browser" in texts[0], texts

        # Nobody online at the other tenant: the widget offers the leave-a-message form.
        other: Any = browser.new_context().new_page()  # type: ignore[attr-defined]
        other.goto(f"{shop.site.url}/site/{OTHER}?lang=en")
        other.locator("#cloudcc-chat .button").click()
        form = other.locator("#cloudcc-chat form.leave")
        form.wait_for(timeout=10_000)
        form.locator("input[name=name]").fill("Chú Ba")
        form.locator("input[name=phone]").fill("0912 345 678")
        form.locator("textarea[name=text]").fill("Please call me back")
        form.locator("button[type=submit]").click()
        other.get_by_text("We have your message. Thank you!").wait_for(timeout=10_000)
        left = other.evaluate(f"localStorage.getItem('cloudcc.chat.{OTHER}.token')")
        body = shop.conversation(OTHER, left)["messages"][0]["body"]
        assert body.startswith("Please call me back") and "0912 345 678" in body


def test_a_visitor_token_is_unguessable_and_good_for_one_tenant_only() -> None:
    from connectors.livechat.inbound import issue_token

    secret = "s3cret"
    token = issue_token(secret, SHOP)
    random, _, signature = token.partition(".")
    assert len(random) >= 32 and len(signature) == 32  # 192 random bits, signed
    visitor = visitor_of(secret, SHOP, token)
    assert visitor is not None and random not in visitor  # the token itself is not stored
    assert visitor_of(secret, SHOP, token) == visitor  # the same visitor every time
    assert visitor_of(secret, OTHER, token) is None  # another tenant's widget refuses it
    assert visitor_of("another instance", SHOP, token) is None
    assert visitor_of(secret, SHOP, f"{random}.{'0' * 32}") is None
    assert issue_token(secret, SHOP) != token


def _closed(ws: ClientConnection, timeout: float) -> tuple[int, str]:
    """The close code and reason the server ends the socket with (frames before it are
    skipped)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=timeout)
    assert closed.value.rcvd is not None, "the server did not close the socket"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_a_frame_nested_too_deep_is_malformed_and_the_socket_stays_open(shop: Shop) -> None:
    deep = (
        '{"type":"say","id":"abcdefgh","text":"x","x":' + "[" * 5000 + "]" * 5000 + "}"
    ).encode()
    assert len(deep) < 16 * 1024  # under the frame cap: the decoder itself must cope
    with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
        hello(ws)
        ws.send(deep)
        refused = frame(ws)
        assert refused["type"] == "error" and refused["code"] == "malformed", refused
        # A flood of them: past the frame limit, the refusal looks for the frame's id.
        for _ in range(45):
            ws.send(deep)
        codes = [frame(ws)["code"] for _ in range(45)]
        assert set(codes) == {"malformed", "rate_limited"}, codes
        time.sleep(0.5)  # the frame limit refills
        say(ws, "Vẫn còn đây")


def test_a_socket_that_never_says_hello_is_closed(shop: Shop) -> None:
    with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
        started = time.monotonic()
        code, reason = _closed(ws, timeout=HELLO_SECONDS + 10)
        assert code == 4408 and reason, (code, reason)
        assert HELLO_SECONDS - 1 < time.monotonic() - started < HELLO_SECONDS + 5


def test_one_address_may_open_so_many_sockets_and_start_so_many_new_visitors(
    shop: Shop, own_address: str
) -> None:
    with ExitStack() as stack:
        sockets = [
            stack.enter_context(connect(f"{shop.ws}/chat/{SHOP}/ws"))
            for _ in range(MAX_SOCKETS_PER_IP)
        ]
        with connect(f"{shop.ws}/chat/{SHOP}/ws") as one_more:
            refused = frame(one_more)
            assert refused["type"] == "error" and refused["code"] == "too_many", refused
            assert _closed(one_more, timeout=5)[0] == 1013
        # Another address is not held back by this one's sockets.
        with connect(f"{shop.ws}/chat/{SHOP}/ws", source=next(_addresses)) as elsewhere:
            hello(elsewhere)
        sockets.pop().close()

        def admitted() -> bool:
            with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
                ws.send(json.dumps({"type": "hello", "token": None}))
                return bool(frame(ws)["type"] == "welcome")

        # One closed, one more may open (once the server has seen it close); that one
        # was the address's first new visitor.
        assert wait_for(admitted, bool, timeout=5)

    # New visitors (no token): so many a minute from one address, then `too_many`.
    tokens = []
    for _ in range(NEW_VISITORS_PER_IP - 1):
        with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
            tokens.append(hello(ws)["token"])
    with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
        ws.send(json.dumps({"type": "hello", "token": None}))
        refused = frame(ws)
        assert refused["type"] == "error" and refused["code"] == "too_many", refused
        assert _closed(ws, timeout=5)[0] == 1013
    # A returning visitor (a valid token) is no new visitor.
    with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
        assert hello(ws, tokens[0])["token"] == tokens[0]


def test_admission_limits_sockets_per_address_and_tenant_and_new_visitors_per_minute() -> None:
    admission = Admission(per_ip=2, per_tenant=3, new_per_ip=2, window=0.3)
    assert admission.enter("10.0.0.1", SHOP) and admission.enter("10.0.0.1", SHOP)
    assert not admission.enter("10.0.0.1", OTHER)  # the address has its two
    assert admission.enter("10.0.0.2", SHOP)
    assert not admission.enter("10.0.0.3", SHOP)  # the tenant has its three
    assert admission.enter("10.0.0.3", OTHER)
    admission.leave("10.0.0.1", SHOP)
    assert admission.enter("10.0.0.3", SHOP)

    assert admission.new_visitor("10.0.0.1") and admission.new_visitor("10.0.0.1")
    assert not admission.new_visitor("10.0.0.1")
    assert admission.new_visitor("10.0.0.2")
    time.sleep(0.35)
    assert admission.new_visitor("10.0.0.1")  # a new window


def test_a_chat_started_before_the_tenant_had_a_chat_queue_is_queued_on_the_next_message(
    shop: Shop,
) -> None:
    apps = shop.site.apps
    api_headers(shop.site.url, shop.site.nats_url, LATE)  # a tenant without a chat queue
    with connect(f"{shop.ws}/chat/{LATE}/ws") as ws:
        token = hello(ws)["token"]
        say(ws, "Có ai không?")
        line_saying(ws, "Có ai không?")
        cid = UUID(shop.conversation(LATE, token)["id"])
        time.sleep(1)
        assert apps.conversations.get(LATE, cid)["queue_id"] is None  # no queue to go to

        queue = apps.queues.create(LATE, "Chat", [Channel.CHAT])  # the admin makes one
        time.sleep(2.5)  # "no chat queue" is not remembered longer than that
        say(ws, "Alo?")
        queued = wait_for(
            lambda: apps.conversations.get(LATE, cid), lambda c: c["queue_id"], timeout=10
        )
        assert queued["queue_id"] == str(queue)


def test_the_visitors_thread_loads_only_its_newest_conversation(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    apps = shop.site.apps
    conversations = apps.conversations
    chat = LiveChat(
        apps=lambda: apps,
        runner=cast(Any, None),
        board=cast(Any, None),
        access=cast(Any, None),
        secret="s3cret",
        hub=cast(Any, None),
        nats=cast(Any, None),
    )
    visitor, customer = f"v-{uuid4().hex}", uuid4()
    ids = []
    for n in range(3):  # generations 0 and 1 closed, 2 open
        cid, _ = conversations.receive_in_thread(
            SHOP, Channel.CHAT, visitor, customer, f"{visitor}.m{n}", f"message {n}"
        )
        assert cid == thread_conversation_id(SHOP, Channel.CHAT, visitor, n)
        ids.append(cid)
        if n < 2:
            conversations.close_conversation(SHOP, cid)

    loaded: list[UUID] = []
    get = conversations.repository.get

    def counting(aggregate_id: UUID, *args: Any, **kwargs: Any) -> Any:
        loaded.append(aggregate_id)
        return get(aggregate_id, *args, **kwargs)

    monkeypatch.setattr(conversations.repository, "get", counting)
    thread = chat.thread(SHOP, visitor)
    assert thread.conversation is not None and thread.conversation["id"] == str(ids[2])
    assert [line.text for line in thread.lines] == ["message 2"]
    assert thread.watch == {
        str(ids[2]),
        str(thread_conversation_id(SHOP, Channel.CHAT, visitor, 3)),
    }
    assert loaded == [ids[2]]  # the closed ones are not loaded, the open one once
    # From a generation known to exist (a socket's later look): the same, one load.
    loaded.clear()
    assert chat.thread(SHOP, visitor, thread.generation).conversation == thread.conversation
    assert loaded == [ids[2]]

    monkeypatch.undo()
    conversations.close_conversation(SHOP, ids[2])
    closed = chat.thread(SHOP, visitor, thread.generation)
    assert closed.conversation is None and closed.lines == []
    assert closed.watch == {str(thread_conversation_id(SHOP, Channel.CHAT, visitor, 3))}


def test_the_name_a_visitor_gives_with_their_first_message_is_the_customers(shop: Shop) -> None:
    with connect(f"{shop.ws}/chat/{SHOP}/ws") as ws:
        token = hello(ws)["token"]  # anonymous so far
        ws.send(json.dumps({"type": "say", "id": uuid4().hex, "text": "Xin chào", "name": "Cô Tư"}))
        assert frame(ws)["type"] == "accepted"
    conversation = shop.conversation(SHOP, token)
    customer = shop.site.apps.customers.get(SHOP, UUID(conversation["customer_id"]))
    assert customer["name"] == "Cô Tư"
