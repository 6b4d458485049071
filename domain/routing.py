"""Routing decisions (CC9-CC11, AX11, AX12, AX15): what the routing process manager
decided for one piece of waiting work, as events.

`WorkRouting` is the history of one call or conversation's way through the queues: each
offer to an agent (with the queue and the policy that chose them), each ring that timed
out, each offer the agent rejected, each fallback taken (overflow to another queue,
voicemail, a message) and why. The agent's own side of an offer (ringing, answered,
declined) is on the User aggregate (domain.agents); this is the side that explains *why
that agent* — and, through the agents who timed out or rejected it, why not them again
first (the router puts them last).

Its id follows from the work (`WorkRouting.create_id`), so the manager finds it without
a lookup, and a piece of work has one history however many times it is queued.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.base import DomainError, NotFound, TenantAggregate, TenantApplication
from domain.checks import checked_enum, checked_text
from domain.vocabulary import RoutingPolicy

_NAMESPACE = uuid5(NAMESPACE_URL, "https://cloudcc.example/routing")


class WorkKind(StrEnum):
    CALL = "call"
    CONVERSATION = "conversation"


class FallbackReason(StrEnum):
    MAX_WAIT = "max_wait"  # waited longer than the queue allows: overflow
    NO_AGENT = "no_agent"  # nobody who could take it is logged in
    CLOSED = "closed"  # outside the queue's business hours (CC11)


class InvalidRouting(DomainError):
    """A routing decision the domain does not accept."""


def _aware(at: datetime) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise InvalidRouting("a routing time must be timezone-aware")
    return at


class WorkRouting(TenantAggregate):
    """The routing history of one call or conversation."""

    class Created(TenantAggregate.Created):
        tenant_id: str
        kind: str
        work_id: str

    class Offered(TenantAggregate.Event):
        queue_id: UUID
        agent_id: UUID
        policy: str
        attempt: int
        ring_timeout_seconds: int
        at: datetime

    class OfferExpired(TenantAggregate.Event):
        agent_id: UUID
        at: datetime

    class OfferRejected(TenantAggregate.Event):
        """The agent declined the offer (the inbox's "Decline"), as opposed to not
        answering it (OfferExpired)."""

        agent_id: UUID
        at: datetime

    class FellBack(TenantAggregate.Event):
        queue_id: UUID
        reason: str
        fallback: dict[str, Any]
        at: datetime

    @staticmethod
    def create_id(tenant_id: str, kind: WorkKind, work_id: str) -> UUID:
        return uuid5(_NAMESPACE, f"{tenant_id}/{kind.value}/{work_id}")

    @classmethod
    def begin(cls, tenant_id: str, kind: WorkKind, work_id: str) -> WorkRouting:
        return cls._create(
            cls.Created,
            id=cls.create_id(tenant_id, kind, work_id),
            tenant_id=tenant_id,
            kind=kind.value,
            work_id=work_id,
        )

    @event(Created)
    def __init__(self, tenant_id: str, kind: str, work_id: str) -> None:
        self.tenant_id = tenant_id
        self.kind = WorkKind(kind)
        self.work_id = work_id
        self.attempts = 0
        self.ringing: UUID | None = None
        # Each agent's latest offer not yet ended by an event here (expired, rejected):
        # when it was made. What a rejection may refer to.
        self.open_offers: dict[UUID, datetime] = {}
        self.fallbacks: list[dict[str, Any]] = []

    def offer(
        self,
        queue_id: UUID,
        agent_id: UUID,
        policy: RoutingPolicy,
        ring_timeout_seconds: int,
        at: datetime,
    ) -> int:
        """An agent rings for this work; one agent at a time. The attempt number."""
        if self.ringing == agent_id:
            return self.attempts  # the same decision, recorded once
        if self.ringing is not None:
            raise InvalidRouting(f"agent {self.ringing} is still being offered this work")
        if not 1 <= ring_timeout_seconds <= 600:
            raise InvalidRouting("a ring timeout is 1 to 600 seconds")
        self._offer(
            queue_id=queue_id,
            agent_id=agent_id,
            policy=policy.value,
            attempt=self.attempts + 1,
            ring_timeout_seconds=ring_timeout_seconds,
            at=_aware(at),
        )
        return self.attempts

    @event(Offered)
    def _offer(
        self,
        queue_id: UUID,
        agent_id: UUID,
        policy: str,
        attempt: int,
        ring_timeout_seconds: int,
        at: datetime,
    ) -> None:
        self.attempts = attempt
        self.ringing = agent_id
        self.open_offers[agent_id] = at

    def expire(self, agent_id: UUID, at: datetime) -> bool:
        """The agent did not answer in time; False if they were not ringing (a no-op)."""
        if self.ringing != agent_id:
            return False
        self._expire(agent_id=agent_id, at=_aware(at))
        return True

    @event(OfferExpired)
    def _expire(self, agent_id: UUID, at: datetime) -> None:
        self.ringing = None
        self.open_offers.pop(agent_id, None)

    def reject(self, agent_id: UUID, at: datetime) -> bool:
        """The agent declined their offer at `at`. Recorded also when the router has
        offered the work to someone else meanwhile (it may see the decline before this);
        False (a no-op) if they have no offer here that is still open, or if theirs is
        newer than `at` (offered again since: this rejection was of the one before)."""
        at = _aware(at)
        offered_at = self.open_offers.get(agent_id)
        if offered_at is None or offered_at > at:
            return False
        self._reject(agent_id=agent_id, at=at)
        return True

    @event(OfferRejected)
    def _reject(self, agent_id: UUID, at: datetime) -> None:
        self.open_offers.pop(agent_id, None)
        if self.ringing == agent_id:
            self.ringing = None

    def settle(self, agent_id: UUID) -> None:
        """The offer ended on the agent's side (answered, or declined with no rejection
        recorded here): no event, the User aggregate has it; the next offer may go ahead."""
        if self.ringing == agent_id:
            self.ringing = None

    def fall_back(
        self, queue_id: UUID, reason: FallbackReason | str, fallback: dict[str, Any], at: datetime
    ) -> None:
        why = checked_enum(FallbackReason, reason, InvalidRouting)
        kind = checked_text(str(fallback.get("kind", "")), "a fallback kind", 32, InvalidRouting)
        self._fall_back(
            queue_id=queue_id, reason=why.value, fallback={**fallback, "kind": kind}, at=_aware(at)
        )

    @event(FellBack)
    def _fall_back(
        self, queue_id: UUID, reason: str, fallback: dict[str, Any], at: datetime
    ) -> None:
        self.ringing = None
        self.fallbacks.append({"queue_id": str(queue_id), "reason": reason, **fallback})


class RoutingDecisions(TenantApplication):
    """The routing process manager's record of what it decided; plain values out."""

    name = "routing"

    def _load_or_begin(self, tenant_id: str, kind: WorkKind, work_id: str) -> WorkRouting:
        try:
            return self.get_owned(
                tenant_id, WorkRouting.create_id(tenant_id, kind, work_id), WorkRouting
            )
        except NotFound:
            # New, or another tenant's id (NotFound either way): a new history, and a
            # save under another tenant's id would be refused by the store.
            return WorkRouting.begin(tenant_id, kind, work_id)

    def offered(
        self,
        tenant_id: str,
        kind: WorkKind,
        work_id: str,
        queue_id: UUID,
        agent_id: UUID,
        policy: RoutingPolicy,
        ring_timeout_seconds: int,
        at: datetime,
    ) -> int:
        routing = self._load_or_begin(tenant_id, kind, work_id)
        # An offer that ended on the agent's side (answered, declined) leaves no event
        # here; the manager only offers again once it saw that, so it is settled — also
        # when the same agent is offered again, which is a new attempt.
        if routing.ringing is not None:
            routing.settle(routing.ringing)
        attempt = routing.offer(queue_id, agent_id, policy, ring_timeout_seconds, at)
        self.save(routing)
        return attempt

    def expired(
        self, tenant_id: str, kind: WorkKind, work_id: str, agent_id: UUID, at: datetime
    ) -> bool:
        routing = self._load_or_begin(tenant_id, kind, work_id)
        if routing.ringing is None and routing.version == 0:
            return False
        changed = routing.expire(agent_id, at)
        if changed:
            self.save(routing)
        return changed

    def rejected(
        self, tenant_id: str, kind: WorkKind, work_id: str, agent_id: UUID, at: datetime
    ) -> bool:
        """The agent declined the offer (after `Agents.decline_offer(..., "rejected")`):
        recorded, so the router offers the work to them last. False if there was no
        such offer to them here (nothing is recorded). Saved with `change`: the router
        may be recording its next offer for this work at the same moment."""
        routing_id = WorkRouting.create_id(tenant_id, kind, work_id)
        try:
            return self.change(tenant_id, routing_id, WorkRouting, lambda r: r.reject(agent_id, at))
        except NotFound:
            return False  # never offered (or another tenant's id): nothing to reject

    def fell_back(
        self,
        tenant_id: str,
        kind: WorkKind,
        work_id: str,
        queue_id: UUID,
        reason: FallbackReason,
        fallback: dict[str, Any],
        at: datetime,
    ) -> None:
        routing = self._load_or_begin(tenant_id, kind, work_id)
        routing.fall_back(queue_id, reason, fallback, at)
        self.save(routing)

    def history(self, tenant_id: str, kind: WorkKind, work_id: str) -> list[dict[str, Any]]:
        """Every decision for this work, oldest first (what a supervisor asks "why?")."""
        routing_id = WorkRouting.create_id(tenant_id, kind, work_id)
        if routing_id not in self.repository:
            return []
        self.get_owned(tenant_id, routing_id, WorkRouting)  # the tenant wall
        out: list[dict[str, Any]] = []
        for e in self.repository.event_store.get(routing_id):
            if isinstance(e, WorkRouting.Created):
                continue
            entry = {"decision": type(e).__name__, "at": getattr(e, "at").isoformat()}  # noqa: B009
            for key in ("queue_id", "agent_id", "policy", "attempt", "reason", "fallback"):
                if hasattr(e, key):
                    value = getattr(e, key)
                    entry[key] = str(value) if isinstance(value, UUID) else value
            out.append(entry)
        return out
