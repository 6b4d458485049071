"""The reply templates read model (CT13): each tenant's canned replies, by channel.

One row per template from the "reply_templates" stream: name, the channels it is offered
on, language, body, and whether it was archived. The inbox offers an agent the tenant's
templates for the conversation's channel, archived ones left out, by name.

Live-update kind (`changed`): "template" (key: template id) for every change of one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec

from domain.templates import ReplyTemplate
from projections.readmodel import SqliteReadModel
from projections.sql import change_row, dump, iso

# Template ids are unique across tenants and later events carry only the id: the id
# alone is the key. Every query still names the tenant, so no row crosses the wall.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS templates (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        channels TEXT NOT NULL,
        language TEXT NOT NULL,
        body TEXT NOT NULL,
        archived INTEGER NOT NULL,
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS templates_by_tenant ON templates (tenant_id, archived)",
)


class TemplatesReadModel(SqliteReadModel):
    """Each tenant's reply templates, to offer per channel."""

    name = "templates"
    upstreams = ("reply_templates",)
    schema = _SCHEMA

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        kind = type(event)
        if kind is ReplyTemplate.Created:
            tid = str(event.originator_id)
            db.execute(
                "INSERT INTO templates VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    tid,
                    event.tenant_id,
                    event.name,
                    dump(sorted(event.channels)),
                    str(event.language),
                    event.body,
                    event.originator_version,
                    iso(event.timestamp),
                ),
            )
            self.changed(event.tenant_id, "template", tid)
        elif kind in _CHANGES:
            change = _CHANGES[kind]
            done = change_row(
                db, "templates", event, lambda row: change(event), iso(event.timestamp)
            )
            if done is not None:
                self.changed(done[0]["tenant_id"], "template", str(event.originator_id))

    # ------------------------------------------------------------------ queries
    def get(self, tenant_id: str, template_id: str | UUID) -> dict[str, Any] | None:
        row = (
            self.connect()
            .execute(
                "SELECT * FROM templates WHERE tenant_id = ? AND id = ?",
                (tenant_id, str(template_id)),
            )
            .fetchone()
        )
        return _template(row) if row else None

    def for_channel(self, tenant_id: str, channel: str) -> list[dict[str, Any]]:
        """The tenant's templates offered on `channel`, archived ones left out, by name
        (as people read names: case aside, then by id for a stable order)."""
        rows = self.connect().execute(
            "SELECT * FROM templates WHERE tenant_id = ? AND archived = 0 "
            "AND EXISTS (SELECT 1 FROM json_each(templates.channels) WHERE value = ?)",
            (tenant_id, channel),
        )
        found = [_template(r) for r in rows]
        return sorted(found, key=lambda t: (t["name"].casefold(), t["id"]))


_CHANGES: dict[type, Callable[[Any], dict[str, Any]]] = {
    ReplyTemplate.Renamed: lambda e: {"name": e.name},
    ReplyTemplate.ChannelsChanged: lambda e: {"channels": dump(sorted(e.channels))},
    ReplyTemplate.LanguageChanged: lambda e: {"language": str(e.language)},
    ReplyTemplate.Rewritten: lambda e: {"body": e.body},
    ReplyTemplate.Archived: lambda e: {"archived": 1},
}


def _template(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "name": row["name"],
        "channels": msgspec.json.decode(row["channels"], type=list[str]),
        "language": row["language"],
        "body": row["body"],
        "archived": bool(row["archived"]),
        "version": row["version"],
        "updated_at": row["updated_at"],
    }
