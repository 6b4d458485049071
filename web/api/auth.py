"""The API's door: every request under `/api/v1/tenants/<tenant>/` carries one of that
tenant's API keys, as `Authorization: Bearer cc.<key id>.<secret>`.

No key, or one that is malformed, unknown or revoked: 401. A valid key of another tenant:
403 — a key opens its own tenant and nothing else, whatever the path says.

The pages' own scripts read the API with the browser's session instead (web.pages.auth):
a GET (or HEAD) without an `Authorization` header is let through for a signed-in
supervisor or tenant admin of the path's tenant — the roles whose pages show the whole
tenant; an agent's session opens only the agent's own inbox pages, so it gets a 403
here. Writes take a key only: the session cookie is sent by the browser whatever page
asks, and the API has no CSRF check (it is exempt, being for keys), so a write made
with a cookie could be forged by another site.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    SerializationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.server_side import ServerSideSessionBackend
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme

from projections.access import Principal
from web.pages.auth import SESSION_COOKIE, SESSION_STORE

SCHEME = "tenantApiKey"
SESSION_SCHEME = "pageSession"
# For Litestar's OpenAPI document: every API operation names these schemes, either of
# which opens it (a session only for reads, by a supervisor or tenant admin).
SECURITY: list[SecurityRequirement] = [{SCHEME: []}, {SESSION_SCHEME: []}]
COMPONENTS = Components(
    security_schemes={
        SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="cc.<key id>.<secret>",
            description="A tenant's API key (`cloudcc apikey issue <tenant>`).",
        ),
        SESSION_SCHEME: SecurityScheme(
            type="apiKey",
            name="cloudcc_session",
            security_scheme_in="cookie",
            description="A signed-in page session of a supervisor or tenant admin of the "
            "tenant: GET requests only (what the pages' own scripts use).",
        ),
    }
)


# Who may read the API with a page session: those whose pages show the whole tenant.
SESSION_ROLES = frozenset({"supervisor", "tenant_admin"})
# Reads only: a session is never enough to write (see the module's docstring).
SESSION_METHODS = frozenset({"GET", "HEAD"})
_SESSION_ID = re.compile(r"[0-9a-f]{16,128}")


class KeyChecker(Protocol):
    def authenticate(self, token: str) -> str | None: ...

    def user(self, user_id: str) -> Principal | None: ...


def api_key_guard(access: KeyChecker) -> Any:
    async def guard(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        header = connection.headers.get("authorization", "")
        reading = isinstance(connection, Request) and connection.method in SESSION_METHODS
        if not header and reading:
            principal = await _session_user(connection, access)
            if principal is not None:
                _check_session(connection, principal)
                return
        scheme, _, token = header.partition(" ")
        tenant = access.authenticate(token) if scheme.lower() == "bearer" else None
        if tenant is None:
            raise NotAuthorizedException(
                "an API key is needed: Authorization: Bearer cc.<key id>.<secret>",
                headers={"WWW-Authenticate": 'Bearer realm="cloudcc"'},
            )
        wanted = connection.path_params.get("tenant_id")
        if wanted is not None and wanted != tenant:
            raise PermissionDeniedException(f"this key is not a key of tenant {wanted!r}")

    return guard


def _check_session(connection: ASGIConnection[Any, Any, Any, Any], principal: Principal) -> None:
    wanted = connection.path_params.get("tenant_id")
    if wanted is not None and wanted != principal.tenant_id:
        raise PermissionDeniedException(
            f"you are signed in to {principal.tenant_id}, not {wanted!r}"
        )
    if principal.role not in SESSION_ROLES:
        raise PermissionDeniedException(
            "with a session, the API is for supervisors and tenant admins; "
            "otherwise it takes an API key: Authorization: Bearer cc.<key id>.<secret>"
        )


async def _session_user(
    connection: ASGIConnection[Any, Any, Any, Any], access: KeyChecker
) -> Principal | None:
    """The active user of the request's page session, or None.

    The session middleware leaves the API alone (web.pages.auth `NOT_PAGES`: no session
    is made or renewed by an API call), so the session is read from its store here, as
    that middleware would, and checked as the pages' guard checks it.
    """
    session_id = connection.cookies.get(SESSION_COOKIE)
    # The pages make session ids of hex digits (web.pages.auth): anything else is no
    # session, and never reaches the store as a file name.
    if session_id is None or not _SESSION_ID.fullmatch(session_id):
        return None
    try:
        store = connection.app.stores.get(SESSION_STORE)
        data = await store.get(session_id)
        session = ServerSideSessionBackend.deserialize_data(data) if data else None
    except (ValueError, OSError, msgspec.DecodeError, SerializationException):
        # A forged or garbled cookie (a file name that cannot be), or a broken file.
        return None
    if not isinstance(session, dict):
        return None
    user_id = session.get("user_id")
    principal = access.user(user_id) if isinstance(user_id, str) else None
    if principal is None or principal.tenant_id != session.get("tenant_id"):
        return None
    return principal
