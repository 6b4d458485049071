"""SLA clocks (CC22, CT17): one commitment's timer on one piece of work, and its outcome.

A clock is one (subject, metric): a ticket's or a conversation's first response, or its
resolution. It counts business seconds on the calendar its policy names (None: around the
clock), stands still while the work waits on the customer, and records as events every
decision the SLA timer process manager (projections.sla_timers) takes about it: warned,
breached, met, stopped. Its id is derived from (tenant, subject, metric), so starting a
clock twice starts it once, whichever process or retry does it.

Times. A command carries the time of the fact it follows (`at`: when the ticket went
pending, got its first public reply...) and `now`, when the process noticed it. A warning
or breach that fell due before that fact is recorded first, with the time it was due
(`due`) apart from the time it was noticed (`at`). So the history does not depend on
whether the process manager was running at the due time or came back hours later; only
the noticing times do.

Due times are computed once, by the command that changes them (start, resume, retarget),
with domain.calendars, and carried in the event: replay never redoes calendar arithmetic,
so a fix to the calendar rules cannot rewrite a recorded deadline. While paused a clock
has no due time for what has not fallen due yet; `Paused` freezes the business seconds
used so far and `Resumed` computes the new due times from what is left.

Retargeting (the ticket's priority or policy changed, the policy's targets or calendar
were edited) applies the terms in force to the whole clock: business seconds already
used count against the new target, and a target already used up falls due at once.
Warnings and breaches recorded under the old terms stay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.base import DomainError, TenantAggregate, TenantApplication
from domain.calendars import (
    BusinessCalendar,
    add_business_seconds,
    business_seconds_between,
    calendar_from_builtins,
    calendar_to_builtins,
)
from domain.checks import checked_enum, checked_text, clean_name, iso_or_none, str_or_none
from domain.sla import MAX_TARGET_SECONDS

# Namespace of clock ids (SlaClock.create_id); never change it, ids are stored.
_CLOCK_NAMESPACE = UUID("3c0f6d0e-8b7a-4f2e-9a51-6d4c2b1e7f90")
MAX_TERMS_KEY = 500
MAX_REASON = 200


class Metric(StrEnum):
    """What a clock measures."""

    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


class SubjectKind(StrEnum):
    """The kind of work a clock runs on."""

    TICKET = "ticket"
    CONVERSATION = "conversation"


class ClockStatus(StrEnum):
    """Whether a clock counts. Warned and breached are flags on top of this: a breached
    clock goes on running (and can be paused) until it is met, to show how late it is."""

    RUNNING = "running"
    PAUSED = "paused"
    MET = "met"
    STOPPED = "stopped"  # ended without being met: the SLA no longer applies


FINISHED = frozenset({ClockStatus.MET, ClockStatus.STOPPED})


class SlaClockError(DomainError):
    """An SLA clock command the domain does not accept."""


class InvalidClock(SlaClockError):
    """A clock command with values the domain does not accept."""


class ClockNotDue(SlaClockError):
    """A warning or breach asked for before its due time, or while the clock is paused."""


class ClockFinished(SlaClockError):
    """The clock was met or stopped and takes no more commands but its own repeat."""


@dataclass(frozen=True)
class ClockTerms:
    """What a clock counts towards: one policy's target for this work, on its calendar.

    `key` is the caller's fingerprint of what the terms were derived from (policy and its
    version, priority, channel, calendar and its version); the process manager compares
    it with the clock's to find clocks whose terms changed without redoing the lookup.
    """

    policy_id: UUID
    key: str
    target_seconds: int
    warning_seconds: int
    calendar_name: str | None = None
    calendar: BusinessCalendar | None = None  # None: around the clock

    def __post_init__(self) -> None:
        checked_text(self.key, "a terms key", MAX_TERMS_KEY, InvalidClock)
        target, warning = self.target_seconds, self.warning_seconds
        if type(target) is not int or not 0 < target <= MAX_TARGET_SECONDS:
            raise InvalidClock("a target is a whole number of seconds, up to a year")
        if type(warning) is not int or not 0 <= warning <= target:
            raise InvalidClock("the warning comes at a whole number of seconds within the target")
        if self.calendar is not None and not isinstance(self.calendar, BusinessCalendar):
            raise InvalidClock("a calendar must be a BusinessCalendar")
        if self.calendar_name is not None:
            clean_name(self.calendar_name, "a calendar name", 100, InvalidClock)


@dataclass(frozen=True)
class ClockView:
    """A clock's state after a command, and what the command recorded (event names)."""

    id: UUID
    tenant_id: str
    subject_kind: SubjectKind
    subject_id: UUID
    metric: Metric
    status: ClockStatus
    terms_key: str
    pauses: int
    warn_at: datetime | None
    due_at: datetime | None
    warned_at: datetime | None
    breached_at: datetime | None
    recorded: tuple[str, ...] = ()


