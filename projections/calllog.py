"""The call log (AX16): one row per call, what happened on it and how long each part took.

A row follows its call from the first channel to the hang-up and stays: direction,
hotline, the customer's number, the queues it waited in, the agents who took it (the
first to answer, then transfer targets: an attended transfer's consult agent only once
the transfer completes onto them, not for answering the consultation), its times
(started, offered to a queue, first ring, answered, ended), its durations and its
recordings (AX10, AX20). Legs and recordings live in tables of their own.

Queries: `list` (the log, filtered), `get` (one call with its legs and recordings),
`recordings` (recording search, AX20) and `cdr` (call detail records for billing, PR4,
PR6: ended calls with what billing rates them by — the customer leg's endpoint and
on-net/off-net, the agents' endpoint kinds).

Durations are those of `Call.usage()` (domain.calls), computed from the same facts as the
events replay them; they are known once the call has ended (None before):

- wait: first offer to a queue until the answer, or the end if nobody answered;
- ring: first ring of a non-caller leg (supervisors aside) until the answer or the end;
- talk: from the answer to the end, minus the time the customer was on hold;
- hold: time on hold; duration: start to end.

Outcome: "in_progress" until the end, then "answered" (someone other than the caller
answered), "abandoned" (an inbound caller hung up first, CC17), "missed" (an inbound call
the PBX ended unanswered: closed queue, IVR hang-up, nowhere to overflow) or "no_answer"
(an outbound or internal call nobody picked up).

Live-update kind (`changed`): "call" (key: call id) for every change of a call's row, its
legs or its recordings.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from domain.call_legs import PartyKind, seconds_between
from domain.calls import Call
from projections.readmodel import SqliteReadModel
from projections.sql import change_row, iso, like_escaped, one_of

# msgspec over the stdlib: the lists are re-encoded on each offer and answer of a rebuild.
_json = msgspec.json.Encoder()

# Call ids are unique across tenants (derived from the tenant and the switch's call id)
# and later events carry only the id: the id alone is the key. Every query still names
# the tenant, so no row crosses the wall.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS calls (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        call_ref TEXT NOT NULL,
        direction TEXT NOT NULL,
        hotline TEXT,
        customer_number TEXT,
        origin_leg_id TEXT NOT NULL,
        queue_id TEXT,
        queues TEXT NOT NULL,
        started_at TEXT NOT NULL,
        offered_at TEXT,
        first_ring_at TEXT,
        answered_at TEXT,
        answered_leg_id TEXT,
        agents TEXT NOT NULL,
        held_since TEXT,
        hold_seconds REAL NOT NULL,
        ended_at TEXT,
        ended_by_leg_id TEXT,
        end_cause TEXT,
        abandoned INTEGER NOT NULL,
        forced_by TEXT,
        outcome TEXT NOT NULL,
        wait_seconds REAL,
        ring_seconds REAL,
        talk_seconds REAL,
        duration_seconds REAL,
        transfer_count INTEGER NOT NULL,
        recording_count INTEGER NOT NULL,
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS calls_by_start ON calls (tenant_id, started_at DESC)",
    # Billing exports a period by the end time: a call is in the period it ended in, so an
    # export of a past period does not change when a long call ends later.
    "CREATE INDEX IF NOT EXISTS calls_by_end ON calls (tenant_id, ended_at, id)",
    """CREATE INDEX IF NOT EXISTS calls_by_outcome
        ON calls (tenant_id, outcome, started_at DESC)""",
    """CREATE TABLE IF NOT EXISTS call_legs (
        call_id TEXT NOT NULL,
        leg_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        party TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        address TEXT NOT NULL,
        user_id TEXT,
        created_at TEXT NOT NULL,
        answered_at TEXT,
        ended_at TEXT,
        end_cause TEXT,
        seq INTEGER NOT NULL,
        on_net INTEGER,
        PRIMARY KEY (call_id, leg_id)
    )""",
    # "Calls of agent X": the agent filter starts from the agent's legs.
    "CREATE INDEX IF NOT EXISTS call_legs_by_user ON call_legs (tenant_id, user_id, call_id)",
    """CREATE TABLE IF NOT EXISTS call_recordings (
        call_id TEXT NOT NULL,
        recording_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        started_at TEXT NOT NULL,
        stopped_at TEXT,
        uri TEXT,
        duration_seconds REAL,
        size_bytes INTEGER,
        metadata TEXT NOT NULL,
        PRIMARY KEY (call_id, recording_id)
    )""",
    # The consult legs of attended transfers still consulting: their agent takes the call
    # only if the transfer completes onto them (Transferred), not when they answer.
    """CREATE TABLE IF NOT EXISTS call_consult_legs (
        call_id TEXT NOT NULL,
        leg_id TEXT NOT NULL,
        PRIMARY KEY (call_id, leg_id)
    )""",
)

_NON_RINGING = (PartyKind.SUPERVISOR.value,)


class CallLogReadModel(SqliteReadModel):
    """One row per call of a tenant, with its legs and recordings."""

    name = "call_log"
    upstreams = ("calls",)
    schema = _SCHEMA

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        kind = type(event)
        if kind is Call.Started:
            self._started(db, event)
            return
        change = _CHANGES.get(kind)
        if change is None:
            return
        done = change_row(
            db, "calls", event, lambda row: change(self, db, row, event), iso(event.at)
        )
        if done is not None:
            self.changed(done[0]["tenant_id"], "call", str(event.originator_id))

    def _started(self, db: sqlite3.Connection, event: Any) -> None:
        call_id = str(event.originator_id)
        at = iso(event.at)
        origin = event.legs[0]["leg_id"]
        # The legs placed with the call other than the caller's ring from the start (an
        # outbound call's customer).
        rings = [leg for leg in event.legs[1:] if str(leg["party"]) not in _NON_RINGING]
        db.execute(
            "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, NULL, '[]', ?, NULL, ?, NULL, NULL, "
            "'[]', NULL, 0.0, NULL, NULL, NULL, 0, NULL, 'in_progress', NULL, NULL, NULL, NULL, "
            "0, 0, ?, ?)",
            (
                call_id,
                event.tenant_id,
                event.call_ref,
                str(event.direction),
                event.hotline,
                event.customer_number,
                origin,
                at,
                at if rings else None,
                event.originator_version,
                at,
            ),
        )
        for leg in event.legs:
            _insert_leg(db, event.tenant_id, call_id, leg, at)
        self.changed(event.tenant_id, "call", call_id)

    # Each change below takes the row as it is and the event, and returns the columns to
    # set; those that touch the legs or recordings do so on the way.

    def _offered(self, db: sqlite3.Connection, row: sqlite3.Row, event: Any) -> dict[str, Any]:
        queue = str(event.queue_id)
        queues = msgspec.json.decode(row["queues"], type=list[str])
        return {
            "queue_id": queue,
            "queues": _json.encode([*queues, queue]).decode(),
            "offered_at": row["offered_at"] or iso(event.at),
        }

    def _leg_added(self, db: sqlite3.Connection, row: sqlite3.Row, event: Any) -> dict[str, Any]:
        at = iso(event.at)
        values: dict[str, Any] = {}
        leg = _NEW_LEG[type(event)](event)
        if type(event) is Call.TransferRequested:
            db.execute(
                "INSERT OR IGNORE INTO call_consult_legs VALUES (?, ?)", (row["id"], leg["leg_id"])
            )
        elif type(event) is Call.Transferred:
            _end_leg(db, row["id"], event.from_leg_id, "transferred", at)
            values.update(_stop_holding(row, at), transfer_count=row["transfer_count"] + 1)
            if _end_consult(db, row["id"], leg["leg_id"]):
                # An attended transfer completes onto the consult leg, answered already:
                # its agent takes the call now.
                values.update(_took_the_call(db, row, leg["leg_id"]))
        _insert_leg(db, row["tenant_id"], row["id"], leg, at)
        if str(leg["party"]) not in _NON_RINGING:
            first = row["first_ring_at"]
            values["first_ring_at"] = at if first is None else min(first, at)
        return values

    def _answered(self, db: sqlite3.Connection, row: sqlite3.Row, event: Any) -> dict[str, Any]:
        at = iso(event.at)
        db.execute(
            "UPDATE call_legs SET answered_at = coalesce(answered_at, ?) "
            "WHERE call_id = ? AND leg_id = ?",
            (at, row["id"], event.leg_id),
        )
        values: dict[str, Any] = {}
        if row["answered_at"] is None and event.leg_id != row["origin_leg_id"]:
            values.update(answered_at=at, answered_leg_id=event.leg_id)
        # Every agent who took the call: the first to answer, then transfer targets — a
        # consult leg's agent only once the transfer completes onto them (Transferred).
        consulting = db.execute(
            "SELECT 1 FROM call_consult_legs WHERE call_id = ? AND leg_id = ?",
            (row["id"], event.leg_id),
        ).fetchone()
        if consulting is None:
            values.update(_took_the_call(db, row, event.leg_id))
        return values

    def _leg_left(self, db: sqlite3.Connection, row: sqlite3.Row, event: Any) -> dict[str, Any]:
        at = iso(event.at)
        kind = type(event)
        if kind is Call.TransferCancelled:
            _end_leg(db, row["id"], event.consult_leg_id, "transfer_cancelled", at)
            _end_consult(db, row["id"], event.consult_leg_id)
        elif kind is Call.SupervisionEnded:
            _end_leg(db, row["id"], event.leg_id, "supervision_ended", at)
        else:
            _end_leg(db, row["id"], event.leg_id, event.cause, at)
        return {}

    def _recording_started(
        self, db: sqlite3.Connection, row: sqlite3.Row, event: Any
    ) -> dict[str, Any]:
        inserted = db.execute(
            "INSERT OR IGNORE INTO call_recordings VALUES (?, ?, ?, ?, NULL, NULL, NULL, NULL, '{}')",
            (row["id"], event.recording_id, row["tenant_id"], iso(event.at)),
        ).rowcount
        return {"recording_count": row["recording_count"] + inserted}

    def _recording_stopped(
        self, db: sqlite3.Connection, row: sqlite3.Row, event: Any
    ) -> dict[str, Any]:
        db.execute(
            "UPDATE call_recordings SET stopped_at = coalesce(stopped_at, ?) "
            "WHERE call_id = ? AND recording_id = ?",
            (iso(event.at), row["id"], event.recording_id),
        )
        return {}

    def _recording_stored(
        self, db: sqlite3.Connection, row: sqlite3.Row, event: Any
    ) -> dict[str, Any]:
        db.execute(
            "UPDATE call_recordings SET uri = ?, duration_seconds = ?, size_bytes = ?, "
            "metadata = ? WHERE call_id = ? AND recording_id = ?",
            (
                event.uri,
                float(event.duration_seconds),
                int(event.size_bytes),
                _json.encode(dict(sorted(event.metadata.items()))).decode(),
                row["id"],
                event.recording_id,
            ),
        )
        return {}

    def _ended(self, db: sqlite3.Connection, row: sqlite3.Row, event: Any) -> dict[str, Any]:
        at = iso(event.at)
        db.execute(
            "UPDATE call_legs SET ended_at = ?, end_cause = ? WHERE call_id = ? AND ended_at IS NULL",
            (at, event.cause, row["id"]),
        )
        db.execute(
            "UPDATE call_recordings SET stopped_at = ? WHERE call_id = ? AND stopped_at IS NULL",
            (at, row["id"]),
        )
        db.execute("DELETE FROM call_consult_legs WHERE call_id = ?", (row["id"],))
        held = _stop_holding(row, at)
        hold = held.get("hold_seconds", row["hold_seconds"])
        end = _time(at)
        answered = _time(row["answered_at"]) if row["answered_at"] else None
        answer_or_end = answered or end
        connected = seconds_between(answered, end) if answered else 0.0
        return {
            **held,
            "ended_at": at,
            "ended_by_leg_id": event.by_leg_id,
            "end_cause": event.cause,
            "outcome": _outcome(row),
            "wait_seconds": _since(row["offered_at"], answer_or_end),
            "ring_seconds": _since(row["first_ring_at"], answer_or_end),
            "talk_seconds": max(0.0, connected - hold),
            "duration_seconds": seconds_between(_time(row["started_at"]), end),
        }

    # ------------------------------------------------------------------ queries
    def get(self, tenant_id: str, call_id: str | UUID) -> dict[str, Any] | None:
        """The call with its legs (in the order they joined) and recordings."""
        db = self.connect()
        row = db.execute(
            "SELECT * FROM calls WHERE tenant_id = ? AND id = ?", (tenant_id, str(call_id))
        ).fetchone()
        if row is None:
            return None
        legs = db.execute(
            "SELECT * FROM call_legs WHERE call_id = ? AND tenant_id = ? ORDER BY seq",
            (row["id"], tenant_id),
        )
        recordings = db.execute(
            "SELECT * FROM call_recordings WHERE call_id = ? AND tenant_id = ? "
            "ORDER BY started_at, recording_id",
            (row["id"], tenant_id),
        )
        return {
            **_call(row),
            "ended_by_leg_id": row["ended_by_leg_id"],
            "end_cause": row["end_cause"],
            "forced_by": row["forced_by"],
            "legs": [
                {
                    "leg_id": leg["leg_id"],
                    "party": leg["party"],
                    "endpoint": leg["endpoint"],
                    "address": leg["address"],
                    "user_id": leg["user_id"],
                    "created_at": leg["created_at"],
                    "answered_at": leg["answered_at"],
                    "ended_at": leg["ended_at"],
                    "end_cause": leg["end_cause"],
                    "on_net": _bool(leg["on_net"]),
                }
                for leg in legs
            ],
            "recordings": [_recording(r) for r in recordings],
        }

    def list(
        self,
        tenant_id: str,
        *,
        direction: str | Iterable[str] | None = None,
        outcome: str | Iterable[str] | None = None,
        agent_id: str | UUID | None = None,
        queue_id: str | UUID | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        number: str | None = None,
        has_recording: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[dict[str, Any]]:
        """Calls matching every filter given, the most recently started first.

        `agent_id`: calls the agent had a leg on (placed, rang, answered or took over);
        `queue_id`: calls offered to that queue at any point; `since` (inclusive) and
        `until` (exclusive): the start time; `number`: part of the customer's number or
        the hotline.
        """
        where = ["c.tenant_id = ?"]
        params: builtins.list[Any] = [tenant_id]
        one_of("c.direction", direction, where, params)
        one_of("c.outcome", outcome, where, params)
        _agent_and_number(agent_id, number, where, params)
        if queue_id is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(c.queues) WHERE value = ?)")
            params.append(str(queue_id))
        if since is not None:
            where.append("c.started_at >= ?")
            params.append(iso(since))
        if until is not None:
            where.append("c.started_at < ?")
            params.append(iso(until))
        if has_recording is not None:
            where.append("c.recording_count > 0" if has_recording else "c.recording_count = 0")
        rows = self.connect().execute(
            f"SELECT c.* FROM calls c WHERE {' AND '.join(where)} "
            "ORDER BY c.started_at DESC, c.id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [_call(r) for r in rows]

    def recordings(
        self,
        tenant_id: str,
        *,
        call_id: str | UUID | None = None,
        agent_id: str | UUID | None = None,
        number: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[dict[str, Any]]:
        """Recordings matching every filter given, with their call's facts, the most
        recently started first (AX20).

        `agent_id` and `number` as in `list`; `since` (inclusive) and `until` (exclusive):
        the recording's start. `uri` is None until the file is stored. `agents`: every
        agent who had a leg on the call (as `Call.agent_ids()`), also one who placed it.
        """
        where = ["r.tenant_id = ?"]
        params: builtins.list[Any] = [tenant_id]
        if call_id is not None:
            where.append("r.call_id = ?")
            params.append(str(call_id))
        _agent_and_number(agent_id, number, where, params)
        if since is not None:
            where.append("r.started_at >= ?")
            params.append(iso(since))
        if until is not None:
            where.append("r.started_at < ?")
            params.append(iso(until))
        rows = (
            self.connect()
            .execute(
                "SELECT r.*, c.call_ref, c.direction, c.hotline, c.customer_number, "
                "c.started_at AS call_started_at FROM call_recordings r "
                "JOIN calls c ON c.id = r.call_id AND c.tenant_id = r.tenant_id "
                f"WHERE {' AND '.join(where)} "
                "ORDER BY r.started_at DESC, r.call_id DESC, r.recording_id DESC LIMIT ? OFFSET ?",
                (*params, limit, offset),
            )
            .fetchall()
        )
        legs = _legs(self.connect(), tenant_id, {r["call_id"] for r in rows})
        return [
            {
                "call_id": r["call_id"],
                "call_ref": r["call_ref"],
                "direction": r["direction"],
                "hotline": r["hotline"],
                "customer_number": r["customer_number"],
                "agents": _agents(legs[r["call_id"]]),
                "call_started_at": r["call_started_at"],
                **_recording(r),
            }
            for r in rows
        ]

    def cdr(
        self,
        tenant_id: str,
        *,
        since: datetime,
        until: datetime,
        after: tuple[str, str] | None = None,
        limit: int = 1000,
    ) -> builtins.list[dict[str, Any]]:
        """Call detail records for billing (PR4, PR6): the calls that ended in
        [`since`, `until`), in the order they ended.

        A page at a time: `after` is the (`ended_at`, `call_id`) of the last record of the
        previous page. `on_net` and `customer_endpoint` are those of the customer's leg
        (None on an internal call); `agents`: every agent who had a leg on the call (as
        `Call.agent_ids()`: one who placed it or only rang too), and `agent_endpoints`
        the endpoint kinds of their legs, each once, in the order the legs joined.
        """
        where = ["tenant_id = ?", "ended_at IS NOT NULL", "ended_at >= ?", "ended_at < ?"]
        params: builtins.list[Any] = [tenant_id, iso(since), iso(until)]
        if after is not None:
            where.append("(ended_at, id) > (?, ?)")
            params.extend(after)
        db = self.connect()
        calls = db.execute(
            f"SELECT * FROM calls WHERE {' AND '.join(where)} ORDER BY ended_at, id LIMIT ?",
            (*params, limit),
        ).fetchall()
        legs = _legs(db, tenant_id, {row["id"] for row in calls})
        return [_cdr(row, legs[row["id"]]) for row in calls]


def _legs(
    db: sqlite3.Connection, tenant_id: str, call_ids: builtins.set[str]
) -> dict[str, builtins.list[sqlite3.Row]]:
    """The legs of a page of calls, each call's in the order they joined."""
    legs: dict[str, builtins.list[sqlite3.Row]] = {call_id: [] for call_id in call_ids}
    if not call_ids:
        return legs
    for leg in db.execute(
        "SELECT call_id, party, endpoint, user_id, on_net FROM call_legs WHERE tenant_id = ? "
        f"AND call_id IN ({', '.join('?' * len(legs))}) ORDER BY call_id, seq",
        (tenant_id, *legs),
    ):
        legs[leg["call_id"]].append(leg)
    return legs


