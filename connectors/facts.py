"""Inbound facts: what connectors and the telephony bridge publish, as msgspec wire types.

A fact is something a channel or the switch reports; a command handler per fact kind
(connectors.bus, connectors.handlers) turns it into a domain command.

Layout, on the JetStream stream `FACTS` (subjects `facts.>`):

| subject | carries |
|---|---|
| `facts.<tenant>.chat` | `ChatMessageReceived` |
| `facts.<tenant>.email` | `EmailReceived` |
| `facts.<tenant>.sms` | `SmsReceived` |
| `facts.<tenant>.facebook` | `FacebookMessageReceived`, `FacebookCommentReceived` |
| `facts.<tenant>.call` | `CallStarted`, `CallQueued`, `CallAgentRinging`, `CallAnswered`, `CallHungUp`, `CallIvrStep`, `CallHeld`, `CallResumed`, `CallMuted`, `CallUnmuted`, `CallRecordingStarted`, `CallRecordingStopped`, `CallTransferred`, `CallTransferRequested`, `CallTransferCompleted`, `CallTransferCancelled`, `CallConferenceJoined`, `CallSupervised`, `CallTakenOver`, `CallForceEnded`, `CallLost` |
| `facts.<tenant>.telephony` | `TelephonyCommandFailed` (a command the switch could not carry out), `CallCampaignOutcome` |
| `facts.parked.<tenant>` | payloads no handler could decode, with the reason (`Parked`) |

- `<tenant>` is the tenant token of eventstore.layout; `parked` is never one (refused by
  `publish_fact`), and unparseable subjects park under `_`.
- Payload: JSON of one Struct, tagged by its class name in `"type"`, so a subject can
  carry a union and a decoder refuses anything else. `at` is timezone-aware.
- Publishers set `Nats-Msg-Id` to `<subject>:<fact_id>`: the server drops a copy sent
  again within the stream's duplicate window (2 minutes); past that window the handlers
  are idempotent by the fact id, for ever. The subject is part of the dedupe id because
  JetStream dedupes stream-wide, and two tenants' sources may well use the same ids.
- `fact_id` is the source's own id: the email Message-ID, the chat frame id, the switch
  event's UUID. It becomes the message id of a conversation, or the `fact_id` of a call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal
from uuid import UUID

import msgspec
from nats.js import JetStreamContext
from nats.js.api import PubAck, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from eventstore.layout import tenant_token

STREAM: Final = "FACTS"
SUBJECTS: Final = "facts.>"
PARKED_PREFIX: Final = "facts.parked"
DUPLICATE_WINDOW: Final = 120.0  # seconds

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Fact(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """What every fact carries: the source's idempotency id, the tenant, the source's time."""

    fact_id: NonEmpty
    tenant_id: NonEmpty
    at: AwareDatetime


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """An attachment's metadata; the bytes are in file storage at `url`."""

    name: str
    content_type: str
    size: int
    url: str


class ChatMessageReceived(Fact, frozen=True, kw_only=True, tag=True):
    """A website visitor wrote in a chat session."""

    visitor_id: NonEmpty
    session_id: NonEmpty
    text: str
    visitor_name: str | None = None
    attachments: list[Attachment] = []


class EmailReceived(Fact, frozen=True, kw_only=True, tag=True):
    """An email to one of the tenant's addresses; `fact_id` is its Message-ID."""

    from_address: NonEmpty
    from_name: str | None = None
    subject: str = ""
    text: str
    in_reply_to: str | None = None
    references: list[str] = []  # oldest first, as in the References header
    attachments: list[Attachment] = []

    @property
    def thread_key(self) -> str:
        """The thread's root Message-ID: the first reference, the parent, or this mail."""
        if self.references:
            return self.references[0]
        return self.in_reply_to or self.fact_id


class SmsReceived(Fact, frozen=True, kw_only=True, tag=True):
    """An SMS from a phone number to one of the tenant's hotlines."""

    from_number: NonEmpty
    hotline: NonEmpty
    text: str


