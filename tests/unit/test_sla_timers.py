"""SLA timers across business hours, holidays and a restart.

In-memory applications and explicit times: `Harness.wall` is the time every event is
recorded at (eventsourcing stamps events with it) and `Harness.act(now)` catches the
manager up with the event log, as the live runner does, then acts at `now`.

The office is open Monday to Friday, 08:00-17:00 in Saigon; 2025-03-28 is a Friday. The
standard policy promises a first response in 4 business hours and a resolution in 16,
warning at 75%.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import eventsourcing.domain
import pytest

from domain.calendars import BusinessCalendar, Holiday, OpeningHours, Weekday
from domain.conversations import Conversations
from domain.queues import Queues
from domain.sla import SlaPolicies
from domain.sla_clocks import SlaClock, SlaClocks
from domain.tenants import Tenants
from domain.tickets import Tickets
from domain.vocabulary import Channel, Package, Priority
from projections.process import ActContext
from projections.rebuild import compare
from projections.replay import catch_up
from projections.sla_timers import SlaDecision, SlaTimers

TENANT, OTHER = "acme", "globex"
SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600
AGENT, CUSTOMER = uuid4(), uuid4()


def saigon(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in late March 2025 in Saigon (28 is a Friday, 31 a Monday, 32 = April 1)."""
    return datetime(2025, 3, 1, hour, minute, tzinfo=SAIGON) + timedelta(days=day - 1)


FRI, SAT, MON, TUE, WED = 28, 29, 31, 32, 33


def office(zone: str = "Asia/Ho_Chi_Minh", holidays: tuple[date, ...] = ()) -> BusinessCalendar:
    return BusinessCalendar(
        time_zone=zone,
        hours=tuple(OpeningHours(day=d, start=time(8), end=time(17)) for d in list(Weekday)[:5]),
        holidays=tuple(Holiday(day=d) for d in holidays),
    )


