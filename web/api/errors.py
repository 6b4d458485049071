"""How domain errors and bad input become HTTP answers: 4xx with a message, never 5xx."""

from __future__ import annotations

from eventsourcing.persistence import IntegrityError
from litestar import Request, Response
from litestar.exceptions import ValidationException

from domain.base import DomainError, NotFound
from eventstore.layout import InvalidTenantError, tenant_token


def tenant_path(tenant_id: str) -> str:
    try:
        return tenant_token(tenant_id)
    except InvalidTenantError as e:
        raise ValidationException(str(e)) from None


def domain_error(_: Request, exc: Exception) -> Response[dict[str, object]]:
    status = 404 if isinstance(exc, NotFound) else 422
    return Response({"status_code": status, "detail": str(exc)}, status_code=status)


def conflict(_: Request, exc: Exception) -> Response[dict[str, object]]:
    # Another writer changed the same aggregate first: the client may reload and retry.
    return Response({"status_code": 409, "detail": str(exc)}, status_code=409)


exception_handlers = {DomainError: domain_error, IntegrityError: conflict}
