"""Tenants: packages and their features, hotlines, retention, calendars, suspension."""

from __future__ import annotations

import hashlib
from datetime import time
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import pytest

from domain.base import NotFound
from domain.calendars import BusinessCalendar, OpeningHours, Weekday
from domain.phones import InvalidPhoneNumber, normalize_phone_number
from domain.tenants import (
    ADD_ON_FEATURES,
    CONTACT_CENTER_FEATURES,
    PACKAGE_FEATURES,
    TENANT_ID_NAMESPACE,
    CalendarNotFound,
    FeatureNotInPackage,
    HotlineTarget,
    InvalidTenant,
    LastHotline,
    NoHotline,
    RetentionNotExtended,
    Tenant,
    TenantAlreadyRegistered,
    Tenants,
    UnknownApiKey,
    UnknownFeature,
    UnknownHotline,
    allows_agents,
)
from domain.vocabulary import Package

HOTLINE = "0912345678"


@pytest.fixture
def tenants() -> Tenants:
    return Tenants()


def register(tenants: Tenants, package: Package = Package.CALL_CENTER, slug: str = "acme") -> str:
    return tenants.register(slug, "Acme Co.", package, [HOTLINE])


def office() -> BusinessCalendar:
    return BusinessCalendar(
        time_zone="Asia/Ho_Chi_Minh",
        hours=tuple(OpeningHours(day=d, start=time(8), end=time(17)) for d in Weekday),
    )


def event_names(tenant: Tenant) -> list[str]:
    return [type(e).__name__ for e in tenant.collect_events()]


