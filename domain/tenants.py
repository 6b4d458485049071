"""Tenants (OP2, OP3): each business's virtual PBX, what it bought and how it is set up.

A Tenant is the package (Basic, Call Center, Contact Center), the hotlines (AX1, B2), the
features enabled out of those the package includes, how long its data is kept (CC24,
CT16), its named business calendars (CC11, CC22) and whether it is active.

The tenant's id is its slug, the same token the event store puts in every subject
(`es.<tenant>.…`), and its aggregate id is derived from that slug (uuid5), so a tenant is
loaded by slug without any index. The feature catalogue per package is defined here, once,
from FEATURES.md.

Events carry only JSON-native values (enum values as strings, calendars as plain dicts),
so they store the same through eventsourcing's default transcoder and the event store's,
and no Python class name becomes part of the stored format.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.base import DomainError, NotFound, TenantAggregate, TenantApplication
from domain.calendars import (
    BusinessCalendar,
    InvalidCalendar,
    calendar_from_builtins,
    calendar_to_builtins,
)
from domain.checks import checked_enum, clean_name
from domain.phones import normalize_phone_number
from domain.vocabulary import Package

# Fixed forever: every tenant's aggregate id is uuid5(this, slug). Changing it orphans
# every stored tenant.
TENANT_ID_NAMESPACE = UUID("64a605d7-e3aa-420f-a910-4276e0ecf41f")
# API keys read `cc.<key id>.<secret>`: recognisable in a leaked log or a repository.
API_KEY_PREFIX = "cc"

# The event store's subject token is [A-Za-z0-9_-]{1,128}; a slug must also start with a
# letter or digit so that it can never be "_", the store's token for system-wide (the
# operator's own) aggregates.
_TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _ids(prefix: str, first: int, last: int) -> frozenset[str]:
    return frozenset(f"{prefix}{n}" for n in range(first, last + 1))


# The catalogue of FEATURES.md. OP features are how the operator runs the service, not
# something a tenant switches on, so they are not listed. CT numbering starts at 2.
CALL_CENTER_FEATURES = _ids("CC", 1, 24)
CONTACT_CENTER_FEATURES = _ids("CT", 2, 18)
AUXILIARY_FEATURES = _ids("AX", 1, 22)
BASIC_FEATURES = _ids("B", 1, 5)
SDK_FEATURES = frozenset({"SDK1", "SDK2"})

# SDKs are priced add-ons (PR8: per API set per month), so they are never switched on by
# registration or an upgrade: the tenant enables them, and billing sees it.
ADD_ON_FEATURES = SDK_FEATURES

# What each package includes (OP3). The Web Call Kit (SDK1) needs the hotline's call
# handling, so it comes with both call center packages; the Ticket API (SDK2) feeds
# tickets (CT17), which only Contact Center has. Basic is a SIP trunk to the tenant's own
# PBX (B1): no call center features at all.
PACKAGE_FEATURES: Mapping[Package, frozenset[str]] = MappingProxyType(
    {
        Package.BASIC: AUXILIARY_FEATURES | BASIC_FEATURES,
        Package.CALL_CENTER: CALL_CENTER_FEATURES | AUXILIARY_FEATURES | {"SDK1"},
        Package.CONTACT_CENTER: (
            CALL_CENTER_FEATURES | CONTACT_CENTER_FEATURES | AUXILIARY_FEATURES | SDK_FEATURES
        ),
    }
)
ALL_FEATURES = frozenset().union(*PACKAGE_FEATURES.values())

# CC24 (60 days) for Call Center, CT16 (90 days) for Contact Center; Basic keeps call
# logs like Call Center.
RETENTION_DAYS: Mapping[Package, int] = MappingProxyType(
    {Package.BASIC: 60, Package.CALL_CENTER: 60, Package.CONTACT_CENTER: 90}
)
# Extensions are paid per month (PR8) but not unbounded: ten years is a sane ceiling.
MAX_RETENTION_DAYS = 3650


def allows_agents(package: Package) -> bool:
    """Whether a tenant on this package may have agents and supervisors.

    Basic is a SIP trunk delivered to the tenant's own PBX (B1), where its own users live;
    the tenant has admins on our portal, but nobody who takes calls through us. This is
    the one rule domain.agents consults when a user is given a call-taking role.
    """
    return package is not Package.BASIC


class InvalidTenant(DomainError):
    """A tenant command with values the domain does not accept."""


class TenantAlreadyRegistered(DomainError):
    """A tenant with this slug exists already."""


class UnknownFeature(InvalidTenant):
    """Not a feature id of FEATURES.md that a tenant can switch on."""


class FeatureNotInPackage(DomainError):
    """The feature exists, but the tenant's package does not include it."""


