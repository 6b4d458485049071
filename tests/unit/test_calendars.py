"""Business calendars: opening hours, holidays, DST, and the business-seconds arithmetic."""

from __future__ import annotations

import time as clock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.calendars import (
    BusinessCalendar,
    Holiday,
    InvalidCalendar,
    InvalidDuration,
    NaiveDatetime,
    OpeningHours,
    Weekday,
    add_business_seconds,
    business_seconds_between,
    calendar_from_builtins,
    calendar_to_builtins,
    is_open,
    next_open,
)

SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")
PARIS = ZoneInfo("Europe/Paris")
WORKDAYS = [Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY, Weekday.THURSDAY, Weekday.FRIDAY]
HOUR = 3600.0


def hours(day: Weekday, start: str, end: str) -> OpeningHours:
    return OpeningHours(day=day, start=time.fromisoformat(start), end=time.fromisoformat(end))


def saigon_office() -> BusinessCalendar:
    """Mon-Fri 08:00-12:00 and 13:30-17:30, Saturday mornings; Tết and National Day off."""
    week = [hours(d, "08:00", "12:00") for d in WORKDAYS]
    week += [hours(d, "13:30", "17:30") for d in WORKDAYS]
    week.append(hours(Weekday.SATURDAY, "08:00", "12:00"))
    return BusinessCalendar(
        time_zone="Asia/Ho_Chi_Minh",
        hours=tuple(week),
        holidays=(
            Holiday(day=date(2025, 1, 29), name="Tết"),
            Holiday(day=date(2025, 9, 2), name="National Day"),
        ),
    )


def paris_office() -> BusinessCalendar:
    """Mon-Fri and Sunday 09:00-17:00.

    Open on Sundays because Paris changes clocks on Sundays: 2025-03-30 (to summer time)
    and 2025-10-26 (back to winter time).
    """
    week = [hours(d, "09:00", "17:00") for d in [*WORKDAYS, Weekday.SUNDAY]]
    return BusinessCalendar(time_zone="Europe/Paris", hours=tuple(week))


def around_the_clock(time_zone: str) -> BusinessCalendar:
    return BusinessCalendar(
        time_zone=time_zone, hours=tuple(hours(d, "00:00", "00:00") for d in Weekday)
    )


def sg(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SAIGON)


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


class TestOpen:
    def test_open_inside_an_interval_and_closed_at_lunch(self) -> None:
        cal = saigon_office()
        assert is_open(cal, sg(2025, 6, 2, 10, 0))  # a Monday
        assert not is_open(cal, sg(2025, 6, 2, 12, 30))
        assert is_open(cal, sg(2025, 6, 2, 14, 0))

    def test_an_interval_includes_its_start_and_excludes_its_end(self) -> None:
        cal = saigon_office()
        assert is_open(cal, sg(2025, 6, 2, 8, 0))
        assert not is_open(cal, sg(2025, 6, 2, 12, 0))

    def test_closed_on_a_holiday_and_on_a_day_without_hours(self) -> None:
        cal = saigon_office()
        assert not is_open(cal, sg(2025, 1, 29, 10, 0))  # Tết, a Wednesday
        assert not is_open(cal, sg(2025, 6, 1, 10, 0))  # a Sunday
        assert is_open(cal, sg(2025, 6, 7, 10, 0))  # a Saturday morning

    def test_the_instant_counts_not_the_zone_it_is_written_in(self) -> None:
        # 02:00 UTC is 09:00 in Saigon.
        assert is_open(saigon_office(), datetime(2025, 6, 2, 2, 0, tzinfo=UTC))
        assert not is_open(saigon_office(), datetime(2025, 6, 2, 0, 30, tzinfo=UTC))

    def test_an_end_of_midnight_means_the_end_of_the_day(self) -> None:
        cal = around_the_clock("Asia/Ho_Chi_Minh")
        assert is_open(cal, sg(2025, 6, 2, 23, 59, 59))
        assert is_open(cal, sg(2025, 6, 3, 0, 0))
        assert business_seconds_between(cal, sg(2025, 6, 2), sg(2025, 6, 3)) == 24 * HOUR

    def test_a_naive_datetime_is_refused(self) -> None:
        with pytest.raises(NaiveDatetime):
            is_open(saigon_office(), datetime(2025, 6, 2, 10, 0))


