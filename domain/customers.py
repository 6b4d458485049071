"""Customers (CC8, CT11): a person who contacts a tenant, their profile and identities.

A customer is found by any identity they reach the tenant with (a phone number, an email
address, a Facebook id, a chat visitor id), so identities are normalised here, once, to
the form every channel's connector will look them up by: phone numbers as domain.phones
writes them (0912345678 becomes +84912345678) and emails lower-cased.

Merging duplicates (CT11) keeps both histories. The source stays in the event store as it
was, gains `MergedInto(target_id)` and from then on refuses every command with
`CustomerMerged`, which names the target so callers can follow it. The target records
`Absorbed(source_id, identities, merged_ids)` and gains the identities. Decisions:

- merging into a customer that was itself merged follows it to its survivor;
- there are no chains: when a target that absorbed others is later merged itself, those
  others are redirected (`Redirected`) to the new survivor in the same save, so a merged
  customer always points at a live one, one hop away;
- asking again to merge customers that are already one changes nothing (idempotent);
  merging a customer into itself is refused.

Which customer owns an identity across the tenant (the phone → customer index) is a
read-model concern: the domain does not forbid two customers sharing a phone — that is
exactly what a merge resolves.

Connectors need the opposite lookup without waiting for a read model: `register_for_identity`
gives the customer first seen through an identity an id derived from (tenant, kind,
normalised value), so every later fact with that identity finds the same customer by id
(following a merge to its survivor). A customer registered by hand with the same phone is
a second customer until somebody merges the two.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.base import DomainError, TenantAggregate, TenantApplication
from domain.checks import clean_name, str_or_none
from domain.phones import normalize_phone_number

IDENTITY_KINDS = frozenset({"phone", "email", "facebook", "chat"})
LANGUAGES = frozenset({"vi", "en"})
PROFILE_FIELDS = {"company": 200, "address": 500, "language": 2}
MAX_IDENTITIES = 50
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_VALUE = 1000

# Namespace of the ids of customers first seen through an identity (register_for_identity).
_IDENTITY_NAMESPACE = UUID("0d6b3a52-93a4-4f0b-8d8e-2c1f6a7e4b19")

_ATTRIBUTE_KEY = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,63}", re.ASCII)


class InvalidCustomer(DomainError):
    """A customer command with values the domain does not accept."""


class CustomerMerged(DomainError):
    """The customer was merged into another and is read-only; follow `merged_into`."""

    def __init__(self, customer_id: UUID, merged_into: UUID) -> None:
        super().__init__(f"customer {customer_id} was merged into {merged_into}")
        self.customer_id = customer_id
        self.merged_into = merged_into


class InvalidMerge(DomainError):
    """A merge the domain refuses: into itself, or more identities than one customer holds."""


class Customer(TenantAggregate):
    """A tenant's customer, their profile and every identity they reach the tenant with."""

    class Registered(TenantAggregate.Created):
        tenant_id: str
        name: str
        identities: list[tuple[str, str]]

    class Renamed(TenantAggregate.Event):
        name: str

    class IdentityAdded(TenantAggregate.Event):
        kind: str
        value: str

    class IdentityRemoved(TenantAggregate.Event):
        kind: str
        value: str

    class ProfileUpdated(TenantAggregate.Event):
        """Carries the whole new profile, so a read model needs no earlier state."""

        company: str | None
        address: str | None
        language: str | None

    class AttributesChanged(TenantAggregate.Event):
        """Free-form attributes set (a value) or removed (None)."""

        changes: dict[str, str | None]

    class MergedInto(TenantAggregate.Event):
        target_id: UUID

    class Absorbed(TenantAggregate.Event):
        """The target's side of a merge: all of the source's identities, and the ids the
        source had itself absorbed earlier (now the target's too)."""

        source_id: UUID
        identities: list[tuple[str, str]]
        merged_ids: list[UUID]

    class Redirected(TenantAggregate.Event):
        """The customer this one was merged into was merged too: follow the new survivor."""

        target_id: UUID
        via_id: UUID

    @event(Registered)
    def __init__(self, tenant_id: str, name: str, identities: list[tuple[str, str]]) -> None:
        self.tenant_id = tenant_id
        self.name = name
        # Tuples again after a JSON round trip, which stores them as lists.
        self.identities = [(kind, value) for kind, value in identities]
        self.company: str | None = None
        self.address: str | None = None
        self.language: str | None = None
        self.attributes: dict[str, str] = {}
        self.merged_into: UUID | None = None
        self.merged_from: list[UUID] = []

    @event(Renamed)
    def _rename(self, name: str) -> None:
        self.name = name

    @event(IdentityAdded)
    def _add_identity(self, kind: str, value: str) -> None:
        self.identities.append((kind, value))

    @event(IdentityRemoved)
    def _remove_identity(self, kind: str, value: str) -> None:
        self.identities.remove((kind, value))

    @event(ProfileUpdated)
    def _update_profile(
        self, company: str | None, address: str | None, language: str | None
    ) -> None:
        self.company, self.address, self.language = company, address, language

    @event(AttributesChanged)
    def _change_attributes(self, changes: dict[str, str | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.attributes.pop(key, None)
            else:
                self.attributes[key] = value

    @event(MergedInto)
    def _merge_into(self, target_id: UUID) -> None:
        self.merged_into = target_id

    @event(Absorbed)
    def _absorb(
        self, source_id: UUID, identities: list[tuple[str, str]], merged_ids: list[UUID]
    ) -> None:
        for kind, value in identities:
            if (kind, value) not in self.identities:
                self.identities.append((kind, value))
        self.merged_from.extend([source_id, *merged_ids])

    @event(Redirected)
    def _redirect(self, target_id: UUID, via_id: UUID) -> None:
        self.merged_into = target_id

    def rename(self, name: str) -> None:
        self._check_live()
        name = clean_name(name, "a customer's name", 200, InvalidCustomer)
        if name != self.name:
            self._rename(name)

    def add_identity(self, kind: str, value: str) -> None:
        self._check_live()
        identity = normal_identity(kind, value)
        if identity in self.identities:
            return
        if len(self.identities) >= MAX_IDENTITIES:
            raise InvalidCustomer(f"a customer has at most {MAX_IDENTITIES} identities")
        self._add_identity(*identity)

    def remove_identity(self, kind: str, value: str) -> None:
        """Idempotent, like adding: removing an identity the customer lacks changes nothing."""
        self._check_live()
        # Identities stored before normalisation existed are removed as they were stored.
        raw = (kind, value.strip())
        identity = raw if raw in self.identities else normal_identity(kind, value)
        if identity in self.identities:
            self._remove_identity(*identity)

    def update_profile(self, changes: Mapping[str, str | None]) -> None:
        """Change some of company, address and language; None or blank clears a field."""
        self._check_live()
        profile = self.profile()
        for field, value in changes.items():
            if field not in PROFILE_FIELDS:
                raise InvalidCustomer(f"profile fields are {sorted(PROFILE_FIELDS)}, not {field!r}")
            profile[field] = _valid_profile_value(field, value)
        if profile != self.profile():
            self._update_profile(**profile)

    def profile(self) -> dict[str, str | None]:
        return {"company": self.company, "address": self.address, "language": self.language}

    def set_attributes(self, changes: Mapping[str, str | None]) -> None:
        """Set free-form attributes; a None value removes one. Bounded in count and size."""
        self._check_live()
        checked: dict[str, str | None] = {}
        for key, value in changes.items():
            key = _valid_attribute_key(key)
            if value is not None:
                value = value.strip()
                if len(value) > MAX_ATTRIBUTE_VALUE:
                    raise InvalidCustomer(
                        f"attribute {key!r} is longer than {MAX_ATTRIBUTE_VALUE} characters"
                    )
            if self.attributes.get(key) != value:
                checked[key] = value
        after = {**self.attributes, **checked}
        if sum(v is not None for v in after.values()) > MAX_ATTRIBUTES:
            raise InvalidCustomer(f"a customer has at most {MAX_ATTRIBUTES} attributes")
        if checked:
            self._change_attributes(checked)

    def absorb(self, source: Customer) -> None:
        """The target's half of a merge; call before `source.merge_into(self.id)`."""
        self._check_live()
        source._check_live()
        if source.id == self.id:
            raise InvalidMerge("a customer cannot be merged into itself")
        if source.tenant_id != self.tenant_id:
            # The application never loads across tenants; this guards direct use.
            raise InvalidMerge("customers of different tenants cannot be merged")
        if len(set(self.identities) | set(source.identities)) > MAX_IDENTITIES:
            raise InvalidMerge(f"the merged customer would have over {MAX_IDENTITIES} identities")
        self._absorb(source.id, list(source.identities), list(source.merged_from))

    def merge_into(self, target_id: UUID) -> None:
        """The source's half of a merge: from now on read-only, pointing at the target."""
        self._check_live()
        if target_id == self.id:
            raise InvalidMerge("a customer cannot be merged into itself")
        self._merge_into(target_id)

    def redirect(self, target_id: UUID, via_id: UUID) -> None:
        """Point a merged customer at the survivor of the customer it was merged into."""
        if self.merged_into != via_id:
            raise InvalidMerge(f"customer {self.id} was not merged into {via_id}")
        self._redirect(target_id, via_id)

    def _check_live(self) -> None:
        if self.merged_into is not None:
            raise CustomerMerged(self.id, self.merged_into)


def normal_identity(kind: str, value: str) -> tuple[str, str]:
    """An identity checked and in the form it is stored and looked up in (connectors too)."""
    if kind not in IDENTITY_KINDS:
        raise InvalidCustomer(f"identity kind must be one of {sorted(IDENTITY_KINDS)}")
    value = value.strip()
    if not value or len(value) > 320:
        raise InvalidCustomer(f"a {kind} identity needs a value of 1 to 320 characters")
    if kind == "phone":
        return kind, normalize_phone_number(value, InvalidCustomer)
    if kind == "email":
        return kind, _normal_email(value)
    if any(c.isspace() for c in value):
        raise InvalidCustomer(f"a {kind} id has no spaces: {value!r}")
    return kind, value


def identity_customer_id(tenant_id: str, kind: str, value: str) -> UUID:
    """The id of the customer first seen through this (already normalised) identity."""
    return uuid5(_IDENTITY_NAMESPACE, f"{tenant_id}/{kind}/{value}")


def _normal_email(value: str) -> str:
    value = value.lower()
    local, at, domain = value.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain.strip(".")
        or any(c.isspace() for c in value)
        or "@" in domain
    ):
        raise InvalidCustomer(f"not an email address: {value!r}")
    return value


def _valid_profile_value(field: str, value: str | None) -> str | None:
    value = " ".join(value.split()) if value else None
    if not value:
        return None
    if field == "language":
        if value.lower() not in LANGUAGES:
            raise InvalidCustomer(f"language must be one of {sorted(LANGUAGES)}")
        return value.lower()
    if len(value) > PROFILE_FIELDS[field]:
        raise InvalidCustomer(f"{field} is at most {PROFILE_FIELDS[field]} characters")
    return value


def _valid_attribute_key(key: str) -> str:
    key = key.strip().lower()
    if not _ATTRIBUTE_KEY.fullmatch(key):
        raise InvalidCustomer(
            f"attribute names are 1-64 of a-z 0-9 _ . - (not starting with . or -): {key!r}"
        )
    return key


class Customers(TenantApplication):
    """The customer verbs; returns ids and plain dicts, never aggregates."""

    name = "customers"

    def register(
        self, tenant_id: str, name: str, identities: Iterable[tuple[str, str]] = ()
    ) -> UUID:
        checked = list(dict.fromkeys(normal_identity(k, v) for k, v in identities))
        if len(checked) > MAX_IDENTITIES:
            raise InvalidCustomer(f"a customer has at most {MAX_IDENTITIES} identities")
        customer = Customer(
            tenant_id=tenant_id,
            name=clean_name(name, "a customer's name", 200, InvalidCustomer),
            identities=checked,
        )
        self.save(customer)
        return customer.id

    def register_for_identity(
        self, tenant_id: str, kind: str, value: str, name: str | None = None
    ) -> UUID:
        """The customer a connector's fact comes from, registered on first sight.

        The id is derived from the normalised identity, so the same identity always finds
        the same customer without a read model; a merged one answers with its survivor.
        `name` (the channel's display name) defaults to the identity's value.
        """
        identity = normal_identity(kind, value)
        customer_id = identity_customer_id(tenant_id, *identity)
        if customer_id in self.repository:
            return self.resolve(tenant_id, customer_id)
        # `_create` is eventsourcing's constructor that takes a given id; calling the class
        # would make one up (uuid4).
        customer = Customer._create(
            Customer.Registered,
            id=customer_id,
            tenant_id=tenant_id,
            name=clean_name(name or identity[1], "a customer's name", 200, InvalidCustomer),
            identities=[identity],
        )
        self.save(customer)
        return customer_id

    def rename(self, tenant_id: str, customer_id: UUID, name: str) -> None:
        self.change(tenant_id, customer_id, Customer, lambda c: c.rename(name))

    def add_identity(self, tenant_id: str, customer_id: UUID, kind: str, value: str) -> None:
        self.change(tenant_id, customer_id, Customer, lambda c: c.add_identity(kind, value))

    def remove_identity(self, tenant_id: str, customer_id: UUID, kind: str, value: str) -> None:
        self.change(tenant_id, customer_id, Customer, lambda c: c.remove_identity(kind, value))

    def update_profile(
        self, tenant_id: str, customer_id: UUID, changes: Mapping[str, str | None]
    ) -> None:
        self.change(tenant_id, customer_id, Customer, lambda c: c.update_profile(changes))

    def set_attributes(
        self, tenant_id: str, customer_id: UUID, changes: Mapping[str, str | None]
    ) -> None:
        self.change(tenant_id, customer_id, Customer, lambda c: c.set_attributes(changes))

    def merge(self, tenant_id: str, source_id: UUID, target_id: UUID) -> UUID:
        """Merge source into target (CT11) in one atomic save; returns the survivor's id."""
        if source_id == target_id:
            raise InvalidMerge("a customer cannot be merged into itself")
        source = self.get_owned(tenant_id, source_id, Customer)
        target = self.get_owned(tenant_id, target_id, Customer)
        if target.merged_into is not None:
            target = self.get_owned(tenant_id, target.merged_into, Customer)
        if source.merged_into is not None:
            if source.merged_into == target.id:
                return target.id  # asked again: already one customer
            raise CustomerMerged(source.id, source.merged_into)
        if target.id == source.id:
            return source.id  # the target had been merged into the source: already one
        absorbed = [self.get_owned(tenant_id, i, Customer) for i in source.merged_from]
        target.absorb(source)
        source.merge_into(target.id)
        for earlier in absorbed:
            earlier.redirect(target.id, via_id=source.id)
        self.save(source, target, *absorbed)
        return target.id

    def resolve(self, tenant_id: str, customer_id: UUID) -> UUID:
        """The id to use for this customer now: its survivor if it was merged."""
        customer = self.get_owned(tenant_id, customer_id, Customer)
        return customer.merged_into or customer.id

    def get(self, tenant_id: str, customer_id: UUID) -> dict[str, object]:
        customer = self.get_owned(tenant_id, customer_id, Customer)
        return {
            "id": str(customer.id),
            "tenant_id": customer.tenant_id,
            "name": customer.name,
            "identities": [list(i) for i in customer.identities],
            **customer.profile(),
            "attributes": dict(customer.attributes),
            "merged_into": str_or_none(customer.merged_into),
            "merged_from": [str(i) for i in customer.merged_from],
            "version": customer.version,
        }
