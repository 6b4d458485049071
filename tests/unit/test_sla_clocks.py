"""SLA clocks (CC22): business hours, holidays, DST, pauses, warnings, breaches, outcomes.

Times are explicit: a clock's commands carry the fact's time (`at`) and the time it was
noticed (`now`). The office is open Monday to Friday, 08:00-17:00 in Saigon; 2025-03-28
is a Friday.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from domain.base import NotFound
from domain.calendars import BusinessCalendar, Holiday, OpeningHours, Weekday
from domain.sla_clocks import (
    ClockFinished,
    ClockNotDue,
    ClockStatus,
    ClockTerms,
    InvalidClock,
    Metric,
    SlaClock,
    SlaClocks,
    SubjectKind,
)

TENANT, OTHER = "acme", "globex"
SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600
POLICY = UUID(int=7)
WORKDAYS = list(Weekday)[:5]


def office(zone: str = "Asia/Ho_Chi_Minh", holidays: tuple[date, ...] = ()) -> BusinessCalendar:
    return BusinessCalendar(
        time_zone=zone,
        hours=tuple(OpeningHours(day=d, start=time(8), end=time(17)) for d in WORKDAYS),
        holidays=tuple(Holiday(day=d) for d in holidays),
    )


def saigon(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in late March 2025 in Saigon (28 is a Friday, 31 a Monday, April 1 a Tuesday)."""
    return datetime(2025, 3, 1, hour, minute, tzinfo=SAIGON) + timedelta(days=day - 1)


FRI_1630 = saigon(28, 16, 30)
MON = 31
TUE = 32  # April 1st


def terms(
    target: int = 4 * HOUR,
    warning: int = 3 * HOUR,
    calendar: BusinessCalendar | None = None,
    key: str = "standard@1",
) -> ClockTerms:
    if calendar is None:
        calendar = office()
    return ClockTerms(POLICY, key, target, warning, "office", calendar)


@pytest.fixture
def app(transcoder_env: dict[str, str]) -> SlaClocks:
    return SlaClocks(env=transcoder_env)


def start(app: SlaClocks, at: datetime = FRI_1630, t: ClockTerms | None = None) -> UUID:
    view = app.start(TENANT, SubjectKind.TICKET, uuid4(), Metric.FIRST_RESPONSE, t or terms(), at)
    return view.id


def events(app: SlaClocks, clock_id: UUID) -> list[Any]:
    return list(app.repository.event_store.get(clock_id))


def names(app: SlaClocks, clock_id: UUID) -> list[str]:
    return [type(e).__name__ for e in events(app, clock_id)]


def last(app: SlaClocks, clock_id: UUID, cls: type[Any]) -> Any:
    return [e for e in events(app, clock_id) if isinstance(e, cls)][-1]


# Due times


def test_a_clock_counts_only_business_hours_across_the_weekend(app: SlaClocks) -> None:
    clock = app.view(TENANT, start(app))
    # Friday 16:30-17:00, then Monday from 08:00: 3 hours (warning) and 4 (deadline).
    assert clock.warn_at == saigon(MON, 10, 30)
    assert clock.due_at == saigon(MON, 11, 30)
    assert clock.status is ClockStatus.RUNNING


def test_a_holiday_in_between_moves_the_deadline_a_day(app: SlaClocks) -> None:
    closed_monday = terms(calendar=office(holidays=(date(2025, 3, 31),)))
    clock = app.view(TENANT, start(app, t=closed_monday))
    assert clock.due_at == saigon(TUE, 11, 30)


def test_the_deadline_keeps_office_hours_across_a_dst_change(app: SlaClocks) -> None:
    # Berlin moves to summer time on Sunday 2025-03-30: Friday is UTC+1, Monday UTC+2.
    friday = datetime(2025, 3, 28, 16, 30, tzinfo=BERLIN)
    clock = app.view(TENANT, start(app, friday, terms(calendar=office("Europe/Berlin"))))
    assert clock.due_at == datetime(2025, 3, 31, 11, 30, tzinfo=BERLIN)
    assert clock.due_at == datetime(2025, 3, 31, 9, 30, tzinfo=UTC)