def _agents(legs: builtins.list[sqlite3.Row]) -> builtins.list[str]:
    """Every agent who had a leg on the call, once, as `Call.agent_ids()` has them."""
    return builtins.list(
        dict.fromkeys(
            leg["user_id"]
            for leg in legs
            if leg["party"] == PartyKind.AGENT.value and leg["user_id"] is not None
        )
    )


def _agent_and_number(
    agent_id: str | UUID | None,
    number: str | None,
    where: builtins.list[str],
    params: builtins.list[Any],
) -> None:
    """The filters the log and recording search share, on the calls table as `c`."""
    if agent_id is not None:
        where.append(
            "EXISTS (SELECT 1 FROM call_legs l WHERE l.tenant_id = c.tenant_id "
            "AND l.user_id = ? AND l.call_id = c.id AND l.party = 'agent')"
        )
        params.append(str(agent_id))
    if number:
        where.append("(c.customer_number LIKE ? ESCAPE '\\' OR c.hotline LIKE ? ESCAPE '\\')")
        pattern = f"%{like_escaped(number.strip())}%"
        params.extend((pattern, pattern))


def _cdr(row: sqlite3.Row, legs: builtins.list[sqlite3.Row]) -> dict[str, Any]:
    customer = next((leg for leg in legs if leg["party"] == PartyKind.CUSTOMER.value), None)
    agent_endpoints = [leg["endpoint"] for leg in legs if leg["party"] == PartyKind.AGENT.value]
    return {
        "tenant_id": row["tenant_id"],
        "call_id": row["id"],
        "call_ref": row["call_ref"],
        "direction": row["direction"],
        "hotline": row["hotline"],
        "customer_number": row["customer_number"],
        "queue_id": row["queue_id"],
        "outcome": row["outcome"],
        "end_cause": row["end_cause"],
        "started_at": row["started_at"],
        "answered_at": row["answered_at"],
        "ended_at": row["ended_at"],
        "wait_seconds": row["wait_seconds"],
        "ring_seconds": row["ring_seconds"],
        "hold_seconds": row["hold_seconds"],
        "talk_seconds": row["talk_seconds"],
        "duration_seconds": row["duration_seconds"],
        "customer_endpoint": customer["endpoint"] if customer else None,
        "on_net": _bool(customer["on_net"]) if customer else None,
        "agents": _agents(legs),
        "agent_endpoints": builtins.list(dict.fromkeys(agent_endpoints)),
        "transfer_count": row["transfer_count"],
        "recording_count": row["recording_count"],
    }


