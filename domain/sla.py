"""SLA policies (CC22, CT17): how fast a tenant commits to answer and to resolve.

An `SlaPolicy` holds targets by (priority, channel): seconds to the first response and
seconds to resolution. A row may leave the priority or the channel open (None) to cover
every value of it, and the policy always has a default row, so every conversation or
ticket gets targets. Seconds count on a business calendar the tenant names (None counts
around the clock); the SLA timer process manager turns them into due times with the
calendar module. A warning goes out when `warning_ratio` of a target has elapsed.

`targets_for()` is the pure lookup; the most specific row wins (see `SlaTerms`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import DomainError, TenantAggregate, TenantApplication
from domain.checks import checked_enum, clean_name, str_or_none
from domain.vocabulary import Channel, Priority

MAX_TARGET_SECONDS = 365 * 24 * 3600
DEFAULT_WARNING_RATIO = 0.8

RowKey = tuple[Priority | None, Channel | None]


class InvalidSlaPolicy(DomainError):
    """An SLA command with values the domain does not accept."""


@dataclass(frozen=True)
class Targets:
    """One row's commitment: first response and resolution, in (business) seconds."""

    first_response_seconds: int
    resolution_seconds: int


@dataclass(frozen=True)
class SlaTargets:
    """What applies to one piece of work: its targets, the calendar and when to warn."""

    first_response_seconds: int
    resolution_seconds: int
    calendar_name: str | None
    warning_ratio: float

    @property
    def first_response_warning_seconds(self) -> int:
        return int(self.first_response_seconds * self.warning_ratio)

    @property
    def resolution_warning_seconds(self) -> int:
        return int(self.resolution_seconds * self.warning_ratio)


@dataclass(frozen=True)
class SlaTerms:
    """A policy's rows as one immutable value, for `targets_for()`.

    Lookup order: (priority, channel), then (priority, any channel), then (any priority,
    channel), then the default. Priority outranks channel because a commitment is first
    about how urgent the matter is, then about where it came from.
    """

    rows: Mapping[RowKey, Targets]
    default: Targets
    calendar_name: str | None
    warning_ratio: float


def targets_for(terms: SlaTerms, priority: Priority, channel: Channel) -> SlaTargets:
    """The targets for work of this priority on this channel."""
    keys: list[RowKey] = [(priority, channel), (priority, None), (None, channel)]
    row = next((terms.rows[k] for k in keys if k in terms.rows), terms.default)
    return SlaTargets(
        first_response_seconds=row.first_response_seconds,
        resolution_seconds=row.resolution_seconds,
        calendar_name=terms.calendar_name,
        warning_ratio=terms.warning_ratio,
    )


