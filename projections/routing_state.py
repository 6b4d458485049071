"""The routing process manager's state: tables kept from six streams (see
projections.routing for what it does with them).

| table | from | what |
|---|---|---|
| `agents` | agents | presence and since when, skills, departments, pickup groups, endpoints, the work they ring for or handle |
| `agent_preferred_endpoints` | agents | the endpoint an agent's calls ring for now instead of their first (CC7: a registered browser) |
| `queues` | queues | routing rules, ring timeout, max wait, fallbacks, schedule |
| `calendars`, `tenant_ids` | tenants | business calendars by name (CC11) |
| `calls`, `call_last_agent` | calls | calls waiting in a queue, who answered, who last talked with a number (CC10) |
| `call_agent_legs` | calls | each agent's legs on live calls, answered or not, ended or not (presence follows transfers, consults, outbound and internal calls) |
| `conversations`, `conversation_last_agent` | conversations | conversations waiting in a queue, assignee, status |
| `routings`, `cursors` | routing | what the manager decided: who rings, who was tried (timed out or rejected the offer: `expired`), fallbacks; the round-robin cursor per queue (AX12) |

Each table is written by one stream's events only (projections.readmodel).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import msgspec

from domain.agents import CALL_TAKING_ROLES, Role, User
from domain.calls import Call
from domain.conversations import Conversation, ConversationStatus
from domain.queues import DEFAULT_MAX_WAIT_SECONDS, DEFAULT_RING_TIMEOUT_SECONDS, Queue
from domain.routing import WorkRouting
from domain.tenants import Tenant
from domain.vocabulary import Presence, RoutingPolicy
from projections.readmodel import SqliteReadModel
from projections.sql import dump, iso, update_row

_decode = msgspec.json.decode

# Ended calls stay this long (for an agent row that is behind); then they are pruned.
KEEP_ENDED = timedelta(hours=1)


class RoutingState(SqliteReadModel):
    """The tables routing decides from; `Router` (projections.routing) acts on them."""

    name = "routing"
    upstreams = ("agents", "queues", "tenants", "calls", "conversations", "routing")
    schema = (
        """CREATE TABLE IF NOT EXISTS agents (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, active INTEGER NOT NULL,
            takes_calls INTEGER NOT NULL, presence TEXT NOT NULL, since TEXT NOT NULL,
            work_id TEXT, skills TEXT NOT NULL, departments TEXT NOT NULL,
            pickup_groups TEXT NOT NULL, endpoints TEXT NOT NULL, last_ended_at TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS agents_by_tenant ON agents (tenant_id, presence)",
        # A table of its own, not a column of `agents`: a routing file made before it
        # gains it as it opens, and holds no preference since none was ever recorded.
        """CREATE TABLE IF NOT EXISTS agent_preferred_endpoints (
            agent_id TEXT PRIMARY KEY, kind TEXT NOT NULL, address TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS queues (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL,
            policy TEXT NOT NULL, required_skills TEXT NOT NULL, department TEXT,
            sticky_fallback TEXT, pickup_groups TEXT NOT NULL,
            ring_timeout_seconds INTEGER NOT NULL, max_wait_seconds INTEGER NOT NULL,
            overflow TEXT, no_agent TEXT, calendar_name TEXT, when_closed TEXT
        )""",
        "CREATE TABLE IF NOT EXISTS tenant_ids (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS calendars (
            tenant_id TEXT NOT NULL, name TEXT NOT NULL, calendar TEXT NOT NULL,
            PRIMARY KEY (tenant_id, name)
        )""",
        """CREATE TABLE IF NOT EXISTS calls (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, call_ref TEXT NOT NULL,
            customer_number TEXT, queue_id TEXT, queued_at TEXT, answered_by TEXT,
            legs TEXT NOT NULL, ended_at TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS calls_waiting ON calls (queue_id, answered_by, ended_at)",
        "CREATE INDEX IF NOT EXISTS calls_ended ON calls (ended_at)",
        """CREATE TABLE IF NOT EXISTS call_last_agent (
            tenant_id TEXT NOT NULL, number TEXT NOT NULL, agent_id TEXT NOT NULL,
            PRIMARY KEY (tenant_id, number)
        )""",
        """CREATE TABLE IF NOT EXISTS conversations (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, customer_id TEXT NOT NULL,
            queue_id TEXT, queued_at TEXT, assignee TEXT, status TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS conversations_waiting ON conversations (queue_id, assignee, status)",
        """CREATE TABLE IF NOT EXISTS conversation_last_agent (
            tenant_id TEXT NOT NULL, customer_id TEXT NOT NULL, agent_id TEXT NOT NULL,
            PRIMARY KEY (tenant_id, customer_id)
        )""",
        """CREATE TABLE IF NOT EXISTS routings (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, kind TEXT NOT NULL,
            work_id TEXT NOT NULL, ringing TEXT, offered_at TEXT, expired TEXT NOT NULL,
            fell_back_at TEXT, fell_back_to TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS routings_by_work ON routings (work_id)",
        "CREATE TABLE IF NOT EXISTS cursors (queue_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS call_agent_legs (
            call_id TEXT NOT NULL, leg_id TEXT NOT NULL, user_id TEXT NOT NULL,
            answered INTEGER NOT NULL, ended INTEGER NOT NULL, PRIMARY KEY (call_id, leg_id)
        )""",
        "CREATE INDEX IF NOT EXISTS call_agent_legs_by_user ON call_agent_legs (user_id, call_id)",
    )

    # ------------------------------------------------------------------ the tables
    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        if isinstance(event, User.Event | User.Created):
            self._on_agent(db, event)
        elif isinstance(event, Queue.Event | Queue.Created):
            self._on_queue(db, event)
        elif isinstance(event, Tenant.Event | Tenant.Created):
            self._on_tenant(db, event)
        elif isinstance(event, Call.Event | Call.Started):
            self._on_call(db, event)
        elif isinstance(event, Conversation.Event | Conversation.Started):
            self._on_conversation(db, event)
        elif isinstance(event, WorkRouting.Event | WorkRouting.Created):
            self._on_routing(db, event)

    def _on_agent(self, db: sqlite3.Connection, e: Any) -> None:
        aid, at = str(e.originator_id), iso(e.timestamp)
        if isinstance(e, User.Created):
            db.execute(
                "INSERT INTO agents VALUES (?, ?, 1, ?, 'offline', ?, NULL, '{}', '[]', '[]', '[]', NULL)",
                (aid, e.tenant_id, int(Role(e.role) in CALL_TAKING_ROLES), at),
            )
            return
        row = db.execute("SELECT * FROM agents WHERE id = ?", (aid,)).fetchone()
        if row is None:
            return
        tenant = row["tenant_id"]

        def presence(state: Presence, work: str | None = None, **more: Any) -> None:
            sets = {"presence": state.value, "since": at, "work_id": work, **more}
            update_row(db, "agents", aid, sets)
            self.changed(tenant, "agent", aid)

        def json_field(name: str, change: Any) -> None:
            value = change(_decode(row[name]))
            update_row(db, "agents", aid, {name: dump(value)})

        def unprefer() -> None:
            db.execute(
                "DELETE FROM agent_preferred_endpoints WHERE agent_id = ? AND kind = ? "
                "AND address = ?",
                (aid, e.kind, e.address),
            )

        if isinstance(e, User.RoleChanged):
            takes = int(Role(e.role) in CALL_TAKING_ROLES)
            db.execute("UPDATE agents SET takes_calls = ? WHERE id = ?", (takes, aid))
        elif isinstance(e, User.EndpointAdded):
            json_field("endpoints", lambda v: [*v, [e.kind, e.address]])
        elif isinstance(e, User.EndpointRemoved):
            json_field("endpoints", lambda v: [x for x in v if x != [e.kind, e.address]])
            unprefer()  # a removed endpoint is preferred no more (as in domain.agents)
        elif isinstance(e, User.EndpointPreferenceCleared):
            unprefer()
        elif isinstance(e, User.EndpointPreferred):
            db.execute(
                "INSERT OR REPLACE INTO agent_preferred_endpoints VALUES (?, ?, ?)",
                (aid, e.kind, e.address),
            )
        elif isinstance(e, User.SkillSet):
            json_field("skills", lambda v: {**v, e.skill: e.level})
        elif isinstance(e, User.SkillRemoved):
            json_field("skills", lambda v: {k: n for k, n in v.items() if k != e.skill})
        elif isinstance(e, User.DepartmentJoined):
            json_field("departments", lambda v: sorted({*v, e.department}))
        elif isinstance(e, User.DepartmentLeft):
            json_field("departments", lambda v: [x for x in v if x != e.department])
        elif isinstance(e, User.PickupGroupJoined):
            json_field("pickup_groups", lambda v: sorted({*v, e.group}))
        elif isinstance(e, User.PickupGroupLeft):
            json_field("pickup_groups", lambda v: [x for x in v if x != e.group])
        elif isinstance(e, User.WentAvailable | User.OfferDeclined | User.WrapUpFinished):
            presence(Presence.AVAILABLE)
        elif isinstance(e, User.BreakTaken):
            presence(Presence.BREAK)
        elif isinstance(e, User.WentOffline):
            presence(Presence.OFFLINE)
        elif isinstance(e, User.Offered):
            presence(Presence.RINGING, e.conversation_id)
        elif isinstance(e, User.Answered | User.InteractionStarted):
            presence(Presence.ON_CALL, e.conversation_id)
        elif isinstance(e, User.InteractionEnded):
            if e.wrap_up:
                presence(Presence.WRAP_UP, e.conversation_id, last_ended_at=at)
            else:
                presence(Presence.AVAILABLE, last_ended_at=at)
        elif isinstance(e, User.Deactivated):
            db.execute("UPDATE agents SET active = 0 WHERE id = ?", (aid,))
        elif isinstance(e, User.Reactivated):
            db.execute("UPDATE agents SET active = 1 WHERE id = ?", (aid,))

    def _on_queue(self, db: sqlite3.Connection, e: Any) -> None:
        qid = str(e.originator_id)
        if isinstance(e, Queue.Created):
            db.execute(
                "INSERT INTO queues VALUES (?, ?, ?, ?, '{}', NULL, NULL, '[]', ?, ?, "
                "NULL, NULL, NULL, NULL)",
                (
                    qid,
                    e.tenant_id,
                    e.name,
                    RoutingPolicy.ROUND_ROBIN.value,
                    DEFAULT_RING_TIMEOUT_SECONDS,
                    DEFAULT_MAX_WAIT_SECONDS,
                ),
            )
            return
        sets: dict[str, Any] = {}
        if isinstance(e, Queue.Renamed):
            sets = {"name": e.name}
        elif isinstance(e, Queue.RoutingChanged):
            sets = {
                "policy": e.policy,
                "required_skills": dump(e.required_skills),
                "department": e.department,
                "sticky_fallback": e.sticky_fallback,
            }
        elif isinstance(e, Queue.WaitingRulesChanged):
            sets = {
                "ring_timeout_seconds": e.ring_timeout_seconds,
                "max_wait_seconds": e.max_wait_seconds,
                "overflow": _encode_or_none(e.overflow),
                "no_agent": _encode_or_none(e.no_agent),
            }
        elif isinstance(e, Queue.ScheduleChanged):
            sets = {"calendar_name": e.calendar_name, "when_closed": _encode_or_none(e.when_closed)}
        elif isinstance(e, Queue.PickupGroupAdded | Queue.PickupGroupRemoved):
            row = db.execute("SELECT pickup_groups FROM queues WHERE id = ?", (qid,)).fetchone()
            if row is None:
                return
            groups = set(_decode(row[0]))
            if isinstance(e, Queue.PickupGroupAdded):
                groups.add(e.group)
            else:
                groups.discard(e.group)
            sets = {"pickup_groups": dump(sorted(groups))}
        if sets:
            update_row(db, "queues", qid, sets)

    def _on_tenant(self, db: sqlite3.Connection, e: Any) -> None:
        tid = str(e.originator_id)
        if isinstance(e, Tenant.Registered):
            db.execute("INSERT OR REPLACE INTO tenant_ids VALUES (?, ?)", (tid, e.tenant_id))
            return
        if not isinstance(e, Tenant.CalendarDefined | Tenant.CalendarRemoved):
            return
        row = db.execute("SELECT tenant_id FROM tenant_ids WHERE id = ?", (tid,)).fetchone()
        if row is None:
            return
        if isinstance(e, Tenant.CalendarDefined):
            db.execute(
                "INSERT OR REPLACE INTO calendars VALUES (?, ?, ?)",
                (row[0], e.name, dump(e.calendar)),
            )
        else:
            db.execute("DELETE FROM calendars WHERE tenant_id = ? AND name = ?", (row[0], e.name))

    def _on_call(self, db: sqlite3.Connection, e: Any) -> None:
        cid = str(e.originator_id)
        if isinstance(e, Call.Started):
            legs = {leg["leg_id"]: leg.get("user_id") for leg in e.legs}
            db.execute(
                "INSERT INTO calls VALUES (?, ?, ?, ?, NULL, NULL, NULL, ?, NULL)",
                (cid, e.tenant_id, e.call_ref, e.customer_number, dump(legs)),
            )
            # The agent placing an outbound or internal call is on it from the start.
            _agent_leg(db, cid, e.legs[0], answered=True)
            return
        self._on_agent_legs(db, cid, e)
        row = db.execute("SELECT * FROM calls WHERE id = ?", (cid,)).fetchone()
        if row is None:
            return
        if isinstance(e, Call.Offered):
            db.execute(
                "UPDATE calls SET queue_id = ?, queued_at = ? WHERE id = ?",
                (str(e.queue_id), iso(e.at), cid),
            )
        elif isinstance(e, Call.AgentRang | Call.SupervisionStarted):
            self._add_leg(db, row, e.leg)
        elif isinstance(e, Call.TransferRequested):
            self._add_leg(db, row, e.consult_leg)
        elif isinstance(e, Call.Transferred):
            self._add_leg(db, row, e.to_leg)
        elif isinstance(e, Call.Answered):
            user = _decode(row["legs"]).get(e.leg_id)
            if user is not None and row["answered_by"] is None:
                db.execute("UPDATE calls SET answered_by = ? WHERE id = ?", (user, cid))
                if row["customer_number"]:
                    db.execute(
                        "INSERT OR REPLACE INTO call_last_agent VALUES (?, ?, ?)",
                        (row["tenant_id"], row["customer_number"], user),
                    )
        elif isinstance(e, Call.Ended):
            db.execute("UPDATE calls SET ended_at = ? WHERE id = ?", (iso(e.at), cid))
            # Deterministic pruning (it depends on this stream's events only).
            db.execute("DELETE FROM calls WHERE ended_at < ?", (iso(e.at - KEEP_ENDED),))

    @staticmethod
    def _on_agent_legs(db: sqlite3.Connection, cid: str, e: Any) -> None:
        """Which agents are on which call, leg by leg: for presence to follow what the
        switch did besides routing's own offers (transfers, consults, take-overs)."""
        ended: str | None = None
        if isinstance(e, Call.AgentRang):
            _agent_leg(db, cid, e.leg)
        elif isinstance(e, Call.TransferRequested):
            _agent_leg(db, cid, e.consult_leg)
        elif isinstance(e, Call.Transferred):
            _agent_leg(db, cid, e.to_leg)
            ended = e.from_leg_id
        elif isinstance(e, Call.Answered):
            db.execute(
                "UPDATE call_agent_legs SET answered = 1 WHERE call_id = ? AND leg_id = ?",
                (cid, e.leg_id),
            )
        elif isinstance(e, Call.TakenOver):
            row = db.execute("SELECT legs FROM calls WHERE id = ?", (cid,)).fetchone()
            user = _decode(row[0]).get(e.leg_id) if row else None
            if user:
                db.execute(
                    "INSERT OR REPLACE INTO call_agent_legs VALUES (?, ?, ?, 1, 0)",
                    (cid, e.leg_id, user),
                )
            ended = e.from_leg_id
        elif isinstance(e, Call.LegHungUp):
            ended = e.leg_id
        elif isinstance(e, Call.TransferCancelled):
            ended = e.consult_leg_id
        elif isinstance(e, Call.Ended):
            db.execute("DELETE FROM call_agent_legs WHERE call_id = ?", (cid,))
        if ended is not None:
            db.execute(
                "UPDATE call_agent_legs SET ended = 1 WHERE call_id = ? AND leg_id = ?",
                (cid, ended),
            )

    @staticmethod
    def _add_leg(db: sqlite3.Connection, row: sqlite3.Row, leg: dict[str, Any]) -> None:
        legs = _decode(row["legs"])
        legs[leg["leg_id"]] = leg.get("user_id")
        db.execute("UPDATE calls SET legs = ? WHERE id = ?", (dump(legs), row["id"]))

    def _on_conversation(self, db: sqlite3.Connection, e: Any) -> None:
        cid = str(e.originator_id)
        if isinstance(e, Conversation.Started):
            queue = str(e.queue_id) if e.queue_id else None
            db.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, NULL, 'open')",
                (cid, e.tenant_id, str(e.customer_id), queue, iso(e.at) if queue else None),
            )
            return
        row = db.execute(
            "SELECT tenant_id, customer_id FROM conversations WHERE id = ?", (cid,)
        ).fetchone()
        if row is None:
            return
        if isinstance(e, Conversation.MovedToQueue):
            db.execute(
                "UPDATE conversations SET queue_id = ?, queued_at = ?, assignee = NULL WHERE id = ?",
                (str(e.queue_id), iso(e.timestamp), cid),
            )
        elif isinstance(e, Conversation.Assigned | Conversation.Transferred):
            agent = str(e.agent_id if isinstance(e, Conversation.Assigned) else e.to_agent_id)
            db.execute("UPDATE conversations SET assignee = ? WHERE id = ?", (agent, cid))
            db.execute(
                "INSERT OR REPLACE INTO conversation_last_agent VALUES (?, ?, ?)",
                (row["tenant_id"], row["customer_id"], agent),
            )
        elif isinstance(e, Conversation.Unassigned):
            db.execute("UPDATE conversations SET assignee = NULL WHERE id = ?", (cid,))
        elif isinstance(e, Conversation.StatusChanged):
            db.execute(
                "UPDATE conversations SET status = ? WHERE id = ?",
                (ConversationStatus(e.status).value, cid),
            )

    def _on_routing(self, db: sqlite3.Connection, e: Any) -> None:
        rid = str(e.originator_id)
        if isinstance(e, WorkRouting.Created):
            db.execute(
                "INSERT INTO routings VALUES (?, ?, ?, ?, NULL, NULL, '[]', NULL, NULL)",
                (rid, e.tenant_id, e.kind, e.work_id),
            )
        elif isinstance(e, WorkRouting.Offered):
            db.execute(
                "UPDATE routings SET ringing = ?, offered_at = ? WHERE id = ?",
                (str(e.agent_id), iso(e.at), rid),
            )
            db.execute(
                "INSERT OR REPLACE INTO cursors VALUES (?, ?)", (str(e.queue_id), str(e.agent_id))
            )
        elif isinstance(e, WorkRouting.OfferExpired | WorkRouting.OfferRejected):
            row = db.execute(
                "SELECT expired, ringing FROM routings WHERE id = ?", (rid,)
            ).fetchone()
            if row is None:
                return
            agent = str(e.agent_id)
            # `expired` is every agent tried for this work: who let it ring out and who
            # declined it alike (the router offers it to them last).
            expired = sorted({*_decode(row[0]), agent})
            # An expiry is of the offer ringing (WorkRouting.expire); a rejection may
            # come after the next offer, to someone else, which still rings.
            ringing = None if row[1] == agent else row[1]
            db.execute(
                "UPDATE routings SET ringing = ?, expired = ? WHERE id = ?",
                (ringing, dump(expired), rid),
            )
        elif isinstance(e, WorkRouting.FellBack):
            db.execute(
                "UPDATE routings SET ringing = NULL, fell_back_at = ?, fell_back_to = ? WHERE id = ?",
                (iso(e.at), e.fallback["kind"], rid),
            )

    # ------------------------------------------------------------------ queries
    def agent(self, tenant_id: str, agent_id: str) -> dict[str, Any] | None:
        row = (
            self.connect()
            .execute("SELECT * FROM agents WHERE tenant_id = ? AND id = ?", (tenant_id, agent_id))
            .fetchone()
        )
        return dict(row) if row else None

    def preferred_endpoints(self, kind: str) -> list[tuple[str, str, str, str]]:
        """(tenant, agent, kind, address) of every agent whose calls ring a preferred
        endpoint of `kind` — across tenants: for the process that runs the switch."""
        rows = self.connect().execute(
            "SELECT a.tenant_id, p.agent_id, p.kind, p.address "
            "FROM agent_preferred_endpoints p JOIN agents a ON a.id = p.agent_id "
            "WHERE p.kind = ?",
            (kind,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def waiting(self, tenant_id: str) -> list[dict[str, Any]]:
        """Calls and conversations waiting for an agent, oldest first."""
        rows: Iterable[sqlite3.Row] = self.connect().execute(
            "SELECT 'call' AS kind, id, queue_id, queued_at FROM calls WHERE tenant_id = ? "
            "AND queue_id IS NOT NULL AND answered_by IS NULL AND ended_at IS NULL "
            "UNION ALL SELECT 'conversation', id, queue_id, queued_at FROM conversations "
            "WHERE tenant_id = ? AND queue_id IS NOT NULL AND assignee IS NULL AND status = 'open' "
            "ORDER BY queued_at",
            (tenant_id, tenant_id),
        )
        return [dict(r) for r in rows]


def _encode_or_none(value: Any) -> str | None:
    return None if value is None else dump(value)


def _agent_leg(
    db: sqlite3.Connection, call_id: str, leg: dict[str, Any], *, answered: bool = False
) -> None:
    if leg.get("party") == "agent" and leg.get("user_id"):
        db.execute(
            "INSERT OR IGNORE INTO call_agent_legs VALUES (?, ?, ?, ?, 0)",
            (call_id, leg["leg_id"], str(leg["user_id"]), int(answered)),
        )