class LastHotline(DomainError):
    """An active tenant keeps at least one hotline (AX1): its single public number."""


class UnknownHotline(DomainError):
    """The number is not one of this tenant's hotlines."""


class UnknownApiKey(DomainError):
    """The tenant has no such API key (or it was revoked)."""


class HotlineTarget(StrEnum):
    """Where a hotline's inbound calls go first."""

    QUEUE = "queue"
    IVR = "ivr"


class NoHotline(DomainError):
    """A tenant without a hotline cannot be registered or reactivated."""


class RetentionNotExtended(DomainError):
    """Retention can only grow: a shorter period would delete data that was promised."""


class CalendarNotFound(NotFound):
    """The tenant has no calendar of that name."""


def valid_tenant_id(tenant_id: str) -> str:
    """The tenant's slug, checked: it becomes a subject token of the event store."""
    if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
        raise InvalidTenant(
            f"tenant id {tenant_id!r} must be 1 to 64 of [A-Za-z0-9_-], starting with a "
            "letter or digit"
        )
    return tenant_id


def feature_order(feature: str) -> tuple[str, int]:
    """Sort key that reads like the catalogue: AX2 before AX10."""
    prefix = feature.rstrip("0123456789")
    return prefix, int(feature[len(prefix) :])


def _feature(value: str) -> str:
    feature = value.strip().upper() if isinstance(value, str) else ""
    if feature not in ALL_FEATURES:
        raise UnknownFeature(f"{value!r} is not a feature of FEATURES.md a tenant can enable")
    return feature