class Harness:
    """The applications the manager follows, one manager, and the wall clock."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall = saigon(FRI, 8)
        # Events are stamped by eventsourcing with the time they are recorded: ours.
        monkeypatch.setattr(eventsourcing.domain, "datetime_now_with_tzinfo", lambda: self.wall)
        self.tenants = Tenants()
        self.policies = SlaPolicies()
        self.tickets = Tickets()
        self.conversations = Conversations()
        self.queues = Queues()
        self.clocks = SlaClocks()
        self.apps: dict[str, Any] = {
            str(a.name): a
            for a in (
                self.tenants,
                self.policies,
                self.tickets,
                self.conversations,
                self.queues,
                self.clocks,
            )
        }
        self.path = path
        self.timers = SlaTimers(path)
        self.policy = self.setup(TENANT, "0912345678")

    def setup(self, tenant: str, hotline: str, calendar: BusinessCalendar | None = None) -> UUID:
        self.tenants.register(tenant, tenant.title(), Package.CONTACT_CENTER, [hotline])
        self.tenants.define_calendar(tenant, "office", calendar or office())
        policy = self.policies.create(tenant, "Standard", 4 * HOUR, 16 * HOUR)
        self.policies.set_calendar(tenant, policy, "office")
        self.policies.set_warning_ratio(tenant, policy, 0.75)
        return policy

    def at(self, when: datetime) -> Harness:
        self.wall = when
        return self

    def raise_ticket(
        self, when: datetime, tenant: str = TENANT, policy: UUID | None = None, **kw: Any
    ) -> UUID:
        self.wall = when
        policy = policy or self.policy
        return self.tickets.raise_ticket(
            tenant, "Cước tháng 3 sai", kind="complaint", sla_policy_id=policy, **kw
        )

    def reply(self, when: datetime, ticket: UUID, public: bool = True) -> None:
        self.at(when).tickets.comment(TENANT, ticket, AGENT, "Chúng tôi đang kiểm tra", public)

    def act(self, now: datetime, *, catch: bool = True) -> list[SlaDecision]:
        if catch:
            catch_up(self.timers, self.apps)
        self.wall = now
        return self.timers.act(ActContext(apps=self.apps, now=now))

    def restart(self) -> None:
        self.timers.connect().close()
        self.timers = SlaTimers(self.path)

    def state(self, ticket: UUID, tenant: str = TENANT) -> dict[str, dict[str, Any]]:
        catch_up(self.timers, self.apps)
        return self.timers.state(tenant, ticket)

    def due(self, ticket: UUID, metric: str = "first_response") -> datetime:
        return datetime.fromisoformat(self.state(ticket)[metric]["due_at"])

    def recorded(self, event: type[Any]) -> list[Any]:
        """Every clock event of this type in the log, in order."""
        found = []
        for n in self.clocks.recorder.select_notifications(1, 10_000):
            e = self.clocks.mapper.to_domain_event(n)
            if isinstance(e, event):
                found.append(e)
        return found


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    harness = Harness(tmp_path / "sla_timers.sqlite", monkeypatch)
    yield harness
    harness.timers.connect().close()


def kinds(decisions: list[SlaDecision]) -> Counter[tuple[str, str]]:
    return Counter((d.metric, d.event) for d in decisions)


# Starting, and due times on business hours


def test_a_ticket_raised_friday_afternoon_is_due_monday_morning(h: Harness) -> None:
    ticket = h.raise_ticket(saigon(FRI, 16, 30))
    decisions = h.act(saigon(FRI, 16, 31))
    assert kinds(decisions) == {("first_response", "Started"): 1, ("resolution", "Started"): 1}
    state = h.state(ticket)
    assert h.due(ticket) == saigon(MON, 11, 30)
    # 16 business hours: Friday's half hour, Monday's nine, then Tuesday until 14:30.
    assert h.due(ticket, "resolution") == saigon(TUE, 14, 30)
    assert state["first_response"]["status"] == "running"
    assert h.act(saigon(FRI, 16, 32)) == []
    assert h.timers.next_due() == saigon(MON, 10, 30)  # the first warning


def test_a_holiday_in_between_shifts_the_deadline(h: Harness) -> None:
    h.tenants.define_calendar(TENANT, "office", office(holidays=(date(2025, 3, 31),)))
    ticket = h.raise_ticket(saigon(FRI, 16, 30))
    h.act(saigon(FRI, 16, 31))
    assert h.due(ticket) == saigon(TUE, 11, 30)


def test_a_dst_change_keeps_the_deadline_in_office_hours(h: Harness) -> None:
    policy = h.setup(OTHER, "0912345679", office("Europe/Berlin"))
    friday = datetime(2025, 3, 28, 16, 30, tzinfo=BERLIN)  # Berlin springs forward on Sunday
    ticket = h.raise_ticket(friday, OTHER, policy)
    h.act(friday + timedelta(minutes=1))
    due = datetime.fromisoformat(h.state(ticket, OTHER)["first_response"]["due_at"])
    assert due == datetime(2025, 3, 31, 9, 30, tzinfo=UTC)  # 11:30 in Berlin, now UTC+2


def test_targets_follow_priority_and_the_channel_the_ticket_came_from(h: Harness) -> None:
    h.policies.set_targets(TENANT, h.policy, Priority.URGENT, None, HOUR, 8 * HOUR)
    h.policies.set_targets(TENANT, h.policy, None, Channel.CHAT, 2 * HOUR, 8 * HOUR)
    h.policies.set_targets(TENANT, h.policy, None, Channel.CALL, 1800, 8 * HOUR)
    chat = h.conversations.start(TENANT, Channel.CHAT, CUSTOMER, at=saigon(MON, 8))
    urgent = h.raise_ticket(saigon(MON, 9), priority=Priority.URGENT)
    from_chat = h.raise_ticket(saigon(MON, 9), conversation_ids=[chat])
    plain = h.raise_ticket(saigon(MON, 9))
    h.act(saigon(MON, 9, 1))
    assert h.due(urgent) == saigon(MON, 10)
    assert h.due(from_chat) == saigon(MON, 11)
    assert h.due(plain) == saigon(MON, 13)  # no channel: no channel's row, the default


# Warnings, responses and resolutions


def test_the_warning_comes_at_the_warning_ratio(h: Harness) -> None:
    ticket = h.raise_ticket(saigon(FRI, 16, 30))
    h.act(saigon(FRI, 16, 31))
    assert h.act(saigon(MON, 10, 29)) == []
    decisions = h.act(saigon(MON, 10, 31))
    assert kinds(decisions) == {("first_response", "Warned"): 1}
    [warned] = h.recorded(SlaClock.Warned)
    assert (warned.due, warned.at) == (saigon(MON, 10, 30), saigon(MON, 10, 31))
    assert h.state(ticket)["first_response"]["status"] == "warned"
    assert h.act(saigon(MON, 10, 45)) == []
    assert h.timers.next_due() == saigon(MON, 11, 30)


def test_the_first_public_reply_meets_the_first_response_clock(h: Harness) -> None:
    ticket = h.raise_ticket(saigon(MON, 9))
    h.act(saigon(MON, 9))
    h.reply(saigon(MON, 9, 30), ticket, public=False)
    assert h.act(saigon(MON, 9, 31)) == []  # an internal note is no reply
    h.reply(saigon(MON, 10), ticket)
    assert kinds(h.act(saigon(MON, 10, 1))) == {("first_response", "Met"): 1}
    state = h.state(ticket)
    assert state["first_response"]["status"] == "met"
    assert state["first_response"]["ended_at"] == "2025-03-31T03:00:00.000000Z"
    assert state["resolution"]["status"] == "running"
    assert {d.metric for d in h.act(saigon(WED, 12))} == {"resolution"}


def test_resolving_meets_the_resolution_clock_and_stops_an_unanswered_one(h: Harness) -> None:
    ticket = h.raise_ticket(saigon(MON, 9))
    h.act(saigon(MON, 9))
    h.at(saigon(MON, 10)).tickets.change_status(TENANT, ticket, "resolved")
    assert kinds(h.act(saigon(MON, 10, 1))) == {
        ("first_response", "Stopped"): 1,
        ("resolution", "Met"): 1,
    }
    h.at(saigon(MON, 11)).tickets.change_status(TENANT, ticket, "open")  # reopened
    assert h.act(saigon(WED, 12)) == []
    state = h.state(ticket)
    assert (state["first_response"]["status"], state["resolution"]["status"]) == ("stopped", "met")


def test_facts_met_while_down_are_applied_in_order_and_end_at_the_outcome(h: Harness) -> None:
    ticket = h.raise_ticket(saigon(MON, 9))
    h.act(saigon(MON, 9))
    h.restart()
    h.reply(saigon(MON, 9, 30), ticket)
    h.at(saigon(MON, 10)).tickets.change_status(TENANT, ticket, "resolved")
    h.at(saigon(MON, 10, 30)).tickets.change_status(TENANT, ticket, "open")
    h.at(saigon(MON, 11)).tickets.change_status(TENANT, ticket, "pending")
    h.restart()
    # The reply came first: the first response was met, not stopped by the resolution;
    # the pause after the reopening concerns neither clock any more.
    assert kinds(h.act(saigon(MON, 12))) == {("first_response", "Met"): 1, ("resolution", "Met"): 1}
    [first, resolved] = sorted(h.recorded(SlaClock.Met), key=lambda e: e.at)
    assert (first.at, resolved.at) == (saigon(MON, 9, 30), saigon(MON, 10))


def test_pending_pauses_both_clocks_and_open_resumes_them(h: Harness) -> None:
    ticket = h.raise_ticket(saigon(FRI, 16, 30))
    h.act(saigon(FRI, 16, 31))
    h.at(saigon(MON, 9)).tickets.change_status(TENANT, ticket, "pending")
    assert kinds(h.act(saigon(MON, 9, 1))) == {
        ("first_response", "Paused"): 1,
        ("resolution", "Paused"): 1,
    }
    state = h.state(ticket)["first_response"]
    assert (state["status"], state["due_at"], state["remaining_seconds"]) == (
        "paused",
        None,
        2.5 * HOUR,
    )
    assert h.act(saigon(TUE, 12)) == []  # nothing falls due while waiting on the customer
    h.at(saigon(TUE, 13)).tickets.change_status(TENANT, ticket, "open")
    assert kinds(h.act(saigon(TUE, 13))) == {
        ("first_response", "Resumed"): 1,
        ("resolution", "Resumed"): 1,
    }
    assert h.due(ticket) == saigon(TUE, 15, 30)


def test_a_priority_change_retargets_the_running_clocks(h: Harness) -> None:
    h.policies.set_targets(TENANT, h.policy, Priority.URGENT, None, HOUR, 8 * HOUR)
    ticket = h.raise_ticket(saigon(MON, 9))
    h.act(saigon(MON, 9))
    h.at(saigon(MON, 9, 30)).tickets.change_priority(TENANT, ticket, Priority.URGENT)
    decisions = h.act(saigon(MON, 9, 31))
    assert kinds(decisions) == {
        ("first_response", "Retargeted"): 1,
        ("resolution", "Retargeted"): 1,
    }
    assert h.due(ticket) == saigon(MON, 10)
    assert h.act(saigon(MON, 9, 32)) == []


def test_a_change_noticed_late_applies_from_when_it_was_made(h: Harness) -> None:
    h.policies.set_targets(TENANT, h.policy, Priority.LOW, None, 8 * HOUR, 16 * HOUR)
    ticket = h.raise_ticket(saigon(MON, 8))  # first response due 12:00, warned at 11:00
    h.act(saigon(MON, 8))
    h.restart()  # down from 08:00 to 14:00
    h.at(saigon(MON, 11, 30)).tickets.change_priority(TENANT, ticket, Priority.LOW)
    h.at(saigon(MON, 12, 30)).tickets.change_status(TENANT, ticket, "pending")
    h.at(saigon(MON, 13)).tickets.change_status(TENANT, ticket, "open")
    h.restart()
    events = [d.event for d in h.act(saigon(MON, 14)) if d.metric == "first_response"]
    # Warned under the old terms (due 11:00); by 12:00 the target was 8 hours: no breach.
    assert events == ["Warned", "Retargeted", "Paused", "Resumed"]
    assert h.due(ticket) == saigon(MON, 16, 30)  # 8 hours from 08:00, less half an hour


def test_a_holiday_added_later_moves_running_deadlines(h: Harness) -> None:
    ticket = h.raise_ticket(saigon(FRI, 16, 30))
    h.act(saigon(FRI, 16, 31))
    h.at(saigon(SAT, 10)).tenants.define_calendar(
        TENANT, "office", office(holidays=(date(2025, 3, 31),))
    )
    assert kinds(h.act(saigon(SAT, 10))) == {
        ("first_response", "Retargeted"): 1,
        ("resolution", "Retargeted"): 1,
    }
    assert h.due(ticket) == saigon(TUE, 11, 30)


def test_a_calendar_change_does_not_undo_what_fell_due_before_it(h: Harness) -> None:
    ticket = h.raise_ticket(saigon(FRI, 16, 30))
    h.act(saigon(FRI, 16, 31))
    h.restart()
    # Monday is made a holiday at noon, after the 11:30 deadline, while the manager is down.
    h.at(saigon(MON, 12)).tenants.define_calendar(
        TENANT, "office", office(holidays=(date(2025, 3, 31),))
    )
    h.restart()
    events = [d.event for d in h.act(saigon(MON, 13)) if d.metric == "first_response"]
    assert events == ["Warned", "Breached", "Retargeted"]
    [breached] = h.recorded(SlaClock.Breached)
    assert breached.due == saigon(MON, 11, 30)
    assert h.state(ticket)["first_response"]["status"] == "breached"
    # 4.5 hours were counted by Monday noon, the 11.5 left count from Tuesday 08:00.
    assert h.due(ticket, "resolution") == saigon(WED, 10, 30)


def test_renaming_a_policy_retargets_nothing(h: Harness) -> None:
    h.raise_ticket(saigon(MON, 9))
    h.act(saigon(MON, 9))
    h.policies.rename(TENANT, h.policy, "Standard (2025)")
    assert h.act(saigon(MON, 9, 1)) == []


def test_removing_the_policy_stops_the_clocks(h: Harness) -> None:
    ticket = h.raise_ticket(saigon(MON, 9))
    h.act(saigon(MON, 9))
    h.at(saigon(MON, 10)).tickets.set_sla_policy(TENANT, ticket, None)
    assert kinds(h.act(saigon(MON, 10))) == {
        ("first_response", "Stopped"): 1,
        ("resolution", "Stopped"): 1,
    }
    assert h.act(saigon(WED, 12)) == []


# Restart and rebuild


def test_after_a_restart_everything_that_fell_due_fires_once(h: Harness) -> None:
    late = h.raise_ticket(saigon(FRI, 16, 30))
    assert len(h.act(saigon(FRI, 16, 31))) == 2
    h.restart()  # down from Friday evening to Wednesday noon, while work went on
    unseen = h.raise_ticket(saigon(MON, 8))
    answered = h.raise_ticket(saigon(MON, 8))
    h.reply(saigon(MON, 9), answered)
    replied_late = h.raise_ticket(saigon(MON, 8))
    h.reply(saigon(MON, 13), replied_late)
    h.restart()
    back = saigon(WED, 12)
    decisions = h.act(back)

    per_ticket = Counter((d.subject_id, d.metric, d.event) for d in decisions)
    assert set(per_ticket.values()) == {1}  # each fired exactly once
    for ticket in (late, unseen, answered, replied_late):
        assert per_ticket[ticket, "resolution", "Breached"] == 1
    assert per_ticket[late, "first_response", "Breached"] == 1
    assert per_ticket[unseen, "first_response", "Breached"] == 1
    assert per_ticket[answered, "first_response", "Met"] == 1
    assert per_ticket[answered, "first_response", "Warned"] == 0
    assert per_ticket[replied_late, "first_response", "Met"] == 1
    assert per_ticket[replied_late, "first_response", "Breached"] == 1
    assert len(decisions) == 6 + 2 * 7 + 2  # 6 starts; 7 clocks warned and breached; 2 met

    due = {(e.originator_id, e.due) for e in h.recorded(SlaClock.Breached)}
    assert all(e.at == back for e in h.recorded(SlaClock.Breached))
    first = {t: SlaClock.create_id(TENANT, "ticket", t, "first_response") for t in (late, unseen)}
    assert (first[late], saigon(MON, 11, 30)) in due
    assert (first[unseen], saigon(MON, 12)) in due
    [met_late] = [e for e in h.recorded(SlaClock.Met) if e.at == saigon(MON, 13)]
    assert met_late.used_seconds == 5 * HOUR

    # The events are not back yet: nothing fires twice. Nor once they are.
    assert h.act(back, catch=False) == []
    assert h.act(back) == []
    assert h.act(back + timedelta(hours=1)) == []
    assert len(h.recorded(SlaClock.Breached)) == 7
    assert h.timers.next_due() is None

    rebuilt = SlaTimers(h.path.with_name("rebuilt.sqlite"))
    catch_up(rebuilt, h.apps)
    assert compare(h.timers.connect(), rebuilt.connect()) == []
    rebuilt.connect().close()


def test_a_rebuild_interleaving_streams_differently_gives_the_same_tables(h: Harness) -> None:
    ticket = h.raise_ticket(saigon(FRI, 16, 30))
    h.act(saigon(FRI, 16, 31))
    h.at(saigon(MON, 9)).tickets.change_status(TENANT, ticket, "pending")
    h.act(saigon(MON, 9))
    h.tenants.define_calendar(TENANT, "office", office(holidays=(date(2025, 4, 1),)))
    h.at(saigon(MON, 10)).tickets.change_status(TENANT, ticket, "open")
    h.act(saigon(MON, 10))
    catch_up(h.timers, h.apps)
    rebuilt = SlaTimers(h.path.with_name("rebuilt.sqlite"))
    # The clocks' stream first, then the others in reverse: another interleaving.
    reordered = {n: h.apps[n] for n in reversed(SlaTimers.upstreams)}
    catch_up(rebuilt, reordered)
    assert compare(h.timers.connect(), rebuilt.connect()) == []
    assert rebuilt.state(TENANT, ticket) == h.timers.state(TENANT, ticket)
    rebuilt.connect().close()


# Tenant walls


def test_tenant_walls(h: Harness) -> None:
    h.setup(OTHER, "0912345679")
    ours = h.raise_ticket(saigon(MON, 9))
    # A ticket of another tenant naming our policy gets no clock: the policy is not theirs.
    theirs = h.raise_ticket(saigon(MON, 9), OTHER, h.policy)
    decisions = h.act(saigon(MON, 9, 1))
    assert {d.tenant_id for d in decisions} == {TENANT}
    assert {d.subject_id for d in decisions} == {ours}
    assert h.state(theirs, OTHER) == {}
    assert h.state(ours, OTHER) == {}
    assert set(h.state(ours)) == {"first_response", "resolution"}


# Conversations: their queue names the policy (CC22)


def chat_queue(h: Harness, policy: UUID | None, tenant: str = TENANT) -> UUID:
    queue = h.queues.create(tenant, "Chat", channels=[Channel.CHAT, Channel.EMAIL])
    if policy is not None:
        h.queues.set_sla_policy(tenant, queue, policy)
    return queue


def chat(h: Harness, when: datetime, queue: UUID | None, tenant: str = TENANT) -> UUID:
    """A chat the customer opened with a first message at `when`, in `queue`."""
    h.wall = when
    conversation = h.conversations.start(tenant, Channel.CHAT, CUSTOMER, queue_id=queue, at=when)
    h.conversations.receive_message(tenant, conversation, f"in-{uuid4()}", "Xin chào", at=when)
    return conversation


def answer(h: Harness, when: datetime, conversation: UUID, agent: UUID | None = AGENT) -> None:
    h.at(when).conversations.send_message(
        TENANT, conversation, f"out-{uuid4()}", agent, "Dạ, em chào anh", at=when
    )


def by_metric(h: Harness, subject: UUID, field: str) -> dict[str, Any]:
    return {metric: clock[field] for metric, clock in h.state(subject).items()}


def test_a_chat_in_a_queue_with_a_policy_gets_both_clocks_on_business_hours(h: Harness) -> None:
    # The conversation's own row: Normal priority (it has none) on its channel.
    h.policies.set_targets(TENANT, h.policy, Priority.NORMAL, Channel.CHAT, 2 * HOUR, 8 * HOUR)
    h.policies.set_targets(TENANT, h.policy, Priority.HIGH, Channel.CHAT, 1800, 4 * HOUR)
    h.policies.set_targets(TENANT, h.policy, Priority.NORMAL, Channel.EMAIL, 8 * HOUR, 16 * HOUR)
    conversation = chat(h, saigon(FRI, 16, 30), chat_queue(h, h.policy))
    decisions = h.act(saigon(FRI, 16, 31))
    assert kinds(decisions) == {("first_response", "Started"): 1, ("resolution", "Started"): 1}
    assert {(d.subject_kind, d.subject_id) for d in decisions} == {("conversation", conversation)}
    state = h.state(conversation)
    assert {c["subject_kind"] for c in state.values()} == {"conversation"}
    assert state["first_response"]["status"] == "running"
    # Half an hour on Friday, the rest from Monday 08:00.
    assert h.due(conversation) == saigon(MON, 9, 30)
    assert h.due(conversation, "resolution") == saigon(MON, 15, 30)
    assert h.timers.next_due() == saigon(MON, 9)  # the warning, at 75% of two hours
    assert h.act(saigon(FRI, 16, 32)) == []


def test_an_agent_reply_meets_the_first_response_clock(h: Harness) -> None:
    conversation = chat(h, saigon(MON, 9), chat_queue(h, h.policy))
    h.act(saigon(MON, 9))
    answer(h, saigon(MON, 9, 10), conversation, agent=None)
    assert h.act(saigon(MON, 9, 11)) == []  # an automatic acknowledgement is no response
    # Sent at 09:30 by the channel's clock, recorded a little later: the reply counts.
    h.at(saigon(MON, 9, 31)).conversations.send_message(
        TENANT, conversation, "out-1", AGENT, "Dạ, em chào anh", at=saigon(MON, 9, 30)
    )
    assert kinds(h.act(saigon(MON, 9, 31))) == {("first_response", "Met"): 1}
    answer(h, saigon(MON, 9, 40), conversation)
    assert h.act(saigon(MON, 9, 41)) == []
    state = h.state(conversation)
    assert (state["first_response"]["status"], state["resolution"]["status"]) == (
        "met",
        "running",
    )
    assert datetime.fromisoformat(state["first_response"]["ended_at"]) == saigon(MON, 9, 30)


def test_resolving_meets_the_resolution_clock_and_reopening_does_not_restart_it(
    h: Harness,
) -> None:
    conversation = chat(h, saigon(MON, 9), chat_queue(h, h.policy))
    h.act(saigon(MON, 9))
    h.at(saigon(MON, 10)).conversations.resolve(TENANT, conversation)
    assert kinds(h.act(saigon(MON, 10, 1))) == {
        ("first_response", "Stopped"): 1,
        ("resolution", "Met"): 1,
    }
    h.at(saigon(MON, 11)).conversations.receive_message(
        TENANT, conversation, "in-again", "Còn một việc nữa", at=saigon(MON, 11)
    )
    assert h.act(saigon(WED, 12)) == []
    assert by_metric(h, conversation, "status") == {
        "first_response": "stopped",
        "resolution": "met",
    }
    assert by_metric(h, conversation, "stop_reason")["first_response"] == "resolved without a reply"


def test_closing_an_answered_conversation_meets_the_resolution_clock(h: Harness) -> None:
    conversation = chat(h, saigon(MON, 9), chat_queue(h, h.policy))
    answer(h, saigon(MON, 9, 30), conversation)
    h.at(saigon(MON, 10)).conversations.close_conversation(TENANT, conversation)
    # Seen only afterwards: started, then met in the order it happened.
    assert kinds(h.act(saigon(MON, 11))) == {
        ("first_response", "Started"): 1,
        ("first_response", "Met"): 1,
        ("resolution", "Started"): 1,
        ("resolution", "Met"): 1,
    }
    assert by_metric(h, conversation, "ended_at") == {
        "first_response": "2025-03-31T02:30:00.000000Z",
        "resolution": "2025-03-31T03:00:00.000000Z",
    }


def test_waiting_on_the_customer_pauses_a_conversations_clocks(h: Harness) -> None:
    conversation = chat(h, saigon(MON, 9), chat_queue(h, h.policy))
    h.act(saigon(MON, 9))
    h.at(saigon(MON, 10)).conversations.set_pending(TENANT, conversation)
    assert kinds(h.act(saigon(MON, 10))) == {
        ("first_response", "Paused"): 1,
        ("resolution", "Paused"): 1,
    }
    assert by_metric(h, conversation, "remaining_seconds")["first_response"] == 3 * HOUR
    assert h.act(saigon(TUE, 16)) == []
    # The customer writes back: open again, the clocks go on with what was left.
    h.at(saigon(WED, 9)).conversations.receive_message(
        TENANT, conversation, "in-2", "Em gửi ảnh ạ", at=saigon(WED, 9)
    )
    assert kinds(h.act(saigon(WED, 9))) == {
        ("first_response", "Resumed"): 1,
        ("resolution", "Resumed"): 1,
    }
    assert h.due(conversation) == saigon(WED, 12)
    # A wait begun and ended between two acts still counts, once.
    h.at(saigon(WED, 9, 30)).conversations.set_pending(TENANT, conversation)
    h.at(saigon(WED, 10)).conversations.reopen(TENANT, conversation)
    assert kinds(h.act(saigon(WED, 10, 1))) == {
        ("first_response", "Paused"): 1,
        ("first_response", "Resumed"): 1,
        ("resolution", "Paused"): 1,
        ("resolution", "Resumed"): 1,
    }
    assert h.due(conversation) == saigon(WED, 12, 30)
    assert h.act(saigon(WED, 10, 2)) == []


def test_a_conversations_clocks_start_when_it_entered_the_queue(h: Harness) -> None:
    triage, support = chat_queue(h, None), chat_queue(h, h.policy)
    conversation = chat(h, saigon(MON, 8), triage)  # waits first where no SLA applies
    h.at(saigon(MON, 9)).conversations.move_to_queue(TENANT, conversation, support)
    # Started in the queue by a fact recorded late: it has waited since the fact's time.
    reported = h.at(saigon(MON, 9, 20)).conversations.start(
        TENANT, Channel.EMAIL, CUSTOMER, queue_id=support, at=saigon(MON, 8, 30)
    )
    h.act(saigon(MON, 9, 30))
    assert by_metric(h, conversation, "started_at") == {
        "first_response": "2025-03-31T02:00:00.000000Z",
        "resolution": "2025-03-31T02:00:00.000000Z",
    }
    assert h.due(conversation) == saigon(MON, 13)
    assert h.due(reported) == saigon(MON, 12, 30)
    # A policy given to its queue later still counts from when it entered the queue.
    later = chat(h, saigon(MON, 10), triage)
    h.act(saigon(MON, 10))
    h.at(saigon(MON, 11)).queues.set_sla_policy(TENANT, triage, h.policy)
    assert kinds(h.act(saigon(MON, 11))) == {
        ("first_response", "Started"): 1,
        ("resolution", "Started"): 1,
    }
    assert h.due(later) == saigon(MON, 14)


def test_a_conversation_in_a_queue_without_a_policy_gets_no_clock(h: Harness) -> None:
    queue = chat_queue(h, None)
    conversation = chat(h, saigon(MON, 9), queue)
    unqueued = chat(h, saigon(MON, 9), None)
    assert h.act(saigon(MON, 9, 1)) == []
    answer(h, saigon(MON, 9, 30), conversation)
    h.at(saigon(MON, 10)).conversations.resolve(TENANT, conversation)
    assert h.act(saigon(WED, 12)) == []
    assert h.state(conversation) == {} and h.state(unqueued) == {}
    assert h.timers.next_due() is None


def test_moving_to_a_queue_without_a_policy_stops_the_clocks_for_good(h: Harness) -> None:
    conversation = chat(h, saigon(MON, 9), chat_queue(h, h.policy))
    h.act(saigon(MON, 9))
    h.at(saigon(MON, 10)).conversations.move_to_queue(TENANT, conversation, chat_queue(h, None))
    assert kinds(h.act(saigon(MON, 10))) == {
        ("first_response", "Stopped"): 1,
        ("resolution", "Stopped"): 1,
    }
    assert set(by_metric(h, conversation, "stop_reason").values()) == {
        "the conversation's queue has no SLA policy"
    }
    # One clock per subject and metric: a queue with a policy again does not restart it.
    h.at(saigon(MON, 11)).conversations.move_to_queue(TENANT, conversation, chat_queue(h, h.policy))
    assert h.act(saigon(WED, 12)) == []


def test_clearing_the_queues_policy_stops_the_clocks_of_its_conversations(h: Harness) -> None:
    queue = chat_queue(h, h.policy)
    conversation = chat(h, saigon(MON, 9), queue)
    h.act(saigon(MON, 9))
    h.at(saigon(MON, 10)).queues.set_sla_policy(TENANT, queue, None)
    assert kinds(h.act(saigon(MON, 11))) == {
        ("first_response", "Stopped"): 1,
        ("resolution", "Stopped"): 1,
    }
    assert set(by_metric(h, conversation, "ended_at").values()) == {"2025-03-31T03:00:00.000000Z"}


def test_a_move_or_a_policy_edit_retargets_a_conversations_running_clocks(h: Harness) -> None:
    faster = h.policies.create(TENANT, "Fast chat", 2 * HOUR, 8 * HOUR)
    h.policies.set_calendar(TENANT, faster, "office")
    conversation = chat(h, saigon(MON, 9), chat_queue(h, h.policy))
    h.act(saigon(MON, 9))
    # Another queue with the same policy: the same terms, nothing to do.
    h.at(saigon(MON, 9, 30)).conversations.move_to_queue(
        TENANT, conversation, chat_queue(h, h.policy)
    )
    assert h.act(saigon(MON, 9, 30)) == []
    h.at(saigon(MON, 10)).conversations.move_to_queue(TENANT, conversation, chat_queue(h, faster))
    assert kinds(h.act(saigon(MON, 10))) == {
        ("first_response", "Retargeted"): 1,
        ("resolution", "Retargeted"): 1,
    }
    assert h.due(conversation) == saigon(MON, 11)
    # Both take the policy's new version, though only one target changed.
    h.at(saigon(MON, 10, 30)).policies.set_default(TENANT, faster, 3 * HOUR, 8 * HOUR)
    assert kinds(h.act(saigon(MON, 10, 30))) == {
        ("first_response", "Retargeted"): 1,
        ("resolution", "Retargeted"): 1,
    }
    assert h.due(conversation) == saigon(MON, 12)
    assert h.due(conversation, "resolution") == saigon(MON, 17)


def test_moves_seen_late_give_the_history_they_would_have_given_live(h: Harness) -> None:
    faster = h.policies.create(TENANT, "Fast chat", 2 * HOUR, 8 * HOUR)
    h.policies.set_calendar(TENANT, faster, "office")
    standard, fast, without = chat_queue(h, h.policy), chat_queue(h, faster), chat_queue(h, None)
    moved = chat(h, saigon(MON, 9), standard)
    h.at(saigon(MON, 10)).conversations.move_to_queue(TENANT, moved, fast)
    left = chat(h, saigon(MON, 9), standard)
    h.at(saigon(MON, 10)).conversations.move_to_queue(TENANT, left, without)
    decisions = h.act(saigon(MON, 10, 30))
    events = Counter((d.subject_id, d.event) for d in decisions)
    # Started on the first queue's policy at 09:00, then what the move changed at 10:00.
    assert events == {
        (moved, "Started"): 2,
        (moved, "Retargeted"): 2,
        (left, "Started"): 2,
        (left, "Stopped"): 2,
    }
    assert by_metric(h, moved, "started_at")["first_response"] == "2025-03-31T02:00:00.000000Z"
    assert h.due(moved) == saigon(MON, 11)  # two hours from 09:00 on the new policy
    assert set(by_metric(h, left, "ended_at").values()) == {"2025-03-31T03:00:00.000000Z"}


def test_a_conversation_restart_far_past_due_warns_and_breaches_once(h: Harness) -> None:
    queue = chat_queue(h, h.policy)
    seen = chat(h, saigon(FRI, 16, 30), queue)
    assert len(h.act(saigon(FRI, 16, 31))) == 2
    h.restart()  # down from Friday evening to Wednesday noon
    unseen = chat(h, saigon(MON, 8), queue)
    answered = chat(h, saigon(MON, 8), queue)
    answer(h, saigon(MON, 9), answered)
    h.restart()
    back = saigon(WED, 12)
    decisions = h.act(back)
    per = Counter((d.subject_id, d.metric, d.event) for d in decisions)
    assert set(per.values()) == {1}
    for conversation in (seen, unseen):
        for metric in ("first_response", "resolution"):
            assert per[conversation, metric, "Warned"] == per[conversation, metric, "Breached"] == 1
    assert per[answered, "first_response", "Met"] == 1
    assert per[answered, "first_response", "Warned"] == 0
    assert per[answered, "resolution", "Breached"] == 1
    breached = h.recorded(SlaClock.Breached)
    assert len(breached) == 5 and all(e.at == back for e in breached)
    fr = SlaClock.create_id(TENANT, "conversation", seen, "first_response")
    assert (fr, saigon(MON, 11, 30)) in {(e.originator_id, e.due) for e in breached}
    assert h.state(seen)["first_response"]["status"] == "breached"
    # Before its events are back, and after: nothing fires twice.
    assert h.act(back, catch=False) == []
    assert h.act(back + timedelta(hours=1)) == []
    assert len(h.recorded(SlaClock.Breached)) == 5
    assert len(h.recorded(SlaClock.Warned)) == 5


def test_conversation_clocks_keep_within_their_tenant(h: Harness) -> None:
    other_policy = h.setup(OTHER, "0912345679")
    ours = chat(h, saigon(MON, 9), chat_queue(h, h.policy))
    # Their queue naming our policy, and their conversation in our queue: no clock.
    theirs = chat(h, saigon(MON, 9), chat_queue(h, h.policy, OTHER), OTHER)
    intruder = chat(h, saigon(MON, 9), chat_queue(h, h.policy), OTHER)
    # Nor does our queue naming their policy count for their conversation in it.
    crossed = chat(h, saigon(MON, 9), chat_queue(h, other_policy), OTHER)
    # Their own policy in their own queue counts for them alone.
    own = chat(h, saigon(MON, 9), chat_queue(h, other_policy, OTHER), OTHER)
    decisions = h.act(saigon(MON, 9, 1))
    assert {(d.tenant_id, d.subject_id) for d in decisions} == {(TENANT, ours), (OTHER, own)}
    assert h.state(theirs, OTHER) == h.state(intruder, OTHER) == h.state(crossed, OTHER) == {}
    assert h.state(ours, OTHER) == {} and h.state(own) == {}
    assert set(h.state(ours)) == set(h.state(own, OTHER)) == {"first_response", "resolution"}


def test_a_rebuild_with_conversations_gives_the_same_tables(h: Harness) -> None:
    queue, triage = chat_queue(h, h.policy), chat_queue(h, None)
    ticket = h.raise_ticket(saigon(FRI, 16, 30))
    answered = chat(h, saigon(FRI, 16, 30), queue)
    h.act(saigon(FRI, 16, 31))
    answer(h, saigon(MON, 9), answered)
    h.at(saigon(MON, 9, 30)).conversations.set_pending(TENANT, answered)
    moved = chat(h, saigon(MON, 9), triage)
    h.at(saigon(MON, 10)).conversations.move_to_queue(TENANT, moved, queue)
    h.act(saigon(MON, 10))
    h.at(saigon(MON, 11)).conversations.resolve(TENANT, answered)
    h.at(saigon(MON, 12)).queues.set_sla_policy(TENANT, queue, None)
    h.act(saigon(WED, 12))
    catch_up(h.timers, h.apps)
    assert h.state(moved)["first_response"]["status"] == "stopped"
    rebuilt = SlaTimers(h.path.with_name("rebuilt.sqlite"))
    catch_up(rebuilt, {n: h.apps[n] for n in reversed(SlaTimers.upstreams)})
    assert compare(h.timers.connect(), rebuilt.connect()) == []
    for subject in (ticket, answered, moved):
        assert rebuilt.state(TENANT, subject) == h.timers.state(TENANT, subject) != {}
    rebuilt.connect().close()


def test_an_act_that_failed_between_a_conversations_two_starts_is_completed(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = chat(h, saigon(MON, 9), chat_queue(h, h.policy))
    start, calls = h.clocks.start, []

    def failing_second(*args: Any) -> Any:
        calls.append(args)
        if len(calls) == 2:
            raise ConnectionError("the event store went away")
        return start(*args)

    monkeypatch.setattr(h.clocks, "start", failing_second)
    with pytest.raises(ConnectionError):
        h.act(saigon(MON, 9))
    monkeypatch.setattr(h.clocks, "start", start)
    assert kinds(h.act(saigon(MON, 9, 1))) == {("resolution", "Started"): 1}
    assert set(h.state(conversation)) == {"first_response", "resolution"}


# History does not depend on when the manager acted


# What a clock event says, without what may differ between two runs of the same facts:
# ids, and the time a warning or a breach was noticed (the time it was due stays).
_RUN_SPECIFIC = {
    "originator_id",
    "originator_version",
    "timestamp",
    "tenant_id",
    "subject_id",
    "policy_id",
    "terms_key",
}


def clock_history(h: Harness, kind: str, subject: UUID) -> dict[str, list[tuple[str, Any]]]:
    """The events of the subject's clocks, by metric, in order."""
    metric_of = {
        SlaClock.create_id(TENANT, kind, subject, m): m for m in ("first_response", "resolution")
    }
    history: dict[str, list[tuple[str, Any]]] = {m: [] for m in metric_of.values()}
    for n in h.clocks.recorder.select_notifications(1, 10_000):
        e = h.clocks.mapper.to_domain_event(n)
        if e.originator_id not in metric_of:
            continue
        said = {k: v for k, v in vars(e).items() if k not in _RUN_SPECIFIC}
        if isinstance(e, SlaClock.Warned | SlaClock.Breached):
            del said["at"]  # noticed then
        history[metric_of[e.originator_id]].append((type(e).__name__, said))
    return history


def twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, story: Any
) -> tuple[dict[str, list[tuple[str, Any]]], dict[str, list[tuple[str, Any]]]]:
    """The clock history `story(h, act_between)` gives with and without an act between."""
    runs = []
    for act_between in (True, False):
        h = Harness(tmp_path / f"between-{act_between}.sqlite", monkeypatch)
        kind, subject = story(h, act_between)
        runs.append(clock_history(h, kind, subject))
        h.timers.connect().close()
    return runs[0], runs[1]


def events(history: dict[str, list[tuple[str, Any]]]) -> dict[str, list[str]]:
    return {metric: [name for name, _ in said] for metric, said in history.items()}


def at(history: dict[str, list[tuple[str, Any]]], metric: str, event: str) -> Any:
    [said] = [said for name, said in history[metric] if name == event]
    return said["at"]


@pytest.mark.parametrize("then", ["priority changed", "policy set again"])
def test_a_removed_policy_stops_the_clocks_when_it_was_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    def story(h: Harness, act_between: bool) -> tuple[str, UUID]:
        ticket = h.raise_ticket(saigon(MON, 9))  # first response due 13:00, warned at 12:00
        h.act(saigon(MON, 9))
        h.at(saigon(MON, 10)).tickets.set_sla_policy(TENANT, ticket, None)
        if act_between:
            h.act(saigon(MON, 10, 1))
        if then == "priority changed":
            h.at(saigon(MON, 15)).tickets.change_priority(TENANT, ticket, Priority.HIGH)
        else:  # the clocks are the ticket's for good: they do not start again
            h.at(saigon(MON, 15)).tickets.set_sla_policy(TENANT, ticket, h.policy)
        h.act(saigon(MON, 15, 30))
        return "ticket", ticket

    live, late = twice(tmp_path, monkeypatch, story)
    assert late == live
    # Stopped at 10:00, when the policy went: no warning, no breach of a 13:00 deadline.
    assert events(late) == {m: ["Started", "Stopped"] for m in ("first_response", "resolution")}
    assert at(late, "first_response", "Stopped") == saigon(MON, 10)
    assert at(late, "resolution", "Stopped") == saigon(MON, 10)