class SlaPolicy(TenantAggregate):
    """A tenant's SLA policy: target rows, a default row, a calendar and a warning ratio."""

    class Created(TenantAggregate.Created):
        tenant_id: str
        name: str
        first_response_seconds: int
        resolution_seconds: int

    class Renamed(TenantAggregate.Event):
        name: str

    class DefaultTargetsSet(TenantAggregate.Event):
        first_response_seconds: int
        resolution_seconds: int

    class TargetsSet(TenantAggregate.Event):
        priority: str | None
        channel: str | None
        first_response_seconds: int
        resolution_seconds: int

    class TargetsRemoved(TenantAggregate.Event):
        priority: str | None
        channel: str | None

    class CalendarChanged(TenantAggregate.Event):
        calendar_name: str | None

    class WarningRatioChanged(TenantAggregate.Event):
        warning_ratio: float

    @event(Created)
    def __init__(
        self, tenant_id: str, name: str, first_response_seconds: int, resolution_seconds: int
    ) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.default = Targets(first_response_seconds, resolution_seconds)
        self.rows: dict[RowKey, Targets] = {}
        self.calendar_name: str | None = None
        self.warning_ratio = DEFAULT_WARNING_RATIO

    @classmethod
    def create(
        cls, tenant_id: str, name: str, first_response_seconds: int, resolution_seconds: int
    ) -> SlaPolicy:
        """A policy with only its default row, counted 24/7, warning at 80%."""
        default = _valid_targets(first_response_seconds, resolution_seconds)
        return cls(
            tenant_id=tenant_id,
            name=clean_name(name, "a policy name", 100, InvalidSlaPolicy),
            first_response_seconds=default.first_response_seconds,
            resolution_seconds=default.resolution_seconds,
        )

    @event(Renamed)
    def _rename(self, name: str) -> None:
        self.name = name

    @event(DefaultTargetsSet)
    def _set_default(self, first_response_seconds: int, resolution_seconds: int) -> None:
        self.default = Targets(first_response_seconds, resolution_seconds)

    @event(TargetsSet)
    def _set_targets(
        self,
        priority: str | None,
        channel: str | None,
        first_response_seconds: int,
        resolution_seconds: int,
    ) -> None:
        key = _key(priority, channel)
        self.rows[key] = Targets(first_response_seconds, resolution_seconds)

    @event(TargetsRemoved)
    def _remove_targets(self, priority: str | None, channel: str | None) -> None:
        del self.rows[_key(priority, channel)]

    @event(CalendarChanged)
    def _change_calendar(self, calendar_name: str | None) -> None:
        self.calendar_name = calendar_name

    @event(WarningRatioChanged)
    def _change_warning_ratio(self, warning_ratio: float) -> None:
        self.warning_ratio = warning_ratio

    def rename(self, name: str) -> None:
        name = clean_name(name, "a policy name", 100, InvalidSlaPolicy)
        if name != self.name:
            self._rename(name)

    def set_default(self, first_response_seconds: int, resolution_seconds: int) -> None:
        targets = _valid_targets(first_response_seconds, resolution_seconds)
        if targets != self.default:
            self._set_default(first_response_seconds, resolution_seconds)

    def set_targets(
        self,
        priority: Priority | None,
        channel: Channel | None,
        first_response_seconds: int,
        resolution_seconds: int,
    ) -> None:
        """Sets one row; None for the priority or the channel covers all of them."""
        key = _key(priority, channel)
        if key == (None, None):
            raise InvalidSlaPolicy("the row for any priority and any channel is the default")
        targets = _valid_targets(first_response_seconds, resolution_seconds)
        if self.rows.get(key) != targets:
            self._set_targets(
                priority=str_or_none(key[0]),
                channel=str_or_none(key[1]),
                first_response_seconds=targets.first_response_seconds,
                resolution_seconds=targets.resolution_seconds,
            )

    def remove_targets(self, priority: Priority | None, channel: Channel | None) -> None:
        key = _key(priority, channel)
        if key in self.rows:
            self._remove_targets(priority=str_or_none(key[0]), channel=str_or_none(key[1]))

    def set_calendar(self, calendar_name: str | None) -> None:
        """Counts targets on the tenant's business calendar of this name; None is 24/7."""
        if calendar_name is not None:
            calendar_name = clean_name(calendar_name, "a calendar name", 100, InvalidSlaPolicy)
        if calendar_name != self.calendar_name:
            self._change_calendar(calendar_name)

    def set_warning_ratio(self, warning_ratio: float) -> None:
        if not 0 < warning_ratio < 1:
            raise InvalidSlaPolicy("the warning comes strictly between 0% and 100% of a target")
        if warning_ratio != self.warning_ratio:
            self._change_warning_ratio(float(warning_ratio))

    @property
    def terms(self) -> SlaTerms:
        return SlaTerms(dict(self.rows), self.default, self.calendar_name, self.warning_ratio)


def _key(priority: Priority | str | None, channel: Channel | str | None) -> RowKey:
    return (
        None if priority is None else checked_enum(Priority, priority, InvalidSlaPolicy),
        None if channel is None else checked_enum(Channel, channel, InvalidSlaPolicy),
    )


