"""Customer aggregate and Customers application (CC8, CT11), in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.base import NotFound
from domain.customers import (
    MAX_IDENTITIES,
    Customer,
    CustomerMerged,
    Customers,
    InvalidCustomer,
    InvalidMerge,
)
from projections.customers import CustomersReadModel


@pytest.fixture
def app(transcoder_env: dict[str, str]) -> Customers:
    return Customers(env=transcoder_env)


def state(customer: Customer) -> dict[str, Any]:
    return {k: v for k, v in vars(customer).items() if k != "_pending_events"}


def identities(app: Customers, cid: UUID) -> list[list[str]]:
    return app.get("acme", cid)["identities"]  # type: ignore[return-value]


# Identities


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("0901234567", "+84901234567"),
        ("090 123 4567", "+84901234567"),
        ("090.123.4567", "+84901234567"),
        ("+84 90 123 4567", "+84901234567"),
        ("84901234567", "+84901234567"),
        ("0084901234567", "+84901234567"),
        ("+84 (0) 90 123 4567", "+84901234567"),
        ("(028) 3823-4567", "+842838234567"),
        ("1900 1234", "19001234"),
        ("+1 415 555 0100", "+14155550100"),
    ],
)
def test_phone_numbers_are_stored_in_e164_with_vietnam_as_home(
    app: Customers, typed: str, stored: str
) -> None:
    cid = app.register("acme", "An", [("phone", typed)])
    assert identities(app, cid) == [["phone", stored]]


@pytest.mark.parametrize("bad", ["09O1234567", "12", "+", "1234567890123456", "٠٩٠١٢٣٤٥٦٧"])
def test_a_phone_that_is_not_3_to_15_ascii_digits_is_refused(app: Customers, bad: str) -> None:
    with pytest.raises(InvalidCustomer, match="phone"):
        app.register("acme", "An", [("phone", bad)])


def test_emails_are_lower_cased(app: Customers) -> None:
    cid = app.register("acme", "An", [("email", " An.Nguyen@Example.VN ")])
    assert identities(app, cid) == [["email", "an.nguyen@example.vn"]]


@pytest.mark.parametrize("bad", ["an", "an@", "@example.vn", "an@example", "a n@example.vn"])
def test_something_that_is_not_an_email_address_is_refused(app: Customers, bad: str) -> None:
    with pytest.raises(InvalidCustomer, match="email"):
        app.register("acme", "An", [("email", bad)])


def test_facebook_and_chat_ids_are_kept_as_given_but_without_spaces(app: Customers) -> None:
    cid = app.register("acme", "An", [("facebook", "1234567890"), ("chat", "v-AbC9")])
    assert identities(app, cid) == [["facebook", "1234567890"], ["chat", "v-AbC9"]]
    with pytest.raises(InvalidCustomer, match="no spaces"):
        app.add_identity("acme", cid, "chat", "v AbC9")


def test_an_unknown_identity_kind_is_refused(app: Customers) -> None:
    with pytest.raises(InvalidCustomer, match="kind"):
        app.register("acme", "An", [("fax", "1")])


def test_the_same_identity_in_two_spellings_is_recorded_once(app: Customers) -> None:
    cid = app.register("acme", "An", [("phone", "0901234567"), ("phone", "+84901234567")])
    app.add_identity("acme", cid, "phone", "090 123 4567")
    assert identities(app, cid) == [["phone", "+84901234567"]]
    assert app.get("acme", cid)["version"] == 1


def test_removing_an_identity_twice_removes_it_once(app: Customers) -> None:
    cid = app.register("acme", "An", [("phone", "0901234567"), ("email", "an@example.vn")])
    app.remove_identity("acme", cid, "phone", "090 123 4567")
    app.remove_identity("acme", cid, "phone", "0901234567")
    assert identities(app, cid) == [["email", "an@example.vn"]]
    assert app.get("acme", cid)["version"] == 2


def test_a_customer_holds_a_bounded_number_of_identities(app: Customers) -> None:
    many = [("chat", f"v{i}") for i in range(MAX_IDENTITIES)]
    cid = app.register("acme", "An", many)
    with pytest.raises(InvalidCustomer, match="at most"):
        app.add_identity("acme", cid, "chat", "one-more")
    with pytest.raises(InvalidCustomer, match="at most"):
        app.register("acme", "An", [*many, ("chat", "one-more")])


# Profile


def test_the_profile_is_checked_and_a_blank_value_clears_a_field(app: Customers) -> None:
    cid = app.register("acme", "An")
    app.update_profile(
        "acme", cid, {"company": " Công ty  ABC ", "address": "1 Lê Lợi, Q1", "language": "VI"}
    )
    shown = app.get("acme", cid)
    assert (shown["company"], shown["address"], shown["language"]) == (
        "Công ty ABC",
        "1 Lê Lợi, Q1",
        "vi",
    )
    app.update_profile("acme", cid, {"address": "  ", "language": None})
    shown = app.get("acme", cid)
    assert (shown["company"], shown["address"], shown["language"]) == ("Công ty ABC", None, None)


def test_updating_the_profile_to_what_it_already_is_records_nothing(app: Customers) -> None:
    cid = app.register("acme", "An")
    app.update_profile("acme", cid, {"language": "en"})
    app.update_profile("acme", cid, {"language": "en", "company": ""})
    assert app.get("acme", cid)["version"] == 2


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"language": "fr"}, "language"),
        ({"nickname": "x"}, "profile fields"),
        ({"company": "x" * 201}, "company"),
        ({"address": "x" * 501}, "address"),
    ],
)
def test_a_bad_profile_change_is_refused(
    app: Customers, changes: dict[str, str], reason: str
) -> None:
    cid = app.register("acme", "An")
    with pytest.raises(InvalidCustomer, match=reason):
        app.update_profile("acme", cid, changes)


def test_attributes_are_set_and_removed_with_normalised_names(app: Customers) -> None:
    cid = app.register("acme", "An")
    app.set_attributes("acme", cid, {" Loyalty_Tier ": "gold", "segment": "sme"})
    app.set_attributes("acme", cid, {"segment": None, "loyalty_tier": "gold", "absent": None})
    assert app.get("acme", cid)["attributes"] == {"loyalty_tier": "gold"}
    assert app.get("acme", cid)["version"] == 3


def test_attributes_are_bounded_in_name_value_and_count(app: Customers) -> None:
    cid = app.register("acme", "An")
    with pytest.raises(InvalidCustomer, match="attribute names"):
        app.set_attributes("acme", cid, {"bad name": "x"})
    with pytest.raises(InvalidCustomer, match="longer"):
        app.set_attributes("acme", cid, {"note": "x" * 1001})
    app.set_attributes("acme", cid, {f"a{i}": "x" for i in range(50)})
    with pytest.raises(InvalidCustomer, match="at most 50"):
        app.set_attributes("acme", cid, {"a50": "x"})
    app.set_attributes("acme", cid, {"a0": None, "a50": "x"})  # one out, one in: still 50


# Merging (CT11)


def test_merging_keeps_both_histories_and_moves_identities(app: Customers) -> None:
    source = app.register("acme", "An (chat)", [("chat", "v1"), ("phone", "0901234567")])
    target = app.register("acme", "Nguyễn Văn An", [("phone", "0901234567")])
    app.rename("acme", source, "An")

    assert app.merge("acme", source, target) == target

    kept = app.get("acme", source)
    assert kept["name"] == "An" and kept["version"] == 3  # its own history, then MergedInto
    assert kept["merged_into"] == str(target)
    survivor = app.get("acme", target)
    assert survivor["identities"] == [["phone", "+84901234567"], ["chat", "v1"]]
    assert survivor["merged_from"] == [str(source)]
    source_events = [type(e).__name__ for e in app.repository.event_store.get(source)]
    target_events = [type(e).__name__ for e in app.repository.event_store.get(target)]
    assert source_events == ["Registered", "Renamed", "MergedInto"]
    assert target_events == ["Registered", "Absorbed"]


def test_a_merge_is_one_atomic_save(app: Customers, monkeypatch: pytest.MonkeyPatch) -> None:
    source = app.register("acme", "A")
    target = app.register("acme", "B")
    batches: list[set[UUID]] = []
    insert = app.recorder.insert_events

    def spy(events: Any, **kwargs: Any) -> Any:
        batches.append({e.originator_id for e in events})
        return insert(events, **kwargs)

    monkeypatch.setattr(app.recorder, "insert_events", spy)
    app.merge("acme", source, target)
    assert batches == [{source, target}]


def test_a_merged_customer_refuses_commands_and_names_its_target(app: Customers) -> None:
    source = app.register("acme", "A", [("chat", "v1")])
    target = app.register("acme", "B")
    app.merge("acme", source, target)
    for command in (
        lambda: app.rename("acme", source, "C"),
        lambda: app.add_identity("acme", source, "chat", "v2"),
        lambda: app.remove_identity("acme", source, "chat", "v1"),
        lambda: app.update_profile("acme", source, {"language": "vi"}),
        lambda: app.set_attributes("acme", source, {"k": "v"}),
    ):
        with pytest.raises(CustomerMerged) as refused:
            command()
        assert refused.value.merged_into == target
    assert app.resolve("acme", source) == target
    assert app.resolve("acme", target) == target


def test_merging_into_a_merged_customer_follows_it_to_its_survivor(app: Customers) -> None:
    a, b, c = (app.register("acme", n) for n in "ABC")
    app.merge("acme", b, c)
    assert app.merge("acme", a, b) == c
    assert app.get("acme", a)["merged_into"] == str(c)
    assert app.get("acme", c)["merged_from"] == [str(b), str(a)]


def test_merging_a_customer_that_absorbed_others_leaves_no_chain(app: Customers) -> None:
    a, b, c = (app.register("acme", n, [("chat", n)]) for n in "ABC")
    app.merge("acme", a, b)
    app.merge("acme", b, c)
    # a was merged into b, b into c: a now points at c directly, one hop.
    assert app.get("acme", a)["merged_into"] == str(c)
    assert app.get("acme", b)["merged_into"] == str(c)
    assert app.get("acme", c)["merged_from"] == [str(b), str(a)]
    assert identities(app, c) == [["chat", "C"], ["chat", "B"], ["chat", "A"]]
    with pytest.raises(CustomerMerged) as refused:
        app.rename("acme", a, "x")
    assert refused.value.merged_into == c


def test_merging_customers_that_are_already_one_changes_nothing(app: Customers) -> None:
    a, b = app.register("acme", "A"), app.register("acme", "B")
    app.merge("acme", a, b)
    versions = (app.get("acme", a)["version"], app.get("acme", b)["version"])
    assert app.merge("acme", a, b) == b
    assert app.merge("acme", b, a) == b  # a's survivor is b itself
    assert (app.get("acme", a)["version"], app.get("acme", b)["version"]) == versions


def test_merging_a_customer_already_merged_elsewhere_is_refused(app: Customers) -> None:
    a, b, c = (app.register("acme", n) for n in "ABC")
    app.merge("acme", a, b)
    with pytest.raises(CustomerMerged) as refused:
        app.merge("acme", a, c)
    assert refused.value.merged_into == b


def test_a_customer_cannot_be_merged_into_itself(app: Customers) -> None:
    a = app.register("acme", "A")
    with pytest.raises(InvalidMerge, match="itself"):
        app.merge("acme", a, a)
    customer: Customer = app.repository.get(a)
    with pytest.raises(InvalidMerge, match="itself"):
        customer.absorb(customer)
    with pytest.raises(InvalidMerge, match="itself"):
        customer.merge_into(a)


def test_a_merge_over_the_identity_bound_is_refused_and_changes_nothing(app: Customers) -> None:
    a = app.register("acme", "A", [("chat", f"a{i}") for i in range(30)])
    b = app.register("acme", "B", [("chat", f"b{i}") for i in range(30)])
    with pytest.raises(InvalidMerge, match="identities"):
        app.merge("acme", a, b)
    assert app.get("acme", a)["version"] == app.get("acme", b)["version"] == 1


# Tenant walls, replay, read model


def test_another_tenants_customer_is_not_found(app: Customers) -> None:
    ours = app.register("acme", "An")
    theirs = app.register("globex", "Bình")
    with pytest.raises(NotFound):
        app.get("globex", ours)
    with pytest.raises(NotFound):
        app.update_profile("globex", ours, {"language": "vi"})
    with pytest.raises(NotFound):
        app.merge("acme", theirs, ours)
    with pytest.raises(NotFound):
        app.merge("acme", ours, theirs)
    with pytest.raises(NotFound):
        app.resolve("acme", uuid4())
    assert app.get("acme", ours)["version"] == app.get("globex", theirs)["version"] == 1


def test_a_reloaded_customer_has_the_same_state(app: Customers) -> None:
    customer = Customer(tenant_id="acme", name="An", identities=[("phone", "+84901234567")])
    other = Customer(tenant_id="acme", name="Bình", identities=[("chat", "v1")])
    customer.add_identity("email", "an@example.vn")
    customer.update_profile({"company": "ABC", "language": "vi"})
    customer.set_attributes({"tier": "gold"})
    customer.absorb(other)
    other.merge_into(customer.id)
    app.save(customer, other)
    for original in (customer, other):
        assert state(app.repository.get(original.id)) == state(original)
    reloaded: Customer = app.repository.get(customer.id)
    reloaded.add_identity("chat", "v1")  # tuples again after replay: still a duplicate
    assert reloaded.version == customer.version


def test_the_read_model_drops_merged_customers_and_gives_their_identities_to_the_survivor(
    app: Customers, tmp_path: Path
) -> None:
    source = app.register("acme", "A", [("chat", "v1"), ("phone", "0901234567")])
    target = app.register("acme", "B", [("phone", "0901234567")])
    app.remove_identity("acme", source, "chat", "v1")
    app.add_identity("acme", source, "email", "a@example.vn")
    app.update_profile("acme", target, {"language": "vi"})
    app.merge("acme", source, target)
    survivor = app.register("acme", "C")
    app.merge("acme", target, survivor)
    read = CustomersReadModel(tmp_path / "customers.sqlite")
    for notification in app.recorder.select_notifications(start=1, limit=100):
        read.apply(notification.id, app.mapper.to_domain_event(notification))

    assert read.get("acme", str(source)) is None
    assert read.get("acme", str(target)) is None
    assert read.merged_into("acme", str(source)) == str(survivor)  # redirected, one hop
    assert read.merged_into("acme", str(target)) == str(survivor)
    assert read.merged_into("globex", str(source)) is None
    shown = read.get("acme", str(survivor))
    assert shown is not None
    assert shown["identities"] == [["phone", "+84901234567"], ["email", "a@example.vn"]]
    assert shown["version"] == app.get("acme", survivor)["version"]
    assert [c["id"] for c in read.list("acme")] == [str(survivor)]