def state(aggregate: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


class TestRegistration:
    def test_registration_enables_every_feature_of_the_package_but_add_ons(
        self, tenants: Tenants
    ) -> None:
        register(tenants, Package.CONTACT_CENTER)
        features = set(tenants.get("acme")["features"])  # type: ignore[call-overload]
        assert features == PACKAGE_FEATURES[Package.CONTACT_CENTER] - ADD_ON_FEATURES
        assert "SDK1" not in features

    @pytest.mark.parametrize(
        ("package", "days"),
        [(Package.BASIC, 60), (Package.CALL_CENTER, 60), (Package.CONTACT_CENTER, 90)],
    )
    def test_retention_defaults_by_package(
        self, tenants: Tenants, package: Package, days: int
    ) -> None:
        register(tenants, package)
        assert tenants.get("acme")["retention_days"] == days

    def test_the_aggregate_id_is_derived_from_the_slug(self, tenants: Tenants) -> None:
        assert register(tenants) == "acme"
        assert tenants.get("acme")["id"] == str(uuid5(TENANT_ID_NAMESPACE, "acme"))
        assert Tenant.create_id("acme") != Tenant.create_id("Acme")

    def test_the_namespace_never_changes(self) -> None:
        # Stored tenants are found by uuid5(namespace, slug): a new namespace loses them all.
        assert str(TENANT_ID_NAMESPACE) == "64a605d7-e3aa-420f-a910-4276e0ecf41f"
        assert TENANT_ID_NAMESPACE != NAMESPACE_URL

    def test_a_slug_registers_once(self, tenants: Tenants) -> None:
        register(tenants)
        with pytest.raises(TenantAlreadyRegistered):
            register(tenants, Package.BASIC)

    @pytest.mark.parametrize("slug", ["", "_", "-acme", "a.b", "a b", "acme>", "é", "a" * 65])
    def test_a_slug_must_be_a_subject_token_other_than_the_system_one(
        self, tenants: Tenants, slug: str
    ) -> None:
        with pytest.raises(InvalidTenant):
            register(tenants, slug=slug)

    def test_a_tenant_is_registered_with_a_hotline(self, tenants: Tenants) -> None:
        with pytest.raises(NoHotline):
            tenants.register("acme", "Acme", Package.CALL_CENTER, [])

    def test_a_name_and_a_known_package_are_required(self, tenants: Tenants) -> None:
        with pytest.raises(InvalidTenant):
            tenants.register("acme", "   ", Package.CALL_CENTER, [HOTLINE])
        with pytest.raises(InvalidTenant):
            tenants.register("acme", "Acme", "premium", [HOTLINE])

    def test_an_unknown_tenant_is_not_found(self, tenants: Tenants) -> None:
        with pytest.raises(NotFound):
            tenants.get("nobody")


class TestHotlines:
    @pytest.mark.parametrize(
        "written",
        [
            "0912345678",
            "+84912345678",
            "+84 91 234 5678",
            "0084912345678",
            "+840912345678",
            "091-234-5678",
            "(091) 234.5678",
        ],
    )
    def test_vietnamese_numbers_are_stored_in_e164(self, written: str) -> None:
        assert normalize_phone_number(written, e164=True) == "+84912345678"

    def test_a_landline_and_a_foreign_number_are_accepted(self) -> None:
        assert normalize_phone_number("02438123456", e164=True) == "+842438123456"
        assert normalize_phone_number("+33 6 12 34 56 78", e164=True) == "+33612345678"

    @pytest.mark.parametrize("written", ["", "12345", "hotline", "+0123456789", "091234567"])
    def test_a_malformed_number_is_refused(self, tenants: Tenants, written: str) -> None:
        register(tenants)
        with pytest.raises(InvalidPhoneNumber):
            tenants.add_hotline("acme", written)

    def test_hotlines_are_unique_whatever_the_spelling(self, tenants: Tenants) -> None:
        register(tenants)
        version = tenants.get("acme")["version"]
        tenants.add_hotline("acme", "+84 912 345 678")
        assert tenants.get("acme")["version"] == version
        tenants.add_hotline("acme", "0987654321")
        assert tenants.get("acme")["hotlines"] == ["+84912345678", "+84987654321"]

    def test_the_last_hotline_of_an_active_tenant_cannot_be_removed(self, tenants: Tenants) -> None:
        register(tenants)
        tenants.add_hotline("acme", "0987654321")
        tenants.remove_hotline("acme", "0912345678")
        with pytest.raises(LastHotline):
            tenants.remove_hotline("acme", "0987654321")
        assert tenants.get("acme")["hotlines"] == ["+84987654321"]

    def test_a_suspended_tenant_may_release_its_last_hotline(self, tenants: Tenants) -> None:
        register(tenants)
        tenants.suspend("acme", "unpaid invoice")
        tenants.remove_hotline("acme", HOTLINE)
        assert tenants.get("acme")["hotlines"] == []

    def test_removing_an_unknown_hotline_changes_nothing(self, tenants: Tenants) -> None:
        register(tenants)
        version = tenants.get("acme")["version"]
        tenants.remove_hotline("acme", "0987654321")
        assert tenants.get("acme")["version"] == version


class TestFeatures:
    def test_a_feature_outside_the_package_cannot_be_enabled(self, tenants: Tenants) -> None:
        register(tenants, Package.CALL_CENTER)
        with pytest.raises(FeatureNotInPackage):
            tenants.enable_feature("acme", "CT3")
        with pytest.raises(FeatureNotInPackage):
            tenants.enable_feature("acme", "B2")

    @pytest.mark.parametrize("feature", ["OP9", "CC99", "CT1", "", "chat"])
    def test_unknown_feature_ids_are_refused(self, tenants: Tenants, feature: str) -> None:
        register(tenants)
        with pytest.raises(UnknownFeature):
            tenants.enable_feature("acme", feature)

    def test_a_feature_is_disabled_and_enabled_again_by_id_in_any_case(
        self, tenants: Tenants
    ) -> None:
        register(tenants)
        tenants.disable_feature("acme", "cc19")
        assert "CC19" not in tenants.get("acme")["features"]  # type: ignore[operator]
        tenants.enable_feature("acme", " CC19 ")
        assert "CC19" in tenants.get("acme")["features"]  # type: ignore[operator]

    def test_an_add_on_is_enabled_by_the_tenant(self, tenants: Tenants) -> None:
        register(tenants)
        tenants.enable_feature("acme", "SDK1")
        assert "SDK1" in tenants.get("acme")["features"]  # type: ignore[operator]
        with pytest.raises(FeatureNotInPackage):  # the Ticket API needs tickets (CT17)
            tenants.enable_feature("acme", "SDK2")

    def test_the_catalogue_follows_features_md(self) -> None:
        basic, call, contact = (PACKAGE_FEATURES[p] for p in Package)
        assert {"AX1", "AX22", "B1", "B5"} <= basic and not any(f[:2] == "CC" for f in basic)
        assert {"CC1", "CC24", "AX15"} <= call and not call & CONTACT_CENTER_FEATURES
        assert call <= contact and CONTACT_CENTER_FEATURES <= contact
        assert not any(f.startswith("B") for f in contact)
        assert not any(f.startswith("OP") for f in basic | contact)


class TestPackages:
    def test_a_downgrade_disables_features_the_new_package_lacks(self) -> None:
        tenant = Tenant.register("acme", "Acme", Package.CONTACT_CENTER, [HOTLINE])
        tenant.enable_feature("SDK2")
        tenant.collect_events()
        tenant.change_package(Package.CALL_CENTER)
        names = event_names(tenant)
        # Every lost feature is disabled by its own event, before the package changes.
        lost = CONTACT_CENTER_FEATURES | {"SDK2"}
        assert names == ["FeatureDisabled"] * len(lost) + ["PackageChanged"]
        assert tenant.features == PACKAGE_FEATURES[Package.CALL_CENTER] - ADD_ON_FEATURES

    def test_an_upgrade_enables_what_it_adds_and_keeps_the_tenants_choices(
        self, tenants: Tenants
    ) -> None:
        register(tenants, Package.CALL_CENTER)
        tenants.disable_feature("acme", "CC19")
        tenants.change_package("acme", Package.CONTACT_CENTER)
        features = set(tenants.get("acme")["features"])  # type: ignore[call-overload]
        assert CONTACT_CENTER_FEATURES <= features
        assert "CC19" not in features  # switched off before, still off
        assert "SDK2" not in features  # add-ons are never switched on for the tenant

    def test_a_downgrade_to_basic_leaves_trunk_features_and_no_agents(
        self, tenants: Tenants
    ) -> None:
        register(tenants, Package.CONTACT_CENTER)
        tenants.change_package("acme", Package.BASIC)
        tenant = tenants.get("acme")
        # The call center features go; the trunk's own (B1-B5) are new to it and come on.
        assert set(tenant["features"]) == PACKAGE_FEATURES[Package.BASIC]  # type: ignore[call-overload]
        assert tenant["allows_agents"] is False
        assert tenant["package"] == "basic"

    def test_only_basic_has_no_agents(self) -> None:
        assert [allows_agents(p) for p in Package] == [False, True, True]

    def test_changing_to_the_same_package_changes_nothing(self) -> None:
        tenant = Tenant.register("acme", "Acme", Package.CALL_CENTER, [HOTLINE])
        tenant.collect_events()
        tenant.change_package("call_center")
        assert event_names(tenant) == []


class TestRetention:
    def test_retention_is_extended_in_total_days(self, tenants: Tenants) -> None:
        register(tenants, Package.CALL_CENTER)
        tenants.extend_retention("acme", 180)
        assert tenants.get("acme")["retention_days"] == 180

    def test_retention_can_only_grow(self, tenants: Tenants) -> None:
        register(tenants, Package.CONTACT_CENTER)
        with pytest.raises(RetentionNotExtended):
            tenants.extend_retention("acme", 60)
        version = tenants.get("acme")["version"]
        tenants.extend_retention("acme", 90)
        assert tenants.get("acme")["version"] == version

    @pytest.mark.parametrize("days", [3651, 120.5, True, "120"])
    def test_retention_is_a_whole_number_of_days_up_to_ten_years(
        self, tenants: Tenants, days: Any
    ) -> None:
        register(tenants)
        with pytest.raises(InvalidTenant):
            tenants.extend_retention("acme", days)

    def test_retention_follows_the_package_unless_an_extension_is_longer(
        self, tenants: Tenants
    ) -> None:
        register(tenants, Package.CALL_CENTER)
        tenants.change_package("acme", Package.CONTACT_CENTER)
        assert tenants.get("acme")["retention_days"] == 90
        tenants.change_package("acme", Package.CALL_CENTER)
        assert tenants.get("acme")["retention_days"] == 60
        tenants.extend_retention("acme", 75)
        tenants.change_package("acme", Package.CONTACT_CENTER)
        assert tenants.get("acme")["retention_days"] == 90
        tenants.change_package("acme", Package.CALL_CENTER)
        assert tenants.get("acme")["retention_days"] == 75  # the extension bought is kept


class TestCalendars:
    def test_calendars_are_named_replaced_and_removed(self, tenants: Tenants) -> None:
        register(tenants)
        tenants.define_calendar("acme", "Head office", office())
        assert tenants.calendar("acme", "Head office") == office()
        version = tenants.get("acme")["version"]
        tenants.define_calendar("acme", "Head office", office())
        assert tenants.get("acme")["version"] == version

        weekdays = BusinessCalendar(
            time_zone="Asia/Ho_Chi_Minh",
            hours=(OpeningHours(day=Weekday.MONDAY, start=time(8), end=time(12)),),
        )
        tenants.define_calendar("acme", "Head office", weekdays)
        assert tenants.calendar("acme", "Head office") == weekdays
        tenants.remove_calendar("acme", "Head office")
        with pytest.raises(CalendarNotFound):
            tenants.calendar("acme", "Head office")

    def test_a_calendar_is_shown_as_plain_values(self, tenants: Tenants) -> None:
        register(tenants)
        tenants.define_calendar("acme", "main", office())
        shown = tenants.get("acme")["calendars"]
        assert shown["main"]["time_zone"] == "Asia/Ho_Chi_Minh"  # type: ignore[index]
        assert shown["main"]["hours"][0] == {"day": "mon", "start": "08:00:00", "end": "17:00:00"}  # type: ignore[index]


class TestSuspension:
    def test_a_suspended_tenant_is_reactivated(self, tenants: Tenants) -> None:
        register(tenants)
        tenants.suspend("acme", "unpaid invoice")
        assert tenants.get("acme")["active"] is False
        assert tenants.get("acme")["suspension_reason"] == "unpaid invoice"
        tenants.reactivate("acme")
        assert tenants.get("acme")["active"] is True

    def test_a_suspension_needs_a_reason(self, tenants: Tenants) -> None:
        register(tenants)
        with pytest.raises(InvalidTenant):
            tenants.suspend("acme", "")

    def test_a_tenant_without_a_hotline_is_not_reactivated(self, tenants: Tenants) -> None:
        register(tenants)
        tenants.suspend("acme", "closing down")
        tenants.remove_hotline("acme", HOTLINE)
        with pytest.raises(NoHotline):
            tenants.reactivate("acme")
        tenants.add_hotline("acme", "0987654321")
        tenants.reactivate("acme")
        assert tenants.get("acme")["active"] is True

    def test_suspending_twice_changes_nothing(self, tenants: Tenants) -> None:
        register(tenants)
        tenants.suspend("acme", "unpaid")
        version = tenants.get("acme")["version"]
        tenants.suspend("acme", "again")
        assert tenants.get("acme")["version"] == version


def test_a_tenant_reloaded_from_its_events_equals_the_one_that_made_them(
    transcoder_env: dict[str, str],
) -> None:
    tenants = Tenants(env=transcoder_env)
    tenant = Tenant.register("acme", "Acme Co.", Package.CALL_CENTER, [HOTLINE])
    tenant.add_hotline("0987654321")
    tenant.disable_feature("CC20")
    tenant.change_package(Package.CONTACT_CENTER)
    tenant.enable_feature("SDK2")
    tenant.extend_retention(120)
    tenant.define_calendar("main", office())
    tenant.remove_hotline(HOTLINE)
    tenant.suspend("unpaid")
    tenants.save(tenant)

    reloaded: Tenant = tenants.repository.get(tenant.id)
    assert reloaded is not tenant
    assert state(reloaded) == state(tenant)
    assert reloaded.package is Package.CONTACT_CENTER
    assert reloaded.calendars["main"] == office()


class TestHotlineRoutes:
    QUEUE = uuid5(NAMESPACE_URL, "queue")
    FLOW = uuid5(NAMESPACE_URL, "flow")

    def test_a_hotline_is_routed_to_a_queue_then_to_an_ivr_flow(self, tenants: Tenants) -> None:
        register(tenants)
        tenants.route_hotline("acme", HOTLINE, HotlineTarget.QUEUE, self.QUEUE)
        tenants.route_hotline("acme", "+84 912 345 678", "ivr", self.FLOW)
        routes = tenants.get("acme")["hotline_routes"]
        assert routes == {
            normalize_phone_number(HOTLINE, e164=True): {"kind": "ivr", "target_id": str(self.FLOW)}
        }

    def test_routing_again_to_the_same_target_records_nothing(self, tenants: Tenants) -> None:
        register(tenants)
        tenants.route_hotline("acme", HOTLINE, "queue", self.QUEUE)
        version = tenants.get("acme")["version"]
        tenants.route_hotline("acme", HOTLINE, "queue", self.QUEUE)
        assert tenants.get("acme")["version"] == version

    def test_only_the_tenants_own_hotlines_and_known_targets(self, tenants: Tenants) -> None:
        register(tenants)
        with pytest.raises(UnknownHotline):
            tenants.route_hotline("acme", "0987654321", "queue", self.QUEUE)
        with pytest.raises(InvalidTenant):
            tenants.route_hotline("acme", HOTLINE, "voicemail", self.QUEUE)

    def test_a_removed_hotline_loses_its_route(self, tenants: Tenants) -> None:
        register(tenants)
        tenants.add_hotline("acme", "0987654321")
        tenants.route_hotline("acme", "0987654321", "queue", self.QUEUE)
        tenants.remove_hotline("acme", "0987654321")
        assert tenants.get("acme")["hotline_routes"] == {}


class TestApiKeys:
    def test_a_key_is_given_once_and_only_its_hash_is_kept(self, tenants: Tenants) -> None:
        register(tenants)
        key = tenants.issue_api_key("acme", "CRM sync")
        prefix, key_id, secret = key.split(".")
        assert prefix == "cc" and len(secret) >= 40
        assert tenants.get("acme")["api_keys"] == {key_id: "CRM sync"}
        tenant = tenants.repository.get(Tenant.create_id("acme"))
        [issued] = [
            e
            for e in tenants.repository.event_store.get(tenant.id)
            if type(e).__name__ == "ApiKeyIssued"
        ]
        assert secret not in repr(vars(issued))
        assert issued.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()

    def test_a_revoked_key_is_gone_and_cannot_be_revoked_twice(self, tenants: Tenants) -> None:
        register(tenants)
        key_id = tenants.issue_api_key("acme", "CRM sync").split(".")[1]
        other = tenants.issue_api_key("acme", "BI").split(".")[1]
        tenants.revoke_api_key("acme", key_id)
        assert tenants.get("acme")["api_keys"] == {other: "BI"}
        with pytest.raises(UnknownApiKey):
            tenants.revoke_api_key("acme", key_id)
        with pytest.raises(InvalidTenant):
            tenants.issue_api_key("acme", "  ")
