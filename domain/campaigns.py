"""Campaigns (CC20, CT14): outbound calls, SMS or email to a list of customers, paced.

A `Campaign` goes draft → scheduled → running ⇄ paused → completed, or is cancelled on
the way. It holds its targets (a customer and the address to reach them on, added in bulk
and deduplicated), its schedule (time windows, each open only while the tenant's
business calendar of that name is open), its pacing (at most so many at once and so many
a minute) and its retry policy. Each target's attempts and outcomes are events:
Attempted, then Reached, or Failed (then Retried while attempts remain), or OptedOut.
The campaign completes by itself once no target is left to try.

`next_targets()` is pure: it tells the campaign runner which targets to contact now,
within the windows and the pacing. Business calendars belong to another module, so the
runner passes `is_open(calendar_name, now)`; the domain never imports the calendar.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import DomainError, TenantAggregate, TenantApplication
from domain.checks import aware, checked_enum, clean_name, iso_or_none
from domain.phones import normalize_phone_number
from domain.vocabulary import Channel

CAMPAIGN_CHANNELS = frozenset({Channel.CALL, Channel.SMS, Channel.EMAIL})
DEFAULT_MAX_CONCURRENT = 1
DEFAULT_PER_MINUTE = 10
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RETRY_AFTER_SECONDS = 3600

# 6 to 15 digits: a subset of what domain.phones accepts, so every address has a key.
_PHONE = re.compile(r"\+?[0-9]{6,15}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MINUTE = timedelta(minutes=1)


class InvalidCampaign(DomainError):
    """A campaign command with values the domain does not accept."""


class CampaignStateError(DomainError):
    """The command does not fit the campaign's status (e.g. pausing a draft)."""


class UnknownTarget(DomainError):
    """The customer is not a target of this campaign."""


class TargetNotDue(DomainError):
    """The target cannot be attempted now: it is finished, in progress or waiting to retry."""


class AttemptMismatch(DomainError):
    """An outcome names an attempt that is not the target's current one."""


