"""The demo's traffic: the outside world of a contact center, simulated.

It plays the outside world only, through the same doors the real world uses:

- the callers and the agents' phones, on the built-in switch's panel
  (telephony_bridge.switchctl): each call is placed with a party that says which menu
  keys the caller presses, how long they talk and when they give up; each agent's
  endpoint with one that says how soon it is picked up. The telephony bridge does the
  rest as it would with real phones: it answers, walks the hotline's IVR flow, queues
  the call, rings the agent routing picks, bridges, reports the hang-ups;
- the customers' chats, emails, SMS, Messenger messages and Facebook comments, published
  as facts (connectors.facts) that the fact handlers turn into conversations;
- the SMS gateway of the campaign: it "delivers" what the campaign runner sends;
- the agents, as their UI would: they watch the agent board, accept the conversations
  offered to them, reply (sometimes from a template), raise tickets, resolve, take breaks.

Routing, ring timeouts, overflow, wrap-up and SLA timers are the product's own process
managers, untouched. Inbound message facts start conversations without a queue (the
connectors do not route), so the traffic moves each new conversation it caused to the
queue its channel and topic call for (`Conversations.move_to_queue`); it knows the
conversation's id because the id follows from the thread (`thread_conversation_id`).

Durations (talking, patience, picking up, breaks, replies) are divided by `speed`,
arrival rates multiplied by it. The switch's prompts and the IVR's digit timeouts, the
queues' ring timeouts and max waits and the router's wrap-up are the product's, in real
seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time as clock
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

import msgspec
from eventsourcing.persistence import IntegrityError
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from connectors import commands as messages
from connectors.facts import (
    ChatMessageReceived,
    EmailReceived,
    FacebookCommentReceived,
    FacebookMessageReceived,
    Fact,
    SmsReceived,
    publish_fact,
)
from deploy.demo.seed import (
    FACEBOOK_PAGE,
    HOTLINE,
    HOTLINE_DISPLAY,
    IVR_KEYS,
    MENU_ATTEMPTS,
    MENU_TIMEOUT,
    TENANT,
    TENANT_NAME,
    VOICEMAIL_KEY,
    DemoCustomer,
    DemoSetup,
)
from domain.apps import DomainApps
from domain.base import DomainError, NotFound
from domain.conversations import thread_conversation_id
from domain.tickets import TicketKind
from domain.vocabulary import Channel, Priority
from projections.boards import AgentBoardReadModel
from telephony_bridge.switchctl import PREFIX as PANEL
from telephony_bridge.switchctl import HangUp, PartySpec, PlaceCall, SetParty

log = logging.getLogger(__name__)

T = TypeVar("T")

# ---------------------------------------------------------------------- what people say
_SAYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("vi", "technical"): (
        "Mạng 4G nhà em chập chờn từ sáng, anh chị kiểm tra giúp em với ạ",
        "Em không kích hoạt được eSIM trên iPhone, máy báo lỗi liên tục",
        "Wifi nhà mình bị rớt mạng liên tục vào buổi tối",
        "Tốc độ internet chỉ được 5Mbps dù mình đăng ký gói 100Mbps",
        "Cài đặt APN cho máy Android thế nào vậy ạ?",
    ),
    ("vi", "billing"): (
        "Hóa đơn tháng này của tôi cao bất thường, nhờ kiểm tra giúp",
        "Mình bị trừ tiền hai lần khi gia hạn gói cước",
        "Cho em hỏi cách thanh toán cước qua ví điện tử",
        "Tôi muốn chuyển thuê bao từ trả trước sang trả sau",
        "Sao tài khoản khuyến mãi của em bị trừ hết vậy ạ?",
    ),
    ("vi", "general"): (
        "Shop ơi gói 5G nào rẻ nhất vậy?",
        "Cửa hàng gần quận 3 ở đâu ạ?",
        "Mình muốn đăng ký thêm vài số thuê bao cho công ty",
        "Chương trình khuyến mãi tháng này là gì vậy ad?",
        "Cho mình hỏi tổng đài làm việc đến mấy giờ?",
    ),
    ("en", "english"): (
        "Hi, my data roaming is not working in Singapore",
        "I was charged twice for my monthly plan",
        "Which plan is best for a three-month stay in Vietnam?",
        "How do I top up my prepaid SIM online?",
        "My eSIM activation failed, can you help?",
    ),
}
_SMS = (
    "Toi muon kiem tra cuoc thang nay",
    "Sao em bi tru 50k tien goi cuoc vay?",
    "Huy giup toi dich vu nhac cho",
    "Dang ky goi 5G thang nhu the nao a?",
    "Cho hoi so du tai khoan cua toi",
)
_COMMENTS = (
    "Gói này có áp dụng cho thuê bao cũ không ad?",
    "Inbox giá giúp mình với",
    "Khuyến mãi này đến bao giờ vậy shop?",
    "Dạo này mạng khu mình yếu quá",
    "Đăng ký rồi mà chưa thấy cộng data",
)
_SUBJECTS: dict[str, tuple[str, ...]] = {
    "technical": ("Yêu cầu hỗ trợ kỹ thuật - mất kết nối internet", "Lỗi kích hoạt eSIM"),
    "billing": ("Khiếu nại hóa đơn tháng này", "Đề nghị xuất hóa đơn VAT"),
    "english": ("Request: invoice copy", "Internet outage at our office"),
}
_FOLLOW_UPS = {
    "vi": (
        "Dạ vâng, em cảm ơn ạ",
        "Mình vẫn chưa được, kiểm tra lại giúp mình với",
        "Số thuê bao của mình là {phone}",
        "Ok cảm ơn bạn nhiều",
    ),
    "en": ("Thanks a lot!", "My number is {phone}", "Still not working, could you check again?"),
}
_REPLIES = {
    "vi": (
        "Dạ em đang kiểm tra thông tin thuê bao của anh/chị, anh/chị vui lòng chờ trong giây lát ạ.",
        "Dạ anh/chị vui lòng khởi động lại thiết bị giúp em rồi thử lại ạ.",
        "Dạ em đã chuyển yêu cầu sang bộ phận chuyên trách, anh/chị sẽ nhận được tin nhắn xác nhận ạ.",
        "Dạ khoản cước này là phí gia hạn gói tháng, em đã gửi chi tiết qua email cho anh/chị ạ.",
    ),
    "en": (
        "Let me check your account, one moment please.",
        "Please restart your device and try again.",
        "I have passed this on to the team in charge; you will get a confirmation by SMS.",
    ),
}
_TICKETS = {
    "technical": ("Sự cố kỹ thuật", TicketKind.COMPLAINT),
    "billing": ("Khiếu nại cước", TicketKind.COMPLAINT),
    "general": ("Yêu cầu tư vấn", TicketKind.REQUEST),
    "english": ("Customer request", TicketKind.QUESTION),
}
_TAGS = {"technical": "kỹ thuật", "billing": "cước", "general": "tư vấn", "english": "english"}
# Who writes on a channel: the customers registered with that identity (see DemoCustomer).
_WRITES_AS = {
    Channel.CHAT: "chat",
    Channel.EMAIL: "email",
    Channel.SMS: "phone",
    Channel.MESSENGER: "facebook",
    Channel.FACEBOOK_COMMENT: "facebook",
}
# What Vietnamese-speaking customers write about on each channel; the topic is the queue.
_TOPICS = {
    Channel.CHAT: ("technical", "general", "billing"),
    Channel.EMAIL: ("technical", "billing"),
    Channel.SMS: ("billing",),
    Channel.MESSENGER: ("general",),
    Channel.FACEBOOK_COMMENT: ("general",),
}
BREAK_REASONS = ("Nghỉ giải lao", "Ăn trưa", "Họp nhóm", "Đào tạo")

# The first arrivals show every kind of work at once; random ones follow.
OPENING = (
    "call",
    "chat",
    "call",
    "email",
    "call:hang_up_in_ivr",
    "messenger",
    "call",
    "sms",
    "chat",
    "facebook_comment",
    "call:voicemail",
    "call",
)
MESSAGE_MIX = {"chat": 35, "email": 20, "sms": 15, "messenger": 20, "facebook_comment": 10}
# What Vietnamese-speaking callers choose in the menu, by queue; English speakers press 3.
CALL_MIX = {"technical": 40, "billing": 30, "general": 30}
_KEY_OF = {queue: key for key, queue in IVR_KEYS.items()}
# The greeting and the menu on the built-in switch (a second a prompt, then the key):
# switch seconds, which are real ones whatever the demo's speed.
IVR_SECONDS = 3.0


# ---------------------------------------------------------------------- the traffic
@dataclass
class _Thread:
    """A conversation the traffic starts: who, about what, and how they write into it."""

    customer: DemoCustomer
    topic: str  # a key of _TICKETS and _TAGS
    queue: str  # a QueueSpec key
    first_text: str
    key: str  # the thread key connectors.handlers derives from the facts
    write: Callable[[str], Fact]  # one fact per message
    born: float = field(default_factory=clock.monotonic)


def _now() -> datetime:
    return datetime.now(UTC)


def _new_fact_id() -> str:
    return f"demo-{uuid4().hex}"


class Traffic:
    """Customers, callers, the SMS gateway and the agents, until `stop()`."""

    def __init__(
        self,
        apps: DomainApps,
        runner: Callable[..., Awaitable[Any]],
        setup: DemoSetup,
        js: JetStreamContext,
        nc: Any,
        board: AgentBoardReadModel,
        *,
        speed: float = 1.0,
        calls_per_minute: float = 4.0,
        messages_per_minute: float = 4.0,
        answer_rate: float = 0.88,
        rng: random.Random | None = None,
        tick: float = 0.25,
    ) -> None:
        self.apps = apps
        self.runner = runner
        self.setup = setup
        self.js = js
        self.nc = nc
        self.board = board
        self.speed = speed
        self.calls_per_minute = calls_per_minute
        self.messages_per_minute = messages_per_minute
        self.answer_rate = answer_rate
        self.rng = rng or random.Random()
        self.tick = tick
        self.stats: Counter[str] = Counter()
        self._threads: dict[UUID, _Thread] = {}
        self._working: set[UUID] = set()
        self._finished: dict[UUID, float] = {}  # conversation -> when it was resolved
        self._rings: set[tuple[str, str]] = set()  # (agent, work) rings already seen
        self._returning: set[str] = set()  # agents whose return from a break is planned
        self._commands: dict[str, None] = {}  # send command ids handled, oldest first
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscriptions: list[Subscription] = []
        # Our own share of the domain's worker threads: the fact handlers use them too.
        self._slots = asyncio.Semaphore(8)
        self._by_primary: dict[str, list[DemoCustomer]] = {}
        for customer in setup.customers:
            self._by_primary.setdefault(customer.primary[0], []).append(customer)
        self._opening = list(OPENING)

    # ------------------------------------------------------------------ running
    async def start(self) -> None:
        phones = await self._domain(self._agent_phones)
        distracted = self.rng.sample(phones, min(3, len(phones)))
        await self._pick_up(phones, distracted)  # before the first call rings anyone
        self._subscriptions = [
            await self.nc.subscribe(f"{messages.PREFIX}.{TENANT}.*.send", cb=self._on_send),
        ]
        self._spawn(self._arrivals())
        self._spawn(self._phones(phones, distracted))
        self._spawn(self._agents())
        self._spawn(self._breaks())

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            try:
                await subscription.unsubscribe()
            except Exception as error:  # noqa: BLE001 - NATS may be gone already
                log.debug("demo: unsubscribe: %s", error)
        self._subscriptions = []
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._hang_up_all(), 10)
        except TimeoutError:
            log.warning("demo: the switch did not hang up the demo's calls in time")

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(work: Coroutine[Any, Any, Any]) -> None:
        """Whatever goes wrong in one piece of simulated life, the rest goes on."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except (DomainError, IntegrityError) as error:
            # The world moved on (a caller hung up, another agent was quicker).
            log.debug("demo: %s: %s", type(error).__name__, error)
        except Exception:
            log.warning("demo: a simulated step failed", exc_info=True)

    async def _sleep(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high) / self.speed)

    async def _domain(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self._slots:
            result: T = await self.runner(fn, *args, **kwargs)
            return result

    async def _quietly(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """A domain command whose refusal only means the world moved on."""
        try:
            await self._domain(fn, *args, **kwargs)
            return True
        except (DomainError, IntegrityError) as error:
            log.debug("demo: %s refused: %s", getattr(fn, "__name__", fn), error)
            return False

    async def _fact(self, fact: Fact) -> None:
        await publish_fact(self.js, fact)
        self.stats["facts"] += 1

    # ------------------------------------------------------------------ arrivals
    async def _arrivals(self) -> None:
        per_second = (self.calls_per_minute + self.messages_per_minute) * self.speed / 60
        calls_share = self.calls_per_minute / (self.calls_per_minute + self.messages_per_minute)
        while True:
            if self._opening:
                scenario = self._opening.pop(0)
                await asyncio.sleep(1.0 / self.speed)
            else:
                await asyncio.sleep(self.rng.expovariate(per_second))
                if self.rng.random() < calls_share:
                    scenario = "call"
                else:
                    kinds, weights = zip(*MESSAGE_MIX.items(), strict=True)
                    scenario = self.rng.choices(kinds, weights)[0]
            kind, _, variant = scenario.partition(":")
            if kind == "call":
                self._spawn(self._call(variant))
            else:
                self._spawn(self._message(Channel(kind)))

    # ------------------------------------------------------------------ calls
    async def _panel(self, verb: str, request: Any) -> dict[str, Any] | None:
        """A request to the built-in switch's panel; None if it refused or is not there."""
        try:
            reply = await self.nc.request(f"{PANEL}.{verb}", msgspec.json.encode(request), 5)
            answer: dict[str, Any] = msgspec.json.decode(reply.data)
        except Exception as error:  # noqa: BLE001 - no panel, a timeout: the rest goes on
            answer = {"error": f"{type(error).__name__}: {error}"}
        if "error" in answer:
            # Loud once: on FreeSWITCH there is no panel, and so no demo calls.
            say = log.debug if self.stats["panel_errors"] else log.warning
            say("demo: %s.%s: %s", PANEL, verb, answer["error"])
            self.stats["panel_errors"] += 1
            return None
        return answer

    def _agent_phones(self) -> list[str]:
        """The addresses the switch rings the call-taking agents on, as routing names them."""
        phones = []
        for aid in self.setup.agents.values():
            agent: dict[str, Any] = self.apps.agents.get(TENANT, aid)
            if agent["takes_calls"] and agent["endpoints"]:
                first = agent["endpoints"][0]
                phones.append(first["address"] or f"{first['kind']}:{aid}")
        return phones

    async def _pick_up(self, phones: list[str], distracted: list[str]) -> None:
        for phone in phones:
            # The distracted ones now and then never answer: the queue's ring timeout
            # passes the call on to someone else.
            never = phone in distracted and self.rng.random() < 0.5
            party = PartySpec(answer_after=None if never else self.rng.uniform(1, 6) / self.speed)
            await self._panel("party", SetParty(address=phone, party=party))

    async def _phones(self, phones: list[str], distracted: list[str]) -> None:
        while True:
            await self._sleep(60, 180)
            await self._pick_up(phones, distracted)

    async def _call(self, variant: str) -> None:
        live = await self._panel("channels", {})
        # A bound keeps a slow machine from piling up callers without end.
        if live is None or sum(c["direction"] == "inbound" for c in live["channels"]) >= 40:
            return
        customer = self.rng.choice(self.setup.customers)
        party = self._caller(customer, variant)
        call = PlaceCall(caller_number=customer.phone, hotline=HOTLINE, party=party)
        if await self._panel("call", call) is not None:
            self.stats["calls"] += 1

    def _caller(self, customer: DemoCustomer, variant: str) -> PartySpec:
        """What the caller does on the line: the bridge answers, walks the IVR with their
        keys, queues them and rings an agent; the switch plays this party meanwhile."""
        rng, speed = self.rng, self.speed
        if customer.language == "en":
            key = _KEY_OF["english"]
        else:
            key = _KEY_OF[rng.choices(list(CALL_MIX), list(CALL_MIX.values()))[0]]
        if variant == "hang_up_in_ivr" or rng.random() < 0.04:
            self.stats["hung_up_in_ivr"] += 1
            return PartySpec(digits=key, abandon_after=rng.uniform(0.5, IVR_SECONDS - 1))
        if variant == "voicemail" or rng.random() < 0.03:
            self.stats["voicemail"] += 1
            return PartySpec(digits=VOICEMAIL_KEY)
        ivr, fumble = IVR_SECONDS, rng.random()
        if fumble < 0.05:  # a key the menu does not know: it plays again
            key, ivr = rng.choice("45678") + key, ivr + 2
        elif fumble < 0.1:  # nothing pressed: the menu's retries, then the general queue
            key, ivr = "", ivr + MENU_ATTEMPTS * (MENU_TIMEOUT + 1)
        # Patience: most wait a while; some give up quickly whatever happens.
        patience = rng.uniform(6, 20) if rng.random() < 0.1 else rng.uniform(40, 200)
        return PartySpec(
            digits=key,
            hang_up_after=rng.uniform(20, 180) / speed,
            abandon_after=ivr + patience / speed,
        )

    async def _hang_up_all(self) -> None:
        """Hang up the demo's callers through the switch, so that the bridge reports their
        calls ended before it stops: else they stay live in the domain for ever."""
        if not self.nc.is_connected:  # NATS went first: neither switch nor facts to reach
            return
        live = await self._panel("channels", {})
        for channel in live["channels"] if live else ():
            if channel["direction"] == "inbound" and channel["destination_number"] == HOTLINE:
                await self._panel("hangup", HangUp(channel_id=channel["channel_id"]))
        if live and live["channels"]:
            await asyncio.sleep(0.5)  # the bridge publishes the hang-ups meanwhile

    # ------------------------------------------------------------------ the SMS gateway
    async def _on_send(self, msg: Msg) -> None:
        try:
            command = messages.decode(msg.data)
        except Exception as error:  # noqa: BLE001
            log.debug("demo: undecodable send command: %s", error)
            return
        if command.tenant_id != TENANT or not self._first_time(command.command_id):
            return
        self._spawn(self._deliver(command))

    def _first_time(self, command_id: str) -> bool:
        if command_id in self._commands:
            return False
        self._commands[command_id] = None
        while len(self._commands) > 10_000:
            del self._commands[next(iter(self._commands))]
        return True

    async def _deliver(self, command: messages.SendMessage) -> None:
        if command.campaign_id is None or command.customer_id is None or command.attempt is None:
            return
        await self._sleep(1, 4)
        args = (TENANT, command.campaign_id, command.customer_id, command.attempt)
        if self.rng.random() < 0.9:
            await self._quietly(self.apps.campaigns.reached, *args, datetime.now(UTC))
            self.stats["sms_delivered"] += 1
        else:
            reason = "thuê bao không liên lạc được"
            await self._quietly(self.apps.campaigns.failed, *args, reason, datetime.now(UTC))

    # ------------------------------------------------------------------ messages
    async def _message(self, channel: Channel) -> None:
        thread = self._compose(channel)
        first = thread.write(thread.first_text)
        await self._fact(first)
        self.stats[channel.value] += 1
        conversation = await self._conversation_of(channel, thread.key, first.fact_id)
        if conversation is None:
            return
        cid, queue_id = conversation
        self._threads[cid] = thread
        if queue_id is None:  # a new conversation: the connectors leave routing to us
            queue = self.setup.queues[thread.queue]
            await self._quietly(self.apps.conversations.move_to_queue, TENANT, cid, queue)

    def _compose(self, channel: Channel) -> _Thread:
        """Who writes, about what, to which queue, and how they write into the thread."""
        rng = self.rng
        customer = rng.choice(self._by_primary[_WRITES_AS[channel]])
        if customer.language == "en":
            topic, queue = "english", "english"
            text = rng.choice(_SAYS[("en", "english")])
        else:
            topic = rng.choice(_TOPICS[channel])
            queue = topic
            text = rng.choice(_SAYS[("vi", topic)])
        if channel is Channel.CHAT:
            session = f"sess-{uuid4().hex[:12]}"
            visitor = customer.chat or customer.primary[1]

            def chat(body: str) -> Fact:
                return ChatMessageReceived(
                    fact_id=_new_fact_id(),
                    tenant_id=TENANT,
                    at=_now(),
                    visitor_id=visitor,
                    session_id=session,
                    text=body,
                    visitor_name=customer.name,
                )

            return _Thread(customer, topic, queue, text, session, chat)
        if channel is Channel.EMAIL:
            address = customer.primary[1]
            root = f"<{uuid4().hex}@mail.{address.split('@')[-1]}>"
            subject = rng.choice(_SUBJECTS[topic])
            sent: list[str] = []

            def email(body: str) -> Fact:
                message_id = f"<{uuid4().hex}@mail.demo.vn>" if sent else root
                sent.append(message_id)
                return EmailReceived(
                    fact_id=message_id,
                    tenant_id=TENANT,
                    at=_now(),
                    from_address=address,
                    from_name=customer.name,
                    subject=f"Re: {subject}" if len(sent) > 1 else subject,
                    text=body,
                    in_reply_to=sent[-2] if len(sent) > 1 else None,
                    references=sent[:-1],  # the root first: the thread's key
                )

            return _Thread(customer, topic, queue, text, root, email)
        if channel is Channel.SMS:

            def sms(body: str) -> Fact:
                return SmsReceived(
                    fact_id=_new_fact_id(),
                    tenant_id=TENANT,
                    at=_now(),
                    from_number=customer.phone,
                    hotline=HOTLINE,
                    text=body,
                )

            key = f"{HOTLINE}/{customer.phone}"  # as connectors.handlers keys an SMS thread
            return _Thread(customer, topic, queue, rng.choice(_SMS), key, sms)
        sender = customer.facebook or customer.primary[1]
        if channel is Channel.MESSENGER:
            thread_id = f"t_{sender}"

            def messenger(body: str) -> Fact:
                return FacebookMessageReceived(
                    fact_id=_new_fact_id(),
                    tenant_id=TENANT,
                    at=_now(),
                    page_id=FACEBOOK_PAGE,
                    sender_id=sender,
                    thread_id=thread_id,
                    text=body,
                    sender_name=customer.name,
                )

            return _Thread(customer, topic, queue, text, f"{FACEBOOK_PAGE}/{thread_id}", messenger)
        # A comment thread is a post (connectors.handlers): each comment here is on a
        # post of its own, or every commenter of the demo would share one conversation.
        post = f"{FACEBOOK_PAGE}_{rng.randrange(10**15):015d}"

        def comment(body: str) -> Fact:
            return FacebookCommentReceived(
                fact_id=_new_fact_id(),
                tenant_id=TENANT,
                at=_now(),
                page_id=FACEBOOK_PAGE,
                sender_id=sender,
                post_id=post,
                text=body,
                sender_name=customer.name,
            )

        key = f"{FACEBOOK_PAGE}/{post}"
        return _Thread(customer, topic, queue, rng.choice(_COMMENTS), key, comment)

    async def _conversation_of(
        self, channel: Channel, thread_key: str, message_id: str
    ) -> tuple[UUID, UUID | None] | None:
        """The conversation a message fact went into, once its handler recorded it: its id
        and queue. Walks the thread's generations as Conversations.receive_in_thread does."""
        deadline = clock.monotonic() + 20
        while clock.monotonic() < deadline:
            for generation in range(50):
                cid = thread_conversation_id(TENANT, channel, thread_key, generation)
                try:
                    found = await self._domain(self.apps.conversations.get, TENANT, cid)
                except NotFound:
                    break
                if any(m["id"] == message_id for m in found["messages"]):
                    queue = found["queue_id"]
                    return cid, UUID(queue) if queue else None
                if found["status"] != "closed":
                    break
            await asyncio.sleep(0.2)
        log.debug("demo: message %s never reached a conversation", message_id)
        return None

    # ------------------------------------------------------------------ the agents
    async def _agents(self) -> None:
        """The agents' screens: what rings for them and what they have to work on."""
        pruned = clock.monotonic()
        while True:
            await asyncio.sleep(self.tick)
            if clock.monotonic() - pruned > 60:
                pruned = self._prune()
            board = await asyncio.to_thread(self.board.board, TENANT)
            ringing: set[tuple[str, str]] = set()
            for agent in board:
                aid, work = agent["id"], agent["conversation_id"]
                if agent["presence"] == "ringing" and work:
                    ringing.add((aid, work))
                    if (aid, work) not in self._rings and not agent["calls"]:
                        # A call rings on the agent's phone, which the switch's party
                        # answers; what else rings is a conversation offered in their inbox
                        # (a call whose leg the board does not show yet is refused there).
                        self._spawn(self._accept(aid, UUID(work)))
                elif agent["presence"] == "break" and aid not in self._returning:
                    self._returning.add(aid)
                    self._spawn(self._back_from_break(aid))
                for conversation in agent["conversations"]:
                    cid = UUID(conversation["id"])
                    if conversation["status"] == "open" and self._may_work_on(cid):
                        self._working.add(cid)
                        self._spawn(self._work_on(agent, cid))
            self._rings = ringing

    def _may_work_on(self, cid: UUID) -> bool:
        if cid in self._working:
            return False
        # The board may still show one just resolved as open for a moment.
        resolved = self._finished.get(cid)
        return resolved is None or clock.monotonic() - resolved > self._settle

    @property
    def _settle(self) -> float:
        return 30 / self.speed + 5

    def _prune(self) -> float:
        """Forget what no longer matters, so that a demo left running does not grow."""
        now = clock.monotonic()
        for cid, resolved in list(self._finished.items()):
            if now - resolved > self._settle:
                del self._finished[cid]
        # A conversation nobody took (it fell back to voicemail) is not written into again.
        for cid, thread in list(self._threads.items()):
            if now - thread.born > 3600 and cid not in self._working:
                del self._threads[cid]
        return now

    async def _accept(self, aid: str, cid: UUID) -> None:
        if self.rng.random() > self.answer_rate:
            return  # away from the screen: the offer times out and goes to the next agent
        await self._sleep(1, 5)
        await self._quietly(self.apps.conversations.assign, TENANT, cid, UUID(aid))

    async def _work_on(self, agent: dict[str, Any], cid: UUID) -> None:
        aid = UUID(agent["id"])
        conversations = self.apps.conversations
        thread = self._threads.get(cid)
        language = thread.customer.language if thread else "vi"
        try:
            await self._sleep(3, 10)  # reads the conversation
            if self.rng.random() < 0.5:
                await self._reply_with_template(agent, cid, thread, f"greet_{language}")
            else:
                await self._reply(aid, cid, self.rng.choice(_REPLIES[language]))
            if thread is not None and self.rng.random() < 0.5:
                await self._sleep(5, 20)
                follow_up = self.rng.choice(_FOLLOW_UPS[language])
                await self._fact(thread.write(follow_up.format(phone=thread.customer.phone)))
                await self._sleep(3, 10)
                await self._reply(aid, cid, self.rng.choice(_REPLIES[language]))
            if thread is not None:
                tag = _TAGS[thread.topic]
                if self.rng.random() < 0.5:
                    await self._quietly(conversations.tag, TENANT, cid, tag)
                if self.rng.random() < 0.25:
                    await self._raise_ticket(agent, cid, thread)
            await self._sleep(10, 60)
            if self.rng.random() < 0.5:
                await self._reply_with_template(agent, cid, thread, f"bye_{language}")
            if await self._quietly(conversations.resolve, TENANT, cid):
                self.stats["resolved"] += 1
        finally:
            self._working.discard(cid)
            self._finished[cid] = clock.monotonic()
            self._threads.pop(cid, None)

    async def _reply(self, aid: UUID, cid: UUID, body: str, template: UUID | None = None) -> None:
        message_id = f"demo-reply-{uuid4().hex}"
        await self._quietly(
            self.apps.conversations.send_message,
            TENANT,
            cid,
            message_id,
            aid,
            body,
            template_id=template,
            at=datetime.now(UTC),
        )

    async def _reply_with_template(
        self, agent: dict[str, Any], cid: UUID, thread: _Thread | None, key: str
    ) -> None:
        template = self.setup.templates[key]
        context = {
            "customer": {"name": thread.customer.name if thread else ""},
            "agent": {"name": agent["name"]},
            "tenant": {"name": TENANT_NAME},
            "hotline": HOTLINE_DISPLAY,
        }
        body = await self._domain(self.apps.templates.render, TENANT, template, context)
        await self._reply(UUID(agent["id"]), cid, body, template)

    async def _raise_ticket(self, agent: dict[str, Any], cid: UUID, thread: _Thread) -> None:
        tickets, aid = self.apps.tickets, UUID(agent["id"])
        title, kind = _TICKETS[thread.topic]
        priority = self.rng.choices(list(Priority), (10, 60, 22, 8))[0]
        ticket = await self._domain(
            tickets.raise_ticket,
            TENANT,
            f"{title}: {thread.customer.name}",
            kind=kind,
            description=thread.first_text,
            priority=priority,
            customer_id=thread.customer.id,
            conversation_ids=[cid],
            sla_policy_id=self.setup.sla_policy,
        )
        self.stats["tickets"] += 1
        await self._quietly(tickets.assign, TENANT, ticket, aid)
        await self._quietly(tickets.change_status, TENANT, ticket, "open")
        note = "Đã chuyển bộ phận liên quan xử lý."
        await self._quietly(tickets.comment, TENANT, ticket, aid, note)
        if self.rng.random() < 0.5:
            self._spawn(self._settle_ticket(ticket, aid))

    async def _settle_ticket(self, ticket: UUID, aid: UUID) -> None:
        await self._sleep(60, 300)
        tickets = self.apps.tickets
        note = "Đã xử lý xong, khách hàng xác nhận."
        await self._quietly(tickets.comment, TENANT, ticket, aid, note, public=True)
        await self._quietly(tickets.change_status, TENANT, ticket, "resolved")

    async def _breaks(self) -> None:
        while True:
            await self._sleep(20, 60)
            board = await asyncio.to_thread(self.board.board, TENANT)
            free = [a for a in board if a["presence"] == "available" and a["role"] == "agent"]
            away = sum(a["presence"] == "break" for a in board)
            if free and away < max(1, len(board) // 5):
                agent = self.rng.choice(free)
                reason = self.rng.choice(BREAK_REASONS)
                await self._quietly(self.apps.agents.take_break, TENANT, UUID(agent["id"]), reason)

    async def _back_from_break(self, aid: str) -> None:
        try:
            await self._sleep(45, 180)
            await self._quietly(self.apps.agents.go_available, TENANT, UUID(aid))
        finally:
            self._returning.discard(aid)
