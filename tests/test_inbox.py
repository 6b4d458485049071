"""The agent's inbox (CT2, CC3) on a real `cloudcc up`: conversations across channels, one
opened beside its customer's timeline, replies (from a template too), notes, tags,
resolving, and the agent's own status — each tenant's and each agent's walled off; the
list and a conversation pushed live, the SLA filter, hand-overs to agents and queues,
tickets raised from or linked to a conversation (CT17), and the end of wrap-up."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from uuid import UUID, uuid4

import httpx
import pytest
from helpers import api_headers, running_instance, wait_for
from test_signin import Site, signed_in

from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.routing import WorkKind
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
    cuong: UUID  # an agent for the SLA and wrap-up tests
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
                ("cuong", "Cường Phạm", "agent"),
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
                users["cuong"],
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
            # The email, in the timeline; the template, from its read model.
            lambda r: "Hoá đơn tháng 5 bị sai" in r.text and "Chào hỏi" in r.text,
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
        picker = wait_for(lambda: http.get(url), lambda r: "Chào hỏi" in r.text).text
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
        # A template id that is not one offered here is sent without it: another tenant's,
        # one for another channel, one that does not exist.
        theirs = apps.templates.create(
            SAIGON, "Sài Gòn chào", [Channel.CHAT], Language.VI, "Chào từ Sài Gòn"
        )
        sms_only = apps.templates.create(
            HANOI, "Chỉ SMS", [Channel.SMS], Language.VI, "Tin nhắn ngắn"
        )
        for n, foreign in enumerate((theirs, sms_only, uuid4())):
            posted = {
                "_csrf_token": fields["_csrf_token"],
                "key": str(uuid4()),
                "template_id": str(foreign),
                "body": f"Trả lời {n}",
            }
            assert http.post(f"{url}/reply", data=posted).status_code == 303
            last = apps.conversations.get(HANOI, floor.chat)["messages"][-1]
            assert last["body"] == f"Trả lời {n}" and last["template_id"] is None, foreign

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


def changes(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """The changes a server-sent event stream pushes, the greeting left out."""
    for line in lines:
        if line.startswith("data:"):
            change: dict[str, str] = json.loads(line[5:])
            if change["kind"] != "hello":
                yield change


def test_a_message_arriving_is_pushed_to_the_open_list_and_conversation(floor: Floor) -> None:
    convs = floor.site.apps.conversations
    with agent(floor) as http:
        page = http.get(f"/t/{HANOI}/inbox")
        assert f'data-live="/t/{HANOI}/inbox/live"' in page.text
        with http.stream("GET", f"/t/{HANOI}/inbox/live") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))  # connected
            # Bình's conversation changes first: not An's to hear of.
            convs.receive_message(HANOI, floor.binhs, f"s-{uuid4()}", "Bình ơi")
            new = convs.start(HANOI, Channel.MESSENGER, floor.customer)
            convs.receive_message(HANOI, new, "fb-1", "Shop ơi còn hàng không?")
            convs.assign(HANOI, new, floor.an)
            # (An's agent board row changes too, for the status bar: not the list's.)
            pushed = next(c for c in changes(lines) if c["readmodel"] != "agent_board")
        assert pushed == {"readmodel": "inbox", "kind": "agent_inbox", "key": str(floor.an)}
        rows = wait_for(lambda: http.get(f"/t/{HANOI}/inbox/rows"), lambda r: str(new) in r.text)
        assert rows.status_code == 200 and "Shop ơi còn hàng không?" in rows.text
        assert "<html" not in rows.text and str(floor.binhs) not in rows.text

        # An opened conversation hears of its own messages, and shows them when fetched.
        url = f"/t/{HANOI}/inbox/{new}"
        assert f'data-live="/t/{HANOI}/inbox/live?conversation={new}"' in http.get(url).text
        with http.stream("GET", f"/t/{HANOI}/inbox/live", params={"conversation": str(new)}) as s:
            lines = s.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
            convs.receive_message(HANOI, floor.email, f"e-{uuid4()}", "Another one of An's")
            convs.receive_message(HANOI, new, "fb-2", "Size M nhé")
            pushed = next(c for c in changes(lines) if c["readmodel"] != "agent_board")
        assert pushed == {"readmodel": "inbox", "kind": "conversation", "key": str(new)}
        assert "Size M nhé" in http.get(f"{url}/messages").text

        # The stream is the session's tenant's and the user's own.
        live = f"/t/{HANOI}/inbox/live"
        assert http.get(live, params={"conversation": str(floor.saigons)}).status_code == 404
        assert http.get(live, params={"conversation": str(floor.binhs)}).status_code == 403
        assert http.get(live, params={"agent": str(floor.binh)}).status_code == 403
        assert http.get(f"/t/{SAIGON}/inbox/live").status_code == 403
        assert http.get(f"/t/{HANOI}/inbox/rows", params={"sla": "late"}).status_code == 400
        assert http.get(f"/t/{HANOI}/inbox/{floor.saigons}/messages").status_code == 404


def test_the_list_filters_by_sla_state(floor: Floor) -> None:
    apps = floor.site.apps
    made = {}
    # Targets in seconds: breached at once, warned at once, and an hour to go.
    for name, first_response, ratio in (
        ("late", 1, 0.5),
        ("risky", 1000, 0.001),
        ("calm", 3600, 0.8),
    ):
        policy = apps.sla.create(HANOI, f"SLA {name}", first_response, 7200)
        apps.sla.set_warning_ratio(HANOI, policy, ratio)
        queue = apps.queues.create(HANOI, f"Hàng {name}", [Channel.SMS])
        apps.queues.set_sla_policy(HANOI, queue, policy)
        made[name] = apps.conversations.start(HANOI, Channel.SMS, floor.customer, queue_id=queue)
        apps.conversations.assign(HANOI, made[name], floor.cuong)
    with agent(floor, "cuong") as http:
        for state, name in (("breached", "late"), ("at_risk", "risky"), ("on_time", "calm")):
            listed = wait_for(
                lambda state=state: http.get(f"/t/{HANOI}/inbox", params={"sla": state}),
                lambda r, name=name: str(made[name]) in r.text,
            )
            assert listed.status_code == 200
            assert f'data-sla="{state}"' in listed.text
            assert [n for n in made if str(made[n]) in listed.text] == [name], state
        everything = http.get(f"/t/{HANOI}/inbox?lang=en")
        assert all(str(c) in everything.text for c in made.values())
        assert "Breached" in everything.text and "At risk" in everything.text
        refused = http.get(f"/t/{HANOI}/inbox", params={"sla": "soon", "lang": "en"})
        assert refused.status_code == 400 and "There is no SLA state" in refused.text
        opened = http.get(f"/t/{HANOI}/inbox/{made['late']}")
        assert 'data-sla="breached"' in opened.text


def test_a_conversation_is_handed_over_to_an_agent_or_a_queue(floor: Floor) -> None:
    apps = floor.site.apps
    convs = apps.conversations
    handed = convs.start(HANOI, Channel.CHAT, floor.customer)
    convs.receive_message(HANOI, handed, "h-1", "Chuyển giúp em sang kế toán")
    convs.assign(HANOI, handed, floor.an)
    url = f"/t/{HANOI}/inbox/{handed}"
    with agent(floor) as http:
        opened = wait_for(lambda: http.get(url), lambda r: f"agent:{floor.binh}" in r.text)
        csrf = token(opened)
        assert f"agent:{floor.an}" not in opened.text  # not to themselves

        def hand(to: str) -> httpx.Response:
            return http.post(f"{url}/handover?lang=en", data={"_csrf_token": csrf, "to": to})

        for bogus in ("pigeon", "agent:nobody", f"team:{floor.binh}", ""):
            assert hand(bogus).status_code == 400, bogus
        assert hand(f"agent:{uuid4()}").status_code == 404
        assert hand(f"queue:{uuid4()}").status_code == 404
        saigon_agent = apps.agents.create_user(
            SAIGON, "Tư Sài Gòn", "tu@inbox.vn", "agent", package=Package.CONTACT_CENTER
        )
        assert hand(f"agent:{saigon_agent}").status_code == 404  # another tenant's
        assert convs.get(HANOI, handed)["assignee"] == str(floor.an)
        # Bình's conversation is not An's to hand over.
        theirs = http.post(
            f"/t/{HANOI}/inbox/{floor.binhs}/handover",
            data={"_csrf_token": csrf, "to": f"agent:{floor.an}"},
        )
        assert theirs.status_code == 403

        moved = hand(f"agent:{floor.binh}")
        assert moved.status_code == 303 and moved.headers["location"] == f"/t/{HANOI}/inbox"
        assert convs.get(HANOI, handed)["assignee"] == str(floor.binh)
        gone = wait_for(lambda: http.get(f"/t/{HANOI}/inbox"), lambda r: str(handed) not in r.text)
        assert str(handed) not in gone.text
        assert http.get(url).status_code == 403
    with agent(floor, "binh") as http:
        arrived = wait_for(lambda: http.get(f"/t/{HANOI}/inbox"), lambda r: str(handed) in r.text)
        assert str(handed) in arrived.text
    # The supervisor hands anyone's: to a queue, then out of it to an agent.
    queue = apps.queues.create(HANOI, "Kế toán", [Channel.CHAT])
    with agent(floor, "mai") as http:
        opened = wait_for(lambda: http.get(url), lambda r: f"queue:{queue}" in r.text)
        csrf = token(opened)
        queued = http.post(f"{url}/handover", data={"_csrf_token": csrf, "to": f"queue:{queue}"})
        assert queued.status_code == 303 and queued.headers["location"] == url
        now = convs.get(HANOI, handed)
        assert now["queue_id"] == str(queue) and now["assignee"] is None
        left = wait_for(
            lambda: http.get(f"/t/{HANOI}/inbox", params={"agent": str(floor.binh)}),
            lambda r: str(handed) not in r.text,
        )
        assert str(handed) not in left.text
        back = http.post(f"{url}/handover", data={"_csrf_token": csrf, "to": f"agent:{floor.binh}"})
        assert back.status_code == 303
        assert convs.get(HANOI, handed)["assignee"] == str(floor.binh)


def test_a_ticket_is_raised_from_a_conversation_or_linked_to_one_of_the_customer(
    floor: Floor,
) -> None:
    apps = floor.site.apps
    tickets = apps.tickets
    url = f"/t/{HANOI}/inbox/{floor.email}"
    with agent(floor) as http:
        opened = http.get(url)
        csrf = token(opened)
        assert 'value="Hoá đơn tháng 5"' in opened.text  # the subject, as the title

        def post(path: str, **fields: str) -> httpx.Response:
            return http.post(f"{url}/{path}?lang=en", data={"_csrf_token": csrf, **fields})

        form = {"title": "Hoá đơn tháng 5 sai", "kind": "complaint", "priority": "high"}
        assert post("ticket", **{**form, "title": "  "}).status_code == 400
        assert post("ticket", **{**form, "kind": "rant"}).status_code == 400
        assert post("ticket", **{**form, "priority": "asap"}).status_code == 400
        assert post("ticket", **{**form, "title": "x" * 201}).status_code == 400
        raised = post("ticket", **form, description="Khách báo tính tiền hai lần")
        assert raised.status_code == 303 and raised.headers["location"] == url
        shown = wait_for(lambda: http.get(url), lambda r: "Hoá đơn tháng 5 sai" in r.text)
        found = re.search(
            rf'href="/t/{HANOI}/tickets/([0-9a-f-]{{36}})">Hoá đơn tháng 5 sai', shown.text
        )
        assert found, shown.text
        ticket = tickets.get(HANOI, UUID(found.group(1)))
        assert ticket["customer_id"] == str(floor.customer)
        assert ticket["conversation_ids"] == [str(floor.email)]
        assert (ticket["priority"], ticket["kind"]) == ("high", "complaint")
        assert ticket["description"] == "Khách báo tính tiền hai lần"
        # The customer's timeline has it too.
        timeline = wait_for(
            lambda: http.get(url).text.split('id="timeline"')[1],
            lambda t: f'data-source="{ticket["id"]}"' in t,
        )
        assert f'data-source="{ticket["id"]}"' in timeline

        # Linking to an existing ticket of the customer.
        earlier = tickets.raise_ticket(
            HANOI, "Đổi gói cước", kind="request", customer_id=floor.customer
        )
        stranger = apps.customers.register(HANOI, "Người khác")
        strangers = tickets.raise_ticket(
            HANOI, "Không liên quan", kind="question", customer_id=stranger
        )
        other_other = apps.customers.register(SAIGON, "Khách Sài Gòn")
        saigons = tickets.raise_ticket(
            SAIGON, "Của Sài Gòn", kind="question", customer_id=other_other
        )
        offered = wait_for(lambda: http.get(url), lambda r: f'value="{earlier}"' in r.text)
        assert f'value="{strangers}"' not in offered.text
        assert post("link", ticket=str(saigons)).status_code == 404  # another tenant's
        assert post("link", ticket=str(uuid4())).status_code == 404
        assert post("link", ticket="not-a-ticket").status_code == 400
        other = post("link", ticket=str(strangers))
        assert other.status_code == 400 and "another customer" in other.text
        assert post("link", ticket=str(earlier)).status_code == 303
        assert tickets.get(HANOI, earlier)["conversation_ids"] == [str(floor.email)]
        assert tickets.get(SAIGON, saigons)["conversation_ids"] == []
        both = wait_for(lambda: http.get(url), lambda r: "Đổi gói cước</a>" in r.text)
        assert f'href="/t/{HANOI}/tickets/{earlier}"' in both.text
        # A closed ticket takes no more links.
        closed = tickets.raise_ticket(HANOI, "Đã xong", kind="request", customer_id=floor.customer)
        tickets.change_status(HANOI, closed, "closed")
        assert post("link", ticket=str(closed)).status_code == 409
        # Another agent's conversation is not An's to raise tickets from.
        assert (
            http.post(
                f"/t/{HANOI}/inbox/{floor.binhs}/ticket", data={"_csrf_token": csrf, **form}
            ).status_code
            == 403
        )
        assert (
            http.post(
                f"/t/{HANOI}/inbox/{floor.saigons}/link",
                data={"_csrf_token": csrf, "ticket": str(earlier)},
            ).status_code
            == 404
        )


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


def test_the_agent_ends_wrap_up(floor: Floor) -> None:
    apps = floor.site.apps
    cuong = floor.cuong
    apps.agents.add_endpoint(HANOI, cuong, "sip_phone", "cuong-desk")
    with agent(floor, "cuong") as http:
        csrf = token(http.get(f"/t/{HANOI}/inbox"))
        not_yet = http.post(
            f"/t/{HANOI}/status", data={"_csrf_token": csrf, "presence": "end_wrap_up"}
        )
        assert not_yet.status_code == 409  # not in wrap-up
        apps.agents.go_available(HANOI, cuong)
        work = str(uuid4())
        apps.agents.start_interaction(HANOI, cuong, work)
        apps.agents.end_interaction(HANOI, cuong, work, wrap_up=True)
        shown = http.get(f"/t/{HANOI}/inbox?lang=en")
        assert 'data-presence="wrap_up"' in shown.text and "End wrap-up" in shown.text
        done = http.post(
            f"/t/{HANOI}/status", data={"_csrf_token": csrf, "presence": "end_wrap_up"}
        )
        assert done.status_code == 303
        assert apps.agents.get(HANOI, cuong)["presence"] == "available"
        apps.agents.go_offline(HANOI, cuong)


def test_a_conversation_offered_to_the_agent_is_accepted_or_declined(floor: Floor) -> None:
    apps = floor.site.apps
    convs, people = apps.conversations, apps.agents
    package = Package.CONTACT_CENTER
    dung = people.create_user(HANOI, "Dũng Võ", "dung@inbox.vn", "agent", package=package)
    em = people.create_user(HANOI, "Em Hà", "em@inbox.vn", "agent", package=package)
    for login, user in (("dung", dung), ("em", em)):
        people.set_password(HANOI, user, PASSWORD)
        people.add_endpoint(HANOI, user, "sip_phone", f"{login}-desk")
        people.join_pickup_group(HANOI, user, "quay-chat")
    # Served by its pickup group only: the other tests' agents are not asked.
    queue = apps.queues.create(HANOI, "Tư vấn chat", [Channel.CHAT, Channel.EMAIL])
    apps.queues.add_pickup_group(HANOI, queue, "quay-chat")
    apps.queues.set_waiting_rules(HANOI, queue, 300, 3600)
    customer = apps.customers.register(HANOI, "Anh Khoa", [("email", "khoa@example.vn")])
    live, status = f"/t/{HANOI}/inbox/live", f"/t/{HANOI}/inbox/status"

    def fragment(http: httpx.Client) -> httpx.Response:
        return http.get(status, params={"lang": "en", "back": f"/t/{HANOI}/inbox"})

    with agent(floor, "dung") as http, agent(floor, "em") as other:
        inbox = http.get(f"/t/{HANOI}/inbox?lang=en")
        assert f'data-status="{status}?back=%2Ft%2F{HANOI}%2Finbox"' in inbox.text
        csrf = token(inbox)

        # Their own status, posted: the stream tells the page, which fetches the bar again.
        with http.stream("GET", live) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
            ready = http.post(
                f"/t/{HANOI}/status", data={"_csrf_token": csrf, "presence": "available"}
            )
            assert ready.status_code == 303
            pushed = next(changes(lines))
        assert pushed == {"readmodel": "agent_board", "kind": "agent", "key": str(dung)}
        bar = wait_for(lambda: fragment(http), lambda r: 'data-presence="available"' in r.text)
        assert bar.status_code == 200 and "<html" not in bar.text and 'id="offer"' not in bar.text

        # A chat put in the queue rings Dũng, the one available member: the card shows it.
        with http.stream("GET", live) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
            first = convs.start(HANOI, Channel.CHAT, customer, thread_key="offer-1")
            convs.receive_message(HANOI, first, "o-1", "Cho em đổi gói cước với ạ")
            convs.move_to_queue(HANOI, first, queue)
            pushed = next(changes(lines))
            assert pushed == {"readmodel": "agent_board", "kind": "agent", "key": str(dung)}
            ringing = people.get(HANOI, dung)
            assert (ringing["presence"], ringing["conversation_id"]) == ("ringing", str(first))
            offered = wait_for(
                lambda: fragment(http), lambda r: 'id="offer"' in r.text and "Anh Khoa" in r.text
            )
            assert 'data-presence="ringing"' in offered.text
            assert f'data-conversation="{first}"' in offered.text
            assert 'data-channel="chat"' in offered.text and "Chat" in offered.text
            assert "Cho em đổi gói cước với ạ" in offered.text
            assert 'class="offer-age" data-seconds="' in offered.text
            assert f'action="/t/{HANOI}/inbox/{first}/accept"' in offered.text
            assert f'action="/t/{HANOI}/inbox/{first}/decline"' in offered.text
            assert "Accept" in offered.text and "Decline" in offered.text
            # On the list page too; never on another agent's bar.
            assert f"/inbox/{first}/accept" in http.get(f"/t/{HANOI}/inbox").text
            assert 'id="offer"' not in fragment(other).text

            def accept(who: httpx.Client, cid: object, key: str) -> httpx.Response:
                url = f"/t/{HANOI}/inbox/{cid}/accept?lang=en"
                return who.post(url, data={"_csrf_token": key})

            not_offered = accept(http, floor.binhs, csrf)
            assert not_offered.status_code == 409 and "not being offered" in not_offered.text
            assert convs.get(HANOI, floor.binhs)["assignee"] == str(floor.binh)
            others_csrf = token(other.get(f"/t/{HANOI}/inbox"))
            assert accept(other, first, others_csrf).status_code == 409  # rings Dũng, not Em
            for unknown in (floor.saigons, uuid4(), "not-a-uuid"):
                assert accept(http, unknown, csrf).status_code == 404, unknown
                declined = http.post(
                    f"/t/{HANOI}/inbox/{unknown}/decline", data={"_csrf_token": csrf}
                )
                assert declined.status_code == 404, unknown
            decline_binhs = f"/t/{HANOI}/inbox/{floor.binhs}/decline"
            assert http.post(decline_binhs, data={"_csrf_token": csrf}).status_code == 409
            # Without the CSRF token nothing is written.
            assert http.post(f"/t/{HANOI}/inbox/{first}/accept").status_code == 403
            assert http.post(f"/t/{HANOI}/inbox/{first}/decline").status_code == 403
            assert convs.get(HANOI, first)["assignee"] is None
            assert people.get(HANOI, dung)["presence"] == "ringing"

            # Another agent's row changes: not Dũng's to hear of; his accepting is.
            people.go_available(HANOI, em)
            taken = accept(http, first, csrf)
            assert taken.status_code == 303
            assert taken.headers["location"] == f"/t/{HANOI}/inbox/{first}"
            assert next(changes(lines))["key"] == str(dung)
        assert convs.get(HANOI, first)["assignee"] == str(dung)
        on_it = wait_for(lambda: people.get(HANOI, dung), lambda a: a["presence"] != "ringing")
        assert (on_it["presence"], on_it["conversation_id"]) == ("on_call", str(first))
        listed = wait_for(lambda: http.get(f"/t/{HANOI}/inbox"), lambda r: str(first) in r.text)
        assert f'data-conversation="{first}"' in listed.text
        opened = http.get(taken.headers["location"])
        assert opened.status_code == 200 and "Cho em đổi gói cước với ạ" in opened.text
        assert 'id="offer"' not in opened.text
        assert accept(http, first, csrf).status_code == 409  # no longer ringing

        # An email rings Em, the one free now; Dũng's chat over, he is free again.
        with other.stream("GET", live) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
            second = convs.start(HANOI, Channel.EMAIL, customer, subject="Hợp đồng")
            convs.receive_message(HANOI, second, "o-2", "Gửi giúp em hợp đồng")
            convs.move_to_queue(HANOI, second, queue)
            pushed = next(changes(lines))
        assert pushed == {"readmodel": "agent_board", "kind": "agent", "key": str(em)}
        card = wait_for(
            lambda: fragment(other), lambda r: f'data-conversation="{second}"' in r.text
        )
        assert 'data-channel="email"' in card.text and "Gửi giúp em hợp đồng" in card.text
        convs.resolve(HANOI, first)
        wait_for(lambda: people.get(HANOI, dung), lambda a: a["presence"] == "available")
        assert people.get(HANOI, dung)["presence"] == "available"

        # Em declines: back to the list, no longer ringing; the queue offers it to Dũng.
        declined = other.post(
            f"/t/{HANOI}/inbox/{second}/decline", data={"_csrf_token": others_csrf}
        )
        assert declined.status_code == 303
        assert declined.headers["location"] == f"/t/{HANOI}/inbox"
        moved = wait_for(lambda: people.get(HANOI, dung), lambda a: a["presence"] == "ringing")
        assert moved["conversation_id"] == str(second)

        # The routing history says Em declined it (not that it rang out), and Dũng was
        # offered it (the router may record his offer before Em's rejection is in).
        def routed() -> list[tuple[str, str | None]]:
            history = apps.routing.history(HANOI, WorkKind.CONVERSATION, str(second))
            return [(h["decision"], h.get("agent_id")) for h in history]

        expected = [("Offered", str(em)), ("OfferRejected", str(em)), ("Offered", str(dung))]
        history = wait_for(routed, lambda h: sorted(h) == sorted(expected))
        assert history[0] == expected[0] and sorted(history) == sorted(expected)
        assert people.get(HANOI, em)["presence"] == "available"
        assert convs.get(HANOI, second)["assignee"] is None
        after = wait_for(lambda: fragment(other), lambda r: 'data-presence="available"' in r.text)
        assert 'id="offer"' not in after.text
        assert (
            f'data-conversation="{second}"'
            in wait_for(
                lambda: fragment(http), lambda r: f'data-conversation="{second}"' in r.text
            ).text
        )

    # Nothing left ringing for the tests after this one.
    convs.resolve(HANOI, second)
    wait_for(lambda: people.get(HANOI, dung), lambda a: a["presence"] == "available")
    for user in (dung, em):
        people.go_offline(HANOI, user)
