"""Customers (CC8, CT11, CT12): find a customer by anything they are known by, open their
profile with every interaction across channels, edit it, and merge a duplicate into it.

- `GET /t/<tenant>/customers?q=` searches the customers read model (name words, phone in
  any written form or its last digits, email, Facebook or chat id, tag); without `q`,
  the tenant's customers by name. Only the tenant's customers are ever listed.
- `GET /t/<tenant>/customers/<id>` shows the customer from the domain (so an edit is
  there on the redirect after the POST): contact points, each phone with a click-to-call
  form (`POST /t/<tenant>/phone/dial`, fields `number` and `customer_id`), tags, profile,
  the timeline (CT12, merged customers' entries included), their tickets and
  conversations, and a form to raise a ticket for them. Another tenant's id is "not
  found", as an unknown one; a merged one leads to its survivor.
- `POST .../edit` saves name, phones, emails, tags, company, address and language in
  one save of the aggregate: all of it or, refused, none of it (the page again, 400).
- `POST .../merge` merges the customer named by `duplicate` into this one (domain.
  customers `merge`): the duplicate's history shows under this one from then on.

Tags are the customer's `tags` attribute (projections.customers `split_tags`), which the
read model indexes for search.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
)

from domain.apps import DomainApps
from domain.asyncapp import AsyncRunner
from domain.base import DomainError, NotFound
from domain.customers import LANGUAGES, Customer, CustomerMerged, normal_identity
from domain.tickets import TicketKind
from domain.vocabulary import Priority
from projections.access import AccessReadModel, Principal
from projections.customers import (
    MAX_TAG,
    MAX_TAGS,
    TAGS,
    CustomersReadModel,
    join_tags,
    split_tags,
)
from projections.inbox import InboxReadModel
from projections.tickets import TicketsReadModel
from projections.timeline import TimelineReadModel
from web.pages.auth import (
    PAGE_EXCEPTION_HANDLERS,
    home_url,
    page,
    principal_of,
    signed_in_guard,
)
from web.pages.owned import is_uuid, owned

# Who works with customers and tickets.
DESK_ROLES = frozenset({"agent", "supervisor", "tenant_admin"})
MAX_QUERY = 200
RESULTS_LIMIT = 50
TIMELINE_LIMIT = 50
TICKETS_LIMIT = 50
CANDIDATES_LIMIT = 10
EDITED_KINDS = ("phone", "email")


class RoleForbidden(Exception):
    """A signed-in user of the tenant whose role has no customer or ticket pages."""

    # As an HTTP error: answered by its page, logged without a traceback (web.app).
    status_code = 403


class EditForm(msgspec.Struct, kw_only=True):
    name: str = ""
    phones: str = ""
    emails: str = ""
    tags: str = ""
    company: str = ""
    address: str = ""
    language: str = ""


class MergeForm(msgspec.Struct, kw_only=True):
    duplicate: str = ""


Form = Body(media_type=RequestEncodingType.URL_ENCODED)


class Refused(Exception):
    """A form the page refuses before asking the domain: its message key and values."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key, self.values = key, values


def desk_principal(request: Request[Any, Any, Any]) -> Principal:
    principal = principal_of(request)
    if principal.role not in DESK_ROLES:
        raise RoleForbidden
    return principal


