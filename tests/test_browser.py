"""The pages in a real browser (headless Chromium, tests/browser.py) on a real
`cloudcc up` with the built-in switch: what people do, clicked, and what they see change
without reloading — the three journeys of step 4:

1. an agent signs in, a visitor's chat arrives live, the agent accepts it, replies with a
   template (the visitor's widget shows the reply) and raises a ticket from it;
2. a call pops up in the agent's browser phone, is answered, held and transferred to a
   colleague;
3. a supervisor sees an agent's state change on the live board and listens in on a call.

`CLOUDCC_SCREENSHOTS=1 python -m pytest tests/test_browser.py` also keeps pictures of the
main screens in docs/screenshots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from browser import chromium, need_chromium, screenshot
from helpers import panel, running_instance, wait_for
from test_signin import known

from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.calls import Call
from domain.templates import Language
from domain.vocabulary import Channel, EndpointKind, Package, RoutingPolicy

TENANT = "browser-hue"
HOTLINE = "02343900100"  # sales: Lan's calls
SUPPORT_LINE = "02343900200"  # support: Minh's calls
CUSTOMER_NUMBER = "+84905111222"
MINH_PHONE = "3102"
TUAN_PHONE = "3900"
PASSWORD = "mật khẩu trình duyệt"


@dataclass
class Floor:
    url: str
    data: Path
    nats_url: str
    apps: DomainApps
    lan: UUID  # agent: the browser phone, chats
    minh: UUID  # agent: a desk phone, takes transfers
    tuan: UUID  # supervisor: a desk phone
    customer: UUID


@pytest.fixture(scope="module")
def floor(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Floor]:
    need_chromium()
    data = tmp_path_factory.mktemp("browser")
    port = free_port()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        with running_instance(data, nats_url, port, CLOUDCC_WRAP_UP_SECONDS="0"):
            url = f"http://127.0.0.1:{port}"
            lines = [HOTLINE, SUPPORT_LINE]
            apps.tenants.register(TENANT, "Huế Shop", Package.CONTACT_CENTER, lines)
            # Each line's callers and the chats go to one agent (a skill only they
            # have), so every journey knows whose screen the work comes to.
            queues = {
                "sales": apps.queues.create(
                    TENANT, "Bán hàng", [Channel.CALL], RoutingPolicy.SKILL, {"sales": 1}
                ),
                "support": apps.queues.create(
                    TENANT, "Hỗ trợ", [Channel.CALL], RoutingPolicy.SKILL, {"support": 1}
                ),
                "chat": apps.queues.create(
                    TENANT, "Chat", [Channel.CHAT], RoutingPolicy.SKILL, {"chat": 1}
                ),
            }
            for queue in queues.values():
                apps.queues.set_waiting_rules(
                    TENANT, queue, ring_timeout_seconds=60, max_wait_seconds=900
                )
            # Chats are answered within 5 minutes and solved within 4 hours.
            sla = apps.sla.create(TENANT, "Chat: 5 phút / 4 giờ", 300, 4 * 3600)
            apps.queues.set_sla_policy(TENANT, queues["chat"], sla)
            apps.tenants.route_hotline(TENANT, HOTLINE, "queue", queues["sales"])
            apps.tenants.route_hotline(TENANT, SUPPORT_LINE, "queue", queues["support"])
            people = {}
            for login, name, role, kind, address, skills in (
                ("lan", "Lan Phạm", "agent", EndpointKind.WEBRTC, "", ("sales", "chat")),
                ("minh", "Minh Hồ", "agent", EndpointKind.SIP_PHONE, MINH_PHONE, ("support",)),
                ("tuan", "Tuấn Võ", "supervisor", EndpointKind.SIP_PHONE, TUAN_PHONE, ()),
            ):
                uid = apps.agents.create_user(
                    TENANT, name, f"{login}@hue.vn", role, package=Package.CONTACT_CENTER
                )
                apps.agents.set_password(TENANT, uid, PASSWORD)
                apps.agents.add_endpoint(TENANT, uid, kind, address)
                for one in skills:
                    apps.agents.set_skill(TENANT, uid, one, 3)
                people[login] = uid
            apps.agents.go_available(TENANT, people["minh"])
            customer = apps.customers.register(TENANT, "Chị Hằng", [("phone", CUSTOMER_NUMBER)])
            apps.templates.create(
                TENANT,
                "Chào khách",
                [Channel.CHAT],
                Language.VI,
                "Chào anh/chị, em là {{agent.name}}, em giúp được gì ạ?",
            )
            # The desk phones answer as people do, after a moment.
            for phone in (MINH_PHONE, TUAN_PHONE):
                asyncio.run(
                    panel(nats_url, "party", {"address": phone, "party": {"answer_after": 0.3}})
                )
            yield Floor(
                url, data, nats_url, apps, people["lan"], people["minh"], people["tuan"], customer
            )
    finally:
        apps.close()


def sign_in(browser: Any, floor: Floor, login: str) -> Any:
    """A new browser context (its own cookies) signed in as `login`; its page."""
    # Failed sign-ins are throttled: sign in once the access read model knows the user.
    wait_for(lambda: known(floor, TENANT, f"{login}@hue.vn"), lambda k: k is not False)  # type: ignore[arg-type]
    page = browser.new_context(locale="vi-VN", viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{floor.url}/signin")
    page.fill("input[name=organisation]", TENANT)
    page.fill("input[name=login]", f"{login}@hue.vn")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{floor.url}/t/{TENANT}/")
    return page


def switch(floor: Floor, verb: str, request: dict[str, Any]) -> dict[str, Any]:
    """The switch's panel, asked from a thread of its own: Playwright's sync API keeps
    an event loop running on the test's thread."""
    with ThreadPoolExecutor(1) as aside:
        return aside.submit(asyncio.run, panel(floor.nats_url, verb, request)).result()


