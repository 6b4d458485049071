"""The SLA timer process manager (CC22, CT17): clocks start, pause, resume, warn, breach.

State (tables, one upstream stream each, see projections.readmodel):

| table | from | what |
|---|---|---|
| `calendars` | tenants | business calendars by (tenant aggregate id, name), with the version that defined them |
| `policies` | sla_policies | each policy's targets, calendar name, warning ratio, and the version of its last change to them |
| `tickets`, `ticket_pauses` | tickets | priority, status, policy, first public reply, first resolution; each wait on the customer (pending) with its start and end |
| `ticket_terms` | tickets | a ticket's policy, priority and first linked conversation after each change of one of them, and when |
| `conversations` | conversations | each conversation's channel (a ticket's targets follow its first linked conversation's channel) |
| `conversation_states`, `conversation_pauses`, `conversation_queues` | conversations | a conversation's status, first agent reply, first resolution; each wait on the customer; each queue it entered, and when |
| `queues`, `queue_policies` | queues | each queue's SLA policy, and each change of it with when it was made |
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
- removing the ticket's policy stops both, when it was removed (a policy set again later
  does not start them again); a change of priority, of policy, of the policy's targets or
  calendar, or of the calendar itself retargets them (`SlaClock.retarget`).

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
  it; while there it is covered when the queue names a policy of the tenant this manager
  knows, uncovered when the queue names none, and neither while the queue or the policy
  is not known yet (an upstream behind, or another tenant's policy: no start, no stop);
- both clocks start when the stint in which it was first covered began, on that queue's
  policy, with the targets for Normal priority (conversations have none of their own)
  and the conversation's channel; a later move to a queue with another policy, or
  another policy given to its queue, retargets them;
- the first time it is uncovered after that stops both (moved to a queue without SLA, or
  the queue's policy was cleared while it was there); the clock of a subject is one for
  good, so being covered again later does not start it again;
- pending pauses both; the first agent reply (`MessageSent.first_response`) meets the
  first-response clock; the first resolved or closed meets the resolution clock and
  stops an unanswered first-response clock, as for tickets.

History does not depend on when `act` ran. The policy a subject was under is kept as a
timeline (a ticket's `ticket_terms`; a conversation's stints against its queues'
`queue_policies`), so a start, a stop or a retarget is dated by the fact it follows:
a stop by the removal, the move or the queue's change that uncovered the subject; a
retarget by the change that made the terms differ from the clock's (the policy set on
the ticket or the conversation's move, the priority, the first link, the policy's last
edit, the calendar's last change), each known by its own time — never by the latest
change of anything else. A conversation moved from one queue to another while the
manager was down gets the clocks it would have had running. Of a policy or a calendar
only the present is kept, not its earlier versions: several changes of a subject's
terms between two acts make one retarget, to the terms in force, dated by the latest of
those changes (never before a change was made).

Which subjects an act looks at: at the first act of a process, every subject that has or
had a policy and whose two clocks are not both finished; after that only those a change
may concern, noted in memory as each burst of events commits — the subject's own events
and its clocks' (so that a table behind a command is looked at again once it caught up),
the open clocks on an edited policy or calendar, the tickets and queues naming a policy
that came late, the conversations in a queue whose policy changed. So an act costs what
changed, not the deployment's history.

Live-update kind (`changed`): "sla", keyed by the subject's id (ticket or conversation),
whenever one of its clocks changes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

import msgspec

from domain.calendars import calendar_from_builtins
from domain.conversations import Conversation, ConversationStatus
from domain.queues import Queue
from domain.sla import DEFAULT_WARNING_RATIO, SlaPolicy, SlaTerms, Targets, targets_for
from domain.sla_clocks import (
    FINISHED,
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
from projections.sql import dump, update_row

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


class _Cover(Enum):
    """Whether the SLA applies to a subject during a stretch of time (see the module)."""

    COVERED = "covered"  # a policy of its tenant this manager knows
    UNCOVERED = "uncovered"  # no policy
    UNKNOWN = "unknown"  # the queue or the policy is not known yet: no start, no stop


@dataclass(frozen=True)
class _Stretch:
    """From `at` on (until the next stretch), what a subject's terms come from."""

    at: datetime
    begun: datetime  # when its clocks start if this is their first covered stretch
    cover: _Cover
    policy_id: str | None
    row: sqlite3.Row | None  # covered: the policy's terms and their key (`wanted_key`)
    priority: str = _CONVERSATION_PRIORITY
    channel: str = "-"


