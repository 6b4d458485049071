"""Supervisors' live boards: agents (CC16) with their productivity (CC18), and queues (CC17).

Each upstream stream writes its own tables; a board joins them when it is read:

- `AgentBoardReadModel`: presence, since when and the break reason come from the agents
  stream, which also keeps every presence interval for productivity; the agent's live
  call legs from the calls stream; the open conversations assigned to them from the
  conversations stream.
- `QueueBoardReadModel`: the queue's name from the queues stream; one row per stay of a
  call in a queue (calls stream) and per stay of a conversation (conversations stream),
  from entering until answered, abandoned, moved on to another queue or ended unanswered.
  A conversation waits as routing has it (in a queue, unassigned, open): unassigned or
  reopened while still in its queue, it starts a new stay there.

Times are the events' own (a fact's `at`, else the event's timestamp), kept as epoch
seconds for arithmetic and as ISO text for display. What is still going on (a waiting
call, an agent's current state) is shown with its start; the UI computes the live age,
and productivity counts open intervals only up to the `now` its caller passes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from domain.agents import CALL_TAKING_ROLES, User
from domain.calls import Call
from domain.conversations import Conversation, ConversationStatus
from domain.queues import Queue
from domain.vocabulary import Presence
from projections.readmodel import SqliteReadModel
from projections.sql import iso, update_row

# The presence each User event leads to (InteractionEnded depends on its wrap_up).
_PRESENCE_EVENTS: dict[type[Any], Presence] = {
    User.WentAvailable: Presence.AVAILABLE,
    User.BreakTaken: Presence.BREAK,
    User.WentOffline: Presence.OFFLINE,
    User.Offered: Presence.RINGING,
    User.Answered: Presence.ON_CALL,
    User.OfferDeclined: Presence.AVAILABLE,
    User.InteractionStarted: Presence.ON_CALL,
    User.WrapUpFinished: Presence.AVAILABLE,
}
# The presences in which the agent's presence names the conversation (or call) it is about.
_ABOUT_A_CONVERSATION = (Presence.RINGING, Presence.ON_CALL, Presence.WRAP_UP)
_OPEN = (ConversationStatus.OPEN.value, ConversationStatus.PENDING.value)
_DONE = (ConversationStatus.RESOLVED.value, ConversationStatus.CLOSED.value)
_CALL_TAKERS = sorted(role.value for role in CALL_TAKING_ROLES)
# Industry default: 80 % of calls answered within 20 seconds.
DEFAULT_SERVICE_LEVEL_SECONDS = 20


class AgentBoardReadModel(SqliteReadModel):
    """Each agent's presence and current work (CC16), and productivity per day (CC18)."""

    name = "agent_board"
    upstreams = ("agents", "calls", "conversations")
    schema = (
        # From the agents stream.
        """CREATE TABLE IF NOT EXISTS agents (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            active INTEGER NOT NULL,
            presence TEXT NOT NULL,
            since TEXT NOT NULL,
            break_reason TEXT,
            conversation_id TEXT,
            interval_version INTEGER NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS agents_by_tenant ON agents (tenant_id, name)",
        # One row per stay in a presence state; `version` is the event that began it.
        """CREATE TABLE IF NOT EXISTS presence_intervals (
            agent_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            tenant_id TEXT NOT NULL,
            presence TEXT NOT NULL,
            started REAL NOT NULL,
            ended REAL,
            PRIMARY KEY (agent_id, version)
        ) WITHOUT ROWID""",
        # A day's productivity reads the intervals that ended after the day began (and
        # the open ones), not the tenant's whole history.
        "CREATE INDEX IF NOT EXISTS presence_intervals_by_end "
        "ON presence_intervals (tenant_id, ended)",
        # From the calls stream.
        """CREATE TABLE IF NOT EXISTS calls (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            direction TEXT NOT NULL,
            origin_leg_id TEXT NOT NULL,
            answered INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE IF NOT EXISTS agent_legs (
            call_id TEXT NOT NULL,
            leg_id TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            agent_id TEXT NOT NULL,
            party TEXT NOT NULL,
            direction TEXT NOT NULL,
            created_at TEXT NOT NULL,
            answered REAL,
            answered_at TEXT,
            ended REAL,
            connected_seconds REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (call_id, leg_id)
        ) WITHOUT ROWID""",
        # The board reads the live legs (ended IS NULL) of a tenant.
        "CREATE INDEX IF NOT EXISTS agent_legs_live ON agent_legs (tenant_id, ended)",
        "CREATE INDEX IF NOT EXISTS agent_legs_by_answer ON agent_legs (tenant_id, answered)",
        # From the conversations stream.
        """CREATE TABLE IF NOT EXISTS conversations (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            status TEXT NOT NULL,
            assignee TEXT
        )""",
        # The board reads the open and pending ones of a tenant, not its whole history.
        "CREATE INDEX IF NOT EXISTS conversations_by_status ON conversations (tenant_id, status)",
    )

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        if isinstance(event, User.Event):
            self._user(db, event)
        elif isinstance(event, Call.Event):
            self._call(db, event)
        elif isinstance(event, Conversation.Event):
            self._conversation(db, event)

    # ------------------------------------------------------------------ agents stream
    def _user(self, db: sqlite3.Connection, event: Any) -> None:
        agent_id = str(event.originator_id)
        at = event.timestamp
        if isinstance(event, User.Created):
            db.execute(
                "INSERT INTO agents VALUES (?, ?, ?, ?, 1, ?, ?, NULL, NULL, ?)",
                (
                    agent_id,
                    event.tenant_id,
                    event.name,
                    str(event.role),
                    Presence.OFFLINE.value,
                    iso(at),
                    event.originator_version,
                ),
            )
            db.execute(
                "INSERT INTO presence_intervals VALUES (?, ?, ?, ?, ?, NULL)",
                (
                    agent_id,
                    event.originator_version,
                    event.tenant_id,
                    Presence.OFFLINE.value,
                    at.timestamp(),
                ),
            )
            self.changed(event.tenant_id, "agent", agent_id)
            return
        row = db.execute(
            "SELECT tenant_id, interval_version FROM agents WHERE id = ?", (agent_id,)
        ).fetchone()
        if row is None:
            return
        tenant, open_version = row
        presence = _PRESENCE_EVENTS.get(type(event))
        if isinstance(event, User.InteractionEnded):
            presence = Presence.WRAP_UP if event.wrap_up else Presence.AVAILABLE
        if presence is not None:
            db.execute(
                "UPDATE agents SET presence = ?, since = ?, break_reason = ?, "
                "conversation_id = ?, interval_version = ? WHERE id = ?",
                (
                    presence.value,
                    iso(at),
                    event.reason if isinstance(event, User.BreakTaken) else None,
                    event.conversation_id if presence in _ABOUT_A_CONVERSATION else None,
                    event.originator_version,
                    agent_id,
                ),
            )
            db.execute(
                "UPDATE presence_intervals SET ended = ? WHERE agent_id = ? AND version = ?",
                (at.timestamp(), agent_id, open_version),
            )
            db.execute(
                "INSERT INTO presence_intervals VALUES (?, ?, ?, ?, ?, NULL)",
                (agent_id, event.originator_version, tenant, presence.value, at.timestamp()),
            )
        elif isinstance(event, User.RoleChanged):
            db.execute("UPDATE agents SET role = ? WHERE id = ?", (str(event.role), agent_id))
        elif isinstance(event, User.Deactivated | User.Reactivated):
            db.execute(
                "UPDATE agents SET active = ? WHERE id = ?",
                (int(isinstance(event, User.Reactivated)), agent_id),
            )
        else:
            return
        self.changed(tenant, "agent", agent_id)

    # ------------------------------------------------------------------- calls stream
    def _call(self, db: sqlite3.Connection, event: Any) -> None:
        call_id = str(event.originator_id)
        if isinstance(event, Call.Started):
            db.execute(
                "INSERT INTO calls (id, tenant_id, direction, origin_leg_id) VALUES (?, ?, ?, ?)",
                (call_id, event.tenant_id, str(event.direction), event.legs[0]["leg_id"]),
            )
            self._add_legs(db, call_id, event.legs, event.at)
            return
        if isinstance(event, Call.AgentRang | Call.SupervisionStarted):
            self._add_legs(db, call_id, [event.leg], event.at)
        elif isinstance(event, Call.TransferRequested):
            self._add_legs(db, call_id, [event.consult_leg], event.at)
        elif isinstance(event, Call.Transferred):
            self._end_legs(db, call_id, [event.from_leg_id], event.at)
            self._add_legs(db, call_id, [event.to_leg], event.at)
        elif isinstance(event, Call.Answered):
            answered = [event.leg_id]
            call = db.execute(
                "SELECT origin_leg_id, answered FROM calls WHERE id = ?", (call_id,)
            ).fetchone()
            if call is not None and event.leg_id != call[0] and not call[1]:
                # The call is answered: the agent who placed it (an outbound call) is
                # talking from now on, whether or not the switch reports their own leg.
                db.execute("UPDATE calls SET answered = 1 WHERE id = ?", (call_id,))
                answered.append(call[0])
            db.executemany(
                "UPDATE agent_legs SET answered = ?, answered_at = ? "
                "WHERE call_id = ? AND leg_id = ? AND answered IS NULL",
                [(event.at.timestamp(), iso(event.at), call_id, leg) for leg in answered],
            )
            self._note_legs(db, call_id, answered)
        elif isinstance(event, Call.LegHungUp | Call.SupervisionEnded):
            self._end_legs(db, call_id, [event.leg_id], event.at)
        elif isinstance(event, Call.TransferCancelled):
            self._end_legs(db, call_id, [event.consult_leg_id], event.at)
        elif isinstance(event, Call.Ended):
            live = db.execute(
                "SELECT leg_id FROM agent_legs WHERE call_id = ? AND ended IS NULL", (call_id,)
            )
            self._end_legs(db, call_id, [r[0] for r in live], event.at)

    def _add_legs(
        self, db: sqlite3.Connection, call_id: str, legs: Iterable[dict[str, Any]], at: datetime
    ) -> None:
        row = db.execute(
            "SELECT tenant_id, direction FROM calls WHERE id = ?", (call_id,)
        ).fetchone()
        if row is None:
            return
        added = [leg for leg in legs if leg["user_id"] is not None]
        db.executemany(
            "INSERT OR IGNORE INTO agent_legs (call_id, leg_id, tenant_id, agent_id, party, "
            "direction, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    call_id,
                    leg["leg_id"],
                    row[0],
                    str(leg["user_id"]),
                    leg["party"],
                    row[1],
                    iso(at),
                )
                for leg in added
            ],
        )
        self._note_legs(db, call_id, [leg["leg_id"] for leg in added])

    def _end_legs(
        self, db: sqlite3.Connection, call_id: str, leg_ids: list[str], at: datetime
    ) -> None:
        db.executemany(
            "UPDATE agent_legs SET ended = ?1, "
            "connected_seconds = CASE WHEN answered IS NULL THEN 0 ELSE max(0, ?1 - answered) END "
            "WHERE call_id = ?2 AND leg_id = ?3 AND ended IS NULL",
            [(at.timestamp(), call_id, leg_id) for leg_id in leg_ids],
        )
        self._note_legs(db, call_id, leg_ids)

    def _note_legs(self, db: sqlite3.Connection, call_id: str, leg_ids: list[str]) -> None:
        for leg_id in leg_ids:
            row = db.execute(
                "SELECT tenant_id, agent_id FROM agent_legs WHERE call_id = ? AND leg_id = ?",
                (call_id, leg_id),
            ).fetchone()
            if row is not None:
                self.changed(row[0], "agent", row[1])

    # ----------------------------------------------------------- conversations stream
    def _conversation(self, db: sqlite3.Connection, event: Any) -> None:
        conversation_id = str(event.originator_id)
        if isinstance(event, Conversation.Started):
            db.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?, NULL)",
                (
                    conversation_id,
                    event.tenant_id,
                    str(event.channel),
                    ConversationStatus.OPEN.value,
                ),
            )
            return
        row = db.execute(
            "SELECT tenant_id, assignee FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            return
        tenant, assignee = row
        if isinstance(event, Conversation.Assigned):
            new = str(event.agent_id)
        elif isinstance(event, Conversation.Transferred):
            new = str(event.to_agent_id)
        elif isinstance(event, Conversation.Unassigned | Conversation.MovedToQueue):
            new = None
        elif isinstance(event, Conversation.StatusChanged):
            db.execute(
                "UPDATE conversations SET status = ? WHERE id = ?",
                (str(event.status), conversation_id),
            )
            if assignee is not None:
                self.changed(tenant, "agent", assignee)
            return
        else:
            return
        db.execute("UPDATE conversations SET assignee = ? WHERE id = ?", (new, conversation_id))
        for agent in dict.fromkeys((assignee, new)):
            if agent is not None:
                self.changed(tenant, "agent", agent)

    # ------------------------------------------------------------------------ queries
    def board(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every active agent and supervisor of the tenant, by name, as `agent` shows one."""
        return self._agents(tenant_id, None)

    def agent(self, tenant_id: str, agent_id: str) -> dict[str, Any] | None:
        """One agent: presence and since when, break reason, the conversation or call the
        presence is about, live call legs (ringing, talking or supervising) and the open
        or pending conversations assigned to them."""
        found = self._agents(tenant_id, agent_id)
        return found[0] if found else None

    def _agents(self, tenant_id: str, agent_id: str | None) -> list[dict[str, Any]]:
        db = self.connect()
        # One agent by id, whatever its role and state; else the board's agents.
        which, args = (
            ("id = ?", [agent_id])
            if agent_id is not None
            else (f"active = 1 AND role IN ({_marks(_CALL_TAKERS)})", _CALL_TAKERS)
        )
        rows = db.execute(
            f"SELECT * FROM agents WHERE tenant_id = ? AND {which} ORDER BY name, id",
            (tenant_id, *args),
        ).fetchall()
        calls: dict[str, list[dict[str, Any]]] = {}
        for leg in db.execute(
            "SELECT * FROM agent_legs WHERE tenant_id = ? AND ended IS NULL "
            "ORDER BY created_at, call_id, leg_id",
            (tenant_id,),
        ):
            calls.setdefault(leg["agent_id"], []).append(
                {
                    "call_id": leg["call_id"],
                    "leg_id": leg["leg_id"],
                    "state": _leg_state(leg["party"], leg["answered_at"]),
                    "since": leg["answered_at"] or leg["created_at"],
                }
            )
        conversations: dict[str, list[dict[str, Any]]] = {}
        for c in db.execute(
            f"SELECT id, channel, status, assignee FROM conversations WHERE tenant_id = ? "
            f"AND status IN ({_marks(_OPEN)}) AND assignee IS NOT NULL ORDER BY id",
            (tenant_id, *_OPEN),
        ):
            conversations.setdefault(c["assignee"], []).append(
                {"id": c["id"], "channel": c["channel"], "status": c["status"]}
            )
        return [
            {
                "id": row["id"],
                "name": row["name"],
                "role": row["role"],
                "active": bool(row["active"]),
                "presence": row["presence"],
                "since": row["since"],
                "break_reason": row["break_reason"],
                "conversation_id": row["conversation_id"],
                "calls": calls.get(row["id"], []),
                "conversations": conversations.get(row["id"], []),
            }
            for row in rows
        ]

    def productivity(
        self, tenant_id: str, day: date, tz: tzinfo = UTC, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Each agent's day (CC18), `day` as seen in `tz`, by name.

        handled: interactions ended that day (on_call left, whatever the channel);
        talk / wrap-up / break seconds: time in on_call / wrap_up / break within the day;
        logged-in seconds: time not offline; occupancy: busy (on_call + wrap_up) over
        logged-in time, None without logged-in time. calls_connected and call_seconds:
        calls with a customer the agent was connected on that day (answered, or placed
        and answered by the customer) and how long.
        A state still going on counts up to `now` when given, else not at all.
        """
        start = datetime.combine(day, time(), tz).timestamp()
        end = datetime.combine(day + timedelta(days=1), time(), tz).timestamp()
        until = now.timestamp() if now is not None else None
        db = self.connect()
        # A clipped interval's seconds within [start, end); open ones end at `until`
        # (NULL when not given, which sum() skips).
        seconds = "max(0, min(coalesce(ended, :until), :end) - max(started, :start))"
        stats = {
            r["agent_id"]: r
            for r in db.execute(
                f"""
                SELECT agent_id,
                    sum(CASE WHEN presence = 'on_call' AND ended >= :start AND ended < :end
                        THEN 1 ELSE 0 END) AS handled,
                    total(CASE WHEN presence = 'on_call' THEN {seconds} END) AS talk,
                    total(CASE WHEN presence = 'wrap_up' THEN {seconds} END) AS wrap_up,
                    total(CASE WHEN presence = 'break' THEN {seconds} END) AS break,
                    total(CASE WHEN presence IN ('on_call', 'wrap_up') THEN {seconds} END)
                        AS busy,
                    total(CASE WHEN presence != 'offline' THEN {seconds} END) AS logged_in
                FROM (
                    SELECT * FROM presence_intervals
                    WHERE tenant_id = :tenant AND ended >= :start
                    UNION ALL
                    SELECT * FROM presence_intervals WHERE tenant_id = :tenant AND ended IS NULL
                )
                WHERE started < :end
                GROUP BY agent_id
                """,
                {"tenant": tenant_id, "start": start, "end": end, "until": until},
            )
        }
        calls = {
            r["agent_id"]: r
            for r in db.execute(
                "SELECT agent_id, count(*) AS connected, total(connected_seconds) AS seconds "
                "FROM agent_legs WHERE tenant_id = ? AND answered >= ? AND answered < ? "
                "AND party = 'agent' AND direction != 'internal' GROUP BY agent_id",
                (tenant_id, start, end),
            )
        }
        agents = db.execute(
            f"SELECT id, name FROM agents WHERE tenant_id = ? AND role IN ({_marks(_CALL_TAKERS)}) "
            "ORDER BY name, id",
            (tenant_id, *_CALL_TAKERS),
        )
        days = []
        for agent in agents:
            s, c = stats.get(agent["id"]), calls.get(agent["id"])
            logged_in = s["logged_in"] if s else 0.0
            days.append(
                {
                    "agent_id": agent["id"],
                    "name": agent["name"],
                    "day": day.isoformat(),
                    "handled": s["handled"] if s else 0,
                    "talk_seconds": s["talk"] if s else 0.0,
                    "wrap_up_seconds": s["wrap_up"] if s else 0.0,
                    "break_seconds": s["break"] if s else 0.0,
                    "logged_in_seconds": logged_in,
                    "occupancy": s["busy"] / logged_in if s and logged_in else None,
                    "calls_connected": c["connected"] if c else 0,
                    "call_seconds": c["seconds"] if c else 0.0,
                }
            )
        return days


def _marks(values: Iterable[Any]) -> str:
    return ", ".join("?" for _ in values)


def _leg_state(party: str, answered_at: str | None) -> str:
    if party == "supervisor":
        return "supervising"
    return "talking" if answered_at else "ringing"


class QueueBoardReadModel(SqliteReadModel):
    """Per queue: what waits now and since when, and how the period's waits ended (CC17)."""

    name = "queue_board"
    upstreams = ("queues", "calls", "conversations")
    # The same stay-in-a-queue table for each stream that feeds one (see `_WAITS`).
    schema = (
        """CREATE TABLE IF NOT EXISTS queues (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            name TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS queues_by_tenant ON queues (tenant_id, name)",
        """CREATE TABLE IF NOT EXISTS calls (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            origin_leg_id TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS conversations (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            channel TEXT NOT NULL
        )""",
        # Where a conversation stands for routing (the conversations stream): it waits
        # while it is in a queue, unassigned and open — as projections.routing has it.
        """CREATE TABLE IF NOT EXISTS conversation_state (
            id TEXT PRIMARY KEY,
            queue_id TEXT,
            assignee TEXT,
            status TEXT NOT NULL
        )""",
        *(
            statement
            for table in ("call_waits", "conversation_waits")
            for statement in (
                # `item_id` is the call or conversation, `version` the event it entered by.
                f"""CREATE TABLE IF NOT EXISTS {table} (
                    item_id TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    tenant_id TEXT NOT NULL,
                    queue_id TEXT NOT NULL,
                    channel TEXT NOT NULL,
                    entered REAL NOT NULL,
                    entered_at TEXT NOT NULL,
                    outcome TEXT NOT NULL,
                    wait_seconds REAL,
                    PRIMARY KEY (item_id, version)
                ) WITHOUT ROWID""",
                f"CREATE INDEX IF NOT EXISTS {table}_waiting ON {table} (tenant_id, outcome)",
                f"CREATE INDEX IF NOT EXISTS {table}_by_entry ON {table} (tenant_id, entered)",
            )
        ),
        # Every call and conversation as it started, queued or not: the day's traffic by
        # hour and channel (CT18). A table of its own, so a file from before gets it new
        # (and a rebuild fills it).
        """CREATE TABLE IF NOT EXISTS arrivals (
            item_id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            arrived REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS arrivals_by_time ON arrivals (tenant_id, arrived)",
    )

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        if isinstance(event, Queue.Created | Queue.Renamed):
            self._queue(db, event)
        elif isinstance(event, Call.Event):
            self._call(db, event)
        elif isinstance(event, Conversation.Event):
            self._conversation(db, event)

    def _queue(self, db: sqlite3.Connection, event: Any) -> None:
        queue_id = str(event.originator_id)
        if isinstance(event, Queue.Created):
            db.execute(
                "INSERT INTO queues VALUES (?, ?, ?)", (queue_id, event.tenant_id, event.name)
            )
            self.changed(event.tenant_id, "queue", queue_id)
            return
        db.execute("UPDATE queues SET name = ? WHERE id = ?", (event.name, queue_id))
        row = db.execute("SELECT tenant_id FROM queues WHERE id = ?", (queue_id,)).fetchone()
        if row is not None:
            self.changed(row[0], "queue", queue_id)

    def _call(self, db: sqlite3.Connection, event: Any) -> None:
        call_id = str(event.originator_id)
        if isinstance(event, Call.Started):
            db.execute(
                "INSERT INTO calls VALUES (?, ?, ?)",
                (call_id, event.tenant_id, event.legs[0]["leg_id"]),
            )
            self._arrived(db, call_id, event.tenant_id, "call", event.at)
            return
        if isinstance(event, Call.Offered):
            row = db.execute("SELECT tenant_id FROM calls WHERE id = ?", (call_id,)).fetchone()
            if row is not None:
                self._leave(db, "call_waits", call_id, "overflowed", event.at)
                self._enter(
                    db, "call_waits", call_id, event, row[0], str(event.queue_id), "call", event.at
                )
        elif isinstance(event, Call.Answered):
            # Answered by the first leg other than the one that placed the call; the
            # caller's own channel answering (an IVR picking up) is no answer.
            origin = db.execute(
                "SELECT origin_leg_id FROM calls WHERE id = ?", (call_id,)
            ).fetchone()
            if origin is not None and origin[0] != event.leg_id:
                self._leave(db, "call_waits", call_id, "answered", event.at)
        elif isinstance(event, Call.Abandoned):
            self._leave(db, "call_waits", call_id, "abandoned", event.at)
        elif isinstance(event, Call.Ended):
            self._leave(db, "call_waits", call_id, "ended", event.at)

    def _conversation(self, db: sqlite3.Connection, event: Any) -> None:
        conversation_id = str(event.originator_id)
        if isinstance(event, Conversation.Started):
            channel = str(event.channel)
            db.execute(
                "INSERT INTO conversations VALUES (?, ?, ?)",
                (conversation_id, event.tenant_id, channel),
            )
            self._arrived(db, conversation_id, event.tenant_id, channel, event.at)
            db.execute(
                "INSERT INTO conversation_state VALUES (?, ?, NULL, ?)",
                (
                    conversation_id,
                    None if event.queue_id is None else str(event.queue_id),
                    ConversationStatus.OPEN.value,
                ),
            )
            if event.queue_id is not None:
                self._enter(
                    db,
                    "conversation_waits",
                    conversation_id,
                    event,
                    event.tenant_id,
                    str(event.queue_id),
                    channel,
                    event.at,
                )
        elif isinstance(event, Conversation.MovedToQueue):
            update_row(
                db,
                "conversation_state",
                conversation_id,
                {"queue_id": str(event.queue_id), "assignee": None},
            )
            row = db.execute(
                "SELECT tenant_id, channel FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is not None:
                self._leave(
                    db, "conversation_waits", conversation_id, "overflowed", event.timestamp
                )
                self._enter(
                    db,
                    "conversation_waits",
                    conversation_id,
                    event,
                    row[0],
                    str(event.queue_id),
                    row[1],
                    event.timestamp,
                )
        elif isinstance(event, Conversation.Assigned):
            update_row(db, "conversation_state", conversation_id, {"assignee": str(event.agent_id)})
            self._leave(db, "conversation_waits", conversation_id, "answered", event.timestamp)
        elif isinstance(event, Conversation.Transferred):
            update_row(
                db, "conversation_state", conversation_id, {"assignee": str(event.to_agent_id)}
            )
        elif isinstance(event, Conversation.Unassigned):
            # Back in its queue, if it is in one and open: a new stay begins.
            update_row(db, "conversation_state", conversation_id, {"assignee": None})
            self._wait_again(db, conversation_id, event)
        elif isinstance(event, Conversation.StatusChanged):
            status = ConversationStatus(event.status).value
            update_row(db, "conversation_state", conversation_id, {"status": status})
            if status in _DONE:
                self._leave(db, "conversation_waits", conversation_id, "ended", event.timestamp)
            elif status == ConversationStatus.OPEN.value:
                # Reopened (or the customer wrote again) while unassigned in its queue.
                self._wait_again(db, conversation_id, event)

    def _arrived(
        self, db: sqlite3.Connection, item_id: str, tenant: str, channel: str, at: datetime
    ) -> None:
        db.execute(
            "INSERT OR IGNORE INTO arrivals VALUES (?, ?, ?, ?)",
            (item_id, tenant, channel, at.timestamp()),
        )
        self.changed(tenant, "arrival", item_id)

    def _wait_again(self, db: sqlite3.Connection, conversation_id: str, event: Any) -> None:
        """Start a stay in the conversation's queue if it waits there now (in the queue,
        unassigned and open) and no stay of it is going on already."""
        row = db.execute(
            "SELECT c.tenant_id, c.channel, s.queue_id FROM conversations c "
            "JOIN conversation_state s ON s.id = c.id "
            "WHERE c.id = ? AND s.queue_id IS NOT NULL AND s.assignee IS NULL AND s.status = ? "
            "AND NOT EXISTS (SELECT 1 FROM conversation_waits w "
            "WHERE w.item_id = c.id AND w.outcome = 'waiting')",
            (conversation_id, ConversationStatus.OPEN.value),
        ).fetchone()
        if row is not None:
            tenant, channel, queue_id = row
            self._enter(
                db,
                "conversation_waits",
                conversation_id,
                event,
                tenant,
                queue_id,
                channel,
                event.timestamp,
            )

    def _enter(
        self,
        db: sqlite3.Connection,
        table: str,
        item_id: str,
        event: Any,
        tenant: str,
        queue_id: str,
        channel: str,
        at: datetime,
    ) -> None:
        db.execute(
            f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, 'waiting', NULL)",
            (
                item_id,
                event.originator_version,
                tenant,
                queue_id,
                channel,
                at.timestamp(),
                iso(at),
            ),
        )
        self.changed(tenant, "queue", queue_id)

    def _leave(
        self, db: sqlite3.Connection, table: str, item_id: str, outcome: str, at: datetime
    ) -> None:
        """End the item's current stay in a queue, if it is waiting in one."""
        row = db.execute(
            f"SELECT version, tenant_id, queue_id, entered FROM {table} "
            "WHERE item_id = ? AND outcome = 'waiting'",
            (item_id,),
        ).fetchone()
        if row is None:
            return
        version, tenant, queue_id, entered = row
        db.execute(
            f"UPDATE {table} SET outcome = ?, wait_seconds = ? WHERE item_id = ? AND version = ?",
            (outcome, max(0.0, at.timestamp() - entered), item_id, version),
        )
        self.changed(tenant, "queue", queue_id)

    def board(
        self,
        tenant_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        service_level_seconds: float = DEFAULT_SERVICE_LEVEL_SECONDS,
    ) -> list[dict[str, Any]]:
        """Every queue of the tenant, by name: waiting now (and per channel), the oldest
        waiting since, and of the stays that entered in [since, until): answered,
        abandoned, ended unanswered, overflowed, average wait of the answered ones and the
        service level — answered within `service_level_seconds` over answered, abandoned
        and ended unanswered (None when there were none)."""
        db = self.connect()
        queues: dict[str, dict[str, Any]] = {
            r["id"]: _queue_row(r["id"], r["name"])
            for r in db.execute(
                "SELECT id, name FROM queues WHERE tenant_id = ? ORDER BY name, id", (tenant_id,)
            )
        }
        waiting = db.execute(
            """
            SELECT queue_id, channel, count(*) AS n, min(entered_at) AS oldest FROM (
                SELECT queue_id, channel, entered_at FROM call_waits
                WHERE tenant_id = :tenant AND outcome = 'waiting'
                UNION ALL
                SELECT queue_id, channel, entered_at FROM conversation_waits
                WHERE tenant_id = :tenant AND outcome = 'waiting'
            ) GROUP BY queue_id, channel ORDER BY queue_id, channel
            """,
            {"tenant": tenant_id},
        )
        for r in waiting:
            queue = queues.setdefault(r["queue_id"], _queue_row(r["queue_id"], None))
            queue["waiting"] += r["n"]
            queue["waiting_by_channel"][r["channel"]] = r["n"]
            if queue["oldest_waiting_since"] is None or r["oldest"] < queue["oldest_waiting_since"]:
                queue["oldest_waiting_since"] = r["oldest"]
        period = {
            "tenant": tenant_id,
            "since": since.timestamp() if since else float("-inf"),
            "until": until.timestamp() if until else float("inf"),
            "within": service_level_seconds,
        }
        outcomes = db.execute(
            """
            SELECT queue_id,
                sum(outcome = 'answered') AS answered,
                sum(outcome = 'abandoned') AS abandoned,
                sum(outcome = 'ended') AS ended,
                sum(outcome = 'overflowed') AS overflowed,
                avg(CASE WHEN outcome = 'answered' THEN wait_seconds END) AS average_wait,
                sum(outcome = 'answered' AND wait_seconds <= :within) AS within
            FROM (
                SELECT queue_id, outcome, wait_seconds FROM call_waits
                WHERE tenant_id = :tenant AND entered >= :since AND entered < :until
                UNION ALL
                SELECT queue_id, outcome, wait_seconds FROM conversation_waits
                WHERE tenant_id = :tenant AND entered >= :since AND entered < :until
            ) GROUP BY queue_id
            """,
            period,
        )
        for r in outcomes:
            queue = queues.setdefault(r["queue_id"], _queue_row(r["queue_id"], None))
            finished = r["answered"] + r["abandoned"] + r["ended"]
            queue.update(
                answered=r["answered"],
                abandoned=r["abandoned"],
                ended_unanswered=r["ended"],
                overflowed=r["overflowed"],
                average_wait_seconds=r["average_wait"],
                service_level=r["within"] / finished if finished else None,
            )
        return list(queues.values())

    def hourly(self, tenant_id: str, since: datetime, hours: int = 24) -> dict[str, Any]:
        """The traffic of `hours` hours from `since`, hour by hour (CT18): `arrivals`, the
        calls and conversations that started, by channel (a list of counts each);
        `answered` and `abandoned`, the calls' stays in a queue that ended so, by the
        hour they entered the queue (as `board` counts a period)."""
        start = since.timestamp()
        period = {"tenant": tenant_id, "start": start, "end": start + hours * 3600}
        hour = "CAST((%s - :start) / 3600 AS INTEGER)"
        db = self.connect()
        arrivals: dict[str, list[int]] = {}
        for r in db.execute(
            f"SELECT channel, {hour % 'arrived'} AS hour, count(*) AS n FROM arrivals "
            "WHERE tenant_id = :tenant AND arrived >= :start AND arrived < :end "
            "GROUP BY channel, hour ORDER BY channel",
            period,
        ):
            arrivals.setdefault(r["channel"], [0] * hours)[r["hour"]] += r["n"]
        ended: dict[str, list[int]] = {"answered": [0] * hours, "abandoned": [0] * hours}
        for r in db.execute(
            f"SELECT outcome, {hour % 'entered'} AS hour, count(*) AS n FROM call_waits "
            "WHERE tenant_id = :tenant AND entered >= :start AND entered < :end "
            "AND outcome IN ('answered', 'abandoned') GROUP BY outcome, hour",
            period,
        ):
            ended[r["outcome"]][r["hour"]] += r["n"]
        return {"arrivals": arrivals, **ended}


def _queue_row(queue_id: str, name: str | None) -> dict[str, Any]:
    return {
        "id": queue_id,
        "name": name,
        "waiting": 0,
        "waiting_by_channel": {},
        "oldest_waiting_since": None,
        "answered": 0,
        "abandoned": 0,
        "ended_unanswered": 0,
        "overflowed": 0,
        "average_wait_seconds": None,
        "service_level": None,
    }