_Change = Callable[[CallLogReadModel, sqlite3.Connection, sqlite3.Row, Any], dict[str, Any]]


def _fields(change: Callable[[sqlite3.Row, Any], dict[str, Any]]) -> _Change:
    """A change that sets columns of the call's row only."""
    return lambda model, db, row, event: change(row, event)


def _nothing(row: sqlite3.Row, event: Any) -> dict[str, Any]:
    # Nothing the log shows (IVR steps, mute): the row still follows the call's version.
    return {}


_CHANGES: dict[type, _Change] = {
    Call.Offered: CallLogReadModel._offered,
    Call.AgentRang: CallLogReadModel._leg_added,
    Call.TransferRequested: CallLogReadModel._leg_added,
    Call.Transferred: CallLogReadModel._leg_added,
    Call.SupervisionStarted: CallLogReadModel._leg_added,
    Call.Answered: CallLogReadModel._answered,
    Call.TransferCancelled: CallLogReadModel._leg_left,
    Call.SupervisionEnded: CallLogReadModel._leg_left,
    Call.LegHungUp: CallLogReadModel._leg_left,
    Call.Held: _fields(lambda r, e: {"held_since": r["held_since"] or iso(e.at)}),
    Call.Resumed: _fields(lambda r, e: _stop_holding(r, iso(e.at))),
    Call.ConferenceJoined: _fields(lambda r, e: _stop_holding(r, iso(e.at))),
    Call.RecordingStarted: CallLogReadModel._recording_started,
    Call.RecordingStopped: CallLogReadModel._recording_stopped,
    Call.RecordingStored: CallLogReadModel._recording_stored,
    Call.Abandoned: _fields(lambda r, e: {"abandoned": 1}),
    Call.ForceEnded: _fields(lambda r, e: {"forced_by": str(e.supervisor_id)}),
    Call.Ended: CallLogReadModel._ended,
    Call.IvrStepTaken: _fields(_nothing),
    Call.Muted: _fields(_nothing),
    Call.Unmuted: _fields(_nothing),
    Call.SupervisionModeChanged: _fields(_nothing),
}

