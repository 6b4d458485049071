"""The tickets read model (CT17): lists agents filter and sort, and a ticket with its thread.

One row per ticket with what a list shows (title, kind, status, priority, customer,
assignee, counts, times), its comments and its linked conversations in tables of their
own. Times are the events' own: a ticket was raised, changed or commented when its event
was recorded, so a rebuild gives the same tables.

A ticket's SLA clocks (domain.sla_clocks, run by projections.sla_timers) come from their
own stream into a table of their own (`ticket_sla`, one row per clock), joined to the
tickets when read: a list filters and sorts by SLA state and a ticket shows its due times.
The state is worked out at the time of the query (`now`), not when the timer process last
acted: a clock whose due time has passed is breached on the page at once.

Live-update kinds (`changed`): "ticket" (key: ticket id) for every change of a ticket,
its comments, links or SLA clocks; "customer_tickets" (customer id) when a ticket is raised for a
customer or moves to or from one; "conversation_tickets" (conversation id) when a ticket
is linked to or unlinked from a conversation.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from domain.sla_clocks import SlaClock, SubjectKind
from domain.tickets import Ticket
from domain.vocabulary import Priority
from projections.readmodel import SqliteReadModel
from projections.sql import change_row, iso, like_escaped, one_of

# Sorting by priority wants the order of the words, not their spelling.
PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}

# Ticket ids are unique across tenants and later events carry only the id: the id alone
# is the key. Every query still names the tenant, so no row crosses the wall.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tickets (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        kind TEXT NOT NULL,
        priority TEXT NOT NULL,
        priority_rank INTEGER NOT NULL,
        status TEXT NOT NULL,
        customer_id TEXT,
        assignee TEXT,
        sla_policy_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        status_changed_at TEXT,
        resolved_at TEXT,
        closed_at TEXT,
        comment_count INTEGER NOT NULL,
        public_comment_count INTEGER NOT NULL,
        last_comment_at TEXT,
        conversation_count INTEGER NOT NULL,
        version INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS tickets_by_update ON tickets (tenant_id, updated_at DESC)",
    """CREATE INDEX IF NOT EXISTS tickets_by_status
        ON tickets (tenant_id, status, updated_at DESC)""",
    """CREATE INDEX IF NOT EXISTS tickets_by_assignee
        ON tickets (tenant_id, assignee, updated_at DESC)""",
    """CREATE INDEX IF NOT EXISTS tickets_by_customer
        ON tickets (tenant_id, customer_id, updated_at DESC)""",
    """CREATE TABLE IF NOT EXISTS ticket_comments (
        ticket_id TEXT NOT NULL,
        comment_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        author_id TEXT NOT NULL,
        body TEXT NOT NULL,
        public INTEGER NOT NULL,
        at TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (ticket_id, comment_id)
    )""",
    """CREATE TABLE IF NOT EXISTS ticket_conversations (
        ticket_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        linked_at TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (ticket_id, conversation_id)
    )""",
    """CREATE INDEX IF NOT EXISTS ticket_conversations_by_conversation
        ON ticket_conversations (tenant_id, conversation_id)""",
    # From the sla_clocks stream only: one row per SLA clock of a ticket.
    """CREATE TABLE IF NOT EXISTS ticket_sla (
        clock_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        status TEXT NOT NULL,
        target_seconds INTEGER NOT NULL,
        used_seconds REAL NOT NULL,
        started_at TEXT NOT NULL,
        warn_at TEXT,
        due_at TEXT,
        warned_at TEXT,
        breached_at TEXT,
        ended_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS ticket_sla_by_ticket ON ticket_sla (ticket_id, tenant_id)",
)

