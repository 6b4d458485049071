"""The call log read model: outcomes, durations as billing sees them, filters, tenant walls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.apps import DomainApps
from domain.call_legs import LegSpec, SupervisionMode
from domain.vocabulary import EndpointKind
from projections.calllog import CallLogReadModel
from projections.rebuild import compare
from projections.replay import catch_up

A, B = "acme", "bravo"
HOTLINE, OTHER_HOTLINE = "1900555", "1800777"
AGENT_1, AGENT_2, SUPERVISOR = uuid4(), uuid4(), uuid4()
QUEUE, OVERFLOW, FLOW = uuid4(), uuid4(), uuid4()
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return t(seconds).isoformat(timespec="microseconds")


def agent(leg_id: str, agent_id: UUID) -> LegSpec:
    return LegSpec.agent(leg_id, agent_id, EndpointKind.WEBRTC, leg_id)


@pytest.fixture
def apps(transcoder_env: dict[str, str]) -> Iterator[DomainApps]:
    built = DomainApps.build(transcoder_env)
    yield built
    built.close()


@pytest.fixture
def model(tmp_path: Path) -> CallLogReadModel:
    return CallLogReadModel(tmp_path / "call_log.sqlite")


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


def switchboard(apps: DomainApps) -> dict[str, UUID]:
    """A day of tenant A's calls, one per outcome, and one of tenant B's with the same
    agents, numbers and queue, which must never show in A."""
    calls = apps.calls
    # Answered after an IVR and a queue, held, recorded, handed to agent 2.
    answered = calls.start_inbound(A, "sw-1", HOTLINE, LegSpec.customer("c", "0912345678"), t(0))
    calls.ivr_step(A, answered, FLOW, 1, "menu", "1", t(2))
    calls.offer_to_queue(A, answered, QUEUE, t(10))
    calls.ring_agent(A, answered, agent("a1", AGENT_1), t(20))
    calls.answer(A, answered, "a1", t(25))
    calls.start_recording(A, answered, "rec-1", t(26))
    calls.hold(A, answered, t(40))
    calls.resume(A, answered, t(50))
    calls.transfer_blind(A, answered, "a1", agent("a2", AGENT_2), t(60))
    calls.answer(A, answered, "a2", t(65))
    calls.hang_up(A, answered, "c", "normal_clearing", t(100))
    calls.stop_recording(A, answered, "rec-1", t(101))  # after the end: already stopped
    calls.store_recording(A, answered, "rec-1", "s3://rec-1.wav", 74.0, 1200, t(120), {"k": "v"})

    # The caller gave up in the queue while agent 1's phone rang.
    abandoned = calls.start_inbound(A, "sw-2", HOTLINE, LegSpec.customer("c", "0987654321"), t(200))
    calls.offer_to_queue(A, abandoned, QUEUE, t(205))
    calls.ring_agent(A, abandoned, agent("a1", AGENT_1), t(210))
    calls.hang_up(A, abandoned, "a1", "no_answer", t(225))
    calls.hang_up(A, abandoned, "c", "normal_clearing", t(230))

    # Closed hours: the PBX played a message and hung up.
    missed = calls.start_inbound(A, "sw-3", OTHER_HOTLINE, LegSpec.customer("c", "0911"), t(300))
    calls.end(A, missed, "closed_hours", t(310))

    # Agent 2 dialled out; nobody picked up.
    no_answer = calls.start_outbound(
        A, "sw-4", HOTLINE, agent("a2", AGENT_2), LegSpec.customer("c", "0900111222"), t(400)
    )
    calls.hang_up(A, no_answer, "a2", "cancel", t(420))

    # Agent 1 dialled out and talked.
    outbound = calls.start_outbound(
        A, "sw-5", HOTLINE, agent("a1", AGENT_1), LegSpec.customer("c", "0900333444"), t(500)
    )
    calls.answer(A, outbound, "c", t(505))
    calls.hang_up(A, outbound, "a1", "normal_clearing", t(565))

    # Agent 1 called agent 2, who did not answer.
    internal = calls.start_internal(A, "sw-6", agent("a1", AGENT_1), t(600))
    calls.ring_agent(A, internal, agent("a2", AGENT_2), t(601))
    calls.hang_up(A, internal, "a1", "cancel", t(615))

    other = calls.start_inbound(B, "sw-1", HOTLINE, LegSpec.customer("c", "0912345678"), t(50))
    calls.offer_to_queue(B, other, QUEUE, t(51))
    calls.ring_agent(B, other, agent("a1", AGENT_1), t(52))
    calls.answer(B, other, "a1", t(53))
    calls.start_recording(B, other, "rec-b", t(54))
    calls.hang_up(B, other, "c", "normal_clearing", t(90))
    return {
        "answered": answered,
        "abandoned": abandoned,
        "missed": missed,
        "no_answer": no_answer,
        "outbound": outbound,
        "internal": internal,
        "other": other,
    }


def test_one_row_per_call_newest_first_walled_by_tenant(
    apps: DomainApps, model: CallLogReadModel
) -> None:
    c = switchboard(apps)
    catch_up(model, apps)

    order = ("internal", "outbound", "no_answer", "missed", "abandoned", "answered")
    assert ids(model.list(A)) == [str(c[k]) for k in order]
    assert ids(model.list(B)) == [str(c["other"])]
    assert model.get(B, c["answered"]) is None
    assert model.get(A, c["other"]) is None
    outcomes = {
        "internal": "no_answer",
        "outbound": "answered",
        "no_answer": "no_answer",
        "missed": "missed",
        "abandoned": "abandoned",
        "answered": "answered",
    }
    assert [r["outcome"] for r in model.list(A)] == [outcomes[k] for k in order]


def test_an_answered_call_as_the_log_shows_it(apps: DomainApps, model: CallLogReadModel) -> None:
    c = switchboard(apps)
    catch_up(model, apps)

    call = model.get(A, c["answered"])
    assert call is not None
    assert call == {
        **call,
        "direction": "inbound",
        "hotline": HOTLINE,
        "customer_number": "0912345678",
        "queue_id": str(QUEUE),
        "queues": [str(QUEUE)],
        "agents": [str(AGENT_1), str(AGENT_2)],
        "outcome": "answered",
        "started_at": iso(0),
        "offered_at": iso(10),
        "answered_at": iso(25),
        "ended_at": iso(100),
        "wait_seconds": 15.0,
        "ring_seconds": 5.0,
        "hold_seconds": 10.0,
        "talk_seconds": 65.0,
        "duration_seconds": 100.0,
        "transfer_count": 1,
        "recording_count": 1,
        "end_cause": "normal_clearing",
        "ended_by_leg_id": "c",
    }
    assert [(leg["leg_id"], leg["party"], leg["end_cause"]) for leg in call["legs"]] == [
        ("c", "customer", "normal_clearing"),
        ("a1", "agent", "transferred"),
        ("a2", "agent", "normal_clearing"),
    ]
    assert call["recordings"] == [
        {
            "recording_id": "rec-1",
            "started_at": iso(26),
            "stopped_at": iso(100),
            "uri": "s3://rec-1.wav",
            "duration_seconds": 74.0,
            "size_bytes": 1200,
            "metadata": {"k": "v"},
        }
    ]
    assert call["version"] == apps.calls.get(A, c["answered"])["version"]


def test_durations_are_billings(apps: DomainApps, model: CallLogReadModel) -> None:
    c = switchboard(apps)
    catch_up(model, apps)

    for name, call_id in c.items():
        tenant = B if name == "other" else A
        usage = apps.calls.usage(tenant, call_id)
        row = model.get(tenant, call_id)
        assert row is not None
        seen = {k: row[k] for k in ("wait_seconds", "hold_seconds", "talk_seconds", "abandoned")}
        assert seen == {
            "wait_seconds": usage["wait_seconds"],
            "hold_seconds": usage["hold_seconds"],
            "talk_seconds": usage["talk_seconds"],
            "abandoned": usage["abandoned"],
        }, name
        assert row["ring_seconds"] == usage["ring_seconds"], name


def test_filters(apps: DomainApps, model: CallLogReadModel) -> None:
    c = switchboard(apps)
    catch_up(model, apps)

    def listed(**filters: Any) -> list[str]:
        by_id = {str(v): k for k, v in c.items()}
        return [by_id[i] for i in ids(model.list(A, **filters))]

    assert listed(direction="inbound") == ["missed", "abandoned", "answered"]
    assert listed(direction=["outbound", "internal"]) == ["internal", "outbound", "no_answer"]
    assert listed(outcome="abandoned") == ["abandoned"]
    assert listed(outcome=("missed", "no_answer")) == ["internal", "no_answer", "missed"]
    assert listed(agent_id=AGENT_1) == ["internal", "outbound", "abandoned", "answered"]
    assert listed(agent_id=AGENT_2) == ["internal", "no_answer", "answered"]
    assert listed(agent_id=SUPERVISOR) == []
    assert listed(queue_id=QUEUE) == ["abandoned", "answered"]
    assert listed(since=t(200), until=t(400)) == ["missed", "abandoned"]
    assert listed(since=t(600)) == ["internal"]
    assert listed(number="0987") == ["abandoned"]
    assert listed(number=OTHER_HOTLINE) == ["missed"]
    assert listed(number="%") == []
    assert listed(has_recording=True) == ["answered"]
    assert listed(direction="inbound", has_recording=False) == ["missed", "abandoned"]
    assert listed(limit=2, offset=1) == ["outbound", "no_answer"]
    assert ids(model.list(B, agent_id=AGENT_1, has_recording=True)) == [str(c["other"])]
    assert model.list(B, outcome="missed") == []


def test_a_live_call_then_its_end(apps: DomainApps, model: CallLogReadModel) -> None:
    calls = apps.calls
    call = calls.start_inbound(A, "sw-1", HOTLINE, LegSpec.customer("c", "0912"), t(0))
    calls.offer_to_queue(A, call, QUEUE, t(5))
    calls.offer_to_queue(A, call, OVERFLOW, t(35))
    calls.ring_agent(A, call, agent("a1", AGENT_1), t(40))
    calls.answer(A, call, "a1", t(42))
    supervisor = LegSpec.supervisor("s1", SUPERVISOR, EndpointKind.WEBRTC, "9")
    calls.supervise(A, call, supervisor, SupervisionMode.BARGE, t(50))
    calls.transfer_attended_begin(A, call, "a1", agent("a2", AGENT_2), t(60))
    calls.answer(A, call, "a2", t(62))
    calls.hold(A, call, t(63))
    catch_up(model, apps)

    live = model.get(A, call)
    assert live is not None
    assert (live["outcome"], live["ended_at"], live["talk_seconds"]) == ("in_progress", None, None)
    assert live["queues"] == [str(QUEUE), str(OVERFLOW)]
    assert live["queue_id"] == str(OVERFLOW)
    assert model.list(A, outcome="in_progress")[0]["id"] == str(call)
    assert ids(model.list(A, queue_id=QUEUE)) == [str(call)]
    model.take_changes()

    calls.transfer_attended_complete(A, call, t(70))
    calls.force_end(A, call, SUPERVISOR, t(90))
    catch_up(model, apps)
    assert {(ch.tenant_id, ch.kind, ch.key) for ch in model.take_changes()} == {
        (A, "call", str(call))
    }
    ended = model.get(A, call)
    assert ended is not None
    usage = apps.calls.usage(A, call)
    assert ended["outcome"] == "answered"
    assert ended["forced_by"] == str(SUPERVISOR)
    assert ended["end_cause"] == "forced_by_supervisor"
    assert ended["agents"] == [str(AGENT_1), str(AGENT_2)]
    assert (ended["wait_seconds"], ended["ring_seconds"]) == (37.0, 2.0)
    assert (ended["hold_seconds"], ended["talk_seconds"]) == (7.0, 41.0)
    assert (ended["hold_seconds"], ended["talk_seconds"]) == (
        usage["hold_seconds"],
        usage["talk_seconds"],
    )
    legs = {leg["leg_id"]: leg for leg in ended["legs"]}
    assert list(legs) == ["c", "a1", "s1", "a2"]
    assert legs["a1"]["end_cause"] == "transferred"
    assert legs["a2"]["answered_at"] == iso(62)


def test_a_consulted_agent_takes_the_call_only_if_the_transfer_completes(
    apps: DomainApps, model: CallLogReadModel
) -> None:
    calls = apps.calls
    call = calls.start_inbound(A, "sw-1", HOTLINE, LegSpec.customer("c", "0912"), t(0))
    calls.ring_agent(A, call, agent("a1", AGENT_1), t(5))
    calls.answer(A, call, "a1", t(6))
    # Agent 2 answers the consultation, then agent 1 cancels and keeps the customer.
    calls.transfer_attended_begin(A, call, "a1", agent("a2", AGENT_2), t(10))
    calls.answer(A, call, "a2", t(12))
    calls.transfer_attended_cancel(A, call, t(20))
    catch_up(model, apps)
    live = model.get(A, call)
    assert live is not None and live["agents"] == [str(AGENT_1)]
    # The leg is still in the log, and the agent filter (legs) still finds the call.
    assert [leg["leg_id"] for leg in live["legs"]] == ["c", "a1", "a2"]
    assert ids(model.list(A, agent_id=AGENT_2)) == [str(call)]

    # A second consultation, with agent 2's other leg, that completes: agent 2 takes it.
    calls.transfer_attended_begin(A, call, "a1", agent("a2b", AGENT_2), t(30))
    calls.answer(A, call, "a2b", t(32))
    catch_up(model, apps)
    consulting = model.get(A, call)
    assert consulting is not None and consulting["agents"] == [str(AGENT_1)]
    calls.transfer_attended_complete(A, call, t(40))
    calls.hang_up(A, call, "c", "normal_clearing", t(60))
    catch_up(model, apps)
    ended = model.get(A, call)
    assert ended is not None
    assert ended["agents"] == [str(AGENT_1), str(AGENT_2)]
    assert ended["transfer_count"] == 1


def test_applying_twice_changes_nothing_and_a_rebuild_is_identical(
    apps: DomainApps, model: CallLogReadModel, tmp_path: Path
) -> None:
    switchboard(apps)
    first = catch_up(model, apps)
    assert first > 0
    assert catch_up(model, apps) == 0

    rebuilt = CallLogReadModel(tmp_path / "rebuilt.sqlite")
    assert catch_up(rebuilt, apps) == first
    assert compare(model.connect(), rebuilt.connect()) == []


def test_recording_search_and_cdr_pages(apps: DomainApps, model: CallLogReadModel) -> None:
    c = switchboard(apps)
    catch_up(model, apps)

    found = model.recordings(A)
    assert [(r["call_id"], r["recording_id"]) for r in found] == [(str(c["answered"]), "rec-1")]
    # Every agent with a leg, as Call.agent_ids() has them.
    assert found[0]["agents"] == [str(a) for a in apps.calls.get(A, c["answered"])["agent_ids"]]
    assert (found[0]["call_ref"], found[0]["uri"]) == ("sw-1", "s3://rec-1.wav")
    assert model.recordings(A, agent_id=AGENT_2, number="0912")[0]["recording_id"] == "rec-1"
    assert model.recordings(A, since=t(27)) == []
    assert model.recordings(A, call_id=c["other"]) == []
    assert [r["recording_id"] for r in model.recordings(B)] == ["rec-b"]

    since, until = t(0), t(1000)
    records = model.cdr(A, since=since, until=until)
    # Ended calls in the order they ended; the outbound caller's agent is there too.
    assert [r["call_id"] for r in records] == [
        str(c[k]) for k in ("answered", "abandoned", "missed", "no_answer", "outbound", "internal")
    ]
    by_call = {r["call_id"]: r for r in records}
    outbound = by_call[str(c["outbound"])]
    assert (outbound["agents"], outbound["agent_endpoints"]) == ([str(AGENT_1)], ["webrtc"])
    assert (outbound["customer_endpoint"], outbound["on_net"]) == ("pstn", None)
    internal = by_call[str(c["internal"])]
    assert (internal["customer_endpoint"], internal["agents"]) == (
        None,
        [str(AGENT_1), str(AGENT_2)],
    )
    for name, call_id in c.items():
        if name != "other":
            usage = apps.calls.usage(A, call_id)
            row = by_call[str(call_id)]
            assert (row["talk_seconds"], row["wait_seconds"]) == (
                usage["talk_seconds"],
                usage["wait_seconds"],
            ), name

    paged: list[str] = []
    after = None
    while page := model.cdr(A, since=since, until=until, after=after, limit=4):
        paged += [r["call_id"] for r in page]
        after = (page[-1]["ended_at"], page[-1]["call_id"])
    assert paged == [r["call_id"] for r in records]
    assert [r["call_id"] for r in model.cdr(B, since=since, until=until)] == [str(c["other"])]


def test_on_net_is_kept_per_leg(apps: DomainApps, model: CallLogReadModel) -> None:
    calls = apps.calls
    call = calls.start_inbound(A, "sw-1", HOTLINE, LegSpec.customer("c", "0912", on_net=True), t(0))
    mobile = LegSpec.agent("a1", AGENT_1, EndpointKind.MOBILE, "0933", on_net=False)
    calls.ring_agent(A, call, mobile, t(5))
    calls.answer(A, call, "a1", t(6))
    calls.hang_up(A, call, "c", "normal_clearing", t(60))
    catch_up(model, apps)

    found = model.get(A, call)
    assert found is not None
    assert [(leg["leg_id"], leg["on_net"]) for leg in found["legs"]] == [("c", True), ("a1", False)]
    (record,) = model.cdr(A, since=t(0), until=t(100))
    assert (record["on_net"], record["agent_endpoints"]) == (True, ["mobile"])
