"""The dialplan: what the telephony bridge needs to take an inbound call (AX1, CC15).

| table | from | what |
|---|---|---|
| `hotlines`, `tenant_ids` | tenants | each hotline number: its tenant and where its calls go (a queue or an IVR flow) |
| `live_calls` | calls | the calls not ended yet (what a restarted built-in switch has lost) |
| `queues` | queues | each queue's tenant and whether its calls are recorded (AX10) |
| `users` | agents | each user's extension and endpoints (internal calls, AX8 and CC1) |
| `flow_drafts` | ivr_flows | each flow's draft nodes and entry (what the next publish freezes) |
| `flow_versions` | ivr_flows | every published version of every flow, as the calls walk it |

A number belongs to one tenant (the tenants' read-side check); if two tenants ever list
the same number the first registration keeps it, and the bridge refuses to guess.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from domain.agents import User
from domain.calls import Call
from domain.ivr import FlowGraph, IvrFlow, Node
from domain.queues import Queue
from domain.tenants import HotlineTarget, Tenant
from projections.readmodel import SqliteReadModel
from projections.sql import iso

_decode = msgspec.json.decode
_encode = msgspec.json.encode


class HotlineRoute(msgspec.Struct, frozen=True):
    tenant_id: str
    number: str
    kind: HotlineTarget | None  # None: the tenant has not said where its calls go
    target_id: UUID | None


class UserLine(msgspec.Struct, frozen=True):
    user_id: UUID
    extension: str | None
    endpoints: list[tuple[str, str]]  # (EndpointKind value, address), first added first


class DialplanReadModel(SqliteReadModel):
    name = "dialplan"
    upstreams = ("tenants", "ivr_flows", "agents", "queues", "calls")
    schema = (
        """CREATE TABLE IF NOT EXISTS hotlines (
            number TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, kind TEXT, target_id TEXT
        )""",
        "CREATE TABLE IF NOT EXISTS tenant_ids (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS users (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, extension TEXT,
            endpoints TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS users_by_extension ON users (tenant_id, extension)",
        """CREATE TABLE IF NOT EXISTS live_calls (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, call_ref TEXT NOT NULL,
            started_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS queues (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, record_calls INTEGER NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS flow_drafts (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, entry TEXT, nodes TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS flow_versions (
            flow_id TEXT NOT NULL, version INTEGER NOT NULL, tenant_id TEXT NOT NULL,
            entry TEXT NOT NULL, nodes TEXT NOT NULL, PRIMARY KEY (flow_id, version)
        )""",
    )

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        if isinstance(event, Tenant.Event | Tenant.Registered):
            self._on_tenant(db, event)
        elif isinstance(event, IvrFlow.Event | IvrFlow.Drafted):
            self._on_flow(db, event)
        elif isinstance(
            event,
            User.Created | User.ExtensionChanged | User.EndpointAdded | User.EndpointRemoved,
        ):
            self._on_user(db, event)
        elif isinstance(event, Call.Started):
            db.execute(
                "INSERT OR IGNORE INTO live_calls VALUES (?, ?, ?, ?)",
                (str(event.originator_id), event.tenant_id, event.call_ref, iso(event.at)),
            )
        elif isinstance(event, Call.Ended):
            db.execute("DELETE FROM live_calls WHERE id = ?", (str(event.originator_id),))
        elif isinstance(event, Queue.Created):
            db.execute(
                "INSERT OR IGNORE INTO queues VALUES (?, ?, 0)",
                (str(event.originator_id), event.tenant_id),
            )
        elif isinstance(event, Queue.RecordingPolicySet):
            db.execute(
                "UPDATE queues SET record_calls = ? WHERE id = ?",
                (int(event.record_calls), str(event.originator_id)),
            )

    def _on_user(self, db: sqlite3.Connection, e: Any) -> None:
        uid = str(e.originator_id)
        if isinstance(e, User.Created):
            db.execute(
                "INSERT OR IGNORE INTO users VALUES (?, ?, ?, '[]')",
                (uid, e.tenant_id, e.extension),
            )
            return
        row = db.execute("SELECT * FROM users WHERE id = ?", (uid,)).fetchone()
        if row is None:
            return
        if isinstance(e, User.ExtensionChanged):
            db.execute("UPDATE users SET extension = ? WHERE id = ?", (e.extension, uid))
            return
        endpoints = [tuple(x) for x in _decode(row["endpoints"])]
        if isinstance(e, User.EndpointAdded) and (e.kind, e.address) not in endpoints:
            endpoints.append((e.kind, e.address))
        elif isinstance(e, User.EndpointRemoved):
            endpoints = [x for x in endpoints if x != (e.kind, e.address)]
        db.execute(
            "UPDATE users SET endpoints = ? WHERE id = ?", (_encode(endpoints).decode(), uid)
        )

    def _on_tenant(self, db: sqlite3.Connection, e: Any) -> None:
        if isinstance(e, Tenant.Registered):
            db.execute(
                "INSERT OR IGNORE INTO tenant_ids VALUES (?, ?)",
                (str(e.originator_id), e.tenant_id),
            )
            for number in e.hotlines:
                db.execute(
                    "INSERT OR IGNORE INTO hotlines VALUES (?, ?, NULL, NULL)",
                    (number, e.tenant_id),
                )
            return
        row = db.execute(
            "SELECT tenant_id FROM tenant_ids WHERE id = ?", (str(e.originator_id),)
        ).fetchone()
        if row is None:
            return
        owner = row[0]
        if isinstance(e, Tenant.HotlineAdded):
            db.execute(
                "INSERT OR IGNORE INTO hotlines VALUES (?, ?, NULL, NULL)", (e.number, owner)
            )
        elif isinstance(e, Tenant.HotlineRemoved):
            db.execute("DELETE FROM hotlines WHERE number = ? AND tenant_id = ?", (e.number, owner))
        elif isinstance(e, Tenant.HotlineRouted):
            db.execute(
                "UPDATE hotlines SET kind = ?, target_id = ? WHERE number = ? AND tenant_id = ?",
                (e.kind, str(e.target_id), e.number, owner),
            )

    def _on_flow(self, db: sqlite3.Connection, e: Any) -> None:
        flow_id = str(e.originator_id)
        if isinstance(e, IvrFlow.Drafted):
            db.execute(
                "INSERT OR IGNORE INTO flow_drafts VALUES (?, ?, NULL, '{}')",
                (flow_id, e.tenant_id),
            )
            return
        row = db.execute("SELECT * FROM flow_drafts WHERE id = ?", (flow_id,)).fetchone()
        if row is None:
            return
        nodes: dict[str, Any] = _decode(row["nodes"])
        entry = row["entry"]
        if isinstance(e, IvrFlow.NodeSet):
            nodes[e.node["node_id"]] = e.node
        elif isinstance(e, IvrFlow.NodeRemoved):
            nodes.pop(e.node_id, None)
            entry = None if entry == e.node_id else entry
        elif isinstance(e, IvrFlow.EntrySet):
            entry = e.node_id
        elif isinstance(e, IvrFlow.Published):
            db.execute(
                "INSERT OR REPLACE INTO flow_versions VALUES (?, ?, ?, ?, ?)",
                (flow_id, e.flow_version, row["tenant_id"], entry, row["nodes"]),
            )
            return
        else:
            return
        db.execute(
            "UPDATE flow_drafts SET nodes = ?, entry = ? WHERE id = ?",
            (_encode(nodes).decode(), entry, flow_id),
        )

    # ------------------------------------------------------------------ queries
    def route(self, number: str) -> HotlineRoute | None:
        """Who owns the dialled number and where its calls go; None if nobody does."""
        row = (
            self.connect().execute("SELECT * FROM hotlines WHERE number = ?", (number,)).fetchone()
        )
        if row is None:
            return None
        return HotlineRoute(
            tenant_id=row["tenant_id"],
            number=row["number"],
            kind=HotlineTarget(row["kind"]) if row["kind"] else None,
            target_id=UUID(row["target_id"]) if row["target_id"] else None,
        )

    def records(self, tenant_id: str, queue_id: UUID) -> bool:
        """Whether the queue's calls are recorded once an agent answers (AX10)."""
        row = (
            self.connect()
            .execute(
                "SELECT 1 FROM queues WHERE id = ? AND tenant_id = ? AND record_calls = 1",
                (str(queue_id), tenant_id),
            )
            .fetchone()
        )
        return row is not None

    def live_calls(self, started_before: datetime) -> list[tuple[str, str]]:
        """(tenant, call ref) of every call not ended that started before the time."""
        rows = self.connect().execute(
            "SELECT tenant_id, call_ref FROM live_calls WHERE started_at < ?",
            (iso(started_before),),
        )
        return [(r[0], r[1]) for r in rows]

    def hotlines(self, tenant_id: str) -> list[str]:
        """The tenant's hotlines, in number order."""
        rows = self.connect().execute(
            "SELECT number FROM hotlines WHERE tenant_id = ? ORDER BY number", (tenant_id,)
        )
        return [r[0] for r in rows]

    def user(
        self, tenant_id: str, *, extension: str | None = None, address: str | None = None
    ) -> UserLine | None:
        """The tenant's user with this extension, or with an endpoint at this address."""
        db = self.connect()
        if extension is not None:
            rows = db.execute(
                "SELECT * FROM users WHERE tenant_id = ? AND extension = ?", (tenant_id, extension)
            ).fetchall()
        else:
            rows = [
                r
                for r in db.execute("SELECT * FROM users WHERE tenant_id = ?", (tenant_id,))
                if any(a == address for _, a in _decode(r["endpoints"]))
            ]
        if len(rows) != 1:
            return None  # nobody, or ambiguous: the bridge does not guess
        row = rows[0]
        return UserLine(
            user_id=UUID(row["id"]),
            extension=row["extension"],
            endpoints=[(k, a) for k, a in _decode(row["endpoints"])],
        )

    def flow(self, tenant_id: str, flow_id: UUID, version: int | None = None) -> FlowGraph | None:
        """A published version of a tenant's flow (the latest by default)."""
        db = self.connect()
        if version is None:
            row = db.execute(
                "SELECT * FROM flow_versions WHERE flow_id = ? AND tenant_id = ? "
                "ORDER BY version DESC LIMIT 1",
                (str(flow_id), tenant_id),
            ).fetchone()
        else:
            row = db.execute(
                "SELECT * FROM flow_versions WHERE flow_id = ? AND tenant_id = ? AND version = ?",
                (str(flow_id), tenant_id, version),
            ).fetchone()
        if row is None:
            return None
        nodes = {k: Node.from_event(_node(v)) for k, v in _decode(row["nodes"]).items()}
        return FlowGraph(UUID(row["flow_id"]), row["version"], row["entry"], nodes)


def _node(data: dict[str, Any]) -> dict[str, Any]:
    # UUIDs come back from JSON as text.
    for key in ("queue_id", "agent_id"):
        if data.get(key):
            data[key] = UUID(data[key])
    return data