def _utc(at: datetime) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidClock("times must be timezone-aware")
    return at.astimezone(UTC)


def _deadline(calendar: BusinessCalendar | None, start: datetime, seconds: float) -> datetime:
    """When `seconds` of counted time will have passed since `start`."""
    seconds = max(0.0, seconds)
    if calendar is None:
        return start + timedelta(seconds=seconds)
    return add_business_seconds(calendar, start, seconds).astimezone(UTC)


def _counted(calendar: BusinessCalendar | None, start: datetime, end: datetime) -> float:
    """Counted time between two instants (0 if `end` is not after `start`)."""
    if calendar is None:
        return max(0.0, (end - start).total_seconds())
    return business_seconds_between(calendar, start, end)


def _calendar_event(calendar: BusinessCalendar | None) -> dict[str, Any] | None:
    return None if calendar is None else calendar_to_builtins(calendar)


class SlaClock(TenantAggregate):
    """One SLA commitment's timer on one ticket or conversation (see the module)."""

    class Started(TenantAggregate.Created):
        tenant_id: str
        subject_kind: str
        subject_id: UUID
        metric: str
        policy_id: UUID
        terms_key: str
        target_seconds: int
        warning_seconds: int
        calendar_name: str | None
        calendar: dict[str, Any] | None
        at: datetime
        warn_at: datetime
        due_at: datetime

    class Paused(TenantAggregate.Event):
        """The work waits on the customer; `used_seconds` were counted up to `at`."""

        number: int  # the subject's nth pause, so that a repeated pause counts once
        at: datetime
        used_seconds: float

    class Resumed(TenantAggregate.Event):
        number: int
        at: datetime
        warn_at: datetime | None  # None once warned
        due_at: datetime

    class Retargeted(TenantAggregate.Event):
        """The terms in force changed; due times follow (none while paused)."""

        policy_id: UUID
        terms_key: str
        target_seconds: int
        warning_seconds: int
        calendar_name: str | None
        calendar: dict[str, Any] | None
        at: datetime
        used_seconds: float
        warn_at: datetime | None
        due_at: datetime | None

    class Warned(TenantAggregate.Event):
        """Noticed `at`; the warning was `due` then, the deadline is `deadline`."""

        at: datetime
        due: datetime
        deadline: datetime

    class Breached(TenantAggregate.Event):
        """Noticed `at`; the deadline was `due`."""

        at: datetime
        due: datetime

    class Met(TenantAggregate.Event):
        """Met `at`, after `used_seconds` of counted time (late if breached before)."""

        at: datetime
        used_seconds: float

    class Stopped(TenantAggregate.Event):
        """Ended `at` without being met, e.g. resolved without a reply, SLA removed."""

        at: datetime
        reason: str
        used_seconds: float

    @staticmethod
    def create_id(tenant_id: str, subject_kind: str, subject_id: UUID, metric: str) -> UUID:
        """The id of a subject's clock for a metric: the same every time it is asked."""
        return uuid5(_CLOCK_NAMESPACE, f"{tenant_id}/{subject_kind}/{subject_id}/{metric}")

    @classmethod
    def start(
        cls,
        tenant_id: str,
        subject_kind: SubjectKind | str,
        subject_id: UUID,
        metric: Metric | str,
        terms: ClockTerms,
        at: datetime,
    ) -> SlaClock:
        if not isinstance(terms, ClockTerms):
            raise InvalidClock("terms must be ClockTerms")
        if not isinstance(subject_id, UUID):
            raise InvalidClock("a subject id is a UUID")
        at = _utc(at)
        return cls(
            tenant_id=tenant_id,
            subject_kind=checked_enum(SubjectKind, subject_kind, InvalidClock).value,
            subject_id=subject_id,
            metric=checked_enum(Metric, metric, InvalidClock).value,
            policy_id=terms.policy_id,
            terms_key=terms.key,
            target_seconds=terms.target_seconds,
            warning_seconds=terms.warning_seconds,
            calendar_name=terms.calendar_name,
            calendar=_calendar_event(terms.calendar),
            at=at,
            warn_at=_deadline(terms.calendar, at, terms.warning_seconds),
            due_at=_deadline(terms.calendar, at, terms.target_seconds),
        )

    @event(Started)
    def __init__(
        self,
        tenant_id: str,
        subject_kind: str,
        subject_id: UUID,
        metric: str,
        policy_id: UUID,
        terms_key: str,
        target_seconds: int,
        warning_seconds: int,
        calendar_name: str | None,
        calendar: dict[str, Any] | None,
        at: datetime,
        warn_at: datetime,
        due_at: datetime,
    ) -> None:
        self.tenant_id = tenant_id
        self.subject_kind = SubjectKind(subject_kind)
        self.subject_id = subject_id
        self.metric = Metric(metric)
        self._set_terms(
            policy_id, terms_key, target_seconds, warning_seconds, calendar_name, calendar
        )
        self.started_at = at
        self.status = ClockStatus.RUNNING
        self.running_since: datetime | None = at
        self.paused_at: datetime | None = None
        self.used_seconds = 0.0  # counted before `running_since`
        self.pauses = 0
        self.warn_at: datetime | None = warn_at
        self.due_at: datetime | None = due_at
        self.warned_at: datetime | None = None
        self.breached_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.stop_reason: str | None = None

    def _set_terms(
        self,
        policy_id: UUID,
        terms_key: str,
        target_seconds: int,
        warning_seconds: int,
        calendar_name: str | None,
        calendar: dict[str, Any] | None,
    ) -> None:
        self.terms = ClockTerms(
            policy_id=policy_id,
            key=terms_key,
            target_seconds=target_seconds,
            warning_seconds=warning_seconds,
            calendar_name=calendar_name,
            calendar=None if calendar is None else calendar_from_builtins(calendar),
        )

    # Mutators: one per event, no checks (they also run on replay).

    @event(Paused)
    def _pause(self, number: int, at: datetime, used_seconds: float) -> None:
        self.status = ClockStatus.PAUSED
        self.pauses = number
        self.paused_at = at
        self.running_since = None
        self.used_seconds = used_seconds
        # What has not fallen due yet has no due time while nothing is counted.
        if self.warned_at is None:
            self.warn_at = None
        if self.breached_at is None:
            self.due_at = None

    @event(Resumed)
    def _resume(
        self, number: int, at: datetime, warn_at: datetime | None, due_at: datetime
    ) -> None:
        self.status = ClockStatus.RUNNING
        self.paused_at = None
        self.running_since = at
        self.warn_at = warn_at
        self.due_at = due_at

    @event(Retargeted)
    def _retarget(
        self,
        policy_id: UUID,
        terms_key: str,
        target_seconds: int,
        warning_seconds: int,
        calendar_name: str | None,
        calendar: dict[str, Any] | None,
        at: datetime,
        used_seconds: float,
        warn_at: datetime | None,
        due_at: datetime | None,
    ) -> None:
        self._set_terms(
            policy_id, terms_key, target_seconds, warning_seconds, calendar_name, calendar
        )
        self.used_seconds = used_seconds
        if self.status is ClockStatus.RUNNING:
            self.running_since = at
        self.warn_at = warn_at
        self.due_at = due_at

    @event(Warned)
    def _warn(self, at: datetime, due: datetime, deadline: datetime) -> None:
        self.warned_at = at

    @event(Breached)
    def _breach(self, at: datetime, due: datetime) -> None:
        self.breached_at = at

    @event(Met)
    def _meet(self, at: datetime, used_seconds: float) -> None:
        self._end(ClockStatus.MET, at, used_seconds)

    @event(Stopped)
    def _stop(self, at: datetime, reason: str, used_seconds: float) -> None:
        self._end(ClockStatus.STOPPED, at, used_seconds)
        self.stop_reason = reason

    def _end(self, status: ClockStatus, at: datetime, used_seconds: float) -> None:
        self.status = status
        self.ended_at = at
        self.used_seconds = used_seconds
        self.running_since = self.paused_at = None

    # Commands. Each is idempotent where the process manager may repeat it.

    def pause(self, number: int, at: datetime, now: datetime) -> None:
        """The subject's `number`th wait on the customer began `at`; 1, 2, ... in order."""
        if type(number) is not int or number < 1:
            raise InvalidClock("pauses are numbered from 1")
        if number <= self.pauses:
            return
        self._check_not_finished()
        if number != self.pauses + 1 or self.status is ClockStatus.PAUSED:
            raise InvalidClock(f"pause {number} of a clock with {self.pauses} pauses")
        at = self._not_before(_utc(at), self.running_since)
        self._overdue(at, _utc(now))
        self._pause(number, at, self._used_at(at))

    def resume(self, number: int, at: datetime, now: datetime) -> None:
        """The `number`th wait on the customer ended `at`."""
        if type(number) is not int or number < 1:
            raise InvalidClock("pauses are numbered from 1")
        if number < self.pauses or (
            number == self.pauses and self.status is not ClockStatus.PAUSED
        ):
            return
        self._check_not_finished()
        if number > self.pauses:
            raise InvalidClock(f"resume of pause {number}, which did not begin")
        at = self._not_before(_utc(at), self.paused_at)
        terms, used = self.terms, self.used_seconds
        due = (
            self.due_at
            if self.due_at is not None and self.breached_at is not None
            else _deadline(terms.calendar, at, terms.target_seconds - used)
        )
        self._resume(number, at, self._next_warning(at, used), due)

    def retarget(self, terms: ClockTerms, at: datetime, now: datetime) -> None:
        """Count towards `terms` from now on, in force since `at` (see the module)."""
        if not isinstance(terms, ClockTerms):
            raise InvalidClock("terms must be ClockTerms")
        self._check_not_finished()
        if terms == self.terms:
            return
        at, now = _utc(at), _utc(now)
        if self.status is ClockStatus.RUNNING:
            at = self._not_before(at, self.running_since)
            self._overdue(at, now)
        # What was warned or breached under the old terms stays as it was recorded.
        warn_at: datetime | None = self.warn_at if self.warned_at is not None else None
        due_at: datetime | None = self.due_at if self.breached_at is not None else None
        if self.status is ClockStatus.RUNNING:
            used = self._used_at(at)
            if self.warned_at is None:
                warn_at = _deadline(terms.calendar, at, terms.warning_seconds - used)
            if self.breached_at is None:
                due_at = _deadline(terms.calendar, at, terms.target_seconds - used)
        else:
            at, used = self._not_before(at, self.paused_at), self.used_seconds
        self._retarget(
            policy_id=terms.policy_id,
            terms_key=terms.key,
            target_seconds=terms.target_seconds,
            warning_seconds=terms.warning_seconds,
            calendar_name=terms.calendar_name,
            calendar=_calendar_event(terms.calendar),
            at=at,
            used_seconds=used,
            warn_at=warn_at,
            due_at=due_at,
        )

    def warn(self, now: datetime) -> None:
        """Record the warning; refused before it is due, a no-op once recorded."""
        if self.warned_at is not None:
            return
        self._check_not_finished()
        now = _utc(now)
        if self.status is not ClockStatus.RUNNING or self.warn_at is None or now < self.warn_at:
            raise ClockNotDue(f"the warning of clock {self.id} is not due at {now.isoformat()}")
        self._warn_now(now)

    def breach(self, now: datetime) -> None:
        """Record the breach (and the warning, if it was missed); refused before the
        deadline, a no-op once recorded."""
        if self.breached_at is not None:
            return
        self._check_not_finished()
        now = _utc(now)
        if self.status is not ClockStatus.RUNNING or self.due_at is None or now < self.due_at:
            raise ClockNotDue(f"clock {self.id} is not due at {now.isoformat()}")
        if self.warned_at is None:
            self._warn_now(now)
        self._breach(now, self.due_at)

    def meet(self, at: datetime, now: datetime) -> None:
        """The commitment was met `at` (late, if its deadline came first)."""
        if self.status is ClockStatus.MET:
            return
        self._check_not_finished()
        at = self._not_before(_utc(at), self.started_at)
        self._overdue(at, _utc(now))
        self._meet(at, self._used_at(at))

    def stop(self, at: datetime, reason: str, now: datetime) -> None:
        """The commitment no longer applies since `at`; what fell due before stays."""
        if self.status is ClockStatus.STOPPED:
            return
        self._check_not_finished()
        reason = checked_text(reason, "a reason", MAX_REASON, InvalidClock)
        at = self._not_before(_utc(at), self.started_at)
        self._overdue(at, _utc(now))
        self._stop(at, reason, self._used_at(at))

    def _overdue(self, upto: datetime, now: datetime) -> None:
        """Record, noticed `now`, the warning and breach that fell due by `upto`."""
        if self.status is not ClockStatus.RUNNING:
            return
        if self.warned_at is None and self.warn_at is not None and self.warn_at <= upto:
            self._warn_now(now)
        if self.breached_at is None and self.due_at is not None and self.due_at <= upto:
            self._breach(now, self.due_at)

    def _warn_now(self, now: datetime) -> None:
        assert self.warn_at is not None and self.due_at is not None  # a running clock's
        self._warn(now, self.warn_at, self.due_at)

    def _next_warning(self, at: datetime, used: float) -> datetime | None:
        if self.warned_at is not None:
            return self.warn_at
        return _deadline(self.terms.calendar, at, self.terms.warning_seconds - used)

    def _used_at(self, at: datetime) -> float:
        """Counted time up to `at`: what was frozen, plus the running stretch."""
        if self.running_since is None:
            return self.used_seconds
        return self.used_seconds + _counted(self.terms.calendar, self.running_since, at)

    @staticmethod
    def _not_before(at: datetime, earliest: datetime | None) -> datetime:
        # A fact the process manager learns late may carry a time before the clock's
        # last change; counted time is never taken back, so it counts from that change.
        return at if earliest is None or at >= earliest else earliest

    def _check_not_finished(self) -> None:
        if self.status in FINISHED:
            raise ClockFinished(f"clock {self.id} is {self.status}")

    def view(self, recorded: tuple[str, ...] = ()) -> ClockView:
        return ClockView(
            id=self.id,
            tenant_id=self.tenant_id,
            subject_kind=self.subject_kind,
            subject_id=self.subject_id,
            metric=self.metric,
            status=self.status,
            terms_key=self.terms.key,
            pauses=self.pauses,
            warn_at=self.warn_at,
            due_at=self.due_at,
            warned_at=self.warned_at,
            breached_at=self.breached_at,
            recorded=recorded,
        )