@pytest.mark.parametrize("then", ["given a policy", "given one, then cleared"])
def test_a_move_to_a_queue_without_policy_stops_the_clocks_when_it_was_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    def story(h: Harness, act_between: bool) -> tuple[str, UUID]:
        support, triage = chat_queue(h, h.policy), chat_queue(h, None)
        conversation = chat(h, saigon(MON, 9), support)  # first response due 13:00
        h.act(saigon(MON, 9))
        h.at(saigon(MON, 10)).conversations.move_to_queue(TENANT, conversation, triage)
        if act_between:
            h.act(saigon(MON, 10, 1))
        # What the queue it went to gets later changes nothing of what happened at 10:00.
        h.at(saigon(MON, 12)).queues.set_sla_policy(TENANT, triage, h.policy)
        if then == "given one, then cleared":
            h.at(saigon(MON, 15)).queues.set_sla_policy(TENANT, triage, None)
        h.act(saigon(MON, 15, 30))
        return "conversation", conversation

    live, late = twice(tmp_path, monkeypatch, story)
    assert late == live
    assert events(late) == {m: ["Started", "Stopped"] for m in ("first_response", "resolution")}
    assert at(late, "first_response", "Stopped") == saigon(MON, 10)


def test_a_ticket_is_retargeted_when_its_priority_changed_not_at_a_later_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def story(h: Harness, act_between: bool) -> tuple[str, UUID]:
        h.policies.set_targets(TENANT, h.policy, Priority.URGENT, None, 2 * HOUR, 8 * HOUR)
        ticket = h.raise_ticket(saigon(MON, 9))
        h.act(saigon(MON, 9))
        h.at(saigon(MON, 10)).tickets.change_priority(TENANT, ticket, Priority.URGENT)
        if act_between:
            h.act(saigon(MON, 10, 1))
        # Linked to a conversation the manager does not know: the terms stay as they are.
        h.at(saigon(MON, 10, 15)).tickets.link_conversation(TENANT, ticket, uuid4())
        h.act(saigon(MON, 10, 20))  # before the warning, at 10:30
        return "ticket", ticket

    live, late = twice(tmp_path, monkeypatch, story)
    assert late == live
    assert events(late)["first_response"] == ["Started", "Retargeted"]
    assert at(late, "first_response", "Retargeted") == saigon(MON, 10)