# The leg an event brings onto the call.
_NEW_LEG: dict[type, Callable[[Any], dict[str, Any]]] = {
    Call.AgentRang: lambda e: e.leg,
    Call.TransferRequested: lambda e: e.consult_leg,
    Call.Transferred: lambda e: e.to_leg,
    Call.SupervisionStarted: lambda e: e.leg,
}


def _insert_leg(
    db: sqlite3.Connection, tenant: str, call_id: str, leg: dict[str, Any], at: str
) -> None:
    # OR IGNORE: an attended transfer completes onto the consult leg already there.
    # `seq` counts the call's legs so far: the order they joined, also within one event.
    db.execute(
        "INSERT OR IGNORE INTO call_legs VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, "
        "(SELECT count(*) FROM call_legs WHERE call_id = ?), ?)",
        (
            call_id,
            leg["leg_id"],
            tenant,
            str(leg["party"]),
            leg["endpoint"],
            leg["address"],
            _str(leg["user_id"]),
            at,
            call_id,
            _flag(leg.get("on_net")),
        ),
    )


def _end_leg(db: sqlite3.Connection, call_id: str, leg_id: str, cause: str, at: str) -> None:
    db.execute(
        "UPDATE call_legs SET ended_at = ?, end_cause = ? "
        "WHERE call_id = ? AND leg_id = ? AND ended_at IS NULL",
        (at, cause, call_id, leg_id),
    )


