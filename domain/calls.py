"""Calls (CC1, CC4, CC12-CC14, CC19, AX7, AX10, AX14): one call, its legs, and what happened.

A `Call` records what the switch reports, in the switch's own time. The telephony bridge
turns each switch event into a fact and each fact into one command here, passing the
fact's time as `at` (never the wall clock, so a replay or a test gives the same answer)
and the fact's idempotency id as `fact_id` (so a redelivered fact changes nothing).
Besides the fact id, the commands whose target state is obvious are naturally idempotent:
answering an answered leg, holding a held call or ringing a leg already ringing is a no-op.

A leg is one channel on the switch: the customer, an agent, an external number, a
supervisor. The call is *answered* when a leg other than the one that placed it answers;
it *ends* when the customer leaves (an inbound call left before an answer is Abandoned),
when the caller gives up before an answer, when fewer than two parties are left on an
answered call (supervisors do not count), when the PBX ends it (IVR hang-up, closed
queue), or when a supervisor forces it. `Ended` is always the last event. Billing (PR4,
PR6), the call log (AX16) and recording search (AX20) read `Call.usage()`, the legs and
the recordings.

The values a call is made of (legs, recordings, usage) live in domain.call_legs; the
`Calls` application, the verbs the telephony bridge and supervisors use, in
domain.call_service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.base import DomainError, TenantAggregate
from domain.call_legs import (
    PSTN,
    CallUsage,
    IvrStep,
    Leg,
    LegSpec,
    PartyKind,
    Recording,
    SupervisionMode,
    TransferKind,
    leg_usage,
    seconds_between,
)
from domain.checks import aware, checked_text
from domain.ivr import DTMF
from domain.vocabulary import Direction, EndpointKind

# Phone-number endpoints: the only ones for which on-net/off-net means anything (PR4, PR6).
_NUMBER_ENDPOINTS = frozenset({PSTN, EndpointKind.MOBILE.value})
_ENDPOINTS = frozenset({PSTN, *(e.value for e in EndpointKind)})

# Call ids derive from the switch's call id, so starting the same call twice is a no-op.
_CALL_ID_NAMESPACE = UUID("5b1f0e43-7c1d-4a0e-9a57-3f3c1c0a6c11")


class InvalidCall(DomainError):
    """A call command with values the domain does not accept."""


class CallEnded(DomainError):
    """The call has ended: nothing more can happen on it."""


class CallNotEnded(DomainError):
    """Usage is only final once the call has ended."""


class CallNotAnswered(DomainError):
    """The command needs a call somebody has answered (hold, mute, transfer, supervise)."""


class CallAlreadyAnswered(DomainError):
    """The command only makes sense before the call is answered (queueing, ringing)."""


class CallNotHeld(DomainError):
    """Resume asked for a call that is not on hold."""


class UnknownLeg(DomainError):
    """No leg with this id on the call."""


class DuplicateLeg(DomainError):
    """A different leg already has this id."""


class LegEnded(DomainError):
    """The leg has already left the call."""


class LegNotMuted(DomainError):
    """Unmute asked for a leg that is not muted."""


class TransferInProgress(DomainError):
    """An attended transfer is already consulting; complete or cancel it first."""


class NoTransferInProgress(DomainError):
    """Complete, cancel or conference asked for while no attended transfer is consulting."""


class ConsultNotAnswered(DomainError):
    """An attended transfer completes (or conferences) only once the consult leg answered."""


class NoSuchRecording(DomainError):
    """No recording with this id on the call."""


class RecordingNotStopped(DomainError):
    """A recording is stored only after it stopped."""


class NotSupervising(DomainError):
    """The leg is not a supervisor currently on the call."""


class NotOnCall(DomainError):
    """Only someone who has been on the call may write a note on it."""


# A call note is a few lines for the next person who talks with the customer (CC6).
MAX_CALL_NOTE = 2000


@dataclass(frozen=True, slots=True)
class CallNote:
    author_id: UUID
    body: str
    at: datetime


class Call(TenantAggregate):
    """One call on a tenant's virtual PBX, from the first channel to the last hang-up."""

    class Started(TenantAggregate.Created):
        tenant_id: str
        call_ref: str
        direction: str
        hotline: str | None
        customer_number: str | None
        legs: list[dict[str, Any]]
        at: datetime

    class CallEvent(TenantAggregate.Event):
        """Every event after Started: the switch's time, and the fact it came from.

        The mutators take `fact_id` only so that the event carries it; this `apply`,
        which runs after each mutator, is the one place that remembers it.
        """

        at: datetime
        fact_id: str | None

        def apply(self, aggregate: Any) -> None:
            if self.fact_id is not None:
                aggregate.seen_facts.add(self.fact_id)

    class Offered(CallEvent):
        queue_id: UUID

    class IvrStepTaken(CallEvent):
        flow_id: UUID
        flow_version: int
        node_id: str
        digits: str | None

    class AgentRang(CallEvent):
        leg: dict[str, Any]

    class Answered(CallEvent):
        """A leg answered; the call itself is answered by the first non-caller leg."""

        leg_id: str

    class Held(CallEvent):
        """The other party (the customer, on a customer call) is on hold (CC12)."""

    class Resumed(CallEvent):
        """The held party is back in the conversation."""

    class Muted(CallEvent):
        leg_id: str

    class Unmuted(CallEvent):
        leg_id: str

    class TransferRequested(CallEvent):
        """An attended transfer began: the consult leg is ringing its target."""

        from_leg_id: str
        consult_leg: dict[str, Any]

    class Transferred(CallEvent):
        """The transferring leg left and `to_leg` took its place (blind or attended)."""

        kind: str
        from_leg_id: str
        to_leg: dict[str, Any]

    class TransferCancelled(CallEvent):
        consult_leg_id: str

    class ConferenceJoined(CallEvent):
        leg_id: str

    class RecordingStarted(CallEvent):
        recording_id: str

    class RecordingStopped(CallEvent):
        recording_id: str

    class RecordingStored(CallEvent):
        recording_id: str
        uri: str
        duration_seconds: float
        size_bytes: int
        metadata: dict[str, str]

    class SupervisionStarted(CallEvent):
        leg: dict[str, Any]
        mode: str

    class SupervisionModeChanged(CallEvent):
        leg_id: str
        mode: str

    class SupervisionEnded(CallEvent):
        leg_id: str

    class TakenOver(CallEvent):
        """A supervisor listening in takes the call over (CC19): their leg talks with the
        customer from now on, as the agent's did, and the agent's leg leaves."""

        leg_id: str
        from_leg_id: str

    class LegHungUp(CallEvent):
        """One leg left and the call goes on (a rung agent who did not answer, say)."""

        leg_id: str
        cause: str

    class Abandoned(CallEvent):
        """An inbound caller hung up before an answer (CC17); `Ended` follows."""

        queue_id: UUID | None
        waited_seconds: float
        queued_seconds: float

    class ForceEnded(CallEvent):
        """A supervisor hung the call up for everybody (CC19); `Ended` follows."""

        supervisor_id: UUID

    class Ended(CallEvent):
        """The call is over for every leg; `by_leg_id` is None when nobody hung up."""

        by_leg_id: str | None
        cause: str

    class NoteAdded(CallEvent):
        """Someone who was on the call wrote a note about it (CC6), during or after it."""

        author_id: UUID
        body: str

    @staticmethod
    def create_id(tenant_id: str, call_ref: str) -> UUID:
        return uuid5(_CALL_ID_NAMESPACE, f"{tenant_id}/{call_ref}")

    @event(Started)
    def __init__(
        self,
        tenant_id: str,
        call_ref: str,
        direction: str,
        hotline: str | None,
        customer_number: str | None,
        legs: list[dict[str, Any]],
        at: datetime,
    ) -> None:
        self.tenant_id = tenant_id
        self.call_ref = call_ref
        self.direction = Direction(direction)
        self.hotline = hotline
        self.customer_number = customer_number
        self.started_at = at
        self.legs: dict[str, Leg] = {}
        for data in legs:
            self._add_leg(LegSpec.from_event(data), at)
        # The first leg placed the call; the call is answered when another leg answers.
        self.origin_leg_id = LegSpec.from_event(legs[0]).leg_id
        self.queue_id: UUID | None = None
        self.queues: list[UUID] = []
        self.offered_at: datetime | None = None
        self.ivr_path: list[IvrStep] = []
        self.answered_at: datetime | None = None
        self.answered_leg_id: str | None = None
        self.held_since: datetime | None = None
        self.hold_seconds = 0.0
        self.consulting: tuple[str, str] | None = None  # (transferor leg, consult leg)
        self.transfers: list[tuple[TransferKind, str, str]] = []  # (kind, from, to)
        self.conference_leg_ids: list[str] = []
        self.recordings: dict[str, Recording] = {}
        self.supervision: dict[str, SupervisionMode] = {}
        self.abandoned = False
        self.forced_by: UUID | None = None
        self.ended_at: datetime | None = None
        self.ended_by_leg_id: str | None = None
        self.end_cause: str | None = None
        self.notes: list[CallNote] = []
        self.seen_facts: set[str] = set()

    # Starting: one constructor per direction, each validating before the event.

    @classmethod
    def start_inbound(
        cls, tenant_id: str, call_ref: str, hotline: str, customer: LegSpec, at: datetime
    ) -> Call:
        """A customer calls the tenant's hotline (AX1); agents see the customer's number (AX7)."""
        customer = _valid_leg(customer, {PartyKind.CUSTOMER})
        return cls(
            tenant_id=tenant_id,
            call_ref=checked_text(call_ref, "a call ref", 200, InvalidCall),
            direction=Direction.INBOUND.value,
            hotline=checked_text(hotline, "a hotline", 200, InvalidCall),
            customer_number=customer.address,
            legs=[customer.to_event()],
            at=aware(at, InvalidCall),
        )

    @classmethod
    def start_outbound(
        cls,
        tenant_id: str,
        call_ref: str,
        hotline: str,
        agent: LegSpec | None,
        customer: LegSpec,
        at: datetime,
    ) -> Call:
        """An agent calls a customer; the customer sees the hotline (AX2, AX9).

        Without an agent it is a campaign's dial-out (CC20): the customer is called first
        and, once they answer, the call is routed like an inbound one; it counts as
        answered when an agent answers it.
        """
        customer = _valid_leg(customer, {PartyKind.CUSTOMER})
        legs = [customer.to_event()]
        if agent is not None:
            agent = _valid_leg(agent, {PartyKind.AGENT})
            if agent.leg_id == customer.leg_id:
                raise DuplicateLeg("the agent's and the customer's legs need different ids")
            legs.insert(0, agent.to_event())
        return cls(
            tenant_id=tenant_id,
            call_ref=checked_text(call_ref, "a call ref", 200, InvalidCall),
            direction=Direction.OUTBOUND.value,
            hotline=checked_text(hotline, "a hotline", 200, InvalidCall),
            customer_number=customer.address,
            legs=legs,
            at=aware(at, InvalidCall),
        )

    @classmethod
    def start_internal(cls, tenant_id: str, call_ref: str, caller: LegSpec, at: datetime) -> Call:
        """One user calls another inside the tenant (CC1, AX8); the callee is rung next."""
        caller = _valid_leg(caller, {PartyKind.AGENT})
        return cls(
            tenant_id=tenant_id,
            call_ref=checked_text(call_ref, "a call ref", 200, InvalidCall),
            direction=Direction.INTERNAL.value,
            hotline=None,
            customer_number=None,
            legs=[caller.to_event()],
            at=aware(at, InvalidCall),
        )

    # Mutators: the only code that changes state, each applying one event.

    def _add_leg(self, spec: LegSpec, at: datetime) -> None:
        self.legs[spec.leg_id] = Leg(spec=spec, created_at=at)

    def _end_leg(self, leg_id: str, cause: str, at: datetime) -> None:
        leg = self.legs[leg_id]
        if leg.live:
            leg.ended_at, leg.end_cause = at, cause
        self.supervision.pop(leg_id, None)
        if self.consulting is not None and leg_id in self.consulting:
            self.consulting = None

    def _stop_holding(self, at: datetime) -> None:
        if self.held_since is not None:
            self.hold_seconds += seconds_between(self.held_since, at)
            self.held_since = None

    @event(Offered)
    def _offer(self, queue_id: UUID, at: datetime, fact_id: str | None) -> None:
        self.queue_id = queue_id
        self.queues.append(queue_id)
        if self.offered_at is None:
            self.offered_at = at

    @event(IvrStepTaken)
    def _take_ivr_step(
        self,
        flow_id: UUID,
        flow_version: int,
        node_id: str,
        digits: str | None,
        at: datetime,
        fact_id: str | None,
    ) -> None:
        self.ivr_path.append(IvrStep(flow_id, flow_version, node_id, digits, at))

    @event(AgentRang)
    def _ring_agent(self, leg: dict[str, Any], at: datetime, fact_id: str | None) -> None:
        self._add_leg(LegSpec.from_event(leg), at)

    @event(Answered)
    def _answer(self, leg_id: str, at: datetime, fact_id: str | None) -> None:
        leg = self.legs[leg_id]
        leg.answered_at = at
        if self.answered_at is None and leg_id != self.origin_leg_id:
            self.answered_at, self.answered_leg_id = at, leg_id

    @event(Held)
    def _hold(self, at: datetime, fact_id: str | None) -> None:
        self.held_since = at

    @event(Resumed)
    def _resume(self, at: datetime, fact_id: str | None) -> None:
        self._stop_holding(at)

    @event(Muted)
    def _mute(self, leg_id: str, at: datetime, fact_id: str | None) -> None:
        self.legs[leg_id].muted = True

    @event(Unmuted)
    def _unmute(self, leg_id: str, at: datetime, fact_id: str | None) -> None:
        self.legs[leg_id].muted = False

    @event(TransferRequested)
    def _request_transfer(
        self, from_leg_id: str, consult_leg: dict[str, Any], at: datetime, fact_id: str | None
    ) -> None:
        consult = LegSpec.from_event(consult_leg)
        self._add_leg(consult, at)
        self.consulting = (from_leg_id, consult.leg_id)

    @event(Transferred)
    def _transfer(
        self,
        kind: str,
        from_leg_id: str,
        to_leg: dict[str, Any],
        at: datetime,
        fact_id: str | None,
    ) -> None:
        target = LegSpec.from_event(to_leg)
        if target.leg_id not in self.legs:
            self._add_leg(target, at)
        self.consulting = None
        self._end_leg(from_leg_id, "transferred", at)
        # Whoever put the customer on hold has left: the customer now talks to the target.
        self._stop_holding(at)
        self.transfers.append((TransferKind(kind), from_leg_id, target.leg_id))

    @event(TransferCancelled)
    def _cancel_transfer(self, consult_leg_id: str, at: datetime, fact_id: str | None) -> None:
        self._end_leg(consult_leg_id, "transfer_cancelled", at)

    @event(ConferenceJoined)
    def _join_conference(self, leg_id: str, at: datetime, fact_id: str | None) -> None:
        self.consulting = None
        self.conference_leg_ids.append(leg_id)
        self._stop_holding(at)

    @event(RecordingStarted)
    def _start_recording(self, recording_id: str, at: datetime, fact_id: str | None) -> None:
        self.recordings[recording_id] = Recording(recording_id=recording_id, started_at=at)

    @event(RecordingStopped)
    def _stop_recording(self, recording_id: str, at: datetime, fact_id: str | None) -> None:
        self.recordings[recording_id].stopped_at = at

    @event(RecordingStored)
    def _store_recording(
        self,
        recording_id: str,
        uri: str,
        duration_seconds: float,
        size_bytes: int,
        metadata: dict[str, str],
        at: datetime,
        fact_id: str | None,
    ) -> None:
        recording = self.recordings[recording_id]
        recording.uri = uri
        recording.duration_seconds = duration_seconds
        recording.size_bytes = size_bytes
        recording.metadata = dict(metadata)

    @event(SupervisionStarted)
    def _start_supervision(
        self, leg: dict[str, Any], mode: str, at: datetime, fact_id: str | None
    ) -> None:
        spec = LegSpec.from_event(leg)
        self._add_leg(spec, at)
        self.supervision[spec.leg_id] = SupervisionMode(mode)

    @event(SupervisionModeChanged)
    def _change_supervision(
        self, leg_id: str, mode: str, at: datetime, fact_id: str | None
    ) -> None:
        self.supervision[leg_id] = SupervisionMode(mode)

    @event(SupervisionEnded)
    def _end_supervision(self, leg_id: str, at: datetime, fact_id: str | None) -> None:
        self._end_leg(leg_id, "supervision_ended", at)

    @event(TakenOver)
    def _take_over(self, leg_id: str, from_leg_id: str, at: datetime, fact_id: str | None) -> None:
        self.supervision.pop(leg_id, None)
        leg = self.legs[leg_id]
        # From now on a talking party like the agent: the call ends when it leaves.
        leg.spec = replace(leg.spec, party=PartyKind.AGENT)
        self._end_leg(from_leg_id, "taken_over", at)

    @event(NoteAdded)
    def _add_note(self, author_id: UUID, body: str, at: datetime, fact_id: str | None) -> None:
        self.notes.append(CallNote(author_id=author_id, body=body, at=at))

    @event(LegHungUp)
    def _hang_up_leg(self, leg_id: str, cause: str, at: datetime, fact_id: str | None) -> None:
        self._end_leg(leg_id, cause, at)

    @event(Abandoned)
    def _abandon(
        self,
        queue_id: UUID | None,
        waited_seconds: float,
        queued_seconds: float,
        at: datetime,
        fact_id: str | None,
    ) -> None:
        self.abandoned = True

    @event(ForceEnded)
    def _force_end(self, supervisor_id: UUID, at: datetime, fact_id: str | None) -> None:
        self.forced_by = supervisor_id

    @event(Ended)
    def _end(self, by_leg_id: str | None, cause: str, at: datetime, fact_id: str | None) -> None:
        self._stop_holding(at)
        for leg_id in self.legs:
            self._end_leg(leg_id, cause, at)
        for recording in self.recordings.values():
            if recording.stopped_at is None:
                recording.stopped_at = at
        self.ended_at, self.ended_by_leg_id, self.end_cause = at, by_leg_id, cause

    # Commands: validate, stay silent on what already happened, then apply an event.

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def held(self) -> bool:
        return self.held_since is not None

    def offer_to_queue(self, queue_id: UUID, at: datetime, fact_id: str | None = None) -> None:
        """The call waits in a queue (CC17); offering it to another queue is an overflow."""
        if self._seen(fact_id):
            return
        self._require_not_answered()
        if queue_id != self.queue_id:
            self._offer(queue_id=queue_id, at=aware(at, InvalidCall), fact_id=fact_id)

    def ivr_step(
        self,
        flow_id: UUID,
        flow_version: int,
        node_id: str,
        digits: str | None,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        """The caller reached an IVR node, with the digits they pressed to get there (CC15)."""
        if self._seen(fact_id):
            return
        self._require_live()
        if digits is not None and (not digits or not set(digits) <= DTMF):
            raise InvalidCall(f"DTMF digits must be some of {''.join(sorted(DTMF))}")
        if flow_version < 1:
            raise InvalidCall("an IVR flow version starts at 1")
        self._take_ivr_step(
            flow_id=flow_id,
            flow_version=flow_version,
            node_id=checked_text(node_id, "an IVR node id", 200, InvalidCall),
            digits=digits,
            at=aware(at, InvalidCall),
            fact_id=fact_id,
        )

    def ring_agent(self, leg: LegSpec, at: datetime, fact_id: str | None = None) -> None:
        """An agent's endpoint rings for this call (routing's offer reached the switch)."""
        leg = _valid_leg(leg, {PartyKind.AGENT})
        if self._seen(fact_id) or self._known(leg):
            return
        self._require_not_answered()
        self._ring_agent(leg=leg.to_event(), at=aware(at, InvalidCall), fact_id=fact_id)

    def answer(self, leg_id: str, at: datetime, fact_id: str | None = None) -> None:
        """A leg answered; the first answer by a leg other than the caller's answers the call."""
        if self._seen(fact_id):
            return
        self._require_live()
        leg = self._live_leg(leg_id)
        if leg.answered_at is None:
            self._answer(leg_id=leg_id, at=aware(at, InvalidCall), fact_id=fact_id)

    def hold(self, at: datetime, fact_id: str | None = None) -> None:
        """The customer (the other party, on an internal call) is put on hold (CC12)."""
        if self._seen(fact_id):
            return
        self._require_answered()
        if not self.held:
            self._hold(at=aware(at, InvalidCall), fact_id=fact_id)

    def resume(self, at: datetime, fact_id: str | None = None) -> None:
        if self._seen(fact_id):
            return
        self._require_answered()
        if not self.held:
            raise CallNotHeld("the call is not on hold")
        self._resume(at=aware(at, InvalidCall), fact_id=fact_id)

    def mute(self, leg_id: str, at: datetime, fact_id: str | None = None) -> None:
        """The leg's microphone is muted (CC13): the others stop hearing it."""
        if self._seen(fact_id):
            return
        self._require_answered()
        if not self._live_leg(leg_id).muted:
            self._mute(leg_id=leg_id, at=aware(at, InvalidCall), fact_id=fact_id)

    def unmute(self, leg_id: str, at: datetime, fact_id: str | None = None) -> None:
        if self._seen(fact_id):
            return
        self._require_answered()
        if not self._live_leg(leg_id).muted:
            raise LegNotMuted(f"leg {leg_id} is not muted")
        self._unmute(leg_id=leg_id, at=aware(at, InvalidCall), fact_id=fact_id)

    def transfer_blind(
        self, from_leg_id: str, to: LegSpec, at: datetime, fact_id: str | None = None
    ) -> None:
        """The agent sends the call on to another agent or an outside number and leaves (CC14)."""
        to = _valid_leg(to, {PartyKind.AGENT, PartyKind.EXTERNAL})
        if self._seen(fact_id) or self._known(to):
            return
        self._require_transfer_from(from_leg_id)
        self._transfer(
            kind=TransferKind.BLIND.value,
            from_leg_id=from_leg_id,
            to_leg=to.to_event(),
            at=aware(at, InvalidCall),
            fact_id=fact_id,
        )

    def transfer_attended_begin(
        self, from_leg_id: str, consult: LegSpec, at: datetime, fact_id: str | None = None
    ) -> None:
        """The agent calls the transfer target first (the consult leg) to introduce the call."""
        consult = _valid_leg(consult, {PartyKind.AGENT, PartyKind.EXTERNAL})
        if self._seen(fact_id) or self._known(consult):
            return
        self._require_transfer_from(from_leg_id)
        self._request_transfer(
            from_leg_id=from_leg_id,
            consult_leg=consult.to_event(),
            at=aware(at, InvalidCall),
            fact_id=fact_id,
        )

    def transfer_attended_complete(self, at: datetime, fact_id: str | None = None) -> None:
        """The consulted party takes the call; the transferring agent leaves."""
        if self._seen(fact_id):
            return
        from_leg_id, consult_leg_id = self._answered_consult()
        self._transfer(
            kind=TransferKind.ATTENDED.value,
            from_leg_id=from_leg_id,
            to_leg=self.legs[consult_leg_id].spec.to_event(),
            at=aware(at, InvalidCall),
            fact_id=fact_id,
        )

    def transfer_attended_cancel(self, at: datetime, fact_id: str | None = None) -> None:
        """The agent drops the consult leg and stays with the customer."""
        if self._seen(fact_id):
            return
        self._require_live()
        if self.consulting is None:
            raise NoTransferInProgress("no attended transfer is consulting")
        self._cancel_transfer(
            consult_leg_id=self.consulting[1], at=aware(at, InvalidCall), fact_id=fact_id
        )

    def join_conference(self, leg_id: str, at: datetime, fact_id: str | None = None) -> None:
        """The consult leg joins the agent and the customer in a three-way call (CC19)."""
        if self._seen(fact_id) or leg_id in self.conference_leg_ids:
            return
        _, consult_leg_id = self._answered_consult()
        if leg_id != consult_leg_id:
            raise NoTransferInProgress(f"leg {leg_id} is not the consult leg")
        self._join_conference(leg_id=leg_id, at=aware(at, InvalidCall), fact_id=fact_id)

    def start_recording(self, recording_id: str, at: datetime, fact_id: str | None = None) -> None:
        """The switch started recording the call (AX10)."""
        if self._seen(fact_id) or recording_id in self.recordings:
            return
        self._require_live()
        self._start_recording(
            recording_id=checked_text(recording_id, "a recording id", 200, InvalidCall),
            at=aware(at, InvalidCall),
            fact_id=fact_id,
        )

    def stop_recording(self, recording_id: str, at: datetime, fact_id: str | None = None) -> None:
        # The switch reports a stop after the hang-up too: the end already stopped it.
        if self._seen(fact_id) or self._recording(recording_id).stopped_at is not None:
            return
        self._stop_recording(recording_id=recording_id, at=aware(at, InvalidCall), fact_id=fact_id)

    def store_recording(
        self,
        recording_id: str,
        uri: str,
        duration_seconds: float,
        size_bytes: int,
        at: datetime,
        metadata: Mapping[str, str] | None = None,
        fact_id: str | None = None,
    ) -> None:
        """The recording's file is stored (AX20, AX22); allowed after the call ended."""
        if self._seen(fact_id):
            return
        recording = self._recording(recording_id)
        if recording.stopped_at is None:
            raise RecordingNotStopped(f"recording {recording_id} is still running")
        if recording.uri == uri:
            return
        if duration_seconds < 0 or size_bytes < 0:
            raise InvalidCall("a recording's duration and size cannot be negative")
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        self._store_recording(
            recording_id=recording_id,
            uri=checked_text(uri, "a recording uri", 200, InvalidCall),
            duration_seconds=float(duration_seconds),
            size_bytes=int(size_bytes),
            metadata=meta,
            at=aware(at, InvalidCall),
            fact_id=fact_id,
        )

    def supervise(
        self,
        supervisor: LegSpec,
        mode: SupervisionMode,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        """A supervisor listens, whispers to the agent or barges in (CC19); again to switch mode."""
        supervisor = _valid_leg(supervisor, {PartyKind.SUPERVISOR})
        mode = SupervisionMode(mode)
        if self._seen(fact_id):
            return
        self._require_answered()
        if supervisor.leg_id in self.supervision:
            if self.supervision[supervisor.leg_id] != mode:
                self._change_supervision(
                    leg_id=supervisor.leg_id,
                    mode=mode.value,
                    at=aware(at, InvalidCall),
                    fact_id=fact_id,
                )
            return
        if self._known(supervisor):
            raise NotSupervising(f"leg {supervisor.leg_id} has left the call")
        self._start_supervision(
            leg=supervisor.to_event(), mode=mode.value, at=aware(at, InvalidCall), fact_id=fact_id
        )

    def end_supervision(self, leg_id: str, at: datetime, fact_id: str | None = None) -> None:
        if self._seen(fact_id):
            return
        self._require_live()
        if leg_id not in self.supervision:
            raise NotSupervising(f"leg {leg_id} is not supervising this call")
        self._end_supervision(leg_id=leg_id, at=aware(at, InvalidCall), fact_id=fact_id)

    def take_over(
        self, supervisor_leg_id: str, from_leg_id: str, at: datetime, fact_id: str | None = None
    ) -> None:
        """The supervisor listening on `supervisor_leg_id` takes the call from the agent on
        `from_leg_id`, who leaves (CC19: barge and take over)."""
        if self._seen(fact_id):
            return
        if supervisor_leg_id not in self.supervision:
            raise NotSupervising(f"leg {supervisor_leg_id} is not supervising this call")
        self._require_transfer_from(from_leg_id)
        self._take_over(
            leg_id=supervisor_leg_id,
            from_leg_id=from_leg_id,
            at=aware(at, InvalidCall),
            fact_id=fact_id,
        )

    def add_note(
        self, author_id: UUID, body: str, at: datetime, fact_id: str | None = None
    ) -> None:
        """A note on the call by someone who was on it (CC6); allowed after the end too,
        since notes are often written in wrap-up. `fact_id` makes a resent form a no-op."""
        if self._seen(fact_id):
            return
        if author_id not in {leg.spec.user_id for leg in self.legs.values()}:
            raise NotOnCall(f"user {author_id} has not been on this call")
        text = body.strip()
        if not text:
            raise InvalidCall("a note cannot be empty")
        if len(text) > MAX_CALL_NOTE:
            raise InvalidCall(f"a note is at most {MAX_CALL_NOTE} characters")
        self._add_note(author_id=author_id, body=text, at=aware(at, InvalidCall), fact_id=fact_id)

    def hang_up(self, leg_id: str, cause: str, at: datetime, fact_id: str | None = None) -> None:
        """A leg hung up; the call ends with it when that leaves no conversation (see module)."""
        if self._seen(fact_id):
            return
        leg = self.legs.get(leg_id)
        if leg is None:
            raise UnknownLeg(f"no leg {leg_id} on this call")
        # The switch reports every channel's hang-up, also those the call's end took down.
        if not leg.live:
            return
        at, cause = aware(at, InvalidCall), checked_text(cause, "a hang-up cause", 200, InvalidCall)
        if not self._ends_call_when_leaving(leg):
            self._hang_up_leg(leg_id=leg_id, cause=cause, at=at, fact_id=fact_id)
            return
        if self.direction is Direction.INBOUND and self.answered_at is None:
            self._abandon(
                queue_id=self.queue_id,
                waited_seconds=seconds_between(self.started_at, at),
                queued_seconds=seconds_between(self.offered_at, at) if self.offered_at else 0.0,
                at=at,
                fact_id=fact_id,
            )
        self._end(by_leg_id=leg_id, cause=cause, at=at, fact_id=fact_id)

    def end(self, cause: str, at: datetime, fact_id: str | None = None) -> None:
        """The PBX itself ends the call: nobody hung up, so nobody abandoned it.

        For an IVR hang-up node, a closed queue's message, or a wait with nowhere to
        overflow; the switch's hang-up facts for the legs that follow are no-ops.
        """
        if self._seen(fact_id):
            return
        self._require_live()
        self._end(
            by_leg_id=None,
            cause=checked_text(cause, "an end cause", 200, InvalidCall),
            at=aware(at, InvalidCall),
            fact_id=fact_id,
        )

    def force_end(self, supervisor_id: UUID, at: datetime, fact_id: str | None = None) -> None:
        """A supervisor hangs the call up for everybody (CC19); the bridge then kills it."""
        if self._seen(fact_id):
            return
        self._require_live()
        at = aware(at, InvalidCall)
        self._force_end(supervisor_id=supervisor_id, at=at, fact_id=fact_id)
        self._end(by_leg_id=None, cause="forced_by_supervisor", at=at, fact_id=fact_id)

    # Queries.

    def usage(self) -> CallUsage:
        """What billing and reports need, once the call has ended."""
        if self.ended_at is None:
            raise CallNotEnded("usage is known once the call has ended")
        end = self.ended_at
        answer_or_end = self.answered_at or end
        rings = [
            leg.created_at
            for leg in self.legs.values()
            if leg.spec.leg_id != self.origin_leg_id and leg.spec.party is not PartyKind.SUPERVISOR
        ]
        first_ring = min(rings) if rings else None
        connected = seconds_between(self.answered_at, end) if self.answered_at else 0.0
        return CallUsage(
            call_id=self.id,
            direction=self.direction,
            hotline=self.hotline,
            customer_number=self.customer_number,
            started_at=self.started_at,
            answered_at=self.answered_at,
            ended_at=end,
            abandoned=self.abandoned,
            ring_seconds=seconds_between(first_ring, answer_or_end) if first_ring else 0.0,
            wait_seconds=seconds_between(self.offered_at, answer_or_end)
            if self.offered_at
            else 0.0,
            connected_seconds=connected,
            hold_seconds=self.hold_seconds,
            talk_seconds=max(0.0, connected - self.hold_seconds),
            legs=tuple(leg_usage(leg, end) for leg in self.legs.values()),
        )

    def agent_ids(self) -> list[UUID]:
        """Every agent who had a leg on the call, in order (recording search by agent, AX20)."""
        agents = [leg.spec for leg in self.legs.values() if leg.spec.party is PartyKind.AGENT]
        return list(dict.fromkeys(s.user_id for s in agents if s.user_id is not None))

    # Guards.

    def _seen(self, fact_id: str | None) -> bool:
        return fact_id is not None and fact_id in self.seen_facts

    def _known(self, spec: LegSpec) -> bool:
        """True when this very leg is already on the call (a repeated fact); a clash raises."""
        leg = self.legs.get(spec.leg_id)
        if leg is None:
            return False
        if leg.spec != spec:
            raise DuplicateLeg(f"leg {spec.leg_id} is already on this call as someone else")
        return True

    def _require_live(self) -> None:
        if self.ended:
            raise CallEnded("the call has ended")

    def _require_answered(self) -> None:
        self._require_live()
        if self.answered_at is None:
            raise CallNotAnswered("the call has not been answered")

    def _require_not_answered(self) -> None:
        self._require_live()
        if self.answered_at is not None:
            raise CallAlreadyAnswered("the call has already been answered")

    def _live_leg(self, leg_id: str) -> Leg:
        leg = self.legs.get(leg_id)
        if leg is None:
            raise UnknownLeg(f"no leg {leg_id} on this call")
        if not leg.live:
            raise LegEnded(f"leg {leg_id} has left the call")
        return leg

    def _require_transfer_from(self, from_leg_id: str) -> None:
        self._require_answered()
        if self._live_leg(from_leg_id).spec.party is not PartyKind.AGENT:
            raise InvalidCall("only an agent's leg can transfer the call")
        if self.consulting is not None:
            raise TransferInProgress("an attended transfer is already consulting")

    def _answered_consult(self) -> tuple[str, str]:
        self._require_live()
        if self.consulting is None:
            raise NoTransferInProgress("no attended transfer is consulting")
        consult = self.legs[self.consulting[1]]
        if consult.answered_at is None:
            raise ConsultNotAnswered("the consult leg has not answered yet")
        return self.consulting

    def _recording(self, recording_id: str) -> Recording:
        recording = self.recordings.get(recording_id)
        if recording is None:
            raise NoSuchRecording(f"no recording {recording_id} on this call")
        return recording

    def _ends_call_when_leaving(self, leg: Leg) -> bool:
        if leg.spec.party is PartyKind.CUSTOMER:
            return True
        if self.answered_at is None:
            # Before an answer only the caller giving up ends it: a rung agent who does
            # not pick up leaves the caller waiting for the next one.
            return leg.spec.leg_id == self.origin_leg_id
        if leg.spec.party is PartyKind.SUPERVISOR:
            return False
        talking = [
            other
            for other in self.legs.values()
            if other.live and other is not leg and other.spec.party is not PartyKind.SUPERVISOR
        ]
        return len(talking) < 2


def _valid_leg(spec: LegSpec, parties: set[PartyKind]) -> LegSpec:
    party = PartyKind(spec.party)
    if party not in parties:
        allowed = ", ".join(sorted(p.value for p in parties))
        raise InvalidCall(f"this leg must be one of: {allowed}")
    if spec.endpoint not in _ENDPOINTS:
        raise InvalidCall(f"endpoint must be one of {sorted(_ENDPOINTS)}")
    has_user = party in (PartyKind.AGENT, PartyKind.SUPERVISOR)
    if has_user != (spec.user_id is not None):
        raise InvalidCall(f"a {party.value} leg {'needs' if has_user else 'has no'} user id")
    if spec.on_net is not None and spec.endpoint not in _NUMBER_ENDPOINTS:
        raise InvalidCall("on-net/off-net applies to phone numbers only")
    return LegSpec(
        leg_id=checked_text(spec.leg_id, "a leg id", 200, InvalidCall),
        party=party,
        endpoint=spec.endpoint,
        address=checked_text(spec.address, "a leg address", 200, InvalidCall),
        user_id=spec.user_id,
        on_net=spec.on_net,
    )


def __getattr__(name: str) -> Any:
    # `from domain.calls import Calls` keeps working. Lazily, because domain.call_service
    # imports this module: an import at the top would be circular.
    if name == "Calls":
        from domain.call_service import Calls

        return Calls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