def _valid_targets(first_response_seconds: int, resolution_seconds: int) -> Targets:
    for seconds in (first_response_seconds, resolution_seconds):
        if not isinstance(seconds, int) or not 0 < seconds <= MAX_TARGET_SECONDS:
            raise InvalidSlaPolicy("a target is a whole number of seconds, up to a year")
    if resolution_seconds < first_response_seconds:
        raise InvalidSlaPolicy("resolution cannot be due before the first response")
    return Targets(first_response_seconds, resolution_seconds)


class SlaPolicies(TenantApplication):
    """The SLA policy verbs for tenant admins and the SLA timer process manager."""

    name = "sla_policies"

    def create(
        self, tenant_id: str, name: str, first_response_seconds: int, resolution_seconds: int
    ) -> UUID:
        policy = SlaPolicy.create(tenant_id, name, first_response_seconds, resolution_seconds)
        self.save(policy)
        return policy.id

    def rename(self, tenant_id: str, policy_id: UUID, name: str) -> None:
        self.change(tenant_id, policy_id, SlaPolicy, lambda p: p.rename(name))

    def set_default(
        self, tenant_id: str, policy_id: UUID, first_response_seconds: int, resolution_seconds: int
    ) -> None:
        self.change(
            tenant_id,
            policy_id,
            SlaPolicy,
            lambda p: p.set_default(first_response_seconds, resolution_seconds),
        )

    def set_targets(
        self,
        tenant_id: str,
        policy_id: UUID,
        priority: Priority | None,
        channel: Channel | None,
        first_response_seconds: int,
        resolution_seconds: int,
    ) -> None:
        self.change(
            tenant_id,
            policy_id,
            SlaPolicy,
            lambda p: p.set_targets(priority, channel, first_response_seconds, resolution_seconds),
        )

    def remove_targets(
        self, tenant_id: str, policy_id: UUID, priority: Priority | None, channel: Channel | None
    ) -> None:
        self.change(tenant_id, policy_id, SlaPolicy, lambda p: p.remove_targets(priority, channel))

    def set_calendar(self, tenant_id: str, policy_id: UUID, calendar_name: str | None) -> None:
        self.change(tenant_id, policy_id, SlaPolicy, lambda p: p.set_calendar(calendar_name))

    def set_warning_ratio(self, tenant_id: str, policy_id: UUID, warning_ratio: float) -> None:
        self.change(tenant_id, policy_id, SlaPolicy, lambda p: p.set_warning_ratio(warning_ratio))

    def terms(self, tenant_id: str, policy_id: UUID) -> SlaTerms:
        """The policy as a value for the SLA timers to keep and look up with `targets_for()`."""
        return self.get_owned(tenant_id, policy_id, SlaPolicy).terms

    def targets_for(
        self, tenant_id: str, policy_id: UUID, priority: Priority, channel: Channel
    ) -> SlaTargets:
        return targets_for(self.terms(tenant_id, policy_id), priority, channel)

    def get(self, tenant_id: str, policy_id: UUID) -> dict[str, Any]:
        policy = self.get_owned(tenant_id, policy_id, SlaPolicy)
        return {
            "id": str(policy.id),
            "tenant_id": policy.tenant_id,
            "name": policy.name,
            "default": _targets_dict(None, None, policy.default),
            "rows": [
                _targets_dict(priority, channel, targets)
                for (priority, channel), targets in sorted(
                    policy.rows.items(),
                    key=lambda row: (str_or_none(row[0][0]) or "", str_or_none(row[0][1]) or ""),
                )
            ],
            "calendar_name": policy.calendar_name,
            "warning_ratio": policy.warning_ratio,
            "version": policy.version,
        }


def _targets_dict(
    priority: Priority | None, channel: Channel | None, targets: Targets
) -> dict[str, Any]:
    return {
        "priority": str_or_none(priority),
        "channel": str_or_none(channel),
        "first_response_seconds": targets.first_response_seconds,
        "resolution_seconds": targets.resolution_seconds,
    }
