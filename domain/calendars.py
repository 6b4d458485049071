"""Business calendars (CC11, CC22): when a tenant is open, and how much open time elapses.

A calendar is a pure value: an IANA time zone, weekly opening hours (several intervals a
day if need be) and whole-day holidays. Routing by schedule (CC11) asks `is_open` and
`next_open`; SLA timers (CC22), which only run while the tenant is open, ask
`business_seconds_between` (time used so far) and `add_business_seconds` (when a deadline
falls). No aggregate lives here: a Tenant stores named calendars (domain.tenants).

Opening hours are wall-clock times in the calendar's zone, so "09:00" stays 09:00 across a
DST change and a day that loses an hour has one hour less of night, not of business. All
arithmetic is done on UTC instants, never on aware local datetimes (Python subtracts those
as wall-clock times, which is wrong across a DST change). A boundary that falls in a
spring-forward gap is shifted forward by the gap's length and one in a fall-back overlap
means its first occurrence: Python's `fold=0`, the same rule as java.time.

The functions walk day by day, never minute by minute: a 30-day deadline is about 30 small
steps.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from domain.base import DomainError

ONE_DAY = timedelta(days=1)
MIDNIGHT = time(0)


class CalendarError(DomainError):
    """A calendar, or a question put to one, that the domain does not accept."""


class InvalidCalendar(CalendarError):
    """A calendar definition with values the domain does not accept."""


class NaiveDatetime(CalendarError):
    """A datetime without a time zone: the instant it means is unknown."""


class InvalidDuration(CalendarError):
    """A negative or non-finite number of business seconds."""


class NeverOpen(CalendarError):
    """No opening was found where one must exist (a defensive check; should not happen)."""


class Weekday(StrEnum):
    """A day of the week, in `date.weekday()` order (Monday first)."""

    MONDAY = "mon"
    TUESDAY = "tue"
    WEDNESDAY = "wed"
    THURSDAY = "thu"
    FRIDAY = "fri"
    SATURDAY = "sat"
    SUNDAY = "sun"


_WEEKDAYS = tuple(Weekday)


class OpeningHours(msgspec.Struct, frozen=True, kw_only=True):
    """One opening interval on one weekday, from `start` up to (not including) `end`.

    `end` of 00:00 means midnight at the end of the day (24:00), so 00:00-00:00 is the
    whole day. An interval may not span midnight: 22:00-06:00 is refused; write it as
    22:00-00:00 on one day and 00:00-06:00 on the next.
    """

    day: Weekday
    start: time
    end: time

    def __post_init__(self) -> None:
        # Structs do not check types when built in code, only when decoded; a wrong type
        # here would fail much later, inside a deadline computation.
        if not isinstance(self.day, Weekday):
            try:
                msgspec.structs.force_setattr(self, "day", Weekday(self.day))
            except ValueError:
                raise InvalidCalendar(f"day must be one of {[d.value for d in Weekday]}") from None
        for name, value in (("start", self.start), ("end", self.end)):
            if not isinstance(value, time) or value.tzinfo is not None:
                raise InvalidCalendar(f"{name} must be a wall-clock time without time zone")
        if self.end != MIDNIGHT and self.end <= self.start:
            raise InvalidCalendar(
                f"{self.day} {self.start}-{self.end} does not end after it starts; intervals "
                "may not span midnight: split it at 00:00 over two days"
            )


class Holiday(msgspec.Struct, frozen=True, kw_only=True):
    """A whole day, in the calendar's own zone, on which the tenant is closed."""

    day: date
    name: str = ""

    def __post_init__(self) -> None:
        if type(self.day) is not date:  # a datetime is a date too, and would mislead
            raise InvalidCalendar("a holiday's day must be a date")
        if not isinstance(self.name, str) or len(self.name) > 200:
            raise InvalidCalendar("a holiday's name is text of at most 200 characters")