class SlaClocks(TenantApplication):
    """The SLA clock verbs, for the SLA timer process manager.

    Every verb returns the clock's `ClockView` with the names of the events it recorded
    (none for a repeat), so the manager goes on from the clock's true state without
    waiting for its own events to come back.
    """

    name = "sla_clocks"

    def start(
        self,
        tenant_id: str,
        subject_kind: SubjectKind | str,
        subject_id: UUID,
        metric: Metric | str,
        terms: ClockTerms,
        at: datetime,
    ) -> ClockView:
        """Start the subject's clock for `metric` at `at`; a no-op if it was started."""
        clock = SlaClock.start(tenant_id, subject_kind, subject_id, metric, terms, at)
        if clock.id in self.repository:
            return self.view(tenant_id, clock.id)
        recorded = _names(clock)
        self.save(clock)
        return clock.view(recorded)

    def pause(
        self, tenant_id: str, clock_id: UUID, number: int, at: datetime, now: datetime
    ) -> ClockView:
        return self._run(tenant_id, clock_id, lambda c: c.pause(number, at, now))

    def resume(
        self, tenant_id: str, clock_id: UUID, number: int, at: datetime, now: datetime
    ) -> ClockView:
        return self._run(tenant_id, clock_id, lambda c: c.resume(number, at, now))

    def retarget(
        self, tenant_id: str, clock_id: UUID, terms: ClockTerms, at: datetime, now: datetime
    ) -> ClockView:
        return self._run(tenant_id, clock_id, lambda c: c.retarget(terms, at, now))

    def warn(self, tenant_id: str, clock_id: UUID, now: datetime) -> ClockView:
        return self._run(tenant_id, clock_id, lambda c: c.warn(now))

    def breach(self, tenant_id: str, clock_id: UUID, now: datetime) -> ClockView:
        return self._run(tenant_id, clock_id, lambda c: c.breach(now))

    def meet(self, tenant_id: str, clock_id: UUID, at: datetime, now: datetime) -> ClockView:
        return self._run(tenant_id, clock_id, lambda c: c.meet(at, now))

    def stop(
        self, tenant_id: str, clock_id: UUID, at: datetime, reason: str, now: datetime
    ) -> ClockView:
        return self._run(tenant_id, clock_id, lambda c: c.stop(at, reason, now))

    def view(self, tenant_id: str, clock_id: UUID) -> ClockView:
        return self.get_owned(tenant_id, clock_id, SlaClock).view()

    def get(self, tenant_id: str, clock_id: UUID) -> dict[str, Any]:
        c = self.get_owned(tenant_id, clock_id, SlaClock)
        return {
            "id": str(c.id),
            "tenant_id": c.tenant_id,
            "subject_kind": str(c.subject_kind),
            "subject_id": str(c.subject_id),
            "metric": str(c.metric),
            "status": str(c.status),
            "policy_id": str(c.terms.policy_id),
            "target_seconds": c.terms.target_seconds,
            "warning_seconds": c.terms.warning_seconds,
            "calendar_name": c.terms.calendar_name,
            "started_at": c.started_at.isoformat(),
            "warn_at": iso_or_none(c.warn_at),
            "due_at": iso_or_none(c.due_at),
            "warned_at": iso_or_none(c.warned_at),
            "breached_at": iso_or_none(c.breached_at),
            "ended_at": iso_or_none(c.ended_at),
            "stop_reason": str_or_none(c.stop_reason),
            "used_seconds": c.used_seconds,
            "pauses": c.pauses,
            "version": c.version,
        }

    def _run(
        self, tenant_id: str, clock_id: UUID, command: Callable[[SlaClock], None]
    ) -> ClockView:
        clock = self.get_owned(tenant_id, clock_id, SlaClock)
        command(clock)
        recorded = _names(clock)
        if recorded:
            self.save(clock)
        return clock.view(recorded)


def _names(clock: SlaClock) -> tuple[str, ...]:
    return tuple(type(e).__name__ for e in clock.pending_events)
