"""The parts of a call: who is on each leg, what the call kept, and what it cost in time.

Plain values the `Call` aggregate (domain.calls) is built from and billing reads: a
`LegSpec` says who a leg reaches, a `Leg` how it went, `CallUsage` and `LegUsage` what
billing rates (PR4, PR6), the call log (AX16) and reports show. None of them is stored by
its class: events carry a leg as the plain dict of `LegSpec.to_event()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

from domain.checks import iso_or_none, str_or_none
from domain.vocabulary import Direction, EndpointKind

PSTN: Final = "pstn"
"""A leg's endpoint when it is a phone number outside the tenant's PBX (a customer's or an
external number), as opposed to one of the tenant's own endpoints (EndpointKind)."""


class PartyKind(StrEnum):
    """Who is on a leg."""

    CUSTOMER = "customer"
    AGENT = "agent"
    EXTERNAL = "external"  # an outside number a call is transferred to (CC14)
    SUPERVISOR = "supervisor"  # listening, whispering or barging in (CC19)


class SupervisionMode(StrEnum):
    """How a supervisor is on a call (CC19), as FreeSWITCH's eavesdrop modes."""

    LISTEN = "listen"  # hears both sides, heard by nobody
    WHISPER = "whisper"  # heard by the agent only
    BARGE = "barge"  # heard by both: a three-way call


class TransferKind(StrEnum):
    """Blind: sent on at once. Attended: the target is consulted first (CC14)."""

    BLIND = "blind"
    ATTENDED = "attended"


@dataclass(frozen=True)
class LegSpec:
    """A leg to add to a call: the switch's channel id and who is at the other end.

    `endpoint` is an EndpointKind value for the tenant's own endpoints, or PSTN for an
    outside number. `user_id` is the agent's or supervisor's id. `on_net` says, for a
    phone number, whether it is on the carrier's own network (PR4 prices differ).
    """

    leg_id: str
    party: PartyKind
    endpoint: str
    address: str
    user_id: UUID | None = None
    on_net: bool | None = None

    @classmethod
    def customer(
        cls, leg_id: str, number: str, on_net: bool | None = None, endpoint: str = PSTN
    ) -> LegSpec:
        return cls(leg_id, PartyKind.CUSTOMER, endpoint, number, None, on_net)

    @classmethod
    def agent(
        cls,
        leg_id: str,
        agent_id: UUID,
        endpoint: EndpointKind,
        address: str,
        on_net: bool | None = None,
    ) -> LegSpec:
        return cls(leg_id, PartyKind.AGENT, endpoint.value, address, agent_id, on_net)

    @classmethod
    def external(cls, leg_id: str, number: str, on_net: bool | None = None) -> LegSpec:
        return cls(leg_id, PartyKind.EXTERNAL, PSTN, number, None, on_net)

    @classmethod
    def supervisor(
        cls, leg_id: str, user_id: UUID, endpoint: EndpointKind, address: str
    ) -> LegSpec:
        return cls(leg_id, PartyKind.SUPERVISOR, endpoint.value, address, user_id, None)

    def to_event(self) -> dict[str, Any]:
        """The leg as stored in an event: plain values only."""
        return {
            "leg_id": self.leg_id,
            "party": self.party.value,
            "endpoint": self.endpoint,
            "address": self.address,
            "user_id": self.user_id,
            "on_net": self.on_net,
        }

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> LegSpec:
        return cls(
            leg_id=data["leg_id"],
            party=PartyKind(data["party"]),
            endpoint=data["endpoint"],
            address=data["address"],
            user_id=data["user_id"],
            on_net=data["on_net"],
        )


@dataclass
class Leg:
    """A leg's state on the call."""

    spec: LegSpec
    created_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    end_cause: str | None = None
    muted: bool = False

    @property
    def live(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True)
class IvrStep:
    """One node the caller passed through in an IVR flow (CC4 shows the path)."""

    flow_id: UUID
    flow_version: int
    node_id: str
    digits: str | None
    at: datetime


@dataclass
class Recording:
    """One recording of the call (AX10), from start to the stored file (AX20, AX22)."""

    recording_id: str
    started_at: datetime
    stopped_at: datetime | None = None
    uri: str | None = None
    duration_seconds: float | None = None
    size_bytes: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LegUsage:
    """What one leg cost in time: rang from creation to answer, connected until it left."""

    leg_id: str
    party: PartyKind
    endpoint: str
    address: str
    user_id: UUID | None
    on_net: bool | None
    ring_seconds: float
    connected_seconds: float


@dataclass(frozen=True)
class CallUsage:
    """Durations and the facts billing rates a call by (PR4, PR6), from the call's state.

    ring: first ring of a non-caller leg until the answer (or the end, if unanswered);
    wait: first offer to a queue until the answer or the end; connected: answer to end;
    talk: connected minus hold.
    """

    call_id: UUID
    direction: Direction
    hotline: str | None
    customer_number: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    abandoned: bool
    ring_seconds: float
    wait_seconds: float
    connected_seconds: float
    hold_seconds: float
    talk_seconds: float
    legs: tuple[LegUsage, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": str(self.call_id),
            "direction": self.direction.value,
            "hotline": self.hotline,
            "customer_number": self.customer_number,
            "started_at": self.started_at.isoformat(),
            "answered_at": iso_or_none(self.answered_at),
            "ended_at": self.ended_at.isoformat(),
            "abandoned": self.abandoned,
            "ring_seconds": self.ring_seconds,
            "wait_seconds": self.wait_seconds,
            "connected_seconds": self.connected_seconds,
            "hold_seconds": self.hold_seconds,
            "talk_seconds": self.talk_seconds,
            "legs": [
                {
                    "leg_id": u.leg_id,
                    "party": u.party.value,
                    "endpoint": u.endpoint,
                    "address": u.address,
                    "user_id": str_or_none(u.user_id),
                    "on_net": u.on_net,
                    "ring_seconds": u.ring_seconds,
                    "connected_seconds": u.connected_seconds,
                }
                for u in self.legs
            ],
        }


def leg_usage(leg: Leg, call_end: datetime) -> LegUsage:
    end = leg.ended_at or call_end
    spec = leg.spec
    return LegUsage(
        leg_id=spec.leg_id,
        party=spec.party,
        endpoint=spec.endpoint,
        address=spec.address,
        user_id=spec.user_id,
        on_net=spec.on_net,
        ring_seconds=seconds_between(leg.created_at, leg.answered_at or end),
        connected_seconds=seconds_between(leg.answered_at, end) if leg.answered_at else 0.0,
    )


def seconds_between(start: datetime | None, end: datetime) -> float:
    # Facts can arrive slightly out of order; a duration is never negative.
    return 0.0 if start is None else max(0.0, (end - start).total_seconds())
