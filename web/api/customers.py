"""Customers API: register and rename through the domain; read from the read model.

Writes go to the domain application on a worker thread (domain.asyncapp); reads come from
the customers read model, which follows the event store, so a customer registered a
moment ago appears there within the projection's lag.
"""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

import msgspec
from litestar import Router, get, patch, post
from litestar.exceptions import NotFoundException

from domain.asyncapp import AsyncRunner
from domain.customers import Customers
from projections.customers import CustomersReadModel
from web.api.errors import exception_handlers, tenant_path


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


def customers_router(ctx: CustomersContext) -> Router:
    @post("/", status_code=201)
    async def register(tenant_id: str, data: NewCustomer) -> Created:
        tenant = tenant_path(tenant_id)
        cid = await ctx.runner(
            ctx.customers.register, tenant, data.name, [(i.kind, i.value) for i in data.identities]
        )
        return Created(id=cid)

    @patch("/{customer_id:uuid}")
    async def rename(tenant_id: str, customer_id: UUID, data: CustomerPatch) -> None:
        await ctx.runner(ctx.customers.rename, tenant_path(tenant_id), customer_id, data.name)

    @get("/")
    async def list_customers(tenant_id: str) -> list[dict[str, Any]]:
        return ctx.customers_read.list(tenant_path(tenant_id))

    @get("/{customer_id:uuid}")
    async def show(tenant_id: str, customer_id: UUID) -> dict[str, Any]:
        found = ctx.customers_read.get(tenant_path(tenant_id), str(customer_id))
        if found is None:
            raise NotFoundException(f"customer {customer_id} not found")
        return found

    return Router(
        path="/api/v1/tenants/{tenant_id:str}/customers",
        route_handlers=[register, rename, list_customers, show],
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
    )
