"""The SLA timer process manager (CC22, CT17): clocks start, pause, resume, warn, breach.

State (tables, one upstream stream each, see projections.readmodel):

| table | from | what |
|---|---|---|
| `calendars` | tenants | business calendars by (tenant aggregate id, name), with the version that defined them |
| `policies` | sla_policies | each policy's targets, calendar name, warning ratio, and the version of its last change to them |
| `tickets`, `ticket_pauses` | tickets | priority, status, policy, first public reply, first resolution; each wait on the customer (pending) with its start and end |
| `conversations` | conversations | each conversation's channel (a ticket's targets follow its first linked conversation's channel) |
| `conversation_states`, `conversation_pauses`, `conversation_queues` | conversations | a conversation's status, first agent reply, first resolution; each wait on the customer; each queue it entered, and when |
| `queues` | queues | each queue's SLA policy, and when it was last set |
| `clocks` | sla_clocks | each clock as its events left it: terms, pauses, due times, warned, breached, met or stopped |

What counts, for a ticket with an SLA policy (the policy is a domain decision: SlaPolicySet):

- both clocks start when the ticket was raised (the customer has waited since then, also
  when the policy was set later), with the targets `domain.sla.targets_for` gives for its
  priority and channel (no linked conversation: only rows that leave the channel open);
- both pause while the ticket is pending (waiting on the customer) and resume when it
  leaves pending;
- the first public comment meets the first-response clock; a ticket resolved or closed
  before any public comment stops it (no reply was owed any more);
- the first resolved or closed meets the resolution clock; reopening does not restart it;
- removing the ticket's policy stops both; a change of priority, of policy, of the policy's
  targets or calendar, or of the calendar itself retargets them (`SlaClock.retarget`).

A policy naming a calendar the tenant does not have counts around the clock: a deadline
that comes too early is noticed, one that never comes is not.

`act` compares what the tickets say with what the clocks recorded and issues the missing
clock commands for each ticket in the order the facts happened (pauses, retargets, the
end), then warns and breaches every running clock whose due time has come. Every command
is idempotent on the clock (a repeat records nothing), and each returns the clock's true
state, so an act that runs again before its events came back repeats nothing. After a
restart everything that fell due meanwhile fires at the first act, once, with the time it
was due recorded apart from the time it was noticed (see domain.sla_clocks).

What counts, for a conversation (its queue names the policy: Queue.SlaPolicySet):

- its stay in each queue is a stint, from when it started in the queue or was moved to
  it; a stint is covered when its queue names a policy of the tenant this manager knows,
  uncovered when the queue names none, and neither while the queue or the policy is not
  known yet (an upstream behind, or another tenant's policy: no start, no stop);
- both clocks start when the first covered stint began, on that queue's policy, with the
  targets for Normal priority (conversations have none of their own) and the
  conversation's channel; each later covered stint retargets them to its queue's policy;
- the first uncovered stint after that stops both (moved to a queue without SLA, or the
  queue's policy was cleared while it was there); the clock of a subject is one for
  good, so a later covered stint does not start it again;
- pending pauses both; the first agent reply (`MessageSent.first_response`) meets the
  first-response clock; the first resolved or closed meets the resolution clock and
  stops an unanswered first-response clock, as for tickets.

The clocks follow from the stints as they are known when `act` runs, not from the order
`act` saw them in: a conversation moved from one queue to another while the manager was
down gets the clocks it would have had running (started on the first queue's policy,
then retargeted or stopped at the move).

Live-update kind (`changed`): "sla", keyed by the subject's id (ticket or conversation),
whenever one of its clocks changes.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any, NamedTuple
from uuid import UUID

import msgspec

from domain.calendars import calendar_from_builtins
from domain.conversations import Conversation, ConversationStatus
from domain.queues import Queue
from domain.sla import DEFAULT_WARNING_RATIO, SlaPolicy, SlaTerms, Targets, targets_for
from domain.sla_clocks import (
    ClockFinished,
    ClockNotDue,
    ClockStatus,
    ClockTerms,
    ClockView,
    Metric,
    SlaClock,
    SlaClocks,
    SubjectKind,
)
from domain.tenants import Tenant
from domain.tickets import Ticket, TicketStatus
from domain.vocabulary import Channel, Priority
from projections.process import ActContext, ProcessManager
from projections.sql import dump

log = logging.getLogger(__name__)

_decode = msgspec.json.decode

# Fixed width and always UTC, so that SQL compares times as text correctly.
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_ENDED = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)
_CONVERSATION_ENDED = (ConversationStatus.RESOLVED, ConversationStatus.CLOSED)
_TICKET = SubjectKind.TICKET.value
_CONVERSATION = SubjectKind.CONVERSATION.value
# The domain gives a conversation no priority: its targets are those of Normal work.
_CONVERSATION_PRIORITY = Priority.NORMAL.value


def _ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime(_TIME_FORMAT)


def _ts_or_none(at: datetime | None) -> str | None:
    return None if at is None else _ts(at)


def _at(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


def _at_or_none(text: str | None) -> datetime | None:
    return None if text is None else _at(text)


class SlaDecision(NamedTuple):
    """One event a command of this manager recorded on a clock (for logs and tests)."""

    tenant_id: str
    clock_id: UUID
    subject_kind: str
    subject_id: UUID
    metric: str
    event: str  # the SlaClock event class name: Started, Paused, Warned, Breached...


@dataclass(frozen=True)
class _Pause:
    number: int
    paused_at: datetime
    resumed_at: datetime | None


@dataclass(frozen=True)
class _End:
    at: datetime
    reason: str | None  # None: met; else stopped, for this reason


@dataclass(frozen=True)
class _Facts:
    """What the upstreams say about one ticket or conversation, for its two clocks."""

    tenant_id: str
    kind: SubjectKind
    id: UUID
    started_at: datetime  # when its clocks start (counted from), if they start
    start_terms: dict[Metric, ClockTerms]  # the terms a clock starts on; empty: none starts
    dropped: _End | None  # the SLA stopped applying to it
    unanswered: str  # why a first-response clock stops at the end without a reply
    responded_at: datetime | None
    ended_at: datetime | None
    terms_at: datetime  # the latest change of anything its terms are derived from
    pauses: tuple[_Pause, ...]
    terms: dict[Metric, ClockTerms]  # in force now; empty: none this manager knows

    def end(self, metric: Metric) -> _End | None:
        ends: list[_End] = []
        if self.dropped is not None:
            ends.append(self.dropped)
        if metric is Metric.FIRST_RESPONSE:
            if self.responded_at is not None:
                ends.append(_End(self.responded_at, None))
            if self.ended_at is not None:
                ends.append(_End(self.ended_at, self.unanswered))
        elif self.ended_at is not None:
            ends.append(_End(self.ended_at, None))
        # Met wins a tie: a reply in the same instant as the resolution was a reply.
        return min(ends, key=lambda e: (e.at, e.reason is not None), default=None)


def _terms_key(policy: str, priority: str, channel: str) -> str:
    return (
        f"{policy} || '@' || p.terms_version || '/' || {priority} || '/' || {channel} || '/' "
        "|| COALESCE(p.calendar_name || '@' || COALESCE(cal.version, 0), '24/7')"
    )


# The fingerprint of what a subject's terms come from, in SQL, so that only subjects whose
# fingerprint differs from their clocks' come back to Python. It is also the key the
# clocks record: computed here only, never rebuilt in Python. The ticket's text is stored
# in its clocks' events: changing it would retarget every running ticket clock.
_WANTED_KEY = _terms_key("t.policy_id", "t.priority", "COALESCE(cv.channel, '-')")
# A conversation's fingerprint leaves out the queue, so that a move between queues with
# the same policy changes nothing.
_CONVERSATION_KEY = _terms_key("p.id", f"'{_CONVERSATION_PRIORITY}'", "w.channel")
_TICKET_JOINS = """
    LEFT JOIN policies p ON p.id = t.policy_id AND p.tenant_id = t.tenant_id
    LEFT JOIN calendars cal ON cal.tenant_key = t.tenant_key AND cal.name = p.calendar_name
    LEFT JOIN conversations cv ON cv.id = t.origin_conversation_id AND cv.tenant_id = t.tenant_id