def test_without_a_calendar_a_clock_counts_around_the_clock(app: SlaClocks) -> None:
    around = ClockTerms(POLICY, "24/7", 4 * HOUR, 3 * HOUR)
    clock = app.view(TENANT, start(app, t=around))
    assert clock.due_at == FRI_1630 + timedelta(hours=4)
    assert clock.warn_at == FRI_1630 + timedelta(hours=3)


# Starting


def test_starting_a_clock_twice_starts_it_once(app: SlaClocks) -> None:
    ticket = uuid4()
    first = app.start(TENANT, "ticket", ticket, "first_response", terms(), FRI_1630)
    again = app.start(TENANT, "ticket", ticket, "first_response", terms(8 * HOUR), saigon(MON, 9))
    assert first.recorded == ("Started",) and again.recorded == ()
    assert again.id == first.id == SlaClock.create_id(TENANT, "ticket", ticket, "first_response")
    assert again.due_at == saigon(MON, 11, 30)
    assert names(app, first.id) == ["Started"]


def test_each_tenant_subject_and_metric_has_its_own_clock() -> None:
    ticket = uuid4()
    ids = {
        SlaClock.create_id(TENANT, "ticket", ticket, "first_response"),
        SlaClock.create_id(TENANT, "ticket", ticket, "resolution"),
        SlaClock.create_id(OTHER, "ticket", ticket, "first_response"),
        SlaClock.create_id(TENANT, "conversation", ticket, "first_response"),
    }
    assert len(ids) == 4


@pytest.mark.parametrize(
    "bad",
    [
        lambda: ClockTerms(POLICY, "k", 0, 0),
        lambda: ClockTerms(POLICY, "k", 4 * HOUR, 5 * HOUR),
        lambda: ClockTerms(POLICY, "k", 4 * HOUR, -1),
        lambda: ClockTerms(POLICY, "", 4 * HOUR, HOUR),
        lambda: SlaClock.start(
            TENANT, "ticket", uuid4(), "first_response", terms(), datetime(2025, 3, 28)
        ),
        lambda: SlaClock.start(TENANT, "email", uuid4(), "first_response", terms(), FRI_1630),
        lambda: SlaClock.start(TENANT, "ticket", uuid4(), "happiness", terms(), FRI_1630),
    ],
)
def test_nonsense_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidClock):
        bad()


# Warnings and breaches


def test_the_warning_is_refused_before_it_is_due_and_recorded_once(app: SlaClocks) -> None:
    clock = start(app)
    with pytest.raises(ClockNotDue):
        app.warn(TENANT, clock, saigon(MON, 10, 29))
    noticed = saigon(MON, 10, 31)
    assert app.warn(TENANT, clock, noticed).recorded == ("Warned",)
    assert app.warn(TENANT, clock, saigon(MON, 10, 45)).recorded == ()
    warned = last(app, clock, SlaClock.Warned)
    assert (warned.due, warned.at, warned.deadline) == (
        saigon(MON, 10, 30),
        noticed,
        saigon(MON, 11, 30),
    )


def test_a_breach_records_the_warning_it_missed_and_is_recorded_once(app: SlaClocks) -> None:
    clock = start(app)
    with pytest.raises(ClockNotDue):
        app.breach(TENANT, clock, saigon(MON, 11, 29))
    noticed = saigon(TUE, 9)
    assert app.breach(TENANT, clock, noticed).recorded == ("Warned", "Breached")
    assert app.breach(TENANT, clock, saigon(TUE, 10)).recorded == ()
    assert app.warn(TENANT, clock, saigon(TUE, 10)).recorded == ()
    breached = last(app, clock, SlaClock.Breached)
    assert (breached.due, breached.at) == (saigon(MON, 11, 30), noticed)
    assert names(app, clock) == ["Started", "Warned", "Breached"]


# Pauses


