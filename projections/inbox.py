"""The inbox read model (CT2, CC3): each agent's and each queue's conversations, and live calls.

Conversations come from the "conversations" stream: one row each, with what an inbox
line shows (channel, status, customer, assignee, queue, subject, a preview of the last
message, counts, tags, whether the customer waits for a reply). Lists are ordered by the
last activity: a message in or out, a note, a status change or a hand-over (assign,
transfer, unassign, move to a queue). Tagging is bookkeeping and does not bump a line.

Calls in progress come from the "calls" stream, in tables of their own (the one-stream
rule of projections.readmodel): the calls waiting in a queue, and the calls an agent is
ringing on or talking in. An ended call leaves them; the call log keeps the history.

A conversation's SLA clocks (CC22) come from the "sla_clocks" stream, one row per clock
(`conversation_sla_clocks`), and are combined with the conversation when it is read: its
`sla_state` is "breached" once any clock was breached (an answer that came late was
still late), else "at_risk" while a clock that is still counting was warned, else
"on_time"; None when it has no clock (no SLA covers it).

Live-update kinds (`changed`): "conversation" (key: conversation id) for every change of
a row; "agent_inbox" / "queue_inbox" (key: agent or queue id) for the lists a change adds
a row to, removes it from or reorders; "live_call" (call id), "agent_calls" (agent or
supervisor id) and "queue_calls" (queue id) for calls in progress; "conversation_sla"
(conversation id) when one of its SLA clocks changes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

import msgspec

from domain.calls import Call
from domain.conversations import Conversation
from domain.sla_clocks import SlaClock, SubjectKind
from projections.readmodel import SqliteReadModel
from projections.sql import change_row, iso, one_of

PREVIEW = 200  # characters of the last message an inbox line shows
SLA_STATES = ("on_time", "at_risk", "breached")

# A conversation's SLA state from its clocks, at query time (one stream per row: the
# clocks' rows are the sla_clocks stream's, the conversation's row the conversations').
_SLA_STATE = (
    "(SELECT CASE WHEN count(*) = 0 THEN NULL "
    "WHEN max(s.breached) = 1 THEN 'breached' "
    "WHEN max(s.warned AND NOT s.finished) = 1 THEN 'at_risk' "
    "ELSE 'on_time' END FROM conversation_sla_clocks s "
    "WHERE s.conversation_id = conversations.id AND s.tenant_id = conversations.tenant_id)"
)

# The orders of a list of conversations: the inbox's, and a queue's waits'.
_NEWEST_ACTIVITY = "last_activity_at DESC, id DESC"
_LONGEST_WAITING = "COALESCE(waiting_since, started_at), id"

# msgspec over the stdlib: tags are re-encoded on every tag event of a rebuild.
_json = msgspec.json.Encoder()

# A row's primary key is its id alone: ids are unique across tenants, and later events
# carry only the id. Every query still names the tenant, so no row crosses the wall.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        direction TEXT NOT NULL,
        status TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        assignee TEXT,
        queue_id TEXT,
        subject TEXT,
        thread_key TEXT,
        started_at TEXT NOT NULL,
        last_activity_at TEXT NOT NULL,
        last_message_at TEXT,
        last_message_direction TEXT,
        last_message_preview TEXT,
        last_message_agent_id TEXT,
        last_message_attachments INTEGER NOT NULL,
        message_count INTEGER NOT NULL,
        waiting_since TEXT,
        first_response_at TEXT,
        note_count INTEGER NOT NULL,
        tags TEXT NOT NULL,
        status_changed_at TEXT,
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    # The two inbox lists, each read newest first within one tenant.
    """CREATE INDEX IF NOT EXISTS conversations_by_agent
        ON conversations (tenant_id, assignee, last_activity_at DESC)""",
    """CREATE INDEX IF NOT EXISTS conversations_by_queue
        ON conversations (tenant_id, queue_id, last_activity_at DESC)""",
    """CREATE TABLE IF NOT EXISTS live_calls (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        direction TEXT NOT NULL,
        hotline TEXT,
        customer_number TEXT,
        origin_leg_id TEXT NOT NULL,
        queue_id TEXT,
        started_at TEXT NOT NULL,
        offered_at TEXT,
        answered_at TEXT,
        held INTEGER NOT NULL,
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS live_calls_by_queue ON live_calls (tenant_id, queue_id, offered_at)",
    # Only legs of a tenant's users (agents, supervisors): customers have no inbox.
    """CREATE TABLE IF NOT EXISTS live_call_legs (
        call_id TEXT NOT NULL,
        leg_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        party TEXT NOT NULL,
        rang_at TEXT NOT NULL,
        answered_at TEXT,
        PRIMARY KEY (call_id, leg_id)
    )""",
    "CREATE INDEX IF NOT EXISTS live_call_legs_by_user ON live_call_legs (tenant_id, user_id)",
    # A conversation's SLA clocks (first response, resolution): flags only, what a list
    # filters and shows; the countdown is projections.sla_timers'.
    """CREATE TABLE IF NOT EXISTS conversation_sla_clocks (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        warned INTEGER NOT NULL,
        breached INTEGER NOT NULL,
        finished INTEGER NOT NULL,
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS conversation_sla_clocks_by_conversation
        ON conversation_sla_clocks (conversation_id, tenant_id)""",
)


