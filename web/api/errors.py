"""How domain errors and bad input become HTTP answers: 4xx with a message, never 5xx."""

from __future__ import annotations

from typing import Any

import msgspec
from eventsourcing.persistence import IntegrityError
from litestar import Request, Response
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec

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


def too_deep(_: Request, exc: Exception) -> Response[dict[str, object]]:
    # msgspec refuses JSON nested past its depth limit with a RecursionError, which
    # Litestar does not take for a bad body (it does for a DecodeError).
    if "deserializing" not in str(exc):
        raise exc  # a real fault of ours: the app answers 500 and logs it
    detail = "the JSON body is nested too deeply"
    return Response({"status_code": 400, "detail": detail}, status_code=400)


exception_handlers = {
    DomainError: domain_error,
    IntegrityError: conflict,
    RecursionError: too_deep,
}


class ErrorBody(msgspec.Struct):
    """What every refusal carries: the status again and why (`extra`: which fields)."""

    status_code: int
    detail: str
    extra: Any = None


def _spec(why: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=why)


# For the OpenAPI document: the refusals every operation may answer (Litestar adds 400).
READ_ERRORS: dict[int, ResponseSpec] = {
    401: _spec("No API key (or page session), or one that is not valid"),
    403: _spec("A key or session of another tenant"),
    404: _spec("Nothing of this tenant's has that id"),
}
WRITE_ERRORS: dict[int, ResponseSpec] = {
    **READ_ERRORS,
    409: _spec("Someone changed it at the same moment: reload and retry"),
    422: _spec("The domain refused it; `detail` says why"),
}
