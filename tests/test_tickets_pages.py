"""Ticket pages (CT17, CC22) on a real `cloudcc up`: the list with its filters (SLA state
included) and orders, a ticket with its SLA due times and countdown, comments, status
moves the workflow allows and assigning — an agent only on their own or unassigned
tickets (comments aside), a supervisor or tenant admin on any, a ticket given only to an
active agent or supervisor — each tenant's tickets walled off."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from helpers import api_headers, running_instance, wait_for
from test_signin import Site, signed_in

from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.vocabulary import Channel, Package

HANOI, SAIGON = "tk-hanoi", "tk-saigon"
PASSWORD = "mật khẩu phiếu 2024"
HOUR = 3600


@dataclass
class Desk:
    site: Site
    an: UUID  # agent
    binh: UUID  # another agent
    chi: UUID  # supervisor
    dung: UUID  # tenant admin
    gone: UUID  # a deactivated agent
    calm: UUID  # under a generous SLA: on time
    risky: UUID  # warned almost at once: at risk
    late: UUID  # due a second after it was raised: breached
    plain: UUID  # no SLA at all, urgent
    customer: UUID
    chat: UUID  # linked to `calm`
    saigons: UUID  # the other tenant's ticket


@pytest.fixture(scope="module")
def desk(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    data = tmp_path_factory.mktemp("tickets")
    port = free_port()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        with running_instance(data, nats_url, port):
            url = f"http://127.0.0.1:{port}"
            api_headers(url, nats_url, HANOI)  # registers both tenants
            api_headers(url, nats_url, SAIGON)
            users = {}
            for login, name, role in (
                ("an", "An Nguyễn", "agent"),
                ("binh", "Bình Lê", "agent"),
                ("chi", "Chi Võ", "supervisor"),
                ("dung", "Dũng Phan", "tenant_admin"),
                ("giang", "Giang Đỗ", "agent"),
            ):
                users[login] = apps.agents.create_user(
                    HANOI, name, f"{login}@tk.vn", role, package=Package.CONTACT_CENTER
                )
                apps.agents.set_password(HANOI, users[login], PASSWORD)
            apps.agents.deactivate(HANOI, users["giang"], "left the company")
            sla = apps.sla
            generous = sla.create(HANOI, "Generous", 2 * HOUR, 24 * HOUR)
            nervous = sla.create(HANOI, "Nervous", 10_000, 20_000)
            sla.set_warning_ratio(HANOI, nervous, 0.0002)  # warned after 2 s
            strict = sla.create(HANOI, "Strict", 1, 2)
            customer = apps.customers.register(HANOI, "Chị Mai", [("phone", "0912000111")])
            chat = apps.conversations.start(HANOI, Channel.CHAT, customer)
            tickets = apps.tickets
            calm = tickets.raise_ticket(
                HANOI,
                "Đổi gói cước",
                kind="request",
                customer_id=customer,
                conversation_ids=[chat],
                sla_policy_id=generous,
            )
            tickets.assign(HANOI, calm, users["an"])
            risky = tickets.raise_ticket(
                HANOI, "Mạng chập chờn", kind="complaint", priority="high", sla_policy_id=nervous
            )
            tickets.assign(HANOI, risky, users["binh"])
            late = tickets.raise_ticket(
                HANOI, "Mất sóng cả ngày", kind="complaint", sla_policy_id=strict
            )
            tickets.assign(HANOI, late, users["an"])
            plain = tickets.raise_ticket(
                HANOI, "Góp ý giao diện", kind="feedback", priority="urgent"
            )
            saigons = tickets.raise_ticket(SAIGON, "Phiếu Sài Gòn", kind="question")
            yield Desk(
                Site(url, apps, data, nats_url),
                users["an"],
                users["binh"],
                users["chi"],
                users["dung"],
                users["giang"],
                calm,
                risky,
                late,
                plain,
                customer,
                chat,
                saigons,
            )
    finally:
        apps.close()


def token(page: httpx.Response) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def agent(desk: Desk, login: str = "an") -> AbstractContextManager[httpx.Client]:
    return signed_in(desk.site, HANOI, f"{login}@tk.vn", PASSWORD)


def listed(page: httpx.Response) -> list[str]:
    """The ticket ids of a list page, in its order."""
    return re.findall(r'<tr data-ticket="([0-9a-f-]{36})"', page.text)


def test_the_list_filters_by_status_priority_assignee_and_sla_state(desk: Desk) -> None:
    everyone = {str(t) for t in (desk.calm, desk.risky, desk.late, desk.plain)}
    with agent(desk) as http:

        def tickets(**params: str) -> httpx.Response:
            return http.get(f"/t/{HANOI}/tickets", params={**params, "lang": "en"})

        # The clocks start once the SLA timers have acted and the read model followed.
        page = wait_for(
            tickets,
            lambda r: set(listed(r)) == everyone and r.text.count('data-sla="none"') == 1,
        )
        assert page.status_code == 200 and "Tickets" in page.text
        assert str(desk.saigons) not in page.text and "Phiếu Sài Gòn" not in page.text
        assert "Chị Mai" in page.text and "An Nguyễn" in page.text

        def only(expected: set[UUID], **params: str) -> None:
            answer = wait_for(
                lambda: tickets(**params), lambda r: set(listed(r)) == {str(t) for t in expected}
            )
            assert answer.status_code == 200
            assert set(listed(answer)) == {str(t) for t in expected}, params

        only({desk.late}, sla="breached")
        only({desk.risky}, sla="at_risk")
        only({desk.calm}, sla="on_time")
        only({desk.plain}, sla="none")
        only({desk.plain}, priority="urgent")
        only({desk.calm, desk.late}, mine="1")
        only({desk.risky}, assignee=str(desk.binh))
        only({desk.plain}, assignee="none")
        only(set(), status="closed")
        only({desk.late}, sla="breached", mine="1")

        urgent_first = listed(tickets(order="priority"))
        assert urgent_first[:2] == [str(desk.plain), str(desk.risky)]
        newest_first = listed(tickets(order="created"))
        assert newest_first[0] == str(desk.plain) and newest_first[-1] == str(desk.calm)
        due_first = listed(tickets(order="due"))
        assert due_first[0] == str(desk.late) and due_first[-1] == str(desk.plain)

        for bogus in (
            {"status": "sleeping"},
            {"priority": "whenever"},
            {"sla": "late"},
            {"order": "random"},
            {"assignee": "nobody"},
            {"mine": "yes"},
        ):
            refused = tickets(**bogus)
            assert refused.status_code == 400, bogus
            assert "There is no" in refused.text or "takes the value 1" in refused.text
            assert not listed(refused)


def test_the_ticket_shows_its_sla_due_times_and_a_countdown(desk: Desk) -> None:
    with agent(desk) as http:
        page = wait_for(
            lambda: http.get(f"/t/{HANOI}/tickets/{desk.calm}", params={"lang": "en"}),
            lambda r: r.text.count("data-due=") == 2,
        )
        assert page.status_code == 200, page.text
        assert "Đổi gói cước" in page.text and "Chị Mai" in page.text
        assert f'href="/t/{HANOI}/customers/{desk.customer}"' in page.text
        assert f'href="/t/{HANOI}/inbox/{desk.chat}"' in page.text  # the linked conversation
        assert '<script src="/static/countdown.js"' in page.text
        raised = desk.site.apps.tickets.get(HANOI, desk.calm)
        assert raised["sla_policy_id"]
        dues = {
            metric: datetime.fromisoformat(due)
            for metric, due in re.findall(
                r'data-metric="(\w+)" data-state="running">.*?data-due="([^"]+)"',
                page.text,
                re.S,
            )
        }
        assert set(dues) == {"first_response", "resolution"}
        # Two hours and a day after the clocks started (a moment after it was raised).
        assert dues["resolution"] - dues["first_response"] == timedelta(hours=22)
        now = re.search(r'data-now="([^"]+)"', page.text)
        assert now
        left = dues["first_response"] - datetime.fromisoformat(now.group(1))
        assert timedelta(hours=1, minutes=55) < left <= timedelta(hours=2)
        assert "On time" in page.text

        breached = http.get(f"/t/{HANOI}/tickets/{desk.late}", params={"lang": "en"})
        assert 'data-state="breached"' in breached.text and "Breached" in breached.text
        assert "ticks" in httpx.get(f"{desk.site.url}/static/countdown.js").text

        # Waiting on the customer pauses the clocks: shown paused, nothing ticks.
        page = http.get(f"/t/{HANOI}/tickets/{desk.calm}")
        moved = http.post(
            f"/t/{HANOI}/tickets/{desk.calm}/status",
            data={"_csrf_token": token(page), "status": "pending"},
        )
        assert moved.status_code == 303
        paused = wait_for(
            lambda: http.get(f"/t/{HANOI}/tickets/{desk.calm}", params={"lang": "en"}),
            lambda r: r.text.count('data-state="paused"') == 2,
        )
        assert "data-due=" not in paused.text and "Paused" in paused.text
        assert "minutes left" in paused.text


def test_comment_solve_reopen_and_assign(desk: Desk) -> None:
    url = f"/t/{HANOI}/tickets/{desk.risky}"
    tickets = desk.site.apps.tickets

    def state() -> tuple[str, str, str | None]:
        found = tickets.get(HANOI, desk.risky)
        return found["status"], found["priority"], found["assignee"]

    # An, on Bình's ticket: comments (colleagues add what they know), nothing more.
    with agent(desk) as http:
        page = http.get(url, params={"lang": "en"})
        assert page.status_code == 200 and 'id="comment"' in page.text
        for form in ("status", "assign", "priority"):
            assert f"{url}/{form}" not in page.text, form
        key = re.search(r'name="key" value="([^"]+)"', page.text)
        assert key
        fields = {"_csrf_token": token(page), "key": key.group(1)}
        said = http.post(f"{url}/comment", data={**fields, "body": "Đã kiểm tra trạm phát"})
        assert said.status_code == 303 and said.headers["location"] == url
        again = http.post(f"{url}/comment", data={**fields, "body": "Đã kiểm tra trạm phát"})
        assert again.status_code == 303  # the same form twice: one comment
        before = state()
        assert before == ("new", "high", str(desk.binh))
        for form, value in (
            ("status", {"status": "resolved"}),
            ("priority", {"priority": "low"}),
            ("assign", {"agent": "me"}),
            ("assign", {"agent": ""}),
            ("assign", {"agent": str(desk.an)}),
        ):
            refused = http.post(f"{url}/{form}?lang=en", data={**fields, **value})
            assert refused.status_code == 403, (form, value)
            assert "Another agent works on this ticket" in refused.text
        assert state() == before

    # Bình, whose ticket it is: comments, solves, reopens, then gives it back.
    with agent(desk, "binh") as http:
        page = http.get(url)
        assert f"{url}/status" in page.text and f"{url}/priority" in page.text
        fields = {"_csrf_token": token(page), "key": str(uuid4())}
        public = http.post(
            f"{url}/comment", data={**fields, "body": "Chúng tôi đã xử lý", "public": "1"}
        )
        assert public.status_code == 303
        comments = tickets.get(HANOI, desk.risky)["comments"]
        assert [(c["body"], c["public"], c["author_id"]) for c in comments] == [
            ("Đã kiểm tra trạm phát", False, str(desk.an)),
            ("Chúng tôi đã xử lý", True, str(desk.binh)),
        ]
        shown = http.get(url, params={"lang": "en"}).text
        assert "Đã kiểm tra trạm phát" in shown and "To the customer" in shown
        empty = http.post(f"{url}/comment?lang=en", data={**fields, "body": "  "})
        assert empty.status_code == 400 and "The comment is empty." in empty.text

        solved = http.post(f"{url}/status", data={**fields, "status": "resolved"})
        assert solved.status_code == 303
        assert tickets.get(HANOI, desk.risky)["status"] == "resolved"
        page = http.get(url, params={"lang": "en"})
        assert 'data-to="open"' in page.text and "Reopen" in page.text
        assert 'data-to="pending"' not in page.text  # not a move the workflow allows
        refused = http.post(f"{url}/status?lang=en", data={**fields, "status": "pending"})
        assert refused.status_code == 409 and "cannot become" in refused.text
        bogus = http.post(f"{url}/status?lang=en", data={**fields, "status": "asleep"})
        assert bogus.status_code == 400 and "There is no status" in bogus.text
        reopened = http.post(f"{url}/status", data={**fields, "status": "open"})
        assert reopened.status_code == 303 and tickets.get(HANOI, desk.risky)["status"] == "open"
        # An agent gives a ticket to nobody else but themself.
        other = http.post(f"{url}/assign?lang=en", data={**fields, "agent": str(desk.an)})
        assert other.status_code == 403 and "for themselves only" in other.text
        assert state()[2] == str(desk.binh)
        back = http.post(f"{url}/assign", data={**fields, "agent": ""})
        assert back.status_code == 303 and state()[2] is None

    # Nobody's now: An takes it and makes it urgent.
    with agent(desk) as http:
        page = http.get(url)
        fields = {"_csrf_token": token(page)}
        mine = http.post(f"{url}/assign", data={**fields, "agent": "me"})
        assert mine.status_code == 303 and state()[2] == str(desk.an)
        up = http.post(f"{url}/priority", data={**fields, "priority": "urgent"})
        assert up.status_code == 303 and state()[1] == "urgent"

    # The supervisor gives it to whom they like — an active agent or supervisor only.
    with agent(desk, "chi") as http:
        page = http.get(url)
        assert f'<option value="{desk.binh}"' in page.text
        fields = {"_csrf_token": token(page)}
        for nobody in (str(uuid4()), str(desk.gone), "nope"):
            stranger = http.post(f"{url}/assign?lang=en", data={**fields, "agent": nobody})
            assert stranger.status_code == 400 and "There is no user" in stranger.text, nobody
        admin = http.post(f"{url}/assign?lang=en", data={**fields, "agent": str(desk.dung)})
        assert admin.status_code == 400 and "cannot be given tickets" in admin.text
        assert state()[2] == str(desk.an)
        given = http.post(f"{url}/assign", data={**fields, "agent": str(desk.binh)})
        assert given.status_code == 303 and state()[2] == str(desk.binh)
        down = http.post(f"{url}/priority", data={**fields, "priority": "high"})
        assert down.status_code == 303 and state()[1] == "high"

    # The tenant admin closes it, though it is Bình's; then nobody comments any more.
    with agent(desk, "dung") as http:
        page = http.get(url)
        closed = http.post(f"{url}/status", data={"_csrf_token": token(page), "status": "closed"})
        assert closed.status_code == 303 and state()[0] == "closed"
    with agent(desk) as http:
        page = http.get(url)
        late = http.post(
            f"{url}/comment?lang=en", data={"_csrf_token": token(page), "body": "Còn gì nữa?"}
        )
        assert late.status_code == 409 and "closed" in late.text


def test_another_tenants_or_an_unknown_ticket_is_not_found(desk: Desk) -> None:
    with agent(desk) as http:
        page = http.get(f"/t/{HANOI}/tickets")
        for tid in (desk.saigons, uuid4(), "nope"):
            answer = http.get(f"/t/{HANOI}/tickets/{tid}", params={"lang": "en"})
            assert answer.status_code == 404 and "This ticket was not found." in answer.text
            assert "Phiếu Sài Gòn" not in answer.text
            post = http.post(
                f"/t/{HANOI}/tickets/{tid}/comment",
                data={"_csrf_token": token(page), "body": "xin chào"},
            )
            assert post.status_code == 404
        assert desk.site.apps.tickets.get(SAIGON, desk.saigons)["comments"] == []
        assert http.get(f"/t/{SAIGON}/tickets").status_code == 403


def test_a_ticket_is_raised_from_the_customers_page(desk: Desk) -> None:
    with agent(desk, "binh") as http:
        profile = http.get(f"/t/{HANOI}/customers/{desk.customer}")
        assert f'action="/t/{HANOI}/tickets"' in profile.text
        fields = {
            "_csrf_token": token(profile),
            "title": "Khách muốn đổi số",
            "kind": "request",
            "priority": "high",
            "description": "Đổi sang số đẹp",
            "customer_id": str(desk.customer),
        }
        raised = http.post(f"/t/{HANOI}/tickets", data=fields)
        assert raised.status_code == 303
        ticket_id = raised.headers["location"].rsplit("/", 1)[1]
        ticket = desk.site.apps.tickets.get(HANOI, UUID(ticket_id))
        assert (ticket["title"], ticket["kind"], ticket["priority"], ticket["customer_id"]) == (
            "Khách muốn đổi số",
            "request",
            "high",
            str(desk.customer),
        )
        shown = http.get(raised.headers["location"])
        assert "Khách muốn đổi số" in shown.text and "Chị Mai" in shown.text

        for bad in (
            {"kind": "rumour"},
            {"priority": "someday"},
            {"customer_id": str(uuid4())},
            {"title": "   "},
        ):
            refused = http.post(f"/t/{HANOI}/tickets?lang=en", data={**fields, **bad})
            assert refused.status_code == 400, bad
            assert "There is no" in refused.text or "Not done" in refused.text
