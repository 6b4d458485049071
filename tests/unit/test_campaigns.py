"""Campaigns: targets in bulk, status, pacing within windows, attempts, retries and outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from domain.base import NotFound
from domain.campaigns import (
    AttemptMismatch,
    Campaigns,
    CampaignStateError,
    InvalidCampaign,
    TargetNotDue,
    UnknownTarget,
    Window,
)
from domain.vocabulary import Channel

TENANT = "acme"
MON_9AM = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)  # 09:00 in Hanoi
WEEK = Window("office-hours", MON_9AM - timedelta(hours=1), MON_9AM + timedelta(days=7))
CUSTOMERS = [UUID(int=i) for i in range(1, 21)]


def t(minutes: float) -> datetime:
    return MON_9AM + timedelta(minutes=minutes)


def always_open(calendar_name: str, now: datetime) -> bool:
    return True


@pytest.fixture
def campaigns(transcoder_env: dict[str, str]) -> Campaigns:
    return Campaigns(env=transcoder_env)


def phone(i: int) -> str:
    return f"09{i:08d}"


def running(campaigns: Campaigns, targets: int = 5, max_concurrent: int = 10) -> UUID:
    campaign_id = campaigns.draft(TENANT, "Spring renewals", Channel.CALL)
    campaigns.add_targets(TENANT, campaign_id, [(CUSTOMERS[i], phone(i)) for i in range(targets)])
    campaigns.set_schedule(TENANT, campaign_id, [WEEK])
    campaigns.set_pacing(TENANT, campaign_id, max_concurrent=max_concurrent, per_minute=100)
    campaigns.schedule(TENANT, campaign_id, t(-30))
    campaigns.start(TENANT, campaign_id, t(0))
    return campaign_id


def due(campaigns: Campaigns, campaign_id: UUID, now: datetime, in_flight: int = 0) -> list[UUID]:
    contacts = campaigns.next_targets(TENANT, campaign_id, now, in_flight, always_open)
    return [c.customer_id for c in contacts]


def status(campaigns: Campaigns, campaign_id: UUID) -> str:
    return str(campaigns.get(TENANT, campaign_id)["status"])


def target(campaigns: Campaigns, campaign_id: UUID, customer_id: UUID) -> dict[str, object]:
    (found,) = [
        x for x in campaigns.targets(TENANT, campaign_id) if x["customer_id"] == str(customer_id)
    ]
    return found


# Drafting


def test_a_campaign_runs_on_calls_sms_or_email_only(campaigns: Campaigns) -> None:
    for channel in (Channel.CALL, Channel.SMS, Channel.EMAIL):
        campaigns.draft(TENANT, "Ok", channel)
    with pytest.raises(InvalidCampaign):
        campaigns.draft(TENANT, "No", Channel.CHAT)


def test_targets_are_added_in_bulk_without_duplicates(campaigns: Campaigns) -> None:
    campaign_id = campaigns.draft(TENANT, "Renewals", Channel.SMS)
    first = campaigns.add_targets(
        TENANT,
        campaign_id,
        [
            (CUSTOMERS[0], "0912 345 678"),
            (CUSTOMERS[1], "0912-345-678"),  # same number, another customer
            (CUSTOMERS[0], "0988000111"),  # same customer, another number
            (CUSTOMERS[2], "+84988000222"),
        ],
    )
    assert first == {"added": 2, "duplicates": 2, "invalid": []}
    again = campaigns.add_targets(
        TENANT, campaign_id, [(CUSTOMERS[2], "0911111111"), (CUSTOMERS[3], "0933333333")]
    )
    assert again == {"added": 1, "duplicates": 1, "invalid": []}
    assert [x["address"] for x in campaigns.targets(TENANT, campaign_id)] == [
        "0912345678",
        "+84988000222",
        "0933333333",
    ]


def test_invalid_addresses_are_reported_not_added(campaigns: Campaigns) -> None:
    campaign_id = campaigns.draft(TENANT, "Newsletter", Channel.EMAIL)
    summary = campaigns.add_targets(
        TENANT,
        campaign_id,
        [(CUSTOMERS[0], " Lan@Example.VN "), (CUSTOMERS[1], "0912345678"), (CUSTOMERS[2], "x@y")],
    )
    assert summary == {"added": 1, "duplicates": 0, "invalid": ["0912345678", "x@y"]}
    assert campaigns.targets(TENANT, campaign_id)[0]["address"] == "lan@example.vn"


def test_scheduling_needs_targets_and_a_window_not_yet_ended(campaigns: Campaigns) -> None:
    campaign_id = campaigns.draft(TENANT, "Renewals", Channel.CALL)
    campaigns.set_schedule(TENANT, campaign_id, [WEEK])
    with pytest.raises(InvalidCampaign, match="targets"):
        campaigns.schedule(TENANT, campaign_id, t(0))
    campaigns.add_targets(TENANT, campaign_id, [(CUSTOMERS[0], phone(0))])
    with pytest.raises(InvalidCampaign, match="window"):
        campaigns.schedule(TENANT, campaign_id, WEEK.ends_at)
    campaigns.schedule(TENANT, campaign_id, t(0))
    assert status(campaigns, campaign_id) == "scheduled"


def test_a_window_ends_after_it_starts_and_uses_aware_times(campaigns: Campaigns) -> None:
    campaign_id = campaigns.draft(TENANT, "Renewals", Channel.CALL)
    with pytest.raises(InvalidCampaign):
        campaigns.set_schedule(TENANT, campaign_id, [Window("office-hours", t(10), t(10))])
    with pytest.raises(InvalidCampaign):
        naive = datetime(2025, 3, 3, 9)
        campaigns.set_schedule(TENANT, campaign_id, [Window("office-hours", naive, naive)])


def test_pacing_and_retry_policy_have_bounds(campaigns: Campaigns) -> None:
    campaign_id = campaigns.draft(TENANT, "Renewals", Channel.CALL)
    with pytest.raises(InvalidCampaign):
        campaigns.set_pacing(TENANT, campaign_id, max_concurrent=0, per_minute=10)
    with pytest.raises(InvalidCampaign):
        campaigns.set_retry_policy(TENANT, campaign_id, max_attempts=11, retry_after_seconds=600)
    with pytest.raises(InvalidCampaign):
        campaigns.set_retry_policy(TENANT, campaign_id, max_attempts=3, retry_after_seconds=5)


# Status


def test_status_goes_from_draft_through_running_and_paused_to_completed(
    campaigns: Campaigns,
) -> None:
    campaign_id = running(campaigns)
    assert status(campaigns, campaign_id) == "running"
    campaigns.pause(TENANT, campaign_id, t(5))
    campaigns.pause(TENANT, campaign_id, t(6))  # already paused: no-op
    assert status(campaigns, campaign_id) == "paused"
    campaigns.resume(TENANT, campaign_id, t(10))
    campaigns.complete(TENANT, campaign_id, t(20))
    assert status(campaigns, campaign_id) == "completed"


def test_a_draft_cannot_start_or_pause(campaigns: Campaigns) -> None:
    campaign_id = campaigns.draft(TENANT, "Renewals", Channel.CALL)
    with pytest.raises(CampaignStateError):
        campaigns.start(TENANT, campaign_id, t(0))
    with pytest.raises(CampaignStateError):
        campaigns.pause(TENANT, campaign_id, t(0))
    with pytest.raises(CampaignStateError):
        campaigns.resume(TENANT, campaign_id, t(0))


def test_a_cancelled_campaign_changes_no_more(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns)
    campaigns.cancel(TENANT, campaign_id, t(1))
    campaigns.cancel(TENANT, campaign_id, t(2))
    assert status(campaigns, campaign_id) == "cancelled"
    with pytest.raises(CampaignStateError):
        campaigns.resume(TENANT, campaign_id, t(3))
    with pytest.raises(CampaignStateError):
        campaigns.add_targets(TENANT, campaign_id, [(uuid4(), "0911222333")])
    assert due(campaigns, campaign_id, t(3)) == []


# next_targets(): schedule and pacing


def test_nobody_is_due_unless_the_campaign_is_running(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns)
    campaigns.pause(TENANT, campaign_id, t(1))
    assert due(campaigns, campaign_id, t(2)) == []
    campaigns.resume(TENANT, campaign_id, t(3))
    assert len(due(campaigns, campaign_id, t(3))) == 5


def test_targets_are_due_only_inside_a_window_while_its_calendar_is_open(
    campaigns: Campaigns,
) -> None:
    campaign_id = running(campaigns)
    asked: list[tuple[str, datetime]] = []

    def closed_at_night(calendar_name: str, now: datetime) -> bool:
        asked.append((calendar_name, now))
        return now.hour < 10  # 17:00 in Hanoi

    def contacts(now: datetime) -> int:
        return len(campaigns.next_targets(TENANT, campaign_id, now, 0, closed_at_night))

    assert contacts(t(0)) == 5
    assert contacts(t(12 * 60)) == 0  # calendar closed
    assert contacts(WEEK.ends_at + timedelta(days=1)) == 0  # after every window
    assert asked[0] == ("office-hours", t(0))


def test_due_targets_respect_max_concurrent(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns, targets=10, max_concurrent=3)
    assert due(campaigns, campaign_id, t(0)) == CUSTOMERS[:3]
    assert due(campaigns, campaign_id, t(0), in_flight=2) == CUSTOMERS[:1]
    assert due(campaigns, campaign_id, t(0), in_flight=3) == []


def test_due_targets_respect_the_per_minute_rate(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns, targets=10)
    campaigns.set_pacing(TENANT, campaign_id, max_concurrent=10, per_minute=4)
    for customer in CUSTOMERS[:3]:
        campaigns.attempt(TENANT, campaign_id, customer, t(0.5))
    assert due(campaigns, campaign_id, t(1)) == [CUSTOMERS[3]]
    assert len(due(campaigns, campaign_id, t(1.6))) == 4  # a minute after the three


def test_contacts_carry_the_address_and_the_attempt_number(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns, targets=1)
    (contact,) = campaigns.next_targets(TENANT, campaign_id, t(0), 0, always_open)
    assert (contact.customer_id, contact.address, contact.attempt) == (CUSTOMERS[0], phone(0), 1)


# Attempts and outcomes


def test_a_target_in_progress_is_neither_due_nor_attempted_again(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns, targets=2)
    assert campaigns.attempt(TENANT, campaign_id, CUSTOMERS[0], t(1)) == 1
    assert due(campaigns, campaign_id, t(2), in_flight=1) == [CUSTOMERS[1]]
    with pytest.raises(TargetNotDue):
        campaigns.attempt(TENANT, campaign_id, CUSTOMERS[0], t(2))


def test_a_failed_target_is_retried_after_the_delay_up_to_max_attempts(
    campaigns: Campaigns,
) -> None:
    campaign_id = running(campaigns, targets=2)
    campaigns.set_retry_policy(TENANT, campaign_id, max_attempts=2, retry_after_seconds=600)
    campaigns.attempt(TENANT, campaign_id, CUSTOMERS[0], t(1))
    campaigns.failed(TENANT, campaign_id, CUSTOMERS[0], 1, "no_answer", t(2))
    assert target(campaigns, campaign_id, CUSTOMERS[0])["status"] == "pending"
    assert CUSTOMERS[0] not in due(campaigns, campaign_id, t(5))
    with pytest.raises(TargetNotDue):
        campaigns.attempt(TENANT, campaign_id, CUSTOMERS[0], t(5))
    assert CUSTOMERS[0] in due(campaigns, campaign_id, t(12))
    assert campaigns.attempt(TENANT, campaign_id, CUSTOMERS[0], t(12)) == 2
    campaigns.failed(TENANT, campaign_id, CUSTOMERS[0], 2, "busy", t(13))
    final = target(campaigns, campaign_id, CUSTOMERS[0])
    assert (final["status"], final["attempts"], final["last_failure"]) == ("failed", 2, "busy")
    assert CUSTOMERS[0] not in due(campaigns, campaign_id, t(60))


def test_a_failure_not_worth_retrying_is_final(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns, targets=2)
    campaigns.attempt(TENANT, campaign_id, CUSTOMERS[0], t(1))
    campaigns.failed(
        TENANT, campaign_id, CUSTOMERS[0], 1, "number_does_not_exist", t(2), retryable=False
    )
    assert target(campaigns, campaign_id, CUSTOMERS[0])["status"] == "failed"


def test_an_outcome_reported_twice_is_recorded_once(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns, targets=2)
    campaigns.attempt(TENANT, campaign_id, CUSTOMERS[0], t(1))
    campaigns.reached(TENANT, campaign_id, CUSTOMERS[0], 1, t(2))
    before = campaigns.get(TENANT, campaign_id)["version"]
    campaigns.reached(TENANT, campaign_id, CUSTOMERS[0], 1, t(2))
    campaigns.failed(TENANT, campaign_id, CUSTOMERS[0], 1, "late", t(3))
    assert campaigns.get(TENANT, campaign_id)["version"] == before
    assert target(campaigns, campaign_id, CUSTOMERS[0])["status"] == "reached"


def test_an_outcome_for_an_attempt_never_made_is_refused(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns)
    with pytest.raises(AttemptMismatch):
        campaigns.reached(TENANT, campaign_id, CUSTOMERS[0], 1, t(1))
    with pytest.raises(UnknownTarget):
        campaigns.attempt(TENANT, campaign_id, uuid4(), t(1))


def test_an_opted_out_target_is_never_contacted_again(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns, targets=3)
    campaigns.opt_out(TENANT, campaign_id, CUSTOMERS[1], t(1))
    assert due(campaigns, campaign_id, t(2)) == [CUSTOMERS[0], CUSTOMERS[2]]
    with pytest.raises(TargetNotDue):
        campaigns.attempt(TENANT, campaign_id, CUSTOMERS[1], t(2))


def test_an_opt_out_during_an_attempt_wins_over_its_outcome(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns, targets=2)
    campaigns.attempt(TENANT, campaign_id, CUSTOMERS[0], t(1))
    campaigns.opt_out(TENANT, campaign_id, CUSTOMERS[0], t(1.5))
    campaigns.failed(TENANT, campaign_id, CUSTOMERS[0], 1, "no_answer", t(2))
    assert target(campaigns, campaign_id, CUSTOMERS[0])["status"] == "opted_out"


def test_the_campaign_completes_when_no_target_is_left(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns, targets=3)
    campaigns.set_retry_policy(TENANT, campaign_id, max_attempts=1, retry_after_seconds=600)
    for customer in CUSTOMERS[:2]:
        campaigns.attempt(TENANT, campaign_id, customer, t(1))
    campaigns.reached(TENANT, campaign_id, CUSTOMERS[0], 1, t(2))
    campaigns.failed(TENANT, campaign_id, CUSTOMERS[1], 1, "busy", t(2))
    assert status(campaigns, campaign_id) == "running"
    campaigns.opt_out(TENANT, campaign_id, CUSTOMERS[2], t(3))
    campaign = campaigns.get(TENANT, campaign_id)
    assert campaign["status"] == "completed"
    assert campaign["progress"] == {
        "pending": 0,
        "in_progress": 0,
        "reached": 1,
        "failed": 1,
        "opted_out": 1,
    }


def test_attempts_only_while_running(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns)
    campaigns.pause(TENANT, campaign_id, t(1))
    with pytest.raises(CampaignStateError):
        campaigns.attempt(TENANT, campaign_id, CUSTOMERS[0], t(2))


def test_another_tenant_cannot_see_the_campaign(campaigns: Campaigns) -> None:
    campaign_id = running(campaigns)
    with pytest.raises(NotFound):
        campaigns.next_targets("other", campaign_id, t(0), 0, always_open)
