"""Finding one of the tenant's things from an id a browser sent: the pages' shared door."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from domain.asyncapp import AsyncRunner
from domain.base import NotFound
from web.pages.auth import home_url


def own_page(tenant_id: str, back: str) -> str | None:
    """`back` (a form's or a link's way back) if it is one of this tenant's pages; None
    for anything else — another tenant's, another site's (`//host`), or not a path."""
    own = home_url(tenant_id)
    return back if back.startswith(own) and "//" not in back else None


def is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


async def owned(
    runner: AsyncRunner, get: Callable[[str, UUID], dict[str, Any]], tenant_id: str, raw_id: str
) -> dict[str, Any] | None:
    """`get(tenant_id, id)` on the domain's worker threads; None for a malformed id or one
    the tenant has not (another tenant's is "not found" alike: its existence is not told)."""
    if not is_uuid(raw_id):
        return None
    try:
        return await runner(get, tenant_id, UUID(raw_id))
    except NotFound:
        return None