class _KeyParts(NamedTuple):
    """The parts of a terms key (`_terms_key`), each changed by its own fact."""

    policy: str
    version: str  # policy@terms version
    priority: str
    channel: str
    calendar: str  # name@version, or 24/7


def _key_parts(key: str) -> _KeyParts | None:
    parts = key.split("/", 3)  # a calendar's name may hold a slash; it comes last
    if len(parts) != 4 or "@" not in parts[0]:
        return None
    return _KeyParts(parts[0].split("@", 1)[0], parts[0], parts[1], parts[2], parts[3])


@dataclass(frozen=True)
class _Since:
    """When each part of the key of the terms in force got its present value."""

    policy: datetime
    version: datetime  # the policy's last change to its terms
    calendar: datetime | None  # the calendar's last change; None: the tenant has none
    priority: datetime
    channel: datetime

    def latest(self) -> datetime:
        return max(
            t
            for t in (self.policy, self.version, self.calendar, self.priority, self.channel)
            if t is not None
        )


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
    pauses: tuple[_Pause, ...]
    terms: dict[Metric, ClockTerms]  # in force now (the last covered stretch's); empty: none
    since: _Since | None  # when the key of `terms` got each of its parts

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

    def retarget_at(self, clock_key: str, wanted_key: str) -> datetime:
        """When the terms in force took over from a clock's: the latest change among
        those of the parts of the key that differ, each dated by its own fact."""
        assert self.since is not None  # there are terms in force
        since, old, new = self.since, _key_parts(clock_key), _key_parts(wanted_key)
        if old is None or new is None:
            return since.latest()  # a key of another shape: no part can be told apart
        changes: list[datetime | None] = []
        if old.policy != new.policy:
            changes.append(since.policy)
        if old.version != new.version:
            # Another policy's, or the same policy's edit: the present version is known
            # since its last change only.
            changes.append(since.version)
        if old.priority != new.priority:
            changes.append(since.priority)
        if old.channel != new.channel:
            changes.append(since.channel)
        if old.calendar != new.calendar:
            changes.append(since.calendar)
        known = [c for c in changes if c is not None]
        return max(known) if known else since.latest()


def _run_start(
    stretches: Sequence[_Stretch], last: int, same: Callable[[_Stretch], bool | None]
) -> datetime:
    """When the run of stretches up to `last` in which `same` holds began (None from
    `same`: a stretch that says nothing either way, passed over)."""
    start = stretches[last].at
    for stretch in reversed(stretches[:last]):
        verdict = same(stretch)
        if verdict is False:
            break
        if verdict:
            start = stretch.at
    return start


def _cover(policy_id: str | None, known: Any) -> _Cover:
    if policy_id is None:
        return _Cover.UNCOVERED
    return _Cover.COVERED if known is not None else _Cover.UNKNOWN


@dataclass
class _Marks:
    """What changed since the last act, to look at (see `SlaTimers.act`)."""

    subjects: set[tuple[str, str]] = field(default_factory=set)  # (kind, subject id)
    policies: set[str] = field(default_factory=set)  # terms edited
    new_policies: set[str] = field(default_factory=set)  # created
    calendars: set[tuple[str, str]] = field(default_factory=set)  # (tenant key, name)
    queues: dict[str, str] = field(default_factory=dict)  # queue id: earliest change
    origins: set[str] = field(default_factory=set)  # conversations that tickets came from

    def update(self, other: _Marks) -> None:
        self.subjects |= other.subjects
        self.policies |= other.policies
        self.new_policies |= other.new_policies
        self.calendars |= other.calendars
        for queue, at in other.queues.items():
            self.note_queue(queue, at)
        self.origins |= other.origins

    def note_queue(self, queue_id: str, at: str) -> None:
        """A change of the queue's policy at `at` ("": the queue itself came)."""
        self.queues[queue_id] = min(at, self.queues.get(queue_id, at))


