"""The demo tenant `cloudcc up --demo` seeds (deploy.demo.seed), on in-memory applications:
what it sets up, that seeding again creates nothing, and that a half-done seed is
completed rather than duplicated."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.facts import (
    ChatMessageReceived,
    FacebookMessageReceived,
    MessageFact,
    SmsReceived,
)
from connectors.handlers import FactApps, handle
from deploy.demo import (
    AGENTS,
    HOTLINE,
    TENANT,
    created_events,
    demo_customers,
    seed,
    speed_from_env,
)
from deploy.settings import SettingsError
from domain.agents import User
from domain.apps import DomainApps
from domain.calendars import is_open
from domain.conversations import thread_conversation_id
from domain.ivr import NodeKind
from domain.queues import Queue
from domain.vocabulary import Channel, Package, Priority, Role

NOW = datetime(2025, 6, 2, 3, 30, tzinfo=UTC)
RINGABLE = {"sip_phone", "ip_phone", "mobile"}


@pytest.fixture
def apps(transcoder_env: dict[str, str]) -> DomainApps:
    return DomainApps.build(transcoder_env)


def test_the_seed_is_a_whole_contact_center(apps: DomainApps) -> None:
    setup = seed(apps, NOW)

    tenant = apps.tenants.get(TENANT)
    assert tenant["package"] == Package.CONTACT_CENTER
    assert tenant["hotlines"] == [HOTLINE]
    office = apps.tenants.calendar(TENANT, "office")
    assert office.time_zone == "Asia/Ho_Chi_Minh"
    # Open whenever the demo is run.
    assert all(is_open(office, NOW + timedelta(hours=h)) for h in range(0, 24 * 7, 5))

    users: list[dict[str, Any]] = [apps.agents.get(TENANT, uid) for uid in setup.agents.values()]
    assert Counter(u["role"] for u in users) == {"agent": 12, "supervisor": 1, "tenant_admin": 1}
    takers = [u for u in users if u["takes_calls"]]
    assert all(u["endpoints"] and u["skills"] and u["departments"] for u in takers)
    # The switch rings an agent's first endpoint: a phone by its address, a browser by
    # the agent (routing names it webrtc:<agent id>).
    for u in takers:
        ring = u["endpoints"][0]
        assert ring["kind"] == "webrtc" or (ring["kind"] in RINGABLE and ring["address"]), u
    assert {e["kind"] for u in takers for e in u["endpoints"]} >= {"sip_phone", "webrtc", "mobile"}
    assert {s for u in takers for s in u["skills"]} == {"vi", "en", "billing", "technical"}
    assert Counter(u["presence"] for u in takers) == {"available": 11, "break": 2}
    assert any(u["pickup_groups"] for u in takers)
    admin = next(u for u in users if u["role"] == Role.TENANT_ADMIN)
    assert admin["presence"] == "offline"

    queues = {key: apps.queues.get(TENANT, qid) for key, qid in setup.queues.items()}
    assert {q["policy"] for q in queues.values()} == {
        "skill",
        "round_robin",
        "sticky",
        "department",
    }
    assert queues["billing"]["sticky_fallback"] == "skill"
    assert queues["technical"]["overflow"]["queue_id"] == str(setup.queues["general"])
    assert queues["general"]["no_agent"]["kind"] == "voicemail"
    assert queues["general"]["pickup_groups"]
    assert all(q["calendar_name"] == "office" and q["when_closed"] for q in queues.values())

    graph = apps.ivr.graph(TENANT, setup.ivr_flow)
    assert graph.version == setup.ivr_version == 1
    menu = graph.node(graph.node(graph.entry).next or "")
    assert menu.kind is NodeKind.MENU
    reached = {graph.node(target).queue_id for target in menu.choices.values()}
    assert reached - {None} == set(setup.queues.values())
    # The bridge walks the hotline's calls into the flow.
    route = {"kind": "ivr", "target_id": str(setup.ivr_flow)}
    assert tenant["hotline_routes"] == {HOTLINE: route}

    templates = [apps.templates.get(TENANT, tid) for tid in setup.templates.values()]
    assert {t["language"] for t in templates} == {"vi", "en"}
    greeting = apps.templates.render(
        TENANT, setup.templates["greet_vi"], {"customer": {"name": "An"}, "agent": {"name": "Lan"}}
    )
    assert "An" in greeting and "Lan" in greeting

    for queue_id in setup.queues.values():  # conversations in every queue run on it
        assert apps.queues.get(TENANT, queue_id)["sla_policy_id"] == str(setup.sla_policy)
    urgent = apps.sla.targets_for(TENANT, setup.sla_policy, Priority.URGENT, Channel.CALL)
    assert urgent.first_response_seconds == 900 and urgent.calendar_name == "office"

    customers: list[dict[str, Any]] = [apps.customers.get(TENANT, c.id) for c in setup.customers]
    assert len({c["name"] for c in customers}) == len(customers) == 50
    kinds = {kind for c in customers for kind, _ in c["identities"]}
    assert kinds == {"phone", "email", "facebook", "chat"}
    assert {c["language"] for c in customers} == {"vi", "en"}

    campaign = apps.campaigns.get(TENANT, setup.campaign)
    assert campaign["status"] == "scheduled" and campaign["channel"] == "sms"
    assert campaign["progress"]["pending"] == 20


def test_seeding_again_creates_nothing(apps: DomainApps) -> None:
    first = seed(apps, NOW)
    second = seed(apps, NOW + timedelta(days=1))
    assert second.created == {}
    assert (second.agents, second.queues, second.templates) == (
        first.agents,
        first.queues,
        first.templates,
    )
    assert (second.ivr_flow, second.sla_policy, second.campaign) == (
        first.ivr_flow,
        first.sla_policy,
        first.campaign,
    )
    assert len(created_events(apps.agents, User.Created)) == len(AGENTS)
    assert len(created_events(apps.queues, Queue.Created)) == 4


def test_seeding_again_routes_a_hotline_seeded_unrouted(
    apps: DomainApps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a demo seeded before the seed routed its hotline left it.
    with monkeypatch.context() as patched:
        patched.setattr(apps.tenants, "route_hotline", lambda *args: None)
        setup = seed(apps, NOW)
    assert apps.tenants.get(TENANT)["hotline_routes"] == {}
    seed(apps, NOW)
    route = {"kind": "ivr", "target_id": str(setup.ivr_flow)}
    assert apps.tenants.get(TENANT)["hotline_routes"] == {HOTLINE: route}


def test_a_half_done_seed_is_completed_not_duplicated(apps: DomainApps) -> None:
    # As if an earlier `up --demo` died after the tenant, one user and one queue.
    apps.tenants.register(TENANT, "Demo Telecom", Package.CONTACT_CENTER, [HOTLINE])
    lan = AGENTS[0]
    apps.agents.create_user(TENANT, lan.name, lan.login, lan.role, package=Package.CONTACT_CENTER)
    apps.queues.create(TENANT, "Hỗ trợ kỹ thuật")
    # Another tenant's demo-like names are not ours.
    apps.queues.create("acme", "Tổng đài chung")

    setup = seed(apps, NOW)

    assert "tenant" not in setup.created
    assert setup.created["users"] == len(AGENTS) - 1
    assert setup.created["queues"] == 3
    assert len(created_events(apps.queues, Queue.Created)) == 4


def test_the_customers_own_messages_find_them(apps: DomainApps) -> None:
    """A seeded customer writing on the channel they were registered through is that
    customer, not a new one: what keeps the demo's traffic from growing the CRM."""
    setup = seed(apps, NOW)
    fact_apps = FactApps(apps.customers, apps.conversations, apps.calls)
    by_kind = {c.primary[0]: c for c in reversed(setup.customers)}
    chat, phone, facebook = by_kind["chat"], by_kind["phone"], by_kind["facebook"]
    facts: list[MessageFact] = [
        ChatMessageReceived(
            fact_id="m1",
            tenant_id=TENANT,
            at=NOW,
            visitor_id=chat.primary[1],
            session_id="s1",
            text="Xin chào",
        ),
        SmsReceived(
            fact_id="m2",
            tenant_id=TENANT,
            at=NOW,
            from_number=phone.phone,
            hotline=HOTLINE,
            text="Toi muon kiem tra cuoc",
        ),
        FacebookMessageReceived(
            fact_id="m3",
            tenant_id=TENANT,
            at=NOW,
            page_id="p",
            sender_id=facebook.primary[1],
            thread_id="t",
            text="Hi",
        ),
    ]
    keys = [
        (Channel.CHAT, "s1"),
        (Channel.SMS, f"{HOTLINE}/{phone.phone}"),
        (Channel.MESSENGER, "p/t"),
    ]
    for fact, customer, (channel, key) in zip(facts, (chat, phone, facebook), keys, strict=True):
        assert handle(fact, fact_apps) == "applied"
        conversation = apps.conversations.get(TENANT, thread_conversation_id(TENANT, channel, key))
        assert conversation["customer_id"] == str(customer.id)
    assert demo_customers() == setup.customers  # the same people every run