class BusinessCalendar(msgspec.Struct, frozen=True, kw_only=True):
    """When a tenant is open: weekly hours in an IANA time zone, minus holidays.

    `hours` and `holidays` are kept as tuples in a canonical order (weekday, then start;
    date), so a calendar is hashable and two calendars with the same hours are equal
    however they were listed. Overlapping intervals on one day and repeated holiday
    dates are refused (they are almost always a typing mistake); touching intervals
    are fine.
    """

    time_zone: str
    hours: tuple[OpeningHours, ...]
    holidays: tuple[Holiday, ...] = ()

    def __post_init__(self) -> None:
        _zone(self.time_zone)
        if not self.hours:
            raise InvalidCalendar("a calendar needs at least one opening interval")
        if not all(isinstance(h, OpeningHours) for h in self.hours):
            raise InvalidCalendar("hours must be OpeningHours")
        if not all(isinstance(h, Holiday) for h in self.holidays):
            raise InvalidCalendar("holidays must be Holiday")
        canonical_hours = tuple(sorted(self.hours, key=lambda h: (_WEEKDAYS.index(h.day), h.start)))
        msgspec.structs.force_setattr(self, "hours", canonical_hours)
        msgspec.structs.force_setattr(self, "holidays", tuple(sorted(self.holidays, key=_day)))
        for day in Weekday:
            intervals = sorted((h for h in self.hours if h.day == day), key=lambda h: h.start)
            for before, after in zip(intervals, intervals[1:], strict=False):
                if before.end == MIDNIGHT or before.end > after.start:
                    raise InvalidCalendar(
                        f"{day} {before.start}-{before.end} overlaps {after.start}-{after.end}"
                    )
        days = [h.day for h in self.holidays]
        if len(set(days)) != len(days):
            raise InvalidCalendar("a holiday date is listed twice")


def _day(holiday: Holiday) -> date:
    return holiday.day


def _zone(key: str) -> ZoneInfo:
    if not isinstance(key, str) or not key:
        raise InvalidCalendar("a calendar needs an IANA time zone name, e.g. Asia/Ho_Chi_Minh")
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidCalendar(f"unknown time zone {key!r}") from None


def calendar_to_builtins(calendar: BusinessCalendar) -> dict[str, Any]:
    """The calendar as JSON-native values (lists, dicts, ISO strings): how events carry it."""
    builtins: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(calendar))
    return builtins


_HOURS_MINUTES = re.compile(r"^\d{2}:\d{2}$")


def calendar_from_builtins(data: Any) -> BusinessCalendar:
    """Decode a calendar from JSON-native values strictly, as InvalidCalendar if bad.

    Times may be written "09:00" as people do, as well as RFC 3339's "09:00:00".
    """
    if isinstance(data, dict) and isinstance(data.get("hours"), list):
        data = {**data, "hours": [_with_seconds(h) for h in data["hours"]]}
    try:
        return msgspec.convert(data, BusinessCalendar)
    except msgspec.ValidationError as e:
        raise InvalidCalendar(f"not a business calendar: {e}") from None


def _with_seconds(interval: Any) -> Any:
    if not isinstance(interval, dict):
        return interval
    return {
        k: f"{v}:00"
        if k in ("start", "end") and isinstance(v, str) and _HOURS_MINUTES.match(v)
        else v
        for k, v in interval.items()
    }