def _terms_key(policy: str, priority: str, channel: str) -> str:
    return (
        f"{policy} || '@' || p.terms_version || '/' || {priority} || '/' || {channel} || '/' "
        "|| COALESCE(p.calendar_name || '@' || COALESCE(cal.version, 0), '24/7')"
    )


# The fingerprint of what a subject's terms come from, in SQL. It is the key the clocks
# record: computed here only, never rebuilt in Python (`_key_parts` only reads it, to
# tell which fact changed it). The ticket's text is stored in its clocks' events:
# changing it would retarget every running ticket clock.
_TICKET_KEY = _terms_key("h.policy_id", "h.priority", "COALESCE(cv.channel, '-')")
# A conversation's fingerprint leaves out the queue, so that a move between queues with
# the same policy changes nothing.
_CONVERSATION_KEY = _terms_key("p.id", f"'{_CONVERSATION_PRIORITY}'", "w.channel")
# A policy's terms as `_terms` reads them, with the calendar it names.
_POLICY_TERMS = """p.id AS p_id, p.default_targets, p.rows, p.calendar_name, p.warning_ratio,
    p.updated_at AS p_updated_at, cal.calendar, cal.updated_at AS cal_updated_at"""
_DROPPED = "the conversation's queue has no SLA policy"
_POLICY_REMOVED = "the ticket's SLA policy was removed"
_OPEN = "('running', 'paused')"


