"""What a live chat socket asks of the rest of cloudcc.

`LiveChat` answers, for one tenant and one visitor:

- whether the tenant's chat is open: the tenant exists, is active and has CT8 enabled;
- whether an agent is online: an active agent or supervisor of the tenant is signed on
  and not on a break (the agent board read model, projections.boards);
- the visitor's conversation so far: their thread (key: the visitor id) is a chain of
  conversations (domain.conversations, `receive_in_thread`); the last one is theirs unless
  it was closed, in which case their next message starts a new one;
- CT9: a chat conversation that has just started is handed to the tenant's chat queue
  (the oldest queue serving the chat channel) for routing, as the connectors leave
  routing to someone (deploy.demo.traffic does it for the demo's simulated chats).

The domain's verbs are synchronous: the socket calls them through the AsyncRunner.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic
from nats.aio.client import Client as NatsClient

from connectors.facts import ChatMessageReceived, ensure_facts_stream, publish_fact
from connectors.livechat.inbound import visitor_message_id
from connectors.livechat.outbound import ChatHub
from connectors.livechat.schemas import Line
from domain.apps import DomainApps
from domain.asyncapp import AsyncRunner
from domain.base import DomainError, NotFound
from domain.conversations import ConversationStatus, thread_conversation_id
from domain.queues import Queue
from domain.tenants import valid_tenant_id
from domain.vocabulary import Channel, Presence
from projections.access import AccessReadModel
from projections.boards import AgentBoardReadModel

log = logging.getLogger(__name__)

FEATURE = "CT8"
# Signed on and not on a break: an agent who will see a chat soon.
ONLINE = frozenset({Presence.AVAILABLE, Presence.RINGING, Presence.ON_CALL, Presence.WRAP_UP})
QUEUE_CACHE_SECONDS = 60.0
# "No chat queue" is kept this long only: a queue an admin has just made serves the next
# chat (and the next message of a chat that found none).
NO_QUEUE_CACHE_SECONDS = 2.0
ONLINE_CACHE_SECONDS = 30.0
SCAN_PAGE = 500
# How long a new conversation is waited for, to be handed to the chat queue.
SETTLE_SECONDS = 15.0


@dataclass(frozen=True)
class Thread:
    """A visitor's conversation as the widget shows it, and the ids to watch for changes."""

    conversation: dict[str, Any] | None
    lines: list[Line]
    watch: frozenset[str]
    generation: int = 0  # the newest conversation's generation (0 when there is none)


