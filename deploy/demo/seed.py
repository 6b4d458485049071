"""Tenant "demo", as `cloudcc up --demo` seeds it.

`seed(apps)` sets up tenant "demo" (Contact Center package, one hotline, a 24/7 business
calendar "office" in Asia/Ho_Chi_Minh): 12 agents, a supervisor and a tenant admin with
skills, departments, a pickup group and endpoints the switch rings; four queues, one per
routing policy, with waiting rules and fallbacks; an IVR menu leading to them, which the
hotline leads into; an SLA policy; reply templates in Vietnamese and English; 50
customers; an SMS campaign. It only creates what is missing, found by name in the event
store (the aggregates' ids are random), so a second `up --demo`, or one after a crash
half-way through, duplicates nothing. Customers get the ids the channel connectors derive
from an identity (`Customers.register_for_identity`), so their own messages find them.
"""

from __future__ import annotations

import random
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.agents import User
from domain.apps import DomainApps
from domain.base import TenantApplication
from domain.calendars import BusinessCalendar, OpeningHours, Weekday
from domain.campaigns import Campaign, Window
from domain.customers import identity_customer_id, normal_identity
from domain.ivr import IvrFlow, Node, NodeKind, NotPublished
from domain.queues import Fallback, Queue
from domain.sla import SlaPolicy
from domain.templates import Language, ReplyTemplate
from domain.tenants import TenantAlreadyRegistered
from domain.vocabulary import Channel, EndpointKind, Package, Priority, Role, RoutingPolicy

TENANT = "demo"
TENANT_NAME = "Demo Telecom"
# AX1: a hotline is a mobile number; the domain refuses 1900/1800 service numbers.
HOTLINE = "+84888686868"
HOTLINE_DISPLAY = "0888 68 68 68"
CALENDAR = "office"
FACEBOOK_PAGE = "104857600686868"

# Open around the clock, so the demo is alive whenever it is run; the queues still name
# it, as a tenant with business hours would (CC11).
OFFICE = BusinessCalendar(
    time_zone="Asia/Ho_Chi_Minh",
    hours=tuple(OpeningHours(day=day, start=time(0), end=time(0)) for day in Weekday),
)

CARE, TECH, BILLING, INTERNATIONAL = "Chăm sóc khách hàng", "Kỹ thuật", "Thanh toán", "Quốc tế"
SWITCHBOARD = "Trực tổng đài"  # the pickup group that alone takes the general queue (AX15)


@dataclass(frozen=True)
class AgentSpec:
    name: str
    login: str
    role: Role
    extension: str | None
    endpoint: tuple[EndpointKind, str] | None
    skills: dict[str, int] = field(default_factory=dict)
    departments: tuple[str, ...] = ()
    pickup_groups: tuple[str, ...] = ()
    on_break: str | None = None  # starts on a break with this reason


def _agent(
    name: str,
    login: str,
    extension: str,
    endpoint: tuple[EndpointKind, str],
    skills: dict[str, int],
    departments: tuple[str, ...],
    *,
    switchboard: bool = False,
    on_break: str | None = None,
    role: Role = Role.AGENT,
) -> AgentSpec:
    return AgentSpec(
        name,
        f"{login}@demo.vn",
        role,
        extension,
        endpoint,
        skills,
        departments,
        (SWITCHBOARD,) if switchboard else (),
        on_break,
    )


_SIP, _IP, _WEB, _MOBILE = (
    EndpointKind.SIP_PHONE,
    EndpointKind.IP_PHONE,
    EndpointKind.WEBRTC,
    EndpointKind.MOBILE,
)

# The demo's people sign in at /signin with organisation "demo", their login and this.
DEMO_PASSWORD = "demo-cloudcc"
SUPERVISOR_LOGIN = "ha.trinh@demo.vn"

