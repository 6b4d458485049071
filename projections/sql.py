"""Small helpers the read models share: how they keep times and JSON in columns, filters
for their list queries, and the "apply one event's change to its row" step."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec


def one_of(
    column: str, value: str | Iterable[str] | None, where: list[str], params: list[Any]
) -> None:
    """Add `column IN (...)` for one value or several; nothing for None."""
    if value is None:
        return
    values = [value] if isinstance(value, str) else [str(v) for v in value]
    where.append(f"{column} IN ({', '.join('?' * len(values))})")
    params.extend(values)


def like_escaped(text: str) -> str:
    """Text to put inside a LIKE pattern with `ESCAPE '\\'`, matched literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def change_row(
    db: sqlite3.Connection,
    table: str,
    event: Any,
    change: Callable[[sqlite3.Row], dict[str, Any]],
    updated_at: str,
) -> tuple[sqlite3.Row, dict[str, Any]] | None:
    """Apply one event to the row of its aggregate: `change` says what the event changes,
    given the row as it was, and the row is stamped with the event's version and
    `updated_at`. Returns (the row as it was, the values written), or None when there is
    no row (its creation was never recorded: nothing to attach the change to)."""
    row_id = str(event.originator_id)
    row = db.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchone()
    if row is None:
        return None
    values = change(row)
    values["version"] = event.originator_version
    values["updated_at"] = updated_at
    update_row(db, table, row_id, values)
    return row, values


def update_row(db: sqlite3.Connection, table: str, row_id: str, values: Mapping[str, Any]) -> None:
    """UPDATE one row by id. Table and column names come from the read model's own code,
    never from input, so they may be written into the statement."""
    assignments = ", ".join(f"{column} = ?" for column in values)
    db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", (*values.values(), row_id))


def iso(at: datetime) -> str:
    """A time as read models keep it: UTC, fixed width (microseconds always written), so
    that text order is time order and SQL compares and sorts times as text, whatever
    offset a fact came with."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


_encoder = msgspec.json.Encoder()


def dump(value: Any) -> str:
    """JSON text for a column. Text, not bytes: SQLite keeps bytes as a BLOB, which
    compares unequal to the same text."""
    return _encoder.encode(value).decode()
