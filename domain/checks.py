"""The checks every aggregate puts a command's values through, and how views show them.

Each check raises the caller's own error (`error`, a DomainError subclass such as
InvalidQueue or InvalidTicket), so a refusal still names the aggregate that refused it
and the web layer maps it once, as every DomainError. `what` names the value for the
message, with its article: "a queue name", "an attachment url".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from domain.base import DomainError

E = TypeVar("E", bound=StrEnum)


def checked_text(
    value: str | None,
    what: str,
    limit: int,
    error: type[DomainError],
    *,
    required: bool = True,
) -> str:
    """`value` stripped, refused when empty (if required) or over `limit` characters."""
    value = (value or "").strip()
    if required and not value:
        raise error(f"{what} cannot be empty")
    if len(value) > limit:
        raise error(f"{what} is at most {limit} characters")
    return value


def optional_text(value: str | None, what: str, limit: int, error: type[DomainError]) -> str | None:
    """`value` stripped, or None when it is None or blank; refused over `limit`."""
    return checked_text(value, what, limit, error, required=False) or None


def clean_name(value: str, what: str, limit: int, error: type[DomainError]) -> str:
    """A human-entered name with its whitespace collapsed, 1 to `limit` characters."""
    if not isinstance(value, str):
        raise error(f"{what} must be text")
    cleaned = " ".join(value.split())
    if not cleaned or len(cleaned) > limit:
        raise error(f"{what} must be 1 to {limit} characters")
    return cleaned


def checked_enum(cls: type[E], value: E | str, error: type[DomainError]) -> E:
    """`value` as a member of `cls`, refused naming the allowed values."""
    try:
        return cls(value)
    except ValueError:
        raise error(f"{cls.__name__} is one of {[str(m) for m in cls]}, not {value!r}") from None


def enum_values(cls: type[E], values: Iterable[E | str], error: type[DomainError]) -> list[str]:
    """The distinct members of `cls` among `values`, as sorted plain values (for an event)."""
    return sorted({checked_enum(cls, v, error).value for v in values})


def aware(at: datetime, error: type[DomainError]) -> datetime:
    """`at`, refused when naive: naive times cannot be compared with the aware ones facts
    carry, so they are refused at the door."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise error("times must be timezone-aware")
    return at


def str_or_none(value: object | None) -> str | None:
    """An optional id or enum member as a plain dict shows it."""
    return None if value is None else str(value)


def iso_or_none(at: datetime | None) -> str | None:
    """An optional time as a plain dict shows it."""
    return None if at is None else at.isoformat()
