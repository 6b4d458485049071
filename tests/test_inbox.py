"""The agent's inbox (CT2, CC3) on a real `cloudcc up`: conversations across channels, one
opened beside its customer's timeline, replies (from a template too), notes, tags,
resolving, and the agent's own status — each tenant's and each agent's walled off."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from uuid import UUID

import httpx
import pytest
from helpers import api_headers, running_instance, wait_for
from test_signin import Site, signed_in

from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.templates import Language
from domain.vocabulary import Channel, Package

HANOI, SAIGON = "inbox-hanoi", "inbox-saigon"
PASSWORD = "mật khẩu hộp thư 2024"


@dataclass
class Floor:
    site: Site
    an: UUID  # agent
    binh: UUID  # another agent
    mai: UUID  # supervisor
    customer: UUID
    chat: UUID  # An's chat with the customer
    email: UUID  # An's email thread with the same customer
    binhs: UUID  # Binh's conversation
    saigons: UUID  # a conversation of the other tenant


@pytest.fixture(scope="module")
def floor(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Floor]:
    data = tmp_path_factory.mktemp("inbox")
    port = free_port()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        with running_instance(data, nats_url, port):
            url = f"http://127.0.0.1:{port}"
            api_headers(url, nats_url, HANOI)  # registers both tenants
            api_headers(url, nats_url, SAIGON)
            package = Package.CONTACT_CENTER
            users = {}
            for login, name, role in (
                ("an", "An Nguyễn", "agent"),
                ("binh", "Bình Lê", "agent"),
                ("mai", "Mai Trần", "supervisor"),
            ):
                users[login] = apps.agents.create_user(
                    HANOI, name, f"{login}@inbox.vn", role, package=package
                )
                apps.agents.set_password(HANOI, users[login], PASSWORD)
            convs = apps.conversations
            customer = apps.customers.register(HANOI, "Chị Hoa", [("email", "hoa@example.vn")])
            chat = convs.start(HANOI, Channel.CHAT, customer, thread_key="session-1")
            convs.receive_message(HANOI, chat, "m-1", "Cho em hỏi giá gói cước")
            convs.assign(HANOI, chat, users["an"])
            email = convs.start(HANOI, Channel.EMAIL, customer, subject="Hoá đơn tháng 5")
            convs.receive_message(HANOI, email, "e-1", "Hoá đơn tháng 5 bị sai")
            convs.assign(HANOI, email, users["an"])
            binhs = convs.start(HANOI, Channel.SMS, customer)
            convs.receive_message(HANOI, binhs, "s-1", "Tin nhắn cho Bình")
            convs.assign(HANOI, binhs, users["binh"])
            other = apps.customers.register(SAIGON, "Anh Tư")
            saigons = convs.start(SAIGON, Channel.CHAT, other)
            convs.receive_message(SAIGON, saigons, "x-1", "Sài Gòn")
            apps.templates.create(
                HANOI,
                "Chào hỏi",
                [Channel.CHAT, Channel.EMAIL],
                Language.VI,
                "Xin chào {{customer.name}}, em là {{agent.name}}.",
            )
            apps.templates.create(
                SAIGON, "Của Sài Gòn", [Channel.CHAT], Language.VI, "Không phải của Hà Nội"
            )
            yield Floor(
                Site(url, apps, data, nats_url),
                users["an"],
                users["binh"],
                users["mai"],
                customer,
                chat,
                email,
                binhs,
                saigons,
            )
    finally:
        apps.close()


def token(page: httpx.Response) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def agent(floor: Floor, login: str = "an") -> AbstractContextManager[httpx.Client]:
    return signed_in(floor.site, HANOI, f"{login}@inbox.vn", PASSWORD)


def test_the_agent_sees_their_conversations_across_channels_and_filters_them(
    floor: Floor,
) -> None:
    with agent(floor) as http:
        home = http.get(f"/t/{HANOI}/")
        assert f'href="/t/{HANOI}/inbox"' in home.text  # a real link now
        inbox = wait_for(
            lambda: http.get(f"/t/{HANOI}/inbox?lang=en"),
            lambda r: str(floor.chat) in r.text and str(floor.email) in r.text,
        )
        assert inbox.status_code == 200 and "Conversation inbox" in inbox.text
        assert f'href="/t/{HANOI}/inbox/{floor.chat}"' in inbox.text
        assert "Chị Hoa" in inbox.text and "Cho em hỏi giá gói cước" in inbox.text
        assert str(floor.binhs) not in inbox.text  # Bình's, not An's
        assert str(floor.saigons) not in inbox.text

        chats = http.get(f"/t/{HANOI}/inbox", params={"channel": "chat"})
        assert str(floor.chat) in chats.text and str(floor.email) not in chats.text
        pending = http.get(f"/t/{HANOI}/inbox", params={"status": "pending"})
        assert pending.status_code == 200 and str(floor.chat) not in pending.text

        for bogus in ({"channel": "pigeon"}, {"status": "sleeping"}):
            refused = http.get(f"/t/{HANOI}/inbox", params={**bogus, "lang": "en"})
            assert refused.status_code == 400, bogus
            assert "There is no" in refused.text
        # An agent may not look into another agent's inbox.
        assert http.get(f"/t/{HANOI}/inbox", params={"agent": str(floor.binh)}).status_code == 403


def test_a_supervisor_looks_at_an_agents_inbox(floor: Floor) -> None:
    with agent(floor, "mai") as http:
        theirs = wait_for(
            lambda: http.get(f"/t/{HANOI}/inbox", params={"agent": str(floor.binh)}),
            lambda r: str(floor.binhs) in r.text,
        )
        assert theirs.status_code == 200 and str(floor.chat) not in theirs.text
        assert http.get(f"/t/{HANOI}/inbox", params={"agent": "nobody"}).status_code == 400
        assert http.get(f"/t/{HANOI}/inbox/{floor.binhs}").status_code == 200


def test_the_agent_opens_a_conversation_with_the_customers_timeline(floor: Floor) -> None:
    with agent(floor) as http:
        opened = wait_for(
            lambda: http.get(f"/t/{HANOI}/inbox/{floor.chat}?lang=en"),
            lambda r: "Hoá đơn tháng 5 bị sai" in r.text,  # the email, in the timeline
        )
        assert opened.status_code == 200, opened.text
        assert "Cho em hỏi giá gói cước" in opened.text and "Chị Hoa" in opened.text
        timeline = opened.text.split('id="timeline"')[1]
        assert f'data-source="{floor.email}"' in timeline  # across channels
        assert f'data-source="{floor.chat}"' in timeline
        assert "Chào hỏi" in opened.text  # the tenant's template for chat
        assert "Của Sài Gòn" not in opened.text  # never another tenant's


def test_the_agent_replies_notes_tags_and_resolves(floor: Floor) -> None:
    apps = floor.site.apps
    url = f"/t/{HANOI}/inbox/{floor.chat}"
    with agent(floor) as http:
        opened = http.get(url)
        key = re.search(r'name="key" value="([^"]+)"', opened.text)
        assert key
        fields = {"_csrf_token": token(opened), "key": key.group(1)}
        sent = http.post(f"{url}/reply", data={**fields, "body": "Gói cơ bản 200.000đ ạ"})
        assert sent.status_code == 303 and sent.headers["location"] == url
        # The same form posted again (a double click) sends nothing more.
        again = http.post(f"{url}/reply", data={**fields, "body": "Gói cơ bản 200.000đ ạ"})
        assert again.status_code == 303
        outbound = [
            m
            for m in apps.conversations.get(HANOI, floor.chat)["messages"]
            if m["direction"] == "outbound"
        ]
        assert [(m["body"], m["agent_id"]) for m in outbound] == [
            ("Gói cơ bản 200.000đ ạ", str(floor.an))
        ]
        assert "Gói cơ bản 200.000đ ạ" in http.get(url).text

        # Bad replies: the page again with the reason, never a 500.
        empty = http.post(f"{url}/reply?lang=en", data={**fields, "body": "   "})
        assert empty.status_code == 400 and "The reply is empty." in empty.text
        huge = http.post(f"{url}/reply?lang=en", data={**fields, "body": "x" * 100_001})
        assert huge.status_code == 400 and "Too long" in huge.text

        # From a template: rendered for this customer and this agent, then sent.
        picker = http.get(url).text
        template = re.search(r'<option value="([0-9a-f-]{36})"[^>]*>Chào hỏi', picker)
        assert template
        filled = http.get(url, params={"template": template.group(1)})
        assert "Xin chào Chị Hoa, em là An Nguyễn." in filled.text
        assert f'name="template_id" value="{template.group(1)}"' in filled.text
        key2 = re.search(r'name="key" value="([^"]+)"', filled.text)
        assert key2
        from_template = {
            "_csrf_token": token(filled),
            "key": key2.group(1),
            "template_id": template.group(1),
            "body": "Xin chào Chị Hoa, em là An Nguyễn.",
        }
        assert http.post(f"{url}/reply", data=from_template).status_code == 303
        last = apps.conversations.get(HANOI, floor.chat)["messages"][-1]
        assert last["template_id"] == template.group(1) and last["body"].startswith("Xin chào")
        assert http.get(url, params={"template": str(floor.saigons)}).status_code == 404

        note = http.post(f"{url}/note", data={"_csrf_token": fields["_csrf_token"], "body": "VIP"})
        assert note.status_code == 303
        tag = http.post(f"{url}/tag", data={"_csrf_token": fields["_csrf_token"], "tag": "Giá"})
        assert tag.status_code == 303
        assert (
            http.post(f"{url}/tag", data={"_csrf_token": fields["_csrf_token"]}).status_code == 400
        )
        shown = http.get(url).text
        assert 'class="note">VIP<' in shown and 'class="tag">giá<' in shown

        done = http.post(f"{url}/resolve", data={"_csrf_token": fields["_csrf_token"]})
        assert done.status_code == 303
        assert apps.conversations.get(HANOI, floor.chat)["status"] == "resolved"
        resolved = wait_for(
            lambda: http.get(f"/t/{HANOI}/inbox", params={"status": "resolved"}),
            lambda r: str(floor.chat) in r.text,
        )
        assert 'data-status="resolved"' in resolved.text
        # Open before resolved: the email, still open, comes first.
        listed = http.get(f"/t/{HANOI}/inbox").text
        assert listed.index(str(floor.email)) < listed.index(f'data-conversation="{floor.chat}"')


def test_the_agent_takes_a_break_with_a_reason_and_comes_back(floor: Floor) -> None:
    apps = floor.site.apps
    apps.agents.add_endpoint(HANOI, floor.an, "sip_phone", "an-desk")
    with agent(floor) as http:
        inbox = http.get(f"/t/{HANOI}/inbox?lang=en")
        assert 'id="my-status" data-presence="offline"' in inbox.text
        csrf = token(inbox)
        back = f"/t/{HANOI}/inbox/{floor.email}"
        ready = http.post(
            f"/t/{HANOI}/status", data={"_csrf_token": csrf, "presence": "available", "back": back}
        )
        assert ready.status_code == 303 and ready.headers["location"] == back
        assert apps.agents.get(HANOI, floor.an)["presence"] == "available"
        no_reason = http.post(f"/t/{HANOI}/status", data={"_csrf_token": csrf, "presence": "break"})
        assert no_reason.status_code == 400
        lunch = {"_csrf_token": csrf, "presence": "break", "reason": "Ăn trưa", "back": "//evil"}
        gone = http.post(f"/t/{HANOI}/status", data=lunch)
        assert gone.status_code == 303 and gone.headers["location"] == f"/t/{HANOI}/inbox"
        shown = http.get(f"/t/{HANOI}/inbox")
        assert 'data-presence="break"' in shown.text and "Ăn trưa" in shown.text
        assert apps.agents.get(HANOI, floor.an)["break_reason"] == "Ăn trưa"
        odd = http.post(f"/t/{HANOI}/status", data={"_csrf_token": csrf, "presence": "asleep"})
        assert odd.status_code == 400
        http.post(f"/t/{HANOI}/status", data={"_csrf_token": csrf, "presence": "available"})
        assert apps.agents.get(HANOI, floor.an)["presence"] == "available"


def test_other_agents_and_other_tenants_conversations_stay_closed(floor: Floor) -> None:
    with agent(floor) as http:
        csrf = token(http.get(f"/t/{HANOI}/inbox"))
        theirs = http.get(f"/t/{HANOI}/inbox/{floor.binhs}?lang=en")
        assert theirs.status_code == 403 and "not assigned to you" in theirs.text
        post = http.post(
            f"/t/{HANOI}/inbox/{floor.binhs}/reply", data={"_csrf_token": csrf, "body": "hi"}
        )
        assert post.status_code == 403
        assert not [
            m
            for m in floor.site.apps.conversations.get(HANOI, floor.binhs)["messages"]
            if m["direction"] == "outbound"
        ]
        # Another tenant's conversation is as unknown as one that never was.
        for unknown in (floor.saigons, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
            answer = http.get(f"/t/{HANOI}/inbox/{unknown}?lang=en")
            assert answer.status_code == 404 and "not found" in answer.text, unknown
            assert "Sài Gòn" not in answer.text
        tag = http.post(
            f"/t/{HANOI}/inbox/{floor.saigons}/tag", data={"_csrf_token": csrf, "tag": "x"}
        )
        assert tag.status_code == 404
        assert http.get(f"/t/{SAIGON}/inbox").status_code == 403  # the guard's wall
        # Without the CSRF token nothing is written.
        url = f"/t/{HANOI}/inbox/{floor.email}"
        assert http.post(f"{url}/note", data={"body": "no token"}).status_code == 403
        assert http.post(f"/t/{HANOI}/status", data={"presence": "available"}).status_code == 403
        assert not floor.site.apps.conversations.get(HANOI, floor.email)["notes"]
    with floor.site.client() as anonymous:
        assert anonymous.get(f"/t/{HANOI}/inbox").headers["location"] == "/signin"
