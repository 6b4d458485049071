"""Who may come in: each tenant's API keys, and the users who sign in to the web pages.

| table | from | what |
|---|---|---|
| `api_keys` | tenants | each key's tenant, name, the SHA-256 of its secret, when it was issued and revoked |
| `tenant_ids` | tenants | a tenant's slug by its aggregate id (later events carry only the id) |
| `users` | agents | each user's tenant, login, name, role, password hash (scrypt) and whether active |

A key is `cc.<key id>.<secret>` (domain.tenants.Tenants.issue_api_key); `authenticate`
finds the key by its id and compares the secret's hash in constant time. `sign_in` checks
a user's password (domain.passwords) and `user` reloads a signed-in user on each request.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from functools import cache
from typing import Any
from uuid import UUID

import msgspec

from domain.agents import User
from domain.passwords import hash_password, verify_password
from domain.tenants import API_KEY_PREFIX, Tenant
from projections.readmodel import SqliteReadModel
from projections.sql import iso


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """A signed-in user, as the web pages see them."""

    user_id: str
    tenant_id: str
    login: str
    name: str
    role: str


@cache
def _dummy_hash() -> str:
    # What an unknown login is checked against, so that it costs the same KDF time as a
    # known one and the answer's timing does not tell which logins exist.
    return hash_password("no such user, no such password")


class AccessReadModel(SqliteReadModel):
    name = "access"
    upstreams = ("tenants", "agents")
    schema = (
        "CREATE TABLE IF NOT EXISTS tenant_ids (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS api_keys (
            key_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL, issued_at TEXT NOT NULL, revoked_at TEXT
        )""",
        # No UNIQUE on (tenant_id, login): aggregates cannot promise it, and a projection
        # must take every event the log holds. Sign-in copes with a duplicate.
        """CREATE TABLE IF NOT EXISTS users (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, login TEXT NOT NULL,
            name TEXT NOT NULL, role TEXT NOT NULL, password_hash TEXT,
            active INTEGER NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS users_by_login ON users (tenant_id, login)",
    )

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        if isinstance(event, User.Created | User.Event):
            self._handle_user(db, event)
        elif isinstance(event, Tenant.Registered):
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

    def _handle_user(self, db: sqlite3.Connection, event: Any) -> None:
        user_id = str(event.originator_id)
        if isinstance(event, User.Created):
            db.execute(
                "INSERT OR IGNORE INTO users VALUES (?, ?, ?, ?, ?, NULL, 1)",
                (user_id, event.tenant_id, event.login, event.name, event.role),
            )
        elif isinstance(event, User.RoleChanged):
            db.execute("UPDATE users SET role = ? WHERE id = ?", (event.role, user_id))
        elif isinstance(event, User.PasswordSet):
            db.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (event.password_hash, user_id)
            )
        elif isinstance(event, User.Deactivated | User.Reactivated):
            active = isinstance(event, User.Reactivated)
            db.execute("UPDATE users SET active = ? WHERE id = ?", (int(active), user_id))

    def sign_in(self, tenant_id: str, login: str, password: str) -> Principal | None:
        """The user whose login and password these are in this tenant; None for anything
        else (unknown login, inactive user, no password set, wrong password) — the caller
        does not learn which, not even from how long the answer took.

        Slow on purpose (a scrypt hash, some 50-100 ms): call it off the event loop.
        """
        rows = (
            self.connect()
            .execute(
                "SELECT id, tenant_id, login, name, role, password_hash FROM users "
                "WHERE tenant_id = ? AND login = ? AND active = 1 AND password_hash IS NOT NULL "
                "ORDER BY id",
                (tenant_id, login.strip().lower()),
            )
            .fetchall()
        )
        if not rows:
            verify_password(password, _dummy_hash())
            return None
        # The same login twice in a tenant is a slip of the log (nothing enforces it in
        # one place): the password tells them apart.
        for row in rows:
            if verify_password(password, row["password_hash"]):
                return _principal(row)
        return None

    def user(self, user_id: str | UUID) -> Principal | None:
        """An active user by id (a session's), or None: a deactivated user's session
        stops opening anything on the next request."""
        row = (
            self.connect()
            .execute(
                "SELECT id, tenant_id, login, name, role FROM users WHERE id = ? AND active = 1",
                (str(user_id),),
            )
            .fetchone()
        )
        return None if row is None else _principal(row)

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


def _principal(row: sqlite3.Row) -> Principal:
    return Principal(
        user_id=row["id"],
        tenant_id=row["tenant_id"],
        login=row["login"],
        name=row["name"],
        role=row["role"],
    )