def test_a_pause_freezes_the_clock_and_a_resume_moves_the_deadline(app: SlaClocks) -> None:
    clock = start(app)
    paused = app.pause(TENANT, clock, 1, saigon(MON, 9), saigon(MON, 9))
    assert paused.status is ClockStatus.PAUSED
    assert (paused.warn_at, paused.due_at) == (None, None)
    # Friday's half hour and Monday's first hour are used: 2.5 hours remain.
    assert last(app, clock, SlaClock.Paused).used_seconds == 1.5 * HOUR
    with pytest.raises(ClockNotDue):
        app.breach(TENANT, clock, saigon(TUE, 15))
    resumed = app.resume(TENANT, clock, 1, saigon(TUE, 9), saigon(TUE, 9))
    assert resumed.status is ClockStatus.RUNNING
    assert resumed.warn_at == saigon(TUE, 10, 30)
    assert resumed.due_at == saigon(TUE, 11, 30)


def test_pauses_are_numbered_so_that_a_repeat_counts_once(app: SlaClocks) -> None:
    clock = start(app)
    app.pause(TENANT, clock, 1, saigon(MON, 9), saigon(MON, 9))
    assert app.pause(TENANT, clock, 1, saigon(MON, 9, 5), saigon(MON, 9, 5)).recorded == ()
    app.resume(TENANT, clock, 1, saigon(MON, 10), saigon(MON, 10))
    assert app.resume(TENANT, clock, 1, saigon(MON, 10), saigon(MON, 10)).recorded == ()
    assert app.pause(TENANT, clock, 1, saigon(MON, 10), saigon(MON, 10)).recorded == ()
    with pytest.raises(InvalidClock):
        app.pause(TENANT, clock, 3, saigon(MON, 10, 30), saigon(MON, 10, 30))
    with pytest.raises(InvalidClock):
        app.resume(TENANT, clock, 2, saigon(MON, 10, 30), saigon(MON, 10, 30))
    assert names(app, clock) == ["Started", "Paused", "Resumed"]


def test_a_fact_older_than_the_last_change_counts_from_that_change(app: SlaClocks) -> None:
    clock = start(app)
    app.pause(TENANT, clock, 1, saigon(MON, 9), saigon(MON, 9))
    app.resume(TENANT, clock, 1, saigon(MON, 10), saigon(MON, 10))
    # Learnt late, stamped 09:30: time already counted as paused is not counted again.
    app.pause(TENANT, clock, 2, saigon(MON, 9, 30), saigon(MON, 11))
    paused = last(app, clock, SlaClock.Paused)
    assert (paused.at, paused.used_seconds) == (saigon(MON, 10), 1.5 * HOUR)


def test_what_fell_due_before_a_late_noticed_pause_is_recorded_first(app: SlaClocks) -> None:
    clock = start(app)
    # Pending at 12:00, noticed at 15:00: the deadline of 11:30 had passed before.
    noticed = saigon(MON, 15)
    view = app.pause(TENANT, clock, 1, saigon(MON, 12), noticed)
    assert view.recorded == ("Warned", "Breached", "Paused")
    assert view.due_at == saigon(MON, 11, 30)  # a breached deadline stays shown
    breached = last(app, clock, SlaClock.Breached)
    assert (breached.due, breached.at) == (saigon(MON, 11, 30), noticed)


# Outcomes


def test_met_in_time_records_no_warning(app: SlaClocks) -> None:
    clock = start(app)
    view = app.meet(TENANT, clock, saigon(MON, 9), saigon(MON, 9))
    assert view.recorded == ("Met",) and view.status is ClockStatus.MET
    assert last(app, clock, SlaClock.Met).used_seconds == 1.5 * HOUR
    assert app.meet(TENANT, clock, saigon(MON, 10), saigon(MON, 10)).recorded == ()
    with pytest.raises(ClockFinished):
        app.breach(TENANT, clock, saigon(TUE, 9))
    with pytest.raises(ClockFinished):
        app.stop(TENANT, clock, saigon(TUE, 9), "late stop", saigon(TUE, 9))