class InboxReadModel(SqliteReadModel):
    """Conversations per agent and per queue (with their SLA state), and the calls in
    progress, per tenant."""

    name = "inbox"
    upstreams = ("conversations", "calls", "sla_clocks")
    schema = _SCHEMA

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        kind = type(event)
        if kind is Conversation.Started:
            self._conversation_started(db, event)
        elif kind in _CONVERSATION_CHANGES:
            self._change_conversation(db, event, _CONVERSATION_CHANGES[kind])
        elif kind in _CALL_HANDLERS:
            _CALL_HANDLERS[kind](self, db, event)
        elif kind is SlaClock.Started:
            self._clock_started(db, event)
        elif kind in _CLOCK_FLAGS:
            self._clock_changed(db, event, _CLOCK_FLAGS[kind])

    # ------------------------------------------------------------------ conversations
    def _conversation_started(self, db: sqlite3.Connection, event: Any) -> None:
        cid = str(event.originator_id)
        at = iso(event.at)
        queue_id = _str(event.queue_id)
        db.execute(
            "INSERT INTO conversations VALUES "
            "(?, ?, ?, ?, 'open', ?, NULL, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, 0, 0, NULL, "
            "NULL, 0, '[]', NULL, ?, ?)",
            (
                cid,
                event.tenant_id,
                str(event.channel),
                str(event.direction),
                str(event.customer_id),
                queue_id,
                event.subject,
                event.thread_key,
                at,
                at,
                event.originator_version,
                iso(event.timestamp),
            ),
        )
        self.changed(event.tenant_id, "conversation", cid)
        if queue_id is not None:
            self.changed(event.tenant_id, "queue_inbox", queue_id)

    def _change_conversation(
        self,
        db: sqlite3.Connection,
        event: Any,
        change: Callable[[sqlite3.Row, Any], dict[str, Any]],
    ) -> None:
        cid = str(event.originator_id)
        done = change_row(
            db, "conversations", event, lambda row: change(row, event), iso(event.timestamp)
        )
        if done is None:
            return
        row, values = done
        tenant = row["tenant_id"]
        self.changed(tenant, "conversation", cid)
        for agent in {row["assignee"], values.get("assignee", row["assignee"])} - {None}:
            self.changed(tenant, "agent_inbox", agent)
        for queue in {row["queue_id"], values.get("queue_id", row["queue_id"])} - {None}:
            self.changed(tenant, "queue_inbox", queue)

    # ------------------------------------------------------------------ SLA clocks
    def _clock_started(self, db: sqlite3.Connection, event: Any) -> None:
        if str(event.subject_kind) != SubjectKind.CONVERSATION.value:
            return  # a ticket's: the tickets read model's business
        cid = str(event.subject_id)
        db.execute(
            "INSERT INTO conversation_sla_clocks VALUES (?, ?, ?, ?, 0, 0, 0, ?, ?)",
            (
                str(event.originator_id),
                event.tenant_id,
                cid,
                str(event.metric),
                event.originator_version,
                iso(event.timestamp),
            ),
        )
        self.changed(event.tenant_id, "conversation_sla", cid)

    def _clock_changed(self, db: sqlite3.Connection, event: Any, flag: str | None) -> None:
        done = change_row(
            db,
            "conversation_sla_clocks",
            event,
            lambda row: {flag: 1} if flag is not None else {},
            iso(event.timestamp),
        )
        if done is not None:
            row = done[0]
            self.changed(row["tenant_id"], "conversation_sla", row["conversation_id"])

    # ------------------------------------------------------------------ live calls
    def _call_started(self, db: sqlite3.Connection, event: Any) -> None:
        call_id = str(event.originator_id)
        at = iso(event.at)
        db.execute(
            "INSERT INTO live_calls VALUES (?, ?, ?, ?, ?, ?, NULL, ?, NULL, NULL, 0, ?, ?)",
            (
                call_id,
                event.tenant_id,
                str(event.direction),
                event.hotline,
                event.customer_number,
                event.legs[0]["leg_id"],
                at,
                event.originator_version,
                at,
            ),
        )
        self.changed(event.tenant_id, "live_call", call_id)
        for leg in event.legs:
            self._add_leg(db, event.tenant_id, call_id, leg, at)

    def _add_leg(
        self, db: sqlite3.Connection, tenant: str, call_id: str, leg: dict[str, Any], at: str
    ) -> None:
        if leg["user_id"] is None:
            return
        user = str(leg["user_id"])
        db.execute(
            "INSERT OR IGNORE INTO live_call_legs VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (call_id, leg["leg_id"], tenant, user, str(leg["party"]), at),
        )
        self.changed(tenant, "agent_calls", user)

    def _drop_leg(self, db: sqlite3.Connection, tenant: str, call_id: str, leg_id: str) -> None:
        row = db.execute(
            "DELETE FROM live_call_legs WHERE call_id = ? AND leg_id = ? RETURNING user_id",
            (call_id, leg_id),
        ).fetchone()
        if row is not None:
            self.changed(tenant, "agent_calls", row[0])

    def _live_call(self, db: sqlite3.Connection, event: Any) -> sqlite3.Row | None:
        """The call's row, its version and time moved on; None once the call ended."""
        call_id = str(event.originator_id)
        row = db.execute("SELECT * FROM live_calls WHERE id = ?", (call_id,)).fetchone()
        if row is None:
            return None  # ended (a recording stored afterwards), or never started
        db.execute(
            "UPDATE live_calls SET version = ?, updated_at = ? WHERE id = ?",
            (event.originator_version, iso(event.at), call_id),
        )
        self.changed(row["tenant_id"], "live_call", call_id)
        return row

    def _call_offered(self, db: sqlite3.Connection, event: Any) -> None:
        row = self._live_call(db, event)
        if row is None:
            return
        queue = str(event.queue_id)
        db.execute(
            "UPDATE live_calls SET queue_id = ?, offered_at = coalesce(offered_at, ?) WHERE id = ?",
            (queue, iso(event.at), row["id"]),
        )
        for changed in {row["queue_id"], queue} - {None}:
            self.changed(row["tenant_id"], "queue_calls", changed)

    def _call_leg_added(self, db: sqlite3.Connection, event: Any) -> None:
        row = self._live_call(db, event)
        if row is None:
            return
        if type(event) is Call.Transferred:
            self._drop_leg(db, row["tenant_id"], row["id"], event.from_leg_id)
            # The one who held the customer has left: the aggregate ends the hold too.
            self._unhold(db, row)
        self._add_leg(db, row["tenant_id"], row["id"], _NEW_LEG[type(event)](event), iso(event.at))

    def _call_leg_left(self, db: sqlite3.Connection, event: Any) -> None:
        row = self._live_call(db, event)
        if row is not None:
            leg_id = event.consult_leg_id if type(event) is Call.TransferCancelled else event.leg_id
            self._drop_leg(db, row["tenant_id"], row["id"], leg_id)

    def _call_answered(self, db: sqlite3.Connection, event: Any) -> None:
        row = self._live_call(db, event)
        if row is None:
            return
        at = iso(event.at)
        leg = db.execute(
            "UPDATE live_call_legs SET answered_at = coalesce(answered_at, ?) "
            "WHERE call_id = ? AND leg_id = ? RETURNING user_id",
            (at, row["id"], event.leg_id),
        ).fetchone()
        if leg is not None:
            self.changed(row["tenant_id"], "agent_calls", leg[0])
        if row["answered_at"] is None and event.leg_id != row["origin_leg_id"]:
            db.execute("UPDATE live_calls SET answered_at = ? WHERE id = ?", (at, row["id"]))
            # Answered calls no longer wait: the queue's list loses this one.
            if row["queue_id"] is not None:
                self.changed(row["tenant_id"], "queue_calls", row["queue_id"])

    def _call_held(self, db: sqlite3.Connection, event: Any) -> None:
        row = self._live_call(db, event)
        if row is not None and not row["held"]:
            db.execute("UPDATE live_calls SET held = 1 WHERE id = ?", (row["id"],))
            self._notify_agents(db, row)

    def _call_resumed(self, db: sqlite3.Connection, event: Any) -> None:
        # A conference joining ends the hold too, as in the aggregate.
        row = self._live_call(db, event)
        if row is not None:
            self._unhold(db, row)

    def _unhold(self, db: sqlite3.Connection, row: sqlite3.Row) -> None:
        if row["held"]:
            db.execute("UPDATE live_calls SET held = 0 WHERE id = ?", (row["id"],))
            self._notify_agents(db, row)

    def _call_touched(self, db: sqlite3.Connection, event: Any) -> None:
        # Nothing an inbox line shows, but the row follows the call's version.
        self._live_call(db, event)

    def _call_ended(self, db: sqlite3.Connection, event: Any) -> None:
        call_id = str(event.originator_id)
        row = db.execute(
            "DELETE FROM live_calls WHERE id = ? RETURNING tenant_id, queue_id", (call_id,)
        ).fetchone()
        if row is None:
            return
        tenant = row["tenant_id"]
        self.changed(tenant, "live_call", call_id)
        if row["queue_id"] is not None:
            self.changed(tenant, "queue_calls", row["queue_id"])
        users = db.execute(
            "DELETE FROM live_call_legs WHERE call_id = ? RETURNING user_id", (call_id,)
        ).fetchall()
        for user in sorted({u[0] for u in users}):
            self.changed(tenant, "agent_calls", user)

    def _notify_agents(self, db: sqlite3.Connection, row: sqlite3.Row) -> None:
        users = db.execute(
            "SELECT DISTINCT user_id FROM live_call_legs WHERE call_id = ?", (row["id"],)
        )
        for (user,) in users:
            self.changed(row["tenant_id"], "agent_calls", user)

    # ------------------------------------------------------------------ queries
    def get(self, tenant_id: str, conversation_id: str | UUID) -> dict[str, Any] | None:
        row = (
            self.connect()
            .execute(
                f"SELECT *, {_SLA_STATE} AS sla_state FROM conversations "
                "WHERE tenant_id = ? AND id = ?",
                (tenant_id, str(conversation_id)),
            )
            .fetchone()
        )
        return _conversation(row) if row else None

    def for_agent(
        self,
        tenant_id: str,
        agent_id: str | UUID,
        *,
        channel: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        tag: str | None = None,
        sla: str | Iterable[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """The agent's conversations, most recent activity first.

        `channel`, `status` and `sla` (SLA_STATES) take one value or several; None means
        any (closed ones included; with `sla`, those without an SLA too). `tag` is
        compared as the domain stores tags (lower case, single spaces).
        """
        where = ["tenant_id = ?", "assignee = ?"]
        params: list[Any] = [tenant_id, str(agent_id)]
        return self._list(where, params, channel, status, tag, limit, offset, sla)

    def for_queue(
        self,
        tenant_id: str,
        queue_id: str | UUID,
        *,
        channel: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        assigned: bool | None = None,
        tag: str | None = None,
        sla: str | Iterable[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        longest_waiting: bool = False,
    ) -> list[dict[str, Any]]:
        """The queue's conversations, most recent activity first; with `longest_waiting`,
        the longest-waiting first instead (waiting since, else started at: the order in
        which a queue's waits are owed an answer), before `limit` cuts the list.

        `assigned=False` keeps those nobody has taken yet (what an agent picks from),
        True those an agent holds; None both (a supervisor's view).
        """
        where = ["tenant_id = ?", "queue_id = ?"]
        params: list[Any] = [tenant_id, str(queue_id)]
        if assigned is not None:
            where.append("assignee IS NOT NULL" if assigned else "assignee IS NULL")
        order = _LONGEST_WAITING if longest_waiting else _NEWEST_ACTIVITY
        return self._list(where, params, channel, status, tag, limit, offset, sla, order)

    def for_tenant(
        self,
        tenant_id: str,
        *,
        channel: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        tag: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Every conversation of the tenant, most recent activity first (the API's list)."""
        return self._list(["tenant_id = ?"], [tenant_id], channel, status, tag, limit, offset)

    def _list(
        self,
        where: list[str],
        params: list[Any],
        channel: str | Iterable[str] | None,
        status: str | Iterable[str] | None,
        tag: str | None,
        limit: int,
        offset: int,
        sla: str | Iterable[str] | None = None,
        order: str = "",
    ) -> list[dict[str, Any]]:
        one_of("channel", channel, where, params)
        one_of("status", status, where, params)
        one_of(_SLA_STATE, sla, where, params)
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(conversations.tags) WHERE value = ?)")
            params.append(" ".join(tag.lower().split()))
        rows = self.connect().execute(
            f"SELECT *, {_SLA_STATE} AS sla_state FROM conversations "
            f"WHERE {' AND '.join(where)} "
            f"ORDER BY {order or _NEWEST_ACTIVITY} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [_conversation(r) for r in rows]

    def waiting_calls(
        self, tenant_id: str, queue_id: str | UUID, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Calls waiting in the queue, unanswered, the longest-waiting first (CC17)."""
        rows = self.connect().execute(
            "SELECT * FROM live_calls WHERE tenant_id = ? AND queue_id = ? "
            "AND answered_at IS NULL ORDER BY offered_at, id LIMIT ?",
            (tenant_id, str(queue_id), limit),
        )
        return [_live_call(r) for r in rows]

    def agent_calls(self, tenant_id: str, agent_id: str | UUID) -> list[dict[str, Any]]:
        """Calls the agent (or supervisor) is on now: ringing, talking or supervising."""
        rows = self.connect().execute(
            "SELECT c.*, l.leg_id AS leg_id, l.party AS party, l.rang_at AS leg_rang_at, "
            "l.answered_at AS leg_answered_at FROM live_call_legs l "
            "JOIN live_calls c ON c.id = l.call_id "
            "WHERE l.tenant_id = ? AND l.user_id = ? AND c.tenant_id = l.tenant_id "
            "ORDER BY l.rang_at DESC, c.id",
            (tenant_id, str(agent_id)),
        )
        return [
            {
                **_live_call(r),
                "leg_id": r["leg_id"],
                "party": r["party"],
                "leg_state": "connected" if r["leg_answered_at"] else "ringing",
                "leg_rang_at": r["leg_rang_at"],
                "leg_answered_at": r["leg_answered_at"],
            }
            for r in rows
        ]

    def live_calls(self, tenant_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """Every call of the tenant in progress, the oldest first, each with the legs of
        its users (`legs`: agents and supervisors, in the order they joined) — the
        supervisor's board (CC16, CC19)."""
        db = self.connect()
        calls = [
            {**_live_call(r), "legs": []}
            for r in db.execute(
                "SELECT * FROM live_calls WHERE tenant_id = ? ORDER BY started_at, id LIMIT ?",
                (tenant_id, limit),
            )
        ]
        by_id = {c["id"]: c for c in calls}
        for leg in db.execute(
            "SELECT * FROM live_call_legs WHERE tenant_id = ? ORDER BY rang_at, leg_id",
            (tenant_id,),
        ):
            if leg["call_id"] in by_id:
                by_id[leg["call_id"]]["legs"].append(
                    {
                        "leg_id": leg["leg_id"],
                        "user_id": leg["user_id"],
                        "party": leg["party"],
                        "rang_at": leg["rang_at"],
                        "answered_at": leg["answered_at"],
                    }
                )
        return calls


_CallHandler = Callable[[InboxReadModel, sqlite3.Connection, Any], None]

_CALL_HANDLERS: dict[type, _CallHandler] = {
    Call.Started: InboxReadModel._call_started,
    Call.Offered: InboxReadModel._call_offered,
    Call.AgentRang: InboxReadModel._call_leg_added,
    Call.TransferRequested: InboxReadModel._call_leg_added,
    Call.Transferred: InboxReadModel._call_leg_added,
    Call.SupervisionStarted: InboxReadModel._call_leg_added,
    Call.TransferCancelled: InboxReadModel._call_leg_left,
    Call.SupervisionEnded: InboxReadModel._call_leg_left,
    Call.LegHungUp: InboxReadModel._call_leg_left,
    Call.Answered: InboxReadModel._call_answered,
    Call.Held: InboxReadModel._call_held,
    Call.Resumed: InboxReadModel._call_resumed,
    Call.ConferenceJoined: InboxReadModel._call_resumed,
    Call.Ended: InboxReadModel._call_ended,
    **{
        kind: InboxReadModel._call_touched
        for kind in (
            Call.IvrStepTaken,
            Call.Muted,
            Call.Unmuted,
            Call.RecordingStarted,
            Call.RecordingStopped,
            Call.RecordingStored,
            Call.SupervisionModeChanged,
            Call.Abandoned,
            Call.ForceEnded,
        )
    },
}

# The leg an event brings onto the call.
_NEW_LEG: dict[type, Callable[[Any], dict[str, Any]]] = {
    Call.AgentRang: lambda e: e.leg,
    Call.TransferRequested: lambda e: e.consult_leg,
    Call.Transferred: lambda e: e.to_leg,
    Call.SupervisionStarted: lambda e: e.leg,
}


# ---------------------------------------------------------------------- conversation changes
# Each takes the row as it is and the event, and returns the columns to set.


def _message(row: sqlite3.Row, event: Any, direction: str) -> dict[str, Any]:
    at = iso(event.at)
    values: dict[str, Any] = {
        "message_count": row["message_count"] + 1,
        "last_activity_at": max(row["last_activity_at"], at),
    }
    # A fact delivered late (an older message) counts, but does not become the preview.
    if row["last_message_at"] is None or at >= row["last_message_at"]:
        values.update(
            last_message_at=at,
            last_message_direction=direction,
            last_message_preview=_preview(event.body),
            last_message_agent_id=_str(getattr(event, "agent_id", None)),
            last_message_attachments=len(event.attachments),
        )
    return values


def _received(row: sqlite3.Row, event: Any) -> dict[str, Any]:
    values = _message(row, event, "inbound")
    at = iso(event.at)
    if row["waiting_since"] is None or at < row["waiting_since"]:
        values["waiting_since"] = at
    return values


def _sent(row: sqlite3.Row, event: Any) -> dict[str, Any]:
    values = _message(row, event, "outbound")
    # Automation (no agent) is not an answer: the customer still waits for a person.
    if event.agent_id is not None:
        values["waiting_since"] = None
    if event.first_response:
        values["first_response_at"] = iso(event.at)
    return values


def _activity(row: sqlite3.Row, event: Any) -> str:
    return max(row["last_activity_at"], iso(event.timestamp))


def _status(row: sqlite3.Row, event: Any) -> dict[str, Any]:
    return {
        "status": str(event.status),
        "status_changed_at": iso(event.timestamp),
        "last_activity_at": _activity(row, event),
    }


def _assignee(agent: Callable[[Any], Any]) -> Callable[[sqlite3.Row, Any], dict[str, Any]]:
    def change(row: sqlite3.Row, event: Any) -> dict[str, Any]:
        return {"assignee": _str(agent(event)), "last_activity_at": _activity(row, event)}

    return change


def _moved(row: sqlite3.Row, event: Any) -> dict[str, Any]:
    return {
        "queue_id": str(event.queue_id),
        "assignee": None,
        "last_activity_at": _activity(row, event),
    }


def _noted(row: sqlite3.Row, event: Any) -> dict[str, Any]:
    return {"note_count": row["note_count"] + 1, "last_activity_at": _activity(row, event)}


def _tags(
    change: Callable[[list[str], str], list[str]],
) -> Callable[[sqlite3.Row, Any], dict[str, Any]]:
    def apply(row: sqlite3.Row, event: Any) -> dict[str, Any]:
        tags = msgspec.json.decode(row["tags"], type=list[str])
        return {"tags": _json.encode(change(tags, event.tag)).decode()}

    return apply


# The flag each later event of a clock sets on its row (None: only its version moves).
_CLOCK_FLAGS: dict[type, str | None] = {
    SlaClock.Warned: "warned",
    SlaClock.Breached: "breached",
    SlaClock.Met: "finished",
    SlaClock.Stopped: "finished",
    SlaClock.Paused: None,
    SlaClock.Resumed: None,
    SlaClock.Retargeted: None,
}

_CONVERSATION_CHANGES: dict[type, Callable[[sqlite3.Row, Any], dict[str, Any]]] = {
    Conversation.MessageReceived: _received,
    Conversation.MessageSent: _sent,
    Conversation.StatusChanged: _status,
    Conversation.Assigned: _assignee(lambda e: e.agent_id),
    Conversation.Transferred: _assignee(lambda e: e.to_agent_id),
    Conversation.Unassigned: _assignee(lambda e: None),
    Conversation.MovedToQueue: _moved,
    Conversation.NoteAdded: _noted,
    Conversation.Tagged: _tags(lambda tags, tag: [*tags, tag] if tag not in tags else tags),
    Conversation.Untagged: _tags(lambda tags, tag: [t for t in tags if t != tag]),
}


# ---------------------------------------------------------------------- helpers


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _preview(body: str) -> str:
    text = " ".join(body.split())
    return text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"


def _conversation(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "channel": row["channel"],
        "direction": row["direction"],
        "status": row["status"],
        "customer_id": row["customer_id"],
        "assignee": row["assignee"],
        "queue_id": row["queue_id"],
        "subject": row["subject"],
        "thread_key": row["thread_key"],
        "started_at": row["started_at"],
        "last_activity_at": row["last_activity_at"],
        "last_message": None
        if row["last_message_at"] is None
        else {
            "at": row["last_message_at"],
            "direction": row["last_message_direction"],
            "preview": row["last_message_preview"],
            "agent_id": row["last_message_agent_id"],
            "attachments": row["last_message_attachments"],
        },
        "message_count": row["message_count"],
        # The customer wrote last and no agent has answered since (automation aside).
        "awaiting_reply": row["waiting_since"] is not None,
        "waiting_since": row["waiting_since"],
        "first_response_at": row["first_response_at"],
        "note_count": row["note_count"],
        "tags": msgspec.json.decode(row["tags"]),
        "status_changed_at": row["status_changed_at"],
        "sla_state": row["sla_state"],
        "version": row["version"],
        "updated_at": row["updated_at"],
    }


def _live_call(row: sqlite3.Row) -> dict[str, Any]:
    if row["answered_at"] is not None:
        state = "on_hold" if row["held"] else "talking"
    else:
        # Not yet in a queue: in the IVR, dialling out, or ringing an agent directly.
        state = "queued" if row["queue_id"] is not None else "connecting"
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "channel": "call",
        "direction": row["direction"],
        "hotline": row["hotline"],
        "customer_number": row["customer_number"],
        "queue_id": row["queue_id"],
        "state": state,
        "started_at": row["started_at"],
        "offered_at": row["offered_at"],
        "answered_at": row["answered_at"],
        "version": row["version"],
        "updated_at": row["updated_at"],
    }
