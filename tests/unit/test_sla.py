"""SLA policies: target rows by priority and channel, the default row, calendar and warnings."""

from __future__ import annotations

from uuid import UUID

import pytest

from domain.base import NotFound
from domain.sla import InvalidSlaPolicy, SlaPolicies, SlaTargets, targets_for
from domain.vocabulary import Channel, Priority

TENANT = "acme"
HOUR = 3600


@pytest.fixture
def policies(transcoder_env: dict[str, str]) -> SlaPolicies:
    return SlaPolicies(env=transcoder_env)


def standard(policies: SlaPolicies) -> UUID:
    """Default 4h/3d; urgent 15min/8h anywhere; urgent chat 2min; email 8h/5d."""
    policy_id = policies.create(TENANT, "Standard", 4 * HOUR, 72 * HOUR)
    policies.set_targets(TENANT, policy_id, Priority.URGENT, None, 15 * 60, 8 * HOUR)
    policies.set_targets(TENANT, policy_id, Priority.URGENT, Channel.CHAT, 120, 8 * HOUR)
    policies.set_targets(TENANT, policy_id, None, Channel.EMAIL, 8 * HOUR, 120 * HOUR)
    return policy_id


def first_response(policies: SlaPolicies, policy_id: UUID, p: Priority, c: Channel) -> int:
    return policies.targets_for(TENANT, policy_id, p, c).first_response_seconds


def test_the_exact_priority_and_channel_row_wins(policies: SlaPolicies) -> None:
    policy_id = standard(policies)
    assert first_response(policies, policy_id, Priority.URGENT, Channel.CHAT) == 120


def test_a_priority_row_outranks_a_channel_row(policies: SlaPolicies) -> None:
    policy_id = standard(policies)
    assert first_response(policies, policy_id, Priority.URGENT, Channel.EMAIL) == 15 * 60


def test_a_channel_row_covers_every_priority_without_its_own(policies: SlaPolicies) -> None:
    policy_id = standard(policies)
    assert first_response(policies, policy_id, Priority.LOW, Channel.EMAIL) == 8 * HOUR


def test_the_default_row_covers_everything_else(policies: SlaPolicies) -> None:
    policy_id = standard(policies)
    targets = policies.targets_for(TENANT, policy_id, Priority.NORMAL, Channel.CALL)
    assert targets == SlaTargets(4 * HOUR, 72 * HOUR, None, 0.8)


def test_warnings_come_at_the_warning_ratio_of_each_target(policies: SlaPolicies) -> None:
    policy_id = standard(policies)
    policies.set_warning_ratio(TENANT, policy_id, 0.75)
    targets = policies.targets_for(TENANT, policy_id, Priority.NORMAL, Channel.CALL)
    assert targets.first_response_warning_seconds == 3 * HOUR
    assert targets.resolution_warning_seconds == 54 * HOUR


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.2])
def test_the_warning_ratio_is_strictly_between_0_and_1(policies: SlaPolicies, ratio: float) -> None:
    policy_id = standard(policies)
    with pytest.raises(InvalidSlaPolicy):
        policies.set_warning_ratio(TENANT, policy_id, ratio)


def test_targets_count_on_the_named_business_calendar(policies: SlaPolicies) -> None:
    policy_id = standard(policies)
    policies.set_calendar(TENANT, policy_id, "office-hours")
    targets = policies.targets_for(TENANT, policy_id, Priority.HIGH, Channel.SMS)
    assert targets.calendar_name == "office-hours"
    policies.set_calendar(TENANT, policy_id, None)
    assert policies.get(TENANT, policy_id)["calendar_name"] is None


def test_resolution_cannot_be_due_before_the_first_response(policies: SlaPolicies) -> None:
    with pytest.raises(InvalidSlaPolicy):
        policies.create(TENANT, "Odd", 2 * HOUR, HOUR)


@pytest.mark.parametrize("seconds", [0, -60, 400 * 24 * HOUR])
def test_targets_are_positive_and_at_most_a_year(policies: SlaPolicies, seconds: int) -> None:
    policy_id = standard(policies)
    with pytest.raises(InvalidSlaPolicy):
        policies.set_targets(TENANT, policy_id, Priority.LOW, None, seconds, 500 * 24 * HOUR)


def test_the_any_any_row_is_the_default_and_set_as_such(policies: SlaPolicies) -> None:
    policy_id = standard(policies)
    with pytest.raises(InvalidSlaPolicy):
        policies.set_targets(TENANT, policy_id, None, None, 60, 60)
    policies.set_default(TENANT, policy_id, 60, 600)
    assert first_response(policies, policy_id, Priority.LOW, Channel.CALL) == 60


def test_removing_a_row_falls_back_to_the_next_match(policies: SlaPolicies) -> None:
    policy_id = standard(policies)
    policies.remove_targets(TENANT, policy_id, Priority.URGENT, Channel.CHAT)
    assert first_response(policies, policy_id, Priority.URGENT, Channel.CHAT) == 15 * 60


def test_setting_the_same_values_records_nothing(policies: SlaPolicies) -> None:
    policy_id = standard(policies)
    before = policies.get(TENANT, policy_id)["version"]
    policies.set_targets(TENANT, policy_id, Priority.URGENT, Channel.CHAT, 120, 8 * HOUR)
    policies.set_default(TENANT, policy_id, 4 * HOUR, 72 * HOUR)
    policies.remove_targets(TENANT, policy_id, Priority.LOW, Channel.CALL)
    policies.set_warning_ratio(TENANT, policy_id, 0.8)
    assert policies.get(TENANT, policy_id)["version"] == before


def test_the_pure_lookup_works_on_the_terms_value(policies: SlaPolicies) -> None:
    terms = policies.terms(TENANT, standard(policies))
    assert targets_for(terms, Priority.URGENT, Channel.CHAT).first_response_seconds == 120


def test_the_policy_reads_back_as_rows(policies: SlaPolicies) -> None:
    policy = policies.get(TENANT, standard(policies))
    assert policy["default"]["first_response_seconds"] == 4 * HOUR
    assert [(r["priority"], r["channel"]) for r in policy["rows"]] == [
        (None, "email"),
        ("urgent", None),
        ("urgent", "chat"),
    ]


def test_another_tenant_cannot_read_the_policy(policies: SlaPolicies) -> None:
    policy_id = standard(policies)
    with pytest.raises(NotFound):
        policies.targets_for("other", policy_id, Priority.LOW, Channel.CALL)
