"""Customers (CC8, CT11): a person who contacts a tenant, with the identities they use.

Step 1 carries the part the thin end-to-end path needs: register, rename, add an
identity. Merging (CT11) and the full profile arrive with the domain step.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import event

from domain.base import DomainError, TenantAggregate, TenantApplication

IDENTITY_KINDS = frozenset({"phone", "email", "facebook", "chat"})


class InvalidCustomer(DomainError):
    """A customer command with values the domain does not accept."""


class Customer(TenantAggregate):
    """A tenant's customer and every identity they reach the tenant with."""

    class Registered(TenantAggregate.Created):
        tenant_id: str
        name: str
        identities: list[tuple[str, str]]

    class Renamed(TenantAggregate.Event):
        name: str

    class IdentityAdded(TenantAggregate.Event):
        kind: str
        value: str

    @event(Registered)
    def __init__(self, tenant_id: str, name: str, identities: list[tuple[str, str]]) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.identities = list(identities)

    @event(Renamed)
    def _rename(self, name: str) -> None:
        self.name = name

    @event(IdentityAdded)
    def _add_identity(self, kind: str, value: str) -> None:
        self.identities.append((kind, value))

    def rename(self, name: str) -> None:
        name = _valid_name(name)
        if name != self.name:
            self._rename(name)

    def add_identity(self, kind: str, value: str) -> None:
        identity = _valid_identity(kind, value)
        if identity not in self.identities:
            self._add_identity(*identity)


def _valid_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise InvalidCustomer("a customer needs a name")
    if len(name) > 200:
        raise InvalidCustomer("a customer's name is at most 200 characters")
    return name


def _valid_identity(kind: str, value: str) -> tuple[str, str]:
    if kind not in IDENTITY_KINDS:
        raise InvalidCustomer(f"identity kind must be one of {sorted(IDENTITY_KINDS)}")
    value = value.strip()
    if not value or len(value) > 320:
        raise InvalidCustomer(f"a {kind} identity needs a value of 1 to 320 characters")
    return kind, value.lower() if kind == "email" else value


class Customers(TenantApplication):
    """The customer verbs; returns ids and plain dicts, never aggregates."""

    name = "customers"

    def register(
        self,
        tenant_id: str,
        name: str,
        identities: list[tuple[str, str]] = (),  # type: ignore[assignment]
    ) -> UUID:
        checked = list(dict.fromkeys(_valid_identity(k, v) for k, v in identities))
        customer = Customer(tenant_id=tenant_id, name=_valid_name(name), identities=checked)
        self.save(customer)
        return customer.id

    def rename(self, tenant_id: str, customer_id: UUID, name: str) -> None:
        customer: Customer = self.get_owned(tenant_id, customer_id, Customer)
        customer.rename(name)
        self.save(customer)

    def add_identity(self, tenant_id: str, customer_id: UUID, kind: str, value: str) -> None:
        customer: Customer = self.get_owned(tenant_id, customer_id, Customer)
        customer.add_identity(kind, value)
        self.save(customer)

    def get(self, tenant_id: str, customer_id: UUID) -> dict[str, object]:
        customer: Customer = self.get_owned(tenant_id, customer_id, Customer)
        return {
            "id": str(customer.id),
            "tenant_id": customer.tenant_id,
            "name": customer.name,
            "identities": [list(i) for i in customer.identities],
            "version": customer.version,
        }
