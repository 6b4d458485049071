"""Queues (CC9-CC11, CC17, AX11, AX12, AX15): where waiting work is routed from, and how.

A `Queue` is configuration: its routing policy and that policy's parameters, how long an
agent rings and a caller waits, where calls go when nobody can take them or the queue is
closed (CC11: by a business calendar named on the tenant), the channels it serves, the
pickup groups whose members take its work (AX15) and the SLA policy its conversations are
held to (CC22: the SLA timers start their clocks from it).

`route()` is the heart of routing and is pure: given the queue's `RoutingRules`, the
candidate agents as the routing process manager sees them, the round-robin cursor and
the customer's last agent, it returns the agents to offer to, in order. It never returns
an agent who is not AVAILABLE. The cursor is not kept on the Queue: it moves on every
offer, and the process manager records its decisions as its own events, so the queue's
history stays a short list of configuration changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.agents import MAX_SKILL_LEVEL, MIN_SKILL_LEVEL, skill_name
from domain.base import DomainError, TenantAggregate, TenantApplication
from domain.checks import clean_name, enum_values, str_or_none
from domain.vocabulary import Channel, Presence, RoutingPolicy

DEFAULT_RING_TIMEOUT_SECONDS = 20
DEFAULT_MAX_WAIT_SECONDS = 300


class InvalidQueue(DomainError):
    """A queue command with values the domain does not accept."""


class FallbackKind(StrEnum):
    """Where a call goes when the queue cannot take it."""

    QUEUE = "queue"  # another queue
    VOICEMAIL = "voicemail"  # leave a message for the queue
    MESSAGE = "message"  # play a prompt, then hang up


@dataclass(frozen=True)
class Fallback:
    """A destination for calls the queue cannot take: another queue, voicemail or a message.

    `message` is the prompt for MESSAGE (text to speak or an audio name), and optionally
    the greeting before VOICEMAIL.
    """

    kind: FallbackKind
    queue_id: UUID | None = None
    message: str | None = None

    @classmethod
    def to_queue(cls, queue_id: UUID) -> Fallback:
        return cls(FallbackKind.QUEUE, queue_id=queue_id)

    @classmethod
    def voicemail(cls, greeting: str | None = None) -> Fallback:
        return cls(FallbackKind.VOICEMAIL, message=greeting)

    @classmethod
    def play(cls, message: str) -> Fallback:
        return cls(FallbackKind.MESSAGE, message=message)

    def to_event(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "queue_id": self.queue_id, "message": self.message}

    @classmethod
    def from_event(cls, data: Mapping[str, Any] | None) -> Fallback | None:
        if data is None:
            return None
        return cls(FallbackKind(data["kind"]), data["queue_id"], data["message"])


@dataclass(frozen=True)
class RoutingRules:
    """What `route()` needs to know about a queue, as one immutable value."""

    policy: RoutingPolicy
    required_skills: Mapping[str, int] = field(default_factory=dict)
    department: str | None = None
    sticky_fallback: RoutingPolicy | None = None
    pickup_groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Candidate:
    """An agent as routing sees them at the moment of the offer.

    `skills` maps a skill to a level (1 to MAX_SKILL_LEVEL). `last_call_ended_at` is
    None for an agent who has not had a call yet; they count as idle the longest.
    """

    agent_id: UUID
    presence: Presence
    skills: Mapping[str, int] = field(default_factory=dict)
    departments: frozenset[str] = frozenset()
    pickup_groups: frozenset[str] = frozenset()
    last_call_ended_at: datetime | None = None


def route(
    rules: RoutingRules,
    candidates: Iterable[Candidate],
    *,
    cursor: UUID | None = None,
    last_agent_id: UUID | None = None,
) -> list[UUID]:
    """The agents to offer a piece of work to, best first; only AVAILABLE members ever.

    `cursor` is the agent the queue offered to last (AX12); `last_agent_id` is the agent
    who most recently talked with this customer (CC10).
    """
    members = [c for c in candidates if _is_available_member(rules, c)]
    if rules.policy is RoutingPolicy.STICKY:
        if rules.sticky_fallback is None:
            raise InvalidQueue("sticky routing needs a fallback policy")
        rest = _order(rules.sticky_fallback, rules, members, cursor)
        sticky = [c.agent_id for c in members if c.agent_id == last_agent_id]
        return sticky + [agent for agent in rest if agent != last_agent_id]
    return _order(rules.policy, rules, members, cursor)


def _is_available_member(rules: RoutingRules, candidate: Candidate) -> bool:
    if candidate.presence is not Presence.AVAILABLE:
        return False
    # A queue with pickup groups is served by their members only (AX15).
    return not rules.pickup_groups or bool(rules.pickup_groups & candidate.pickup_groups)


def _order(
    policy: RoutingPolicy,
    rules: RoutingRules,
    members: Sequence[Candidate],
    cursor: UUID | None,
) -> list[UUID]:
    if policy is RoutingPolicy.SKILL:
        skilled = [c for c in members if _has_skills(c, rules.required_skills)]
        skilled.sort(key=lambda c: (-_skill_score(c, rules.required_skills), *_idle_key(c)))
        return [c.agent_id for c in skilled]
    if policy is RoutingPolicy.DEPARTMENT:
        staff = [c for c in members if rules.department in c.departments]
        staff.sort(key=_idle_key)
        return [c.agent_id for c in staff]
    if policy is RoutingPolicy.ROUND_ROBIN:
        # A fixed order by id, rotated to start just after the cursor: an agent who
        # logs out or in does not restart the rotation for everybody else.
        ring = sorted((c.agent_id for c in members), key=str)
        start = next((i for i, a in enumerate(ring) if str(a) > str(cursor)), 0) if cursor else 0
        return ring[start:] + ring[:start]
    raise InvalidQueue(f"{policy.value} cannot order agents on its own")


def _has_skills(candidate: Candidate, required: Mapping[str, int]) -> bool:
    return all(candidate.skills.get(skill, 0) >= level for skill, level in required.items())


def _skill_score(candidate: Candidate, required: Mapping[str, int]) -> int:
    # The best match is the highest total level over the skills the queue asks for.
    return sum(candidate.skills.get(skill, 0) for skill in required)


def _idle_key(candidate: Candidate) -> tuple[bool, float, str]:
    # Longest idle first: never had a call, then the earliest end; the id breaks ties.
    ended = candidate.last_call_ended_at
    return (ended is not None, ended.timestamp() if ended else 0.0, str(candidate.agent_id))


class Queue(TenantAggregate):
    """A tenant's queue: routing, waiting rules, schedule, channels and pickup groups."""

    class Created(TenantAggregate.Created):
        tenant_id: str
        name: str
        channels: list[str]

    class Renamed(TenantAggregate.Event):
        name: str

    class ChannelsChanged(TenantAggregate.Event):
        channels: list[str]

    class RoutingChanged(TenantAggregate.Event):
        policy: str
        required_skills: dict[str, int]
        department: str | None
        sticky_fallback: str | None

    class WaitingRulesChanged(TenantAggregate.Event):
        ring_timeout_seconds: int
        max_wait_seconds: int
        overflow: dict[str, Any] | None
        no_agent: dict[str, Any] | None

    class ScheduleChanged(TenantAggregate.Event):
        calendar_name: str | None
        when_closed: dict[str, Any] | None

    class PickupGroupAdded(TenantAggregate.Event):
        group: str

    class PickupGroupRemoved(TenantAggregate.Event):
        group: str

    class SlaPolicySet(TenantAggregate.Event):
        """The SLA policy of the conversations this queue serves from now on (None: no SLA)."""

        policy_id: UUID | None

    class RecordingPolicySet(TenantAggregate.Event):
        """Whether the calls this queue's agents answer are recorded (AX10)."""

        record_calls: bool

    @event(Created)
    def __init__(self, tenant_id: str, name: str, channels: list[str]) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.channels = frozenset(Channel(c) for c in channels)
        # Round robin is the one policy that needs no parameters: the default.
        self.policy = RoutingPolicy.ROUND_ROBIN
        self.required_skills: dict[str, int] = {}
        self.department: str | None = None
        self.sticky_fallback: RoutingPolicy | None = None
        self.ring_timeout_seconds = DEFAULT_RING_TIMEOUT_SECONDS
        self.max_wait_seconds = DEFAULT_MAX_WAIT_SECONDS
        self.overflow: Fallback | None = None
        self.no_agent: Fallback | None = None
        self.calendar_name: str | None = None
        self.when_closed: Fallback | None = None
        self.pickup_groups: frozenset[str] = frozenset()
        self.sla_policy_id: UUID | None = None
        self.record_calls = False

    @classmethod
    def create(cls, tenant_id: str, name: str, channels: Iterable[Channel]) -> Queue:
        return cls(
            tenant_id=tenant_id,
            name=clean_name(name, "a queue name", 100, InvalidQueue),
            channels=_valid_channels(channels),
        )

    @event(Renamed)
    def _rename(self, name: str) -> None:
        self.name = name

    @event(ChannelsChanged)
    def _change_channels(self, channels: list[str]) -> None:
        self.channels = frozenset(Channel(c) for c in channels)

    @event(RoutingChanged)
    def _change_routing(
        self,
        policy: str,
        required_skills: dict[str, int],
        department: str | None,
        sticky_fallback: str | None,
    ) -> None:
        self.policy = RoutingPolicy(policy)
        self.required_skills = dict(required_skills)
        self.department = department
        self.sticky_fallback = None if sticky_fallback is None else RoutingPolicy(sticky_fallback)

    @event(WaitingRulesChanged)
    def _change_waiting_rules(
        self,
        ring_timeout_seconds: int,
        max_wait_seconds: int,
        overflow: dict[str, Any] | None,
        no_agent: dict[str, Any] | None,
    ) -> None:
        self.ring_timeout_seconds = ring_timeout_seconds
        self.max_wait_seconds = max_wait_seconds
        self.overflow = Fallback.from_event(overflow)
        self.no_agent = Fallback.from_event(no_agent)

    @event(ScheduleChanged)
    def _change_schedule(
        self, calendar_name: str | None, when_closed: dict[str, Any] | None
    ) -> None:
        self.calendar_name = calendar_name
        self.when_closed = Fallback.from_event(when_closed)

    @event(PickupGroupAdded)
    def _add_pickup_group(self, group: str) -> None:
        self.pickup_groups = self.pickup_groups | {group}

    @event(PickupGroupRemoved)
    def _remove_pickup_group(self, group: str) -> None:
        self.pickup_groups = self.pickup_groups - {group}

    @event(SlaPolicySet)
    def _set_sla_policy(self, policy_id: UUID | None) -> None:
        self.sla_policy_id = policy_id

    def rename(self, name: str) -> None:
        name = clean_name(name, "a queue name", 100, InvalidQueue)
        if name != self.name:
            self._rename(name)

    def change_channels(self, channels: Iterable[Channel]) -> None:
        checked = _valid_channels(channels)
        if frozenset(Channel(c) for c in checked) != self.channels:
            self._change_channels(checked)

    def configure_routing(
        self,
        policy: RoutingPolicy,
        required_skills: Mapping[str, int] | None = None,
        department: str | None = None,
        sticky_fallback: RoutingPolicy | None = None,
    ) -> None:
        """Sets the policy and its parameters together, so they never disagree.

        SKILL needs skills (CC9); DEPARTMENT a department (AX11); STICKY (CC10) a
        fallback policy for when the customer's last agent cannot take the call, with
        that policy's own parameters.
        """
        policy = RoutingPolicy(policy)
        fallback = None if sticky_fallback is None else RoutingPolicy(sticky_fallback)
        if policy is RoutingPolicy.STICKY:
            if fallback is None or fallback is RoutingPolicy.STICKY:
                raise InvalidQueue("sticky routing needs a fallback policy other than sticky")
        elif fallback is not None:
            raise InvalidQueue("only sticky routing has a fallback policy")
        effective = fallback or policy
        skills = _valid_skills(required_skills or {})
        if effective is RoutingPolicy.SKILL and not skills:
            raise InvalidQueue("skill routing needs at least one required skill")
        if department is not None:
            department = clean_name(department, "a department", 64, InvalidQueue)
        if effective is RoutingPolicy.DEPARTMENT and department is None:
            raise InvalidQueue("department routing needs a department")
        changed = (
            policy is not self.policy
            or skills != self.required_skills
            or department != self.department
            or fallback is not self.sticky_fallback
        )
        if changed:
            self._change_routing(
                policy=policy.value,
                required_skills=skills,
                department=department,
                sticky_fallback=None if fallback is None else fallback.value,
            )

    def set_waiting_rules(
        self,
        ring_timeout_seconds: int,
        max_wait_seconds: int,
        overflow: Fallback | None = None,
        no_agent: Fallback | None = None,
    ) -> None:
        """How long an agent rings, how long a caller waits, and where calls go after.

        `overflow` takes calls that waited `max_wait_seconds`; `no_agent` takes them at
        once when no member is logged in. None keeps them waiting (then hangs up at max
        wait, for overflow).
        """
        if not 5 <= ring_timeout_seconds <= 300:
            raise InvalidQueue("an agent rings for 5 to 300 seconds")
        if not 10 <= max_wait_seconds <= 24 * 3600:
            raise InvalidQueue("a caller waits 10 seconds to 24 hours at most")
        if ring_timeout_seconds > max_wait_seconds:
            raise InvalidQueue("an agent cannot ring longer than a caller may wait")
        overflow, no_agent = self._valid_fallback(overflow), self._valid_fallback(no_agent)
        current = (
            self.ring_timeout_seconds,
            self.max_wait_seconds,
            self.overflow,
            self.no_agent,
        )
        if current != (ring_timeout_seconds, max_wait_seconds, overflow, no_agent):
            self._change_waiting_rules(
                ring_timeout_seconds=ring_timeout_seconds,
                max_wait_seconds=max_wait_seconds,
                overflow=None if overflow is None else overflow.to_event(),
                no_agent=None if no_agent is None else no_agent.to_event(),
            )

    def set_schedule(self, calendar_name: str | None, when_closed: Fallback | None = None) -> None:
        """Opens the queue by a business calendar of the tenant (CC11); None is 24/7.

        A calendar needs somewhere for calls to go while closed.
        """
        if calendar_name is None:
            if when_closed is not None:
                raise InvalidQueue("a queue open 24/7 has no closed destination")
        else:
            calendar_name = clean_name(calendar_name, "a calendar name", 100, InvalidQueue)
            if when_closed is None:
                raise InvalidQueue("a scheduled queue needs a destination while closed")
        when_closed = self._valid_fallback(when_closed)
        if (calendar_name, when_closed) != (self.calendar_name, self.when_closed):
            self._change_schedule(
                calendar_name=calendar_name,
                when_closed=None if when_closed is None else when_closed.to_event(),
            )

    def add_pickup_group(self, group: str) -> None:
        group = clean_name(group, "a pickup group", 64, InvalidQueue)
        if group not in self.pickup_groups:
            self._add_pickup_group(group)

    def remove_pickup_group(self, group: str) -> None:
        if group in self.pickup_groups:
            self._remove_pickup_group(group)

    @event(RecordingPolicySet)
    def _set_recording_policy(self, record_calls: bool) -> None:
        self.record_calls = record_calls

    def set_recording_policy(self, record_calls: bool) -> None:
        """Record every call of this queue from the moment an agent answers it (AX10)."""
        if not isinstance(record_calls, bool):
            raise InvalidQueue("a recording policy is on or off")
        if record_calls != self.record_calls:
            self._set_recording_policy(record_calls)

    def set_sla_policy(self, policy_id: UUID | None) -> None:
        """Holds the queue's conversations to this SLA policy of the tenant; None: no SLA.

        The policy is not looked up here (another application holds it): a policy the
        tenant does not have starts no clock, which is what the SLA timers check.
        """
        if policy_id is not None and not isinstance(policy_id, UUID):
            raise InvalidQueue("an SLA policy is named by its id")
        if policy_id != self.sla_policy_id:
            self._set_sla_policy(policy_id)

    @property
    def rules(self) -> RoutingRules:
        return RoutingRules(
            policy=self.policy,
            required_skills=dict(self.required_skills),
            department=self.department,
            sticky_fallback=self.sticky_fallback,
            pickup_groups=self.pickup_groups,
        )

    def _valid_fallback(self, fallback: Fallback | None) -> Fallback | None:
        if fallback is None:
            return None
        kind = FallbackKind(fallback.kind)
        if kind is FallbackKind.QUEUE:
            if fallback.queue_id is None or fallback.message is not None:
                raise InvalidQueue("a queue destination names the queue and nothing else")
            if fallback.queue_id == self.id:
                raise InvalidQueue("a queue cannot overflow into itself")
            return Fallback(kind, queue_id=fallback.queue_id)
        if fallback.queue_id is not None:
            raise InvalidQueue(f"a {kind.value} destination names no queue")
        message = fallback.message
        if message is not None or kind is FallbackKind.MESSAGE:
            message = clean_name(message or "", "a message", 1000, InvalidQueue)
        return Fallback(kind, message=message)