class TestNextOpen:
    def test_an_open_instant_is_its_own_next_opening(self) -> None:
        at = sg(2025, 6, 2, 10, 0)
        assert next_open(saigon_office(), at) is at

    def test_at_lunch_the_afternoon_is_next(self) -> None:
        assert next_open(saigon_office(), sg(2025, 6, 2, 12, 15)) == sg(2025, 6, 2, 13, 30)

    def test_after_closing_on_saturday_monday_morning_is_next(self) -> None:
        assert next_open(saigon_office(), sg(2025, 6, 7, 12, 0)) == sg(2025, 6, 9, 8, 0)

    def test_a_holiday_is_skipped(self) -> None:
        # Tuesday evening before Tết (Wednesday): Thursday morning.
        assert next_open(saigon_office(), sg(2025, 1, 28, 18, 0)) == sg(2025, 1, 30, 8, 0)

    def test_the_answer_is_in_the_zone_of_the_question(self) -> None:
        found = next_open(saigon_office(), datetime(2025, 6, 2, 5, 15, tzinfo=UTC))
        assert found.tzinfo is UTC
        assert found == sg(2025, 6, 2, 13, 30)

    def test_the_next_opening_after_a_dst_switch_keeps_its_wall_clock_time(self) -> None:
        # Saturday evening, winter time; Sunday opens at 09:00 summer time (07:00 UTC).
        found = next_open(paris_office(), paris(2025, 3, 29, 20, 0))
        assert found == datetime(2025, 3, 30, 7, 0, tzinfo=UTC)
        assert (found.hour, found.utcoffset()) == (9, timedelta(hours=2))


class TestBusinessSeconds:
    def test_within_one_interval(self) -> None:
        assert business_seconds_between(
            saigon_office(), sg(2025, 6, 2, 9, 0), sg(2025, 6, 2, 11, 30)
        ) == (2.5 * HOUR)

    def test_lunch_and_nights_do_not_count(self) -> None:
        # Monday 11:00 to Tuesday 09:00: 1h before lunch, 4h afternoon, 1h Tuesday.
        assert business_seconds_between(
            saigon_office(), sg(2025, 6, 2, 11, 0), sg(2025, 6, 3, 9, 0)
        ) == (6 * HOUR)

    def test_a_weekend_and_a_holiday_do_not_count(self) -> None:
        cal = saigon_office()
        # Friday 17:00 to Monday 09:00: 30 min Friday, 4h Saturday, 1h Monday.
        assert business_seconds_between(cal, sg(2025, 6, 6, 17, 0), sg(2025, 6, 9, 9, 0)) == (
            5.5 * HOUR
        )
        # Tuesday 17:00 to Thursday 09:00 over Tết: 30 min + 1h.
        assert business_seconds_between(cal, sg(2025, 1, 28, 17, 0), sg(2025, 1, 30, 9, 0)) == (
            1.5 * HOUR
        )

    def test_an_end_before_the_start_is_no_time(self) -> None:
        cal = saigon_office()
        assert business_seconds_between(cal, sg(2025, 6, 3, 9, 0), sg(2025, 6, 2, 9, 0)) == 0.0

    def test_the_day_summer_time_starts_has_an_hour_less_only_around_the_clock(self) -> None:
        cal = around_the_clock("Europe/Paris")
        assert business_seconds_between(cal, paris(2025, 3, 30), paris(2025, 3, 31)) == 23 * HOUR
        # Opening hours are wall-clock hours: 09:00-17:00 is still 8 hours that Sunday.
        assert business_seconds_between(
            paris_office(), paris(2025, 3, 30, 0, 0), paris(2025, 3, 31, 0, 0)
        ) == (8 * HOUR)

    def test_the_day_winter_time_returns_has_an_hour_more_only_around_the_clock(self) -> None:
        cal = around_the_clock("Europe/Paris")
        assert business_seconds_between(cal, paris(2025, 10, 26), paris(2025, 10, 27)) == (
            25 * HOUR
        )
        assert business_seconds_between(
            paris_office(), paris(2025, 10, 26, 0, 0), paris(2025, 10, 27, 0, 0)
        ) == (8 * HOUR)

    def test_vietnam_has_no_dst_so_every_day_is_24_hours(self) -> None:
        cal = around_the_clock("Asia/Ho_Chi_Minh")
        for month in range(1, 13):
            start = sg(2025, month, 1)
            assert business_seconds_between(cal, start, start + timedelta(days=1)) == 24 * HOUR

    def test_an_interval_starting_in_the_spring_forward_gap_starts_an_hour_later(self) -> None:
        # 02:30 does not exist that night; as java.time does, it is read as 03:30.
        cal = BusinessCalendar(
            time_zone="Europe/Paris", hours=(hours(Weekday.SUNDAY, "02:30", "05:00"),)
        )
        assert next_open(cal, paris(2025, 3, 30, 0, 0)) == paris(2025, 3, 30, 3, 30)
        assert business_seconds_between(cal, paris(2025, 3, 30), paris(2025, 3, 31)) == (1.5 * HOUR)