def _end_consult(db: sqlite3.Connection, call_id: str, leg_id: str) -> bool:
    """The consult leg's transfer completed or was cancelled; False if it was none."""
    return (
        db.execute(
            "DELETE FROM call_consult_legs WHERE call_id = ? AND leg_id = ?", (call_id, leg_id)
        ).rowcount
        > 0
    )


def _took_the_call(db: sqlite3.Connection, row: sqlite3.Row, leg_id: str) -> dict[str, Any]:
    """`agents` with the leg's agent added, if it is an answered agent's leg not there yet."""
    leg = db.execute(
        "SELECT party, user_id FROM call_legs WHERE call_id = ? AND leg_id = ? "
        "AND answered_at IS NOT NULL",
        (row["id"], leg_id),
    ).fetchone()
    if leg is None or leg["party"] != PartyKind.AGENT.value or not leg["user_id"]:
        return {}
    agents = msgspec.json.decode(row["agents"], type=list[str])
    if leg["user_id"] in agents:
        return {}
    return {"agents": _json.encode([*agents, leg["user_id"]]).decode()}


def _stop_holding(row: sqlite3.Row, at: str) -> dict[str, Any]:
    if row["held_since"] is None:
        return {}
    held = seconds_between(_time(row["held_since"]), _time(at))
    return {"held_since": None, "hold_seconds": row["hold_seconds"] + held}


