"""The call verbs (CC1, CC4, CC12-CC14, CC19, AX10): what the telephony bridge and supervisors
call, one switch fact or one supervisor action at a time, on the Call aggregate of
domain.calls. Returns call ids and plain dicts, never the aggregate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.base import TenantApplication
from domain.call_legs import LegSpec, SupervisionMode
from domain.calls import Call, InvalidCall
from domain.checks import checked_text, iso_or_none, str_or_none


class Calls(TenantApplication):
    """The call verbs the telephony bridge and supervisors use; returns ids and plain dicts."""

    name = "calls"

    def start_inbound(
        self, tenant_id: str, call_ref: str, hotline: str, customer: LegSpec, at: datetime
    ) -> UUID:
        return self._start(
            tenant_id,
            call_ref,
            lambda: Call.start_inbound(tenant_id, call_ref, hotline, customer, at),
        )

    def start_outbound(
        self,
        tenant_id: str,
        call_ref: str,
        hotline: str,
        agent: LegSpec | None,
        customer: LegSpec,
        at: datetime,
    ) -> UUID:
        return self._start(
            tenant_id,
            call_ref,
            lambda: Call.start_outbound(tenant_id, call_ref, hotline, agent, customer, at),
        )

    def start_internal(self, tenant_id: str, call_ref: str, caller: LegSpec, at: datetime) -> UUID:
        return self._start(
            tenant_id, call_ref, lambda: Call.start_internal(tenant_id, call_ref, caller, at)
        )

    def _start(self, tenant_id: str, call_ref: str, start: Callable[[], Call]) -> UUID:
        # The id follows from the switch's call id: a repeated start fact finds the call.
        call_id = Call.create_id(tenant_id, checked_text(call_ref, "a call ref", 200, InvalidCall))
        if call_id not in self.repository:
            self.save(start())
        return call_id

    def offer_to_queue(
        self,
        tenant_id: str,
        call_id: UUID,
        queue_id: UUID,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.offer_to_queue(queue_id, at, fact_id))

    def ivr_step(
        self,
        tenant_id: str,
        call_id: UUID,
        flow_id: UUID,
        flow_version: int,
        node_id: str,
        digits: str | None,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        self.change(
            tenant_id,
            call_id,
            Call,
            lambda c: c.ivr_step(flow_id, flow_version, node_id, digits, at, fact_id),
        )

    def ring_agent(
        self, tenant_id: str, call_id: UUID, leg: LegSpec, at: datetime, fact_id: str | None = None
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.ring_agent(leg, at, fact_id))

    def answer(
        self, tenant_id: str, call_id: UUID, leg_id: str, at: datetime, fact_id: str | None = None
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.answer(leg_id, at, fact_id))

    def hold(self, tenant_id: str, call_id: UUID, at: datetime, fact_id: str | None = None) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.hold(at, fact_id))

    def resume(
        self, tenant_id: str, call_id: UUID, at: datetime, fact_id: str | None = None
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.resume(at, fact_id))

    def mute(
        self, tenant_id: str, call_id: UUID, leg_id: str, at: datetime, fact_id: str | None = None
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.mute(leg_id, at, fact_id))

    def unmute(
        self, tenant_id: str, call_id: UUID, leg_id: str, at: datetime, fact_id: str | None = None
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.unmute(leg_id, at, fact_id))

    def transfer_blind(
        self,
        tenant_id: str,
        call_id: UUID,
        from_leg_id: str,
        to: LegSpec,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        self.change(
            tenant_id, call_id, Call, lambda c: c.transfer_blind(from_leg_id, to, at, fact_id)
        )

    def transfer_attended_begin(
        self,
        tenant_id: str,
        call_id: UUID,
        from_leg_id: str,
        consult: LegSpec,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        self.change(
            tenant_id,
            call_id,
            Call,
            lambda c: c.transfer_attended_begin(from_leg_id, consult, at, fact_id),
        )

    def transfer_attended_complete(
        self, tenant_id: str, call_id: UUID, at: datetime, fact_id: str | None = None
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.transfer_attended_complete(at, fact_id))

    def transfer_attended_cancel(
        self, tenant_id: str, call_id: UUID, at: datetime, fact_id: str | None = None
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.transfer_attended_cancel(at, fact_id))

    def join_conference(
        self, tenant_id: str, call_id: UUID, leg_id: str, at: datetime, fact_id: str | None = None
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.join_conference(leg_id, at, fact_id))

    def start_recording(
        self,
        tenant_id: str,
        call_id: UUID,
        recording_id: str,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        self.change(
            tenant_id, call_id, Call, lambda c: c.start_recording(recording_id, at, fact_id)
        )

    def stop_recording(
        self,
        tenant_id: str,
        call_id: UUID,
        recording_id: str,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.stop_recording(recording_id, at, fact_id))

    def store_recording(
        self,
        tenant_id: str,
        call_id: UUID,
        recording_id: str,
        uri: str,
        duration_seconds: float,
        size_bytes: int,
        at: datetime,
        metadata: Mapping[str, str] | None = None,
        fact_id: str | None = None,
    ) -> None:
        self.change(
            tenant_id,
            call_id,
            Call,
            lambda c: c.store_recording(
                recording_id, uri, duration_seconds, size_bytes, at, metadata, fact_id
            ),
        )

    def supervise(
        self,
        tenant_id: str,
        call_id: UUID,
        supervisor: LegSpec,
        mode: SupervisionMode,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.supervise(supervisor, mode, at, fact_id))

    def end_supervision(
        self, tenant_id: str, call_id: UUID, leg_id: str, at: datetime, fact_id: str | None = None
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.end_supervision(leg_id, at, fact_id))

    def take_over(
        self,
        tenant_id: str,
        call_id: UUID,
        supervisor_leg_id: str,
        from_leg_id: str,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        self.change(
            tenant_id,
            call_id,
            Call,
            lambda c: c.take_over(supervisor_leg_id, from_leg_id, at, fact_id),
        )

    def hang_up(
        self,
        tenant_id: str,
        call_id: UUID,
        leg_id: str,
        cause: str,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.hang_up(leg_id, cause, at, fact_id))

    def end(
        self, tenant_id: str, call_id: UUID, cause: str, at: datetime, fact_id: str | None = None
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.end(cause, at, fact_id))

    def force_end(
        self,
        tenant_id: str,
        call_id: UUID,
        supervisor_id: UUID,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        self.change(tenant_id, call_id, Call, lambda c: c.force_end(supervisor_id, at, fact_id))

    def add_note(
        self,
        tenant_id: str,
        call_id: UUID,
        author_id: UUID,
        body: str,
        at: datetime,
        fact_id: str | None = None,
    ) -> None:
        """An agent's note on the call (CC6), from the phone panel."""
        self.change(tenant_id, call_id, Call, lambda c: c.add_note(author_id, body, at, fact_id))

    def usage(self, tenant_id: str, call_id: UUID) -> dict[str, Any]:
        """Billing's view of an ended call (PR4, PR6)."""
        return self.get_owned(tenant_id, call_id, Call).usage().as_dict()

    def get(self, tenant_id: str, call_id: UUID) -> dict[str, Any]:
        call = self.get_owned(tenant_id, call_id, Call)
        return {
            "id": str(call.id),
            "tenant_id": call.tenant_id,
            "call_ref": call.call_ref,
            "direction": call.direction.value,
            "hotline": call.hotline,
            "customer_number": call.customer_number,
            "started_at": call.started_at.isoformat(),
            "answered_at": iso_or_none(call.answered_at),
            "answered_leg_id": call.answered_leg_id,
            "ended_at": iso_or_none(call.ended_at),
            "queue_id": str_or_none(call.queue_id),
            "queues": [str(q) for q in call.queues],
            "ivr_path": [
                {
                    "flow_id": str(s.flow_id),
                    "flow_version": s.flow_version,
                    "node_id": s.node_id,
                    "digits": s.digits,
                    "at": s.at.isoformat(),
                }
                for s in call.ivr_path
            ],
            "legs": [
                {
                    "leg_id": leg.spec.leg_id,
                    "party": leg.spec.party.value,
                    "endpoint": leg.spec.endpoint,
                    "address": leg.spec.address,
                    "user_id": str_or_none(leg.spec.user_id),
                    "on_net": leg.spec.on_net,
                    "answered_at": iso_or_none(leg.answered_at),
                    "ended_at": iso_or_none(leg.ended_at),
                    "muted": leg.muted,
                    "supervision": str_or_none(call.supervision.get(leg.spec.leg_id)),
                }
                for leg in call.legs.values()
            ],
            "agent_ids": [str(a) for a in call.agent_ids()],
            "held": call.held,
            "consulting": list(call.consulting) if call.consulting else None,
            "transfers": [
                {"kind": kind.value, "from_leg_id": src, "to_leg_id": dst}
                for kind, src, dst in call.transfers
            ],
            "conference_leg_ids": list(call.conference_leg_ids),
            "recordings": [
                {
                    "recording_id": r.recording_id,
                    "started_at": r.started_at.isoformat(),
                    "stopped_at": iso_or_none(r.stopped_at),
                    "uri": r.uri,
                    "duration_seconds": r.duration_seconds,
                    "size_bytes": r.size_bytes,
                    "metadata": dict(r.metadata),
                }
                for r in call.recordings.values()
            ],
            "notes": [
                {"author_id": str(n.author_id), "body": n.body, "at": n.at.isoformat()}
                for n in call.notes
            ],
            "abandoned": call.abandoned,
            "forced_by": str_or_none(call.forced_by),
            "ended_by_leg_id": call.ended_by_leg_id,
            "end_cause": call.end_cause,
            "version": call.version,
        }
