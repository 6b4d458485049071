"""The customers read model: what agents search and open (CC8), per tenant."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from domain.customers import Customer
from projections.readmodel import SqliteReadModel


class CustomersReadModel(SqliteReadModel):
    """One row per customer, keyed by tenant; identities as JSON."""

    name = "customers"
    schema = (
        """CREATE TABLE IF NOT EXISTS customers (
            tenant_id TEXT NOT NULL,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            identities TEXT NOT NULL,
            version INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (tenant_id, id)
        )""",
    )

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        cid = str(event.originator_id)
        at = event.timestamp.isoformat()
        if isinstance(event, Customer.Registered):
            db.execute(
                "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)",
                (
                    event.tenant_id,
                    cid,
                    event.name,
                    json.dumps([list(i) for i in event.identities]),
                    event.originator_version,
                    at,
                ),
            )
        elif isinstance(event, Customer.Renamed):
            db.execute(
                "UPDATE customers SET name = ?, version = ?, updated_at = ? WHERE id = ?",
                (event.name, event.originator_version, at, cid),
            )
        elif isinstance(event, Customer.IdentityAdded):
            row = db.execute("SELECT identities FROM customers WHERE id = ?", (cid,)).fetchone()
            identities = json.loads(row[0]) + [[event.kind, event.value]]
            db.execute(
                "UPDATE customers SET identities = ?, version = ?, updated_at = ? WHERE id = ?",
                (json.dumps(identities), event.originator_version, at, cid),
            )

    def get(self, tenant_id: str, customer_id: str) -> dict[str, Any] | None:
        row = (
            self.connect()
            .execute(
                "SELECT * FROM customers WHERE tenant_id = ? AND id = ?", (tenant_id, customer_id)
            )
            .fetchone()
        )
        return _customer(row) if row else None

    def list(self, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.connect().execute(
            "SELECT * FROM customers WHERE tenant_id = ? ORDER BY name LIMIT ?", (tenant_id, limit)
        )
        return [_customer(r) for r in rows]


def _customer(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "name": row["name"],
        "identities": json.loads(row["identities"]),
        "version": row["version"],
        "updated_at": row["updated_at"],
    }
