"""The campaign runner: pacing, windows and calendars, retries, completion, idempotency,
restarts, the commands it publishes, tenant walls and rebuilds.

In-memory applications and explicit times: `Harness.act(seconds)` catches the runner up
with the event log (as the live runner does before acting) and acts at MON_9AM + seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from connectors import commands as messages
from domain.apps import DomainApps
from domain.calendars import BusinessCalendar, OpeningHours, Weekday
from domain.campaigns import Window
from domain.vocabulary import Channel, Package
from projections.campaign_runner import CampaignRunner, Decision, attempt_command_id
from projections.process import ActContext
from projections.rebuild import compare
from projections.replay import catch_up
from telephony_bridge import commands as telephony

TENANT = "acme"
OTHER = "globex"
MON_9AM = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)  # Monday 09:00 in Hanoi
CUSTOMERS = [UUID(int=i) for i in range(1, 21)]
ALWAYS = BusinessCalendar(
    time_zone="Asia/Ho_Chi_Minh",
    hours=tuple(OpeningHours(day=d, start=time(0), end=time(0)) for d in Weekday),
)
OFFICE = BusinessCalendar(  # 09:00-17:00, Monday to Friday
    time_zone="Asia/Ho_Chi_Minh",
    hours=tuple(OpeningHours(day=d, start=time(9), end=time(17)) for d in list(Weekday)[:5]),
)
WEEK = Window("always", MON_9AM - timedelta(hours=1), MON_9AM + timedelta(days=7))


def t(seconds: float) -> datetime:
    return MON_9AM + timedelta(seconds=seconds)


def phone(i: int) -> str:
    return f"09{i:08d}"


class Harness:
    """The domain applications, one runner and what it published."""

    def __init__(self, apps: DomainApps, path: Path) -> None:
        self.apps = apps
        self.runner = CampaignRunner(path)
        self.published: list[tuple[str, bytes]] = []
        self.publish_fails = False

    def _publish(self, subject: str, payload: bytes) -> None:
        if self.publish_fails:
            raise ConnectionError("nats is down")
        self.published.append((subject, payload))

    def act(self, seconds: float, *, catch: bool = True) -> list[Decision]:
        if catch:
            catch_up(self.runner, self.apps)
        ctx = ActContext(apps=self.apps, now=t(seconds), publish=self._publish)
        return self.runner.act(ctx)

    def restart(self) -> None:
        self.runner = CampaignRunner(self.runner.path)

    def campaign(
        self,
        targets: int = 5,
        *,
        tenant: str = TENANT,
        channel: Channel = Channel.CALL,
        windows: tuple[Window, ...] = (WEEK,),
        max_concurrent: int = 10,
        per_minute: int = 100,
        max_attempts: int = 3,
        retry_after: int = 600,
        start: bool = True,
    ) -> UUID:
        campaigns = self.apps.campaigns
        campaign_id = campaigns.draft(tenant, "Spring renewals", channel)
        addresses = [
            f"c{i}@example.com" if channel is Channel.EMAIL else phone(i) for i in range(targets)
        ]
        campaigns.add_targets(tenant, campaign_id, zip(CUSTOMERS, addresses, strict=False))
        campaigns.set_schedule(tenant, campaign_id, windows)
        campaigns.set_pacing(tenant, campaign_id, max_concurrent, per_minute)
        campaigns.set_retry_policy(tenant, campaign_id, max_attempts, retry_after)
        campaigns.schedule(tenant, campaign_id, t(-3600))
        if start:
            campaigns.start(tenant, campaign_id, t(-60))
        return campaign_id

    def reached(self, campaign_id: UUID, i: int, attempt: int, seconds: float) -> None:
        self.apps.campaigns.reached(TENANT, campaign_id, CUSTOMERS[i], attempt, t(seconds))

    def failed(self, campaign_id: UUID, i: int, attempt: int, seconds: float, **kw: Any) -> None:
        self.apps.campaigns.failed(
            TENANT, campaign_id, CUSTOMERS[i], attempt, "no answer", t(seconds), **kw
        )

    def status(self, campaign_id: UUID, tenant: str = TENANT) -> str:
        return str(self.apps.campaigns.get(tenant, campaign_id)["status"])


def attempted(decisions: list[Decision]) -> list[tuple[int, int | None]]:
    """(target index, attempt number) of each attempt decided."""
    return [
        (CUSTOMERS.index(d.customer_id), d.attempt)
        for d in decisions
        if d.action == "attempt" and d.customer_id is not None
    ]


@pytest.fixture
def apps(transcoder_env: dict[str, str]) -> Iterator[DomainApps]:
    # On both transcoders: the runner reads what each decodes (times inside the windows,
    # customer ids inside the targets).
    apps = DomainApps.build(transcoder_env)
    for tenant in (TENANT, OTHER):
        apps.tenants.register(tenant, tenant.title(), Package.CONTACT_CENTER, ["0912345678"])
        apps.tenants.define_calendar(tenant, "always", ALWAYS)
        apps.tenants.define_calendar(tenant, "office", OFFICE)
    yield apps
    apps.close()


@pytest.fixture
def h(apps: DomainApps, tmp_path: Path) -> Harness:
    return Harness(apps, tmp_path / "campaign_runner.sqlite")


class TestPacing:
    def test_max_concurrent_caps_what_is_in_flight_and_outcomes_free_slots(
        self, h: Harness
    ) -> None:
        cid = h.campaign(5, max_concurrent=2)
        assert attempted(h.act(0)) == [(0, 1), (1, 1)]
        assert attempted(h.act(1)) == []
        # Only an outcome frees a slot — or, failing one, the attempts' time-out.
        assert h.runner.next_due() == t(600)
        h.reached(cid, 0, 1, 20)
        assert attempted(h.act(21)) == [(2, 1)]
        h.failed(cid, 1, 1, 30, retryable=False)
        h.reached(cid, 2, 1, 30)
        assert attempted(h.act(31)) == [(3, 1), (4, 1)]
        assert attempted(h.act(32)) == []

    def test_per_minute_caps_what_starts_in_a_minute(self, h: Harness) -> None:
        cid = h.campaign(6, per_minute=3)
        assert attempted(h.act(0)) == [(0, 1), (1, 1), (2, 1)]
        for i in range(3):
            h.reached(cid, i, 1, 5)
        assert attempted(h.act(59)) == []
        assert h.runner.next_due() == t(60)
        assert attempted(h.act(60)) == [(3, 1), (4, 1), (5, 1)]

    def test_the_minute_slides_attempt_by_attempt(self, h: Harness) -> None:
        cid = h.campaign(5, max_concurrent=1, per_minute=3)
        for i, second in enumerate((0, 10, 20)):
            assert attempted(h.act(second)) == [(i, 1)]
            h.reached(cid, i, 1, second + 5)
        assert attempted(h.act(30)) == []
        assert h.runner.next_due() == t(60)  # the attempt at 0 leaves the minute
        assert attempted(h.act(60)) == [(3, 1)]
        h.reached(cid, 3, 1, 65)
        assert attempted(h.act(66)) == []
        assert h.runner.next_due() == t(70)
        assert attempted(h.act(70)) == [(4, 1)]

    def test_lowering_per_minute_waits_until_the_minute_holds_fewer(self, h: Harness) -> None:
        cid = h.campaign(5, max_concurrent=1, per_minute=3)
        for i, second in enumerate((0, 10, 20)):
            assert attempted(h.act(second)) == [(i, 1)]
            h.reached(cid, i, 1, second + 5)
        h.apps.campaigns.set_pacing(TENANT, cid, 1, 2)
        assert attempted(h.act(30)) == []  # three in the minute; fewer than two from 70 s
        assert h.runner.next_due() == t(70)
        assert attempted(h.act(69)) == []
        assert attempted(h.act(70)) == [(3, 1)]


class TestWindows:
    def test_nothing_outside_the_window_and_it_starts_when_the_window_opens(
        self, h: Harness
    ) -> None:
        window = Window("always", t(3600), t(7200))
        h.campaign(3, windows=(window,))
        assert attempted(h.act(0)) == []
        assert h.runner.next_due() == t(3600)
        assert attempted(h.act(3599)) == []
        assert attempted(h.act(3600)) == [(0, 1), (1, 1), (2, 1)]

    def test_a_window_is_closed_from_its_end_time_on(self, h: Harness) -> None:
        h.campaign(3, windows=(Window("always", t(-60), t(0)),))
        assert attempted(h.act(0)) == []
        assert h.runner.next_due() is None

    def test_a_window_is_open_only_while_its_calendar_is(self, h: Harness) -> None:
        # A week-long window, but the office is open 09:00-17:00 Hanoi time (02:00-10:00 UTC).
        h.campaign(2, windows=(Window("office", t(-3 * 3600), t(7 * 86400)),))
        assert attempted(h.act(-3600)) == []  # 08:00
        assert h.runner.next_due() == t(0)
        assert attempted(h.act(8 * 3600)) == []  # 17:00, closed
        assert h.runner.next_due() == t(86400)  # Tuesday 09:00
        assert attempted(h.act(86400)) == [(0, 1), (1, 1)]

    def test_no_opening_is_due_when_the_calendar_opens_after_the_window_ends(
        self, h: Harness
    ) -> None:
        h.campaign(2, windows=(Window("office", t(-3 * 3600), t(9 * 3600)),))  # 06:00-18:00
        assert attempted(h.act(8 * 3600)) == []  # 17:00
        # Tuesday 09:00 is past the window: only its end is due, to complete the campaign.
        assert h.runner.next_due() == t(9 * 3600)

    def test_a_window_on_a_calendar_the_tenant_lacks_never_opens(self, h: Harness) -> None:
        cid = h.campaign(2, windows=(Window("night shift", t(-60), t(3600)),))
        assert attempted(h.act(0)) == []
        assert h.runner.next_due() == t(3600)  # never opens; its end completes the campaign
        progress = h.runner.progress(TENANT, cid)
        assert progress is not None and progress["missing_calendars"] == ["night shift"]
        h.apps.tenants.define_calendar(TENANT, "night shift", ALWAYS)
        assert attempted(h.act(1)) == [(0, 1), (1, 1)]
        h.apps.tenants.remove_calendar(TENANT, "night shift")
        h.failed(cid, 0, 1, 2, retryable=False)
        h.failed(cid, 1, 1, 2)
        assert attempted(h.act(1000)) == []
        assert h.runner.progress(TENANT, cid)["missing_calendars"] == ["night shift"]  # type: ignore[index]

    def test_a_scheduled_campaign_is_started_when_its_window_opens(self, h: Harness) -> None:
        cid = h.campaign(2, windows=(Window("always", t(600), t(3600)),), start=False)
        assert h.act(0) == []
        assert h.runner.next_due() == t(600)
        decisions = h.act(600)
        assert [d.action for d in decisions] == ["start", "attempt", "attempt"]
        # Started and both in flight, events or not: only the window's end is due.
        assert h.runner.next_due() == t(3600)
        assert h.status(cid) == "running"
        catch_up(h.runner, h.apps)
        assert h.runner.progress(TENANT, cid)["status"] == "running"  # type: ignore[index]

    def test_a_paused_campaign_starts_nothing_until_resumed(self, h: Harness) -> None:
        cid = h.campaign(3, max_concurrent=1)
        assert attempted(h.act(0)) == [(0, 1)]
        h.apps.campaigns.pause(TENANT, cid, t(5))
        h.reached(cid, 0, 1, 10)
        assert attempted(h.act(11)) == []
        assert h.runner.next_due() is None
        h.apps.campaigns.resume(TENANT, cid, t(20))
        assert attempted(h.act(21)) == [(1, 1)]


class TestRetriesAndCompletion:
    def test_a_failed_target_is_retried_after_retry_after_up_to_max_attempts(
        self, h: Harness
    ) -> None:
        cid = h.campaign(1, max_attempts=2, retry_after=600)
        assert attempted(h.act(0)) == [(0, 1)]
        h.failed(cid, 0, 1, 30)
        assert attempted(h.act(31)) == []
        assert h.runner.next_due() == t(630)
        progress = h.runner.progress(TENANT, cid)
        assert progress is not None
        assert (progress["retrying"], progress["next_retry_at"]) == (
            1,
            "2025-03-03T02:10:30.000000+00:00",
        )
        assert attempted(h.act(629)) == []
        assert attempted(h.act(630)) == [(0, 2)]
        h.failed(cid, 0, 2, 700)  # the last attempt: no retry, and the campaign is done
        assert h.act(701) == []
        assert h.status(cid) == "completed"
        catch_up(h.runner, h.apps)
        progress = h.runner.progress(TENANT, cid)
        assert progress is not None
        assert progress["status"] == "completed"
        assert progress["progress"]["failed"] == 1 and progress["attempts"] == 2
        assert h.runner.next_due() is None

    def test_a_target_waiting_to_retry_takes_no_slot_from_the_next(self, h: Harness) -> None:
        cid = h.campaign(2, max_concurrent=1, retry_after=600)
        assert attempted(h.act(0)) == [(0, 1)]
        h.failed(cid, 0, 1, 30)
        assert attempted(h.act(31)) == [(1, 1)]
        h.reached(cid, 1, 1, 40)
        # Reached not seen yet: the slot looks taken; only the window's end is due.
        assert h.runner.next_due() == WEEK.ends_at
        catch_up(h.runner, h.apps)
        assert h.runner.next_due() == t(630)

    def test_an_opted_out_target_is_skipped(self, h: Harness) -> None:
        cid = h.campaign(3)
        h.apps.campaigns.opt_out(TENANT, cid, CUSTOMERS[1], t(-10))
        assert attempted(h.act(0)) == [(0, 1), (2, 1)]

    def test_the_runner_completes_a_campaign_left_with_nothing_to_try(self, h: Harness) -> None:
        cid = h.campaign(2, start=False)
        for customer in CUSTOMERS[:2]:
            h.apps.campaigns.opt_out(TENANT, cid, customer, t(-30))
        decisions = h.act(0)
        assert [d.action for d in decisions] == ["start"]
        assert [d.action for d in h.act(1, catch=False)] == []  # asked once per status
        assert [d.action for d in h.act(2)] == ["complete"]
        assert h.runner.next_due() is None  # asked already: no busy loop till Completed
        assert h.status(cid) == "completed"
        assert h.act(3) == [] and h.runner.next_due() is None

    def test_a_running_campaign_completes_when_its_last_window_ends(self, h: Harness) -> None:
        windows = (Window("always", t(-60), t(90)), Window("always", t(200), t(300)))
        cid = h.campaign(5, per_minute=1, windows=windows)
        assert attempted(h.act(0)) == [(0, 1)]
        h.reached(cid, 0, 1, 5)
        assert attempted(h.act(60)) == [(1, 1)]
        h.reached(cid, 1, 1, 65)
        assert attempted(h.act(66)) == []
        assert h.runner.next_due() == t(200)  # the first window is over, not the second
        assert attempted(h.act(200)) == [(2, 1)]
        h.reached(cid, 2, 1, 205)
        assert attempted(h.act(260)) == [(3, 1)]  # still in progress when the window ends
        assert h.runner.next_due() == t(300)
        assert h.act(299) == []
        assert [d.action for d in h.act(300)] == ["complete"]
        assert h.runner.next_due() is None  # asked: no busy loop till Completed comes
        assert h.act(301, catch=False) == []
        assert h.status(cid) == "completed"
        assert [x["status"] for x in h.apps.campaigns.targets(TENANT, cid)] == [
            "reached",
            "reached",
            "reached",
            "in_progress",
            "pending",  # not tried in time: left as it is
        ]
        h.reached(cid, 3, 1, 310)  # a late outcome is still recorded
        assert h.act(311) == [] and h.runner.next_due() is None
        assert h.runner.progress(TENANT, cid)["progress"] == {  # type: ignore[index]
            "pending": 1,
            "in_progress": 0,
            "reached": 4,
            "failed": 0,
            "opted_out": 0,
        }

    def test_a_campaign_whose_windows_ended_while_the_runner_was_down_completes(
        self, h: Harness
    ) -> None:
        cid = h.campaign(3, max_concurrent=1, windows=(Window("always", t(-60), t(600)),))
        assert attempted(h.act(0)) == [(0, 1)]
        h.reached(cid, 0, 1, 10)
        h.restart()
        assert [d.action for d in h.act(5000)] == ["complete"]
        assert h.status(cid) == "completed"

    def test_progress_matches_the_domain(self, h: Harness) -> None:
        cid = h.campaign(6, max_concurrent=4)
        h.apps.campaigns.opt_out(TENANT, cid, CUSTOMERS[5], t(-1))
        h.act(0)
        h.reached(cid, 0, 1, 10)
        h.failed(cid, 1, 1, 10)
        h.failed(cid, 2, 1, 10, retryable=False)
        catch_up(h.runner, h.apps)
        progress = h.runner.progress(TENANT, cid)
        domain = h.apps.campaigns.get(TENANT, cid)
        assert progress is not None
        assert (
            progress["progress"]
            == domain["progress"]
            == {
                "pending": 2,
                "in_progress": 1,
                "reached": 1,
                "failed": 1,
                "opted_out": 1,
            }
        )
        assert (progress["targets"], progress["attempts"], progress["retrying"]) == (6, 4, 1)
        assert progress["version"] == domain["version"]
        assert [c["id"] for c in h.runner.list(TENANT)] == [str(cid)]


class TestIdempotencyAndRestarts:
    def test_acting_twice_before_the_events_come_back_attempts_once(self, h: Harness) -> None:
        cid = h.campaign(5, max_concurrent=2)
        assert attempted(h.act(0)) == [(0, 1), (1, 1)]
        assert attempted(h.act(0.5, catch=False)) == []
        assert attempted(h.act(1)) == []
        assert len(h.published) == 2
        assert [t["attempts"] for t in h.apps.campaigns.targets(TENANT, cid)] == [1, 1, 0, 0, 0]

    def test_the_minute_counts_attempts_whose_events_have_not_come_back(self, h: Harness) -> None:
        h.campaign(5, per_minute=2)
        assert attempted(h.act(0)) == [(0, 1), (1, 1)]
        assert attempted(h.act(30, catch=False)) == []
        assert h.runner.next_due() == t(60)

    def test_a_new_runner_on_the_same_file_continues(self, h: Harness) -> None:
        cid = h.campaign(5, max_concurrent=2)
        assert attempted(h.act(0)) == [(0, 1), (1, 1)]
        h.restart()  # before the runner saw its own Attempted events
        assert attempted(h.act(1)) == []
        h.reached(cid, 0, 1, 10)
        h.restart()
        assert attempted(h.act(11)) == [(2, 1)]
        assert len(h.published) == 3

    def test_a_refused_publish_is_sent_again_with_the_same_command_id(self, h: Harness) -> None:
        cid = h.campaign(1)
        h.publish_fails = True
        assert attempted(h.act(0)) == [(0, 1)]
        assert h.published == []
        assert h.runner.next_due() == t(5)
        h.publish_fails = False
        assert attempted(h.act(5)) == []
        [(_, payload)] = h.published
        assert telephony.decode(payload).command_id == attempt_command_id(cid, CUSTOMERS[0], 1)
        assert attempted(h.act(6)) == [] and len(h.published) == 1


class TestLostCommandsAndOutcomes:
    """Commands go out on core NATS and outcomes may be lost: an attempt with no outcome
    is failed, retryable, once its time-out has passed since its Attempted event."""

    def test_a_lost_attempt_frees_its_slot_after_the_time_out(self, h: Harness) -> None:
        cid = h.campaign(2, max_concurrent=1, max_attempts=2, retry_after=600)
        assert attempted(h.act(0)) == [(0, 1)]  # its call, or its outcome, goes nowhere
        assert attempted(h.act(1)) == []
        assert h.runner.next_due() == t(600)  # 10 minutes for a call
        assert h.act(599) == []
        decisions = h.act(600)
        assert decisions == [Decision("expire", TENANT, cid, CUSTOMERS[0], 1)]
        # Told once: not again, nor due again, until the table shows it.
        assert h.act(600.5, catch=False) == []
        assert h.runner.next_due() == WEEK.ends_at
        version = h.apps.campaigns.get(TENANT, cid)["version"]
        h.restart()  # memory gone: told again, and the domain records nothing new
        assert [d.action for d in h.act(600.7, catch=False)] == ["expire"]
        assert h.apps.campaigns.get(TENANT, cid)["version"] == version
        [first, _] = h.apps.campaigns.targets(TENANT, cid)
        assert (first["status"], first["last_failure"]) == ("pending", "no outcome")
        # The slot is free: the campaign goes on, and the lost target is retried.
        assert attempted(h.act(601)) == [(1, 1)]
        h.reached(cid, 1, 1, 610)
        assert attempted(h.act(611)) == []
        assert h.runner.next_due() == t(1200)
        assert attempted(h.act(1200)) == [(0, 2)]
        h.reached(cid, 0, 2, 1210)
        assert h.status(cid) == "completed"

    def test_the_time_out_counts_from_the_attempted_event_not_from_the_acts(
        self, h: Harness
    ) -> None:
        h.campaign(1)
        assert attempted(h.act(0)) == [(0, 1)]
        h.restart()  # a new runner, first acting late: the time-out is the table's
        assert [d.action for d in h.act(900)] == ["expire"]

    def test_a_command_nats_never_took_is_dropped_when_its_attempt_times_out(
        self, h: Harness
    ) -> None:
        cid = h.campaign(1, max_attempts=2, retry_after=600)
        h.publish_fails = True
        assert attempted(h.act(0)) == [(0, 1)]
        assert attempted(h.act(300)) == []
        assert [d.action for d in h.act(600)] == ["expire"]
        h.publish_fails = False
        assert h.act(601) == [] and h.published == []  # attempt 1 is not called any more
        assert attempted(h.act(1200)) == [(0, 2)]
        [(_, payload)] = h.published
        assert telephony.decode(payload).command_id == attempt_command_id(cid, CUSTOMERS[0], 2)

    def test_the_time_out_is_the_channels_and_may_be_set_per_runner(
        self, h: Harness, tmp_path: Path
    ) -> None:
        cid = h.campaign(1, channel=Channel.SMS)
        assert attempted(h.act(0)) == [(0, 1)]
        catch_up(h.runner, h.apps)
        assert h.runner.next_due() == t(3600)  # a delivery report may lag: an hour
        h.runner = CampaignRunner(
            tmp_path / "quick.sqlite", outcome_timeouts={Channel.SMS: timedelta(minutes=2)}
        )
        assert h.act(119) == []
        assert h.runner.next_due() == t(120)
        assert h.act(120) == [Decision("expire", TENANT, cid, CUSTOMERS[0], 1)]


class TestCommands:
    def test_a_call_campaign_originates_calls_with_the_attempt_numbers(self, h: Harness) -> None:
        cid = h.campaign(2, max_attempts=2, retry_after=60)
        h.act(0)
        h.failed(cid, 1, 1, 10)
        h.act(70)
        commands = [(s, telephony.decode(p)) for s, p in h.published]
        assert [s for s, _ in commands] == ["cmd.acme.telephony.originate"] * 3
        calls = [c for _, c in commands]
        assert all(isinstance(c, telephony.Originate) for c in calls)
        assert [
            (c.tenant_id, c.to_number, c.campaign_id, c.customer_id, c.attempt)  # type: ignore[union-attr]
            for c in calls
        ] == [
            (TENANT, phone(0), cid, CUSTOMERS[0], 1),
            (TENANT, phone(1), cid, CUSTOMERS[1], 1),
            (TENANT, phone(1), cid, CUSTOMERS[1], 2),
        ]
        ids = [c.command_id for c in calls]
        assert ids[2] == attempt_command_id(cid, CUSTOMERS[1], 2)
        assert len(set(ids)) == 3

    @pytest.mark.parametrize(
        ("channel", "subject", "address"),
        [
            (Channel.SMS, "cmd.acme.sms.send", phone(0)),
            (Channel.EMAIL, "cmd.acme.email.send", "c0@example.com"),
        ],
    )
    def test_a_message_campaign_sends_messages(
        self, h: Harness, channel: Channel, subject: str, address: str
    ) -> None:
        cid = h.campaign(1, channel=channel)
        h.act(0)
        [(sent_on, payload)] = h.published
        message = messages.decode(payload)
        assert sent_on == subject
        assert message == messages.SendMessage(
            command_id=attempt_command_id(cid, CUSTOMERS[0], 1),
            tenant_id=TENANT,
            channel=channel,
            to=address,
            campaign_id=cid,
            customer_id=CUSTOMERS[0],
            attempt=1,
        )

    def test_a_send_message_command_refuses_calls_and_two_contents(self) -> None:
        with pytest.raises(ValueError):
            messages.SendMessage(command_id="1", tenant_id=TENANT, channel=Channel.CALL, to="x")
        with pytest.raises(ValueError):
            messages.SendMessage(
                command_id="1",
                tenant_id=TENANT,
                channel=Channel.SMS,
                to="x",
                text="hi",
                template_id=UUID(int=1),
            )


class TestTenantWalls:
    def test_tenants_see_and_pace_only_their_own_campaigns(self, h: Harness) -> None:
        mine = h.campaign(3, max_concurrent=1)
        theirs = h.campaign(3, tenant=OTHER, max_concurrent=1)
        decisions = h.act(0)
        assert sorted((d.tenant_id, d.campaign_id) for d in decisions) == sorted(
            [(TENANT, mine), (OTHER, theirs)]
        )
        assert sorted(s for s, _ in h.published) == [
            "cmd.acme.telephony.originate",
            "cmd.globex.telephony.originate",
        ]
        catch_up(h.runner, h.apps)
        assert [c["id"] for c in h.runner.list(TENANT)] == [str(mine)]
        assert [c["id"] for c in h.runner.list(OTHER)] == [str(theirs)]
        assert h.runner.progress(TENANT, theirs) is None
        assert h.runner.progress(OTHER, mine) is None

    def test_a_campaign_uses_its_own_tenants_calendar(self, h: Harness) -> None:
        h.apps.tenants.define_calendar(OTHER, "night shift", ALWAYS)
        window = Window("night shift", t(-60), t(3600))
        cid = h.campaign(1, windows=(window,))
        assert attempted(h.act(0)) == []
        progress = h.runner.progress(TENANT, cid)
        assert progress is not None and progress["missing_calendars"] == ["night shift"]


def test_a_rebuild_into_a_second_file_equals_the_first(h: Harness, tmp_path: Path) -> None:
    cid = h.campaign(4, max_concurrent=2, max_attempts=2, retry_after=60)
    other = h.campaign(2, tenant=OTHER, channel=Channel.SMS)
    h.act(0)
    h.reached(cid, 0, 1, 10)
    h.failed(cid, 1, 1, 10)
    h.apps.campaigns.opt_out(TENANT, cid, CUSTOMERS[3], t(11))
    h.act(12)
    h.act(80)
    h.apps.tenants.remove_calendar(TENANT, "office")
    h.apps.campaigns.cancel(OTHER, other, t(90))
    catch_up(h.runner, h.apps)
    rebuilt = CampaignRunner(tmp_path / "rebuilt.sqlite")
    catch_up(rebuilt, h.apps)
    assert compare(h.runner.connect(), rebuilt.connect()) == []
    assert rebuilt.progress(TENANT, cid) == h.runner.progress(TENANT, cid)
    # Not vacuous: a copy that misses an event differs.
    h.reached(cid, 2, 1, 100)
    catch_up(h.runner, h.apps)
    assert compare(h.runner.connect(), rebuilt.connect()) != []