def test_met_late_records_the_breach_with_its_due_time_first(app: SlaClocks) -> None:
    clock = start(app)
    noticed = saigon(TUE, 9)
    view = app.meet(TENANT, clock, saigon(MON, 13), noticed)
    assert view.recorded == ("Warned", "Breached", "Met")
    breached = last(app, clock, SlaClock.Breached)
    assert (breached.due, breached.at) == (saigon(MON, 11, 30), noticed)
    assert last(app, clock, SlaClock.Met).at == saigon(MON, 13)


def test_a_stopped_clock_is_final(app: SlaClocks) -> None:
    clock = start(app)
    view = app.stop(TENANT, clock, saigon(MON, 9), "resolved without a reply", saigon(MON, 9))
    assert view.status is ClockStatus.STOPPED
    assert app.stop(TENANT, clock, saigon(MON, 9), "again", saigon(MON, 9)).recorded == ()
    with pytest.raises(ClockFinished):
        app.meet(TENANT, clock, saigon(MON, 10), saigon(MON, 10))
    assert app.get(TENANT, clock)["stop_reason"] == "resolved without a reply"


# Retargeting


def test_retargeting_counts_the_time_used_against_the_new_target(app: SlaClocks) -> None:
    clock = start(app)
    urgent = terms(2 * HOUR, HOUR, key="standard@1/urgent")
    view = app.retarget(TENANT, clock, urgent, saigon(MON, 9), saigon(MON, 9))
    # 1.5 hours were used by Monday 09:00: the warning is due at once, the deadline at 09:30.
    assert view.recorded == ("Retargeted",)
    assert (view.warn_at, view.due_at) == (saigon(MON, 9), saigon(MON, 9, 30))
    assert app.retarget(TENANT, clock, urgent, saigon(MON, 9), saigon(MON, 9)).recorded == ()


def test_a_retarget_noticed_late_keeps_what_fell_due_under_the_old_terms(app: SlaClocks) -> None:
    clock = start(app)
    relaxed = terms(8 * HOUR, 6 * HOUR, key="standard@1/low")
    view = app.retarget(TENANT, clock, relaxed, saigon(MON, 12), saigon(MON, 15))
    assert view.recorded == ("Warned", "Breached", "Retargeted")
    assert view.due_at == saigon(MON, 11, 30)  # the breach stays
    assert app.get(TENANT, clock)["target_seconds"] == 8 * HOUR


def test_a_paused_clock_takes_new_terms_when_it_resumes(app: SlaClocks) -> None:
    clock = start(app)
    app.pause(TENANT, clock, 1, saigon(MON, 9), saigon(MON, 9))
    relaxed = terms(8 * HOUR, 6 * HOUR, key="standard@1/low")
    assert app.retarget(TENANT, clock, relaxed, saigon(MON, 10), saigon(MON, 10)).due_at is None
    resumed = app.resume(TENANT, clock, 1, saigon(TUE, 8), saigon(TUE, 8))
    assert resumed.due_at == saigon(TUE, 14, 30)  # 8 hours less the 1.5 used


# Walls, replay


def test_another_tenant_cannot_see_or_touch_a_clock(app: SlaClocks) -> None:
    clock = start(app)
    with pytest.raises(NotFound):
        app.breach(OTHER, clock, saigon(TUE, 9))
    with pytest.raises(NotFound):
        app.get(OTHER, clock)


def test_a_clock_replays_from_its_events(app: SlaClocks) -> None:
    clock = start(app, t=terms(calendar=office(holidays=(date(2025, 4, 30),))))
    app.pause(TENANT, clock, 1, saigon(MON, 9), saigon(MON, 9))
    app.resume(TENANT, clock, 1, saigon(MON, 10), saigon(MON, 10))
    app.breach(TENANT, clock, saigon(TUE, 9))
    got = app.get(TENANT, clock)
    assert got["status"] == "running" and got["pauses"] == 1 and got["version"] == 5
    assert datetime.fromisoformat(got["due_at"]) == saigon(MON, 12, 30)
    assert app.view(TENANT, clock).warned_at == saigon(TUE, 9)