# fmt: off
AGENTS: tuple[AgentSpec, ...] = (
    _agent("Nguyễn Thị Lan", "lan.nguyen", "101", (_SIP, "101@sip.demo.vn"), {"vi": 9, "billing": 6}, (CARE,), switchboard=True),
    _agent("Trần Văn Minh", "minh.tran", "102", (_WEB, ""), {"vi": 8, "technical": 8}, (TECH,), switchboard=True),
    _agent("Lê Thị Hương", "huong.le", "103", (_WEB, ""), {"vi": 9, "en": 6, "billing": 8}, (BILLING,)),
    _agent("Phạm Quốc Bảo", "bao.pham", "104", (_SIP, "104@sip.demo.vn"), {"vi": 7, "technical": 9}, (TECH,)),
    _agent("Hoàng Thị Mai", "mai.hoang", "105", (_WEB, ""), {"vi": 8, "en": 8}, (INTERNATIONAL,)),
    _agent("Vũ Đức Anh", "anh.vu", "106", (_MOBILE, "0912000106"), {"vi": 7, "en": 7, "technical": 6}, (INTERNATIONAL, TECH)),
    _agent("Đặng Thu Trang", "trang.dang", "107", (_SIP, "107@sip.demo.vn"), {"vi": 9, "billing": 9}, (BILLING,)),
    _agent("Bùi Văn Hùng", "hung.bui", "108", (_MOBILE, "0913000108"), {"vi": 8, "technical": 7}, (TECH,), on_break="Ăn trưa"),
    _agent("Đỗ Thị Ngọc", "ngoc.do", "109", (_WEB, ""), {"vi": 9, "en": 5}, (CARE,), switchboard=True),
    _agent("Ngô Minh Tuấn", "tuan.ngo", "110", (_IP, "110@sip.demo.vn"), {"vi": 8, "en": 9}, (INTERNATIONAL,)),
    _agent("Dương Thị Thảo", "thao.duong", "111", (_WEB, ""), {"vi": 9, "billing": 5, "technical": 4}, (CARE,), switchboard=True, on_break="Họp nhóm"),
    _agent("Lý Hoàng Nam", "nam.ly", "112", (_SIP, "112@sip.demo.vn"), {"vi": 7, "technical": 6, "billing": 4}, (CARE,), switchboard=True),
    _agent("Trịnh Thu Hà", "ha.trinh", "200", (_WEB, ""), {"vi": 10, "en": 7, "billing": 7, "technical": 7}, (CARE,), switchboard=True, role=Role.SUPERVISOR),
    AgentSpec("Phan Văn Đức", "duc.phan@demo.vn", Role.TENANT_ADMIN, None, None),
)
# fmt: on


@dataclass(frozen=True)
class QueueSpec:
    key: str
    name: str
    channels: tuple[Channel, ...]
    policy: RoutingPolicy
    skills: dict[str, int] = field(default_factory=dict)
    department: str | None = None
    sticky_fallback: RoutingPolicy | None = None
    ring_timeout: int = 20
    max_wait: int = 120
    overflow: str | None = None  # another queue's key, or "voicemail"
    no_agent_voicemail: bool = False
    pickup_group: str | None = None
    closed_message: str = "Tổng đài đang ngoài giờ làm việc, vui lòng gọi lại sau."


VOICEMAIL_VI = "Tổng đài viên đang bận, quý khách vui lòng để lại lời nhắn sau tiếng bíp."
VOICEMAIL_EN = "All our agents are busy. Please leave a message after the tone."

QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(
        "general",
        "Tổng đài chung",
        (Channel.CALL, Channel.CHAT, Channel.MESSENGER, Channel.FACEBOOK_COMMENT),
        RoutingPolicy.ROUND_ROBIN,
        ring_timeout=15,
        max_wait=180,
        overflow="voicemail",
        no_agent_voicemail=True,
        pickup_group=SWITCHBOARD,
    ),
    QueueSpec(
        "technical",
        "Hỗ trợ kỹ thuật",
        (Channel.CALL, Channel.CHAT, Channel.EMAIL),
        RoutingPolicy.SKILL,
        skills={"technical": 5, "vi": 5},
        overflow="general",
    ),
    QueueSpec(
        "billing",
        "Cước và thanh toán",
        (Channel.CALL, Channel.CHAT, Channel.EMAIL, Channel.SMS),
        RoutingPolicy.STICKY,
        skills={"billing": 4},
        sticky_fallback=RoutingPolicy.SKILL,
        overflow="general",
    ),
    QueueSpec(
        "english",
        "English support",
        (Channel.CALL, Channel.CHAT, Channel.EMAIL, Channel.MESSENGER),
        RoutingPolicy.DEPARTMENT,
        department=INTERNATIONAL,
        max_wait=90,
        overflow="voicemail",
        no_agent_voicemail=True,
        closed_message="Our support line is closed, please call again later.",
    ),
)