def test_the_speed_comes_from_the_environment() -> None:
    assert speed_from_env({}) == 1.0
    assert speed_from_env({"CLOUDCC_DEMO_SPEED": "10"}) == 10.0
    for bad in ("fast", "0", "-1"):
        with pytest.raises(SettingsError):
            speed_from_env({"CLOUDCC_DEMO_SPEED": bad})


def test_every_demo_user_signs_in_with_the_printed_password(
    apps: DomainApps, tmp_path: Any
) -> None:
    from deploy.demo.seed import AGENTS, DEMO_PASSWORD, SUPERVISOR_LOGIN
    from projections.access import AccessReadModel
    from projections.replay import catch_up

    seed(apps, NOW)
    access = AccessReadModel(tmp_path / "access.sqlite")
    catch_up(access, apps)
    supervisor = access.sign_in(TENANT, SUPERVISOR_LOGIN, DEMO_PASSWORD)
    assert supervisor is not None and supervisor.role == "supervisor"
    assert access.sign_in(TENANT, SUPERVISOR_LOGIN, "not-the-password") is None
    assert access.sign_in(TENANT, AGENTS[0].login, DEMO_PASSWORD) is not None
    # A second seed sets nothing again (a password someone changed stays theirs).
    before = len(list(apps.agents.recorder.select_notifications(1, 100_000)))
    seed(apps, NOW)
    assert len(list(apps.agents.recorder.select_notifications(1, 100_000))) == before