class _Compiled(NamedTuple):
    """A calendar in the shape the day walk wants: per-weekday intervals, holiday set."""

    zone: ZoneInfo
    week: tuple[tuple[tuple[time, time], ...], ...]  # Monday first; end 00:00 = 24:00
    holidays: frozenset[date]
    weekly_open_seconds: float  # wall-clock, ignoring DST; only bounds the walks

    def spans(self, day: date) -> list[tuple[datetime, datetime]]:
        """The open intervals of one local day, as UTC instants, in order."""
        if day in self.holidays:
            return []
        spans = []
        for start, end in self.week[day.weekday()]:
            opens = datetime.combine(day, start, tzinfo=self.zone).astimezone(UTC)
            closes_on = day + ONE_DAY if end == MIDNIGHT else day
            closes = datetime.combine(closes_on, end, tzinfo=self.zone).astimezone(UTC)
            if closes > opens:  # an interval inside a spring-forward gap has no length
                spans.append((opens, closes))
        return spans

    def walk_bound(self, seconds: float = 0.0) -> int:
        """Days after which a walk must have found what it seeks, however holidays fall."""
        weeks = int(seconds // self.weekly_open_seconds) + len(self.holidays) + 2
        return 7 * weeks


@lru_cache(maxsize=256)
def _compiled(calendar: BusinessCalendar) -> _Compiled:
    week = tuple(
        tuple(sorted((h.start, h.end) for h in calendar.hours if h.day == day)) for day in _WEEKDAYS
    )
    weekly = sum(
        (86400.0 if h.end == MIDNIGHT else _seconds(h.end)) - _seconds(h.start)
        for h in calendar.hours
    )
    return _Compiled(
        zone=_zone(calendar.time_zone),
        week=week,
        holidays=frozenset(h.day for h in calendar.holidays),
        weekly_open_seconds=weekly,
    )


def _seconds(t: time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise NaiveDatetime(f"{at.isoformat()} has no time zone")
    return at.astimezone(UTC)


def _local_day(compiled: _Compiled, instant: datetime) -> date:
    return instant.astimezone(compiled.zone).date()


def is_open(calendar: BusinessCalendar, at: datetime) -> bool:
    """Whether the tenant is open at this instant."""
    compiled = _compiled(calendar)
    instant = _utc(at)
    # Intervals do not span midnight, so only the local day of `at` can contain it.
    return any(s <= instant < e for s, e in compiled.spans(_local_day(compiled, instant)))


def next_open(calendar: BusinessCalendar, at: datetime) -> datetime:
    """The first open instant at or after `at`: `at` itself if open, else the next opening.

    The result is in the time zone `at` was given in.
    """
    compiled = _compiled(calendar)
    instant = _utc(at)
    day = _local_day(compiled, instant)
    for _ in range(compiled.walk_bound()):
        for opens, closes in compiled.spans(day):
            if instant < closes:
                return at if opens <= instant else opens.astimezone(at.tzinfo)
        day += ONE_DAY
    raise NeverOpen(f"no opening found after {at.isoformat()}")


def business_seconds_between(calendar: BusinessCalendar, start: datetime, end: datetime) -> float:
    """Open time elapsed from `start` to `end`, in seconds; 0.0 if `end` is not after it."""
    compiled = _compiled(calendar)
    lo, hi = _utc(start), _utc(end)
    if hi <= lo:
        return 0.0
    total = timedelta(0)
    day, last = _local_day(compiled, lo), _local_day(compiled, hi)
    while day <= last:
        for opens, closes in compiled.spans(day):
            overlap = min(closes, hi) - max(opens, lo)
            if overlap > timedelta(0):
                total += overlap
        day += ONE_DAY
    return total.total_seconds()


def add_business_seconds(calendar: BusinessCalendar, start: datetime, seconds: float) -> datetime:
    """The instant at which `seconds` of open time have elapsed since `start`.

    A deadline that uses up an interval exactly falls at its closing time, not at the
    next opening. Zero seconds gives `start` itself. The result is in `start`'s zone and
    `business_seconds_between(calendar, start, result)` gives `seconds` back (to the
    microsecond).
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidDuration(f"business seconds must be finite and not negative: {seconds}")
    compiled = _compiled(calendar)
    instant = _utc(start)
    remaining = timedelta(seconds=seconds)
    if not remaining:
        return start
    day = _local_day(compiled, instant)
    for _ in range(compiled.walk_bound(seconds)):
        for opens, closes in compiled.spans(day):
            if closes <= instant:
                continue
            begin = max(opens, instant)
            if closes - begin >= remaining:
                return (begin + remaining).astimezone(start.tzinfo)
            remaining -= closes - begin
        day += ONE_DAY
    raise NeverOpen(f"no deadline found {seconds} business seconds after {start.isoformat()}")