class FacebookMessageReceived(Fact, frozen=True, kw_only=True, tag=True):
    """A Messenger message to one of the tenant's pages."""

    page_id: NonEmpty
    sender_id: NonEmpty
    thread_id: NonEmpty
    text: str
    sender_name: str | None = None
    attachments: list[Attachment] = []


class FacebookCommentReceived(Fact, frozen=True, kw_only=True, tag=True):
    """A comment on a post of one of the tenant's pages; the post is the thread."""

    page_id: NonEmpty
    sender_id: NonEmpty
    post_id: NonEmpty
    text: str
    sender_name: str | None = None


class CallStarted(Fact, frozen=True, kw_only=True, tag=True):
    """The switch created a call; `caller_leg_id` is the channel that placed it.

    Inbound: the caller is the customer. Outbound and internal: the caller is the agent
    `agent_id` on `agent_endpoint` (an EndpointKind value); outbound also names the
    customer's leg `callee_leg_id`. A campaign's dial-out is outbound without an agent:
    `caller_leg_id` is the customer's leg, `callee_number` their number.
    """

    call_ref: NonEmpty
    direction: Literal["inbound", "outbound", "internal"]
    hotline: str | None = None
    caller_number: NonEmpty
    callee_number: str | None = None
    caller_leg_id: NonEmpty
    callee_leg_id: str | None = None
    agent_id: UUID | None = None
    agent_endpoint: str | None = None


class CallQueued(Fact, frozen=True, kw_only=True, tag=True):
    """The dialplan or the IVR put the call in a queue: it waits for routing (CC17)."""

    call_ref: NonEmpty
    queue_id: UUID


class CallAgentRinging(Fact, frozen=True, kw_only=True, tag=True):
    """The switch created a leg to an agent's endpoint and it rings (after a RingAgent)."""

    call_ref: NonEmpty
    leg_id: NonEmpty
    agent_id: UUID
    agent_endpoint: NonEmpty
    address: str = ""


class CallAnswered(Fact, frozen=True, kw_only=True, tag=True):
    call_ref: NonEmpty
    leg_id: NonEmpty


class CallHungUp(Fact, frozen=True, kw_only=True, tag=True):
    call_ref: NonEmpty
    leg_id: NonEmpty
    cause: NonEmpty


class CallIvrStep(Fact, frozen=True, kw_only=True, tag=True):
    """The caller reached an IVR node, with the digits that led there (CC15, AX13)."""

    call_ref: NonEmpty
    flow_id: UUID
    flow_version: int
    node_id: NonEmpty
    digits: str | None = None


class CallHeld(Fact, frozen=True, kw_only=True, tag=True):
    """The customer's leg was put on hold (CC12)."""

    call_ref: NonEmpty


class CallResumed(Fact, frozen=True, kw_only=True, tag=True):
    call_ref: NonEmpty


class CallMuted(Fact, frozen=True, kw_only=True, tag=True):
    """A leg's microphone was muted (CC13): the others stop hearing it."""

    call_ref: NonEmpty
    leg_id: NonEmpty


class CallUnmuted(Fact, frozen=True, kw_only=True, tag=True):
    call_ref: NonEmpty
    leg_id: NonEmpty


class CallRecordingStarted(Fact, frozen=True, kw_only=True, tag=True):
    """The switch began recording the call (AX10); `recording_id` is the file's path."""

    call_ref: NonEmpty
    recording_id: NonEmpty


class CallRecordingStopped(Fact, frozen=True, kw_only=True, tag=True):
    """The recording stopped and its file is complete at `uri` (AX20, AX22)."""

    call_ref: NonEmpty
    recording_id: NonEmpty
    uri: NonEmpty
    duration_seconds: float
    size_bytes: int


class LegInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A leg joining a call: an agent's or a supervisor's endpoint, or an outside number."""

    leg_id: NonEmpty
    party: Literal["agent", "external", "supervisor"]
    user_id: UUID | None = None  # the agent or supervisor
    endpoint: NonEmpty  # an EndpointKind value, or "pstn" for an outside number
    address: str = ""


class CallTransferred(Fact, frozen=True, kw_only=True, tag=True):
    """A blind transfer (CC14, AX14): `from_leg_id` leaves, `to_leg` is dialled for the call."""

    call_ref: NonEmpty
    from_leg_id: NonEmpty
    to_leg: LegInfo


class CallTransferRequested(Fact, frozen=True, kw_only=True, tag=True):
    """An attended transfer began: the customer waits on hold while `consult_leg` is rung."""

    call_ref: NonEmpty
    from_leg_id: NonEmpty
    consult_leg: LegInfo


class CallTransferCompleted(Fact, frozen=True, kw_only=True, tag=True):
    """The consulted party took the customer; the transferring agent left."""

    call_ref: NonEmpty


class CallTransferCancelled(Fact, frozen=True, kw_only=True, tag=True):
    """The consult leg was dropped; the agent is back with the customer."""

    call_ref: NonEmpty


class CallConferenceJoined(Fact, frozen=True, kw_only=True, tag=True):
    """The consulted party joined the customer and the agent in a three-way call."""

    call_ref: NonEmpty
    leg_id: NonEmpty


class CallSupervised(Fact, frozen=True, kw_only=True, tag=True):
    """A supervisor's leg listens, whispers or barges in (CC19); again for a new mode."""

    call_ref: NonEmpty
    supervisor_leg: LegInfo
    mode: Literal["listen", "whisper", "barge"]


class CallLost(Fact, frozen=True, kw_only=True, tag=True):
    """The switch no longer has the call (a built-in switch restarted under it): the call
    is ended with `reason`, so that nobody stays on it, or waits for it, for ever."""

    call_ref: NonEmpty
    reason: NonEmpty


class CallTakenOver(Fact, frozen=True, kw_only=True, tag=True):
    """The supervisor on `leg_id` took the call over from the agent on `from_leg_id`."""

    call_ref: NonEmpty
    leg_id: NonEmpty
    from_leg_id: NonEmpty


class CallForceEnded(Fact, frozen=True, kw_only=True, tag=True):
    """A supervisor hung the call up for everybody (CC19)."""

    call_ref: NonEmpty
    supervisor_id: UUID


class CallCampaignOutcome(Fact, frozen=True, kw_only=True, tag=True):
    """What came of a campaign's call attempt (CC20): the customer answered, or not."""

    campaign_id: UUID
    customer_id: UUID
    attempt: int
    reached: bool
    reason: str = ""


class TelephonyCommandFailed(Fact, frozen=True, kw_only=True, tag=True):
    """The switch could not carry out a telephony command (the call is gone, the agent's
    phone is unreachable...): the error, kept where operators and the UI can see it."""

    command_id: NonEmpty
    command: NonEmpty  # the command's type, e.g. "HoldCall"
    call_ref: str | None = None
    reason: NonEmpty