@dataclass
class LiveChat:
    apps: Callable[[], DomainApps]
    runner: AsyncRunner
    board: AgentBoardReadModel
    access: AccessReadModel
    secret: str
    hub: ChatHub
    nats: Callable[[], NatsClient]
    _queues: dict[str, tuple[float, UUID | None]] = field(default_factory=dict)
    _online: dict[str, tuple[int, float, bool]] = field(default_factory=dict)
    _stream_ready: bool = False
    _settling: set[asyncio.Task[None]] = field(default_factory=set)

    # ------------------------------------------------------------------ reads (sync)
    def chat_open(self, tenant_id: str) -> bool:
        try:
            tenant = self.apps().tenants.get(valid_tenant_id(tenant_id))
        except DomainError:
            return False
        return bool(tenant["active"]) and FEATURE in tenant["features"]  # type: ignore[operator]

    def online(self, tenant_id: str) -> bool:
        """Whether an agent is on duty; asked of the board once per presence change the
        hub has seen, however many of the tenant's sockets ask."""
        version, now = self.hub.presence_versions.get(tenant_id, 0), time.monotonic()
        known = self._online.get(tenant_id)
        # Asked again after a while too: a notification lost (NATS reconnecting) heals.
        if known is not None and known[0] == version and now - known[1] < ONLINE_CACHE_SECONDS:
            return known[2]
        online = any(
            agent["presence"] in ONLINE and agent["active"] for agent in self.board.board(tenant_id)
        )
        self._online[tenant_id] = (version, now, online)
        return online

    def thread(self, tenant_id: str, visitor_id: str, since: int = 0) -> Thread:
        """The visitor's conversation; `since` is a generation known to exist (the
        `Thread.generation` of an earlier answer), where the walk may start.

        A thread's conversations are generations 0, 1, ... and each starts only once the
        one before it is closed, so only the newest can be open: the walk asks the store
        whether each exists (the latest of its events, one direct read, no load) and loads
        the newest alone.
        """
        conversations = self.apps().conversations
        recorder = conversations.recorder
        generation = max(since, 0)
        while True:
            cid = thread_conversation_id(tenant_id, Channel.CHAT, visitor_id, generation)
            if not recorder.select_events(cid, desc=True, limit=1):
                break
            generation += 1
        watch = {str(cid)}  # the next one, which the visitor's next message may start
        if generation == 0:
            return Thread(None, [], frozenset(watch), 0)
        newest = generation - 1
        try:
            last = conversations.get(
                tenant_id, thread_conversation_id(tenant_id, Channel.CHAT, visitor_id, newest)
            )
        except NotFound:  # not this tenant's: cannot be, its id is derived from the tenant
            return Thread(None, [], frozenset(watch), 0)
        if last["status"] == ConversationStatus.CLOSED:
            return Thread(None, [], frozenset(watch), newest)
        watch.add(last["id"])
        lines = [self._line(tenant_id, visitor_id, m) for m in last["messages"]]
        return Thread(last, lines, frozenset(watch), newest)

    def _line(self, tenant_id: str, visitor_id: str, message: dict[str, Any]) -> Line:
        at, text = message["at"], message["body"]
        if message["direction"] == "inbound":
            own = visitor_message_id(visitor_id, message["id"])
            return Line(id=own or message["id"], by="visitor", text=text, at=at)
        agent = message["agent_id"]
        if agent is None:
            return Line(id=message["id"], by="bot", text=text, at=at)
        user = self.access.user(agent)
        name = user.name if user and user.tenant_id == tenant_id else ""
        return Line(id=message["id"], by="agent", text=text, at=at, agent=name)

    def chat_queue(self, tenant_id: str) -> UUID | None:
        """The tenant's oldest queue serving chat (kept a minute), or None (kept for
        NO_QUEUE_CACHE_SECONDS only)."""
        cached = self._queues.get(tenant_id)
        if cached is not None:
            kept = QUEUE_CACHE_SECONDS if cached[1] is not None else NO_QUEUE_CACHE_SECONDS
            if time.monotonic() - cached[0] < kept:
                return cached[1]
        queues = self.apps().queues
        recorder: Any = queues.recorder
        topic = get_topic(Queue.Created)
        found: UUID | None = None
        start = 1
        while found is None:
            page = recorder.select_notifications(start, SCAN_PAGE, topics=[topic])
            for notification in page:
                created = queues.mapper.to_domain_event(notification)
                if getattr(created, "tenant_id", None) != tenant_id:
                    continue
                queue = queues.get(tenant_id, created.originator_id)
                if Channel.CHAT.value in queue["channels"]:
                    found = created.originator_id
                    break
            if len(page) < SCAN_PAGE:
                break
            start = page[-1].id + 1
        self._queues[tenant_id] = (time.monotonic(), found)
        return found

    def hand_to_queue(self, tenant_id: str, visitor_id: str) -> bool | None:
        """Hand the visitor's conversation to the chat queue, if it is in none yet (new,
        or started while the tenant had no chat queue). None: it has not started yet;
        False: nothing to do (queued already, taken, or no chat queue)."""
        conversation = self.thread(tenant_id, visitor_id).conversation
        if conversation is None:
            return None
        if (
            conversation["queue_id"] is not None
            or conversation["assignee"] is not None
            or conversation["status"] != ConversationStatus.OPEN
        ):
            return False
        queue = self.chat_queue(tenant_id)
        if queue is None:
            return False
        try:
            self.apps().conversations.move_to_queue(tenant_id, UUID(conversation["id"]), queue)
        except (DomainError, IntegrityError) as error:
            log.info("live chat: %s not queued: %s", conversation["id"], error)
            return False
        return True

    # ------------------------------------------------------------------ writes (async)
    async def publish(self, fact: ChatMessageReceived) -> None:
        js = self.nats().jetstream()
        if not self._stream_ready:
            await ensure_facts_stream(js)
            self._stream_ready = True
        await publish_fact(js, fact)

    def settle(self, tenant_id: str, visitor_id: str) -> None:
        """Once the visitor's new conversation exists, hand it to the chat queue; in the
        background, so that a visitor who leaves a message and goes is still served.
        Called again on each message while the conversation is in no queue: one started
        before the tenant had a chat queue is queued on the visitor's next message."""
        task = asyncio.get_running_loop().create_task(self._settle(tenant_id, visitor_id))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, tenant_id: str, visitor_id: str) -> None:
        deadline = time.monotonic() + SETTLE_SECONDS
        delay = 0.05
        while time.monotonic() < deadline:
            try:
                done = await self.runner(self.hand_to_queue, tenant_id, visitor_id)
            except Exception:  # noqa: BLE001 - best effort: a supervisor can still queue it
                log.exception("live chat: handing %s's chat to a queue failed", visitor_id)
                return
            if done is not None:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
