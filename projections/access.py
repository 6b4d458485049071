"""Who may call the API: each tenant's API keys, as the HTTP layer checks them.

| table | from | what |
|---|---|---|
| `api_keys` | tenants | each key's tenant, name, the SHA-256 of its secret, when it was issued and revoked |
| `tenant_ids` | tenants | a tenant's slug by its aggregate id (later events carry only the id) |

A key is `cc.<key id>.<secret>` (domain.tenants.Tenants.issue_api_key); `authenticate`
finds the key by its id and compares the secret's hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from typing import Any

from domain.tenants import API_KEY_PREFIX, Tenant
from projections.readmodel import SqliteReadModel
from projections.sql import iso


class AccessReadModel(SqliteReadModel):
    name = "access"
    upstreams = ("tenants",)
    schema = (
        "CREATE TABLE IF NOT EXISTS tenant_ids (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS api_keys (
            key_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL, issued_at TEXT NOT NULL, revoked_at TEXT
        )""",
    )

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        if isinstance(event, Tenant.Registered):
            db.execute(
                "INSERT OR IGNORE INTO tenant_ids VALUES (?, ?)",
                (str(event.originator_id), event.tenant_id),
            )
        elif isinstance(event, Tenant.ApiKeyIssued):
            row = db.execute(
                "SELECT tenant_id FROM tenant_ids WHERE id = ?", (str(event.originator_id),)
            ).fetchone()
            if row is not None:
                db.execute(
                    "INSERT OR IGNORE INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                    (event.key_id, row[0], event.name, event.secret_sha256, iso(event.timestamp)),
                )
        elif isinstance(event, Tenant.ApiKeyRevoked):
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ?",
                (iso(event.timestamp), event.key_id),
            )

    def authenticate(self, token: str) -> str | None:
        """The tenant a key belongs to; None for anything else (malformed, unknown,
        revoked, wrong secret) — the caller does not learn which."""
        prefix, _, rest = token.strip().partition(".")
        key_id, _, secret = rest.partition(".")
        if prefix != API_KEY_PREFIX or not key_id or not secret:
            return None
        row = (
            self.connect()
            .execute(
                "SELECT tenant_id, secret_sha256 FROM api_keys "
                "WHERE key_id = ? AND revoked_at IS NULL",
                (key_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        return str(row[0]) if hmac.compare_digest(digest, row[1]) else None

    def keys(self, tenant_id: str) -> list[dict[str, Any]]:
        """A tenant's keys, newest first, without their hashes."""
        rows = self.connect().execute(
            "SELECT key_id, name, issued_at, revoked_at FROM api_keys WHERE tenant_id = ? "
            "ORDER BY issued_at DESC, key_id",
            (tenant_id,),
        )
        return [dict(r) for r in rows]
