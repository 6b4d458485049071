"""Phone numbers: one stored form for hotlines, mobiles, customers and campaign targets."""

from __future__ import annotations

from uuid import UUID

import pytest

from domain.base import DomainError
from domain.campaigns import Campaign, Campaigns
from domain.phones import InvalidPhoneNumber, normalize_phone_number
from domain.vocabulary import Channel


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("0912345678", "+84912345678"),
        ("091 234 5678", "+84912345678"),
        ("091-234-5678", "+84912345678"),
        ("(091) 234.5678", "+84912345678"),
        ("091/234\t5678", "+84912345678"),
        ("84912345678", "+84912345678"),
        ("0084912345678", "+84912345678"),
        ("+84912345678", "+84912345678"),
        ("+84 (0) 91 234 5678", "+84912345678"),
        ("+840912345678", "+84912345678"),
        ("(028) 3823-4567", "+842838234567"),
        ("842838234567", "+842838234567"),
        ("+1 415 555 0100", "+14155550100"),
        ("0033 6 12 34 56 78", "+33612345678"),
    ],
)
@pytest.mark.parametrize("e164", [False, True], ids=["stored", "e164"])
def test_every_spelling_of_a_number_is_stored_the_same(
    written: str, stored: str, e164: bool
) -> None:
    assert normalize_phone_number(written, e164=e164) == stored


@pytest.mark.parametrize("short", ["1900 1234", "1800-5858", "113"])
def test_short_service_numbers_stay_as_dialled_but_are_not_e164(short: str) -> None:
    assert normalize_phone_number(short) == short.replace(" ", "").replace("-", "")
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone_number(short, e164=True)


@pytest.mark.parametrize(
    "bad", ["", "12", "+", "hotline", "09O1234567", "1234567890123456", "٠٩٠١٢٣٤٥٦٧"]
)
@pytest.mark.parametrize("e164", [False, True], ids=["stored", "e164"])
def test_what_is_not_3_to_15_ascii_digits_is_refused(bad: str, e164: bool) -> None:
    with pytest.raises(InvalidPhoneNumber, match="phone"):
        normalize_phone_number(bad, e164=e164)


@pytest.mark.parametrize("bad", ["091234567", "091234567890", "+0123456789", "12345"])
def test_e164_refuses_a_badly_sized_national_number_and_a_plus_zero(bad: str) -> None:
    normalize_phone_number(bad)  # a stored form exists: it may be a customer's identity
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone_number(bad, e164=True)


def test_a_number_that_is_not_text_is_refused() -> None:
    with pytest.raises(InvalidPhoneNumber, match="text"):
        normalize_phone_number(912345678)  # type: ignore[arg-type]


def test_the_callers_error_is_raised() -> None:
    class InvalidThing(DomainError):
        pass

    with pytest.raises(InvalidThing, match="phone"):
        normalize_phone_number("12", InvalidThing)


# Campaigns: the known bug of 0912… and +84912… being two targets.


def test_a_campaign_dedupes_targets_by_the_stored_number() -> None:
    campaign = Campaign.draft("acme", "Renewals", Channel.CALL)
    summary = campaign.add_targets(
        [
            (UUID(int=1), "0912 345 678"),
            (UUID(int=2), "+84912345678"),
            (UUID(int=3), "0084 912 345 678"),
            (UUID(int=4), "84912345678"),
            (UUID(int=5), "0988000111"),
        ]
    )
    assert summary == {"added": 2, "duplicates": 3, "invalid": []}
    # The runner dials what the tenant imported, punctuation aside.
    assert [t.address for t in campaign.targets.values()] == ["0912345678", "0988000111"]
    again = campaign.add_targets([(UUID(int=6), "+84 988 000 111")])
    assert again == {"added": 0, "duplicates": 1, "invalid": []}


def test_a_reloaded_campaign_still_knows_its_numbers_under_any_spelling(
    transcoder_env: dict[str, str],
) -> None:
    campaigns = Campaigns(env=transcoder_env)
    campaign_id = campaigns.draft("acme", "Renewals", Channel.SMS)
    campaigns.add_targets("acme", campaign_id, [(UUID(int=1), "0912345678")])
    again = campaigns.add_targets("acme", campaign_id, [(UUID(int=2), "+84912345678")])
    assert again == {"added": 0, "duplicates": 1, "invalid": []}


def test_email_targets_are_deduplicated_case_insensitively() -> None:
    campaign = Campaign.draft("acme", "Newsletter", Channel.EMAIL)
    summary = campaign.add_targets(
        [(UUID(int=1), "Lan@Example.VN"), (UUID(int=2), "lan@example.vn")]
    )
    assert summary == {"added": 1, "duplicates": 1, "invalid": []}
