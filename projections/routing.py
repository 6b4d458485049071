"""The routing process manager (CC9-CC11, AX11, AX12, AX15): waiting work meets agents.

Its state is the tables of `projections.routing_state.RoutingState`, kept from six streams.

`act` (projections.process) then, in this order:

1. keeps agents in step with their work: a rung agent whose call was answered by them is
   on the call, one whose call ended goes to wrap-up (and back to available after
   `wrap_up_seconds`), a chat accepted by the agent is theirs;
2. ends rings: an offer not answered within the queue's ring timeout expires (the agent
   is available again and the next one rings), an offer whose work went away is withdrawn;
   an offer the agent declines (the inbox) is ended by them, and recorded as rejected
   (`RoutingDecisions.rejected`) by the inbox;
3. takes fallbacks: work that waited longer than the queue's max wait overflows (another
   queue, voicemail or a message), a queue that is closed (CC11) or has nobody logged in
   sends work to its "closed" or "no agent" destination;
4. offers each waiting item, oldest first, to the first agent `domain.queues.route()`
   names for its queue — never to one who is not available, and to agents who already
   let it ring out or rejected it only after everyone else — records the decision
   (`RoutingDecisions.offered`), puts the agent in RINGING (`Agents.offer`, which refuses
   an agent whose presence moved on meanwhile, so two offers never win one agent) and,
   for a call, asks the switch to ring the agent's endpoint (`RingAgent`): the one
   they prefer for now (a registered browser softphone, CC7), else their first.

Every decision is an event (WorkRouting, User), so `RoutingDecisions.history` explains
each call's path. Timers need no state beyond the tables: offers, waits and wrap-ups
carry their start times, so after a restart whatever fell due is done at the first act.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import msgspec

from domain.agents import User
from domain.base import DomainError
from domain.calendars import NeverOpen, calendar_from_builtins, is_open
from domain.calls import Call
from domain.conversations import Conversation
from domain.queues import (
    DEFAULT_RING_TIMEOUT_SECONDS,
    Candidate,
    FallbackKind,
    RoutingRules,
    route,
)
from domain.routing import FallbackReason, WorkKind, WorkRouting
from domain.vocabulary import Presence, RoutingPolicy
from projections.process import ActContext, ProcessManager
from projections.routing_state import RoutingState
from projections.sql import iso, when
from telephony_bridge import commands

log = logging.getLogger(__name__)

_decode = msgspec.json.decode


# An on-call agent whose legs on the call they are on have all ended (the call goes on).
LEFT_THE_CALL = (
    "(EXISTS (SELECT 1 FROM call_agent_legs l WHERE l.call_id = a.work_id AND l.user_id = a.id) "
    "AND NOT EXISTS (SELECT 1 FROM call_agent_legs l WHERE l.call_id = a.work_id "
    "AND l.user_id = a.id AND l.ended = 0))"
)

# How long an offer this process made is trusted before its events arrive: past that,
# the tables are the truth again (an event store hiccup must not freeze an item).
INFLIGHT_SECONDS = 10.0


class Router(RoutingState, ProcessManager):
    """Routing, ring timeouts, overflow and fallbacks; agents' presence follows the work."""

    def __init__(self, path: Any, *, wrap_up_seconds: float = 15.0) -> None:
        super().__init__(path)
        self.wrap_up_seconds = wrap_up_seconds
        # Offers made by this process whose events have not come back yet:
        # work id -> (agent id, when decided); agent id -> work id.
        self._inflight: dict[str, tuple[str, datetime]] = {}
        self._inflight_agents: dict[str, str] = {}
        # Fallbacks decided, by work id: (the queue it fell back from, when).
        self._fallen: dict[str, tuple[str, datetime]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._done: list[Any] = []  # decisions of finished jobs, for the next act to return
        self._running = 0
        self._working: set[str] = set()  # agents a presence job is running for
        self._offering: set[str] = set()  # work an offer job is running for
        # Candidates by the agent row's routing-relevant values: most rows do not change
        # between two acts, and building 200 Candidates per act showed in profiles.
        self._candidates: dict[tuple[Any, ...], Candidate] = {}
        self._claims = threading.Lock()
        self._idle = threading.Condition(self._claims)

    # ------------------------------------------------------------------ acting
    def act(self, ctx: ActContext) -> list[Any]:
        db = self.connect()
        self._forget_settled(db, ctx.now)
        # One snapshot of the tables for the whole pass: decisions made in this pass are
        # kept in memory until their events come back.
        db.execute("BEGIN")
        try:
            # Only the agents something may be done about: those ringing, those whose
            # call or chat is over, those whose wrap-up is up, and those free to take
            # work. On a busy floor that is a handful of the rows, not all of them.
            cutoff = iso(ctx.now - timedelta(seconds=self.wrap_up_seconds))
            agents = [
                dict(r)
                for r in db.execute(
                    f"SELECT a.*, {LEFT_THE_CALL} AS left_call FROM agents a "
                    "WHERE active = 1 AND (presence = 'ringing' "
                    "OR (presence = 'wrap_up' AND since <= ?) "
                    "OR (presence = 'on_call' AND (EXISTS (SELECT 1 FROM calls c "
                    "WHERE c.id = a.work_id AND c.ended_at IS NOT NULL) OR EXISTS (SELECT 1 "
                    "FROM conversations v WHERE v.id = a.work_id "
                    f"AND v.status IN ('resolved', 'closed')) OR {LEFT_THE_CALL})))",
                    (cutoff,),
                )
            ]
            queues = {r["id"]: dict(r) for r in db.execute("SELECT * FROM queues")}
            calls = {
                r["id"]: dict(r)
                for r in db.execute(
                    "SELECT * FROM calls WHERE (queue_id IS NOT NULL AND answered_by IS NULL "
                    "AND ended_at IS NULL) OR id IN (SELECT work_id FROM agents "
                    "WHERE presence IN ('ringing', 'on_call') AND work_id IS NOT NULL)"
                )
            }
            conversations = {
                r["id"]: dict(r)
                for r in db.execute(
                    "SELECT * FROM conversations WHERE (queue_id IS NOT NULL AND assignee IS NULL "
                    "AND status = 'open') OR id IN (SELECT work_id FROM agents "
                    "WHERE presence IN ('ringing', 'on_call') AND work_id IS NOT NULL)"
                )
            }
            routings = {
                r["work_id"]: dict(r)
                for r in db.execute(
                    "SELECT * FROM routings WHERE work_id IN (SELECT id FROM calls "
                    "WHERE queue_id IS NOT NULL AND answered_by IS NULL AND ended_at IS NULL) "
                    "OR work_id IN (SELECT id FROM conversations WHERE queue_id IS NOT NULL "
                    "AND assignee IS NULL AND status = 'open')"
                )
            }
            # Every agent ringing, for "is this work ringing someone already?".
            ringing_for = {
                r[0] for r in db.execute("SELECT work_id FROM agents WHERE presence = 'ringing'")
            }
            # Who is free, only when something waits that nobody rings for yet: on a
            # quiet floor nearly every agent is free, on a busy one nearly nothing waits
            # unrung; either way most passes need not read them.
            with self._claims:
                claimed = set(self._inflight)
            unrung = [
                c["id"]
                for c in calls.values()
                if c["queue_id"] and not c["answered_by"] and not c["ended_at"]
            ] + [
                v["id"]
                for v in conversations.values()
                if v["queue_id"] and not v["assignee"] and v["status"] == "open"
            ]
            if any(w not in ringing_for and w not in claimed for w in unrung):
                agents += [
                    dict(r)
                    for r in db.execute(
                        "SELECT *, 0 AS left_call FROM agents WHERE active = 1 "
                        "AND presence = 'available' AND takes_calls = 1 AND endpoints != '[]'"
                    )
                ]
        finally:
            db.execute("COMMIT")
        jobs = self._follow_work(ctx, agents, queues, calls, conversations)
        jobs += self._on_calls_they_answered(ctx, db)
        jobs += self._offer(ctx, db, agents, queues, calls, conversations, routings, ringing_for)
        # The jobs touch different aggregates (each agent, each piece of work once), so
        # they run side by side, and act does not wait for them: a decision waits for
        # its own appends, never for a slow one of the previous pass. What each job
        # holds (an agent, a piece of work) stays claimed until it is done, so the next
        # pass plans around it.
        for job in jobs:
            self._submit(job)
        return self._take_done()

    def _submit(self, job: Job) -> None:
        with self._claims:
            self._running += 1
        future = self._pool().submit(job)
        future.add_done_callback(self._job_done)

    def _job_done(self, future: Future[list[Any]]) -> None:
        try:
            decided = future.result()
        except Exception as error:  # noqa: BLE001 - a job's bug must not stop routing
            log.exception("routing: a job failed: %s", error)
            decided = []
        with self._claims:
            self._done.extend(decided)
            self._running -= 1
            if self._running == 0:
                self._idle.notify_all()

    def _take_done(self) -> list[Any]:
        with self._claims:
            done, self._done = self._done, []
        return done

    def drain(self, timeout: float = 10.0) -> list[Any]:
        """Wait for the jobs still running; every decision not yet returned by `act`."""
        with self._claims:
            self._idle.wait_for(lambda: self._running == 0, timeout)
        return self._take_done()

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="routing")
        return self._executor

    def _candidate(self, agent: dict[str, Any]) -> Candidate:
        key = (
            agent["id"],
            agent["presence"],
            agent["skills"],
            agent["departments"],
            agent["pickup_groups"],
            agent["last_ended_at"],
        )
        candidate = self._candidates.get(key)
        if candidate is None:
            if len(self._candidates) > 50_000:
                self._candidates.clear()
            candidate = self._candidates[key] = _candidate(agent)
        return candidate

    def _forget_settled(self, db: sqlite3.Connection, now: datetime) -> None:
        """Let go of offers whose events have come back (or never will)."""
        with self._claims:
            for work_id, (_, at) in list(self._fallen.items()):
                if (now - at).total_seconds() > INFLIGHT_SECONDS:
                    del self._fallen[work_id]
            offers = list(self._inflight.items())
        for work_id, (agent_id, at) in offers:
            row = db.execute("SELECT work_id FROM agents WHERE id = ?", (agent_id,)).fetchone()
            seen = row is not None and row[0] == work_id
            if seen or (now - at).total_seconds() > INFLIGHT_SECONDS:
                with self._claims:
                    if self._inflight.get(work_id, ("", at))[1] == at:
                        del self._inflight[work_id]
                        if self._inflight_agents.get(agent_id) == work_id:
                            del self._inflight_agents[agent_id]
        with self._claims:
            # An agent claimed by a job that has finished, for work now claimed by
            # another agent (the claim expired and was planned again meanwhile): free.
            for agent_id, work_id in list(self._inflight_agents.items()):
                holder = self._inflight.get(work_id, ("",))[0]
                if work_id not in self._offering and holder != agent_id:
                    del self._inflight_agents[agent_id]

    def _follow_work(
        self,
        ctx: ActContext,
        agents: list[dict[str, Any]],
        queues: dict[str, dict[str, Any]],
        calls: dict[str, dict[str, Any]],
        conversations: dict[str, dict[str, Any]],
    ) -> list[Job]:
        """Steps 1 and 2 of the module docstring: presence follows the work; rings end."""
        jobs: list[Job] = []
        for agent in agents:
            if agent["id"] in self._working:
                continue
            step = self._agent_step(ctx, agent, queues, calls, conversations)
            if step is not None:
                self._working.add(agent["id"])
                jobs.append(self._releasing(agent["id"], _guarded(agent["id"], step)))
        return jobs

    def _on_calls_they_answered(self, ctx: ActContext, db: sqlite3.Connection) -> list[Job]:
        """Agents whose ring was ended (timed out, withdrawn) just as they answered: the
        switch connected them, so they are on the call, whatever the offer's fate."""
        jobs: list[Job] = []
        # The one routing's offer reached, and anyone else the switch put on the call and
        # who answered: a transfer's or a consult's target, an outbound call's agent.
        rows = db.execute(
            "SELECT a.id, a.tenant_id, c.id FROM calls c JOIN agents a ON a.id = c.answered_by "
            "WHERE c.answered_by IS NOT NULL AND c.ended_at IS NULL "
            "AND a.active = 1 AND a.presence = 'available' "
            "UNION SELECT a.id, a.tenant_id, c.id FROM call_agent_legs l "
            "JOIN agents a ON a.id = l.user_id JOIN calls c ON c.id = l.call_id "
            "WHERE l.answered = 1 AND l.ended = 0 AND c.ended_at IS NULL "
            "AND a.active = 1 AND a.presence = 'available'"
        ).fetchall()
        for aid, tenant, call_id in rows:
            if aid in self._working:
                continue
            self._working.add(aid)

            def start(aid: str = aid, tenant: str = tenant, call_id: str = call_id) -> list[Any]:
                ctx.apps.agents.start_interaction(tenant, UUID(aid), call_id)
                return [("on_answered_call", tenant, call_id, aid)]

            jobs.append(self._releasing(aid, _guarded(aid, start)))
        return jobs

    def _releasing(self, agent_id: str, job: Job) -> Job:
        def run() -> list[Any]:
            try:
                return job()
            finally:
                with self._claims:
                    self._working.discard(agent_id)

        return run

    def _agent_step(
        self,
        ctx: ActContext,
        agent: dict[str, Any],
        queues: dict[str, dict[str, Any]],
        calls: dict[str, dict[str, Any]],
        conversations: dict[str, dict[str, Any]],
    ) -> Job | None:
        """What this agent's work calls for now, as a job; None if nothing."""
        agents, now = ctx.apps.agents, ctx.now
        aid, tenant, work = agent["id"], agent["tenant_id"], agent["work_id"]
        presence, since = agent["presence"], when(agent["since"])
        call, conversation = calls.get(work or ""), conversations.get(work or "")

        def step(decision: str, command: Callable[[], None]) -> Job:
            def run() -> list[Any]:
                command()
                return [(decision, tenant, work, aid)]

            return run

        def answer(decision: str) -> Job:
            return step(decision, lambda: agents.answer(tenant, UUID(aid), work))

        if presence == Presence.RINGING and call is not None:
            if call["answered_by"] == aid:
                return answer("answered")
            if call["ended_at"] or call["answered_by"]:
                return lambda: self._end_ring(ctx, agent, call, "withdrawn")
            if self._ring_expired(agent, call["queue_id"], queues, now):
                return lambda: self._end_ring(ctx, agent, call, "timed_out")
        elif presence == Presence.RINGING and conversation is not None:
            if conversation["assignee"] == aid:
                return answer("accepted")
            if conversation["assignee"] or conversation["status"] != "open":
                return lambda: self._end_ring(ctx, agent, None, "withdrawn")
            if self._ring_expired(agent, conversation["queue_id"], queues, now):
                return lambda: self._end_ring(ctx, agent, None, "timed_out")
        elif (
            presence == Presence.ON_CALL
            and call is not None
            and (call["ended_at"] or agent.get("left_call"))
        ):
            # Over for them: the call ended, or they left it going on (transferred it,
            # handed it to a supervisor, hung up their leg of a three-way).
            wrap_up = self.wrap_up_seconds > 0
            return step(
                "call_ended", lambda: agents.end_interaction(tenant, UUID(aid), work, wrap_up)
            )
        elif (
            presence == Presence.ON_CALL
            and conversation is not None
            and conversation["status"] in ("resolved", "closed")
        ):
            return step(
                "conversation_ended",
                lambda: agents.end_interaction(tenant, UUID(aid), work, False),
            )
        elif (
            presence == Presence.WRAP_UP
            and since is not None
            and (now - since).total_seconds() >= self.wrap_up_seconds
        ):
            return step("wrapped_up", lambda: agents.finish_wrap_up(tenant, UUID(aid)))
        return None

    @staticmethod
    def _ring_expired(
        agent: dict[str, Any],
        queue_id: str | None,
        queues: dict[str, dict[str, Any]],
        now: datetime,
    ) -> bool:
        queue = queues.get(queue_id or "")
        timeout = queue["ring_timeout_seconds"] if queue else DEFAULT_RING_TIMEOUT_SECONDS
        since = when(agent["since"])
        return since is not None and (now - since).total_seconds() >= timeout

    def _end_ring(
        self, ctx: ActContext, agent: dict[str, Any], call: dict[str, Any] | None, reason: str
    ) -> list[Any]:
        tenant, aid, work = agent["tenant_id"], agent["id"], agent["work_id"]
        kind = WorkKind.CALL if call is not None else WorkKind.CONVERSATION
        ctx.apps.agents.decline_offer(tenant, UUID(aid), work, reason)
        if reason == "timed_out":
            ctx.apps.routing.expired(tenant, kind, work, UUID(aid), ctx.now)
        if call is not None and not call["ended_at"]:
            stop = commands.StopRinging(
                command_id=f"stop:{work}:{aid}:{agent['since']}",
                tenant_id=tenant,
                call_id=UUID(work),
                call_ref=call["call_ref"],
                agent_id=UUID(aid),
                reason=reason,
            )
            ctx.publish(commands.subject(tenant, stop), commands.encode(stop))
        return [(reason, tenant, work, aid)]

    def _offer(
        self,
        ctx: ActContext,
        db: sqlite3.Connection,
        agents: list[dict[str, Any]],
        queues: dict[str, dict[str, Any]],
        calls: dict[str, dict[str, Any]],
        conversations: dict[str, dict[str, Any]],
        routings: dict[str, dict[str, Any]],
        ringing_for: set[str],
    ) -> list[Job]:
        """Steps 3 and 4: fallbacks, then offers, oldest waiting work first.

        Each item is planned its first choice here, in waiting order, so the oldest gets
        the best agent; if that agent turns out to be taken when the job runs, it claims
        the next free one of its own list.
        """
        now = ctx.now
        jobs: list[Job] = []
        with self._claims:
            busy = set(self._inflight_agents)
            inflight = set(self._inflight)
            fallen = dict(self._fallen)
        # Who could take work now, per tenant, built once per act: route() only ever
        # picks AVAILABLE agents, and under load the waiting list is long.
        free: dict[str, list[tuple[dict[str, Any], Candidate]]] = defaultdict(list)
        for agent in agents:
            if (
                agent["presence"] == Presence.AVAILABLE
                and agent["takes_calls"]
                and agent["endpoints"] != "[]"
                and agent["id"] not in busy
            ):
                free[agent["tenant_id"]].append((agent, self._candidate(agent)))
        waiting: list[tuple[str, WorkKind, dict[str, Any]]] = []
        for call in calls.values():
            if call["queue_id"] and not call["answered_by"] and not call["ended_at"]:
                waiting.append((call["queued_at"], WorkKind.CALL, call))
        for conv in conversations.values():
            if conv["queue_id"] and not conv["assignee"] and conv["status"] == "open":
                waiting.append((conv["queued_at"] or "", WorkKind.CONVERSATION, conv))
        waiting.sort(key=lambda item: item[0])
        cursors: dict[str, str] = {}
        for queued_at, kind, work in waiting:
            work_id, tenant = work["id"], work["tenant_id"]
            routing = routings.get(work_id, {})
            if work_id in ringing_for or work_id in inflight:
                continue
            queue = queues.get(work["queue_id"])
            if queue is None or queue["tenant_id"] != tenant:
                continue  # a queue we have not seen yet (its stream is behind)
            if kind is WorkKind.CALL and routing.get("fell_back_to") not in (
                None,
                FallbackKind.QUEUE,
            ):
                continue  # sent to voicemail or a message: the switch ends it
            if fallen.get(work_id, ("", now))[0] == queue["id"]:
                continue  # its fallback is decided; its events are on their way
            fallback = self._fallback_due(db, queue, queued_at, now)
            if fallback and kind is WorkKind.CONVERSATION and fallback[1]["kind"] != "queue":
                # Voicemail and messages are for callers; a chat or an email waits on in
                # its queue (and its customer sees the channel's own offline message).
                fallback = None
            if fallback is not None:
                with self._claims:
                    # Remembered for a while, so that a pass before the events come back
                    # does not repeat it (voicemail or a message is final: `fell_back_to`).
                    self._fallen[work_id] = (queue["id"], now)
                fall_back = partial(self._fall_back, ctx, kind, work, queue, *fallback)
                jobs.append(_guarded(work_id, fall_back))
                continue
            candidates = [c for a, c in free.get(tenant, ()) if a["id"] not in busy]
            if not candidates:
                continue
            rules = _rules(queue)
            if queue["id"] not in cursors:
                row = db.execute(
                    "SELECT agent_id FROM cursors WHERE queue_id = ?", (queue["id"],)
                ).fetchone()
                cursors[queue["id"]] = row[0] if row else ""
            cursor = cursors[queue["id"]]
            last = self._last_agent(db, kind, work)
            order = route(
                rules,
                candidates,
                cursor=UUID(cursor) if cursor else None,
                last_agent_id=UUID(last) if last else None,
            )
            tried = set(_decode(routing["expired"])) if routing.get("expired") else set()
            if routing.get("ringing"):
                # Its last offer ended on the agent's side (declined) and its rejection
                # is not here yet (the agent's stream came first): tried all the same.
                tried.add(routing["ringing"])
            # Agents who let it ring out or rejected it go last (they are not excluded):
            # if only they are left, they are offered it again.
            order = [a for a in order if str(a) not in tried] + [
                a for a in order if str(a) in tried
            ]
            if not order:
                continue
            first = str(order[0])
            busy.add(first)
            cursors[queue["id"]] = first
            team_by_id = {a["id"]: a for a, _ in free[tenant]}
            choices = [team_by_id[str(a)] for a in order]
            with self._claims:
                # Claimed until the agent's events come back (see _forget_settled).
                self._inflight[work_id] = (first, now)
                self._inflight_agents[first] = work_id
                self._offering.add(work_id)
            offer = partial(self._offer_one, ctx, kind, work, queue, choices)
            jobs.append(_guarded(work_id, offer))
        return jobs

    def _offer_one(
        self,
        ctx: ActContext,
        kind: WorkKind,
        work: dict[str, Any],
        queue: dict[str, Any],
        choices: list[dict[str, Any]],
    ) -> list[Any]:
        """Offer to the planned agent, or else the first of `choices` nobody claimed."""
        work_id = work["id"]
        try:
            for n, agent in enumerate(choices):
                aid = agent["id"]
                if n > 0:  # the planned first choice is ours; any other must be claimed
                    with self._claims:
                        if aid in self._inflight_agents:
                            continue
                        self._inflight_agents[aid] = work_id
                        self._inflight[work_id] = (aid, ctx.now)
                made = self._make_offer(ctx, kind, work, queue, agent)
                if made:
                    return [made]
                with self._claims:  # taken meanwhile: let the agent go, try the next
                    if self._inflight_agents.get(aid) == work_id:
                        del self._inflight_agents[aid]
            with self._claims:  # nobody could take it now: the next pass plans it again
                self._inflight.pop(work_id, None)
            return []
        finally:
            with self._claims:
                self._offering.discard(work_id)

    def _fallback_due(
        self,
        db: sqlite3.Connection,
        queue: dict[str, Any],
        queued_at: str | None,
        now: datetime,
    ) -> tuple[FallbackReason, dict[str, Any]] | None:
        if queue["calendar_name"] and queue["when_closed"]:
            row = db.execute(
                "SELECT calendar FROM calendars WHERE tenant_id = ? AND name = ?",
                (queue["tenant_id"], queue["calendar_name"]),
            ).fetchone()
            if row is not None:
                try:
                    open_now = is_open(calendar_from_builtins(_decode(row[0])), now)
                except NeverOpen:
                    open_now = False
                if not open_now:
                    return FallbackReason.CLOSED, _decode(queue["when_closed"])
        if queue["no_agent"]:
            groups = frozenset(_decode(queue["pickup_groups"]))
            logged_in = db.execute(
                "SELECT pickup_groups FROM agents WHERE tenant_id = ? AND active = 1 "
                "AND takes_calls = 1 AND presence != 'offline'",
                (queue["tenant_id"],),
            )
            if not any(not groups or groups & set(_decode(row[0])) for row in logged_in):
                return FallbackReason.NO_AGENT, _decode(queue["no_agent"])
        since = when(queued_at)
        if (
            queue["overflow"]
            and since is not None
            and (now - since).total_seconds() >= queue["max_wait_seconds"]
        ):
            return FallbackReason.MAX_WAIT, _decode(queue["overflow"])
        return None

    def _fall_back(
        self,
        ctx: ActContext,
        kind: WorkKind,
        work: dict[str, Any],
        queue: dict[str, Any],
        reason: FallbackReason,
        fallback: dict[str, Any],
    ) -> list[Any]:
        apps, tenant, work_id = ctx.apps, work["tenant_id"], work["id"]
        target = fallback.get("queue_id")
        try:
            if fallback["kind"] != FallbackKind.QUEUE and kind is WorkKind.CALL:
                # The switch first: a fallback recorded but never sent would leave the
                # caller waiting for good (the record says it is handled). Sent but not
                # recorded, it is decided and sent again, under the same command id.
                command = commands.SendToFallback(
                    command_id=f"fallback:{work_id}:{reason.value}:{work['queued_at']}",
                    tenant_id=tenant,
                    call_id=UUID(work_id),
                    call_ref=work["call_ref"],
                    kind=str(fallback["kind"]),
                    message=fallback.get("message"),
                )
                ctx.publish(commands.subject(tenant, command), commands.encode(command))
            apps.routing.fell_back(
                tenant, kind, work_id, UUID(queue["id"]), reason, fallback, ctx.now
            )
            if fallback["kind"] == FallbackKind.QUEUE and target:
                if kind is WorkKind.CALL:
                    apps.calls.offer_to_queue(tenant, UUID(work_id), UUID(target), ctx.now)
                else:
                    apps.conversations.move_to_queue(tenant, UUID(work_id), UUID(target))
        except DomainError as error:
            log.debug("routing: fallback for %s: %s", work_id, error)
            return []
        return [("fell_back", tenant, work_id, reason.value, fallback["kind"])]

    @staticmethod
    def _last_agent(db: sqlite3.Connection, kind: WorkKind, work: dict[str, Any]) -> str | None:
        if kind is WorkKind.CALL:
            if not work["customer_number"]:
                return None
            row = db.execute(
                "SELECT agent_id FROM call_last_agent WHERE tenant_id = ? AND number = ?",
                (work["tenant_id"], work["customer_number"]),
            ).fetchone()
        else:
            row = db.execute(
                "SELECT agent_id FROM conversation_last_agent WHERE tenant_id = ? AND customer_id = ?",
                (work["tenant_id"], work["customer_id"]),
            ).fetchone()
        return row[0] if row else None

    def _make_offer(
        self,
        ctx: ActContext,
        kind: WorkKind,
        work: dict[str, Any],
        queue: dict[str, Any],
        agent: dict[str, Any],
    ) -> tuple[Any, ...] | None:
        apps, tenant, work_id, aid = ctx.apps, work["tenant_id"], work["id"], agent["id"]
        try:
            # The agent first: their aggregate refuses an agent who is no longer
            # available, which is what keeps two offers from winning one agent.
            apps.agents.offer(tenant, UUID(aid), work_id)
        except DomainError as error:
            log.debug("routing: %s not offered to %s: %s", work_id, aid, error)
            return None
        if kind is WorkKind.CALL:
            # The switch is told at once: the agent's Offered event is the decision
            # (the agent rings for this call); the WorkRouting record below explains it.
            endpoint_kind, address = self._ring_endpoint(aid, _decode(agent["endpoints"]))
            # A browser has no address of its own (it registers when the agent signs
            # in); the switch reaches it by the agent, and the leg needs a name for it.
            address = address or f"{endpoint_kind}:{aid}"
            ring = commands.RingAgent(
                command_id=f"ring:{work_id}:{aid}:{ctx.now.isoformat()}",
                tenant_id=tenant,
                call_id=UUID(work_id),
                call_ref=work["call_ref"],
                agent_id=UUID(aid),
                endpoint_kind=endpoint_kind,
                endpoint_address=address,
                ring_timeout_seconds=queue["ring_timeout_seconds"],
            )
            ctx.publish(commands.subject(tenant, ring), commands.encode(ring))
        attempt = apps.routing.offered(
            tenant,
            kind,
            work_id,
            UUID(queue["id"]),
            UUID(aid),
            RoutingPolicy(queue["policy"]),
            queue["ring_timeout_seconds"],
            ctx.now,
        )
        return ("offered", tenant, work_id, aid, attempt)

    def _ring_endpoint(self, agent_id: str, endpoints: list[list[str]]) -> tuple[str, str]:
        """The endpoint an agent's call rings: the one they prefer for now (User.
        EndpointPreferred, e.g. a registered browser), else their first."""
        row = (
            self.connect()
            .execute(
                "SELECT kind, address FROM agent_preferred_endpoints WHERE agent_id = ?",
                (agent_id,),
            )
            .fetchone()
        )
        if row is not None and [row[0], row[1]] in endpoints:
            return row[0], row[1]
        kind, address = endpoints[0]
        return kind, address

    def actionable(self, event: Any) -> bool:
        # What a call or an agent does on its way that changes nothing routing decides
        # on (most of a call's events): the tables keep them, no act follows.
        return not isinstance(event, _NOT_ACTIONABLE)

    def next_due(self) -> datetime | None:
        """The earliest ring timeout, wrap-up end, max wait or in-flight offer's lapse
        still to come."""
        db = self.connect()
        times: list[datetime] = []
        for row in db.execute(
            "SELECT a.since, a.presence, q.ring_timeout_seconds FROM agents a "
            "LEFT JOIN calls c ON c.id = a.work_id LEFT JOIN conversations v ON v.id = a.work_id "
            "LEFT JOIN queues q ON q.id = coalesce(c.queue_id, v.queue_id) "
            "WHERE a.presence IN ('ringing', 'wrap_up')"
        ):
            since = datetime.fromisoformat(row[0])
            if row[1] == Presence.RINGING:
                times.append(since + timedelta(seconds=row[2] or DEFAULT_RING_TIMEOUT_SECONDS))
            else:
                times.append(since + timedelta(seconds=self.wrap_up_seconds))
        for row in db.execute(
            "SELECT w.queued_at, q.max_wait_seconds FROM calls w JOIN queues q ON q.id = w.queue_id "
            "WHERE w.answered_by IS NULL AND w.ended_at IS NULL AND q.overflow IS NOT NULL "
            "UNION ALL SELECT w.queued_at, q.max_wait_seconds FROM conversations w "
            "JOIN queues q ON q.id = w.queue_id WHERE w.assignee IS NULL AND w.status = 'open' "
            "AND q.overflow IS NOT NULL"
        ):
            if row[0]:
                times.append(datetime.fromisoformat(row[0]) + timedelta(seconds=row[1]))
        # An offer planned but not yet seen on its agent (declined before it showed, say)
        # holds its work until INFLIGHT_SECONDS have passed: wake then to let it go, or the
        # work would wait for some other event to set the router going.
        with self._claims:
            offers = list(self._inflight.items())
        for work_id, (agent_id, at) in offers:
            row = db.execute("SELECT work_id FROM agents WHERE id = ?", (agent_id,)).fetchone()
            if row is None or row[0] != work_id:
                times.append(at + timedelta(seconds=INFLIGHT_SECONDS))
        return min(times) if times else None