def presence(floor: Floor, user: UUID) -> str:
    return str(floor.apps.agents.get(TENANT, user)["presence"])


def go_available(page: Any) -> None:
    page.goto(page.url.split("/t/")[0] + f"/t/{TENANT}/inbox")
    button = page.locator("#my-status button[value=available]")
    if button.count():
        button.click()


def test_1_a_visitors_chat_arrives_live_is_answered_with_a_template_and_becomes_a_ticket(
    floor: Floor,
) -> None:
    with chromium() as browser:
        agent = sign_in(browser, floor, "lan")
        go_available(agent)
        wait_for(lambda: presence(floor, floor.lan), lambda p: p == "available")
        agent.goto(f"{floor.url}/t/{TENANT}/inbox")
        agent.locator("#live:not([hidden])").wait_for()

        # A visitor on the tenant's site: the one script tag's widget.
        visitor = browser.new_context(locale="vi-VN").new_page()
        visitor.goto(f"{floor.url}/site/{TENANT}")
        visitor.locator("#cloudcc-chat .button").click()
        say = visitor.locator("#cloudcc-chat .say textarea")
        say.wait_for(state="visible")
        visitor.locator("#cloudcc-chat .say input[name=name]").fill("Chị Mai")
        say.fill("Shop ơi, áo này còn size M không?")
        say.press("Enter")
        visitor.locator("#cloudcc-chat .line.visitor:not(.sending)").wait_for()

        # The router offers the chat to Lan: it shows on her open page, not reloaded.
        offer = agent.locator("#offer")
        offer.wait_for(timeout=20_000)
        assert "áo này còn size M" in offer.inner_text() and "Chị Mai" in offer.inner_text()
        screenshot(agent, "inbox-offer")
        offer.locator("button[type=submit]", has_text="Nhận").click()
        agent.wait_for_url(f"{floor.url}/t/{TENANT}/inbox/*")
        agent.locator("#messages", has_text="áo này còn size M").wait_for()

        # A reply from the template, the agent's name filled in.
        agent.select_option("#template-picker select[name=template]", label="Chào khách (vi)")
        agent.click("#template-picker button[type=submit]")
        body = agent.locator("#reply textarea[name=body]")
        assert "em là Lan Phạm" in body.input_value()
        agent.click("#reply button[type=submit]")
        agent.locator("#messages", has_text="em là Lan Phạm").wait_for()
        visitor.locator("#cloudcc-chat .line.agent", has_text="em là Lan Phạm").wait_for()
        screenshot(agent, "conversation")
        screenshot(visitor, "chat-widget")

        # A ticket from the conversation, linked to it.
        agent.locator("#raise-ticket").evaluate("f => f.closest('details').open = true")
        agent.fill("#raise-ticket input[name=title]", "Hỏi size áo")
        agent.click("#raise-ticket button[type=submit]")
        link = agent.locator("#tickets a", has_text="Hỏi size áo")
        link.wait_for()
        link.click()
        agent.wait_for_url(f"{floor.url}/t/{TENANT}/tickets/*")
        assert "Hỏi size áo" in agent.inner_text("main")
        # The chat queue's SLA came with it: the resolution's due time counts down.
        countdown = agent.locator(".countdown[data-due]").last
        countdown.wait_for()
        assert countdown.inner_text().strip(), "the countdown does not tick"
        screenshot(agent, "ticket")
        ticket_id = UUID(agent.url.rsplit("/", 1)[1])
        ticket = floor.apps.tickets.get(TENANT, ticket_id)
        assert ticket["title"] == "Hỏi size áo" and ticket["conversation_ids"]

        # Done with the chat: resolved, Lan is free for the next customer.
        agent.go_back()
        agent.click("#resolve button[type=submit]")
        wait_for(lambda: presence(floor, floor.lan), lambda p: p == "available")
        assert presence(floor, floor.lan) == "available"