class CampaignStatus(StrEnum):
    """draft → scheduled → running ⇄ paused → completed; cancelled from any but the last."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class TargetStatus(StrEnum):
    """Where one target stands; reached, failed and opted out are final."""

    PENDING = "pending"  # to be tried (again, after `not_before` on a retry)
    IN_PROGRESS = "in_progress"  # an attempt is under way
    REACHED = "reached"
    FAILED = "failed"  # no attempts left, or a failure not worth retrying
    OPTED_OUT = "opted_out"


_FINISHED = frozenset({CampaignStatus.COMPLETED, CampaignStatus.CANCELLED})
_OPEN_TARGETS = frozenset({TargetStatus.PENDING, TargetStatus.IN_PROGRESS})


@dataclass(frozen=True)
class Window:
    """A time window the campaign may contact customers in, while the calendar is open."""

    calendar_name: str
    starts_at: datetime
    ends_at: datetime

    def contains(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


@dataclass
class Target:
    """One customer of the campaign and how far their attempts have got."""

    customer_id: UUID
    address: str
    status: TargetStatus = TargetStatus.PENDING
    attempts: int = 0
    not_before: datetime | None = None
    last_attempt_at: datetime | None = None
    last_failure: str | None = None


@dataclass(frozen=True)
class Contact:
    """What `next_targets()` returns: whom to contact, where, and which attempt it is."""

    customer_id: UUID
    address: str
    attempt: int


def next_targets(
    campaign: Campaign,
    now: datetime,
    in_flight: int,
    *,
    is_open: Callable[[str, datetime], bool],
) -> list[Contact]:
    """The targets to contact now, oldest first, within the schedule and the pacing.

    `in_flight` is how many of the campaign's contacts are live right now (calls
    ringing or talking, messages being sent); `is_open(calendar_name, now)` asks the
    tenant's business calendar. Nothing while the campaign is not running.
    """
    if campaign.status is not CampaignStatus.RUNNING:
        return []
    if not any(w.contains(now) and is_open(w.calendar_name, now) for w in campaign.windows):
        return []
    started_last_minute = campaign.attempts_between(now - _MINUTE, now)
    room = min(campaign.max_concurrent - in_flight, campaign.per_minute - started_last_minute)
    due: list[Contact] = []
    for target in campaign.targets.values():
        if len(due) >= room:
            break
        if target.status is TargetStatus.PENDING and (
            target.not_before is None or target.not_before <= now
        ):
            due.append(Contact(target.customer_id, target.address, target.attempts + 1))
    return due


class Campaign(TenantAggregate):
    """A tenant's outbound campaign on one channel (CC20 calls and SMS, CT14 adds email)."""

    class Drafted(TenantAggregate.Created):
        tenant_id: str
        name: str
        channel: str

    class CampaignEvent(TenantAggregate.Event):
        """Events that happen at a moment the caller states (never the wall clock)."""

        at: datetime

    class Renamed(TenantAggregate.Event):
        name: str

    class TargetsAdded(TenantAggregate.Event):
        targets: list[dict[str, Any]]

    class ScheduleSet(TenantAggregate.Event):
        windows: list[dict[str, Any]]

    class PacingSet(TenantAggregate.Event):
        max_concurrent: int
        per_minute: int

    class RetryPolicySet(TenantAggregate.Event):
        max_attempts: int
        retry_after_seconds: int

    class Scheduled(CampaignEvent):
        pass

    class Started(CampaignEvent):
        pass

    class Paused(CampaignEvent):
        pass

    class Resumed(CampaignEvent):
        pass

    class Completed(CampaignEvent):
        pass

    class Cancelled(CampaignEvent):
        pass

    class Attempted(CampaignEvent):
        customer_id: UUID
        attempt: int

    class Reached(CampaignEvent):
        customer_id: UUID
        attempt: int

    class Failed(CampaignEvent):
        customer_id: UUID
        attempt: int
        reason: str

    class Retried(CampaignEvent):
        customer_id: UUID
        not_before: datetime

    class OptedOut(CampaignEvent):
        customer_id: UUID

    @event(Drafted)
    def __init__(self, tenant_id: str, name: str, channel: str) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.channel = Channel(channel)
        self.status = CampaignStatus.DRAFT
        self.targets: dict[UUID, Target] = {}
        self.address_keys: set[str] = set()  # one per person reached: see _address_key
        self.windows: tuple[Window, ...] = ()
        self.max_concurrent = DEFAULT_MAX_CONCURRENT
        self.per_minute = DEFAULT_PER_MINUTE
        self.max_attempts = DEFAULT_MAX_ATTEMPTS
        self.retry_after_seconds = DEFAULT_RETRY_AFTER_SECONDS
        self.attempt_times: list[datetime] = []  # kept sorted, for the per-minute pacing

    @classmethod
    def draft(cls, tenant_id: str, name: str, channel: Channel) -> Campaign:
        checked = checked_enum(Channel, channel, InvalidCampaign)
        if checked not in CAMPAIGN_CHANNELS:
            raise InvalidCampaign(f"a campaign runs on {sorted(CAMPAIGN_CHANNELS)}")
        return cls(
            tenant_id=tenant_id,
            name=clean_name(name, "a campaign name", 200, InvalidCampaign),
            channel=checked,
        )

    # Mutators.

    @event(Renamed)
    def _rename(self, name: str) -> None:
        self.name = name

    @event(TargetsAdded)
    def _add_targets(self, targets: list[dict[str, Any]]) -> None:
        for data in targets:
            target = Target(customer_id=data["customer_id"], address=data["address"])
            self.targets[target.customer_id] = target
            self.address_keys.add(_address_key(self.channel, target.address))

    @event(ScheduleSet)
    def _set_schedule(self, windows: list[dict[str, Any]]) -> None:
        self.windows = tuple(
            Window(w["calendar_name"], w["starts_at"], w["ends_at"]) for w in windows
        )

    @event(PacingSet)
    def _set_pacing(self, max_concurrent: int, per_minute: int) -> None:
        self.max_concurrent, self.per_minute = max_concurrent, per_minute

    @event(RetryPolicySet)
    def _set_retry_policy(self, max_attempts: int, retry_after_seconds: int) -> None:
        self.max_attempts, self.retry_after_seconds = max_attempts, retry_after_seconds

    @event(Scheduled)
    def _schedule(self, at: datetime) -> None:
        self.status = CampaignStatus.SCHEDULED

    @event(Started)
    def _start(self, at: datetime) -> None:
        self.status = CampaignStatus.RUNNING

    @event(Paused)
    def _pause(self, at: datetime) -> None:
        self.status = CampaignStatus.PAUSED

    @event(Resumed)
    def _resume(self, at: datetime) -> None:
        self.status = CampaignStatus.RUNNING

    @event(Completed)
    def _complete(self, at: datetime) -> None:
        self.status = CampaignStatus.COMPLETED

    @event(Cancelled)
    def _cancel(self, at: datetime) -> None:
        self.status = CampaignStatus.CANCELLED

    @event(Attempted)
    def _attempt(self, customer_id: UUID, attempt: int, at: datetime) -> None:
        target = self.targets[customer_id]
        target.status = TargetStatus.IN_PROGRESS
        target.attempts = attempt
        target.last_attempt_at = at
        bisect.insort(self.attempt_times, at)

    @event(Reached)
    def _reach(self, customer_id: UUID, attempt: int, at: datetime) -> None:
        self.targets[customer_id].status = TargetStatus.REACHED

    @event(Failed)
    def _fail(self, customer_id: UUID, attempt: int, reason: str, at: datetime) -> None:
        target = self.targets[customer_id]
        target.status, target.last_failure = TargetStatus.FAILED, reason

    @event(Retried)
    def _retry(self, customer_id: UUID, not_before: datetime, at: datetime) -> None:
        target = self.targets[customer_id]
        target.status, target.not_before = TargetStatus.PENDING, not_before

    @event(OptedOut)
    def _opt_out(self, customer_id: UUID, at: datetime) -> None:
        self.targets[customer_id].status = TargetStatus.OPTED_OUT

    # Configuration.

    def rename(self, name: str) -> None:
        name = clean_name(name, "a campaign name", 200, InvalidCampaign)
        if name != self.name:
            self._rename(name)

    def add_targets(self, targets: Iterable[tuple[UUID, str]]) -> dict[str, Any]:
        """Adds targets in bulk; a customer or an address already there is skipped.

        An invalid address does not stop the import: it is reported back, so a list of
        ten thousand rows with one typo still loads.
        """
        self._require_not_finished()
        added: list[dict[str, Any]] = []
        customers, keys = set(self.targets), set(self.address_keys)
        duplicates, invalid = 0, []
        for customer_id, raw in targets:
            address = _address(self.channel, raw)
            if address is None:
                invalid.append(raw)
            elif customer_id in customers or _address_key(self.channel, address) in keys:
                duplicates += 1
            else:
                customers.add(customer_id)
                keys.add(_address_key(self.channel, address))
                added.append({"customer_id": customer_id, "address": address})
        if added:
            self._add_targets(added)
        return {"added": len(added), "duplicates": duplicates, "invalid": invalid}

    def set_schedule(self, windows: Sequence[Window]) -> None:
        self._require_not_finished()
        checked = sorted((_valid_window(w) for w in windows), key=lambda w: w.starts_at)
        if tuple(checked) != self.windows:
            self._set_schedule(
                [
                    {
                        "calendar_name": w.calendar_name,
                        "starts_at": w.starts_at,
                        "ends_at": w.ends_at,
                    }
                    for w in checked
                ]
            )

    def set_pacing(self, max_concurrent: int, per_minute: int) -> None:
        """At most `max_concurrent` contacts live at once and `per_minute` started a minute."""
        self._require_not_finished()
        if not 1 <= max_concurrent <= 1000 or not 1 <= per_minute <= 10_000:
            raise InvalidCampaign("pacing is 1 to 1000 at once and 1 to 10000 a minute")
        if (max_concurrent, per_minute) != (self.max_concurrent, self.per_minute):
            self._set_pacing(max_concurrent, per_minute)

    def set_retry_policy(self, max_attempts: int, retry_after_seconds: int) -> None:
        self._require_not_finished()
        if not 1 <= max_attempts <= 10:
            raise InvalidCampaign("a target is attempted 1 to 10 times")
        if not 60 <= retry_after_seconds <= 7 * 24 * 3600:
            raise InvalidCampaign("a retry waits a minute to a week")
        if (max_attempts, retry_after_seconds) != (self.max_attempts, self.retry_after_seconds):
            self._set_retry_policy(max_attempts, retry_after_seconds)

    # Status.

    def schedule(self, at: datetime) -> None:
        """Ready to run: needs targets and a window that has not ended yet."""
        at = aware(at, InvalidCampaign)
        if self._already(CampaignStatus.SCHEDULED, CampaignStatus.DRAFT):
            return
        if not self.targets:
            raise InvalidCampaign("a campaign needs targets before it is scheduled")
        if not any(w.ends_at > at for w in self.windows):
            raise InvalidCampaign("a campaign needs a window that has not ended yet")
        self._schedule(at=at)

    def start(self, at: datetime) -> None:
        if not self._already(CampaignStatus.RUNNING, CampaignStatus.SCHEDULED):
            self._start(at=aware(at, InvalidCampaign))

    def pause(self, at: datetime) -> None:
        if not self._already(CampaignStatus.PAUSED, CampaignStatus.RUNNING):
            self._pause(at=aware(at, InvalidCampaign))

    def resume(self, at: datetime) -> None:
        if self.status is CampaignStatus.RUNNING:
            return
        self._require_status(CampaignStatus.PAUSED)
        self._resume(at=aware(at, InvalidCampaign))

    def complete(self, at: datetime) -> None:
        if self.status is CampaignStatus.COMPLETED:
            return
        self._require_status(CampaignStatus.RUNNING, CampaignStatus.PAUSED)
        self._complete(at=aware(at, InvalidCampaign))

    def cancel(self, at: datetime) -> None:
        if self.status is CampaignStatus.CANCELLED:
            return
        self._require_not_finished()
        self._cancel(at=aware(at, InvalidCampaign))

    # Targets' attempts and outcomes.

    def attempt(self, customer_id: UUID, at: datetime) -> int:
        """The runner starts contacting a target; returns the attempt's number."""
        at = aware(at, InvalidCampaign)
        self._require_status(CampaignStatus.RUNNING)
        target = self._target(customer_id)
        if target.status is not TargetStatus.PENDING:
            raise TargetNotDue(f"target {customer_id} is {target.status.value}")
        if target.not_before is not None and at < target.not_before:
            raise TargetNotDue(f"target {customer_id} is retried from {target.not_before}")
        self._attempt(customer_id=customer_id, attempt=target.attempts + 1, at=at)
        return target.attempts

    def reached(self, customer_id: UUID, attempt: int, at: datetime) -> None:
        """The customer answered, or the message was delivered."""
        at = aware(at, InvalidCampaign)
        if self._outcome_known(customer_id, attempt):
            return
        self._reach(customer_id=customer_id, attempt=attempt, at=at)
        self._complete_when_done(at)

    def failed(
        self, customer_id: UUID, attempt: int, reason: str, at: datetime, retryable: bool = True
    ) -> None:
        """The attempt failed (busy, no answer, bounced...); retried while attempts remain."""
        at = aware(at, InvalidCampaign)
        reason = clean_name(reason, "a failure reason", 200, InvalidCampaign)
        if self._outcome_known(customer_id, attempt):
            return
        self._fail(customer_id=customer_id, attempt=attempt, reason=reason, at=at)
        if retryable and attempt < self.max_attempts and self.status not in _FINISHED:
            not_before = at + timedelta(seconds=self.retry_after_seconds)
            self._retry(customer_id=customer_id, not_before=not_before, at=at)
        self._complete_when_done(at)

    def opt_out(self, customer_id: UUID, at: datetime) -> None:
        """The customer asked not to be contacted (again); at any time, even when finished."""
        at = aware(at, InvalidCampaign)
        if self._target(customer_id).status is not TargetStatus.OPTED_OUT:
            self._opt_out(customer_id=customer_id, at=at)
            self._complete_when_done(at)

    # Queries.

    def attempts_between(self, start: datetime, end: datetime) -> int:
        """How many attempts started after `start` and at or before `end`."""
        times = self.attempt_times
        return bisect.bisect_right(times, end) - bisect.bisect_right(times, start)

    def progress(self) -> dict[str, int]:
        counts = Counter(t.status.value for t in self.targets.values())
        return {status.value: counts.get(status.value, 0) for status in TargetStatus}

    # Guards.

    def _already(self, wanted: CampaignStatus, source: CampaignStatus) -> bool:
        """True when the campaign is in `wanted` already; raises unless it is in `source`."""
        if self.status is wanted:
            return True
        self._require_status(source)
        return False

    def _require_status(self, *allowed: CampaignStatus) -> None:
        if self.status not in allowed:
            names = " or ".join(s.value for s in allowed)
            raise CampaignStateError(f"the campaign is {self.status.value}, not {names}")

    def _require_not_finished(self) -> None:
        if self.status in _FINISHED:
            raise CampaignStateError(f"the campaign is {self.status.value}")

    def _target(self, customer_id: UUID) -> Target:
        target = self.targets.get(customer_id)
        if target is None:
            raise UnknownTarget(f"customer {customer_id} is not a target of this campaign")
        return target

    def _outcome_known(self, customer_id: UUID, attempt: int) -> bool:
        """True when this attempt's outcome is already recorded (a repeated fact)."""
        target = self._target(customer_id)
        if attempt < 1 or attempt > target.attempts:
            raise AttemptMismatch(f"target {customer_id} has no attempt {attempt}")
        return attempt < target.attempts or target.status is not TargetStatus.IN_PROGRESS

    def _complete_when_done(self, at: datetime) -> None:
        active = self.status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED)
        if active and not any(t.status in _OPEN_TARGETS for t in self.targets.values()):
            self._complete(at=at)


