"""The timeline read model (CT12): every channel's history of a customer in one list,
merges followed, calls found by the customer's number, the same tables in any order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from streams import EventClock, feed, reversed_streams, round_robin

from domain.apps import DomainApps
from domain.call_legs import LegSpec
from domain.vocabulary import EndpointKind
from projections.rebuild import compare
from projections.replay import catch_up
from projections.timeline import TimelineReadModel

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
HOTLINE = "1900 1234"
AGENT = uuid4()


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def clock(event_clock: Callable[[datetime], EventClock]) -> EventClock:
    return event_clock(T0)


@pytest.fixture
def apps() -> Iterator[DomainApps]:
    apps = DomainApps.build()
    yield apps
    apps.close()


def timeline(apps: DomainApps, tmp_path: Path, name: str = "timeline") -> TimelineReadModel:
    model = TimelineReadModel(tmp_path / f"{name}.sqlite")
    catch_up(model, apps)
    return model


def kinds(entries: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in entries]


def call(
    apps: DomainApps,
    ref: str,
    number: str,
    start: float,
    answer: float | None,
    end: float,
    tenant: str = "acme",
) -> UUID:
    """An inbound call from `number`, answered by AGENT at `answer` (None: it is not)."""
    calls = apps.calls
    call_id = calls.start_inbound(tenant, ref, HOTLINE, LegSpec.customer("c", number), t(start))
    if answer is None:
        calls.hang_up(tenant, call_id, "c", "normal_clearing", t(end))
        return call_id
    calls.ring_agent(
        tenant, call_id, LegSpec.agent("a", AGENT, EndpointKind.WEBRTC, "1001"), t(start)
    )
    calls.answer(tenant, call_id, "a", t(answer))
    calls.hang_up(tenant, call_id, "c", "normal_clearing", t(end))
    return call_id


def chat(apps: DomainApps, customer: UUID, start: float, tenant: str = "acme") -> UUID:
    """A chat with one message in (at `start`) and one agent reply 10 s later."""
    conversations = apps.conversations
    cid = conversations.start(tenant, "chat", customer, at=t(start))
    conversations.receive_message(tenant, cid, f"in-{cid}", "Xin chào", at=t(start))
    conversations.send_message(tenant, cid, f"out-{cid}", AGENT, "Chào anh", at=t(start + 10))
    return cid


def test_a_customers_history_on_every_channel_is_one_list_newest_first(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    an = apps.customers.register("acme", "Nguyễn Văn An", [("phone", "0901 234 567")])
    conversation = chat(apps, an, 0)
    clock.at(25)
    apps.conversations.add_note("acme", conversation, AGENT, "wants a refund")
    answered = call(apps, "sw-1", "84901234567", 30, 35, 95)  # as the carrier writes it
    missed = call(apps, "sw-2", "+84 90 123 4567", 200, None, 212)
    clock.at(300)
    ticket = apps.tickets.raise_ticket("acme", "Refund", kind="complaint", customer_id=an)
    clock.at(400)
    apps.tickets.comment("acme", ticket, AGENT, "refund sent", public=True)
    clock.at(500)
    apps.tickets.change_status("acme", ticket, "resolved")
    call(apps, "sw-3", "0909999999", 600, 601, 700)  # somebody else

    entries = timeline(apps, tmp_path).for_customer("acme", str(an))

    assert kinds(entries) == [
        "ticket_solved",
        "ticket_comment",
        "ticket_raised",
        "call",
        "call",
        "note",
        "message_out",
        "message_in",
    ]
    solved, comment, _, unanswered, talked, note, out, inbound = entries
    assert solved["text"] == "Refund" and solved["source_id"] == str(ticket)
    assert comment["public"] is True and comment["text"] == "refund sent"
    assert (talked["source_id"], talked["outcome"], talked["duration_seconds"]) == (
        str(answered),
        "answered",
        60.0,
    )
    assert talked["agent_id"] == str(AGENT) and talked["customer_number"] == "+84901234567"
    assert (unanswered["source_id"], unanswered["outcome"]) == (str(missed), "abandoned")
    assert unanswered["duration_seconds"] == 0
    assert note["text"] == "wants a refund" and note["at"] == t(25).isoformat(
        timespec="microseconds"
    )
    assert (out["direction"], out["channel"], out["agent_id"]) == ("outbound", "chat", str(AGENT))
    assert (inbound["direction"], inbound["text"]) == ("inbound", "Xin chào")


def test_an_outbound_call_names_the_agent_who_placed_it(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    an = apps.customers.register("acme", "An", [("phone", "0901234567")])
    placed = apps.calls.start_outbound(
        "acme",
        "sw-1",
        HOTLINE,
        LegSpec.agent("a", AGENT, EndpointKind.WEBRTC, "1001"),
        LegSpec.customer("c", "0901 234 567"),
        t(0),
    )
    apps.calls.answer("acme", placed, "c", t(12))
    apps.calls.hang_up("acme", placed, "a", "normal_clearing", t(42))

    [entry] = timeline(apps, tmp_path).for_customer("acme", str(an))

    assert (entry["source_id"], entry["direction"], entry["agent_id"]) == (
        str(placed),
        "outbound",
        str(AGENT),
    )
    assert (entry["outcome"], entry["duration_seconds"]) == ("answered", 30)


def test_pages_follow_each_other_without_gaps_or_repeats(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    an = apps.customers.register("acme", "An", [("phone", "0901234567")])
    for i in range(3):
        chat(apps, an, i * 100)
        call(apps, f"sw-{i}", "0901234567", i * 100 + 50, None, i * 100 + 60)
    # Two messages of the same instant: the key orders them.
    same = apps.conversations.start("acme", "sms", an, at=t(1000))
    for n in range(2):
        apps.conversations.receive_message("acme", same, f"sms-{n}", f"part {n}", at=t(1000))
    model = timeline(apps, tmp_path)

    whole = model.for_customer("acme", str(an))
    pages: list[dict[str, Any]] = []
    before = None
    while page := model.for_customer("acme", str(an), limit=4, before=before):
        pages += page
        before = page[-1]["cursor"]

    assert len(whole) == 11
    assert pages == whole
    assert [e["at"] for e in whole] == sorted((e["at"] for e in whole), reverse=True)
    assert kinds(model.for_customer("acme", str(an), before=t(60))) == [
        "call",
        "message_out",
        "message_in",
    ]


def test_a_merged_customers_timeline_holds_both_histories(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    an = apps.customers.register("acme", "An", [("phone", "0901234567")])
    duplicate = apps.customers.register("acme", "An N.", [("phone", "0912000000")])
    third = apps.customers.register("acme", "Nguyen An", [("email", "an@example.vn")])
    chat(apps, an, 0)
    chat(apps, duplicate, 100)
    call(apps, "sw-1", "0912000000", 200, 201, 230)  # the duplicate's own number
    clock.at(300)
    apps.tickets.raise_ticket("acme", "Question", kind="question", customer_id=third)
    apps.customers.merge("acme", duplicate, third)
    apps.customers.merge("acme", third, an)  # the duplicate is redirected to An
    model = timeline(apps, tmp_path)

    entries = model.for_customer("acme", str(an))

    assert kinds(entries) == ["ticket_raised", "call", "message_out", "message_in"] + [
        "message_out",
        "message_in",
    ]
    assert {e["customer_id"] for e in entries} == {str(an), str(duplicate), str(third)}
    # Following an old link to a merged customer shows the survivor's timeline.
    assert model.for_customer("acme", str(duplicate)) == entries


def test_calls_belong_to_whoever_has_the_number_when_the_timeline_is_read(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    call(apps, "sw-1", "0901234567", 0, 5, 65)  # before anybody had the number
    an = apps.customers.register("acme", "An", [("email", "an@example.vn")])
    other = apps.customers.register("acme", "Bình", [("phone", "0901234567")])
    model = timeline(apps, tmp_path)
    assert kinds(model.for_customer("acme", str(other))) == ["call"]
    assert model.for_customer("acme", str(an)) == []

    apps.customers.remove_identity("acme", other, "phone", "0901234567")
    apps.customers.add_identity("acme", an, "phone", "+84 901 234 567")
    catch_up(model, apps)

    assert kinds(model.for_customer("acme", str(an))) == ["call"]
    assert model.for_customer("acme", str(other)) == []


def test_a_ticket_moves_to_the_customer_it_is_changed_to(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    an = apps.customers.register("acme", "An")
    binh = apps.customers.register("acme", "Bình")
    ticket = apps.tickets.raise_ticket("acme", "Wrong person", kind="request", customer_id=an)
    apps.tickets.change_customer("acme", ticket, binh)
    model = timeline(apps, tmp_path)

    assert model.for_customer("acme", str(an)) == []
    assert kinds(model.for_customer("acme", str(binh))) == ["ticket_raised"]


def test_a_tenant_sees_only_its_own_entries(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    an = apps.customers.register("acme", "An", [("phone", "0901234567")])
    twin = apps.customers.register("globex", "An", [("phone", "0901234567")])
    chat(apps, an, 0)
    chat(apps, twin, 10, tenant="globex")
    call(apps, "sw-1", "0901234567", 20, None, 30, tenant="globex")
    apps.tickets.raise_ticket("globex", "Theirs", kind="question", customer_id=twin)
    model = timeline(apps, tmp_path)

    assert kinds(model.for_customer("acme", str(an))) == ["message_out", "message_in"]
    assert model.for_customer("globex", str(an)) == []
    assert model.for_customer("acme", str(twin)) == []
    assert len(model.for_customer("globex", str(twin))) == 4


def scenario(apps: DomainApps, clock: EventClock) -> None:
    """A bit of everything, with entries whose customer arrives on another stream."""
    call(apps, "sw-0", "0912000000", 0, 3, 40)
    an = apps.customers.register("acme", "An", [("phone", "0901234567")])
    duplicate = apps.customers.register("acme", "An N.", [("phone", "0912000000")])
    chat(apps, duplicate, 50)
    clock.at(65)
    ticket = apps.tickets.raise_ticket("acme", "Refund", kind="complaint", customer_id=duplicate)
    apps.customers.merge("acme", duplicate, an)
    apps.tickets.change_customer("acme", ticket, an)
    clock.at(120)
    apps.tickets.change_status("acme", ticket, "resolved")
    clock.at(130)
    apps.tickets.change_status("acme", ticket, "open")
    call(apps, "sw-1", "0901234567", 100, None, 110)


def test_any_interleaving_of_the_streams_gives_the_same_tables(
    apps: DomainApps, clock: EventClock, tmp_path: Path
) -> None:
    scenario(apps, clock)
    models = [TimelineReadModel(tmp_path / f"{i}.sqlite") for i in range(3)]
    catch_up(models[0], apps)
    feed(models[1], apps, reversed_streams)
    feed(models[2], apps, round_robin)

    assert compare(models[0].connect(), models[1].connect()) == []
    assert compare(models[0].connect(), models[2].connect()) == []
    assert models[0].connect().execute("SELECT count(*) FROM conversation_entries").fetchone()[0]
    an = models[0].connect().execute("SELECT merged_into FROM merges").fetchone()[0]
    assert kinds(models[2].for_customer("acme", an)) == [
        "ticket_reopened",
        "ticket_solved",
        "call",
        "ticket_raised",
        "message_out",
        "message_in",
        "call",
    ]