def customers_router(
    access: AccessReadModel,
    customers: CustomersReadModel,
    timeline: TimelineReadModel,
    tickets: TicketsReadModel,
    inbox: InboxReadModel,
    apps: Callable[[], DomainApps],
    runner: AsyncRunner,
) -> Router:
    def list_page(
        request: Request[Any, Any, Any],
        principal: Principal,
        status_code: int = 200,
        error: str | None = None,
        **error_values: Any,
    ) -> Template:
        tenant = principal.tenant_id
        query = (request.query_params.get("q") or "").strip()
        rows: list[dict[str, Any]] = []
        if error is None and len(query) > MAX_QUERY:
            status_code, error, error_values = (
                HTTP_400_BAD_REQUEST,
                "customers.query_too_long",
                {"limit": MAX_QUERY},
            )
        if error is None:
            rows = (
                customers.search(tenant, query, limit=RESULTS_LIMIT)
                if query
                else customers.list(tenant, limit=RESULTS_LIMIT)
            )
        return page(
            request,
            "customers.html",
            status_code,
            tenant=tenant,
            principal=principal,
            query=query,
            rows=[_contact_points(r) for r in rows],
            tags=customers.tags(tenant, [r["id"] for r in rows]),
            error=error,
            error_values=error_values,
        )

    async def load(principal: Principal, customer_id: str) -> dict[str, Any] | None:
        """The customer from the domain; None if the tenant has no such one."""
        return await owned(runner, apps().customers.get, principal.tenant_id, customer_id)

    async def profile_page(
        request: Request[Any, Any, Any],
        customer_id: str,
        status_code: int = 200,
        error: str | None = None,
        error_values: dict[str, Any] | None = None,
        form: EditForm | None = None,
        duplicate: str = "",
    ) -> Response[Any]:
        principal = desk_principal(request)
        tenant = principal.tenant_id
        customer = await load(principal, customer_id)
        if customer is None:
            return list_page(request, principal, HTTP_404_NOT_FOUND, "customers.not_found")
        if customer["merged_into"]:
            # A merged customer's page is its survivor's (one hop: the domain keeps none
            # longer).
            return Redirect(customer_url(tenant, customer["merged_into"]), status_code=303)
        cid = customer["id"]
        shown = _contact_points(customer)
        tags = split_tags(customer["attributes"].get(TAGS, ""))
        entries = timeline.for_customer(tenant, cid, limit=TIMELINE_LIMIT)
        owners = [cid, *customer["merged_from"]]
        their_tickets = tickets.list(tenant, customer_id=owners, limit=TICKETS_LIMIT)
        conversations = []
        for conversation_id in dict.fromkeys(
            e["source_id"] for e in entries if e["source"] == "conversation"
        ):
            found = inbox.get(tenant, conversation_id)
            if found is not None:
                conversations.append(found)
        if form is None:
            form = EditForm(
                name=customer["name"],
                phones="\n".join(shown["phones"]),
                emails="\n".join(shown["emails"]),
                tags=", ".join(tags),
                company=customer["company"] or "",
                address=customer["address"] or "",
                language=customer["language"] or "",
            )
        return page(
            request,
            "customer.html",
            status_code,
            tenant=tenant,
            principal=principal,
            customer=customer,
            shown=shown,
            tags=tags,
            entries=entries,
            tickets=their_tickets,
            conversations=conversations,
            candidates=_duplicates(customers, tenant, customer, shown),
            form=form,
            duplicate=duplicate,
            languages=sorted(LANGUAGES),
            # The new-ticket form's choices (web.pages.tickets takes the POST).
            kinds=[k.value for k in TicketKind],
            priorities=[p.value for p in Priority],
            error=error,
            error_values=error_values or {},
        )

    @get("/t/{tenant_id:str}/customers", include_in_schema=False)
    async def search(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        return list_page(request, desk_principal(request))

    @get("/t/{tenant_id:str}/customers/{customer_id:str}", include_in_schema=False)
    async def profile(
        request: Request[Any, Any, Any], tenant_id: str, customer_id: str
    ) -> Response[Any]:
        return await profile_page(request, customer_id)

    @post("/t/{tenant_id:str}/customers/{customer_id:str}/edit", include_in_schema=False)
    async def edit(
        request: Request[Any, Any, Any],
        tenant_id: str,
        customer_id: str,
        data: Annotated[EditForm, Form],
    ) -> Response[Any]:
        principal = desk_principal(request)
        if await load(principal, customer_id) is None:
            return list_page(request, principal, HTTP_404_NOT_FOUND, "customers.not_found")
        try:
            wanted = {kind: _identities(kind, getattr(data, kind + "s")) for kind in EDITED_KINDS}
            tags = _tags(data.tags)
            if data.language and data.language not in LANGUAGES:
                raise Refused("customers.bad_language", value=data.language)
        except Refused as e:
            return await profile_page(
                request, customer_id, HTTP_400_BAD_REQUEST, e.key, e.values, form=data
            )

        def change(customer: Customer) -> None:
            customer.rename(data.name)
            for kind, values in wanted.items():
                for held in [v for k, v in customer.identities if k == kind]:
                    if held not in values:
                        customer.remove_identity(kind, held)
                for value in values:
                    customer.add_identity(kind, value)
            customer.update_profile(
                {"company": data.company, "address": data.address, "language": data.language}
            )
            customer.set_attributes({TAGS: join_tags(tags)})

        tenant = principal.tenant_id
        try:
            # One save: every change of the form, or none of them.
            await runner(apps().customers.change, tenant, UUID(customer_id), Customer, change)
        except NotFound:
            return list_page(request, principal, HTTP_404_NOT_FOUND, "customers.not_found")
        except DomainError as e:
            code = HTTP_409_CONFLICT if isinstance(e, CustomerMerged) else HTTP_400_BAD_REQUEST
            return await profile_page(
                request, customer_id, code, "customers.refused", {"reason": str(e)}, form=data
            )
        return Redirect(customer_url(tenant, customer_id), status_code=303)

    @post("/t/{tenant_id:str}/customers/{customer_id:str}/merge", include_in_schema=False)
    async def merge(
        request: Request[Any, Any, Any],
        tenant_id: str,
        customer_id: str,
        data: Annotated[MergeForm, Form],
    ) -> Response[Any]:
        principal = desk_principal(request)
        if await load(principal, customer_id) is None:
            return list_page(request, principal, HTTP_404_NOT_FOUND, "customers.not_found")
        duplicate = data.duplicate.strip()
        refusal: tuple[int, str] | None = None
        if not is_uuid(duplicate):
            refusal = (HTTP_400_BAD_REQUEST, "customers.bad_duplicate")
        elif UUID(duplicate) == UUID(customer_id):
            refusal = (HTTP_400_BAD_REQUEST, "customers.merge_self")
        elif await load(principal, duplicate) is None:
            refusal = (HTTP_404_NOT_FOUND, "customers.duplicate_not_found")
        if refusal is not None:
            return await profile_page(
                request, customer_id, refusal[0], refusal[1], {}, duplicate=duplicate
            )
        tenant = principal.tenant_id
        try:
            survivor = await runner(
                apps().customers.merge, tenant, UUID(duplicate), UUID(customer_id)
            )
        except DomainError as e:
            return await profile_page(
                request,
                customer_id,
                HTTP_409_CONFLICT,
                "customers.refused",
                {"reason": str(e)},
                duplicate=duplicate,
            )
        return Redirect(customer_url(tenant, str(survivor)), status_code=303)

    return Router(
        path="/",
        route_handlers=[search, profile, edit, merge],
        guards=[signed_in_guard(access)],
        exception_handlers={
            **PAGE_EXCEPTION_HANDLERS,
            RoleForbidden: forbidden("customers.role_only"),
        },
    )


def _contact_points(customer: dict[str, Any]) -> dict[str, Any]:
    """The customer (a read-model row or the domain's dict) with its identities sorted
    into phones, emails and the others."""
    identities = [tuple(i) for i in customer["identities"]]
    return {
        **customer,
        "phones": [v for k, v in identities if k == "phone"],
        "emails": [v for k, v in identities if k == "email"],
        "others": [(k, v) for k, v in identities if k not in EDITED_KINDS],
    }


def _duplicates(
    customers: CustomersReadModel, tenant: str, customer: dict[str, Any], shown: dict[str, Any]
) -> list[dict[str, Any]]:
    """Other customers of the tenant that look like this one: the same name, phone or
    email. The merge form offers them first."""
    found: dict[str, dict[str, Any]] = {}
    for text in (customer["name"], *shown["phones"], *shown["emails"]):
        for row in customers.search(tenant, text, limit=CANDIDATES_LIMIT):
            if row["id"] != customer["id"]:
                found.setdefault(row["id"], row)
    return list(found.values())[:CANDIDATES_LIMIT]


def _identities(kind: str, text: str) -> list[str]:
    """One identity a line (or comma), normalised as the domain stores it."""
    values: list[str] = []
    for line in text.replace(",", "\n").splitlines():
        if not line.strip():
            continue
        try:
            _, value = normal_identity(kind, line)
        except DomainError as e:
            raise Refused("customers.bad_identity", reason=str(e)) from None
        if value not in values:
            values.append(value)
    return values


def _tags(text: str) -> list[str]:
    tags = split_tags(text)
    if len(tags) > MAX_TAGS:
        raise Refused("customers.too_many_tags", limit=MAX_TAGS)
    if any(len(tag) > MAX_TAG for tag in tags):
        raise Refused("customers.tag_too_long", limit=MAX_TAG)
    return tags


def customer_url(tenant_id: str, customer_id: str) -> str:
    return f"{home_url(tenant_id)}customers/{quote(customer_id, safe='')}"


def forbidden(message_key: str) -> Callable[[Request[Any, Any, Any], Exception], Response[Any]]:
    """The 403 page for a role refused, saying why."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        home = home_url(principal_of(request).tenant_id)
        return page(
            request, "forbidden.html", HTTP_403_FORBIDDEN, home=home, message_key=message_key
        )

    return handle
