"""A customer's timeline across channels (CT12, CC2, CC5): everything that happened with
them, newest first, in one list.

One entry per thing that happened: a message in or out on any channel, an internal note,
a call with its outcome and duration, a note on a call (CC6), a ticket raised, solved,
closed or reopened, a ticket comment. Each upstream stream writes its own tables only; who an entry belongs to
is decided when the timeline is read:

- a conversation's entries belong to the conversation's customer, a ticket's to the
  ticket's current customer (`CustomerChanged` moves them all);
- a merged customer (CT11) is followed to its survivor, and the survivor's timeline holds
  the entries of every customer merged into it (`merges`, from the customers stream);
- a call carries the customer's number, not a customer: it belongs to every live
  customer of the tenant that has that number as a phone identity, compared in the form
  domain.phones stores (so "0901 234 567" on the switch is +84901234567). Two customers
  sharing a number both see the call — that is what merging them resolves.

Entries are ordered by time, then by a key unique to the entry (`cursor` = "time|key"),
so that paging with `before` neither skips nor repeats entries of the same instant.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from domain.calls import Call
from domain.conversations import Conversation
from domain.customers import Customer
from domain.phones import InvalidPhoneNumber, normalize_phone_number
from domain.tickets import Ticket, TicketStatus
from projections.readmodel import SqliteReadModel
from projections.sql import iso

# Long enough to recognise a message in a list; the conversation holds the rest.
PREVIEW = 300

_TICKET_STATUS_ENTRIES = {
    TicketStatus.RESOLVED.value: "ticket_solved",
    TicketStatus.CLOSED.value: "ticket_closed",
}

# The columns every kind of entry is read as, in this order (see `_entry`).
_COLUMNS = (
    "at, key, kind, source, source_id, customer_id, channel, direction, text, agent_id, "
    "outcome, duration_seconds, customer_number, public"
)


class TimelineReadModel(SqliteReadModel):
    """Entries per conversation, call and ticket; customers and merges to join them by."""

    name = "timeline"
    upstreams = ("customers", "conversations", "calls", "tickets")
    schema = (
        # From the customers stream.
        """CREATE TABLE IF NOT EXISTS customers (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS identities (
            customer_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            PRIMARY KEY (customer_id, kind, value)
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS identities_by_value ON identities (tenant_id, kind, value)",
        """CREATE TABLE IF NOT EXISTS merges (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            merged_into TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS merges_by_survivor ON merges (merged_into)",
        # From the conversations stream.
        """CREATE TABLE IF NOT EXISTS conversations (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            channel TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS conversations_by_customer ON conversations (customer_id)",
        """CREATE TABLE IF NOT EXISTS conversation_entries (
            key TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            direction TEXT,
            text TEXT,
            agent_id TEXT
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS conversation_entries_by_conversation "
        "ON conversation_entries (conversation_id, at)",
        # From the calls stream: one entry per call with a customer.
        """CREATE TABLE IF NOT EXISTS calls (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            customer_number TEXT NOT NULL,
            direction TEXT NOT NULL,
            origin_leg_id TEXT NOT NULL,
            started_at TEXT NOT NULL,
            answered_at TEXT,
            agent_id TEXT,
            abandoned INTEGER NOT NULL DEFAULT 0,
            ended_at TEXT,
            outcome TEXT NOT NULL,
            duration_seconds REAL NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX IF NOT EXISTS calls_by_number ON calls (tenant_id, customer_number, started_at)",
        # Notes written on a call (CC6): entries of the call's customer(s) too.
        """CREATE TABLE IF NOT EXISTS call_notes (
            key TEXT PRIMARY KEY,
            call_id TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            at TEXT NOT NULL,
            text TEXT,
            agent_id TEXT
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS call_notes_by_call ON call_notes (call_id, at)",
        # Who answers is named by leg: the agent behind each agent leg.
        """CREATE TABLE IF NOT EXISTS call_agent_legs (
            call_id TEXT NOT NULL,
            leg_id TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            PRIMARY KEY (call_id, leg_id)
        ) WITHOUT ROWID""",
        # From the tickets stream.
        """CREATE TABLE IF NOT EXISTS tickets (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            customer_id TEXT,
            title TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS tickets_by_customer ON tickets (customer_id)",
        """CREATE TABLE IF NOT EXISTS ticket_entries (
            key TEXT PRIMARY KEY,
            ticket_id TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            text TEXT,
            agent_id TEXT,
            public INTEGER
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS ticket_entries_by_ticket ON ticket_entries (ticket_id, at)",
    )

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        if isinstance(event, Customer.Event):
            self._customer(db, event)
        elif isinstance(event, Conversation.Event):
            self._conversation(db, event)
        elif isinstance(event, Call.Event):
            self._call(db, event)
        elif isinstance(event, Ticket.Event):
            self._ticket(db, event)

    # --------------------------------------------------------------- customers stream
    def _customer(self, db: sqlite3.Connection, event: Any) -> None:
        cid = str(event.originator_id)
        if isinstance(event, Customer.Registered):
            db.execute("INSERT INTO customers VALUES (?, ?)", (cid, event.tenant_id))
            self._add_identities(db, event.tenant_id, cid, event.identities)
            # Calls from its numbers before it was registered are its own now.
            self.changed(event.tenant_id, "timeline", cid)
            return
        row = db.execute("SELECT tenant_id FROM customers WHERE id = ?", (cid,)).fetchone()
        if row is None:
            return
        tenant = row[0]
        if isinstance(event, Customer.IdentityAdded):
            self._add_identities(db, tenant, cid, [(event.kind, event.value)])
        elif isinstance(event, Customer.IdentityRemoved):
            db.execute(
                "DELETE FROM identities WHERE customer_id = ? AND kind = ? AND value = ?",
                (cid, event.kind, _identity_value(event.kind, event.value)),
            )
        elif isinstance(event, Customer.Absorbed):
            self._add_identities(db, tenant, cid, event.identities)
        elif isinstance(event, Customer.MergedInto | Customer.Redirected):
            # The source's identities are the survivor's now (Absorbed, same save): a
            # call to one of its numbers belongs to the survivor alone.
            db.execute("DELETE FROM identities WHERE customer_id = ?", (cid,))
            db.execute(
                "INSERT INTO merges VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET merged_into = excluded.merged_into",
                (cid, tenant, str(event.target_id)),
            )
            # Entries that were the source's now show on the survivor's timeline.
            self.changed(tenant, "timeline", str(event.target_id))
            return
        else:
            return
        self.changed(tenant, "timeline", cid)

    @staticmethod
    def _add_identities(
        db: sqlite3.Connection, tenant: str, cid: str, identities: Iterable[Iterable[str]]
    ) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO identities VALUES (?, ?, ?, ?)",
            [(cid, kind, _identity_value(kind, value), tenant) for kind, value in identities],
        )

    # ----------------------------------------------------------- conversations stream
    def _conversation(self, db: sqlite3.Connection, event: Any) -> None:
        conversation_id = str(event.originator_id)
        if isinstance(event, Conversation.Started):
            db.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?)",
                (conversation_id, event.tenant_id, str(event.customer_id), str(event.channel)),
            )
            return
        entry: tuple[str, str | None, str, Any, datetime]
        if isinstance(event, Conversation.MessageReceived):
            entry = ("message_in", "inbound", event.body, None, event.at)
        elif isinstance(event, Conversation.MessageSent):
            entry = ("message_out", "outbound", event.body, event.agent_id, event.at)
        elif isinstance(event, Conversation.NoteAdded):
            entry = ("note", None, event.body, event.author_id, event.timestamp)
        else:
            return
        row = db.execute(
            "SELECT tenant_id, customer_id FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            return
        kind, direction, body, agent, at = entry
        db.execute(
            "INSERT INTO conversation_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _key("c", conversation_id, event.originator_version),
                conversation_id,
                row[0],
                iso(at),
                kind,
                direction,
                _preview(body),
                _str(agent),
            ),
        )
        self._note_customers(db, row[0], [row[1]])

    # ------------------------------------------------------------------- calls stream
    def _call(self, db: sqlite3.Connection, event: Any) -> None:
        call_id = str(event.originator_id)
        if isinstance(event, Call.Started):
            if event.customer_number is None:
                return  # an internal call: no customer's timeline
            db.execute(
                "INSERT INTO calls (id, tenant_id, customer_number, direction, origin_leg_id, "
                "started_at, outcome) VALUES (?, ?, ?, ?, ?, ?, 'in_progress')",
                (
                    call_id,
                    event.tenant_id,
                    phone_key(event.customer_number),
                    str(event.direction),
                    event.legs[0]["leg_id"],
                    iso(event.at),
                ),
            )
            self._add_agent_legs(db, call_id, event.legs)
            self._note_call(db, call_id)
            return
        row = db.execute(
            "SELECT origin_leg_id, answered_at, abandoned FROM calls WHERE id = ?", (call_id,)
        ).fetchone()
        if row is None:
            return
        origin, answered_at, abandoned = row
        if isinstance(event, Call.AgentRang):
            self._add_agent_legs(db, call_id, [event.leg])
        elif isinstance(event, Call.TransferRequested):
            self._add_agent_legs(db, call_id, [event.consult_leg])
        elif isinstance(event, Call.Transferred):
            self._add_agent_legs(db, call_id, [event.to_leg])
        elif isinstance(event, Call.Answered):
            # The call is answered by the first leg other than the one that placed it.
            if answered_at is not None or event.leg_id == origin:
                return
            # The agent who answered, or on an outbound call the agent who placed it
            # (the customer's leg is the one that answers).
            agent = db.execute(
                "SELECT agent_id FROM call_agent_legs WHERE call_id = ? AND leg_id IN (?, ?) "
                "ORDER BY leg_id = ? DESC LIMIT 1",
                (call_id, event.leg_id, origin, event.leg_id),
            ).fetchone()
            db.execute(
                "UPDATE calls SET answered_at = ?, agent_id = ? WHERE id = ?",
                (iso(event.at), agent[0] if agent else None, call_id),
            )
            self._note_call(db, call_id)
        elif isinstance(event, Call.Abandoned):
            db.execute("UPDATE calls SET abandoned = 1 WHERE id = ?", (call_id,))
        elif isinstance(event, Call.NoteAdded):
            db.execute(
                "INSERT INTO call_notes VALUES (?, ?, "
                "(SELECT tenant_id FROM calls WHERE id = ?), ?, ?, ?)",
                (
                    _key("n", call_id, event.originator_version),
                    call_id,
                    call_id,
                    iso(event.at),
                    _preview(event.body),
                    _str(event.author_id),
                ),
            )
            self._note_call(db, call_id)
        elif isinstance(event, Call.Ended):
            if answered_at is not None:
                outcome = "answered"
                duration = max(
                    0.0, (event.at - datetime.fromisoformat(answered_at)).total_seconds()
                )
            else:
                outcome, duration = ("abandoned" if abandoned else "unanswered"), 0.0
            db.execute(
                "UPDATE calls SET ended_at = ?, outcome = ?, duration_seconds = ? WHERE id = ?",
                (iso(event.at), outcome, duration, call_id),
            )
            self._note_call(db, call_id)

    @staticmethod
    def _add_agent_legs(
        db: sqlite3.Connection, call_id: str, legs: Iterable[dict[str, Any]]
    ) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO call_agent_legs VALUES (?, ?, ?)",
            [
                (call_id, leg["leg_id"], str(leg["user_id"]))
                for leg in legs
                if leg["party"] == "agent" and leg["user_id"] is not None
            ],
        )

    def _note_call(self, db: sqlite3.Connection, call_id: str) -> None:
        tenant, number = db.execute(
            "SELECT tenant_id, customer_number FROM calls WHERE id = ?", (call_id,)
        ).fetchone()
        owners = db.execute(
            "SELECT customer_id FROM identities WHERE tenant_id = ? AND kind = 'phone' "
            "AND value = ?",
            (tenant, number),
        )
        self._note_customers(db, tenant, [r[0] for r in owners])

    # ----------------------------------------------------------------- tickets stream
    def _ticket(self, db: sqlite3.Connection, event: Any) -> None:
        ticket_id = str(event.originator_id)
        if isinstance(event, Ticket.Raised):
            db.execute(
                "INSERT INTO tickets VALUES (?, ?, ?, ?)",
                (ticket_id, event.tenant_id, _str(event.customer_id), event.title),
            )
            self._ticket_entry(db, event, event.tenant_id, "ticket_raised", event.description)
            self._note_customers(db, event.tenant_id, [_str(event.customer_id)])
            return
        row = db.execute(
            "SELECT tenant_id, customer_id FROM tickets WHERE id = ?", (ticket_id,)
        ).fetchone()
        if row is None:
            return
        tenant, customer = row
        if isinstance(event, Ticket.Edited):
            db.execute("UPDATE tickets SET title = ? WHERE id = ?", (event.title, ticket_id))
        elif isinstance(event, Ticket.CustomerChanged):
            db.execute(
                "UPDATE tickets SET customer_id = ? WHERE id = ?",
                (_str(event.customer_id), ticket_id),
            )
            self._note_customers(db, tenant, [customer, _str(event.customer_id)])
            return
        elif isinstance(event, Ticket.StatusChanged):
            status, previous = str(event.status), str(event.previous)
            if status in _TICKET_STATUS_ENTRIES:
                kind = _TICKET_STATUS_ENTRIES[status]
            elif status == TicketStatus.OPEN.value and previous == TicketStatus.RESOLVED.value:
                kind = "ticket_reopened"
            else:
                return
            self._ticket_entry(db, event, tenant, kind, None)
        elif isinstance(event, Ticket.Commented):
            self._ticket_entry(
                db, event, tenant, "ticket_comment", event.body, event.author_id, event.public
            )
        else:
            return
        self._note_customers(db, tenant, [customer])

    @staticmethod
    def _ticket_entry(
        db: sqlite3.Connection,
        event: Any,
        tenant: str,
        kind: str,
        text: str | None,
        author: Any = None,
        public: bool | None = None,
    ) -> None:
        ticket_id = str(event.originator_id)
        db.execute(
            "INSERT INTO ticket_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _key("t", ticket_id, event.originator_version),
                ticket_id,
                tenant,
                iso(event.timestamp),
                kind,
                _preview(text) or None,
                _str(author),
                None if public is None else int(public),
            ),
        )

    def _note_customers(
        self, db: sqlite3.Connection, tenant: str, customer_ids: Iterable[str | None]
    ) -> None:
        """Note the timelines to refresh: each customer's, or its survivor's if merged.

        Reading the customers stream's rows here only picks whom to notify; the tables
        written stay this stream's alone.
        """
        for cid in dict.fromkeys(c for c in customer_ids if c is not None):
            survivor = db.execute("SELECT merged_into FROM merges WHERE id = ?", (cid,)).fetchone()
            self.changed(tenant, "timeline", survivor[0] if survivor else cid)

    # -------------------------------------------------------------------------- query
    def for_customer(
        self,
        tenant_id: str,
        customer_id: str,
        limit: int = 100,
        before: str | datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The customer's timeline, newest first, merged customers' entries included.

        A merged customer's id gives its survivor's timeline. `before` is an entry's
        `cursor` (the next page starts after that entry) or a time (entries older than it).
        """
        db = self.connect()
        survivor = db.execute(
            "SELECT merged_into FROM merges WHERE tenant_id = ? AND id = ?",
            (tenant_id, customer_id),
        ).fetchone()
        if survivor is not None:
            customer_id = survivor[0]
        members = [customer_id] + [
            r[0]
            for r in db.execute(
                "SELECT id FROM merges WHERE merged_into = ? AND tenant_id = ?",
                (customer_id, tenant_id),
            )
        ]
        at, key = _cursor(before)
        marks = ", ".join("?" * len(members))
        # Each part is cut at the page's limit by its own index before the merge.
        page = "(at < ? OR (at = ? AND key < ?))"
        rows = db.execute(
            f"""
            SELECT {_COLUMNS} FROM (
                SELECT e.at, e.key, e.kind, 'conversation' AS source,
                    e.conversation_id AS source_id, c.customer_id, c.channel, e.direction,
                    e.text, e.agent_id, NULL AS outcome, NULL AS duration_seconds,
                    NULL AS customer_number, NULL AS public
                FROM conversations c JOIN conversation_entries e ON e.conversation_id = c.id
                WHERE c.customer_id IN ({marks}) AND c.tenant_id = ? AND {page}
                ORDER BY e.at DESC, e.key DESC LIMIT ?
            )
            UNION ALL
            SELECT {_COLUMNS} FROM (
                SELECT started_at AS at, 'k:' || id AS key, 'call' AS kind, 'call' AS source,
                    id AS source_id, i.customer_id, 'call' AS channel, direction,
                    NULL AS text, agent_id, outcome, duration_seconds, customer_number,
                    NULL AS public
                FROM identities i JOIN calls ON calls.tenant_id = i.tenant_id
                    AND calls.customer_number = i.value
                WHERE i.customer_id IN ({marks}) AND i.kind = 'phone' AND i.tenant_id = ?
                    AND (started_at < ? OR (started_at = ? AND 'k:' || id < ?))
                ORDER BY at DESC, key DESC LIMIT ?
            )
            UNION ALL
            SELECT {_COLUMNS} FROM (
                SELECT n.at, n.key, 'call_note' AS kind, 'call' AS source,
                    n.call_id AS source_id, i.customer_id, 'call' AS channel, calls.direction,
                    n.text, n.agent_id, NULL AS outcome, NULL AS duration_seconds,
                    calls.customer_number, NULL AS public
                FROM identities i JOIN calls ON calls.tenant_id = i.tenant_id
                    AND calls.customer_number = i.value
                    JOIN call_notes n ON n.call_id = calls.id
                WHERE i.customer_id IN ({marks}) AND i.kind = 'phone' AND i.tenant_id = ?
                    AND (n.at < ? OR (n.at = ? AND n.key < ?))
                ORDER BY n.at DESC, n.key DESC LIMIT ?
            )
            UNION ALL
            SELECT {_COLUMNS} FROM (
                SELECT e.at, e.key, e.kind, 'ticket' AS source, e.ticket_id AS source_id,
                    t.customer_id, NULL AS channel, NULL AS direction,
                    CASE WHEN e.kind = 'ticket_comment' THEN e.text
                        ELSE t.title || coalesce(': ' || e.text, '') END AS text,
                    e.agent_id, NULL AS outcome, NULL AS duration_seconds,
                    NULL AS customer_number, e.public
                FROM tickets t JOIN ticket_entries e ON e.ticket_id = t.id
                WHERE t.customer_id IN ({marks}) AND t.tenant_id = ? AND {page}
                ORDER BY e.at DESC, e.key DESC LIMIT ?
            )
            ORDER BY at DESC, key DESC LIMIT ?
            """,
            (
                *(*members, tenant_id, at, at, key, limit) * 4,
                limit,
            ),
        )
        return [_entry(r) for r in rows]


def phone_key(number: str) -> str:
    """A number in the one form calls and identities are matched in (domain.phones);
    one that is no phone number is matched as written."""
    try:
        return normalize_phone_number(number)
    except InvalidPhoneNumber:
        return number.strip()


def _identity_value(kind: str, value: str) -> str:
    # The domain stores phones normalised; identities from before it did are too, here.
    return phone_key(value) if kind == "phone" else value


def _key(prefix: str, originator_id: str, version: int) -> str:
    # Zero-padded so that text order is version order within one aggregate.
    return f"{prefix}:{originator_id}:{version:010d}"


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _preview(text: str | None) -> str | None:
    return None if text is None else text[:PREVIEW]


def _cursor(before: str | datetime | None) -> tuple[str, str]:
    """(time, key) to page before; entries of that time with a smaller key come too."""
    if before is None:
        return "9999", ""  # after every ISO time
    if isinstance(before, datetime):
        return iso(before), ""
    at, bar, key = before.partition("|")
    if not bar:
        return iso(datetime.fromisoformat(at)), ""
    return at, key


def _entry(row: sqlite3.Row) -> dict[str, Any]:
    entry = dict(row)
    entry["cursor"] = f"{entry['at']}|{entry.pop('key')}"
    if entry["public"] is not None:
        entry["public"] = bool(entry["public"])
    return entry