IVR_NAME = "Tổng đài chính"
# The menu's DTMF keys and the queue each leads to (a QueueSpec key each, so every queue
# takes calls from the menu); VOICEMAIL_KEY leaves a voicemail.
IVR_KEYS = {"1": "technical", "2": "billing", "3": "english", "0": "general"}
VOICEMAIL_KEY = "9"
MENU_TIMEOUT, MENU_ATTEMPTS = 6, 3  # seconds to press a key; plays, then to_general


def _ivr_nodes(queues: dict[str, UUID]) -> list[Node]:
    return [
        Node(
            "greeting",
            NodeKind.PLAYBACK,
            prompt="Demo Telecom xin kính chào quý khách. Cuộc gọi có thể được ghi âm để "
            "nâng cao chất lượng dịch vụ.",
            next="menu",
        ),
        Node(
            "menu",
            NodeKind.MENU,
            prompt="Hỗ trợ kỹ thuật, bấm phím 1. Cước và thanh toán, bấm phím 2. For "
            "English, press 3. Để lại lời nhắn, bấm phím 9. Gặp tổng đài viên, bấm phím 0.",
            choices={
                **{key: f"to_{queue}" for key, queue in IVR_KEYS.items()},
                VOICEMAIL_KEY: "voicemail",
            },
            timeout_seconds=MENU_TIMEOUT,
            max_attempts=MENU_ATTEMPTS,
            fallback="to_general",
        ),
        *(Node(f"to_{key}", NodeKind.QUEUE, queue_id=queues[key]) for key in IVR_KEYS.values()),
        Node("voicemail", NodeKind.VOICEMAIL, prompt="Vui lòng để lại lời nhắn sau tiếng bíp."),
    ]


SLA_NAME = "Cam kết dịch vụ tiêu chuẩn"
# (priority, channel) -> (first response, resolution), in seconds on the office calendar.
SLA_ROWS: dict[tuple[Priority | None, Channel | None], tuple[int, int]] = {
    (Priority.URGENT, None): (900, 4 * 3600),
    (Priority.HIGH, None): (1800, 8 * 3600),
    (None, Channel.CHAT): (120, 3600),
    (None, Channel.MESSENGER): (300, 2 * 3600),
    (None, Channel.EMAIL): (2 * 3600, 24 * 3600),
}
SLA_DEFAULT = (4 * 3600, 48 * 3600)

_WRITTEN = (
    Channel.CHAT,
    Channel.EMAIL,
    Channel.SMS,
    Channel.MESSENGER,
    Channel.FACEBOOK_COMMENT,
)
TEMPLATES: dict[str, tuple[str, Language, str]] = {
    "greet_vi": (
        "Chào hỏi",
        Language.VI,
        "Dạ em chào anh/chị {{customer.name}}, em là {{agent.name}} của {{tenant.name}}. "
        "Em có thể hỗ trợ gì cho anh/chị ạ?",
    ),
    "greet_en": (
        "Greeting",
        Language.EN,
        "Hello {{customer.name}}, this is {{agent.name}} from {{tenant.name}}. "
        "How can I help you today?",
    ),
    "received_vi": (
        "Đã tiếp nhận yêu cầu",
        Language.VI,
        "Dạ em đã ghi nhận yêu cầu của anh/chị. Bộ phận liên quan sẽ phản hồi trong vòng "
        "24 giờ; anh/chị cũng có thể gọi {{hotline}} ạ.",
    ),
    "received_en": (
        "Request received",
        Language.EN,
        "Thank you, we have logged your request. The team will get back to you within "
        "24 hours; you can also call us on {{hotline}}.",
    ),
    "bye_vi": (
        "Kết thúc",
        Language.VI,
        "Cảm ơn anh/chị đã liên hệ {{tenant.name}}. Chúc anh/chị một ngày tốt lành!",
    ),
    "bye_en": (
        "Closing",
        Language.EN,
        "Thank you for contacting {{tenant.name}}. Have a great day!",
    ),
}

CAMPAIGN_NAME = "Khuyến mãi gói 5G tháng này"