def test_2_a_call_pops_up_in_the_browser_phone_is_held_and_transferred(floor: Floor) -> None:
    with chromium() as browser:
        agent = sign_in(browser, floor, "lan")
        go_available(agent)
        agent.check("#phone-softphone")
        agent.wait_for_selector("#phone-softphone-state:not(:empty)")
        wait_for(lambda: presence(floor, floor.lan), lambda p: p == "available")

        placed = switch(floor, "call", {"caller_number": CUSTOMER_NUMBER, "hotline": HOTLINE})
        call_id = str(Call.create_id(TENANT, placed["channel_id"]))
        # The pop: who calls, known by number, a link to her profile.
        agent.wait_for_selector(f"#phone-call a[href='/t/{TENANT}/customers/{floor.customer}']")
        assert "Chị Hằng" in agent.inner_text("#phone-call")
        screenshot(agent, "phone-pop")
        agent.click("#phone-call form[data-phone-action=answer] button")
        agent.wait_for_selector("#phone[data-state=answered]")
        agent.click("#phone-call form[data-phone-action=hold] button")
        agent.wait_for_selector("#phone[data-state=held]")
        call = floor.apps.calls.get(TENANT, UUID(call_id))
        assert call["held"]

        agent.select_option("#phone-call form[data-phone-action=transfer] select", str(floor.minh))
        agent.click("#phone-call form[data-phone-action=transfer] button[type=submit]")
        # Her leg is put down once Minh has the caller: the phone says so.
        agent.wait_for_selector("#phone[data-state=transferred], #phone[data-state=ended]")

        def minh_on_it(c: dict[str, Any]) -> bool:
            return any(
                leg["user_id"] == str(floor.minh) and leg["answered_at"] and not leg["ended_at"]
                for leg in c["legs"]
            )

        moved = wait_for(lambda: floor.apps.calls.get(TENANT, UUID(call_id)), minh_on_it, 20)
        assert minh_on_it(moved), moved
        switch(floor, "hangup", {"channel_id": placed["channel_id"], "cause": "normal_clearing"})
        agent.uncheck("#phone-softphone")


def test_3_a_supervisor_sees_an_agents_state_change_and_listens_in(floor: Floor) -> None:
    with chromium() as browser:
        board = sign_in(browser, floor, "tuan")
        board.goto(f"{floor.url}/t/{TENANT}/board")
        board.locator("#live:not([hidden])").wait_for()  # the event stream is open
        row = f"#agents tr[data-agent='{floor.minh}']"

        minh = sign_in(browser, floor, "minh")
        go_available(minh)
        board.locator(f"{row}[data-presence=available]").wait_for()
        minh.fill("#my-status input[name=reason]", "Ăn trưa")
        minh.click("#my-status button[value=break]")
        # The board was not reloaded: its script swapped the tables in on the change.
        board.locator(f"{row}[data-presence=break]").wait_for()
        assert "Ăn trưa" in board.locator(row).inner_text()
        minh.click("#my-status button[value=available]")
        board.locator(f"{row}[data-presence=available]").wait_for()

        # A call to Minh's desk phone; the supervisor listens in from the board.
        placed = switch(floor, "call", {"caller_number": "+84914000111", "hotline": SUPPORT_LINE})
        call_id = str(Call.create_id(TENANT, placed["channel_id"]))
        call_row = board.locator(f"#calls tr[data-call='{call_id}'][data-state=talking]")
        call_row.wait_for(timeout=20_000)
        screenshot(board, "board")
        call_row.locator("button[value=listen]").click()
        board.wait_for_url(f"{floor.url}/t/{TENANT}/board?sent=listen")

        def supervisor_leg(c: dict[str, Any]) -> dict[str, Any] | None:
            return next(
                (
                    leg
                    for leg in c["legs"]
                    if leg["user_id"] == str(floor.tuan)
                    and leg["supervision"] == "listen"
                    and not leg["ended_at"]
                ),
                None,
            )

        call = wait_for(
            lambda: floor.apps.calls.get(TENANT, UUID(call_id)), lambda c: bool(supervisor_leg(c))
        )
        leg = supervisor_leg(call)
        assert leg is not None
        # Tuấn hears the caller; the caller does not hear him.
        assert switch(floor, "hears", {"listener": leg["leg_id"], "speaker": placed["channel_id"]})[
            "hears"
        ]
        assert not switch(
            floor, "hears", {"listener": placed["channel_id"], "speaker": leg["leg_id"]}
        )["hears"]
        switch(floor, "hangup", {"channel_id": placed["channel_id"], "cause": "normal_clearing"})
        board.goto(f"{floor.url}/t/{TENANT}/overview")
        board.locator("svg").first.wait_for()
        screenshot(board, "overview")