class Parked(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A payload set aside because it did not decode: kept whole, with why and from where."""

    subject: str
    reason: str
    payload: str  # the original bytes, decoded as UTF-8 with replacement
    at: AwareDatetime


MessageFact = (
    ChatMessageReceived
    | EmailReceived
    | SmsReceived
    | FacebookMessageReceived
    | FacebookCommentReceived
)
CallFact = (
    CallStarted
    | CallQueued
    | CallAgentRinging
    | CallAnswered
    | CallHungUp
    | CallIvrStep
    | CallHeld
    | CallResumed
    | CallMuted
    | CallUnmuted
    | CallRecordingStarted
    | CallRecordingStopped
    | CallTransferred
    | CallTransferRequested
    | CallTransferCompleted
    | CallTransferCancelled
    | CallConferenceJoined
    | CallSupervised
    | CallTakenOver
    | CallForceEnded
    | CallLost
)
TelephonyFact = TelephonyCommandFailed | CallCampaignOutcome
AnyFact = MessageFact | CallFact | TelephonyFact

# The subject token of each kind and the union its subject carries.
KINDS: Final[dict[str, object]] = {
    "chat": ChatMessageReceived,
    "email": EmailReceived,
    "sms": SmsReceived,
    "facebook": FacebookMessageReceived | FacebookCommentReceived,
    "call": CallFact,
    "telephony": TelephonyCommandFailed | CallCampaignOutcome,
}
_KIND_OF: Final[dict[type[Fact], str]] = {
    ChatMessageReceived: "chat",
    EmailReceived: "email",
    SmsReceived: "sms",
    FacebookMessageReceived: "facebook",
    FacebookCommentReceived: "facebook",
    CallStarted: "call",
    CallQueued: "call",
    CallAgentRinging: "call",
    CallAnswered: "call",
    CallHungUp: "call",
    CallIvrStep: "call",
    CallHeld: "call",
    CallResumed: "call",
    CallMuted: "call",
    CallUnmuted: "call",
    CallRecordingStarted: "call",
    CallRecordingStopped: "call",
    CallTransferred: "call",
    CallTransferRequested: "call",
    CallTransferCompleted: "call",
    CallTransferCancelled: "call",
    CallConferenceJoined: "call",
    CallSupervised: "call",
    CallTakenOver: "call",
    CallForceEnded: "call",
    CallLost: "call",
    TelephonyCommandFailed: "telephony",
    CallCampaignOutcome: "telephony",
}


def ordering_key(fact: AnyFact) -> str:
    """What the facts that must be handled in order share: one call, or one thread.

    Facts with different keys may be handled side by side; those of one key are handled
    in the order the stream holds them (an answer after its call's start).
    """
    if isinstance(fact, CallFact):
        return f"call/{fact.call_ref}"
    if isinstance(fact, TelephonyCommandFailed):
        return f"call/{fact.call_ref}" if fact.call_ref else f"command/{fact.command_id}"
    if isinstance(fact, CallCampaignOutcome):
        return f"campaign/{fact.campaign_id}"
    if isinstance(fact, ChatMessageReceived):
        return f"chat/{fact.session_id}"
    if isinstance(fact, EmailReceived):
        return f"email/{fact.thread_key}"
    if isinstance(fact, SmsReceived):
        return f"sms/{fact.hotline}/{fact.from_number}"
    if isinstance(fact, FacebookMessageReceived):
        return f"facebook/{fact.page_id}/{fact.thread_id}"
    return f"facebook/{fact.page_id}/{fact.post_id}"


def subject_for(fact: Fact) -> str:
    """`facts.<tenant>.<kind>` of a fact; refuses a tenant id that is no subject token."""
    tenant = tenant_token(fact.tenant_id)
    if tenant == "parked":
        raise ValueError("'parked' is reserved in the facts subjects")
    return f"facts.{tenant}.{_KIND_OF[type(fact)]}"


def stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=STREAM,
        subjects=[SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW,
        # Facts are inputs, not the record (the event store is): a week covers any outage.
        max_age=7 * 24 * 3600.0,
    )


async def ensure_facts_stream(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the FACTS stream if it is missing; an existing one is left as an operator set it."""
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(stream_config(replicas))


async def publish_fact(js: JetStreamContext, fact: Fact, *, msg_id: str | None = None) -> PubAck:
    """Publish a fact for the handlers, deduplicated by the server on its `fact_id`.

    `msg_id` overrides the dedupe id (tests use it to get past the server's window).
    """
    subject = subject_for(fact)
    return await js.publish(
        subject,
        msgspec.json.encode(fact),
        stream=STREAM,
        headers={"Nats-Msg-Id": msg_id or f"{subject}:{fact.fact_id}"},
    )
