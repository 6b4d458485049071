"""Commands from facts: one handling function per fact kind, no NATS (connectors.bus is).

`handle(fact, apps)` runs the domain verbs a fact calls for and says what came of it:

- `applied`: the fact changed something;
- `duplicate`: it changed nothing (delivered before, or its target state already held);
- `rejected: <reason>`: the domain refused it; delivering it again would not help;
- `deferred: <reason>`: it came before the fact it follows (an answer before the call
  started, which happens when several processes share the work or after a retry): the
  bus delivers it again later.

Inbound messages find their customer by identity and their conversation by thread key
through ids derived from them (Customers.register_for_identity,
Conversations.receive_in_thread), and the fact's id is the message id, so a redelivered
fact records nothing. Telephony facts pass their id as the call verbs' `fact_id`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from connectors.facts import (
    AnyFact,
    Attachment,
    CallAgentRinging,
    CallAnswered,
    CallCampaignOutcome,
    CallConferenceJoined,
    CallFact,
    CallForceEnded,
    CallHeld,
    CallIvrStep,
    CallLost,
    CallMuted,
    CallQueued,
    CallRecordingStarted,
    CallRecordingStopped,
    CallResumed,
    CallStarted,
    CallSupervised,
    CallTakenOver,
    CallTransferCancelled,
    CallTransferCompleted,
    CallTransferred,
    CallTransferRequested,
    CallUnmuted,
    ChatMessageReceived,
    EmailReceived,
    FacebookCommentReceived,
    FacebookMessageReceived,
    LegInfo,
    MessageFact,
    SmsReceived,
    TelephonyCommandFailed,
)
from domain.base import DomainError, NotFound
from domain.call_legs import LegSpec, SupervisionMode
from domain.call_service import Calls
from domain.calls import Call, InvalidCall
from domain.campaigns import Campaigns
from domain.conversations import Conversations
from domain.customers import Customers
from domain.vocabulary import Channel, EndpointKind

APPLIED = "applied"
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class FactApps:
    """The applications the fact handlers drive."""

    customers: Customers
    conversations: Conversations
    calls: Calls
    # Campaign outcomes reported by the bridge; None where a process takes no such facts.
    campaigns: Campaigns | None = None


@dataclass(frozen=True)
class _Inbound:
    """A message fact in the terms of the domain: who, which thread, what."""

    channel: Channel
    identity: tuple[str, str]
    name: str | None
    thread_key: str
    subject: str | None
    body: str
    attachments: list[Attachment]


def handle(fact: AnyFact, apps: FactApps) -> str:
    """Apply one fact; domain refusals become `rejected: …`, never an exception."""
    try:
        if isinstance(fact, TelephonyCommandFailed):
            # Nothing to change: the fact itself, kept in the FACTS stream, is the record.
            return f"rejected: {fact.command} {fact.command_id} failed: {fact.reason}"
        if isinstance(fact, CallCampaignOutcome):
            return _campaign_outcome(fact, apps)
        if isinstance(fact, CallFact):
            return _call(fact, apps.calls)
        return _message(fact, apps)
    except NotFound as error:
        if not isinstance(fact, CallStarted) and isinstance(fact, CallFact):
            return f"deferred: {error}"
        return f"rejected: {type(error).__name__}: {error}"
    except DomainError as error:
        return f"rejected: {type(error).__name__}: {error}"


def _message(fact: MessageFact, apps: FactApps) -> str:
    inbound = _inbound(fact)
    customer_id = apps.customers.register_for_identity(
        fact.tenant_id, *inbound.identity, name=inbound.name
    )
    _, recorded = apps.conversations.receive_in_thread(
        fact.tenant_id,
        inbound.channel,
        inbound.thread_key,
        customer_id,
        fact.fact_id,
        inbound.body,
        [_attachment(a) for a in inbound.attachments],
        subject=inbound.subject,
        at=fact.at,
    )
    return APPLIED if recorded else DUPLICATE


def _inbound(fact: MessageFact) -> _Inbound:
    if isinstance(fact, ChatMessageReceived):
        return _Inbound(
            Channel.CHAT,
            ("chat", fact.visitor_id),
            fact.visitor_name,
            fact.session_id,
            None,
            fact.text,
            fact.attachments,
        )
    if isinstance(fact, EmailReceived):
        return _Inbound(
            Channel.EMAIL,
            ("email", fact.from_address),
            fact.from_name,
            fact.thread_key,
            fact.subject,
            fact.text,
            fact.attachments,
        )
    if isinstance(fact, SmsReceived):
        # One SMS thread per (customer number, hotline): a customer texting two hotlines
        # talks to two parts of the tenant.
        return _Inbound(
            Channel.SMS,
            ("phone", fact.from_number),
            None,
            f"{fact.hotline}/{fact.from_number}",
            None,
            fact.text,
            [],
        )
    if isinstance(fact, FacebookMessageReceived):
        return _Inbound(
            Channel.MESSENGER,
            ("facebook", fact.sender_id),
            fact.sender_name,
            f"{fact.page_id}/{fact.thread_id}",
            None,
            fact.text,
            fact.attachments,
        )
    if isinstance(fact, FacebookCommentReceived):
        return _Inbound(
            Channel.FACEBOOK_COMMENT,
            ("facebook", fact.sender_id),
            fact.sender_name,
            f"{fact.page_id}/{fact.post_id}",
            None,
            fact.text,
            [],
        )
    raise TypeError(f"not a message fact: {type(fact).__name__}")


def _attachment(attachment: Attachment) -> dict[str, Any]:
    return {
        "name": attachment.name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "url": attachment.url,
    }


def _call(fact: CallFact, calls: Calls) -> str:
    tenant = fact.tenant_id
    call_id = Call.create_id(tenant, fact.call_ref.strip())
    if isinstance(fact, CallStarted):
        if call_id in calls.repository:
            calls.get_owned(tenant, call_id, Call)  # another tenant's id is not found
            return DUPLICATE
        _start_call(fact, calls)
        return APPLIED
    command: Callable[[Call], object]
    if isinstance(fact, CallQueued):
        command = partial(Call.offer_to_queue, queue_id=fact.queue_id, at=fact.at)
    elif isinstance(fact, CallAgentRinging):
        if fact.agent_endpoint not in set(EndpointKind):
            raise InvalidCall(f"an agent's endpoint kind is one of {', '.join(EndpointKind)}")
        leg = LegSpec.agent(
            fact.leg_id, fact.agent_id, EndpointKind(fact.agent_endpoint), fact.address
        )
        command = partial(Call.ring_agent, leg=leg, at=fact.at)
    elif isinstance(fact, CallAnswered):
        command = partial(Call.answer, leg_id=fact.leg_id, at=fact.at)
    elif isinstance(fact, CallIvrStep):
        command = partial(
            Call.ivr_step,
            flow_id=fact.flow_id,
            flow_version=fact.flow_version,
            node_id=fact.node_id,
            digits=fact.digits,
            at=fact.at,
        )
    elif isinstance(fact, CallHeld):
        command = partial(Call.hold, at=fact.at)
    elif isinstance(fact, CallResumed):
        command = partial(Call.resume, at=fact.at)
    elif isinstance(fact, CallMuted):
        command = partial(Call.mute, leg_id=fact.leg_id, at=fact.at)
    elif isinstance(fact, CallUnmuted):
        command = partial(Call.unmute, leg_id=fact.leg_id, at=fact.at)
    elif isinstance(fact, CallRecordingStarted):
        command = partial(Call.start_recording, recording_id=fact.recording_id, at=fact.at)
    elif isinstance(fact, CallRecordingStopped):
        command = partial(_stop_and_store, fact)
    elif isinstance(fact, CallTransferred):
        command = partial(
            Call.transfer_blind, from_leg_id=fact.from_leg_id, to=_leg(fact.to_leg), at=fact.at
        )
    elif isinstance(fact, CallTransferRequested):
        command = partial(
            Call.transfer_attended_begin,
            from_leg_id=fact.from_leg_id,
            consult=_leg(fact.consult_leg),
            at=fact.at,
        )
    elif isinstance(fact, CallTransferCompleted):
        command = partial(Call.transfer_attended_complete, at=fact.at)
    elif isinstance(fact, CallTransferCancelled):
        command = partial(Call.transfer_attended_cancel, at=fact.at)
    elif isinstance(fact, CallConferenceJoined):
        command = partial(Call.join_conference, leg_id=fact.leg_id, at=fact.at)
    elif isinstance(fact, CallSupervised):
        command = partial(
            Call.supervise,
            supervisor=_leg(fact.supervisor_leg),
            mode=SupervisionMode(fact.mode),
            at=fact.at,
        )
    elif isinstance(fact, CallTakenOver):
        command = partial(
            Call.take_over, supervisor_leg_id=fact.leg_id, from_leg_id=fact.from_leg_id, at=fact.at
        )
    elif isinstance(fact, CallLost):
        command = partial(_end_if_live, cause=fact.reason, at=fact.at)
    elif isinstance(fact, CallForceEnded):
        command = partial(Call.force_end, supervisor_id=fact.supervisor_id, at=fact.at)
    else:
        command = partial(Call.hang_up, leg_id=fact.leg_id, cause=fact.cause, at=fact.at)
    # The call verbs are idempotent; whether the fact recorded anything says whether it
    # was new.
    recorded = calls.record(tenant, call_id, Call, partial(command, fact_id=fact.fact_id))
    return APPLIED if recorded else DUPLICATE


def _end_if_live(call: Call, cause: str, at: datetime, fact_id: str) -> None:
    if not call.ended:
        call.end(cause, at, fact_id=fact_id)


def _leg(info: LegInfo) -> LegSpec:
    if info.party == "external":
        return LegSpec.external(info.leg_id, info.address)
    if info.user_id is None or info.endpoint not in set(EndpointKind):
        raise InvalidCall(
            f"an {info.party}'s leg needs their id and an endpoint kind ({', '.join(EndpointKind)})"
        )
    if info.party == "supervisor":
        return LegSpec.supervisor(
            info.leg_id, info.user_id, EndpointKind(info.endpoint), info.address
        )
    return LegSpec.agent(info.leg_id, info.user_id, EndpointKind(info.endpoint), info.address)


def _campaign_outcome(fact: CallCampaignOutcome, apps: FactApps) -> str:
    if apps.campaigns is None:
        return "deferred: this process takes no campaign outcomes"
    campaigns, args = apps.campaigns, (fact.tenant_id, fact.campaign_id, fact.customer_id)
    before = campaigns.get(fact.tenant_id, fact.campaign_id)["version"]
    if fact.reached:
        campaigns.reached(*args, fact.attempt, fact.at)
    else:
        campaigns.failed(*args, fact.attempt, fact.reason or "not reached", fact.at)
    after = campaigns.get(fact.tenant_id, fact.campaign_id)["version"]
    return APPLIED if after != before else DUPLICATE


def _stop_and_store(fact: CallRecordingStopped, call: Call, fact_id: str) -> None:
    # One fact, two events: the stop (if the hang-up did not stop it already) and where
    # the file is, with what a search needs about it.
    call.stop_recording(fact.recording_id, fact.at, fact_id=f"{fact_id}:stop")
    call.store_recording(
        fact.recording_id,
        fact.uri,
        fact.duration_seconds,
        fact.size_bytes,
        fact.at,
        metadata={"call_ref": fact.call_ref},
        fact_id=fact_id,
    )


def _start_call(fact: CallStarted, calls: Calls) -> UUID:
    tenant, ref, at = fact.tenant_id, fact.call_ref, fact.at
    if fact.direction == "inbound":
        customer = LegSpec.customer(fact.caller_leg_id, fact.caller_number)
        return calls.start_inbound(tenant, ref, fact.hotline or "", customer, at)
    if fact.direction == "internal":
        return calls.start_internal(tenant, ref, _agent_leg(fact), at)
    if fact.agent_id is None and fact.agent_endpoint is None:
        # A campaign's dial-out: the customer's leg is the caller's leg.
        customer = LegSpec.customer(fact.caller_leg_id, fact.callee_number or fact.caller_number)
        return calls.start_outbound(tenant, ref, fact.hotline or "", None, customer, at)
    agent = _agent_leg(fact)
    if not fact.callee_leg_id or not fact.callee_number:
        raise InvalidCall("an outbound call needs the customer's leg id and number")
    customer = LegSpec.customer(fact.callee_leg_id, fact.callee_number)
    return calls.start_outbound(tenant, ref, fact.hotline or "", agent, customer, at)


def _agent_leg(fact: CallStarted) -> LegSpec:
    if fact.agent_id is None or fact.agent_endpoint not in set(EndpointKind):
        raise InvalidCall(
            f"a {fact.direction} call needs the agent's id and endpoint kind "
            f"({', '.join(EndpointKind)})"
        )
    endpoint = EndpointKind(fact.agent_endpoint)
    return LegSpec.agent(fact.caller_leg_id, fact.agent_id, endpoint, fact.caller_number)