class TestDeadlines:
    def test_a_deadline_inside_the_interval(self) -> None:
        assert add_business_seconds(saigon_office(), sg(2025, 6, 2, 9, 0), 2 * HOUR) == sg(
            2025, 6, 2, 11, 0
        )

    def test_a_deadline_that_uses_up_an_interval_falls_at_closing_time(self) -> None:
        assert add_business_seconds(saigon_office(), sg(2025, 6, 2, 11, 0), HOUR) == sg(
            2025, 6, 2, 12, 0
        )

    def test_a_deadline_set_while_closed_starts_counting_at_the_next_opening(self) -> None:
        # Saturday 13:00 + 2h: Monday 08:00 + 2h.
        assert add_business_seconds(saigon_office(), sg(2025, 6, 7, 13, 0), 2 * HOUR) == sg(
            2025, 6, 9, 10, 0
        )

    def test_a_deadline_skips_holidays(self) -> None:
        # Tuesday 17:00 + 1h: 30 min Tuesday, Tết, then 30 min on Thursday.
        assert add_business_seconds(saigon_office(), sg(2025, 1, 28, 17, 0), HOUR) == sg(
            2025, 1, 30, 8, 30
        )

    def test_a_deadline_across_the_dst_switch_keeps_wall_clock_hours(self) -> None:
        # Friday 16:00 + 2h: 1h Friday, then Sunday (summer time) 09:00 + 1h.
        deadline = add_business_seconds(paris_office(), paris(2025, 3, 28, 16, 0), 2 * HOUR)
        assert deadline == paris(2025, 3, 30, 10, 0)
        assert deadline.utcoffset() == timedelta(hours=2)

    def test_zero_seconds_is_the_start_itself(self) -> None:
        start = sg(2025, 6, 7, 13, 0)
        assert add_business_seconds(saigon_office(), start, 0) is start

    @pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
    def test_a_negative_or_endless_duration_is_refused(self, seconds: float) -> None:
        with pytest.raises(InvalidDuration):
            add_business_seconds(saigon_office(), sg(2025, 6, 2, 9, 0), seconds)

    @pytest.mark.parametrize(
        "calendar",
        [saigon_office(), paris_office(), around_the_clock("Europe/Paris")],
        ids=["saigon", "paris", "paris-24h"],
    )
    @pytest.mark.parametrize(
        "start",
        [
            datetime(2025, 1, 27, 3, 17, tzinfo=UTC),
            datetime(2025, 3, 28, 15, 0, tzinfo=UTC),  # before the spring switch
            datetime(2025, 10, 25, 22, 45, 30, 250000, tzinfo=UTC),  # before the fall switch
            datetime(2025, 6, 7, 5, 0, tzinfo=UTC),
        ],
    )
    @pytest.mark.parametrize("seconds", [0.5, 1800.0, 8 * HOUR + 7, 3 * 86400.0, 30 * 8 * HOUR])
    def test_adding_then_measuring_gives_the_same_seconds_back(
        self, calendar: BusinessCalendar, start: datetime, seconds: float
    ) -> None:
        deadline = add_business_seconds(calendar, start, seconds)
        assert deadline > start
        assert is_open(calendar, deadline - timedelta(microseconds=1))
        assert business_seconds_between(calendar, start, deadline) == pytest.approx(
            seconds, abs=1e-6
        )

    def test_a_30_day_deadline_takes_well_under_a_millisecond(self) -> None:
        cal, start = saigon_office(), sg(2025, 1, 2, 9, 0)
        runs = 200
        began = clock.perf_counter()
        for _ in range(runs):
            add_business_seconds(cal, start, 30 * 8 * HOUR)
        assert (clock.perf_counter() - began) / runs < 1e-3


