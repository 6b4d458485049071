"""The campaign runner (CC20, CT14): paces each campaign's outbound work within its windows.

A process manager (projections.process). Its tables follow two streams, each table one:
`campaigns`, `campaign_targets` and `campaign_attempts` the campaigns stream;
`business_calendars` the tenants stream, because a campaign window is open only while the
tenant's business calendar of that name is (domain.campaigns). The two meet in `act`.

`act(ctx)`, for each campaign:
- scheduled, and one of its windows contains `now`: start it (Campaigns.start);
- running, with an attempt in progress for longer than the channel's outcome time-out
  (`OUTCOME_TIMEOUTS`, counted from its Attempted event's time): record it failed, "no
  outcome", retryable (Campaigns.failed). The command goes out on core NATS, which may
  drop it, and an outcome may be lost too: without this such an attempt would stay in
  progress for ever, holding a slot (with `max_concurrent` 1, the whole campaign);
- running with no target left to try: complete it (Campaigns.complete) — the domain
  completes by itself on the last outcome, so this is for campaigns that had nothing to
  try when they started (every target opted out first);
- running, and its last window has ended: complete it (Campaigns.complete; the domain
  completes a campaign whatever its targets, which stay as they are: pending ones were
  not tried in time, and an attempt still in progress gets its outcome recorded later);
- running, inside a window whose calendar is open: attempt the oldest due targets, as many
  as the pacing allows (never more than `max_concurrent` in flight, never more than
  `per_minute` started in any sliding minute), a retry only once its `not_before` has
  come. Each attempt is recorded through the domain first (Campaigns.attempt: the
  Attempted event is the decision), then its command is published: `Originate` for a
  call campaign, `SendMessage` for SMS and email.

Outcomes are not the runner's: whoever sees a call answered or a message bounce calls
Campaigns.reached / failed / opt_out, and their events free the slot here.

Idempotency: an act may run again before its Attempted events come back, so the runner
remembers in memory the attempts it made until the table shows them; those count as in
flight and in the minute. The domain refuses an attempt on a target that is not pending,
which guards a restart (memory gone) before the catch-up. A command is addressed by
`attempt_command_id`, the same every time it is sent, so a receiver that gets it twice
acts once; one NATS did not take is kept in memory and sent again at the next act (until
its attempt times out). An attempt told failed for want of an outcome is remembered too,
until the table shows it, so that it is neither told again nor due again meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

import msgspec

from connectors import commands as messages
from domain.calendars import BusinessCalendar, NeverOpen, calendar_from_builtins, is_open, next_open
from domain.campaigns import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_PER_MINUTE,
    DEFAULT_RETRY_AFTER_SECONDS,
    AttemptMismatch,
    Campaign,
    CampaignStateError,
    CampaignStatus,
    InvalidCampaign,
    TargetNotDue,
    TargetStatus,
    UnknownTarget,
    Window,
)
from domain.checks import aware
from domain.tenants import Tenant
from domain.vocabulary import Channel
from projections.process import ActContext, ProcessManager
from projections.sql import iso
from telephony_bridge import commands as telephony

log = logging.getLogger(__name__)

_MINUTE = timedelta(minutes=1)
# A publish NATS refused is tried again at the next act, and no later than this.
RESEND_AFTER = timedelta(seconds=5)
# Before its first act the runner has no notion of "now": what is due then is due at once.
_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)
# How long after its Attempted event an attempt with no outcome yet is given up on (failed,
# retryable): a call rings, or is answered, within minutes; a delivery report can lag.
OUTCOME_TIMEOUTS: Mapping[Channel, timedelta] = {
    Channel.CALL: timedelta(minutes=10),
    Channel.SMS: timedelta(hours=1),
    Channel.EMAIL: timedelta(hours=1),
}
NO_OUTCOME = "no outcome"

_STATUS_EVENTS: tuple[tuple[type[Any], CampaignStatus], ...] = (
    (Campaign.Scheduled, CampaignStatus.SCHEDULED),
    (Campaign.Started, CampaignStatus.RUNNING),
    (Campaign.Paused, CampaignStatus.PAUSED),
    (Campaign.Resumed, CampaignStatus.RUNNING),
    (Campaign.Completed, CampaignStatus.COMPLETED),
    (Campaign.Cancelled, CampaignStatus.CANCELLED),
)
_OPEN = (TargetStatus.PENDING.value, TargetStatus.IN_PROGRESS.value)

_json = msgspec.json.Encoder()


def attempt_command_id(campaign_id: UUID, customer_id: UUID, attempt: int) -> str:
    """The command id of one attempt: the Attempted event it follows is unique by these."""
    return f"campaign:{campaign_id}:{customer_id}:{attempt}"


class Decision(NamedTuple):
    """What one act did, for logs and tests: "start", "attempt", "expire" (an attempt
    failed for want of an outcome) or "complete"."""

    action: str
    tenant_id: str
    campaign_id: UUID
    customer_id: UUID | None = None
    attempt: int | None = None


@dataclass(frozen=True)
class _Sent:
    """An attempt made whose Attempted event the tables have not shown yet."""

    attempt: int
    at: datetime


@dataclass(frozen=True)
class _Unsent:
    command_id: str
    subject: str
    payload: bytes
    retry_at: datetime


@dataclass(frozen=True)
class _Campaign:
    id: str
    tenant_id: str
    channel: Channel
    status: CampaignStatus
    windows: tuple[Window, ...]
    max_concurrent: int
    per_minute: int

    @classmethod
    def of(cls, row: sqlite3.Row) -> _Campaign:
        return cls(
            id=row["id"],
            tenant_id=row["tenant_id"],
            channel=Channel(row["channel"]),
            status=CampaignStatus(row["status"]),
            windows=_windows(row["windows"]),
            max_concurrent=row["max_concurrent"],
            per_minute=row["per_minute"],
        )


class CampaignRunner(ProcessManager):
    """Starts, paces and completes campaigns; `progress` and `list` for the UI."""

    name = "campaign_runner"
    upstreams = ("campaigns", "tenants")
    schema = (
        """CREATE TABLE IF NOT EXISTS campaigns (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            name TEXT NOT NULL,
            channel TEXT NOT NULL,
            status TEXT NOT NULL,
            windows TEXT NOT NULL,
            max_concurrent INTEGER NOT NULL,
            per_minute INTEGER NOT NULL,
            max_attempts INTEGER NOT NULL,
            retry_after_seconds INTEGER NOT NULL,
            version INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS campaigns_by_tenant ON campaigns (tenant_id, name)",
        "CREATE INDEX IF NOT EXISTS campaigns_by_status ON campaigns (status)",
        # `seq` is the order targets were added in: the oldest are tried first.
        """CREATE TABLE IF NOT EXISTS campaign_targets (
            campaign_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            address TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            not_before TEXT,
            last_attempt_at TEXT,
            last_failure TEXT,
            PRIMARY KEY (campaign_id, customer_id)
        )""",
        """CREATE INDEX IF NOT EXISTS campaign_targets_by_status
            ON campaign_targets (campaign_id, status, seq)""",
        # Every attempt's start, for the sliding-minute pacing.
        """CREATE TABLE IF NOT EXISTS campaign_attempts (
            campaign_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (campaign_id, customer_id, attempt)
        )""",
        "CREATE INDEX IF NOT EXISTS campaign_attempts_by_time ON campaign_attempts (campaign_id, at)",
        # Keyed by the Tenant aggregate's id: the calendar events name the tenant by it
        # alone, and Tenant.create_id(slug) finds it again from a campaign's tenant.
        """CREATE TABLE IF NOT EXISTS business_calendars (
            tenant_key TEXT NOT NULL,
            name TEXT NOT NULL,
            calendar TEXT NOT NULL,
            PRIMARY KEY (tenant_key, name)
        )""",
    )

    def __init__(
        self, path: Path, *, outcome_timeouts: Mapping[Channel, timedelta] | None = None
    ) -> None:
        super().__init__(path)
        # OUTCOME_TIMEOUTS, with the channels given here set otherwise (tests).
        self._timeouts = {**OUTCOME_TIMEOUTS, **(outcome_timeouts or {})}
        self._now: datetime | None = None  # the last act's time: next_due counts from it
        self._sent: dict[str, dict[str, _Sent]] = {}  # campaign id → customer id → attempt
        self._unsent: list[_Unsent] = []
        # Attempts told failed for want of an outcome, until the table shows it:
        # campaign id → customer id → attempt.
        self._expired: dict[str, dict[str, int]] = {}
        # Campaigns told to start or complete, with the status the table had then: not
        # told again while the table still shows it (the event is on its way).
        self._asked: dict[str, CampaignStatus] = {}

    # ------------------------------------------------------------------------- events
    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        if isinstance(event, Tenant.CalendarDefined):
            db.execute(
                "INSERT INTO business_calendars VALUES (?, ?, ?) ON CONFLICT(tenant_key, name) "
                "DO UPDATE SET calendar = excluded.calendar",
                (str(event.originator_id), event.name, _json.encode(event.calendar).decode()),
            )
        elif isinstance(event, Tenant.CalendarRemoved):
            db.execute(
                "DELETE FROM business_calendars WHERE tenant_key = ? AND name = ?",
                (str(event.originator_id), event.name),
            )
        elif isinstance(event, Campaign.Event):
            self._handle_campaign(db, event)

    def _handle_campaign(self, db: sqlite3.Connection, event: Any) -> None:
        cid = str(event.originator_id)
        if isinstance(event, Campaign.Drafted):
            db.execute(
                "INSERT INTO campaigns VALUES (?, ?, ?, ?, ?, '[]', ?, ?, ?, ?, ?, ?)",
                (
                    cid,
                    event.tenant_id,
                    event.name,
                    event.channel,
                    CampaignStatus.DRAFT.value,
                    DEFAULT_MAX_CONCURRENT,
                    DEFAULT_PER_MINUTE,
                    DEFAULT_MAX_ATTEMPTS,
                    DEFAULT_RETRY_AFTER_SECONDS,
                    event.originator_version,
                    event.timestamp.isoformat(),
                ),
            )
            self.changed(event.tenant_id, "campaign", cid)
            return
        self._apply_change(db, cid, event)
        db.execute(
            "UPDATE campaigns SET version = ?, updated_at = ? WHERE id = ?",
            (event.originator_version, event.timestamp.isoformat(), cid),
        )
        row = db.execute("SELECT tenant_id FROM campaigns WHERE id = ?", (cid,)).fetchone()
        self.changed(row[0], "campaign", cid)

    @staticmethod
    def _apply_change(db: sqlite3.Connection, cid: str, event: Any) -> None:
        def campaign(assignments: str, *values: Any) -> None:
            db.execute(f"UPDATE campaigns SET {assignments} WHERE id = ?", (*values, cid))

        def target(assignments: str, *values: Any) -> None:
            db.execute(
                f"UPDATE campaign_targets SET {assignments} WHERE campaign_id = ? AND customer_id = ?",
                (*values, cid, str(event.customer_id)),
            )

        for kind, status in _STATUS_EVENTS:
            if isinstance(event, kind):
                campaign("status = ?", status.value)
                return
        if isinstance(event, Campaign.Renamed):
            campaign("name = ?", event.name)
        elif isinstance(event, Campaign.ScheduleSet):
            windows = [
                {
                    "calendar_name": w["calendar_name"],
                    "starts_at": iso(w["starts_at"]),
                    "ends_at": iso(w["ends_at"]),
                }
                for w in event.windows
            ]
            campaign("windows = ?", _json.encode(windows).decode())
        elif isinstance(event, Campaign.PacingSet):
            campaign("max_concurrent = ?, per_minute = ?", event.max_concurrent, event.per_minute)
        elif isinstance(event, Campaign.RetryPolicySet):
            campaign(
                "max_attempts = ?, retry_after_seconds = ?",
                event.max_attempts,
                event.retry_after_seconds,
            )
        elif isinstance(event, Campaign.TargetsAdded):
            (count,) = db.execute(
                "SELECT count(*) FROM campaign_targets WHERE campaign_id = ?", (cid,)
            ).fetchone()
            db.executemany(
                "INSERT INTO campaign_targets VALUES (?, ?, ?, ?, ?, 0, NULL, NULL, NULL)",
                [
                    (
                        cid,
                        str(t["customer_id"]),
                        count + i,
                        t["address"],
                        TargetStatus.PENDING.value,
                    )
                    for i, t in enumerate(event.targets)
                ],
            )
        elif isinstance(event, Campaign.Attempted):
            at = iso(event.at)
            target(
                "status = ?, attempts = ?, last_attempt_at = ?",
                TargetStatus.IN_PROGRESS.value,
                event.attempt,
                at,
            )
            db.execute(
                "INSERT INTO campaign_attempts VALUES (?, ?, ?, ?)",
                (cid, str(event.customer_id), event.attempt, at),
            )
        elif isinstance(event, Campaign.Reached):
            target("status = ?", TargetStatus.REACHED.value)
        elif isinstance(event, Campaign.Failed):
            target("status = ?, last_failure = ?", TargetStatus.FAILED.value, event.reason)
        elif isinstance(event, Campaign.Retried):
            target("status = ?, not_before = ?", TargetStatus.PENDING.value, iso(event.not_before))
        elif isinstance(event, Campaign.OptedOut):
            target("status = ?", TargetStatus.OPTED_OUT.value)

    # ---------------------------------------------------------------------------- act
    def act(self, ctx: ActContext) -> list[Decision]:
        now = aware(ctx.now, InvalidCampaign)
        self._now = now
        self._resend(ctx.publish, now)
        db = self.connect()
        decisions: list[Decision] = []
        for campaign in self._live_campaigns(db):
            try:
                self._act_on(ctx, db, campaign, now, decisions)
            except CampaignStateError as refused:
                # Paused or cancelled since the table last heard: its event is on the way.
                log.info("campaign %s: %s", campaign.id, refused)
        return decisions

    def _act_on(
        self,
        ctx: ActContext,
        db: sqlite3.Connection,
        campaign: _Campaign,
        now: datetime,
        decisions: list[Decision],
    ) -> None:
        campaigns, tenant, cid = ctx.apps.campaigns, campaign.tenant_id, UUID(campaign.id)
        if campaign.status is CampaignStatus.SCHEDULED:
            if not any(w.contains(now) for w in campaign.windows):
                return
            if self._once(campaign, lambda: campaigns.start(tenant, cid, now)):
                decisions.append(Decision("start", tenant, cid))
        sent = self._remembered(db, campaign.id)
        self._expire(ctx, db, campaign, now, decisions)
        counts = _counts(db, campaign.id)
        if (not sent and not any(counts[s] for s in _OPEN)) or _over(campaign.windows, now):
            if self._once(campaign, lambda: campaigns.complete(tenant, cid, now)):
                decisions.append(Decision("complete", tenant, cid))
            return
        if not _window_open(campaign.windows, _calendars(db, tenant), now):
            return
        in_flight = counts[TargetStatus.IN_PROGRESS] + len(sent)
        started = len(_recent_starts(db, campaign.id, sent, now))
        room = min(campaign.max_concurrent - in_flight, campaign.per_minute - started)
        if room <= 0:
            return
        due = db.execute(
            "SELECT customer_id, address FROM campaign_targets WHERE campaign_id = ? "
            "AND status = ? AND (not_before IS NULL OR not_before <= ?) ORDER BY seq LIMIT ?",
            (campaign.id, TargetStatus.PENDING.value, iso(now), room + len(sent)),
        ).fetchall()
        for customer, address in due:
            if room <= 0:
                break
            if customer in sent:
                continue
            # A refused target may well be in flight already (tables behind the domain):
            # its slot stays taken for this round either way.
            room -= 1
            try:
                attempt: int = campaigns.attempt(tenant, cid, UUID(customer), now)
            except TargetNotDue as refused:
                log.info("campaign %s: %s", campaign.id, refused)
                continue
            self._sent.setdefault(campaign.id, {})[customer] = _Sent(attempt, now)
            command_id = attempt_command_id(cid, UUID(customer), attempt)
            subject, payload = _command(campaign, UUID(customer), address, attempt)
            self._publish(ctx.publish, _Unsent(command_id, subject, payload, now + RESEND_AFTER))
            decisions.append(Decision("attempt", tenant, cid, UUID(customer), attempt))

    def _expire(
        self,
        ctx: ActContext,
        db: sqlite3.Connection,
        campaign: _Campaign,
        now: datetime,
        decisions: list[Decision],
    ) -> None:
        """Fail, retryable, the attempts that have waited too long for their outcome."""
        tenant, cid = campaign.tenant_id, UUID(campaign.id)
        for customer, attempt, due in self._stale(db, campaign):
            if due > now:
                continue
            try:
                ctx.apps.campaigns.failed(
                    tenant, cid, UUID(customer), attempt, NO_OUTCOME, now, retryable=True
                )
            except (AttemptMismatch, UnknownTarget) as refused:
                # Not expected (the table is never ahead of the domain); remembered all the
                # same, so that it is not tried again at every act.
                log.warning("campaign %s: %s", campaign.id, refused)
            self._expired.setdefault(campaign.id, {})[customer] = attempt
            # Its command, if NATS never took it, is not sent any more: it would place a
            # call (or a message) the campaign has given up on.
            command_id = attempt_command_id(cid, UUID(customer), attempt)
            self._unsent = [u for u in self._unsent if u.command_id != command_id]
            decisions.append(Decision("expire", tenant, cid, UUID(customer), attempt))

    def _stale(
        self, db: sqlite3.Connection, campaign: _Campaign
    ) -> list[tuple[str, int, datetime]]:
        """The attempts in progress not told failed yet, each with the time it times out
        (its Attempted event's time plus the channel's time-out); forgets those shown."""
        timeout = self._timeouts[campaign.channel]
        rows = db.execute(
            "SELECT customer_id, attempts, last_attempt_at FROM campaign_targets "
            "WHERE campaign_id = ? AND status = ?",
            (campaign.id, TargetStatus.IN_PROGRESS.value),
        ).fetchall()
        told = self._expired.pop(campaign.id, {})
        still = {c: a for c, a, _ in rows if told.get(c) == a}
        if still:
            self._expired[campaign.id] = still
        return [
            (customer, attempt, datetime.fromisoformat(at) + timeout)
            for customer, attempt, at in rows
            if customer not in still
        ]

    def _live_campaigns(self, db: sqlite3.Connection) -> list[_Campaign]:
        rows = db.execute(
            "SELECT * FROM campaigns WHERE status IN (?, ?) ORDER BY tenant_id, id",
            (CampaignStatus.SCHEDULED.value, CampaignStatus.RUNNING.value),
        ).fetchall()
        live = [_Campaign.of(r) for r in rows]
        shown = {c.id: c.status for c in live}
        self._asked = {k: s for k, s in self._asked.items() if shown.get(k) is s}
        return live

    def _once(self, campaign: _Campaign, change: Callable[[], None]) -> bool:
        """Ask the domain for a status change, unless asked while the table showed this
        status already (the change's event is on its way); True if asked now."""
        if self._asked.get(campaign.id) is campaign.status:
            return False
        change()
        self._asked[campaign.id] = campaign.status
        return True

    def _remembered(self, db: sqlite3.Connection, campaign_id: str) -> dict[str, _Sent]:
        """This campaign's attempts still missing from the tables; forgets those shown."""
        mine = self._sent.get(campaign_id, {})
        for customer, sent in list(mine.items()):
            row = db.execute(
                "SELECT attempts FROM campaign_targets WHERE campaign_id = ? AND customer_id = ?",
                (campaign_id, customer),
            ).fetchone()
            if row is None or row[0] >= sent.attempt:
                del mine[customer]
        if not mine:
            self._sent.pop(campaign_id, None)
        return mine

    def _publish(self, publish: Callable[[str, bytes], None], command: _Unsent) -> None:
        """Send a command; one NATS refuses is kept to be sent again from `retry_at`."""
        try:
            publish(command.subject, command.payload)
        except Exception:
            # The attempt is recorded already: dropping its command would leave the target
            # in progress until it times out, so it is kept and sent again.
            log.warning("publishing %s failed; sent again later", command.subject, exc_info=True)
            self._unsent.append(command)

    def _resend(self, publish: Callable[[str, bytes], None], now: datetime) -> None:
        unsent, self._unsent = self._unsent, []
        for one in unsent:
            self._publish(publish, dataclasses.replace(one, retry_at=now + RESEND_AFTER))

    # ----------------------------------------------------------------------- next due
    def next_due(self) -> datetime | None:
        db = self.connect()
        dues = [u.retry_at for u in self._unsent]
        for campaign in self._live_campaigns(db):
            due = self._campaign_due(db, campaign, self._now)
            if due is not None:
                dues.append(due)
        return min(dues, default=None)

    def _campaign_due(
        self, db: sqlite3.Connection, campaign: _Campaign, now: datetime | None
    ) -> datetime | None:
        after = now or _LONG_AGO
        # One told to start already is due as the running campaign it is in the domain.
        if campaign.status is CampaignStatus.SCHEDULED and campaign.id not in self._asked:
            starts = [max(after, w.starts_at) for w in campaign.windows if w.ends_at > after]
            return min(starts, default=None)
        sent = self._remembered(db, campaign.id)
        counts = _counts(db, campaign.id)
        if (not sent and not any(counts[s] for s in _OPEN)) or _over(campaign.windows, after):
            # To complete, unless asked already.
            return None if campaign.id in self._asked else after
        # An attempt's time-out, the end of the last window (to complete), the next attempt.
        dues = [max(after, due) for _, _, due in self._stale(db, campaign)]
        if campaign.windows:
            dues.append(max(w.ends_at for w in campaign.windows))
        attempt = self._next_attempt(db, campaign, sent, counts, after)
        if attempt is not None:
            dues.append(attempt)
        return min(dues, default=None)

    def _next_attempt(
        self,
        db: sqlite3.Connection,
        campaign: _Campaign,
        sent: dict[str, _Sent],
        counts: dict[str, int],
        after: datetime,
    ) -> datetime | None:
        if counts[TargetStatus.IN_PROGRESS] + len(sent) >= campaign.max_concurrent:
            return None  # an outcome (or a time-out) frees a slot, and its event wakes us
        ready = _first_ready(db, campaign.id, sent)
        if ready is None:
            return None
        starts = _recent_starts(db, campaign.id, sent, after)
        if len(starts) >= campaign.per_minute:
            # The slot frees when enough of the minute's attempts fall out of it.
            after = max(after, starts[len(starts) - campaign.per_minute] + _MINUTE)
        return _next_opening(
            campaign.windows, _calendars(db, campaign.tenant_id), max(after, ready)
        )

    # ------------------------------------------------------------------------ queries
    def progress(self, tenant_id: str, campaign_id: UUID | str) -> dict[str, Any] | None:
        """One campaign as the UI shows it: settings, target counts, retries, attempts."""
        db = self.connect()
        row = db.execute(
            "SELECT * FROM campaigns WHERE id = ? AND tenant_id = ?", (str(campaign_id), tenant_id)
        ).fetchone()
        if row is None:
            return None
        campaign = _Campaign.of(row)
        retrying, next_retry_at = db.execute(
            "SELECT count(*), min(not_before) FROM campaign_targets "
            "WHERE campaign_id = ? AND status = ? AND not_before IS NOT NULL",
            (campaign.id, TargetStatus.PENDING.value),
        ).fetchone()
        attempts, last_attempt_at = db.execute(
            "SELECT count(*), max(at) FROM campaign_attempts WHERE campaign_id = ?",
            (campaign.id,),
        ).fetchone()
        defined = {
            name
            for (name,) in db.execute(
                "SELECT name FROM business_calendars WHERE tenant_key = ?",
                (_tenant_key(tenant_id),),
            )
        }
        return {
            **_summary(db, row),
            "windows": [
                {
                    "calendar_name": w.calendar_name,
                    "starts_at": w.starts_at.isoformat(),
                    "ends_at": w.ends_at.isoformat(),
                }
                for w in campaign.windows
            ],
            # A window whose calendar the tenant has not defined never opens.
            "missing_calendars": sorted({w.calendar_name for w in campaign.windows} - defined),
            "max_concurrent": campaign.max_concurrent,
            "per_minute": campaign.per_minute,
            "max_attempts": row["max_attempts"],
            "retry_after_seconds": row["retry_after_seconds"],
            "retrying": retrying,  # pending targets waiting for `next_retry_at` or later
            "next_retry_at": next_retry_at,
            "attempts": attempts,
            "last_attempt_at": last_attempt_at,
            "version": row["version"],
            "updated_at": row["updated_at"],
        }

    def list(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's campaigns by name, each with its target counts."""
        db = self.connect()
        rows = db.execute(
            "SELECT * FROM campaigns WHERE tenant_id = ? ORDER BY name, id", (tenant_id,)
        ).fetchall()
        return [_summary(db, r) for r in rows]


# ------------------------------------------------------------------------------ helpers


def _windows(text: str) -> tuple[Window, ...]:
    return tuple(
        Window(
            w["calendar_name"],
            datetime.fromisoformat(w["starts_at"]),
            datetime.fromisoformat(w["ends_at"]),
        )
        for w in msgspec.json.decode(text)
    )


def _counts(db: sqlite3.Connection, campaign_id: str) -> dict[str, int]:
    """Targets by status, every status present (the shape of Campaign.progress())."""
    counts = dict.fromkeys((s.value for s in TargetStatus), 0)
    for status, count in db.execute(
        "SELECT status, count(*) FROM campaign_targets WHERE campaign_id = ? GROUP BY status",
        (campaign_id,),
    ):
        counts[status] = count
    return counts


def _summary(db: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    counts = _counts(db, row["id"])
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "name": row["name"],
        "channel": row["channel"],
        "status": row["status"],
        "targets": sum(counts.values()),
        "progress": counts,
    }


def _tenant_key(tenant_id: str) -> str:
    return str(Tenant.create_id(tenant_id))


def _calendars(db: sqlite3.Connection, tenant_id: str) -> dict[str, BusinessCalendar]:
    rows = db.execute(
        "SELECT name, calendar FROM business_calendars WHERE tenant_key = ?",
        (_tenant_key(tenant_id),),
    )
    return {name: calendar_from_builtins(msgspec.json.decode(text)) for name, text in rows}


def _over(windows: Sequence[Window], now: datetime) -> bool:
    """True once the last window has ended (never for a campaign without windows)."""
    return bool(windows) and now >= max(w.ends_at for w in windows)


def _window_open(
    windows: Sequence[Window], calendars: dict[str, BusinessCalendar], at: datetime
) -> bool:
    return any(
        w.contains(at) and w.calendar_name in calendars and is_open(calendars[w.calendar_name], at)
        for w in windows
    )


def _next_opening(
    windows: Sequence[Window], calendars: dict[str, BusinessCalendar], after: datetime
) -> datetime | None:
    """The first instant at or after `after` inside a window while its calendar is open."""
    found: list[datetime] = []
    for w in windows:
        calendar = calendars.get(w.calendar_name)
        if calendar is None or w.ends_at <= after:
            continue
        try:
            opens = next_open(calendar, max(after, w.starts_at))
        except NeverOpen:
            continue
        if opens < w.ends_at:
            found.append(opens)
    return min(found, default=None)


def _recent_starts(
    db: sqlite3.Connection, campaign_id: str, sent: dict[str, _Sent], now: datetime
) -> list[datetime]:
    """When the attempts of the minute up to `now` started, oldest first."""
    since = now - _MINUTE
    rows = db.execute(
        "SELECT at FROM campaign_attempts WHERE campaign_id = ? AND at > ? AND at <= ?",
        (campaign_id, iso(since), iso(now)),
    )
    starts = [datetime.fromisoformat(at) for (at,) in rows]
    starts += [s.at for s in sent.values() if since < s.at <= now]
    return sorted(starts)


def _first_ready(
    db: sqlite3.Connection, campaign_id: str, sent: dict[str, _Sent]
) -> datetime | None:
    """When the first pending target (not just attempted) may be tried; None if none is."""
    rows = db.execute(
        "SELECT customer_id, not_before FROM campaign_targets WHERE campaign_id = ? "
        "AND status = ? ORDER BY not_before IS NOT NULL, not_before LIMIT ?",
        (campaign_id, TargetStatus.PENDING.value, len(sent) + 1),
    )
    for customer, not_before in rows:
        if customer not in sent:
            return _LONG_AGO if not_before is None else datetime.fromisoformat(not_before)
    return None


def _command(
    campaign: _Campaign, customer_id: UUID, address: str, attempt: int
) -> tuple[str, bytes]:
    """The subject and payload asking for one attempt's call or message."""
    command_id = attempt_command_id(UUID(campaign.id), customer_id, attempt)
    tenant, campaign_id = campaign.tenant_id, UUID(campaign.id)
    if campaign.channel is Channel.CALL:
        # No hotline: the bridge calls from the tenant's default one.
        call = telephony.Originate(
            command_id=command_id,
            tenant_id=tenant,
            hotline=None,
            to_number=address,
            campaign_id=campaign_id,
            customer_id=customer_id,
            attempt=attempt,
        )
        return telephony.subject(tenant, call), telephony.encode(call)
    message = messages.SendMessage(
        command_id=command_id,
        tenant_id=tenant,
        channel=campaign.channel,
        to=address,
        campaign_id=campaign_id,
        customer_id=customer_id,
        attempt=attempt,
    )
    return messages.subject(tenant, message), messages.encode(message)
