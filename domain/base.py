"""What every tenant-owned aggregate and application shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recording


class DomainError(Exception):
    """A command refused by the domain; mapped once to HTTP 4xx or an error event."""


class NotFound(DomainError):
    """No such aggregate for this tenant (another tenant's id is not found either)."""


class CrossTenantSave(DomainError):
    """One save held aggregates of several tenants: a bug, never a user's doing."""


class TenantAggregate(Aggregate):
    """An aggregate that belongs to exactly one tenant for its whole life."""

    tenant_id: str


A = TypeVar("A", bound=TenantAggregate)
# Attempts of a command that lost an optimistic-concurrency race to another writer.
CONFLICT_RETRIES = 3
R = TypeVar("R")


class TenantApplication(Application[UUID]):
    """Saves each aggregate's events under its tenant's subjects in the event store.

    The tenant is taken from the aggregates themselves, never from the caller, so an
    aggregate cannot be appended to under another tenant by mistake.
    """

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        tenants = {o.tenant_id for o in objs if isinstance(o, TenantAggregate)}
        if len(tenants) > 1:
            raise CrossTenantSave(f"one save may not span tenants {sorted(tenants)}")
        if tenants:
            kwargs["tenant_id"] = tenants.pop()
        return super().save(*objs, **kwargs)

    def get_owned(self, tenant_id: str, aggregate_id: UUID, cls: type[A]) -> A:
        """Load an aggregate, as NotFound unless it is of this type and this tenant."""
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"{cls.__name__} {aggregate_id} not found") from None
        if not isinstance(aggregate, cls) or aggregate.tenant_id != tenant_id:
            raise NotFound(f"{cls.__name__} {aggregate_id} not found")
        return aggregate

    def change(
        self, tenant_id: str, aggregate_id: UUID, cls: type[A], command: Callable[[A], R]
    ) -> R:
        """Load an owned aggregate, run one command on it and save what it recorded.

        Most application verbs are this and nothing else; the command's result (an
        attempt number, a summary) is returned to the caller.
        """
        for attempt in range(1, CONFLICT_RETRIES + 1):
            aggregate = self.get_owned(tenant_id, aggregate_id, cls)
            result = command(aggregate)
            # Idempotent commands often record nothing (a repeated fact): nothing to append.
            if not aggregate.pending_events:
                return result
            try:
                self.save(aggregate)
            except IntegrityError:
                # Another writer saved first: decide again on what it left (the command
                # may now be refused, or be a no-op).
                if attempt == CONFLICT_RETRIES:
                    raise
                continue
            return result
        raise AssertionError("unreachable")

    def record(
        self, tenant_id: str, aggregate_id: UUID, cls: type[A], command: Callable[[A], object]
    ) -> bool:
        """`change`, saying whether the command recorded anything (False: a repeat).

        What fact handlers use to tell an applied fact from a duplicate without loading
        the aggregate again before and after.
        """
        recorded = False

        def run(aggregate: A) -> None:
            nonlocal recorded
            command(aggregate)
            recorded = bool(aggregate.pending_events)

        self.change(tenant_id, aggregate_id, cls, run)
        return recorded