class TestDefinition:
    def test_an_interval_may_not_span_midnight(self) -> None:
        with pytest.raises(InvalidCalendar, match="midnight"):
            hours(Weekday.FRIDAY, "22:00", "06:00")

    def test_an_empty_interval_is_refused(self) -> None:
        with pytest.raises(InvalidCalendar):
            hours(Weekday.FRIDAY, "09:00", "09:00")

    def test_opening_hours_are_wall_clock_times_without_a_zone(self) -> None:
        with pytest.raises(InvalidCalendar):
            OpeningHours(day=Weekday.MONDAY, start=time(9, tzinfo=UTC), end=time(17))

    def test_a_weekday_may_be_given_by_its_value(self) -> None:
        assert OpeningHours(day="mon", start=time(9), end=time(17)).day is Weekday.MONDAY  # type: ignore[arg-type]
        with pytest.raises(InvalidCalendar):
            OpeningHours(day="monday", start=time(9), end=time(17))  # type: ignore[arg-type]

    def test_overlapping_intervals_are_refused_but_touching_ones_are_fine(self) -> None:
        with pytest.raises(InvalidCalendar, match="overlaps"):
            BusinessCalendar(
                time_zone="UTC",
                hours=(
                    hours(Weekday.MONDAY, "09:00", "12:00"),
                    hours(Weekday.MONDAY, "11:00", "13:00"),
                ),
            )
        touching = BusinessCalendar(
            time_zone="UTC",
            hours=(
                hours(Weekday.MONDAY, "13:00", "17:00"),
                hours(Weekday.MONDAY, "09:00", "13:00"),
            ),
        )
        monday_noon = datetime(2025, 6, 2, 13, 0, tzinfo=UTC)
        assert is_open(touching, monday_noon)
        assert add_business_seconds(touching, datetime(2025, 6, 2, 9, tzinfo=UTC), 8 * HOUR) == (
            datetime(2025, 6, 2, 17, tzinfo=UTC)
        )

    def test_an_unknown_time_zone_is_refused(self) -> None:
        with pytest.raises(InvalidCalendar, match="time zone"):
            BusinessCalendar(
                time_zone="Asia/Hanoi_City", hours=(hours(Weekday.MONDAY, "09:00", "17:00"),)
            )

    def test_a_calendar_that_never_opens_is_refused(self) -> None:
        with pytest.raises(InvalidCalendar, match="at least one"):
            BusinessCalendar(time_zone="UTC", hours=())

    def test_a_holiday_listed_twice_is_refused(self) -> None:
        with pytest.raises(InvalidCalendar, match="twice"):
            BusinessCalendar(
                time_zone="UTC",
                hours=(hours(Weekday.MONDAY, "09:00", "17:00"),),
                holidays=(Holiday(day=date(2025, 9, 2)), Holiday(day=date(2025, 9, 2), name="x")),
            )

    def test_a_holiday_is_a_date_not_a_datetime(self) -> None:
        with pytest.raises(InvalidCalendar):
            Holiday(day=datetime(2025, 9, 2, 0, 0))

    def test_a_calendar_is_a_value_however_its_hours_are_listed(self) -> None:
        listed = [hours(Weekday.TUESDAY, "09:00", "17:00"), hours(Weekday.MONDAY, "09:00", "17:00")]
        cal = BusinessCalendar(time_zone="UTC", hours=listed)  # type: ignore[arg-type]
        assert isinstance(cal.hours, tuple)
        again = BusinessCalendar(time_zone="UTC", hours=tuple(reversed(listed)))
        assert cal == again and hash(cal) == hash(again)

    def test_a_calendar_round_trips_through_json_native_values(self) -> None:
        cal = saigon_office()
        data = calendar_to_builtins(cal)
        assert data["holidays"][0] == {"day": "2025-01-29", "name": "Tết"}
        assert calendar_from_builtins(data) == cal

    def test_decoding_bad_values_is_an_invalid_calendar(self) -> None:
        with pytest.raises(InvalidCalendar):
            calendar_from_builtins({"time_zone": "UTC", "hours": [{"day": "mon", "start": "x"}]})
        with pytest.raises(InvalidCalendar, match="midnight"):
            calendar_from_builtins(
                {"time_zone": "UTC", "hours": [{"day": "mon", "start": "22:00", "end": "02:00"}]}
            )