# ---------------------------------------------------------------------- customers
@dataclass(frozen=True)
class DemoCustomer:
    """A seeded customer. `primary` is the identity they were registered with: the one
    their own messages come from, so those find them (calls carry only a number)."""

    name: str
    language: str
    phone: str
    primary: tuple[str, str]
    email: str | None = None
    facebook: str | None = None
    chat: str | None = None
    company: str | None = None
    address: str | None = None

    @property
    def id(self) -> UUID:
        return identity_customer_id(TENANT, *normal_identity(*self.primary))

    @property
    def identities(self) -> list[tuple[str, str]]:
        found = [("phone", self.phone), ("email", self.email)]
        found += [("facebook", self.facebook), ("chat", self.chat)]
        return [(kind, value) for kind, value in found if value is not None]


_FAMILY = "Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ Võ Đặng Bùi Đỗ Hồ Ngô Dương Lý".split()
_MIDDLE = ("Văn Hữu Đức Minh Quốc Thanh Gia".split(), "Thị Ngọc Thu Thanh Kim Phương Bảo".split())
_GIVEN = (
    "An Bình Cường Dũng Hải Hiếu Khoa Long Phúc Quân Sơn Thắng Toàn Việt".split(),
    "Anh Chi Dung Giang Hạnh Hoa Linh My Nhung Oanh Quỳnh Thủy Uyên Vy".split(),
)
# English speakers, by their place in the list: spread over every kind of identity.
_FOREIGN = {
    2: "Emma Wilson",
    4: "John Miller",
    7: "Kim Min-jun",
    12: "Sophie Laurent",
    18: "Tanaka Yuki",
    25: "David Park",
}
_MOBILE_PREFIXES = "090 091 093 094 096 097 098 032 033 034 035 036 037 038 039 070 076 077 078 079 081 082 083 084 085 086 088 089".split()
_MAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "fpt.vn", "vnn.vn")
_COMPANIES = (
    "Công ty TNHH Minh Phát",
    "Cửa hàng Hoa Sen",
    "Nhà hàng Phố Cổ",
    "Công ty CP Đầu tư Sao Việt",
    "Khách sạn Biển Xanh",
    "Trường mầm non Ánh Dương",
)
_CITIES = ("Hà Nội", "TP. Hồ Chí Minh", "Đà Nẵng", "Hải Phòng", "Cần Thơ", "Nha Trang")
# One in ten per kind, spread: 20 phone, 10 email, 10 Facebook, 10 chat.
_PRIMARY = ("phone", "phone", "email", "facebook", "chat", "phone", "email", "facebook", "chat", "phone")  # fmt: skip


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in folded if not unicodedata.combining(c)).lower()


def demo_customers(count: int = 50) -> list[DemoCustomer]:
    """The demo's customers: the same every time (a fixed seed), so seeding twice finds
    them and the traffic knows them without asking anyone."""
    rng = random.Random(6868)
    customers: list[DemoCustomer] = []
    names: set[str] = set()
    phones: set[str] = set()
    for i in range(count):
        foreign = _FOREIGN.get(i)
        while True:
            if foreign:
                name = foreign
            else:
                female = rng.random() < 0.5
                name = " ".join(
                    (rng.choice(_FAMILY), rng.choice(_MIDDLE[female]), rng.choice(_GIVEN[female]))
                )
            phone = "+84" + rng.choice(_MOBILE_PREFIXES)[1:] + f"{rng.randrange(10**7):07d}"
            if name not in names and phone not in phones:
                break
        names.add(name)
        phones.add(phone)
        kind = _PRIMARY[i % len(_PRIMARY)]
        parts = _ascii(name).replace("-", "").split()
        email = f"{parts[-1]}.{parts[0]}{rng.randrange(10, 99)}@{rng.choice(_MAIL_DOMAINS)}"
        facebook = str(100000000000000 + rng.randrange(10**13))
        chat = f"v-{rng.getrandbits(40):010x}"
        values = {"phone": phone, "email": email, "facebook": facebook, "chat": chat}
        customers.append(
            DemoCustomer(
                name=name,
                language="en" if foreign else "vi",
                phone=phone,
                primary=(kind, values[kind]),
                email=email if kind == "email" or rng.random() < 0.5 else None,
                facebook=facebook if kind == "facebook" or rng.random() < 0.3 else None,
                chat=chat if kind == "chat" else None,
                company=rng.choice(_COMPANIES) if rng.random() < 0.25 else None,
                address=rng.choice(_CITIES),
            )
        )
    return customers