def _address(channel: Channel, raw: str) -> str | None:
    """The address as the runner will use it, or None when it cannot be one.

    A phone number keeps the tenant's spelling, punctuation aside (the runner dials it
    as imported); `_address_key` is what finds it again under another spelling.
    """
    if channel is Channel.EMAIL:
        email = raw.strip().lower()
        return email if _EMAIL.fullmatch(email) else None
    phone = re.sub(r"[\s.\-()]", "", raw)
    return phone if _PHONE.fullmatch(phone) else None


def _address_key(channel: Channel, address: str) -> str:
    """What two addresses of the same person share: 0912345678 and +84912345678 are one."""
    return address if channel is Channel.EMAIL else normalize_phone_number(address)


def _valid_window(window: Window) -> Window:
    starts_at, ends_at = (
        aware(window.starts_at, InvalidCampaign),
        aware(window.ends_at, InvalidCampaign),
    )
    if ends_at <= starts_at:
        raise InvalidCampaign("a window ends after it starts")
    return Window(
        clean_name(window.calendar_name, "a calendar name", 200, InvalidCampaign),
        starts_at,
        ends_at,
    )


class Campaigns(TenantApplication):
    """The campaign verbs for tenant admins (CT15) and the campaign runner."""

    name = "campaigns"

    def draft(self, tenant_id: str, name: str, channel: Channel) -> UUID:
        campaign = Campaign.draft(tenant_id, name, channel)
        self.save(campaign)
        return campaign.id

    def rename(self, tenant_id: str, campaign_id: UUID, name: str) -> None:
        self.change(tenant_id, campaign_id, Campaign, lambda c: c.rename(name))

    def add_targets(
        self, tenant_id: str, campaign_id: UUID, targets: Iterable[tuple[UUID, str]]
    ) -> dict[str, Any]:
        return self.change(tenant_id, campaign_id, Campaign, lambda c: c.add_targets(targets))

    def set_schedule(self, tenant_id: str, campaign_id: UUID, windows: Sequence[Window]) -> None:
        self.change(tenant_id, campaign_id, Campaign, lambda c: c.set_schedule(windows))

    def set_pacing(
        self, tenant_id: str, campaign_id: UUID, max_concurrent: int, per_minute: int
    ) -> None:
        self.change(
            tenant_id, campaign_id, Campaign, lambda c: c.set_pacing(max_concurrent, per_minute)
        )

    def set_retry_policy(
        self, tenant_id: str, campaign_id: UUID, max_attempts: int, retry_after_seconds: int
    ) -> None:
        self.change(
            tenant_id,
            campaign_id,
            Campaign,
            lambda c: c.set_retry_policy(max_attempts, retry_after_seconds),
        )

    def schedule(self, tenant_id: str, campaign_id: UUID, at: datetime) -> None:
        self.change(tenant_id, campaign_id, Campaign, lambda c: c.schedule(at))

    def start(self, tenant_id: str, campaign_id: UUID, at: datetime) -> None:
        self.change(tenant_id, campaign_id, Campaign, lambda c: c.start(at))

    def pause(self, tenant_id: str, campaign_id: UUID, at: datetime) -> None:
        self.change(tenant_id, campaign_id, Campaign, lambda c: c.pause(at))

    def resume(self, tenant_id: str, campaign_id: UUID, at: datetime) -> None:
        self.change(tenant_id, campaign_id, Campaign, lambda c: c.resume(at))

    def complete(self, tenant_id: str, campaign_id: UUID, at: datetime) -> None:
        self.change(tenant_id, campaign_id, Campaign, lambda c: c.complete(at))

    def cancel(self, tenant_id: str, campaign_id: UUID, at: datetime) -> None:
        self.change(tenant_id, campaign_id, Campaign, lambda c: c.cancel(at))

    def attempt(self, tenant_id: str, campaign_id: UUID, customer_id: UUID, at: datetime) -> int:
        return self.change(tenant_id, campaign_id, Campaign, lambda c: c.attempt(customer_id, at))

    def reached(
        self, tenant_id: str, campaign_id: UUID, customer_id: UUID, attempt: int, at: datetime
    ) -> None:
        self.change(tenant_id, campaign_id, Campaign, lambda c: c.reached(customer_id, attempt, at))

    def failed(
        self,
        tenant_id: str,
        campaign_id: UUID,
        customer_id: UUID,
        attempt: int,
        reason: str,
        at: datetime,
        retryable: bool = True,
    ) -> None:
        self.change(
            tenant_id,
            campaign_id,
            Campaign,
            lambda c: c.failed(customer_id, attempt, reason, at, retryable),
        )

    def opt_out(self, tenant_id: str, campaign_id: UUID, customer_id: UUID, at: datetime) -> None:
        self.change(tenant_id, campaign_id, Campaign, lambda c: c.opt_out(customer_id, at))

    def next_targets(
        self,
        tenant_id: str,
        campaign_id: UUID,
        now: datetime,
        in_flight: int,
        is_open: Callable[[str, datetime], bool],
    ) -> list[Contact]:
        campaign = self.get_owned(tenant_id, campaign_id, Campaign)
        return next_targets(campaign, aware(now, InvalidCampaign), in_flight, is_open=is_open)

    def targets(self, tenant_id: str, campaign_id: UUID) -> list[dict[str, Any]]:
        return [
            {
                "customer_id": str(t.customer_id),
                "address": t.address,
                "status": t.status.value,
                "attempts": t.attempts,
                "not_before": iso_or_none(t.not_before),
                "last_failure": t.last_failure,
            }
            for t in self.get_owned(tenant_id, campaign_id, Campaign).targets.values()
        ]

    def get(self, tenant_id: str, campaign_id: UUID) -> dict[str, Any]:
        campaign = self.get_owned(tenant_id, campaign_id, Campaign)
        return {
            "id": str(campaign.id),
            "tenant_id": campaign.tenant_id,
            "name": campaign.name,
            "channel": campaign.channel.value,
            "status": campaign.status.value,
            "windows": [
                {
                    "calendar_name": w.calendar_name,
                    "starts_at": w.starts_at.isoformat(),
                    "ends_at": w.ends_at.isoformat(),
                }
                for w in campaign.windows
            ],
            "max_concurrent": campaign.max_concurrent,
            "per_minute": campaign.per_minute,
            "max_attempts": campaign.max_attempts,
            "retry_after_seconds": campaign.retry_after_seconds,
            "progress": campaign.progress(),
            "version": campaign.version,
        }
