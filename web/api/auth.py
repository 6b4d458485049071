"""The API's door: every request under `/api/v1/tenants/<tenant>/` carries one of that
tenant's API keys, as `Authorization: Bearer cc.<key id>.<secret>`.

No key, or one that is malformed, unknown or revoked: 401. A valid key of another tenant:
403 — a key opens its own tenant and nothing else, whatever the path says.
"""

from __future__ import annotations

from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme

SCHEME = "tenantApiKey"
# For Litestar's OpenAPI document: every API operation names this scheme.
SECURITY: list[SecurityRequirement] = [{SCHEME: []}]
COMPONENTS = Components(
    security_schemes={
        SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="cc.<key id>.<secret>",
            description="A tenant's API key (`cloudcc apikey issue <tenant>`).",
        )
    }
)


class KeyChecker(Protocol):
    def authenticate(self, token: str) -> str | None: ...


def api_key_guard(access: KeyChecker) -> Any:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        header = connection.headers.get("authorization", "")
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