# ---------------------------------------------------------------------- seeding
@dataclass(frozen=True)
class DemoSetup:
    """The ids the traffic needs, and what this seeding created (empty the second time)."""

    agents: dict[str, UUID]  # by login
    queues: dict[str, UUID]  # by QueueSpec.key
    ivr_flow: UUID
    ivr_version: int
    templates: dict[str, UUID]  # by TEMPLATES key
    sla_policy: UUID
    campaign: UUID
    customers: list[DemoCustomer]
    created: dict[str, int]


def seed(apps: DomainApps, now: datetime | None = None) -> DemoSetup:
    """Set up tenant "demo"; only what is missing is created (blocking: run it off the loop).

    What exists is found by its name in the event store and left as it is: configuring
    it again would replay every aggregate, which after a long demo run is most of it.
    """
    now = now or datetime.now(UTC)
    created: Counter[str] = Counter()
    try:
        apps.tenants.register(TENANT, TENANT_NAME, Package.CONTACT_CENTER, [HOTLINE])
        created["tenant"] += 1
    except TenantAlreadyRegistered:
        pass
    apps.tenants.define_calendar(TENANT, CALENDAR, OFFICE)  # no event when unchanged

    users = {e.login: e.originator_id for e in created_events(apps.agents, User.Created)}
    for spec in AGENTS:
        if spec.login not in users:
            users[spec.login] = _create_user(apps, spec)
            created["users"] += 1
        if not apps.agents.get(TENANT, users[spec.login])["has_password"]:
            # Everyone of the demo signs in with the one password the start-up prints.
            apps.agents.set_password(TENANT, users[spec.login], DEMO_PASSWORD)

    queues = {e.name: e.originator_id for e in created_events(apps.queues, Queue.Created)}
    fresh: list[QueueSpec] = []
    for q in QUEUES:
        if q.name not in queues:
            queues[q.name] = apps.queues.create(
                TENANT,
                q.name,
                q.channels,
                q.policy,
                q.skills or None,
                q.department,
                q.sticky_fallback,
            )
            fresh.append(q)
    by_key = {q.key: queues[q.name] for q in QUEUES}
    for q in fresh:  # once every queue has an id, as overflows name each other
        _configure_queue(apps, q, by_key)
        created["queues"] += 1

    flows = {e.name: e.originator_id for e in created_events(apps.ivr, IvrFlow.Drafted)}
    flow = flows.get(IVR_NAME)
    if flow is None:
        flow = apps.ivr.draft(TENANT, IVR_NAME)
        created["ivr_flows"] += 1
    try:
        version = apps.ivr.graph(TENANT, flow).version
    except NotPublished:  # new, or seeding stopped before it was published
        for node in _ivr_nodes(by_key):
            apps.ivr.set_node(TENANT, flow, node)
        apps.ivr.set_entry(TENANT, flow, "greeting")
        version = apps.ivr.publish(TENANT, flow)
    # The telephony bridge walks the hotline's calls into the flow its route names. Also
    # on every later seed (no event when unchanged): a demo seeded before the bridge
    # existed has its hotline unrouted, and the bridge would refuse its calls.
    apps.tenants.route_hotline(TENANT, HOTLINE, "ivr", flow)

    policies = {e.name: e.originator_id for e in created_events(apps.sla, SlaPolicy.Created)}
    policy = policies.get(SLA_NAME)
    if policy is None:
        policy = apps.sla.create(TENANT, SLA_NAME, *SLA_DEFAULT)
        for (priority, channel), targets in SLA_ROWS.items():
            apps.sla.set_targets(TENANT, policy, priority, channel, *targets)
        apps.sla.set_calendar(TENANT, policy, CALENDAR)
        apps.sla.set_warning_ratio(TENANT, policy, 0.75)
        created["sla_policies"] += 1
    for queue_id in by_key.values():
        # Conversations in every queue run on the policy's clocks (no event when set).
        apps.queues.set_sla_policy(TENANT, queue_id, policy)

    existing = {
        e.name: e.originator_id for e in created_events(apps.templates, ReplyTemplate.Created)
    }
    templates: dict[str, UUID] = {}
    for key, (name, language, body) in TEMPLATES.items():
        if name not in existing:
            existing[name] = apps.templates.create(TENANT, name, _WRITTEN, language, body)
            created["templates"] += 1
        templates[key] = existing[name]

    customers = demo_customers()
    for customer in customers:
        if customer.id not in apps.customers.repository:
            _register_customer(apps, customer)
            created["customers"] += 1

    campaigns = {e.name: e.originator_id for e in created_events(apps.campaigns, Campaign.Drafted)}
    campaign = campaigns.get(CAMPAIGN_NAME)
    if campaign is None:
        campaign = _create_campaign(apps, customers, now)
        created["campaigns"] += 1

    return DemoSetup(
        agents={spec.login: users[spec.login] for spec in AGENTS},
        queues=by_key,
        ivr_flow=flow,
        ivr_version=version,
        templates=templates,
        sla_policy=policy,
        campaign=campaign,
        customers=customers,
        created=dict(created),
    )