def _not_finished(subject: str, kind: str) -> str:
    """SQL: the subject `subject` (a table alias with id and tenant_id) of this kind does
    not have both its clocks met or stopped."""
    return (
        f"(SELECT count(*) FROM clocks c WHERE c.subject_id = {subject}.id "
        f"AND c.tenant_id = {subject}.tenant_id AND c.subject_kind = '{kind}' "
        "AND c.status IN ('met', 'stopped')) < 2"
    )


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
        "CREATE INDEX IF NOT EXISTS tickets_by_origin ON tickets (origin_conversation_id)",
        # Tables of their own, not columns of `tickets` and `queues`: a file from before
        # keeps those as they were (`tickets.terms_at` and `queues.policy_at` are read
        # no more), gets these new, and a rebuild fills them (meanwhile a ticket or a
        # queue without history counts as having had its present terms all along).
        """CREATE TABLE IF NOT EXISTS ticket_terms (
            ticket_id TEXT NOT NULL, number INTEGER NOT NULL, tenant_id TEXT NOT NULL,
            at TEXT NOT NULL, policy_id TEXT, priority TEXT NOT NULL, conversation_id TEXT,
            PRIMARY KEY (ticket_id, number)
        )""",
        "CREATE INDEX IF NOT EXISTS ticket_terms_by_policy ON ticket_terms (policy_id)",
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
        # The queue's policy from `since` on; before its first row, none.
        """CREATE TABLE IF NOT EXISTS queue_policies (
            queue_id TEXT NOT NULL, number INTEGER NOT NULL, tenant_id TEXT NOT NULL,
            since TEXT NOT NULL, policy_id TEXT,
            PRIMARY KEY (queue_id, number)
        )""",
        "CREATE INDEX IF NOT EXISTS queue_policies_by_policy ON queue_policies (policy_id)",
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
        "CREATE INDEX IF NOT EXISTS clocks_by_policy ON clocks (policy_id, status)",
        "CREATE INDEX IF NOT EXISTS clocks_by_calendar ON clocks (calendar_name, status)",
    )

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._lock = threading.Lock()
        # What changed since the last act; None: not known, the next act looks at every
        # subject not finished (the first act of a process, or after one failed so).
        self._marks: _Marks | None = None
        # What the batch being applied changes, noted once it committed.
        self._noting: _Marks | None = None

    def apply_batch(self, events: list[tuple[int, Any]], upstream: str | None = None) -> int:
        # Noted after the commit: an act that took the marks before reads the tables
        # after, so it sees what they name.
        self._noting = _Marks()
        try:
            applied = super().apply_batch(events, upstream)
            noted = self._noting
        finally:
            self._noting = None
        with self._lock:
            if self._marks is not None:
                self._marks.update(noted)
        return applied

    def _note(self, kind: str, subject_id: str) -> None:
        if self._noting is not None:
            self._noting.subjects.add((kind, subject_id))

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
        elif isinstance(event, Queue.Created | Queue.SlaPolicySet):
            self._on_queue(db, event)

    def _on_queue(self, db: sqlite3.Connection, e: Any) -> None:
        qid = str(e.originator_id)
        if isinstance(e, Queue.Created):
            db.execute("INSERT OR IGNORE INTO queues VALUES (?, ?, NULL, NULL)", (qid, e.tenant_id))
            at = ""  # every conversation that entered it before it was known
        else:
            at = _ts(e.timestamp)
            # A file from before the history: the policy it had, since it was set.
            db.execute(
                "INSERT INTO queue_policies SELECT id, 1, tenant_id, policy_at, policy_id "
                "FROM queues q WHERE id = ? AND policy_id IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM queue_policies h WHERE h.queue_id = q.id)",
                (qid,),
            )
            policy = None if e.policy_id is None else str(e.policy_id)
            db.execute(
                "UPDATE queues SET policy_id = ?, policy_at = ? WHERE id = ?", (policy, at, qid)
            )
            db.execute(
                "INSERT INTO queue_policies SELECT id, (SELECT COALESCE(max(number), 0) + 1 "
                "FROM queue_policies h WHERE h.queue_id = q.id), tenant_id, ?, ? "
                "FROM queues q WHERE id = ?",
                (at, policy, qid),
            )
        if self._noting is not None:
            self._noting.note_queue(qid, at)

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
        if self._noting is not None:
            self._noting.calendars.add((str(e.originator_id), e.name))

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
            if self._noting is not None:
                self._noting.new_policies.add(pid)
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
        update_row(db, "policies", pid, sets)
        if self._noting is not None:
            self._noting.policies.add(pid)

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
            self._ticket_terms(db, tid, at)
        elif isinstance(e, Ticket.StatusChanged):
            self._on_status(db, tid, TicketStatus(e.status), TicketStatus(e.previous), at)
        elif isinstance(e, Ticket.PriorityChanged):
            self._ticket_terms_before(db, tid)
            db.execute(
                "UPDATE tickets SET priority = ?, terms_at = ? WHERE id = ?",
                (str(e.priority), at, tid),
            )
            self._ticket_terms(db, tid, at)
        elif isinstance(e, Ticket.SlaPolicySet):
            self._ticket_terms_before(db, tid)
            policy = None if e.policy_id is None else str(e.policy_id)
            db.execute(
                "UPDATE tickets SET policy_id = ?, terms_at = ? WHERE id = ?", (policy, at, tid)
            )
            self._ticket_terms(db, tid, at)
        elif isinstance(e, Ticket.ConversationLinked):
            self._ticket_terms_before(db, tid)
            # The first linked conversation is where the ticket came from: its channel.
            linked = db.execute(
                "UPDATE tickets SET origin_conversation_id = ?, terms_at = ? "
                "WHERE id = ? AND origin_conversation_id IS NULL",
                (str(e.conversation_id), at, tid),
            ).rowcount
            if linked:
                self._ticket_terms(db, tid, at)
        elif isinstance(e, Ticket.Commented) and e.public:
            db.execute(
                "UPDATE tickets SET responded_at = COALESCE(responded_at, ?) WHERE id = ?",
                (at, tid),
            )
        else:
            return
        self._note(_TICKET, tid)

    def _ticket_terms(self, db: sqlite3.Connection, tid: str, at: str) -> None:
        """Record the ticket's terms as they are now, in force from `at`."""
        db.execute(
            "INSERT INTO ticket_terms SELECT id, (SELECT COALESCE(max(number), 0) + 1 "
            "FROM ticket_terms h WHERE h.ticket_id = t.id), tenant_id, ?, policy_id, "
            "priority, origin_conversation_id FROM tickets t WHERE id = ?",
            (at, tid),
        )

    def _ticket_terms_before(self, db: sqlite3.Connection, tid: str) -> None:
        """A ticket of a file from before the history: its terms until now, since raised."""
        db.execute(
            "INSERT INTO ticket_terms SELECT id, 1, tenant_id, raised_at, policy_id, "
            "priority, origin_conversation_id FROM tickets t WHERE id = ? AND NOT EXISTS "
            "(SELECT 1 FROM ticket_terms h WHERE h.ticket_id = t.id)",
            (tid,),
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
            self._note(_CONVERSATION, cid)
            if self._noting is not None:
                self._noting.origins.add(cid)  # tickets linked to it before it was known
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
        else:
            return
        self._note(_CONVERSATION, cid)

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
            self._note(e.subject_kind, str(e.subject_id))
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
            update_row(db, "clocks", cid, sets)
        row = db.execute(
            "SELECT tenant_id, subject_id, subject_kind FROM clocks WHERE id = ?", (cid,)
        ).fetchone()
        if row is not None:
            self.changed(row[0], "sla", row[1])
            # Looked at again: an act that ran while this table was behind the clock may
            # have followed terms older than the clock's.
            self._note(row[2], row[1])

    # ---------------------------------------------------------------------------- act
    def act(self, ctx: ActContext) -> list[SlaDecision]:
        now = ctx.now.astimezone(UTC)
        clocks = _clocks_app(ctx.apps)
        db = self.connect()
        with self._lock:
            marks, self._marks = self._marks, _Marks()
        try:
            return self._act(db, clocks, now, marks)
        except BaseException:
            # Looked at again next time: what was done is a no-op then.
            with self._lock:
                if marks is None:
                    self._marks = None
                elif self._marks is not None:
                    self._marks.update(marks)
            raise

    def _act(
        self, db: sqlite3.Connection, clocks: SlaClocks, now: datetime, marks: _Marks | None
    ) -> list[SlaDecision]:
        decisions: list[SlaDecision] = []
        done: set[UUID] = set()
        subjects = self._all_subjects(db) if marks is None else self._marked_subjects(db, marks)
        for kind, tenant_id, subject_id in subjects:
            known = self._clocks_of(db, tenant_id, kind, subject_id)
            if len(known) == len(Metric) and all(c.status in FINISHED for c in known.values()):
                continue  # for good
            facts = (
                self._ticket_facts(db, tenant_id, subject_id)
                if kind is SubjectKind.TICKET
                else self._conversation_facts(db, tenant_id, subject_id)
            )
            if facts is None:
                continue
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
                if clock.status in FINISHED:
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
            at = facts.retarget_at(clock.terms_key, terms.key)
            steps.append((at, _bind(clocks.retarget, tenant, cid, terms, at, now)))
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
    def _all_subjects(self, db: sqlite3.Connection) -> list[tuple[SubjectKind, str, UUID]]:
        """Every subject that has or had a policy, and whose clocks are not both finished."""
        tickets = db.execute(
            f"""
            SELECT t.tenant_id, t.id FROM tickets t
            WHERE (t.policy_id IS NOT NULL OR EXISTS (
                SELECT 1 FROM ticket_terms h WHERE h.ticket_id = t.id AND h.policy_id IS NOT NULL
            )) AND {_not_finished("t", _TICKET)}
            """
        )
        conversations = db.execute(
            f"""
            SELECT w.tenant_id, w.id FROM conversation_states w
            WHERE EXISTS (
                SELECT 1 FROM conversation_queues s
                JOIN queues q ON q.id = s.queue_id AND q.tenant_id = s.tenant_id
                WHERE s.conversation_id = w.id AND s.tenant_id = w.tenant_id
                AND (q.policy_id IS NOT NULL OR EXISTS (
                    SELECT 1 FROM queue_policies h
                    WHERE h.queue_id = q.id AND h.policy_id IS NOT NULL))
            ) AND {_not_finished("w", _CONVERSATION)}
            """
        )
        return _sorted(
            [(SubjectKind.TICKET, r[0], r[1]) for r in tickets]
            + [(SubjectKind.CONVERSATION, r[0], r[1]) for r in conversations]
        )

    def _marked_subjects(
        self, db: sqlite3.Connection, marks: _Marks
    ) -> list[tuple[SubjectKind, str, UUID]]:
        """The subjects the changes noted in `marks` may concern."""
        found: set[tuple[str, str, str]] = set()  # (kind, tenant, id)

        def add(kind: str, rows: Iterable[Sequence[str]]) -> None:
            found.update((kind, r[0], r[1]) for r in rows)

        for kind, subject_id in marks.subjects:
            rows = db.execute(
                f"SELECT tenant_id, id FROM {'tickets' if kind == _TICKET else 'conversation_states'}"
                " WHERE id = ?",
                (subject_id,),
            )
            add(kind, rows)
        open_clocks = (
            f"SELECT DISTINCT subject_kind, tenant_id, subject_id FROM clocks "
            f"WHERE {{}} = ? AND status IN {_OPEN}"
        )
        # An edited policy: the clocks on it (a subject that took it since is marked).
        for pid in marks.policies:
            found.update(tuple(r) for r in db.execute(open_clocks.format("policy_id"), (pid,)))
        # A calendar changed: the clocks on it, of the tenant that changed it.
        for tenant_key, name in marks.calendars:
            for r in db.execute(open_clocks.format("calendar_name"), (name,)):
                if str(Tenant.create_id(r[1])) == tenant_key:
                    found.add(tuple(r))
        # A policy that came after what names it (an upstream behind).
        queues = dict(marks.queues)
        for pid in marks.new_policies:
            add(
                _TICKET,
                db.execute(
                    "SELECT tenant_id, ticket_id FROM ticket_terms WHERE policy_id = ? "
                    "UNION SELECT tenant_id, id FROM tickets WHERE policy_id = ?",
                    (pid, pid),
                ),
            )
            for (queue_id,) in db.execute(
                "SELECT queue_id FROM queue_policies WHERE policy_id = ? "
                "UNION SELECT id FROM queues WHERE policy_id = ?",
                (pid, pid),
            ):
                queues[queue_id] = ""
        # A queue's policy changed at `at`: the conversations there then or since.
        for queue_id, at in queues.items():
            add(
                _CONVERSATION,
                db.execute(
                    """
                    SELECT DISTINCT s.tenant_id, s.conversation_id FROM conversation_queues s
                    LEFT JOIN conversation_queues n ON n.conversation_id = s.conversation_id
                        AND n.tenant_id = s.tenant_id AND n.number = s.number + 1
                    WHERE s.queue_id = ? AND (n.entered_at IS NULL OR n.entered_at > ?)
                    """,
                    (queue_id, at),
                ),
            )
        # A conversation that came after the tickets linked to it: their channel.
        for conversation_id in marks.origins:
            add(
                _TICKET,
                db.execute(
                    "SELECT tenant_id, id FROM tickets WHERE origin_conversation_id = ?",
                    (conversation_id,),
                ),
            )
        return _sorted([(SubjectKind(k), tenant, sid) for k, tenant, sid in found])

    def _ticket_facts(
        self, db: sqlite3.Connection, tenant_id: str, ticket_id: UUID
    ) -> _Facts | None:
        tid = str(ticket_id)
        row = db.execute(
            "SELECT * FROM tickets WHERE id = ? AND tenant_id = ?", (tid, tenant_id)
        ).fetchone()
        if row is None:
            return None
        # Its terms after each change (a ticket of a file from before the history: the
        # present ones, since it was raised).
        history = db.execute(
            f"""
            SELECT h.at, h.policy_id, h.priority, {_POLICY_TERMS}, cv.channel,
                   {_TICKET_KEY} AS wanted_key
            FROM (
                SELECT number, ticket_id, tenant_id, at, policy_id, priority, conversation_id
                FROM ticket_terms WHERE ticket_id = :id AND tenant_id = :tenant
                UNION ALL
                SELECT 0, id, tenant_id, raised_at, policy_id, priority, origin_conversation_id
                FROM tickets t WHERE id = :id AND tenant_id = :tenant AND NOT EXISTS (
                    SELECT 1 FROM ticket_terms x WHERE x.ticket_id = t.id)
            ) h
            JOIN tickets t ON t.id = h.ticket_id
            LEFT JOIN policies p ON p.id = h.policy_id AND p.tenant_id = h.tenant_id
            LEFT JOIN calendars cal ON cal.tenant_key = t.tenant_key AND cal.name = p.calendar_name
            LEFT JOIN conversations cv ON cv.id = h.conversation_id AND cv.tenant_id = h.tenant_id
            ORDER BY h.number
            """,
            {"id": tid, "tenant": tenant_id},
        ).fetchall()
        raised = _at(row["raised_at"])
        stretches = [
            _Stretch(
                at=_at(r["at"]),
                begun=raised,
                cover=_cover(r["policy_id"], r["p_id"]),
                policy_id=r["policy_id"],
                row=r if r["p_id"] is not None else None,
                priority=r["priority"],
                channel=r["channel"] or "-",
            )
            for r in history
        ]
        pauses = self._pauses(db, "ticket_pauses", "ticket_id", tid, tenant_id)
        return _facts(
            tenant_id,
            SubjectKind.TICKET,
            ticket_id,
            stretches,
            _POLICY_REMOVED,
            "resolved without a public reply",
            _at_or_none(row["responded_at"]),
            _at_or_none(row["ended_at"]),
            pauses,
        )

    def _conversation_facts(
        self, db: sqlite3.Connection, tenant_id: str, conversation_id: UUID
    ) -> _Facts | None:
        cid = str(conversation_id)
        state = db.execute(
            "SELECT * FROM conversation_states WHERE id = ? AND tenant_id = ?", (cid, tenant_id)
        ).fetchone()
        stints = db.execute(
            """
            SELECT s.number, s.entered_at, q.id AS q_id, q.policy_id
            FROM conversation_queues s
            LEFT JOIN queues q ON q.id = s.queue_id AND q.tenant_id = s.tenant_id
            WHERE s.conversation_id = ? AND s.tenant_id = ?
            ORDER BY s.number
            """,
            (cid, tenant_id),
        ).fetchall()
        if state is None or not stints:
            return None
        queue_ids = sorted({r["q_id"] for r in stints if r["q_id"] is not None})
        marks = ", ".join("?" * len(queue_ids))
        # Each queue's policy from `since` on (None: since always, for a queue of a file
        # from before the history, or one whose policy was never set).
        changes: dict[str, list[tuple[datetime | None, str | None]]] = {q: [] for q in queue_ids}
        for r in db.execute(
            f"SELECT queue_id, since, policy_id FROM queue_policies "
            f"WHERE tenant_id = ? AND queue_id IN ({marks}) ORDER BY queue_id, number",
            (tenant_id, *queue_ids),
        ):
            changes[r[0]].append((_at(r[1]), r[2]))
        for r in stints:
            if r["q_id"] is not None and not changes[r["q_id"]]:
                changes[r["q_id"]].append((None, r["policy_id"]))
        named = sorted({pid for c in changes.values() for _, pid in c if pid is not None})
        policies = {
            r["p_id"]: r
            for r in db.execute(
                f"""
                SELECT {_POLICY_TERMS}, w.channel, '{_CONVERSATION_PRIORITY}' AS priority,
                       {_CONVERSATION_KEY} AS wanted_key
                FROM conversation_states w
                JOIN policies p ON p.tenant_id = w.tenant_id
                LEFT JOIN calendars cal ON cal.tenant_key = w.tenant_key
                    AND cal.name = p.calendar_name
                WHERE w.id = ? AND w.tenant_id = ? AND p.id IN ({", ".join("?" * len(named))})
                """,
                (cid, tenant_id, *named),
            )
        }

        def stretch(at: datetime, begun: datetime, policy_id: str | None) -> _Stretch:
            row = None if policy_id is None else policies.get(policy_id)
            return _Stretch(at, begun, _cover(policy_id, row), policy_id, row)

        stretches: list[_Stretch] = []
        for i, s in enumerate(stints):
            entered = _at(s["entered_at"])
            left = _at(stints[i + 1]["entered_at"]) if i + 1 < len(stints) else None
            if s["q_id"] is None:
                stretches.append(_Stretch(entered, entered, _Cover.UNKNOWN, None, None))
                continue
            history = changes[s["q_id"]]
            # What the queue had when it came in: the last change by then (none before
            # the first).
            policy = None
            for since, pid in history:
                if since is None or since <= entered:
                    policy = pid
            stretches.append(stretch(entered, entered, policy))
            for since, pid in history:
                if since is not None and entered < since and (left is None or since < left):
                    stretches.append(stretch(since, entered, pid))
        pauses = self._pauses(db, "conversation_pauses", "conversation_id", cid, tenant_id)
        return _facts(
            tenant_id,
            SubjectKind.CONVERSATION,
            conversation_id,
            stretches,
            _DROPPED,
            "resolved without a reply",
            _at_or_none(state["responded_at"]),
            _at_or_none(state["ended_at"]),
            pauses,
        )

    def _pauses(
        self, db: sqlite3.Connection, table: str, column: str, subject_id: str, tenant_id: str
    ) -> tuple[_Pause, ...]:
        return tuple(
            _Pause(r[0], _at(r[1]), _at_or_none(r[2]))
            for r in db.execute(
                f"SELECT number, paused_at, resumed_at FROM {table} "
                f"WHERE {column} = ? AND tenant_id = ? ORDER BY number",
                (subject_id, tenant_id),
            )
        )

    def _clocks_of(
        self, db: sqlite3.Connection, tenant_id: str, kind: SubjectKind, subject_id: UUID
    ) -> dict[Metric, ClockView]:
        rows = db.execute(
            "SELECT * FROM clocks WHERE subject_id = ? AND tenant_id = ? AND subject_kind = ?",
            (str(subject_id), tenant_id, kind.value),
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


def _facts(
    tenant_id: str,
    kind: SubjectKind,
    subject_id: UUID,
    stretches: Sequence[_Stretch],
    dropped: str,
    unanswered: str,
    responded_at: datetime | None,
    ended_at: datetime | None,
    pauses: tuple[_Pause, ...],
) -> _Facts:
    """A subject's facts from the stretches of its terms (at least one), in order."""
    covered = [i for i, s in enumerate(stretches) if s.cover is _Cover.COVERED]
    first = stretches[covered[0]] if covered else None
    # The first time it is uncovered after its clocks started stops them, for good.
    after = stretches[covered[0] :] if covered else []
    stop = next((s for s in after if s.cover is _Cover.UNCOVERED), None)
    terms: dict[Metric, ClockTerms] = {}
    since: _Since | None = None
    if covered:
        i = covered[-1]
        last = stretches[i]
        assert last.row is not None
        terms = _terms(last.row)

        def same_policy(s: _Stretch) -> bool | None:
            if s.cover is _Cover.UNKNOWN:
                return None  # says nothing of the policy
            return s.cover is _Cover.COVERED and s.policy_id == last.policy_id

        since = _Since(
            policy=_run_start(stretches, i, same_policy),
            version=_at(last.row["p_updated_at"]),
            calendar=_at_or_none(last.row["cal_updated_at"]),
            priority=_run_start(stretches, i, lambda s: s.priority == last.priority),
            channel=_run_start(stretches, i, lambda s: s.channel == last.channel),
        )
    return _Facts(
        tenant_id=tenant_id,
        kind=kind,
        id=subject_id,
        started_at=(first or stretches[0]).begun,
        start_terms={} if first is None or first.row is None else _terms(first.row),
        dropped=None if stop is None else _End(stop.at, dropped),
        unanswered=unanswered,
        responded_at=responded_at,
        ended_at=ended_at,
        pauses=pauses,
        terms=terms,
        since=since,
    )


def _sorted(
    subjects: Iterable[tuple[SubjectKind, str, str]],
) -> list[tuple[SubjectKind, str, UUID]]:
    """Tickets first, each kind by tenant and id: the order of every act."""
    order = {SubjectKind.TICKET: 0, SubjectKind.CONVERSATION: 1}
    return [
        (kind, tenant, UUID(sid))
        for kind, tenant, sid in sorted(subjects, key=lambda s: (order[s[0]], s[1], s[2]))
    ]


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