# A ticket's SLA state (the list's filter and column), from its clocks at `?` (now):
# breached once any clock was breached or a running one is past its due time; at risk
# when an unfinished one was warned or is past its warning time; on time when it has
# clocks and neither; "none" without clocks. Each `?` is the same `now`.
SLA_STATES = ("on_time", "at_risk", "breached", "none")
_CLOCKS = (
    "SELECT 1 FROM ticket_sla s WHERE s.ticket_id = tickets.id AND s.tenant_id = tickets.tenant_id"
)
_BREACHED = (
    f"EXISTS ({_CLOCKS} AND (s.breached_at IS NOT NULL "
    "OR (s.status = 'running' AND s.due_at <= ?)))"
)
_AT_RISK = (
    f"EXISTS ({_CLOCKS} AND s.status IN ('running', 'paused') AND (s.warned_at IS NOT NULL "
    "OR (s.status = 'running' AND s.warn_at <= ?)))"
)
_SLA_STATE = (
    f"CASE WHEN {_BREACHED} THEN 'breached' WHEN {_AT_RISK} THEN 'at_risk' "
    f"WHEN EXISTS ({_CLOCKS}) THEN 'on_time' ELSE 'none' END"
)
_SLA_STATE_PARAMS = 2  # how many `?` (now) _SLA_STATE holds

Order = Literal["updated", "created", "priority", "due"]
_NEXT_DUE = (
    "(SELECT min(s.due_at) FROM ticket_sla s WHERE s.ticket_id = tickets.id "
    "AND s.tenant_id = tickets.tenant_id AND s.status = 'running')"
)
_ORDER_BY: dict[str, str] = {
    "updated": "updated_at DESC, id DESC",
    "created": "created_at DESC, id DESC",
    "priority": "priority_rank DESC, updated_at DESC, id DESC",
    # The running SLA clock due soonest first; tickets without one after, urgent first.
    "due": f"{_NEXT_DUE} IS NULL, {_NEXT_DUE}, priority_rank DESC, updated_at DESC, id DESC",
}


