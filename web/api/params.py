"""What every API list shares: paging bounds, and query values read strictly.

Paging is by offset: `limit` (1 to `MAX_PAGE`) and `offset` (bounded, since SQLite takes
64-bit integers only and a larger one would fail as a 500); a page says `next_offset`, or
null on the last page. Each list asks its read model for one row more than the limit, to
know whether there is a next page without counting them all.

Anything malformed in a query is the client's mistake: a 400 that says which value and
why, never an empty list that looks like "nothing there".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import QueryParameter

MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000
# The times a query may name: anything a contact center's records can be about.
MIN_YEAR, MAX_YEAR = 1900, 2999

# "from" is a keyword: the parameter has another name in Python.
Since = Annotated[str | None, QueryParameter(name="from")]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description="items per page")]
Offset = Annotated[
    int, QueryParameter(ge=0, le=MAX_OFFSET, description="items to skip (`next_offset`)")
]

T = TypeVar("T")


def page(rows: list[dict[str, Any]], limit: int, offset: int) -> dict[str, Any]:
    """One page of `rows` (fetched with `limit + 1`)."""
    more = len(rows) > limit
    return {
        "items": rows[:limit],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
    }


def typed(value: Any, kind: type[T]) -> T:
    """A read model's plain dict as the API's struct (what the OpenAPI document shows)."""
    return msgspec.convert(value, type=kind)


def choices(name: str, value: str | None, allowed: tuple[str, ...]) -> list[str] | None:
    """One value or several, comma-separated, each one of `allowed`; None for any."""
    if value is None or not value.strip():
        return None
    # Each once: a value repeated thousands of times must not become thousands of SQL
    # parameters (past SQLite's limit, a 500).
    chosen = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    wrong = [v for v in chosen if v not in allowed]
    if wrong:
        raise ValidationException(f"{name}: {', '.join(wrong)} not one of {', '.join(allowed)}")
    return chosen


def uuid_query(name: str, value: str | None) -> UUID | None:
    if value is None or not value.strip():
        return None
    try:
        return UUID(value.strip())
    except ValueError:
        raise ValidationException(f"{name}: {value!r} is not an id (a UUID)") from None


def path_id(what: str, value: str) -> UUID:
    """An id in the path: one that is not a UUID names nothing of this tenant's, a 404."""
    try:
        return UUID(value)
    except ValueError:
        raise NotFoundException(f"{what} {value[:100]} not found") from None


def flag(name: str, value: str | None) -> bool | None:
    if value is None or not value.strip():
        return None
    text = value.strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValidationException(f"{name}: {value!r} is not true or false")


def time(name: str, value: str | None) -> datetime | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    # An unencoded "+" in a query string arrives as a space: "09:00:00 07:00".
    head, _, offset = text.rpartition(" ")
    candidates = (text, f"{head}+{offset}") if head else (text,)
    for candidate in candidates:
        try:
            at = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if at.tzinfo is None:
            # Which day a call falls in depends on the zone; guessing one would bill wrongly.
            raise ValidationException(
                f"{name}: {value!r} has no time zone; add one, e.g. +07:00 or Z"
            )
        # Bounded: year 1 or 9999 in another zone is no datetime in UTC, and a period
        # reaching past them could not be computed (a 500, not the client's answer).
        try:
            year = at.astimezone(UTC).year
        except OverflowError:
            year = 0
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise ValidationException(f"{name}: {value!r} is not in {MIN_YEAR} to {MAX_YEAR}")
        return at
    raise ValidationException(
        f"{name}: {value!r} is not an ISO 8601 time, e.g. 2025-03-03T09:00:00+07:00"
    )


def period(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start, end = time("from", since), time("to", until)
    if start is not None and end is not None and start >= end:
        raise ValidationException("from must be before to")
    return start, end
