"""The customers read model: what agents search and open (CC8), per tenant.

A merged customer (CT11) leaves the list: its row is dropped, its identities are already
on the target's row (`Absorbed`), and `customer_merges` says where it went so that a
link to it can be followed to the survivor.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import msgspec

from domain.customers import Customer
from projections.readmodel import SqliteReadModel

# msgspec over the stdlib: a rebuild encodes identities once per event.
_json = msgspec.json.Encoder()


class CustomersReadModel(SqliteReadModel):
    """One row per live customer, keyed by tenant; identities as JSON."""

    name = "customers"
    upstreams = ("customers",)
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
        """CREATE TABLE IF NOT EXISTS customer_merges (
            tenant_id TEXT NOT NULL,
            id TEXT NOT NULL,
            merged_into TEXT NOT NULL,
            PRIMARY KEY (tenant_id, id)
        )""",
        # Later events name the customer by id alone (ids are unique across tenants):
        # without these every update scans the table, and a rebuild goes quadratic.
        "CREATE INDEX IF NOT EXISTS customers_by_id ON customers (id)",
        "CREATE INDEX IF NOT EXISTS customer_merges_by_id ON customer_merges (id)",
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
                    _json.encode([list(i) for i in event.identities]).decode(),
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
            self._set_identities(db, event, lambda ids: ids + [[event.kind, event.value]])
        elif isinstance(event, Customer.IdentityRemoved):
            self._set_identities(
                db, event, lambda ids: [i for i in ids if i != [event.kind, event.value]]
            )
        elif isinstance(event, Customer.Absorbed):
            self._set_identities(
                db,
                event,
                lambda ids: ids + [list(i) for i in event.identities if list(i) not in ids],
            )
        elif isinstance(event, Customer.MergedInto | Customer.Redirected):
            tenant = db.execute("SELECT tenant_id FROM customers WHERE id = ?", (cid,)).fetchone()
            db.execute("DELETE FROM customers WHERE id = ?", (cid,))
            if tenant is not None:
                db.execute(
                    "INSERT INTO customer_merges VALUES (?, ?, ?)",
                    (tenant[0], cid, str(event.target_id)),
                )
            else:
                db.execute(
                    "UPDATE customer_merges SET merged_into = ? WHERE id = ?",
                    (str(event.target_id), cid),
                )
        elif isinstance(event, Customer.Event):
            # Profile changes are not shown here yet; the row still follows the version.
            db.execute(
                "UPDATE customers SET version = ?, updated_at = ? WHERE id = ?",
                (event.originator_version, event.timestamp.isoformat(), cid),
            )

    @staticmethod
    def _set_identities(
        db: sqlite3.Connection, event: Any, change: Callable[[list[Any]], list[Any]]
    ) -> None:
        cid = str(event.originator_id)
        row = db.execute("SELECT identities FROM customers WHERE id = ?", (cid,)).fetchone()
        db.execute(
            "UPDATE customers SET identities = ?, version = ?, updated_at = ? WHERE id = ?",
            (
                _json.encode(change(msgspec.json.decode(row[0]))).decode(),
                event.originator_version,
                event.timestamp.isoformat(),
                cid,
            ),
        )

    def merged_into(self, tenant_id: str, customer_id: str) -> str | None:
        """The survivor a merged customer's id leads to, or None if it was not merged."""
        row = (
            self.connect()
            .execute(
                "SELECT merged_into FROM customer_merges WHERE tenant_id = ? AND id = ?",
                (tenant_id, customer_id),
            )
            .fetchone()
        )
        return row[0] if row else None

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
        "identities": msgspec.json.decode(row["identities"]),
        "version": row["version"],
        "updated_at": row["updated_at"],
    }