def test_a_conversation_is_retargeted_when_its_policy_changed_not_at_a_later_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def story(h: Harness, act_between: bool) -> tuple[str, UUID]:
        support, overflow = chat_queue(h, h.policy), chat_queue(h, h.policy)
        conversation = chat(h, saigon(MON, 9), support)
        h.act(saigon(MON, 9))
        h.at(saigon(MON, 10)).policies.set_default(TENANT, h.policy, 2 * HOUR, 8 * HOUR)
        if act_between:
            h.act(saigon(MON, 10, 1))
        # Another queue with the same policy: nothing changes for the clocks.
        h.at(saigon(MON, 10, 15)).conversations.move_to_queue(TENANT, conversation, overflow)
        h.act(saigon(MON, 10, 20))  # before the warning, at 10:30
        return "conversation", conversation

    live, late = twice(tmp_path, monkeypatch, story)
    assert late == live
    assert events(late)["first_response"] == ["Started", "Retargeted"]
    assert at(late, "first_response", "Retargeted") == saigon(MON, 10)


# What an act looks at


def test_an_act_does_not_look_at_finished_work_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = chat_queue(h, h.policy)
    tickets = [h.raise_ticket(saigon(MON, 9)) for _ in range(20)]
    chats = [chat(h, saigon(MON, 9), queue) for _ in range(20)]
    h.act(saigon(MON, 9))
    h.at(saigon(MON, 10))
    for ticket in tickets:
        h.tickets.change_status(TENANT, ticket, "resolved")
    for conversation in chats:
        h.conversations.resolve(TENANT, conversation)
    assert len(h.act(saigon(MON, 10))) == 80  # each clock met or stopped
    h.act(saigon(MON, 10, 1))  # their events are back

    def looked_at() -> list[UUID]:
        """The subjects the next act looks at (reads the clocks of)."""
        looked: list[UUID] = []
        clocks_of = h.timers._clocks_of

        def spy(db: Any, tenant_id: str, kind: Any, subject_id: UUID) -> Any:
            looked.append(subject_id)
            return clocks_of(db, tenant_id, kind, subject_id)

        monkeypatch.setattr(h.timers, "_clocks_of", spy)
        return looked

    looked = looked_at()
    fresh = h.raise_ticket(saigon(MON, 11))
    assert len(h.act(saigon(MON, 11))) == 2
    assert looked == [fresh]
    looked.clear()
    h.act(saigon(MON, 11, 1))  # the fresh clocks' events came back: looked at once more
    assert looked == [fresh]
    looked.clear()
    assert h.act(saigon(MON, 11, 2)) == []
    assert looked == []
    # After a restart the first act looks at every subject not finished, only those.
    h.restart()
    looked = looked_at()
    assert h.act(saigon(MON, 11, 3)) == []
    assert looked == [fresh]