def created_events(app: TenantApplication, event_class: type[Any]) -> list[Any]:
    """The demo tenant's creation events of one kind, oldest first, from the app's stream."""
    recorder: Any = app.recorder
    topic = get_topic(event_class)
    found: list[Any] = []
    start = 1
    while True:
        page = recorder.select_notifications(start, 500, topics=[topic])
        for notification in page:
            created = app.mapper.to_domain_event(notification)
            if getattr(created, "tenant_id", None) == TENANT:
                found.append(created)
        if len(page) < 500:
            return found
        start = page[-1].id + 1


def _create_user(apps: DomainApps, spec: AgentSpec) -> UUID:
    agents, package = apps.agents, Package.CONTACT_CENTER
    uid = agents.create_user(
        TENANT, spec.name, spec.login, spec.role, package=package, extension=spec.extension
    )
    if spec.endpoint is not None:
        agents.add_endpoint(TENANT, uid, *spec.endpoint)
    for skill, level in spec.skills.items():
        agents.set_skill(TENANT, uid, skill, level)
    for department in spec.departments:
        agents.join_department(TENANT, uid, department)
    for group in spec.pickup_groups:
        agents.join_pickup_group(TENANT, uid, group)
    if spec.role in (Role.AGENT, Role.SUPERVISOR):
        agents.go_available(TENANT, uid)
        if spec.on_break:
            agents.take_break(TENANT, uid, spec.on_break)
    return uid


def _configure_queue(apps: DomainApps, spec: QueueSpec, queues: dict[str, UUID]) -> None:
    english = spec.key == "english"
    voicemail = Fallback.voicemail(VOICEMAIL_EN if english else VOICEMAIL_VI)
    overflow = None
    if spec.overflow == "voicemail":
        overflow = voicemail
    elif spec.overflow is not None:
        overflow = Fallback.to_queue(queues[spec.overflow])
    qid = queues[spec.key]
    apps.queues.set_waiting_rules(
        TENANT,
        qid,
        spec.ring_timeout,
        spec.max_wait,
        overflow,
        voicemail if spec.no_agent_voicemail else None,
    )
    apps.queues.set_schedule(TENANT, qid, CALENDAR, Fallback.play(spec.closed_message))
    if spec.pickup_group:
        apps.queues.add_pickup_group(TENANT, qid, spec.pickup_group)


def _register_customer(apps: DomainApps, customer: DemoCustomer) -> None:
    cid = apps.customers.register_for_identity(TENANT, *customer.primary, name=customer.name)
    for kind, value in customer.identities:
        apps.customers.add_identity(TENANT, cid, kind, value)  # the primary again is a no-op
    profile = {"language": customer.language, "address": customer.address}
    if customer.company:
        profile["company"] = customer.company
    apps.customers.update_profile(TENANT, cid, profile)


def _create_campaign(apps: DomainApps, customers: list[DemoCustomer], now: datetime) -> UUID:
    campaigns = apps.campaigns
    campaign = campaigns.draft(TENANT, CAMPAIGN_NAME, Channel.SMS)
    targets = [(c.id, c.phone) for c in customers if c.primary[0] == "phone"]
    campaigns.add_targets(TENANT, campaign, targets)
    campaigns.set_schedule(TENANT, campaign, [Window(CALENDAR, now, now + timedelta(days=14))])
    campaigns.set_pacing(TENANT, campaign, max_concurrent=2, per_minute=3)
    campaigns.set_retry_policy(TENANT, campaign, max_attempts=2, retry_after_seconds=600)
    campaigns.schedule(TENANT, campaign, now)
    return campaign
