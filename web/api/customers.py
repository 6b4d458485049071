"""Customers API: register and rename through the domain; read from the read model.

Writes go to the domain application on a worker thread (domain.asyncapp); reads come from
the customers read model, which follows the event store, so a customer registered a
moment ago appears there within the projection's lag. The list is by name, at most
`limit` (1 to 500) customers, or those matching a search `q` (name, phone, email, other
identity: projections.customers).
"""

from __future__ import annotations

from typing import Annotated, Protocol
from uuid import UUID

import msgspec
from litestar import Router, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.params import QueryParameter

from domain.asyncapp import AsyncRunner
from domain.customers import Customers
from projections.customers import CustomersReadModel
from web.api.errors import READ_ERRORS, WRITE_ERRORS, exception_handlers, tenant_path
from web.api.params import Limit, typed

# As the customers page has it: a search is a name, a number or an address.
MAX_QUERY = 200


class CustomersContext(Protocol):
    runner: AsyncRunner
    customers_read: CustomersReadModel

    @property
    def customers(self) -> Customers: ...


class Identity(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    value: str


class NewCustomer(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    identities: list[Identity] = []


class CustomerPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class Created(msgspec.Struct):
    id: UUID


class Customer(msgspec.Struct):
    """A customer as the read model has them: `identities` are [kind, value] pairs."""

    id: str
    tenant_id: str
    name: str
    identities: list[list[str]]
    version: int
    updated_at: str


def customers_router(ctx: CustomersContext) -> Router:
    @post("/", status_code=201, responses=WRITE_ERRORS)
    async def register(tenant_id: str, data: NewCustomer) -> Created:
        tenant = tenant_path(tenant_id)
        cid = await ctx.runner(
            ctx.customers.register, tenant, data.name, [(i.kind, i.value) for i in data.identities]
        )
        return Created(id=cid)

    @patch("/{customer_id:uuid}", responses=WRITE_ERRORS)
    async def rename(tenant_id: str, customer_id: UUID, data: CustomerPatch) -> None:
        await ctx.runner(ctx.customers.rename, tenant_path(tenant_id), customer_id, data.name)

    @get("/", responses=READ_ERRORS)
    async def list_customers(
        tenant_id: str,
        q: Annotated[str | None, QueryParameter(max_length=MAX_QUERY)] = None,
        limit: Limit = 100,
    ) -> list[Customer]:
        """The tenant's customers by name (at most `limit`); with `q`, those whose name,
        phone, email or other identity matches it."""
        tenant = tenant_path(tenant_id)
        if q is not None and q.strip():
            return typed(ctx.customers_read.search(tenant, q, limit=limit), list[Customer])
        return typed(ctx.customers_read.list(tenant, limit=limit), list[Customer])

    @get("/{customer_id:uuid}", responses=READ_ERRORS)
    async def show(tenant_id: str, customer_id: UUID) -> Customer:
        found = ctx.customers_read.get(tenant_path(tenant_id), str(customer_id))
        if found is None:
            raise NotFoundException(f"customer {customer_id} not found")
        return typed(found, Customer)

    return Router(
        path="/api/v1/tenants/{tenant_id:str}/customers",
        route_handlers=[register, rename, list_customers, show],
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        tags=["customers"],
    )