def test_what_an_upstream_behind_held_back_is_acted_on_when_it_comes(h: Harness) -> None:
    def catch_up_without(*behind: str) -> None:
        for name in SlaTimers.upstreams:
            app = h.apps[name]
            if name not in behind:
                for n in app.recorder.select_notifications(h.timers.position(name) + 1, 10_000):
                    h.timers.apply(n.id, app.mapper.to_domain_event(n), name)

    h.policies.set_targets(TENANT, h.policy, None, Channel.CALL, HOUR, 8 * HOUR)
    h.act(saigon(MON, 8))
    # A policy that comes after the ticket naming it.
    policy = h.policies.create(TENANT, "Fast", 2 * HOUR, 8 * HOUR)
    ticket = h.raise_ticket(saigon(MON, 9), policy=policy)
    # A conversation that comes after the ticket it is linked to.
    call = h.conversations.start(TENANT, Channel.CALL, CUSTOMER, at=saigon(MON, 9))
    linked = h.raise_ticket(saigon(MON, 9), conversation_ids=[call])
    # A queue that comes after the conversation started in it.
    queue = chat_queue(h, h.policy)
    conversation = chat(h, saigon(MON, 9), queue)
    catch_up_without("sla_policies", "conversations", "queues")
    assert {d.subject_id for d in h.act(saigon(MON, 9, 1), catch=False)} == {linked}
    assert h.due(linked) == saigon(MON, 13)  # no channel known yet: the default
    decisions = h.act(saigon(MON, 9, 2))
    assert Counter((d.subject_id, d.event) for d in decisions) == {
        (ticket, "Started"): 2,
        (conversation, "Started"): 2,
        (linked, "Retargeted"): 2,
    }
    assert h.due(ticket) == saigon(MON, 11)
    assert h.due(linked) == saigon(MON, 10)  # the call's row, from when it was linked
    assert h.due(conversation) == saigon(MON, 13)