def _outcome(row: sqlite3.Row) -> str:
    if row["answered_at"] is not None:
        return "answered"
    if row["direction"] == "inbound":
        return "abandoned" if row["abandoned"] else "missed"
    return "no_answer"


def _since(start: str | None, end: datetime) -> float:
    return 0.0 if start is None else seconds_between(_time(start), end)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _call(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "call_ref": row["call_ref"],
        "direction": row["direction"],
        "hotline": row["hotline"],
        "customer_number": row["customer_number"],
        "queue_id": row["queue_id"],
        "queues": msgspec.json.decode(row["queues"]),
        "agents": msgspec.json.decode(row["agents"]),
        "outcome": row["outcome"],
        "started_at": row["started_at"],
        "offered_at": row["offered_at"],
        "answered_at": row["answered_at"],
        "ended_at": row["ended_at"],
        "wait_seconds": row["wait_seconds"],
        "ring_seconds": row["ring_seconds"],
        "talk_seconds": row["talk_seconds"],
        "hold_seconds": row["hold_seconds"] if row["ended_at"] else None,
        "duration_seconds": row["duration_seconds"],
        "abandoned": bool(row["abandoned"]),
        "transfer_count": row["transfer_count"],
        "recording_count": row["recording_count"],
        "version": row["version"],
        "updated_at": row["updated_at"],
    }


def _recording(r: sqlite3.Row) -> dict[str, Any]:
    """A recording as the call view and the recordings search show it."""
    return {
        "recording_id": r["recording_id"],
        "started_at": r["started_at"],
        "stopped_at": r["stopped_at"],
        "uri": r["uri"],
        "duration_seconds": r["duration_seconds"],
        "size_bytes": r["size_bytes"],
        "metadata": msgspec.json.decode(r["metadata"]),
    }