class TicketsReadModel(SqliteReadModel):
    """One row per ticket, with its comments and linked conversations, per tenant."""

    name = "tickets"
    upstreams = ("tickets", "sla_clocks")
    schema = _SCHEMA

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        kind = type(event)
        if isinstance(event, SlaClock.Event):
            self._clock(db, event)
            return
        if kind is Ticket.Raised:
            self._raised(db, event)
            return
        change = _CHANGES.get(kind)
        if change is None:
            return
        done = change_row(
            db, "tickets", event, lambda row: change(self, db, row, event), iso(event.timestamp)
        )
        if done is not None:
            self.changed(done[0]["tenant_id"], "ticket", str(event.originator_id))

    def _raised(self, db: sqlite3.Connection, event: Any) -> None:
        tid = str(event.originator_id)
        at = iso(event.timestamp)
        customer = _str(event.customer_id)
        db.execute(
            "INSERT INTO tickets VALUES "
            "(?, ?, ?, ?, ?, ?, ?, 'new', ?, NULL, NULL, ?, ?, NULL, NULL, NULL, 0, 0, NULL, 0, ?)",
            (
                tid,
                event.tenant_id,
                event.title,
                event.description,
                str(event.kind),
                str(event.priority),
                PRIORITY_RANK[Priority(event.priority)],
                customer,
                at,
                at,
                event.originator_version,
            ),
        )
        self.changed(event.tenant_id, "ticket", tid)
        if customer is not None:
            self.changed(event.tenant_id, "customer_tickets", customer)

    # Each change below takes the row as it is and the event, and returns the columns to
    # set; those that touch the side tables do so on the way.

    def _customer_changed(
        self, db: sqlite3.Connection, row: sqlite3.Row, event: Any
    ) -> dict[str, Any]:
        customer = _str(event.customer_id)
        for moved in {row["customer_id"], customer} - {None}:
            self.changed(row["tenant_id"], "customer_tickets", moved)
        return {"customer_id": customer}

    def _linked(self, db: sqlite3.Connection, row: sqlite3.Row, event: Any) -> dict[str, Any]:
        conversation = str(event.conversation_id)
        inserted = db.execute(
            "INSERT OR IGNORE INTO ticket_conversations VALUES (?, ?, ?, ?, ?)",
            (
                row["id"],
                conversation,
                row["tenant_id"],
                iso(event.timestamp),
                event.originator_version,
            ),
        ).rowcount
        self.changed(row["tenant_id"], "conversation_tickets", conversation)
        return {"conversation_count": row["conversation_count"] + inserted}

    def _unlinked(self, db: sqlite3.Connection, row: sqlite3.Row, event: Any) -> dict[str, Any]:
        conversation = str(event.conversation_id)
        deleted = db.execute(
            "DELETE FROM ticket_conversations WHERE ticket_id = ? AND conversation_id = ?",
            (row["id"], conversation),
        ).rowcount
        self.changed(row["tenant_id"], "conversation_tickets", conversation)
        return {"conversation_count": row["conversation_count"] - deleted}

    def _commented(self, db: sqlite3.Connection, row: sqlite3.Row, event: Any) -> dict[str, Any]:
        at = iso(event.timestamp)
        public = bool(event.public)
        inserted = db.execute(
            "INSERT OR IGNORE INTO ticket_comments VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row["id"],
                str(event.comment_id),
                row["tenant_id"],
                str(event.author_id),
                event.body,
                int(public),
                at,
                event.originator_version,
            ),
        ).rowcount
        return {
            "comment_count": row["comment_count"] + inserted,
            "public_comment_count": row["public_comment_count"] + (inserted if public else 0),
            "last_comment_at": at,
        }

    def _clock(self, db: sqlite3.Connection, event: Any) -> None:
        """An SLA clock's event: the row of a ticket's clock follows it (mirroring
        domain.sla_clocks.SlaClock's own state); a conversation's clocks are not kept."""
        clock_id = str(event.originator_id)
        if isinstance(event, SlaClock.Started):
            if event.subject_kind != SubjectKind.TICKET.value:
                return
            db.execute(
                "INSERT OR IGNORE INTO ticket_sla VALUES "
                "(?, ?, ?, ?, 'running', ?, 0, ?, ?, ?, NULL, NULL, NULL)",
                (
                    clock_id,
                    event.tenant_id,
                    str(event.subject_id),
                    event.metric,
                    event.target_seconds,
                    iso(event.at),
                    iso(event.warn_at),
                    iso(event.due_at),
                ),
            )
            self.changed(event.tenant_id, "ticket", str(event.subject_id))
            return
        row = db.execute("SELECT * FROM ticket_sla WHERE clock_id = ?", (clock_id,)).fetchone()
        if row is None:
            return  # a conversation's clock
        values: dict[str, Any]
        if isinstance(event, SlaClock.Paused):
            values = {"status": "paused", "used_seconds": event.used_seconds}
            # What has not fallen due yet has no due time while nothing is counted.
            if row["warned_at"] is None:
                values["warn_at"] = None
            if row["breached_at"] is None:
                values["due_at"] = None
        elif isinstance(event, SlaClock.Resumed):
            values = {"status": "running", "warn_at": _iso(event.warn_at)}
            values["due_at"] = iso(event.due_at)
        elif isinstance(event, SlaClock.Retargeted):
            values = {
                "target_seconds": event.target_seconds,
                "used_seconds": event.used_seconds,
                "warn_at": _iso(event.warn_at),
                "due_at": _iso(event.due_at),
            }
        elif isinstance(event, SlaClock.Warned):
            values = {"warned_at": iso(event.due)}
        elif isinstance(event, SlaClock.Breached):
            values = {"breached_at": iso(event.due)}
        elif isinstance(event, SlaClock.Met | SlaClock.Stopped):
            values = {
                "status": "met" if isinstance(event, SlaClock.Met) else "stopped",
                "ended_at": iso(event.at),
                "used_seconds": event.used_seconds,
            }
        else:
            return
        assignments = ", ".join(f"{column} = ?" for column in values)
        db.execute(
            f"UPDATE ticket_sla SET {assignments} WHERE clock_id = ?",
            (*values.values(), clock_id),
        )
        self.changed(row["tenant_id"], "ticket", row["ticket_id"])

    # ------------------------------------------------------------------ queries
    def sla(
        self, tenant_id: str, ticket_id: str | UUID, now: datetime | None = None
    ) -> dict[str, dict[str, Any]]:
        """The ticket's SLA clocks by metric (first_response, resolution) at `now`.

        `state`: met, stopped, breached, paused, at_risk or running. A running clock
        counts down to `due_at`; a paused one has `remaining_seconds` of counted time
        left (negative: overdue) and no due time until it runs again.
        """
        at = iso(now or datetime.now(UTC))
        rows = self.connect().execute(
            "SELECT * FROM ticket_sla WHERE ticket_id = ? AND tenant_id = ? ORDER BY metric",
            (str(ticket_id), tenant_id),
        )
        return {r["metric"]: _clock_state(r, at) for r in rows}

    def get(self, tenant_id: str, ticket_id: str | UUID) -> dict[str, Any] | None:
        """The ticket with its comments (oldest first) and linked conversations."""
        db = self.connect()
        row = db.execute(
            "SELECT * FROM tickets WHERE tenant_id = ? AND id = ?", (tenant_id, str(ticket_id))
        ).fetchone()
        if row is None:
            return None
        comments = db.execute(
            "SELECT * FROM ticket_comments WHERE ticket_id = ? AND tenant_id = ? ORDER BY seq",
            (row["id"], tenant_id),
        )
        links = db.execute(
            "SELECT conversation_id, linked_at FROM ticket_conversations "
            "WHERE ticket_id = ? AND tenant_id = ? ORDER BY seq",
            (row["id"], tenant_id),
        )
        return {
            **_ticket(row),
            "description": row["description"],
            "comments": [
                {
                    "id": c["comment_id"],
                    "author_id": c["author_id"],
                    "body": c["body"],
                    "public": bool(c["public"]),
                    "at": c["at"],
                }
                for c in comments
            ],
            "conversations": [
                {"id": link["conversation_id"], "linked_at": link["linked_at"]} for link in links
            ],
        }

    def for_conversation(
        self, tenant_id: str, conversation_id: str | UUID
    ) -> builtins.list[dict[str, Any]]:
        """The tickets a conversation is linked to, most recently updated first."""
        rows = self.connect().execute(
            "SELECT t.* FROM ticket_conversations l JOIN tickets t ON t.id = l.ticket_id "
            "WHERE l.tenant_id = ? AND l.conversation_id = ? AND t.tenant_id = l.tenant_id "
            "ORDER BY t.updated_at DESC, t.id DESC",
            (tenant_id, str(conversation_id)),
        )
        return [_ticket(r) for r in rows]

    def counts(self, tenant_id: str, *, assignee: str | UUID | None = None) -> dict[str, int]:
        """How many tickets in each status (the tabs of a ticket list), for one assignee
        or the whole tenant."""
        where, params = "tenant_id = ?", [tenant_id]
        if assignee is not None:
            where, params = where + " AND assignee = ?", [*params, str(assignee)]
        rows = self.connect().execute(
            f"SELECT status, count(*) FROM tickets WHERE {where} GROUP BY status ORDER BY status",
            params,
        )
        return {status: n for status, n in rows}

    def list(
        self,
        tenant_id: str,
        *,
        status: str | Iterable[str] | None = None,
        priority: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        assignee: str | UUID | None = None,
        unassigned: bool = False,
        customer_id: str | UUID | Iterable[str | UUID] | None = None,
        text: str | None = None,
        sla: str | Iterable[str] | None = None,
        now: datetime | None = None,
        order: Order = "updated",
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[dict[str, Any]]:
        """Tickets matching every filter given; `text` is found in the title, `sla` is
        one or more of SLA_STATES (at `now`, by default the present), `customer_id` one
        customer or several (a customer and those merged into it).

        `order`: "updated" (default, newest change first), "created" (newest first),
        "priority" (urgent first, then newest change) or "due" (the running SLA clock
        due soonest first). Every row carries its `sla_state` at `now`.
        """
        at = iso(now or datetime.now(UTC))
        where = ["tenant_id = ?"]
        params: builtins.list[Any] = [tenant_id]
        one_of("status", status, where, params)
        one_of("priority", priority, where, params)
        one_of("kind", kind, where, params)
        if assignee is not None:
            where.append("assignee = ?")
            params.append(str(assignee))
        if unassigned:
            where.append("assignee IS NULL")
        if customer_id is not None:
            customers = [customer_id] if isinstance(customer_id, str | UUID) else list(customer_id)
            one_of("customer_id", [str(c) for c in customers], where, params)
        if text:
            where.append("title LIKE ? ESCAPE '\\'")
            params.append(f"%{like_escaped(text)}%")
        if sla is not None:
            states = [sla] if isinstance(sla, str) else builtins.list(sla)
            where.append(f"({_SLA_STATE}) IN ({', '.join('?' * len(states))})")
            params += [at] * _SLA_STATE_PARAMS + states
        rows = self.connect().execute(
            f"SELECT *, {_SLA_STATE} AS sla_state FROM tickets WHERE {' AND '.join(where)} "
            f"ORDER BY {_ORDER_BY[order]} LIMIT ? OFFSET ?",
            ([at] * _SLA_STATE_PARAMS + params + [limit, offset]),
        )
        return [{**_ticket(r), "sla_state": r["sla_state"]} for r in rows]


_Change = Callable[[TicketsReadModel, sqlite3.Connection, sqlite3.Row, Any], dict[str, Any]]


def _fields(
    change: Callable[[sqlite3.Row, Any], dict[str, Any]],
) -> _Change:
    """A change that sets columns of the ticket's row only."""
    return lambda model, db, row, event: change(row, event)


def _status(row: sqlite3.Row, event: Any) -> dict[str, Any]:
    status = str(event.status)
    at = iso(event.timestamp)
    values: dict[str, Any] = {"status": status, "status_changed_at": at}
    if status == "resolved":
        values["resolved_at"] = at
    elif status == "closed":
        values["closed_at"] = at
    elif status == "open" and row["status"] == "resolved":
        values["resolved_at"] = None  # reopened: no longer resolved
    return values


_CHANGES: dict[type, _Change] = {
    Ticket.Edited: _fields(lambda r, e: {"title": e.title, "description": e.description}),
    Ticket.KindChanged: _fields(lambda r, e: {"kind": str(e.kind)}),
    Ticket.CustomerChanged: TicketsReadModel._customer_changed,
    Ticket.StatusChanged: _fields(_status),
    Ticket.PriorityChanged: _fields(
        lambda r, e: {
            "priority": str(e.priority),
            "priority_rank": PRIORITY_RANK[Priority(e.priority)],
        }
    ),
    Ticket.Assigned: _fields(lambda r, e: {"assignee": str(e.agent_id)}),
    Ticket.Unassigned: _fields(lambda r, e: {"assignee": None}),
    Ticket.ConversationLinked: TicketsReadModel._linked,
    Ticket.ConversationUnlinked: TicketsReadModel._unlinked,
    Ticket.Commented: TicketsReadModel._commented,
    Ticket.SlaPolicySet: _fields(lambda r, e: {"sla_policy_id": _str(e.policy_id)}),
}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else iso(at)


def _clock_state(r: sqlite3.Row, now: str) -> dict[str, Any]:
    """One clock as a page shows it, at `now` (read-model time text)."""
    status = r["status"]
    running, paused = status == "running", status == "paused"
    state = status
    if running or paused:
        if r["breached_at"] is not None or (running and r["due_at"] and r["due_at"] <= now):
            state = "breached"
        elif r["warned_at"] is not None or (running and r["warn_at"] and r["warn_at"] <= now):
            state = "paused" if paused else "at_risk"
    return {
        "metric": r["metric"],
        "status": status,
        "state": state,
        "paused": paused,
        "started_at": r["started_at"],
        "warn_at": r["warn_at"],
        "due_at": r["due_at"],
        "warned_at": r["warned_at"],
        "breached_at": r["breached_at"],
        "ended_at": r["ended_at"],
        "target_seconds": r["target_seconds"],
        "remaining_seconds": r["target_seconds"] - r["used_seconds"] if paused else None,
    }


def _ticket(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "title": row["title"],
        "kind": row["kind"],
        "priority": row["priority"],
        "status": row["status"],
        "customer_id": row["customer_id"],
        "assignee": row["assignee"],
        "sla_policy_id": row["sla_policy_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "status_changed_at": row["status_changed_at"],
        "resolved_at": row["resolved_at"],
        "closed_at": row["closed_at"],
        "comment_count": row["comment_count"],
        "public_comment_count": row["public_comment_count"],
        "last_comment_at": row["last_comment_at"],
        "conversation_count": row["conversation_count"],
        "version": row["version"],
    }
