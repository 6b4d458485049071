"""The visitor's side: who they are (a token), how fast they may write, who may open a
socket at all, and what they write turned into `ChatMessageReceived` facts.

A visitor token is `<random>.<signature>`: 192 random bits (unguessable), signed with the
instance's secret for one tenant, so a token made up, or one of another tenant's widget,
is refused (the visitor is given a new one and starts afresh). The widget keeps it in the
browser's localStorage. The visitor id the domain sees (their customer identity `chat`,
and the thread key of their conversations) is a hash of the tenant and the random part:
the token itself is never stored, so nobody who reads the customer's record — an agent,
an export — can speak as the visitor.

Flooding is held back per process by `Admission`: sockets open at once per client address
and per tenant, and new visitors (a hello without a valid token, each of which may become a
customer and a conversation) per client address per minute. The client address is the ASGI
scope's `client`, nothing else: no X-Forwarded-For is read here (uvicorn itself replaces
the scope's client by X-Forwarded-For only for the proxies of its `forwarded_allow_ips`,
127.0.0.1 by default). A socket must also say hello within HELLO_SECONDS.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import Counter, deque
from datetime import UTC, datetime

from connectors.facts import ChatMessageReceived
from connectors.livechat.schemas import Leave, Say

TOKEN_BYTES = 24
# A burst of this many messages, then one every REFILL_SECONDS (per socket).
BURST = 8
REFILL_SECONDS = 1.0
# Per process: sockets open at once from one client address, and for one tenant.
MAX_SOCKETS_PER_IP = 20
MAX_SOCKETS_PER_TENANT = 2000
# Per process: new visitors (a hello without a valid token) from one client address in
# NEW_VISITOR_WINDOW seconds.
NEW_VISITORS_PER_IP = 10
NEW_VISITOR_WINDOW = 60.0
# A socket that has not said hello after this long is closed.
HELLO_SECONDS = 10.0

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{5,28}$")


class InvalidMessage(ValueError):
    """A message the visitor must correct (empty, no way to call them back...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def issue_token(secret: str, tenant_id: str) -> str:
    random = secrets.token_urlsafe(TOKEN_BYTES)
    return f"{random}.{_signature(secret, tenant_id, random)}"


def visitor_of(secret: str, tenant_id: str, token: str | None) -> str | None:
    """The visitor id of a token of this tenant's; None for anything else."""
    if not token:
        return None
    random, _, signature = token.partition(".")
    if len(random) < 32 or not hmac.compare_digest(
        signature.encode(), _signature(secret, tenant_id, random).encode()
    ):
        return None
    digest = hashlib.sha256(f"{tenant_id}/{random}".encode()).hexdigest()
    return f"v-{digest[:32]}"


def _signature(secret: str, tenant_id: str, random: str) -> str:
    mac = hmac.new(secret.encode(), f"livechat/{tenant_id}/{random}".encode(), "sha256")
    return mac.hexdigest()[:32]


class RateLimit:
    """A token bucket: BURST messages at once, then one per REFILL_SECONDS."""

    def __init__(self, burst: int = BURST, refill_seconds: float = REFILL_SECONDS) -> None:
        self.burst, self.refill = burst, refill_seconds
        self.tokens = float(burst)
        self.last = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) / self.refill)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Admission:
    """Who may open a socket, and who may start as a new visitor (see the module's doc)."""

    def __init__(
        self,
        per_ip: int = MAX_SOCKETS_PER_IP,
        per_tenant: int = MAX_SOCKETS_PER_TENANT,
        new_per_ip: int = NEW_VISITORS_PER_IP,
        window: float = NEW_VISITOR_WINDOW,
    ) -> None:
        self.per_ip, self.per_tenant = per_ip, per_tenant
        self.new_per_ip, self.window = new_per_ip, window
        self._by_ip: Counter[str] = Counter()
        self._by_tenant: Counter[str] = Counter()
        self._new: dict[str, deque[float]] = {}
        self._swept = time.monotonic()

    def enter(self, ip: str, tenant: str) -> bool:
        """A socket opens: False (and nothing counted) when its address or its tenant has
        as many open as it may."""
        if self._by_ip[ip] >= self.per_ip or self._by_tenant[tenant] >= self.per_tenant:
            return False
        self._by_ip[ip] += 1
        self._by_tenant[tenant] += 1
        return True

    def leave(self, ip: str, tenant: str) -> None:
        """A socket that `enter` let in has closed."""
        for counter, key in ((self._by_ip, ip), (self._by_tenant, tenant)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def new_visitor(self, ip: str) -> bool:
        """A new visitor from this address: False when it has made too many lately."""
        now = time.monotonic()
        if now - self._swept > self.window:  # forget the addresses gone quiet
            self._swept = now
            quiet = [k for k, t in self._new.items() if not t or now - t[-1] >= self.window]
            for key in quiet:
                del self._new[key]
        times = self._new.setdefault(ip, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) >= self.new_per_ip:
            return False
        times.append(now)
        return True


def fact_of(
    tenant_id: str, visitor_id: str, frame: Say | Leave, visitor_name: str
) -> ChatMessageReceived:
    """The fact of a visitor's message; its id follows from the widget's message id, so the
    same message sent again (after a reconnect) is recorded once."""
    if isinstance(frame, Leave):
        text, name = _left_message(frame), frame.name.strip()
    else:
        text, name = frame.text.strip(), frame.name.strip() or visitor_name
    if not text:
        raise InvalidMessage("empty", "the message is empty")
    return ChatMessageReceived(
        fact_id=f"{visitor_id}.{frame.id}",
        tenant_id=tenant_id,
        at=datetime.now(UTC),
        visitor_id=visitor_id,
        session_id=visitor_id,
        text=text,
        visitor_name=name or None,
    )


def visitor_message_id(visitor_id: str, message_id: str) -> str | None:
    """The widget's id of one of the visitor's messages (as `fact_of` made it), else None."""
    prefix = f"{visitor_id}."
    return message_id[len(prefix) :] if message_id.startswith(prefix) else None


def _left_message(frame: Leave) -> str:
    """The offline form as the message agents read: the text, then how to reach them."""
    name, email, phone = frame.name.strip(), frame.email.strip(), frame.phone.strip()
    if not name:
        raise InvalidMessage("no_name", "please give your name")
    if not email and not phone:
        raise InvalidMessage("no_contact", "please give an email address or a phone number")
    if email and not _EMAIL.match(email):
        raise InvalidMessage("bad_email", f"not an email address: {email}")
    if phone and not _PHONE.match(phone):
        raise InvalidMessage("bad_phone", f"not a phone number: {phone}")
    text = frame.text.strip()
    if not text:
        raise InvalidMessage("empty", "the message is empty")
    contact = " · ".join(part for part in (name, email, phone) if part)
    return f"{text}\n\n— {contact}"
