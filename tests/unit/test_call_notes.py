"""Notes on a call (CC6): written by someone who was on it, during or after the call,
once per form; shown on the call and in the customer's timeline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from domain.apps import DomainApps
from domain.call_legs import LegSpec
from domain.calls import MAX_CALL_NOTE, InvalidCall, NotOnCall
from domain.vocabulary import EndpointKind
from projections.replay import catch_up
from projections.timeline import TimelineReadModel

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
AGENT, OTHER = uuid4(), uuid4()


@pytest.fixture
def apps() -> Iterator[DomainApps]:
    apps = DomainApps.build()
    yield apps
    apps.close()


def answered_call(apps: DomainApps, number: str = "0901234567") -> object:
    calls = apps.calls
    call_id = calls.start_inbound("acme", "r1", "1900 1234", LegSpec.customer("c", number), T0)
    calls.ring_agent("acme", call_id, LegSpec.agent("a", AGENT, EndpointKind.WEBRTC, "1001"), T0)
    calls.answer("acme", call_id, "a", T0 + timedelta(seconds=2))
    return call_id


def test_an_agent_on_the_call_writes_notes_during_and_after_it(apps: DomainApps) -> None:
    call_id = answered_call(apps)
    calls = apps.calls
    calls.add_note("acme", call_id, AGENT, "  Hỏi hoá đơn  ", T0 + timedelta(seconds=5), "k1")
    calls.add_note("acme", call_id, AGENT, "Hỏi hoá đơn", T0 + timedelta(seconds=6), "k1")
    calls.hang_up("acme", call_id, "c", "normal_clearing", T0 + timedelta(seconds=9))
    calls.add_note("acme", call_id, AGENT, "Gọi lại thứ hai", T0 + timedelta(seconds=30))
    notes = calls.get("acme", call_id)["notes"]
    assert [(n["body"], n["author_id"]) for n in notes] == [
        ("Hỏi hoá đơn", str(AGENT)),
        ("Gọi lại thứ hai", str(AGENT)),
    ]


def test_a_note_needs_text_and_someone_who_was_on_the_call(apps: DomainApps) -> None:
    call_id = answered_call(apps)
    with pytest.raises(NotOnCall):
        apps.calls.add_note("acme", call_id, OTHER, "Không phải cuộc của tôi", T0)
    with pytest.raises(InvalidCall):
        apps.calls.add_note("acme", call_id, AGENT, "   ", T0)
    with pytest.raises(InvalidCall):
        apps.calls.add_note("acme", call_id, AGENT, "x" * (MAX_CALL_NOTE + 1), T0)


def test_a_call_note_is_on_the_timeline_of_the_customer_with_that_number(
    apps: DomainApps, tmp_path: Path
) -> None:
    customer = apps.customers.register("acme", "Chị Hoa", [("phone", "0901 234 567")])
    stranger = apps.customers.register("acme", "Anh Ba", [("phone", "0909999999")])
    call_id = answered_call(apps)
    apps.calls.add_note("acme", call_id, AGENT, "Khách muốn đổi gói", T0 + timedelta(seconds=5))
    model = TimelineReadModel(tmp_path / "timeline.sqlite")
    catch_up(model, apps)
    entries = model.for_customer("acme", str(customer))
    assert [(e["kind"], e["text"]) for e in entries] == [
        ("call_note", "Khách muốn đổi gói"),
        ("call", None),
    ]
    assert entries[0]["source_id"] == str(call_id) and entries[0]["agent_id"] == str(AGENT)
    assert model.for_customer("acme", str(stranger)) == []
    assert model.for_customer("other", str(customer)) == []
