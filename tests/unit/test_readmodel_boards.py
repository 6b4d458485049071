"""The agent board (CC16), agent productivity (CC18) and the queue board (CC17), fed by the
real domain applications, the same tables in any interleaving of their streams."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from streams import EventClock, feed, reversed_streams, round_robin

from domain.apps import DomainApps
from domain.call_legs import LegSpec
from domain.vocabulary import EndpointKind, Package, Role
from projections.boards import AgentBoardReadModel, QueueBoardReadModel
from projections.readmodel import SqliteReadModel
from projections.rebuild import compare
from projections.replay import catch_up

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DAY = T0.date()
HOTLINE = "1900 1234"


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return t(seconds).isoformat(timespec="microseconds")


@pytest.fixture
def clock(event_clock: Callable[[datetime], EventClock]) -> EventClock:
    return event_clock(T0)


@pytest.fixture
def apps() -> Iterator[DomainApps]:
    apps = DomainApps.build()
    yield apps
    apps.close()


def new_agent(apps: DomainApps, name: str, tenant: str = "acme", role: Role = Role.AGENT) -> UUID:
    agent = apps.agents.create_user(
        tenant, name, f"{name}@{tenant}.vn", role, package=Package.CONTACT_CENTER
    )
    apps.agents.add_endpoint(tenant, agent, EndpointKind.WEBRTC)
    return agent


def agent_leg(leg_id: str, agent: UUID) -> LegSpec:
    return LegSpec.agent(leg_id, agent, EndpointKind.WEBRTC, "1001")


def inbound(apps: DomainApps, ref: str, at: float, tenant: str = "acme") -> UUID:
    customer = LegSpec.customer("c", "0901234567")
    return apps.calls.start_inbound(tenant, ref, HOTLINE, customer, t(at))


def by_id(rows: list[dict[str, Any]], key: str = "id") -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in rows}


# --------------------------------------------------------------------- agent board
def agent_day(apps: DomainApps, clock: EventClock) -> dict[str, UUID]:
    """An handles a call (ring, talk 60 s, wrap up 30 s) then lunches; Bình is rung now."""
    an, binh = new_agent(apps, "An"), new_agent(apps, "Bình")
    admin = apps.agents.create_user(
        "acme", "Admin", "admin@acme.vn", Role.TENANT_ADMIN, package=Package.CONTACT_CENTER
    )
    agents, calls = apps.agents, apps.calls
    agents.go_available("acme", an)
    agents.go_available("acme", binh)
    call = inbound(apps, "sw-1", 10)
    calls.ring_agent("acme", call, agent_leg("a", an), t(10))
    clock.at(10)
    agents.offer("acme", an, call)
    calls.answer("acme", call, "a", t(15))
    clock.at(15)
    agents.answer("acme", an, call)
    calls.hang_up("acme", call, "c", "normal_clearing", t(75))
    clock.at(75)
    agents.end_interaction("acme", an, call, wrap_up=True)
    clock.at(105)
    agents.finish_wrap_up("acme", an)
    clock.at(200)
    agents.take_break("acme", an, "lunch")
    # Bình: rung for a call now, with an open chat and a closed one assigned.
    ringing = inbound(apps, "sw-2", 250)
    calls.ring_agent("acme", ringing, agent_leg("b", binh), t(251))
    chat = apps.conversations.start("acme", "chat", UUID(int=1), at=t(0))
    apps.conversations.assign("acme", chat, binh)
    done = apps.conversations.start("acme", "email", UUID(int=2), at=t(0))
    apps.conversations.assign("acme", done, binh)
    apps.conversations.close_conversation("acme", done)
    return {"an": an, "binh": binh, "admin": admin, "call": call, "ringing": ringing, "chat": chat}


def test_the_board_shows_each_agents_presence_since_when_and_current_work(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    ids = agent_day(apps, clock)
    model = AgentBoardReadModel(tmp_path / "agents.sqlite")
    catch_up(model, apps)

    board = model.board("acme")

    assert [a["name"] for a in board] == ["An", "Bình"]  # the admin takes no calls
    an, binh = board
    assert (an["presence"], an["since"], an["break_reason"]) == ("break", iso(200), "lunch")
    assert an["calls"] == [] and an["conversations"] == []
    assert binh["presence"] == "available"
    assert binh["calls"] == [
        {"call_id": str(ids["ringing"]), "leg_id": "b", "state": "ringing", "since": iso(251)}
    ]
    assert binh["conversations"] == [{"id": str(ids["chat"]), "channel": "chat", "status": "open"}]


def test_the_board_shows_the_call_an_agent_is_on(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    an = new_agent(apps, "An")
    apps.agents.go_available("acme", an)
    call = inbound(apps, "sw-1", 0)
    apps.calls.ring_agent("acme", call, agent_leg("a", an), t(1))
    apps.calls.answer("acme", call, "a", t(4))
    clock.at(4)
    apps.agents.start_interaction("acme", an, call)
    model = AgentBoardReadModel(tmp_path / "agents.sqlite")
    catch_up(model, apps)

    shown = model.agent("acme", str(an))

    assert shown is not None
    assert (shown["presence"], shown["since"], shown["conversation_id"]) == (
        "on_call",
        iso(4),
        str(call),
    )
    assert shown["calls"] == [
        {"call_id": str(call), "leg_id": "a", "state": "talking", "since": iso(4)}
    ]
    assert ("acme", "agent", str(an)) in {
        (c.tenant_id, c.kind, c.key) for c in model.take_changes()
    }


def test_an_agent_who_places_a_call_talks_once_the_customer_answers(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    an = new_agent(apps, "An")
    customer = LegSpec.customer("c", "0901234567")
    call = apps.calls.start_outbound("acme", "sw-1", HOTLINE, agent_leg("a", an), customer, t(0))
    model = AgentBoardReadModel(tmp_path / "agents.sqlite")
    catch_up(model, apps)
    shown = model.agent("acme", str(an))
    assert shown is not None and shown["calls"][0]["state"] == "ringing"

    apps.calls.answer("acme", call, "c", t(9))
    catch_up(model, apps)
    shown = model.agent("acme", str(an))
    assert shown is not None and shown["calls"][0] == {
        "call_id": str(call),
        "leg_id": "a",
        "state": "talking",
        "since": iso(9),
    }

    apps.calls.hang_up("acme", call, "c", "normal_clearing", t(69))
    catch_up(model, apps)
    [day] = model.productivity("acme", DAY)
    assert (day["calls_connected"], day["call_seconds"]) == (1, 60)
    assert model.board("acme")[0]["calls"] == []


def test_productivity_counts_handled_talk_wrap_up_and_occupancy_per_day(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    ids = agent_day(apps, clock)
    model = AgentBoardReadModel(tmp_path / "agents.sqlite")
    catch_up(model, apps)

    day = by_id(model.productivity("acme", DAY, now=t(300)), "agent_id")
    an = day[str(ids["an"])]

    assert set(day) == {str(ids["an"]), str(ids["binh"])}
    assert an["handled"] == 1
    assert (an["talk_seconds"], an["wrap_up_seconds"], an["break_seconds"]) == (60, 30, 100)
    assert an["logged_in_seconds"] == 300 - 0  # available from the start of the scenario
    assert an["occupancy"] == pytest.approx(90 / 300)
    assert (an["calls_connected"], an["call_seconds"]) == (1, 60)
    # Without `now`, the break still going on is not counted.
    an_so_far = by_id(model.productivity("acme", DAY), "agent_id")[str(ids["an"])]
    assert (an_so_far["break_seconds"], an_so_far["logged_in_seconds"]) == (0, 200)
    assert an_so_far["occupancy"] == pytest.approx(90 / 200)
    # The day before and the day after hold none of it.
    for other in (DAY - timedelta(days=1), DAY + timedelta(days=1)):
        quiet = by_id(model.productivity("acme", other), "agent_id")[str(ids["an"])]
        assert (quiet["handled"], quiet["logged_in_seconds"], quiet["occupancy"]) == (0, 0, None)


def test_a_shift_across_midnight_counts_on_each_day_in_the_tenants_time_zone(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    vietnam = timezone(timedelta(hours=7))
    an = new_agent(apps, "An")
    clock.now = datetime(2025, 3, 3, 22, 0, tzinfo=vietnam)
    apps.agents.go_available("acme", an)
    clock.now = datetime(2025, 3, 4, 1, 0, tzinfo=vietnam)
    apps.agents.go_offline("acme", an)
    model = AgentBoardReadModel(tmp_path / "agents.sqlite")
    catch_up(model, apps)

    def logged_in(day: date) -> float:
        [row] = model.productivity("acme", day, tz=vietnam)
        return float(row["logged_in_seconds"])

    assert (logged_in(date(2025, 3, 3)), logged_in(date(2025, 3, 4))) == (7200, 3600)
    [utc_day] = model.productivity("acme", date(2025, 3, 3))  # all of it is the 3rd in UTC
    assert utc_day["logged_in_seconds"] == 10800


def test_another_tenants_agents_are_not_on_the_board(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    ours, theirs = new_agent(apps, "An"), new_agent(apps, "Other", tenant="globex")
    apps.agents.go_available("globex", theirs)
    call = inbound(apps, "sw-1", 0, tenant="globex")
    apps.calls.ring_agent("globex", call, agent_leg("a", theirs), t(1))
    model = AgentBoardReadModel(tmp_path / "agents.sqlite")
    catch_up(model, apps)

    assert [a["id"] for a in model.board("acme")] == [str(ours)]
    assert model.agent("acme", str(theirs)) is None
    assert [r["agent_id"] for r in model.productivity("acme", DAY)] == [str(ours)]
    assert model.board("globex")[0]["calls"][0]["call_id"] == str(call)


# --------------------------------------------------------------------- queue board
def queue_day(apps: DomainApps, clock: EventClock) -> dict[str, UUID]:
    """Calls and chats through Sales and Support; three still wait in Sales."""
    queues, calls, conversations = apps.queues, apps.calls, apps.conversations
    sales, support = queues.create("acme", "Sales"), queues.create("acme", "Support")
    agent = UUID(int=7)
    answered = inbound(apps, "q-1", 0)
    calls.offer_to_queue("acme", answered, sales, t(0))
    calls.ring_agent("acme", answered, agent_leg("a", agent), t(5))
    calls.answer("acme", answered, "a", t(10))  # waited 10 s
    abandoned = inbound(apps, "q-2", 5)
    calls.offer_to_queue("acme", abandoned, sales, t(5))
    calls.hang_up("acme", abandoned, "c", "normal_clearing", t(65))
    overflow = inbound(apps, "q-3", 20)
    calls.offer_to_queue("acme", overflow, support, t(20))
    calls.offer_to_queue("acme", overflow, sales, t(50))
    calls.ring_agent("acme", overflow, agent_leg("a", agent), t(70))
    calls.answer("acme", overflow, "a", t(80))  # waited 30 s in Sales
    waiting = inbound(apps, "q-4", 100)
    calls.offer_to_queue("acme", waiting, sales, t(100))
    calls.answer("acme", waiting, "c", t(101))  # the IVR picked up: no answer
    calls.offer_to_queue("acme", inbound(apps, "q-5", 110), sales, t(110))
    chat = conversations.start("acme", "chat", UUID(int=1), queue_id=sales, at=t(0))
    clock.at(40)
    conversations.assign("acme", chat, agent)  # waited 40 s
    conversations.start("acme", "chat", UUID(int=2), queue_id=sales, at=t(90))
    return {"sales": sales, "support": support}


def test_the_queue_board_shows_waiting_now_and_how_the_periods_waits_ended(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    ids = queue_day(apps, clock)
    model = QueueBoardReadModel(tmp_path / "queues.sqlite")
    catch_up(model, apps)

    board = model.board("acme", service_level_seconds=20)

    assert [q["name"] for q in board] == ["Sales", "Support"]
    sales, support = board
    assert sales["id"] == str(ids["sales"])
    assert (sales["waiting"], sales["waiting_by_channel"]) == (3, {"call": 2, "chat": 1})
    assert sales["oldest_waiting_since"] == iso(90)
    assert (sales["answered"], sales["abandoned"], sales["overflowed"]) == (3, 1, 0)
    assert sales["average_wait_seconds"] == pytest.approx((10 + 30 + 40) / 3)
    assert sales["service_level"] == pytest.approx(1 / 4)  # only the 10 s wait within 20 s
    assert (support["overflowed"], support["answered"], support["waiting"]) == (1, 0, 0)
    assert support["service_level"] is None
    later = by_id(model.board("acme", since=t(60)))[str(ids["sales"])]
    assert (later["answered"], later["abandoned"], later["waiting"]) == (0, 0, 3)
    strict = by_id(model.board("acme", service_level_seconds=30))[str(ids["sales"])]
    assert strict["service_level"] == pytest.approx(2 / 4)


def test_a_conversation_waits_again_when_unassigned_or_reopened_in_its_queue(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    # As routing has it: a conversation waits while in a queue, unassigned and open.
    conversations, agent, other = apps.conversations, UUID(int=7), UUID(int=8)
    sales = apps.queues.create("acme", "Sales")
    model = QueueBoardReadModel(tmp_path / "queues.sqlite")

    def waiting() -> tuple[int, str | None]:
        catch_up(model, apps)
        [queue] = model.board("acme")
        return queue["waiting"], queue["oldest_waiting_since"]

    chat = conversations.start("acme", "chat", UUID(int=1), queue_id=sales, at=t(0))
    clock.at(10)
    conversations.assign("acme", chat, agent)
    clock.at(15)
    conversations.transfer("acme", chat, other)
    assert waiting() == (0, None)
    clock.at(30)
    conversations.unassign("acme", chat)  # the agent let go: back in Sales
    assert waiting() == (1, iso(30))
    clock.at(50)
    conversations.assign("acme", chat, agent)
    clock.at(60)
    conversations.resolve("acme", chat)
    clock.at(70)
    conversations.unassign("acme", chat)  # resolved: nothing to route
    assert waiting() == (0, None)
    clock.at(80)
    conversations.reopen("acme", chat)  # open, unassigned, still in Sales
    assert waiting() == (1, iso(80))
    clock.at(90)
    conversations.resolve("acme", chat)  # resolved while waiting: that stay ended
    assert waiting() == (0, None)
    clock.at(100)
    conversations.receive_message("acme", chat, "m-1", "still there?", at=t(100))
    assert waiting() == (1, iso(100))  # the customer's message reopened it
    clock.at(105)
    conversations.reopen("acme", chat)  # open already: no second stay
    assert waiting() == (1, iso(100))

    # Assigned while reopened: no stay; outside any queue: never a stay.
    assigned = conversations.start("acme", "chat", UUID(int=2), queue_id=sales, at=t(110))
    conversations.assign("acme", assigned, agent)
    conversations.set_pending("acme", assigned)
    conversations.reopen("acme", assigned)
    direct = conversations.start("acme", "chat", UUID(int=3), at=t(120))
    conversations.assign("acme", direct, agent)
    conversations.unassign("acme", direct)
    assert waiting() == (1, iso(100))

    stays = model.connect().execute(
        "SELECT entered_at, outcome, wait_seconds FROM conversation_waits WHERE item_id = ? "
        "ORDER BY version",
        (str(chat),),
    )
    assert [tuple(s) for s in stays] == [
        (iso(0), "answered", 10.0),
        (iso(30), "answered", 20.0),
        (iso(80), "ended", 10.0),
        (iso(100), "waiting", None),
    ]


def test_another_tenants_queues_and_calls_are_not_on_the_board(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    ours = apps.queues.create("acme", "Sales")
    theirs = apps.queues.create("globex", "Sales")
    apps.calls.offer_to_queue("globex", inbound(apps, "sw-1", 0, tenant="globex"), theirs, t(0))
    model = QueueBoardReadModel(tmp_path / "queues.sqlite")
    catch_up(model, apps)

    assert [(q["id"], q["waiting"]) for q in model.board("acme")] == [(str(ours), 0)]
    assert [(q["id"], q["waiting"]) for q in model.board("globex")] == [(str(theirs), 1)]


# --------------------------------------------------------------- order independence
@pytest.mark.parametrize("board", [AgentBoardReadModel, QueueBoardReadModel])
def test_any_interleaving_of_the_streams_gives_the_same_tables(
    apps: DomainApps, clock: EventClock, tmp_path: Path, board: type[SqliteReadModel]
) -> None:
    agent_day(apps, clock)
    queue_day(apps, clock)
    models = [board(tmp_path / f"{i}.sqlite") for i in range(3)]
    catch_up(models[0], apps)
    feed(models[1], apps, reversed_streams)
    feed(models[2], apps, round_robin)

    assert compare(models[0].connect(), models[1].connect()) == []
    assert compare(models[0].connect(), models[2].connect()) == []
    assert models[0].positions() == models[2].positions() and all(models[0].positions().values())