Job = Callable[[], list[Any]]

_NOT_ACTIONABLE = (
    Call.Started,  # waits for its Offered
    Call.IvrStepTaken,
    Call.AgentRang,  # routing's own offer reaching the switch
    Call.Held,
    Call.Resumed,
    Call.Muted,
    Call.Unmuted,
    Call.RecordingStarted,
    Call.RecordingStopped,
    Call.RecordingStored,
    Call.SupervisionStarted,
    Call.SupervisionModeChanged,
    Call.SupervisionEnded,
    User.Offered,  # routing's own decision coming back
    User.Answered,  # on the call: nothing to do until it ends
    User.EndpointPreferred,  # where a call rings: read when one is offered
    User.EndpointPreferenceCleared,
    WorkRouting.Created,
    WorkRouting.Offered,
    Conversation.NoteAdded,
    Conversation.Tagged,
    Conversation.Untagged,
    Conversation.MessageSent,
)


def _guarded(what: str, job: Job) -> Job:
    """A job whose domain refusal is logged, not raised: the state it was planned on
    moved on meanwhile (an agent took a break, a caller hung up), and the next act,
    which the resulting events trigger, decides again on the new state."""

    def run() -> list[Any]:
        try:
            return job()
        except DomainError as error:
            log.debug("routing: %s: %s", what, error)
            return []

    return run


def _rules(queue: dict[str, Any]) -> RoutingRules:
    return RoutingRules(
        policy=RoutingPolicy(queue["policy"]),
        required_skills=_decode(queue["required_skills"]),
        department=queue["department"],
        sticky_fallback=RoutingPolicy(queue["sticky_fallback"])
        if queue["sticky_fallback"]
        else None,
        pickup_groups=frozenset(_decode(queue["pickup_groups"])),
    )


def _candidate(agent: dict[str, Any]) -> Candidate:
    return Candidate(
        agent_id=UUID(agent["id"]),
        presence=Presence(agent["presence"]),
        skills=_decode(agent["skills"]),
        departments=frozenset(_decode(agent["departments"])),
        pickup_groups=frozenset(_decode(agent["pickup_groups"])),
        last_call_ended_at=when(agent["last_ended_at"]),
    )