"""
# A conversation's stint `s` in a queue, with its queue, the queue's policy and calendar.
_STINT_JOINS = """
    LEFT JOIN queues q ON q.id = s.queue_id AND q.tenant_id = s.tenant_id
    LEFT JOIN policies p ON p.id = q.policy_id AND p.tenant_id = s.tenant_id
    LEFT JOIN calendars cal ON cal.tenant_key = w.tenant_key AND cal.name = p.calendar_name
"""
# The conversation `w`'s first covered stint's number, or 0.
_FIRST_COVERED = """COALESCE((
    SELECT min(f.number) FROM conversation_queues f
    JOIN queues fq ON fq.id = f.queue_id AND fq.tenant_id = f.tenant_id
    JOIN policies fp ON fp.id = fq.policy_id AND fp.tenant_id = f.tenant_id
    WHERE f.conversation_id = w.id AND f.tenant_id = w.tenant_id), 0)"""
_DROPPED = "the conversation's queue has no SLA policy"


class SlaTimers(ProcessManager):
    """Starts, pauses, resumes, retargets, meets, warns and breaches the SLA clocks of
    tickets and conversations."""

    name = "sla_timers"
    upstreams = ("tenants", "sla_policies", "tickets", "conversations", "queues", "sla_clocks")
    schema = (
        """CREATE TABLE IF NOT EXISTS calendars (
            tenant_key TEXT NOT NULL, name TEXT NOT NULL, calendar TEXT,
            version INTEGER NOT NULL, updated_at TEXT NOT NULL,
            PRIMARY KEY (tenant_key, name)
        )""",
        """CREATE TABLE IF NOT EXISTS policies (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, default_targets TEXT NOT NULL,
            rows TEXT NOT NULL, calendar_name TEXT, warning_ratio REAL NOT NULL,
            terms_version INTEGER NOT NULL, updated_at TEXT NOT NULL
        )""",
        # Ticket ids are unique across tenants and later events carry only the id; every
        # query still names the tenant, so no row crosses the wall.
        """CREATE TABLE IF NOT EXISTS tickets (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, tenant_key TEXT NOT NULL,
            priority TEXT NOT NULL, status TEXT NOT NULL, policy_id TEXT,
            origin_conversation_id TEXT, raised_at TEXT NOT NULL, terms_at TEXT NOT NULL,
            responded_at TEXT, ended_at TEXT, pauses INTEGER NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS tickets_with_policy ON tickets (policy_id)",
        """CREATE TABLE IF NOT EXISTS ticket_pauses (
            ticket_id TEXT NOT NULL, number INTEGER NOT NULL, tenant_id TEXT NOT NULL,
            paused_at TEXT NOT NULL, resumed_at TEXT,
            PRIMARY KEY (ticket_id, number)
        )""",
        """CREATE TABLE IF NOT EXISTS conversations (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, channel TEXT NOT NULL
        )""",
        # Not more columns of `conversations`: a file from before conversations had
        # clocks keeps that table as it was, gets these new, and a rebuild fills them.
        """CREATE TABLE IF NOT EXISTS conversation_states (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, tenant_key TEXT NOT NULL,
            channel TEXT NOT NULL, status TEXT NOT NULL, responded_at TEXT, ended_at TEXT,
            pauses INTEGER NOT NULL, queues INTEGER NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS conversation_pauses (
            conversation_id TEXT NOT NULL, number INTEGER NOT NULL, tenant_id TEXT NOT NULL,
            paused_at TEXT NOT NULL, resumed_at TEXT,
            PRIMARY KEY (conversation_id, number)
        )""",
        """CREATE TABLE IF NOT EXISTS conversation_queues (
            conversation_id TEXT NOT NULL, number INTEGER NOT NULL, tenant_id TEXT NOT NULL,
            queue_id TEXT NOT NULL, entered_at TEXT NOT NULL,
            PRIMARY KEY (conversation_id, number)
        )""",
        "CREATE INDEX IF NOT EXISTS conversation_queues_by_queue ON conversation_queues (queue_id)",
        """CREATE TABLE IF NOT EXISTS queues (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, policy_id TEXT, policy_at TEXT
        )""",
        """CREATE TABLE IF NOT EXISTS clocks (
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, subject_kind TEXT NOT NULL,
            subject_id TEXT NOT NULL, metric TEXT NOT NULL, policy_id TEXT NOT NULL,
            terms_key TEXT NOT NULL, target_seconds INTEGER NOT NULL,
            warning_seconds INTEGER NOT NULL, calendar_name TEXT, status TEXT NOT NULL,
            pauses INTEGER NOT NULL, used_seconds REAL NOT NULL, started_at TEXT NOT NULL,
            warn_at TEXT, due_at TEXT, warned_at TEXT, breached_at TEXT, ended_at TEXT,
            stop_reason TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS clocks_by_subject ON clocks (subject_id, tenant_id)",
        "CREATE INDEX IF NOT EXISTS clocks_by_status ON clocks (status, due_at)",
    )

    # ------------------------------------------------------------------------- events
    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        if isinstance(event, SlaClock.Event):
            self._on_clock(db, event)
        elif isinstance(event, Ticket.Event):
            self._on_ticket(db, event)
        elif isinstance(event, SlaPolicy.Event):
            self._on_policy(db, event)
        elif isinstance(event, Tenant.CalendarDefined | Tenant.CalendarRemoved):
            self._on_calendar(db, event)
        elif isinstance(event, Conversation.Event):
            self._on_conversation(db, event)
        elif isinstance(event, Queue.Created):
            db.execute(
                "INSERT OR IGNORE INTO queues VALUES (?, ?, NULL, NULL)",
                (str(event.originator_id), event.tenant_id),
            )
        elif isinstance(event, Queue.SlaPolicySet):
            policy = None if event.policy_id is None else str(event.policy_id)
            db.execute(
                "UPDATE queues SET policy_id = ?, policy_at = ? WHERE id = ?",
                (policy, _ts(event.timestamp), str(event.originator_id)),
            )

    def _on_calendar(self, db: sqlite3.Connection, e: Any) -> None:
        # Keyed by the tenant's aggregate id (the event does not carry the slug); a
        # removed calendar leaves a row without calendar, so that its clocks see a change.
        calendar = dump(e.calendar) if isinstance(e, Tenant.CalendarDefined) else None
        db.execute(
            "INSERT INTO calendars VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_key, name) DO "
            "UPDATE SET calendar = excluded.calendar, version = excluded.version, "
            "updated_at = excluded.updated_at",
            (str(e.originator_id), e.name, calendar, e.originator_version, _ts(e.timestamp)),
        )

    def _on_policy(self, db: sqlite3.Connection, e: Any) -> None:
        pid, at = str(e.originator_id), _ts(e.timestamp)
        if isinstance(e, SlaPolicy.Created):
            db.execute(
                "INSERT INTO policies VALUES (?, ?, ?, '[]', NULL, ?, ?, ?)",
                (
                    pid,
                    e.tenant_id,
                    dump([e.first_response_seconds, e.resolution_seconds]),
                    DEFAULT_WARNING_RATIO,
                    e.originator_version,
                    at,
                ),
            )
            return
        sets: dict[str, Any] = {}
        if isinstance(e, SlaPolicy.DefaultTargetsSet):
            sets["default_targets"] = dump([e.first_response_seconds, e.resolution_seconds])
        elif isinstance(e, SlaPolicy.TargetsSet | SlaPolicy.TargetsRemoved):
            row = db.execute("SELECT rows FROM policies WHERE id = ?", (pid,)).fetchone()
            if row is None:
                return
            rows = [r for r in _decode(row[0]) if (r[0], r[1]) != (e.priority, e.channel)]
            if isinstance(e, SlaPolicy.TargetsSet):
                rows.append([e.priority, e.channel, e.first_response_seconds, e.resolution_seconds])
            sets["rows"] = dump(sorted(rows, key=lambda r: (r[0] or "", r[1] or "")))
        elif isinstance(e, SlaPolicy.CalendarChanged):
            sets["calendar_name"] = e.calendar_name
        elif isinstance(e, SlaPolicy.WarningRatioChanged):
            sets["warning_ratio"] = e.warning_ratio
        else:
            return  # a rename: the clocks' terms do not change
        sets["terms_version"], sets["updated_at"] = e.originator_version, at
        db.execute(
            f"UPDATE policies SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
            (*sets.values(), pid),
        )

    def _on_ticket(self, db: sqlite3.Connection, e: Any) -> None:
        tid, at = str(e.originator_id), _ts(e.timestamp)
        if isinstance(e, Ticket.Raised):
            db.execute(
                "INSERT INTO tickets VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, NULL, NULL, 0)",
                (
                    tid,
                    e.tenant_id,
                    str(Tenant.create_id(e.tenant_id)),
                    str(e.priority),
                    TicketStatus.NEW.value,
                    at,
                    at,
                ),
            )
        elif isinstance(e, Ticket.StatusChanged):
            self._on_status(db, tid, TicketStatus(e.status), TicketStatus(e.previous), at)
        elif isinstance(e, Ticket.PriorityChanged):
            db.execute(
                "UPDATE tickets SET priority = ?, terms_at = ? WHERE id = ?",
                (str(e.priority), at, tid),
            )
        elif isinstance(e, Ticket.SlaPolicySet):
            policy = None if e.policy_id is None else str(e.policy_id)
            db.execute(
                "UPDATE tickets SET policy_id = ?, terms_at = ? WHERE id = ?", (policy, at, tid)
            )
        elif isinstance(e, Ticket.ConversationLinked):
            # The first linked conversation is where the ticket came from: its channel.
            db.execute(
                "UPDATE tickets SET origin_conversation_id = ?, terms_at = ? "
                "WHERE id = ? AND origin_conversation_id IS NULL",
                (str(e.conversation_id), at, tid),
            )
        elif isinstance(e, Ticket.Commented) and e.public:
            db.execute(
                "UPDATE tickets SET responded_at = COALESCE(responded_at, ?) WHERE id = ?",
                (at, tid),
            )

    def _on_status(
        self,
        db: sqlite3.Connection,
        tid: str,
        status: TicketStatus,
        previous: TicketStatus,
        at: str,
    ) -> None:
        row = db.execute("SELECT tenant_id, pauses FROM tickets WHERE id = ?", (tid,)).fetchone()
        if row is None:
            return
        tenant_id, pauses = row
        if previous is TicketStatus.PENDING:
            db.execute(
                "UPDATE ticket_pauses SET resumed_at = ? WHERE ticket_id = ? AND number = ?",
                (at, tid, pauses),
            )
        if status is TicketStatus.PENDING:
            pauses += 1
            db.execute(
                "INSERT INTO ticket_pauses VALUES (?, ?, ?, ?, NULL)", (tid, pauses, tenant_id, at)
            )
        ended = at if status.value in _ENDED else None
        db.execute(
            "UPDATE tickets SET status = ?, pauses = ?, ended_at = COALESCE(ended_at, ?) "
            "WHERE id = ?",
            (status.value, pauses, ended, tid),
        )

    def _on_conversation(self, db: sqlite3.Connection, e: Any) -> None:
        cid = str(e.originator_id)
        if isinstance(e, Conversation.Started):
            channel = str(e.channel)
            db.execute(
                "INSERT OR IGNORE INTO conversations VALUES (?, ?, ?)", (cid, e.tenant_id, channel)
            )
            tenant_key = str(Tenant.create_id(e.tenant_id))
            queues = 0 if e.queue_id is None else 1
            db.execute(
                "INSERT OR IGNORE INTO conversation_states "
                "VALUES (?, ?, ?, ?, 'open', NULL, NULL, 0, ?)",
                (cid, e.tenant_id, tenant_key, channel, queues),
            )
            if e.queue_id is not None:
                # Started in the queue: it has waited there since it started.
                db.execute(
                    "INSERT OR IGNORE INTO conversation_queues VALUES (?, 1, ?, ?, ?)",
                    (cid, e.tenant_id, str(e.queue_id), _ts(e.at)),
                )
            return
        row = db.execute(
            "SELECT tenant_id, pauses, queues FROM conversation_states WHERE id = ?", (cid,)
        ).fetchone()
        if row is None:
            return
        tenant_id, pauses, queues = row
        if isinstance(e, Conversation.MovedToQueue):
            queues += 1
            db.execute(
                "INSERT INTO conversation_queues VALUES (?, ?, ?, ?, ?)",
                (cid, queues, tenant_id, str(e.queue_id), _ts(e.timestamp)),
            )
            db.execute("UPDATE conversation_states SET queues = ? WHERE id = ?", (queues, cid))
        elif isinstance(e, Conversation.MessageSent) and e.first_response:
            # The domain's own time of the first response (`first_response_at`).
            db.execute(
                "UPDATE conversation_states SET responded_at = COALESCE(responded_at, ?) "
                "WHERE id = ?",
                (_ts(e.at), cid),
            )
        elif isinstance(e, Conversation.StatusChanged):
            status, at = ConversationStatus(e.status), _ts(e.timestamp)
            if ConversationStatus(e.previous) is ConversationStatus.PENDING:
                db.execute(
                    "UPDATE conversation_pauses SET resumed_at = ? "
                    "WHERE conversation_id = ? AND number = ?",
                    (at, cid, pauses),
                )
            if status is ConversationStatus.PENDING:
                pauses += 1
                db.execute(
                    "INSERT INTO conversation_pauses VALUES (?, ?, ?, ?, NULL)",
                    (cid, pauses, tenant_id, at),
                )
            ended = at if status in _CONVERSATION_ENDED else None
            db.execute(
                "UPDATE conversation_states SET status = ?, pauses = ?, "
                "ended_at = COALESCE(ended_at, ?) WHERE id = ?",
                (status.value, pauses, ended, cid),
            )

    def _on_clock(self, db: sqlite3.Connection, e: Any) -> None:
        cid = str(e.originator_id)
        if isinstance(e, SlaClock.Started):
            db.execute(
                "INSERT INTO clocks VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', 0, 0.0, ?, ?, ?, "
                "NULL, NULL, NULL, NULL)",
                (
                    cid,
                    e.tenant_id,
                    e.subject_kind,
                    str(e.subject_id),
                    e.metric,
                    str(e.policy_id),
                    e.terms_key,
                    e.target_seconds,
                    e.warning_seconds,
                    e.calendar_name,
                    _ts(e.at),
                    _ts(e.warn_at),
                    _ts(e.due_at),
                ),
            )
            self.changed(e.tenant_id, "sla", str(e.subject_id))
            return
        sets: dict[str, Any]
        if isinstance(e, SlaClock.Paused):
            db.execute(
                "UPDATE clocks SET status = 'paused', pauses = ?, used_seconds = ?, "
                # As on the aggregate: what has not fallen due has no due time while paused.
                "warn_at = CASE WHEN warned_at IS NULL THEN NULL ELSE warn_at END, "
                "due_at = CASE WHEN breached_at IS NULL THEN NULL ELSE due_at END "
                "WHERE id = ?",
                (e.number, e.used_seconds, cid),
            )
            sets = {}
        elif isinstance(e, SlaClock.Resumed):
            sets = {"status": "running", "warn_at": _ts_or_none(e.warn_at), "due_at": _ts(e.due_at)}
        elif isinstance(e, SlaClock.Retargeted):
            sets = {
                "policy_id": str(e.policy_id),
                "terms_key": e.terms_key,
                "target_seconds": e.target_seconds,
                "warning_seconds": e.warning_seconds,
                "calendar_name": e.calendar_name,
                "used_seconds": e.used_seconds,
                "warn_at": _ts_or_none(e.warn_at),
                "due_at": _ts_or_none(e.due_at),
            }
        elif isinstance(e, SlaClock.Warned):
            sets = {"warned_at": _ts(e.at)}
        elif isinstance(e, SlaClock.Breached):
            sets = {"breached_at": _ts(e.at)}
        elif isinstance(e, SlaClock.Met):
            sets = {"status": "met", "ended_at": _ts(e.at), "used_seconds": e.used_seconds}
        elif isinstance(e, SlaClock.Stopped):
            sets = {
                "status": "stopped",
                "ended_at": _ts(e.at),
                "used_seconds": e.used_seconds,
                "stop_reason": e.reason,
            }
        else:
            return
        if sets:
            db.execute(
                f"UPDATE clocks SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                (*sets.values(), cid),
            )
        row = db.execute("SELECT tenant_id, subject_id FROM clocks WHERE id = ?", (cid,)).fetchone()
        if row is not None:
            self.changed(row[0], "sla", row[1])

    # ---------------------------------------------------------------------------- act
    def act(self, ctx: ActContext) -> list[SlaDecision]:
        now = ctx.now.astimezone(UTC)
        clocks = _clocks_app(ctx.apps)
        db = self.connect()
        decisions: list[SlaDecision] = []
        done: set[UUID] = set()
        subjects = chain(
            (self._ticket_facts(db, *subject) for subject in self._tickets_to_follow(db)),
            (
                self._conversation_facts(db, *subject)
                for subject in self._conversations_to_follow(db)
            ),
        )
        for facts in subjects:
            if facts is None:
                continue
            known = self._clocks_of(db, facts)
            for metric in Metric:
                clock = known.get(metric)
                if clock is None:
                    if metric not in facts.start_terms:
                        continue
                    clock = clocks.start(
                        facts.tenant_id,
                        facts.kind,
                        facts.id,
                        metric,
                        facts.start_terms[metric],
                        facts.started_at,
                    )
                    decisions += _decisions(clock)
                if clock.status in (ClockStatus.MET, ClockStatus.STOPPED):
                    continue
                clock = self._follow(clocks, clock, facts, now, decisions)
                self._fire(clocks, clock, now, decisions)
                done.add(clock.id)
        for clock in self._due_clocks(db, now):
            # Those followed above were fired from their fresh state; their rows are older.
            if clock.id not in done:
                self._fire(clocks, clock, now, decisions)
        return decisions

    def _follow(
        self,
        clocks: SlaClocks,
        clock: ClockView,
        facts: _Facts,
        now: datetime,
        decisions: list[SlaDecision],
    ) -> ClockView:
        """Bring one clock up to its subject's facts, in the order they happened."""
        tenant, cid = clock.tenant_id, clock.id
        steps: list[tuple[datetime, Callable[[], ClockView]]] = []
        for p in facts.pauses:
            if p.number > clock.pauses:
                steps.append(
                    (p.paused_at, _bind(clocks.pause, tenant, cid, p.number, p.paused_at, now))
                )
            resumable = p.number > clock.pauses or (
                p.number == clock.pauses and clock.status is ClockStatus.PAUSED
            )
            if p.resumed_at is not None and resumable:
                steps.append(
                    (p.resumed_at, _bind(clocks.resume, tenant, cid, p.number, p.resumed_at, now))
                )
        terms = facts.terms.get(clock.metric)
        if terms is not None and terms.key != clock.terms_key:
            steps.append(
                (facts.terms_at, _bind(clocks.retarget, tenant, cid, terms, facts.terms_at, now))
            )
        # Stable: a pause stays before its resume, and both before what happened with them.
        steps.sort(key=lambda step: step[0])
        end = facts.end(clock.metric)
        if end is not None:
            steps = [s for s in steps if s[0] <= end.at]
            if end.reason is None:
                steps.append((end.at, _bind(clocks.meet, tenant, cid, end.at, now)))
            else:
                steps.append((end.at, _bind(clocks.stop, tenant, cid, end.at, end.reason, now)))
        for _, step in steps:
            try:
                clock = step()
            except ClockFinished:
                # The table was behind the clock, which ended meanwhile: its events are on
                # their way, and nothing else is owed to it.
                log.info("SLA clock %s ended meanwhile; skipped", cid)
                break
            decisions += _decisions(clock)
        return clock

    def _fire(
        self, clocks: SlaClocks, clock: ClockView, now: datetime, decisions: list[SlaDecision]
    ) -> None:
        """Warn or breach one clock whose time has come (a breach records a missed warning)."""
        if clock.status is not ClockStatus.RUNNING:
            return
        try:
            if clock.breached_at is None and clock.due_at is not None and clock.due_at <= now:
                decisions += _decisions(clocks.breach(clock.tenant_id, clock.id, now))
            elif clock.warned_at is None and clock.warn_at is not None and clock.warn_at <= now:
                decisions += _decisions(clocks.warn(clock.tenant_id, clock.id, now))
        except (ClockFinished, ClockNotDue) as refused:
            # The table was behind: the clock was met, paused or retargeted meanwhile.
            log.info("SLA clock %s moved on: %s", clock.id, refused)

    # -------------------------------------------------------------------- act queries
    def _tickets_to_follow(self, db: sqlite3.Connection) -> list[tuple[str, UUID]]:
        """Tickets with a policy and a clock missing, or with an open clock behind them."""
        rows = db.execute(
            f"""
            SELECT t.tenant_id, t.id FROM tickets t
            JOIN policies p ON p.id = t.policy_id AND p.tenant_id = t.tenant_id
            WHERE (SELECT count(*) FROM clocks c WHERE c.subject_id = t.id
                   AND c.tenant_id = t.tenant_id AND c.subject_kind = '{_TICKET}') < 2
            UNION
            SELECT t.tenant_id, t.id FROM clocks c
            JOIN tickets t ON t.id = c.subject_id AND t.tenant_id = c.tenant_id
            {_TICKET_JOINS}
            WHERE c.subject_kind = '{_TICKET}' AND c.status IN ('running', 'paused') AND (
                t.pauses != c.pauses
                OR (c.status = 'paused') != (t.status = 'pending')
                OR t.ended_at IS NOT NULL
                OR (c.metric = 'first_response' AND t.responded_at IS NOT NULL)
                OR t.policy_id IS NULL
                OR (p.id IS NOT NULL AND {_WANTED_KEY} != c.terms_key)
            )
            ORDER BY 1, 2
            """
        )
        return [(r[0], UUID(r[1])) for r in rows]

    def _ticket_facts(
        self, db: sqlite3.Connection, tenant_id: str, ticket_id: UUID
    ) -> _Facts | None:
        row = db.execute(
            f"""
            SELECT t.*, p.id AS p_id, p.default_targets, p.rows, p.calendar_name,
                   p.warning_ratio, p.updated_at AS p_updated_at, cal.calendar,
                   cal.updated_at AS cal_updated_at, cv.channel, {_WANTED_KEY} AS wanted_key
            FROM tickets t {_TICKET_JOINS}
            WHERE t.id = ? AND t.tenant_id = ?
            """,
            (str(ticket_id), tenant_id),
        ).fetchone()
        if row is None:
            return None
        pauses = tuple(
            _Pause(r[0], _at(r[1]), _at_or_none(r[2]))
            for r in db.execute(
                "SELECT number, paused_at, resumed_at FROM ticket_pauses "
                "WHERE ticket_id = ? AND tenant_id = ? ORDER BY number",
                (str(ticket_id), tenant_id),
            )
        )
        changes = [row["terms_at"], row["p_updated_at"], row["cal_updated_at"]]
        terms_at = _at(max(c for c in changes if c is not None))
        terms = _terms(row) if row["p_id"] is not None else {}
        return _Facts(
            tenant_id=tenant_id,
            kind=SubjectKind.TICKET,
            id=ticket_id,
            started_at=_at(row["raised_at"]),
            start_terms=terms,
            dropped=(
                None
                if row["policy_id"] is not None
                else _End(terms_at, "the ticket's SLA policy was removed")
            ),
            unanswered="resolved without a public reply",
            responded_at=_at_or_none(row["responded_at"]),
            ended_at=_at_or_none(row["ended_at"]),
            terms_at=terms_at,
            pauses=pauses,
            terms=terms,
        )

    def _conversations_to_follow(self, db: sqlite3.Connection) -> list[tuple[str, UUID]]:
        """Conversations with a covered stint and a clock missing, or with an open clock
        behind them (the same tests as `_conversation_facts` makes, in SQL)."""
        rows = db.execute(
            f"""
            SELECT s.tenant_id, s.conversation_id FROM queues q
            JOIN policies p ON p.id = q.policy_id AND p.tenant_id = q.tenant_id
            -- From the queues with a policy (CROSS JOIN keeps this order): the
            -- conversations of queues without one, and of tenants without SLA, are skipped.
            CROSS JOIN conversation_queues s ON s.queue_id = q.id AND s.tenant_id = q.tenant_id
            WHERE (SELECT count(*) FROM clocks c WHERE c.subject_id = s.conversation_id
                   AND c.tenant_id = s.tenant_id AND c.subject_kind = '{_CONVERSATION}') < 2
            UNION
            SELECT w.tenant_id, w.id FROM clocks k
            JOIN conversation_states w ON w.id = k.subject_id AND w.tenant_id = k.tenant_id
            LEFT JOIN conversation_queues s ON s.conversation_id = w.id
                AND s.tenant_id = w.tenant_id AND s.number = w.queues
            {_STINT_JOINS}
            WHERE k.subject_kind = '{_CONVERSATION}' AND k.status IN ('running', 'paused') AND (
                w.pauses != k.pauses
                OR (k.status = 'paused') != (w.status = 'pending')
                OR w.ended_at IS NOT NULL
                OR (k.metric = 'first_response' AND w.responded_at IS NOT NULL)
                OR (p.id IS NOT NULL AND {_CONVERSATION_KEY} != k.terms_key)
                OR EXISTS (
                    SELECT 1 FROM conversation_queues u
                    JOIN queues uq ON uq.id = u.queue_id AND uq.tenant_id = u.tenant_id
                    WHERE u.conversation_id = w.id AND u.tenant_id = w.tenant_id
                    AND uq.policy_id IS NULL AND u.number > {_FIRST_COVERED}
                )
            )
            ORDER BY 1, 2
            """
        )
        return [(r[0], UUID(r[1])) for r in rows]

    def _conversation_facts(
        self, db: sqlite3.Connection, tenant_id: str, conversation_id: UUID
    ) -> _Facts | None:
        cid = str(conversation_id)
        state = db.execute(
            "SELECT * FROM conversation_states WHERE id = ? AND tenant_id = ?", (cid, tenant_id)
        ).fetchone()
        stints = db.execute(
            f"""
            SELECT s.number, s.entered_at, q.id AS q_id, q.policy_id AS q_policy_id,
                   q.policy_at, p.id AS p_id, p.default_targets, p.rows, p.calendar_name,
                   p.warning_ratio, p.updated_at AS p_updated_at, cal.calendar,
                   cal.updated_at AS cal_updated_at, w.channel,
                   '{_CONVERSATION_PRIORITY}' AS priority, {_CONVERSATION_KEY} AS wanted_key
            FROM conversation_states w
            JOIN conversation_queues s ON s.conversation_id = w.id AND s.tenant_id = w.tenant_id
            {_STINT_JOINS}
            WHERE w.id = ? AND w.tenant_id = ?
            ORDER BY s.number
            """,
            (cid, tenant_id),
        ).fetchall()
        if state is None or not stints:
            return None
        first = next((r for r in stints if r["p_id"] is not None), None)
        after = 0 if first is None else first["number"]
        # Uncovered since it entered the queue, or since the queue's policy was cleared
        # while it was there; only what comes after the start stops the clocks.
        dropped = [
            _End(_at(max(r["entered_at"], r["policy_at"] or r["entered_at"])), _DROPPED)
            for r in stints
            if r["number"] > after and r["q_id"] is not None and r["q_policy_id"] is None
        ]
        current = stints[-1]
        changes = [
            current["entered_at"],
            current["policy_at"],
            current["p_updated_at"],
            current["cal_updated_at"],
        ]
        pauses = tuple(
            _Pause(r[0], _at(r[1]), _at_or_none(r[2]))
            for r in db.execute(
                "SELECT number, paused_at, resumed_at FROM conversation_pauses "
                "WHERE conversation_id = ? AND tenant_id = ? ORDER BY number",
                (cid, tenant_id),
            )
        )
        return _Facts(
            tenant_id=tenant_id,
            kind=SubjectKind.CONVERSATION,
            id=conversation_id,
            started_at=_at((first or stints[0])["entered_at"]),
            start_terms={} if first is None else _terms(first),
            dropped=min(dropped, key=lambda e: e.at, default=None),
            unanswered="resolved without a reply",
            responded_at=_at_or_none(state["responded_at"]),
            ended_at=_at_or_none(state["ended_at"]),
            terms_at=_at(max(c for c in changes if c is not None)),
            pauses=pauses,
            terms={} if current["p_id"] is None else _terms(current),
        )

    def _clocks_of(self, db: sqlite3.Connection, facts: _Facts) -> dict[Metric, ClockView]:
        rows = db.execute(
            "SELECT * FROM clocks WHERE subject_id = ? AND tenant_id = ? AND subject_kind = ?",
            (str(facts.id), facts.tenant_id, facts.kind.value),
        )
        return {Metric(r["metric"]): _view(r) for r in rows}

    def _due_clocks(self, db: sqlite3.Connection, now: datetime) -> Iterable[ClockView]:
        at = _ts(now)
        rows = db.execute(
            "SELECT * FROM clocks WHERE status = 'running' AND ("
            "(warned_at IS NULL AND warn_at <= ?) OR (breached_at IS NULL AND due_at <= ?)) "
            "ORDER BY due_at, id",
            (at, at),
        )
        return [_view(r) for r in rows]

    def next_due(self) -> datetime | None:
        row = (
            self.connect()
            .execute(
                "SELECT min(CASE WHEN warned_at IS NULL THEN warn_at ELSE due_at END) "
                "FROM clocks WHERE status = 'running' AND breached_at IS NULL"
            )
            .fetchone()
        )
        return _at_or_none(row[0])

    # -------------------------------------------------------------------------- query
    def state(self, tenant_id: str, subject_id: UUID | str) -> dict[str, dict[str, Any]]:
        """The SLA state of a ticket (or conversation) by metric, for the UI's countdown.

        `status` is what to show first: met, stopped, breached, paused, warned or
        running; the flags say the rest. A running clock counts down to `due_at`; a
        paused one has `remaining_seconds` of business time left (negative: overdue).
        """
        rows = self.connect().execute(
            "SELECT * FROM clocks WHERE subject_id = ? AND tenant_id = ? ORDER BY metric",
            (str(subject_id), tenant_id),
        )
        return {r["metric"]: _state(r) for r in rows}


def _state(r: sqlite3.Row) -> dict[str, Any]:
    status = r["status"]
    paused = status == ClockStatus.PAUSED.value
    shown = status
    if status not in (ClockStatus.MET.value, ClockStatus.STOPPED.value):
        if r["breached_at"] is not None:
            shown = "breached"
        elif not paused and r["warned_at"] is not None:
            shown = "warned"
    return {
        "clock_id": r["id"],
        "subject_kind": r["subject_kind"],
        "status": shown,
        "paused": paused,
        "warned": r["warned_at"] is not None,
        "breached": r["breached_at"] is not None,
        "started_at": r["started_at"],
        "warn_at": r["warn_at"],
        "due_at": r["due_at"],
        "warned_at": r["warned_at"],
        "breached_at": r["breached_at"],
        "ended_at": r["ended_at"],
        "stop_reason": r["stop_reason"],
        "target_seconds": r["target_seconds"],
        "calendar_name": r["calendar_name"],
        "remaining_seconds": r["target_seconds"] - r["used_seconds"] if paused else None,
    }


def _view(r: sqlite3.Row) -> ClockView:
    return ClockView(
        id=UUID(r["id"]),
        tenant_id=r["tenant_id"],
        subject_kind=SubjectKind(r["subject_kind"]),
        subject_id=UUID(r["subject_id"]),
        metric=Metric(r["metric"]),
        status=ClockStatus(r["status"]),
        terms_key=r["terms_key"],
        pauses=r["pauses"],
        warn_at=_at_or_none(r["warn_at"]),
        due_at=_at_or_none(r["due_at"]),
        warned_at=_at_or_none(r["warned_at"]),
        breached_at=_at_or_none(r["breached_at"]),
    )


def _terms(row: sqlite3.Row) -> dict[Metric, ClockTerms]:
    """Each clock's terms for a ticket or a conversation, by `targets_for` on its policy."""
    default = _decode(row["default_targets"])
    terms = SlaTerms(
        rows={
            (None if p is None else Priority(p), None if c is None else Channel(c)): Targets(
                fr, res
            )
            for p, c, fr, res in _decode(row["rows"])
        },
        default=Targets(default[0], default[1]),
        calendar_name=row["calendar_name"],
        warning_ratio=row["warning_ratio"],
    )
    priority = Priority(row["priority"])
    if row["channel"] is not None:
        targets = targets_for(terms, priority, Channel(row["channel"]))
    else:
        # No channel: only rows that leave the channel open apply. With the others left
        # out, any channel asked for falls through to them, in targets_for's own order.
        open_rows = {k: v for k, v in terms.rows.items() if k[1] is None}
        targets = targets_for(
            SlaTerms(open_rows, terms.default, terms.calendar_name, terms.warning_ratio),
            priority,
            Channel.CALL,
        )
    calendar = None if row["calendar"] is None else calendar_from_builtins(_decode(row["calendar"]))
    pid, key = UUID(row["p_id"]), row["wanted_key"]
    return {
        Metric.FIRST_RESPONSE: ClockTerms(
            pid,
            key,
            targets.first_response_seconds,
            targets.first_response_warning_seconds,
            targets.calendar_name,
            calendar,
        ),
        Metric.RESOLUTION: ClockTerms(
            pid,
            key,
            targets.resolution_seconds,
            targets.resolution_warning_seconds,
            targets.calendar_name,
            calendar,
        ),
    }


def _bind(verb: Callable[..., ClockView], *args: Any) -> Callable[[], ClockView]:
    return lambda: verb(*args)


def _decisions(clock: ClockView) -> list[SlaDecision]:
    return [
        SlaDecision(
            clock.tenant_id,
            clock.id,
            clock.subject_kind.value,
            clock.subject_id,
            clock.metric.value,
            name,
        )
        for name in clock.recorded
    ]


def _clocks_app(apps: Any) -> SlaClocks:
    """The SlaClocks application out of a DomainApps container or a name → app mapping."""
    app = getattr(apps, "sla_clocks", None)
    if app is None:
        app = (apps.by_name() if hasattr(apps, "by_name") else apps)["sla_clocks"]
    if not isinstance(app, SlaClocks):
        raise TypeError(f"sla_clocks is a {type(app).__name__}, not SlaClocks")
    return app
