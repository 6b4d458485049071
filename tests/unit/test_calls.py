"""Calls: legs, hold/mute/transfer/record/supervise, idempotent facts, and usage for billing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from domain.base import NotFound
from domain.calls import (
    Call,
    CallAlreadyAnswered,
    CallEnded,
    CallNotAnswered,
    CallNotEnded,
    CallNotHeld,
    Calls,
    ConsultNotAnswered,
    DuplicateLeg,
    InvalidCall,
    LegNotMuted,
    LegSpec,
    NoSuchRecording,
    NoTransferInProgress,
    NotSupervising,
    PartyKind,
    RecordingNotStopped,
    SupervisionMode,
    TransferInProgress,
)
from domain.vocabulary import EndpointKind

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
TENANT = "acme"
HOTLINE = "0901000000"
CUSTOMER = "0912345678"
AGENT_A, AGENT_B, SUPERVISOR = uuid4(), uuid4(), uuid4()
QUEUE, FLOW = uuid4(), uuid4()


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def calls(transcoder_env: dict[str, str]) -> Calls:
    return Calls(env=transcoder_env)


def customer_leg(on_net: bool | None = True) -> LegSpec:
    return LegSpec.customer("c-1", CUSTOMER, on_net=on_net)


def agent_leg(leg_id: str = "a-1", agent: UUID = AGENT_A) -> LegSpec:
    return LegSpec.agent(leg_id, agent, EndpointKind.WEBRTC, "1001")


def inbound(calls: Calls, ref: str = "sw-1") -> UUID:
    return calls.start_inbound(TENANT, ref, HOTLINE, customer_leg(), t(0))


def answered_inbound(calls: Calls) -> UUID:
    """Customer calls at 0s, queued at 10s, agent A rings at 20s and answers at 25s."""
    call_id = inbound(calls)
    calls.offer_to_queue(TENANT, call_id, QUEUE, t(10))
    calls.ring_agent(TENANT, call_id, agent_leg(), t(20))
    calls.answer(TENANT, call_id, "a-1", t(25))
    return call_id


def version(calls: Calls, call_id: UUID) -> int:
    return int(calls.get(TENANT, call_id)["version"])


# Starting


def test_inbound_call_shows_the_customers_number_not_the_hotline(calls: Calls) -> None:
    call = calls.get(TENANT, inbound(calls))
    assert call["direction"] == "inbound"
    assert call["customer_number"] == CUSTOMER
    assert call["hotline"] == HOTLINE


def test_starting_the_same_switch_call_twice_is_one_call(calls: Calls) -> None:
    first = inbound(calls, "sw-42")
    again = inbound(calls, "sw-42")
    assert first == again
    assert version(calls, first) == 1


def test_a_start_fact_with_padded_call_id_finds_the_same_call(calls: Calls) -> None:
    assert inbound(calls, " sw-42 ") == inbound(calls, "sw-42")


def test_the_same_switch_call_id_in_two_tenants_is_two_calls(calls: Calls) -> None:
    ours = inbound(calls, "sw-7")
    theirs = calls.start_inbound("other", "sw-7", HOTLINE, customer_leg(), t(0))
    assert ours != theirs


def test_another_tenant_cannot_see_or_touch_the_call(calls: Calls) -> None:
    call_id = inbound(calls)
    with pytest.raises(NotFound):
        calls.get("other", call_id)
    with pytest.raises(NotFound):
        calls.hang_up("other", call_id, "c-1", "NORMAL_CLEARING", t(1))


def test_outbound_call_from_an_agent_shows_the_hotline(calls: Calls) -> None:
    call_id = calls.start_outbound(
        TENANT, "sw-2", HOTLINE, agent_leg(), LegSpec.customer("c-1", CUSTOMER, on_net=False), t(0)
    )
    call = calls.get(TENANT, call_id)
    assert call["direction"] == "outbound"
    assert call["hotline"] == HOTLINE
    assert [leg["party"] for leg in call["legs"]] == ["agent", "customer"]


def test_naive_times_are_refused(calls: Calls) -> None:
    with pytest.raises(InvalidCall):
        calls.start_inbound(TENANT, "sw-3", HOTLINE, customer_leg(), datetime(2025, 3, 3, 9))


def test_an_agent_leg_needs_the_agents_id() -> None:
    bad = LegSpec("a-1", PartyKind.AGENT, EndpointKind.SIP_PHONE.value, "1001")
    with pytest.raises(InvalidCall):
        Call.start_internal(TENANT, "sw-4", bad, t(0))


def test_on_net_is_only_said_of_phone_numbers() -> None:
    ip_phone = LegSpec.agent("a-1", AGENT_A, EndpointKind.IP_PHONE, "1001", on_net=True)
    with pytest.raises(InvalidCall):
        Call.start_internal(TENANT, "sw-5", ip_phone, t(0))


def test_an_outbound_call_needs_two_distinct_legs() -> None:
    with pytest.raises(DuplicateLeg):
        Call.start_outbound(
            TENANT, "sw-6", HOTLINE, agent_leg("x"), LegSpec.customer("x", CUSTOMER), t(0)
        )


# Before the answer: IVR, queue, ringing agents


def test_ivr_path_is_kept_in_order_with_the_digits_pressed(calls: Calls) -> None:
    call_id = inbound(calls)
    calls.ivr_step(TENANT, call_id, FLOW, 3, "welcome", None, t(1))
    calls.ivr_step(TENANT, call_id, FLOW, 3, "sales", "1", t(5))
    path = calls.get(TENANT, call_id)["ivr_path"]
    assert [(s["node_id"], s["digits"], s["flow_version"]) for s in path] == [
        ("welcome", None, 3),
        ("sales", "1", 3),
    ]


def test_ivr_digits_must_be_dtmf(calls: Calls) -> None:
    call_id = inbound(calls)
    with pytest.raises(InvalidCall):
        calls.ivr_step(TENANT, call_id, FLOW, 1, "menu", "1a", t(1))


def test_offering_to_another_queue_is_an_overflow_and_to_the_same_queue_a_no_op(
    calls: Calls,
) -> None:
    call_id = inbound(calls)
    overflow = uuid4()
    calls.offer_to_queue(TENANT, call_id, QUEUE, t(1))
    calls.offer_to_queue(TENANT, call_id, QUEUE, t(2))
    calls.offer_to_queue(TENANT, call_id, overflow, t(60))
    call = calls.get(TENANT, call_id)
    assert call["queue_id"] == str(overflow)
    assert call["queues"] == [str(QUEUE), str(overflow)]


def test_a_rung_agent_who_does_not_answer_leaves_the_customer_waiting(calls: Calls) -> None:
    call_id = inbound(calls)
    calls.ring_agent(TENANT, call_id, agent_leg("a-1", AGENT_A), t(5))
    calls.hang_up(TENANT, call_id, "a-1", "NO_ANSWER", t(25))
    calls.ring_agent(TENANT, call_id, agent_leg("b-1", AGENT_B), t(26))
    calls.answer(TENANT, call_id, "b-1", t(30))
    call = calls.get(TENANT, call_id)
    assert call["ended_at"] is None
    assert call["answered_at"] == t(30).isoformat()
    assert call["agent_ids"] == [str(AGENT_A), str(AGENT_B)]


def test_ringing_the_same_agent_leg_twice_is_a_no_op(calls: Calls) -> None:
    call_id = inbound(calls)
    calls.ring_agent(TENANT, call_id, agent_leg(), t(5))
    calls.ring_agent(TENANT, call_id, agent_leg(), t(5))
    assert version(calls, call_id) == 2


def test_a_leg_id_cannot_be_reused_for_someone_else(calls: Calls) -> None:
    call_id = inbound(calls)
    calls.ring_agent(TENANT, call_id, agent_leg("a-1", AGENT_A), t(5))
    with pytest.raises(DuplicateLeg):
        calls.ring_agent(TENANT, call_id, agent_leg("a-1", AGENT_B), t(6))


def test_agents_are_not_rung_once_the_call_is_answered(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    with pytest.raises(CallAlreadyAnswered):
        calls.ring_agent(TENANT, call_id, agent_leg("b-1", AGENT_B), t(30))
    with pytest.raises(CallAlreadyAnswered):
        calls.offer_to_queue(TENANT, call_id, uuid4(), t(30))


def test_the_switch_answering_the_customer_for_the_ivr_does_not_answer_the_call(
    calls: Calls,
) -> None:
    call_id = inbound(calls)
    calls.answer(TENANT, call_id, "c-1", t(1))
    assert calls.get(TENANT, call_id)["answered_at"] is None
    with pytest.raises(CallNotAnswered):
        calls.hold(TENANT, call_id, t(2))


def test_answering_an_answered_leg_is_a_no_op(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    before = version(calls, call_id)
    calls.answer(TENANT, call_id, "a-1", t(26))
    assert version(calls, call_id) == before
    assert calls.get(TENANT, call_id)["answered_at"] == t(25).isoformat()


# Hold and mute


def test_cannot_hold_an_unanswered_call(calls: Calls) -> None:
    call_id = inbound(calls)
    with pytest.raises(CallNotAnswered):
        calls.hold(TENANT, call_id, t(1))


def test_cannot_resume_a_call_that_is_not_held(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    with pytest.raises(CallNotHeld):
        calls.resume(TENANT, call_id, t(30))


def test_holding_a_held_call_is_a_no_op(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.hold(TENANT, call_id, t(30))
    before = version(calls, call_id)
    calls.hold(TENANT, call_id, t(31))
    assert version(calls, call_id) == before
    assert calls.get(TENANT, call_id)["held"] is True


def test_a_redelivered_fact_changes_nothing(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.hold(TENANT, call_id, t(30), fact_id="f-1")
    calls.resume(TENANT, call_id, t(40), fact_id="f-2")
    before = version(calls, call_id)
    calls.resume(TENANT, call_id, t(40), fact_id="f-2")  # would be CallNotHeld if new
    calls.hold(TENANT, call_id, t(30), fact_id="f-1")
    assert version(calls, call_id) == before
    assert calls.get(TENANT, call_id)["held"] is False


def test_mute_is_per_leg(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.mute(TENANT, call_id, "a-1", t(30))
    legs = {leg["leg_id"]: leg["muted"] for leg in calls.get(TENANT, call_id)["legs"]}
    assert legs == {"c-1": False, "a-1": True}
    calls.unmute(TENANT, call_id, "a-1", t(31))
    with pytest.raises(LegNotMuted):
        calls.unmute(TENANT, call_id, "a-1", t(32))


def test_cannot_mute_before_the_answer(calls: Calls) -> None:
    call_id = inbound(calls)
    with pytest.raises(CallNotAnswered):
        calls.mute(TENANT, call_id, "c-1", t(1))


# Ending


def test_customer_hanging_up_before_answer_abandons_with_wait_time(calls: Calls) -> None:
    call_id = inbound(calls)
    calls.offer_to_queue(TENANT, call_id, QUEUE, t(10))
    calls.ring_agent(TENANT, call_id, agent_leg(), t(20))
    calls.hang_up(TENANT, call_id, "c-1", "ORIGINATOR_CANCEL", t(70))
    call = calls.get(TENANT, call_id)
    assert call["abandoned"] is True
    assert call["ended_by_leg_id"] == "c-1"
    assert all(leg["ended_at"] == t(70).isoformat() for leg in call["legs"])
    usage = calls.usage(TENANT, call_id)
    assert usage["abandoned"] is True
    assert usage["wait_seconds"] == 60.0
    assert usage["ring_seconds"] == 50.0
    assert usage["connected_seconds"] == 0.0


def test_abandoned_event_carries_the_queue_and_both_waits() -> None:
    call = Call.start_inbound(TENANT, "sw-9", HOTLINE, customer_leg(), t(0))
    call.offer_to_queue(QUEUE, t(15))
    call.hang_up("c-1", "ORIGINATOR_CANCEL", t(45))
    abandoned = [e for e in call.collect_events() if isinstance(e, Call.Abandoned)]
    assert len(abandoned) == 1
    assert abandoned[0].queue_id == QUEUE
    assert (abandoned[0].waited_seconds, abandoned[0].queued_seconds) == (45.0, 30.0)


def test_an_unanswered_outbound_call_is_not_abandoned(calls: Calls) -> None:
    call_id = calls.start_outbound(TENANT, "sw-2", HOTLINE, agent_leg(), customer_leg(), t(0))
    calls.hang_up(TENANT, call_id, "c-1", "USER_BUSY", t(8))
    call = calls.get(TENANT, call_id)
    assert call["abandoned"] is False
    assert call["end_cause"] == "USER_BUSY"


def test_agent_hanging_up_ends_an_answered_call(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.hang_up(TENANT, call_id, "a-1", "NORMAL_CLEARING", t(85))
    call = calls.get(TENANT, call_id)
    assert call["ended_at"] == t(85).isoformat()
    assert call["ended_by_leg_id"] == "a-1"


def test_nothing_happens_after_the_call_ended(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.hang_up(TENANT, call_id, "c-1", "NORMAL_CLEARING", t(60))
    for command in (
        lambda: calls.hold(TENANT, call_id, t(61)),
        lambda: calls.answer(TENANT, call_id, "a-1", t(61)),
        lambda: calls.ivr_step(TENANT, call_id, FLOW, 1, "menu", None, t(61)),
        lambda: calls.start_recording(TENANT, call_id, "r-1", t(61)),
        lambda: calls.force_end(TENANT, call_id, SUPERVISOR, t(61)),
    ):
        with pytest.raises(CallEnded):
            command()


def test_hang_ups_of_legs_the_end_took_down_are_ignored(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.hang_up(TENANT, call_id, "c-1", "NORMAL_CLEARING", t(60))
    before = version(calls, call_id)
    calls.hang_up(TENANT, call_id, "a-1", "NORMAL_CLEARING", t(60.2))
    assert version(calls, call_id) == before


def test_the_pbx_ending_an_unanswered_call_is_not_an_abandon(calls: Calls) -> None:
    call_id = inbound(calls)
    calls.ivr_step(TENANT, call_id, FLOW, 1, "closed-message", None, t(2))
    calls.end(TENANT, call_id, "closed", t(12))
    calls.hang_up(TENANT, call_id, "c-1", "NORMAL_CLEARING", t(12.1))
    call = calls.get(TENANT, call_id)
    assert (call["abandoned"], call["end_cause"], call["ended_by_leg_id"]) == (
        False,
        "closed",
        None,
    )


def test_supervisor_force_ends_the_call(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.force_end(TENANT, call_id, SUPERVISOR, t(40))
    call = calls.get(TENANT, call_id)
    assert call["forced_by"] == str(SUPERVISOR)
    assert call["end_cause"] == "forced_by_supervisor"
    assert call["ended_by_leg_id"] is None


# Transfers (CC14, AX14)


def test_blind_transfer_to_an_external_number_replaces_the_agent(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.hold(TENANT, call_id, t(30))
    external = LegSpec.external("x-1", "0987654321", on_net=False)
    calls.transfer_blind(TENANT, call_id, "a-1", external, t(35))
    calls.answer(TENANT, call_id, "x-1", t(40))
    call = calls.get(TENANT, call_id)
    legs = {leg["leg_id"]: leg for leg in call["legs"]}
    assert legs["a-1"]["ended_at"] == t(35).isoformat()
    assert legs["x-1"]["party"] == "external"
    assert call["held"] is False
    assert call["ended_at"] is None
    assert call["transfers"] == [{"kind": "blind", "from_leg_id": "a-1", "to_leg_id": "x-1"}]


def test_a_blind_transfer_target_who_never_answers_ends_the_call(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.transfer_blind(TENANT, call_id, "a-1", agent_leg("b-1", AGENT_B), t(35))
    calls.hang_up(TENANT, call_id, "b-1", "NO_ANSWER", t(55))
    assert calls.get(TENANT, call_id)["ended_by_leg_id"] == "b-1"


def test_cannot_transfer_an_unanswered_call(calls: Calls) -> None:
    call_id = inbound(calls)
    calls.ring_agent(TENANT, call_id, agent_leg(), t(5))
    with pytest.raises(CallNotAnswered):
        calls.transfer_blind(TENANT, call_id, "a-1", agent_leg("b-1", AGENT_B), t(6))


def test_only_an_agent_transfers_the_call(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    with pytest.raises(InvalidCall):
        calls.transfer_blind(TENANT, call_id, "c-1", agent_leg("b-1", AGENT_B), t(30))


def test_attended_transfer_completes_only_after_the_consult_leg_answers(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.hold(TENANT, call_id, t(30))
    calls.transfer_attended_begin(TENANT, call_id, "a-1", agent_leg("b-1", AGENT_B), t(31))
    with pytest.raises(ConsultNotAnswered):
        calls.transfer_attended_complete(TENANT, call_id, t(33))
    calls.answer(TENANT, call_id, "b-1", t(36))
    calls.transfer_attended_complete(TENANT, call_id, t(50))
    call = calls.get(TENANT, call_id)
    legs = {leg["leg_id"]: leg for leg in call["legs"]}
    assert legs["a-1"]["ended_at"] == t(50).isoformat()
    assert legs["b-1"]["ended_at"] is None
    assert call["consulting"] is None
    assert call["held"] is False
    assert call["transfers"] == [{"kind": "attended", "from_leg_id": "a-1", "to_leg_id": "b-1"}]
    calls.hang_up(TENANT, call_id, "b-1", "NORMAL_CLEARING", t(90))
    assert calls.usage(TENANT, call_id)["hold_seconds"] == 20.0


def test_cancelled_attended_transfer_keeps_the_agent_with_the_customer(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.hold(TENANT, call_id, t(30))
    external = LegSpec.external("x-1", "0987654321", on_net=True)
    calls.transfer_attended_begin(TENANT, call_id, "a-1", external, t(31))
    calls.transfer_attended_cancel(TENANT, call_id, t(40))
    calls.resume(TENANT, call_id, t(41))
    call = calls.get(TENANT, call_id)
    legs = {leg["leg_id"]: leg for leg in call["legs"]}
    assert legs["x-1"]["ended_at"] == t(40).isoformat()
    assert legs["a-1"]["ended_at"] is None
    assert call["consulting"] is None
    assert call["ended_at"] is None


def test_the_consult_leg_hanging_up_cancels_the_transfer(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.transfer_attended_begin(TENANT, call_id, "a-1", agent_leg("b-1", AGENT_B), t(31))
    calls.hang_up(TENANT, call_id, "b-1", "CALL_REJECTED", t(35))
    with pytest.raises(NoTransferInProgress):
        calls.transfer_attended_complete(TENANT, call_id, t(36))
    assert calls.get(TENANT, call_id)["ended_at"] is None


def test_only_one_attended_transfer_at_a_time(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.transfer_attended_begin(TENANT, call_id, "a-1", agent_leg("b-1", AGENT_B), t(31))
    with pytest.raises(TransferInProgress):
        calls.transfer_blind(TENANT, call_id, "a-1", LegSpec.external("x-1", "0987"), t(32))


def test_cancel_without_a_transfer_is_refused(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    with pytest.raises(NoTransferInProgress):
        calls.transfer_attended_cancel(TENANT, call_id, t(31))


def test_consult_leg_joins_a_three_way_conference(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.hold(TENANT, call_id, t(30))
    calls.transfer_attended_begin(TENANT, call_id, "a-1", agent_leg("b-1", AGENT_B), t(31))
    with pytest.raises(ConsultNotAnswered):
        calls.join_conference(TENANT, call_id, "b-1", t(32))
    calls.answer(TENANT, call_id, "b-1", t(33))
    calls.join_conference(TENANT, call_id, "b-1", t(40))
    calls.join_conference(TENANT, call_id, "b-1", t(41))  # repeated: no-op
    call = calls.get(TENANT, call_id)
    assert call["conference_leg_ids"] == ["b-1"]
    assert call["held"] is False
    assert all(leg["ended_at"] is None for leg in call["legs"])
    # One of three leaving keeps the other two talking.
    calls.hang_up(TENANT, call_id, "a-1", "NORMAL_CLEARING", t(60))
    assert calls.get(TENANT, call_id)["ended_at"] is None


# Recording (AX10, AX20)


def test_recording_is_stopped_by_the_end_and_stored_afterwards(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.start_recording(TENANT, call_id, "r-1", t(25))
    calls.hang_up(TENANT, call_id, "c-1", "NORMAL_CLEARING", t(85))
    calls.stop_recording(TENANT, call_id, "r-1", t(85.5))  # the switch's late RECORD_STOP
    calls.store_recording(
        TENANT, call_id, "r-1", "s3://rec/r-1.wav", 60.0, 960_000, t(90), {"codec": "PCMU"}
    )
    (recording,) = calls.get(TENANT, call_id)["recordings"]
    assert recording["stopped_at"] == t(85).isoformat()
    assert recording["uri"] == "s3://rec/r-1.wav"
    assert recording["size_bytes"] == 960_000
    assert recording["metadata"] == {"codec": "PCMU"}


def test_cannot_store_a_running_recording(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.start_recording(TENANT, call_id, "r-1", t(25))
    with pytest.raises(RecordingNotStopped):
        calls.store_recording(TENANT, call_id, "r-1", "s3://rec/r-1.wav", 1.0, 10, t(26))
    with pytest.raises(NoSuchRecording):
        calls.stop_recording(TENANT, call_id, "r-2", t(26))


def test_starting_a_recording_twice_is_a_no_op(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.start_recording(TENANT, call_id, "r-1", t(25))
    before = version(calls, call_id)
    calls.start_recording(TENANT, call_id, "r-1", t(25))
    assert version(calls, call_id) == before


# Supervision (CC19)


def test_supervisor_listens_then_barges_then_leaves_without_ending_the_call(
    calls: Calls,
) -> None:
    call_id = answered_inbound(calls)
    sup = LegSpec.supervisor("s-1", SUPERVISOR, EndpointKind.WEBRTC, "1900")
    calls.supervise(TENANT, call_id, sup, SupervisionMode.LISTEN, t(30))
    calls.supervise(TENANT, call_id, sup, SupervisionMode.LISTEN, t(31))  # no-op
    calls.supervise(TENANT, call_id, sup, SupervisionMode.BARGE, t(40))
    legs = {leg["leg_id"]: leg for leg in calls.get(TENANT, call_id)["legs"]}
    assert legs["s-1"]["supervision"] == "barge"
    calls.end_supervision(TENANT, call_id, "s-1", t(50))
    with pytest.raises(NotSupervising):
        calls.end_supervision(TENANT, call_id, "s-1", t(51))
    call = calls.get(TENANT, call_id)
    assert call["ended_at"] is None
    assert call["version"] == 7


def test_a_supervisor_hanging_up_does_not_end_the_call(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    sup = LegSpec.supervisor("s-1", SUPERVISOR, EndpointKind.SIP_PHONE, "1900")
    calls.supervise(TENANT, call_id, sup, SupervisionMode.WHISPER, t(30))
    calls.hang_up(TENANT, call_id, "s-1", "NORMAL_CLEARING", t(45))
    assert calls.get(TENANT, call_id)["ended_at"] is None


def test_a_supervisor_takes_the_call_over_and_the_agent_leaves(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    sup = LegSpec.supervisor("s-1", SUPERVISOR, EndpointKind.SIP_PHONE, "1900")
    with pytest.raises(NotSupervising):  # only one listening in may take over
        calls.take_over(TENANT, call_id, "s-1", "a-1", t(35))
    calls.supervise(TENANT, call_id, sup, SupervisionMode.BARGE, t(30))
    calls.take_over(TENANT, call_id, "s-1", "a-1", t(40), fact_id="f-1")
    calls.take_over(TENANT, call_id, "s-1", "a-1", t(40), fact_id="f-1")  # a repeat: no-op
    call = calls.get(TENANT, call_id)
    legs = {leg["leg_id"]: leg for leg in call["legs"]}
    assert legs["a-1"]["ended_at"] and legs["s-1"]["supervision"] is None
    assert legs["s-1"]["party"] == "agent" and call["ended_at"] is None
    # The agent's switch leg hanging up afterwards changes nothing; the supervisor's ends
    # the call, as the agent's would have.
    calls.hang_up(TENANT, call_id, "a-1", "NORMAL_CLEARING", t(41))
    assert calls.get(TENANT, call_id)["ended_at"] is None
    calls.hang_up(TENANT, call_id, "s-1", "NORMAL_CLEARING", t(90))
    assert calls.get(TENANT, call_id)["ended_at"] is not None


def test_cannot_supervise_an_unanswered_call(calls: Calls) -> None:
    call_id = inbound(calls)
    sup = LegSpec.supervisor("s-1", SUPERVISOR, EndpointKind.WEBRTC, "1900")
    with pytest.raises(CallNotAnswered):
        calls.supervise(TENANT, call_id, sup, SupervisionMode.LISTEN, t(5))


# Usage for billing (PR4, PR6)


def test_usage_gives_ring_wait_talk_and_hold_times(calls: Calls) -> None:
    call_id = answered_inbound(calls)  # queued at 10, rung at 20, answered at 25
    calls.hold(TENANT, call_id, t(40))
    calls.resume(TENANT, call_id, t(55))
    calls.hang_up(TENANT, call_id, "c-1", "NORMAL_CLEARING", t(125))
    usage = calls.usage(TENANT, call_id)
    assert usage["direction"] == "inbound"
    assert usage["ring_seconds"] == 5.0
    assert usage["wait_seconds"] == 15.0
    assert usage["connected_seconds"] == 100.0
    assert usage["hold_seconds"] == 15.0
    assert usage["talk_seconds"] == 85.0
    legs = {leg["leg_id"]: leg for leg in usage["legs"]}
    assert legs["c-1"]["endpoint"] == "pstn"
    assert legs["c-1"]["on_net"] is True
    assert legs["a-1"]["endpoint"] == "webrtc"
    assert legs["a-1"]["user_id"] == str(AGENT_A)
    assert legs["a-1"]["connected_seconds"] == 100.0
    assert legs["a-1"]["ring_seconds"] == 5.0


def test_a_call_ended_while_on_hold_counts_hold_until_the_end(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    calls.hold(TENANT, call_id, t(45))
    calls.hang_up(TENANT, call_id, "c-1", "NORMAL_CLEARING", t(65))
    assert calls.usage(TENANT, call_id)["hold_seconds"] == 20.0


def test_usage_of_an_outbound_call_keeps_off_net_and_the_hotline(calls: Calls) -> None:
    customer = LegSpec.customer("c-1", CUSTOMER, on_net=False)
    call_id = calls.start_outbound(TENANT, "sw-2", HOTLINE, agent_leg(), customer, t(0))
    calls.answer(TENANT, call_id, "c-1", t(12))
    calls.hang_up(TENANT, call_id, "a-1", "NORMAL_CLEARING", t(192))
    usage = calls.usage(TENANT, call_id)
    assert (usage["direction"], usage["hotline"]) == ("outbound", HOTLINE)
    assert usage["ring_seconds"] == 12.0
    assert usage["connected_seconds"] == 180.0
    assert usage["wait_seconds"] == 0.0
    assert [leg["on_net"] for leg in usage["legs"]] == [None, False]


def test_internal_call_between_an_ip_phone_and_a_mobile_user(calls: Calls) -> None:
    caller = LegSpec.agent("a-1", AGENT_A, EndpointKind.IP_PHONE, "1001")
    call_id = calls.start_internal(TENANT, "sw-3", caller, t(0))
    mobile = LegSpec.agent("b-1", AGENT_B, EndpointKind.MOBILE, "0977000111", on_net=True)
    calls.ring_agent(TENANT, call_id, mobile, t(1))
    calls.answer(TENANT, call_id, "b-1", t(4))
    calls.hang_up(TENANT, call_id, "b-1", "NORMAL_CLEARING", t(64))
    usage = calls.usage(TENANT, call_id)
    assert usage["direction"] == "internal"
    assert usage["customer_number"] is None
    assert [leg["endpoint"] for leg in usage["legs"]] == ["ip_phone", "mobile"]
    assert usage["connected_seconds"] == 60.0


def test_an_internal_callee_who_rejects_leaves_the_caller_until_they_hang_up(
    calls: Calls,
) -> None:
    call_id = calls.start_internal(TENANT, "sw-3", agent_leg(), t(0))
    calls.ring_agent(TENANT, call_id, agent_leg("b-1", AGENT_B), t(1))
    calls.hang_up(TENANT, call_id, "b-1", "CALL_REJECTED", t(3))
    assert calls.get(TENANT, call_id)["ended_at"] is None
    calls.hang_up(TENANT, call_id, "a-1", "NORMAL_CLEARING", t(4))
    call = calls.get(TENANT, call_id)
    assert call["ended_by_leg_id"] == "a-1"
    assert call["abandoned"] is False


def test_usage_before_the_end_is_refused(calls: Calls) -> None:
    call_id = answered_inbound(calls)
    with pytest.raises(CallNotEnded):
        calls.usage(TENANT, call_id)