def _valid_channels(channels: Iterable[Channel]) -> list[str]:
    checked = enum_values(Channel, channels, InvalidQueue)
    if not checked:
        raise InvalidQueue("a queue serves at least one channel")
    return checked


def _valid_skills(skills: Mapping[str, int]) -> dict[str, int]:
    checked = {}
    for skill, level in skills.items():
        name = skill_name(skill, InvalidQueue)
        if not isinstance(level, int) or not MIN_SKILL_LEVEL <= level <= MAX_SKILL_LEVEL:
            raise InvalidQueue(
                f"skill {name} needs a level from {MIN_SKILL_LEVEL} to {MAX_SKILL_LEVEL}"
            )
        checked[name] = level
    return checked


def _fallback_dict(fallback: Fallback | None) -> dict[str, Any] | None:
    if fallback is None:
        return None
    return {
        "kind": fallback.kind.value,
        "queue_id": str_or_none(fallback.queue_id),
        "message": fallback.message,
    }


class Queues(TenantApplication):
    """The queue verbs for tenant admins and the routing process manager."""

    name = "queues"

    def create(
        self,
        tenant_id: str,
        name: str,
        channels: Iterable[Channel] = (Channel.CALL,),
        policy: RoutingPolicy = RoutingPolicy.ROUND_ROBIN,
        required_skills: Mapping[str, int] | None = None,
        department: str | None = None,
        sticky_fallback: RoutingPolicy | None = None,
    ) -> UUID:
        queue = Queue.create(tenant_id, name, channels)
        queue.configure_routing(policy, required_skills, department, sticky_fallback)
        self.save(queue)
        return queue.id

    def rename(self, tenant_id: str, queue_id: UUID, name: str) -> None:
        self.change(tenant_id, queue_id, Queue, lambda q: q.rename(name))

    def change_channels(self, tenant_id: str, queue_id: UUID, channels: Iterable[Channel]) -> None:
        self.change(tenant_id, queue_id, Queue, lambda q: q.change_channels(channels))

    def configure_routing(
        self,
        tenant_id: str,
        queue_id: UUID,
        policy: RoutingPolicy,
        required_skills: Mapping[str, int] | None = None,
        department: str | None = None,
        sticky_fallback: RoutingPolicy | None = None,
    ) -> None:
        self.change(
            tenant_id,
            queue_id,
            Queue,
            lambda q: q.configure_routing(policy, required_skills, department, sticky_fallback),
        )

    def set_waiting_rules(
        self,
        tenant_id: str,
        queue_id: UUID,
        ring_timeout_seconds: int,
        max_wait_seconds: int,
        overflow: Fallback | None = None,
        no_agent: Fallback | None = None,
    ) -> None:
        self.change(
            tenant_id,
            queue_id,
            Queue,
            lambda q: q.set_waiting_rules(
                ring_timeout_seconds, max_wait_seconds, overflow, no_agent
            ),
        )

    def set_schedule(
        self,
        tenant_id: str,
        queue_id: UUID,
        calendar_name: str | None,
        when_closed: Fallback | None = None,
    ) -> None:
        self.change(
            tenant_id, queue_id, Queue, lambda q: q.set_schedule(calendar_name, when_closed)
        )

    def add_pickup_group(self, tenant_id: str, queue_id: UUID, group: str) -> None:
        self.change(tenant_id, queue_id, Queue, lambda q: q.add_pickup_group(group))

    def remove_pickup_group(self, tenant_id: str, queue_id: UUID, group: str) -> None:
        self.change(tenant_id, queue_id, Queue, lambda q: q.remove_pickup_group(group))

    def set_sla_policy(self, tenant_id: str, queue_id: UUID, policy_id: UUID | None) -> None:
        self.change(tenant_id, queue_id, Queue, lambda q: q.set_sla_policy(policy_id))

    def set_recording_policy(self, tenant_id: str, queue_id: UUID, record_calls: bool) -> None:
        self.change(tenant_id, queue_id, Queue, lambda q: q.set_recording_policy(record_calls))

    def rules(self, tenant_id: str, queue_id: UUID) -> RoutingRules:
        """The queue's routing rules, for a process manager to keep and call `route()` with."""
        return self.get_owned(tenant_id, queue_id, Queue).rules

    def route(
        self,
        tenant_id: str,
        queue_id: UUID,
        candidates: Iterable[Candidate],
        cursor: UUID | None = None,
        last_agent_id: UUID | None = None,
    ) -> list[UUID]:
        rules = self.rules(tenant_id, queue_id)
        return route(rules, candidates, cursor=cursor, last_agent_id=last_agent_id)

    def get(self, tenant_id: str, queue_id: UUID) -> dict[str, Any]:
        queue = self.get_owned(tenant_id, queue_id, Queue)
        return {
            "id": str(queue.id),
            "tenant_id": queue.tenant_id,
            "name": queue.name,
            "channels": sorted(c.value for c in queue.channels),
            "policy": queue.policy.value,
            "required_skills": dict(queue.required_skills),
            "department": queue.department,
            "sticky_fallback": str_or_none(queue.sticky_fallback),
            "ring_timeout_seconds": queue.ring_timeout_seconds,
            "max_wait_seconds": queue.max_wait_seconds,
            "overflow": _fallback_dict(queue.overflow),
            "no_agent": _fallback_dict(queue.no_agent),
            "calendar_name": queue.calendar_name,
            "when_closed": _fallback_dict(queue.when_closed),
            "pickup_groups": sorted(queue.pickup_groups),
            "sla_policy_id": str_or_none(queue.sla_policy_id),
            "record_calls": queue.record_calls,
            "version": queue.version,
        }