class Tenant(TenantAggregate):
    """A business's virtual PBX (OP2): package, hotlines, features, retention, calendars.

    Invariants: enabled features are always included in the package (a downgrade disables
    the rest, an upgrade enables what it adds, add-ons excepted); an active tenant has a
    hotline; retention never shrinks below the package's or an extension already bought.
    Hotline numbers are unique within a tenant; that a number belongs to one tenant only
    is a read model's check (the aggregate cannot see other tenants).
    """

    class Registered(TenantAggregate.Created):
        tenant_id: str
        name: str
        package: str
        hotlines: list[str]
        features: list[str]
        retention_days: int

    class PackageChanged(TenantAggregate.Event):
        package: str
        retention_days: int

    class HotlineAdded(TenantAggregate.Event):
        number: str

    class HotlineRemoved(TenantAggregate.Event):
        number: str

    class HotlineRouted(TenantAggregate.Event):
        number: str
        kind: str  # a HotlineTarget value
        target_id: UUID

    class ApiKeyIssued(TenantAggregate.Event):
        """A key for the tenant's API (only the SHA-256 of its secret is kept)."""

        key_id: str
        name: str
        secret_sha256: str

    class ApiKeyRevoked(TenantAggregate.Event):
        key_id: str

    class FeatureEnabled(TenantAggregate.Event):
        feature: str

    class FeatureDisabled(TenantAggregate.Event):
        feature: str

    class RetentionExtended(TenantAggregate.Event):
        retention_days: int

    class CalendarDefined(TenantAggregate.Event):
        name: str
        calendar: dict[str, Any]

    class CalendarRemoved(TenantAggregate.Event):
        name: str

    class Suspended(TenantAggregate.Event):
        reason: str

    class Reactivated(TenantAggregate.Event):
        pass

    @staticmethod
    def create_id(tenant_id: str) -> UUID:
        """The aggregate id of a tenant slug: the same every time, so no index is needed."""
        return uuid5(TENANT_ID_NAMESPACE, tenant_id)

    @classmethod
    def register(
        cls, tenant_id: str, name: str, package: Package | str, hotlines: Iterable[str]
    ) -> Tenant:
        """A new active tenant with every non-add-on feature of its package enabled."""
        chosen = checked_enum(Package, package, InvalidTenant)
        numbers = list(dict.fromkeys(normalize_phone_number(n, e164=True) for n in hotlines))
        if not numbers:
            raise NoHotline("a tenant is registered with at least one hotline (AX1)")
        return cls(
            tenant_id=valid_tenant_id(tenant_id),
            name=clean_name(name, "a tenant's name", 200, InvalidTenant),
            package=chosen.value,
            hotlines=numbers,
            # Listed in the event, not re-derived on replay, so that a later change of the
            # catalogue does not rewrite what a tenant had.
            features=sorted(PACKAGE_FEATURES[chosen] - ADD_ON_FEATURES, key=feature_order),
            retention_days=RETENTION_DAYS[chosen],
        )

    @event(Registered)
    def __init__(
        self,
        tenant_id: str,
        name: str,
        package: str,
        hotlines: list[str],
        features: list[str],
        retention_days: int,
    ) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.package = Package(package)
        self.hotlines = list(hotlines)
        # Where each routed hotline's inbound calls go: (HotlineTarget, queue or flow id).
        self.hotline_routes: dict[str, tuple[HotlineTarget, UUID]] = {}
        # key id -> name, for the keys not revoked (their secrets' hashes are in events).
        self.api_keys: dict[str, str] = {}
        self.features = set(features)
        self.retention_days = retention_days
        self.retention_extended_to: int | None = None
        self.calendars: dict[str, BusinessCalendar] = {}
        self.active = True
        self.suspension_reason: str | None = None

    @property
    def allows_agents(self) -> bool:
        """Whether this tenant may have agents and supervisors (not on Basic)."""
        return allows_agents(self.package)

    # Mutators: one per event, no checks (they also run on replay).

    @event(PackageChanged)
    def _change_package(self, package: str, retention_days: int) -> None:
        self.package = Package(package)
        self.retention_days = retention_days

    @event(HotlineAdded)
    def _add_hotline(self, number: str) -> None:
        self.hotlines.append(number)

    @event(HotlineRemoved)
    def _remove_hotline(self, number: str) -> None:
        self.hotlines.remove(number)
        self.hotline_routes.pop(number, None)

    @event(ApiKeyIssued)
    def _issue_api_key(self, key_id: str, name: str, secret_sha256: str) -> None:
        self.api_keys[key_id] = name

    @event(ApiKeyRevoked)
    def _revoke_api_key(self, key_id: str) -> None:
        del self.api_keys[key_id]

    @event(HotlineRouted)
    def _route_hotline(self, number: str, kind: str, target_id: UUID) -> None:
        self.hotline_routes[number] = (HotlineTarget(kind), target_id)

    @event(FeatureEnabled)
    def _enable_feature(self, feature: str) -> None:
        self.features.add(feature)

    @event(FeatureDisabled)
    def _disable_feature(self, feature: str) -> None:
        self.features.discard(feature)

    @event(RetentionExtended)
    def _extend_retention(self, retention_days: int) -> None:
        self.retention_days = retention_days
        self.retention_extended_to = retention_days

    @event(CalendarDefined)
    def _define_calendar(self, name: str, calendar: dict[str, Any]) -> None:
        self.calendars[name] = calendar_from_builtins(calendar)

    @event(CalendarRemoved)
    def _remove_calendar(self, name: str) -> None:
        del self.calendars[name]

    @event(Suspended)
    def _suspend(self, reason: str) -> None:
        self.active = False
        self.suspension_reason = reason

    @event(Reactivated)
    def _reactivate(self) -> None:
        self.active = True
        self.suspension_reason = None

    # Commands. Each is idempotent when what it asks for already holds (no event).

    def change_package(self, package: Package | str) -> None:
        """Move to another package, disabling what it lacks and enabling what it adds."""
        new = checked_enum(Package, package, InvalidTenant)
        if new is self.package:
            return
        # Features go first, so that no state in between has a feature outside its package.
        for feature in sorted(self.features - PACKAGE_FEATURES[new], key=feature_order):
            self._disable_feature(feature)
        retention = max(RETENTION_DAYS[new], self.retention_extended_to or 0)
        added = PACKAGE_FEATURES[new] - PACKAGE_FEATURES[self.package] - ADD_ON_FEATURES
        self._change_package(new.value, retention)
        # Only features the old package lacked: a shared feature the tenant switched off
        # stays off.
        for feature in sorted(added, key=feature_order):
            self._enable_feature(feature)

    def add_hotline(self, number: str) -> None:
        hotline = normalize_phone_number(number, e164=True)
        if hotline not in self.hotlines:
            self._add_hotline(hotline)

    def remove_hotline(self, number: str) -> None:
        hotline = normalize_phone_number(number, e164=True)
        if hotline not in self.hotlines:
            return
        if self.active and len(self.hotlines) == 1:
            raise LastHotline(f"{hotline} is the last hotline of active tenant {self.tenant_id}")
        self._remove_hotline(hotline)

    def route_hotline(self, number: str, kind: HotlineTarget | str, target_id: UUID) -> None:
        """Send the hotline's inbound calls to a queue or into an IVR flow (AX1, CC15).

        That the queue or flow exists is the caller's check (another aggregate); a call to
        a hotline whose target is gone is refused by the dialplan, not lost.
        """
        hotline = normalize_phone_number(number, e164=True)
        if hotline not in self.hotlines:
            raise UnknownHotline(f"{hotline} is not a hotline of tenant {self.tenant_id}")
        target = checked_enum(HotlineTarget, kind, InvalidTenant)
        if self.hotline_routes.get(hotline) != (target, target_id):
            self._route_hotline(hotline, target.value, target_id)

    def issue_api_key(self, key_id: str, name: str, secret_sha256: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{12,64}", key_id) or key_id in self.api_keys:
            raise InvalidTenant("an API key id is new and hexadecimal")
        if not re.fullmatch(r"[0-9a-f]{64}", secret_sha256):
            raise InvalidTenant("an API key is kept as the SHA-256 of its secret")
        self._issue_api_key(
            key_id, clean_name(name, "a key's name", 100, InvalidTenant), secret_sha256
        )

    def revoke_api_key(self, key_id: str) -> None:
        if key_id not in self.api_keys:
            raise UnknownApiKey(f"tenant {self.tenant_id} has no key {key_id}")
        self._revoke_api_key(key_id)

    def enable_feature(self, feature: str) -> None:
        wanted = _feature(feature)
        if wanted not in PACKAGE_FEATURES[self.package]:
            raise FeatureNotInPackage(f"{wanted} is not in the {self.package} package")
        if wanted not in self.features:
            self._enable_feature(wanted)

    def disable_feature(self, feature: str) -> None:
        unwanted = _feature(feature)
        if unwanted in self.features:
            self._disable_feature(unwanted)

    def extend_retention(self, days: int) -> None:
        """Keep data for `days` in total (not additional days); it can only grow."""
        if type(days) is not int or days > MAX_RETENTION_DAYS:
            raise InvalidTenant(f"retention is a whole number of days up to {MAX_RETENTION_DAYS}")
        if days < self.retention_days:
            raise RetentionNotExtended(
                f"retention is {self.retention_days} days and cannot be shortened to {days}"
            )
        if days > self.retention_days:
            self._extend_retention(days)

    def define_calendar(self, name: str, calendar: BusinessCalendar) -> None:
        """Add a named calendar, or replace the one of that name."""
        key = clean_name(name, "a calendar's name", 64, InvalidTenant)
        if not isinstance(calendar, BusinessCalendar):
            raise InvalidCalendar("a calendar must be a BusinessCalendar")
        if self.calendars.get(key) != calendar:
            self._define_calendar(key, calendar_to_builtins(calendar))

    def remove_calendar(self, name: str) -> None:
        key = clean_name(name, "a calendar's name", 64, InvalidTenant)
        if key in self.calendars:
            self._remove_calendar(key)

    def suspend(self, reason: str) -> None:
        """Stop the service (e.g. unpaid); the configuration is kept for reactivation."""
        why = clean_name(reason, "a suspension reason", 200, InvalidTenant)
        if self.active:
            self._suspend(why)

    def reactivate(self) -> None:
        if self.active:
            return
        if not self.hotlines:
            raise NoHotline(f"tenant {self.tenant_id} needs a hotline before it is reactivated")
        self._reactivate()


class Tenants(TenantApplication):
    """The tenant verbs, addressed by slug; returns slugs and plain dicts, never aggregates."""

    name = "tenants"

    def register(
        self,
        tenant_id: str,
        name: str,
        package: Package | str,
        hotlines: Iterable[str],
    ) -> str:
        tenant = Tenant.register(tenant_id, name, package, hotlines)
        if tenant.id in self.repository:
            raise TenantAlreadyRegistered(f"tenant {tenant_id} is registered already")
        self.save(tenant)
        return tenant.tenant_id

    def change_package(self, tenant_id: str, package: Package | str) -> None:
        self._change(tenant_id, lambda t: t.change_package(package))

    def add_hotline(self, tenant_id: str, number: str) -> None:
        self._change(tenant_id, lambda t: t.add_hotline(number))

    def remove_hotline(self, tenant_id: str, number: str) -> None:
        self._change(tenant_id, lambda t: t.remove_hotline(number))

    def route_hotline(
        self, tenant_id: str, number: str, kind: HotlineTarget | str, target_id: UUID
    ) -> None:
        self._change(tenant_id, lambda t: t.route_hotline(number, kind, target_id))

    def issue_api_key(self, tenant_id: str, name: str) -> str:
        """A new key for the tenant's API, returned whole this once: `cc.<id>.<secret>`.

        The secret is 32 random bytes, so its SHA-256 is what is kept (a slow KDF buys
        nothing against guessing a secret that long, and costs every request)."""
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        self._change(tenant_id, lambda t: t.issue_api_key(key_id, name, digest))
        return f"{API_KEY_PREFIX}.{key_id}.{secret}"

    def revoke_api_key(self, tenant_id: str, key_id: str) -> None:
        self._change(tenant_id, lambda t: t.revoke_api_key(key_id))

    def enable_feature(self, tenant_id: str, feature: str) -> None:
        self._change(tenant_id, lambda t: t.enable_feature(feature))

    def disable_feature(self, tenant_id: str, feature: str) -> None:
        self._change(tenant_id, lambda t: t.disable_feature(feature))

    def define_calendar(self, tenant_id: str, name: str, calendar: BusinessCalendar) -> None:
        self._change(tenant_id, lambda t: t.define_calendar(name, calendar))

    def remove_calendar(self, tenant_id: str, name: str) -> None:
        self._change(tenant_id, lambda t: t.remove_calendar(name))

    def extend_retention(self, tenant_id: str, days: int) -> None:
        self._change(tenant_id, lambda t: t.extend_retention(days))

    def suspend(self, tenant_id: str, reason: str) -> None:
        self._change(tenant_id, lambda t: t.suspend(reason))

    def reactivate(self, tenant_id: str) -> None:
        self._change(tenant_id, Tenant.reactivate)

    def calendar(self, tenant_id: str, name: str) -> BusinessCalendar:
        """A named calendar as a value, for routing by schedule and SLA timers."""
        tenant = self._get(tenant_id)
        try:
            return tenant.calendars[name]
        except KeyError:
            raise CalendarNotFound(f"tenant {tenant_id} has no calendar {name!r}") from None

    def get(self, tenant_id: str) -> dict[str, object]:
        tenant = self._get(tenant_id)
        return {
            "id": str(tenant.id),
            "tenant_id": tenant.tenant_id,
            "name": tenant.name,
            "package": tenant.package.value,
            "hotlines": list(tenant.hotlines),
            "api_keys": dict(sorted(tenant.api_keys.items())),
            "hotline_routes": {
                n: {"kind": k.value, "target_id": str(t)}
                for n, (k, t) in sorted(tenant.hotline_routes.items())
            },
            "features": sorted(tenant.features, key=feature_order),
            "retention_days": tenant.retention_days,
            "calendars": {n: calendar_to_builtins(c) for n, c in sorted(tenant.calendars.items())},
            "active": tenant.active,
            "suspension_reason": tenant.suspension_reason,
            "allows_agents": tenant.allows_agents,
            "version": tenant.version,
        }

    def _get(self, tenant_id: str) -> Tenant:
        return self.get_owned(tenant_id, Tenant.create_id(tenant_id), Tenant)

    def _change(self, tenant_id: str, command: Callable[[Tenant], object]) -> None:
        self.change(tenant_id, Tenant.create_id(tenant_id), Tenant, command)
