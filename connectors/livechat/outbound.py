"""Replies out: the sockets learn that their conversation changed.

An agent's reply is a `Conversation.MessageSent` in the event store; the inbox read model
(projections.inbox), wherever it runs, publishes `live.<tenant>.inbox.conversation` with
the conversation's id once it has taken the change in. `ChatHub` holds one subscription
per process to those (and to `live.<tenant>.agent_board.agent`, an agent's presence) and
wakes the sockets of that tenant that watch that conversation; a woken socket reads its
conversation again from the domain and sends the visitor what they have not seen.

So nothing that matters travels in the notification itself: a socket learns only "look
again", and looks at its own visitor's conversation of its own tenant, found from ids it
derived itself. A notification lost (NATS reconnecting) costs a delay, not a message: the
widget says hello again on reconnect and gets the conversation whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventstore.layout import tenant_token
from projections import live

log = logging.getLogger(__name__)

CONVERSATION_CHANGES: Final = f"{live.PREFIX}.*.inbox.conversation"
PRESENCE_CHANGES: Final = f"{live.PREFIX}.*.agent_board.agent"


class Watcher:
    """What a socket registers: its tenant, the conversation ids it follows, a wake-up."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant = tenant_token(tenant_id)
        self.conversations: set[str] = set()
        self.woken = asyncio.Event()
        self.conversation_changed = False
        self.presence_changed = False

    def wake(self, conversation: bool = False, presence: bool = False) -> None:
        self.conversation_changed = self.conversation_changed or conversation
        self.presence_changed = self.presence_changed or presence
        self.woken.set()

    def changes(self) -> tuple[bool, bool]:
        """What changed since the last call: (the conversation, an agent's presence)."""
        self.woken.clear()
        changed = self.conversation_changed, self.presence_changed
        self.conversation_changed = self.presence_changed = False
        return changed


class ChatHub:
    """The process's live chat sockets by tenant, woken by the read models' changes."""

    def __init__(self, nats: Callable[[], NatsClient]) -> None:
        self._nats = nats
        self._watchers: dict[str, set[Watcher]] = {}
        self._subscriptions: list[Subscription] = []
        self._starting = asyncio.Lock()
        # Per tenant token: how many presence changes were seen, so that the sockets of a
        # tenant woken by one change ask the board once between them (LiveChat.online).
        self.presence_versions: dict[str, int] = {}

    async def start(self) -> None:
        """Subscribe, once: the first socket of the process starts the hub, so that a
        process without visitors holds no subscription (and the runtime no service)."""
        async with self._starting:
            if self._subscriptions:
                return
            nc = self._nats()
            for subject in (CONVERSATION_CHANGES, PRESENCE_CHANGES):
                self._subscriptions.append(await nc.subscribe(subject, cb=self._on_change))
            await nc.flush()  # the server has the subscriptions before a socket relies on them

    def add(self, watcher: Watcher) -> None:
        self._watchers.setdefault(watcher.tenant, set()).add(watcher)

    def remove(self, watcher: Watcher) -> None:
        watchers = self._watchers.get(watcher.tenant)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[watcher.tenant]

    async def _on_change(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) != 4:
            return
        tenant, readmodel = parts[1], parts[2]
        if readmodel == "agent_board":
            # Counted whether or not a socket of the tenant is open now: the next one to
            # open must not take an answer from before the change.
            self.presence_versions[tenant] = self.presence_versions.get(tenant, 0) + 1
            for watcher in list(self._watchers.get(tenant, ())):
                watcher.wake(presence=True)
            return
        watchers = self._watchers.get(tenant)
        if not watchers:
            return
        try:
            change = live.decode(msg.data)
        except Exception:  # noqa: BLE001 - not ours to judge; nobody is woken by it
            log.debug("live chat: an undecodable change on %s", msg.subject)
            return
        for watcher in list(watchers):
            if change.key in watcher.conversations:
                watcher.wake(conversation=True)
