"""Telephony commands: what process managers and the web layer ask the switch to do.

Subjects `cmd.<tenant>.telephony.<verb>` (`<tenant>` is eventstore.layout's tenant
token); the bridge subscribes to `cmd.*.telephony.>` in a queue group, so several
bridges share the load. Payload: JSON of one Struct tagged by its class name in "type".
Every command carries `command_id`, the id of the decision that caused it (the domain
event's id), so a bridge that gets it twice acts once.

Commands are requests, not history: what the switch did comes back as facts
(connectors.facts), and only those change the domain.
"""

from __future__ import annotations

from typing import Annotated, Final
from uuid import UUID

import msgspec

from eventstore.layout import tenant_token

PREFIX: Final = "cmd"
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Command(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    command_id: NonEmpty
    tenant_id: NonEmpty


class RingAgent(Command, frozen=True, kw_only=True, tag=True):
    """Routing offers a waiting call to an agent: ring their endpoint, bridge on answer."""

    call_id: UUID
    call_ref: str
    agent_id: UUID
    endpoint_kind: str
    # The endpoint's address; for a browser (no address of its own) `webrtc:<agent id>`.
    endpoint_address: str
    ring_timeout_seconds: int


class StopRinging(Command, frozen=True, kw_only=True, tag=True):
    """The offer timed out or was withdrawn: stop ringing the agent's leg."""

    call_id: UUID
    call_ref: str
    agent_id: UUID
    reason: str


class SendToFallback(Command, frozen=True, kw_only=True, tag=True):
    """Nobody can take the call: voicemail, or a message and hang up (queue fallbacks)."""

    call_id: UUID
    call_ref: str
    kind: str  # "voicemail" | "message"
    message: str | None


class Originate(Command, frozen=True, kw_only=True, tag=True):
    """Place an outbound call from a hotline to a number (campaigns, click-to-call)."""

    hotline: str | None
    to_number: str
    agent_id: UUID | None = None
    # With an agent (click-to-call, AX2): their endpoint rings first, then the customer.
    agent_endpoint_kind: str | None = None
    agent_address: str | None = None
    campaign_id: UUID | None = None
    customer_id: UUID | None = None
    attempt: int | None = None


class CallCommand(Command, frozen=True, kw_only=True, tag=True):
    """A command about one live call, named by the switch's call reference."""

    call_ref: NonEmpty


class HoldCall(CallCommand, frozen=True, kw_only=True, tag=True):
    """Put the customer on hold (CC12): they hear hold music, the agent is free to talk."""


class ResumeCall(CallCommand, frozen=True, kw_only=True, tag=True):
    pass


class MuteLeg(CallCommand, frozen=True, kw_only=True, tag=True):
    """Mute a leg's microphone (CC13); the leg still hears the call."""

    leg_id: NonEmpty


class UnmuteLeg(CallCommand, frozen=True, kw_only=True, tag=True):
    leg_id: NonEmpty


class StartRecording(CallCommand, frozen=True, kw_only=True, tag=True):
    """Record the call (AX10): by the tenant's policy, or on an agent's request."""


class StopRecording(CallCommand, frozen=True, kw_only=True, tag=True):
    pass


class HangUpCall(CallCommand, frozen=True, kw_only=True, tag=True):
    """End the call for everyone on it; with `supervisor_id`, a supervisor's force
    hang-up (CC19), which the call's history keeps."""

    cause: str = "NORMAL_CLEARING"
    supervisor_id: UUID | None = None


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """Where a transfer goes: an agent's endpoint, or an outside number (`external`)."""

    agent_id: UUID | None = None
    endpoint_kind: str = "external"
    address: NonEmpty


class TransferCall(CallCommand, frozen=True, kw_only=True, tag=True):
    """Blind transfer (CC14, AX14): the agent on `from_leg_id` leaves at once and the
    customer is connected to the target when it answers."""

    from_leg_id: NonEmpty
    to: Target


class ConsultTransfer(CallCommand, frozen=True, kw_only=True, tag=True):
    """Attended transfer, first half: the customer is held while the agent talks to the
    target on a consult leg."""

    from_leg_id: NonEmpty
    to: Target


class CompleteTransfer(CallCommand, frozen=True, kw_only=True, tag=True):
    """Attended transfer, second half: the target takes the customer, the agent leaves."""


class CancelTransfer(CallCommand, frozen=True, kw_only=True, tag=True):
    """The consult leg is dropped; the agent is back with the customer."""


class ThreeWay(CallCommand, frozen=True, kw_only=True, tag=True):
    """During an attended transfer: the customer, the agent and the consulted party talk
    together in a conference (CC19); the agent may then leave the other two."""


class Supervise(CallCommand, frozen=True, kw_only=True, tag=True):
    """A supervisor listens, whispers to the agent or barges in (CC19); their endpoint is
    rung first, and a second Supervise changes the mode."""

    supervisor_id: UUID
    endpoint_kind: str
    address: str
    mode: str  # listen | whisper | barge


class TakeOver(CallCommand, frozen=True, kw_only=True, tag=True):
    """The supervisor listening in (Supervise first) takes the call from the agent, who
    leaves (CC19)."""

    supervisor_id: UUID


AnyCommand = (
    RingAgent
    | StopRinging
    | SendToFallback
    | Originate
    | HoldCall
    | ResumeCall
    | MuteLeg
    | UnmuteLeg
    | StartRecording
    | StopRecording
    | HangUpCall
    | TransferCall
    | ConsultTransfer
    | CompleteTransfer
    | CancelTransfer
    | ThreeWay
    | Supervise
    | TakeOver
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyCommand)


def subject(tenant_id: str, command: Command) -> str:
    """The subject to send `command` on; `tenant_id` must be the command's own tenant, so
    that no command is routed to another tenant's bridge."""
    if tenant_id != command.tenant_id:
        raise ValueError(
            f"a command of tenant {command.tenant_id!r} is not sent as tenant {tenant_id!r}"
        )
    verb = type(command).__name__.lower()
    return f"{PREFIX}.{tenant_token(tenant_id)}.telephony.{verb}"


def encode(command: Command) -> bytes:
    return _encoder.encode(command)


def decode(payload: bytes) -> AnyCommand:
    return _decoder.decode(payload)
