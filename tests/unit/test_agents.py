"""Users and agents: roles, extensions, endpoints, skills, groups, and the presence machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.agents import (
    PRESENCE_TRANSITIONS,
    AgentBusy,
    AgentNotAvailable,
    Agents,
    ConversationMismatch,
    EndpointRequired,
    InvalidEndpoint,
    InvalidPresenceTransition,
    InvalidUser,
    PackageHasNoAgents,
    RoleTakesNoCalls,
    User,
    UserDeactivated,
    UserNotOffline,
)
from domain.base import NotFound
from domain.phones import InvalidPhoneNumber
from domain.vocabulary import EndpointKind, Package, Presence, Role

CC = Package.CALL_CENTER
CALL = "call-1"


@pytest.fixture
def agents() -> Agents:
    return Agents()


def new_agent(role: Role = Role.AGENT, reachable: bool = True) -> User:
    user = User.create("acme", "Nguyễn Văn An", "an@acme.vn", role, package=CC, extension="101")
    if reachable:
        user.add_endpoint(EndpointKind.WEBRTC)
    return user


def event_names(user: User) -> list[str]:
    return [type(e).__name__ for e in user.collect_events()]


# How to bring a fresh, reachable agent into each presence state, step by step.
STEPS: dict[str, Callable[[User], None]] = {
    "log_in": lambda u: u.go_available(),
    "lunch": lambda u: u.take_break("lunch"),
    "ring": lambda u: u.offer(CALL),
    "pick_up": lambda u: u.answer(CALL),
    "hang_up": lambda u: u.end_interaction(CALL),
}
ROUTES: dict[Presence, list[str]] = {
    Presence.OFFLINE: [],
    Presence.AVAILABLE: ["log_in"],
    Presence.BREAK: ["log_in", "lunch"],
    Presence.RINGING: ["log_in", "ring"],
    Presence.ON_CALL: ["log_in", "ring", "pick_up"],
    Presence.WRAP_UP: ["log_in", "ring", "pick_up", "hang_up"],
}


def agent_in(presence: Presence) -> User:
    user = new_agent()
    for step in ROUTES[presence]:
        STEPS[step](user)
    assert user.presence is presence
    user.collect_events()
    return user


# Each command, and the state it leads to when the machine allows it.
COMMANDS: dict[str, tuple[Callable[[User], None], Presence]] = {
    "go_available": (lambda u: u.go_available(), Presence.AVAILABLE),
    "take_break": (lambda u: u.take_break("coffee"), Presence.BREAK),
    "go_offline": (lambda u: u.go_offline(), Presence.OFFLINE),
    "offer": (lambda u: u.offer("call-2"), Presence.RINGING),
    "start_interaction": (lambda u: u.start_interaction("call-2"), Presence.ON_CALL),
    "answer": (lambda u: u.answer(CALL), Presence.ON_CALL),
    "decline_offer": (lambda u: u.decline_offer(CALL), Presence.AVAILABLE),
    "end_interaction": (lambda u: u.end_interaction(CALL), Presence.WRAP_UP),
    "end_without_wrap_up": (lambda u: u.end_interaction(CALL, wrap_up=False), Presence.AVAILABLE),
    "finish_wrap_up": (lambda u: u.finish_wrap_up(), Presence.AVAILABLE),
}

# The machine of the issue, written out as the command that takes each step.
LEGAL = {
    (Presence.OFFLINE, "go_available"),
    (Presence.AVAILABLE, "take_break"),
    (Presence.AVAILABLE, "go_offline"),
    (Presence.AVAILABLE, "offer"),
    (Presence.AVAILABLE, "start_interaction"),
    (Presence.RINGING, "answer"),
    (Presence.RINGING, "decline_offer"),
    (Presence.ON_CALL, "end_interaction"),
    (Presence.ON_CALL, "end_without_wrap_up"),
    (Presence.WRAP_UP, "finish_wrap_up"),
    (Presence.WRAP_UP, "go_available"),
    (Presence.WRAP_UP, "take_break"),
    (Presence.BREAK, "go_available"),
    (Presence.BREAK, "take_break"),  # another break reason is a step
    (Presence.BREAK, "go_offline"),
}
# Asking for the state one is in already is a no-op, not an error.
NO_OPS = {(Presence.AVAILABLE, "go_available"), (Presence.OFFLINE, "go_offline")}


class TestPresenceMachine:
    @pytest.mark.parametrize(("state", "command"), sorted(LEGAL))
    def test_every_step_of_the_machine_is_taken(self, state: Presence, command: str) -> None:
        user = agent_in(state)
        run, target = COMMANDS[command]
        run(user)
        assert user.presence is target
        assert target in PRESENCE_TRANSITIONS[state]

    @pytest.mark.parametrize(
        ("state", "command"),
        sorted({(s, c) for s in Presence for c in COMMANDS} - LEGAL - NO_OPS),
    )
    def test_every_step_the_machine_lacks_is_refused(self, state: Presence, command: str) -> None:
        user = agent_in(state)
        with pytest.raises(InvalidPresenceTransition):
            COMMANDS[command][0](user)
        assert user.presence is state
        assert event_names(user) == []

    @pytest.mark.parametrize(("state", "command"), sorted(NO_OPS))
    def test_asking_for_the_current_state_changes_nothing(
        self, state: Presence, command: str
    ) -> None:
        user = agent_in(state)
        COMMANDS[command][0](user)
        assert event_names(user) == []

    @pytest.mark.parametrize("state", [p for p in Presence if p is not Presence.AVAILABLE])
    def test_only_an_available_agent_is_offered_a_conversation(self, state: Presence) -> None:
        with pytest.raises(AgentNotAvailable):
            agent_in(state).offer(uuid4())

    def test_a_call_from_ringing_to_wrap_up_emits_its_events_with_the_conversation(
        self,
    ) -> None:
        user = agent_in(Presence.AVAILABLE)
        conversation = uuid4()
        user.offer(conversation)
        user.answer(conversation)
        user.end_interaction(conversation)
        user.finish_wrap_up()
        events = user.collect_events()
        assert [type(e).__name__ for e in events] == [
            "Offered",
            "Answered",
            "InteractionEnded",
            "WrapUpFinished",
        ]
        assert {e.conversation_id for e in events} == {str(conversation)}  # type: ignore[attr-defined]
        assert user.conversation_id is None

    def test_going_available_from_wrap_up_finishes_the_wrap_up(self) -> None:
        user = agent_in(Presence.WRAP_UP)
        user.go_available()
        assert event_names(user) == ["WrapUpFinished"]

    def test_a_declined_offer_says_why(self) -> None:
        user = agent_in(Presence.RINGING)
        user.decline_offer(CALL, "timed_out")
        (declined,) = user.collect_events()
        assert (declined.conversation_id, declined.reason) == (CALL, "timed_out")  # type: ignore[attr-defined]

    def test_answering_another_conversation_is_refused(self) -> None:
        user = agent_in(Presence.RINGING)
        with pytest.raises(ConversationMismatch):
            user.answer("call-9")
        with pytest.raises(ConversationMismatch):
            user.decline_offer("call-9")

    def test_ending_another_conversation_is_refused(self) -> None:
        with pytest.raises(ConversationMismatch):
            agent_in(Presence.ON_CALL).end_interaction("call-9")

    def test_a_break_carries_its_reason_and_the_same_break_twice_is_one(self) -> None:
        user = agent_in(Presence.AVAILABLE)
        user.take_break(" lunch ")
        user.take_break("lunch")
        (taken,) = user.collect_events()
        assert taken.reason == "lunch"  # type: ignore[attr-defined]
        assert user.break_reason == "lunch"
        user.go_available()
        assert user.break_reason is None

    def test_a_break_needs_a_reason(self) -> None:
        with pytest.raises(InvalidUser):
            agent_in(Presence.AVAILABLE).take_break("  ")


class TestWhoTakesCalls:
    @pytest.mark.parametrize("role", [Role.AGENT, Role.SUPERVISOR])
    def test_agents_and_supervisors_go_available(self, role: Role) -> None:
        user = new_agent(role)
        user.go_available()
        assert user.presence is Presence.AVAILABLE

    def test_a_tenant_admin_takes_no_calls(self) -> None:
        with pytest.raises(RoleTakesNoCalls):
            new_agent(Role.TENANT_ADMIN).go_available()

    def test_an_operator_takes_no_calls(self) -> None:
        operator = User.create("_", "Carrier ops", "ops@carrier.vn", Role.OPERATOR, package=CC)
        operator.add_endpoint(EndpointKind.WEBRTC)
        with pytest.raises(RoleTakesNoCalls):
            operator.go_available()

    def test_an_agent_without_an_endpoint_cannot_go_available(self) -> None:
        with pytest.raises(EndpointRequired):
            new_agent(reachable=False).go_available()

    def test_a_role_that_takes_no_calls_needs_the_user_offline_first(self) -> None:
        user = agent_in(Presence.AVAILABLE)
        with pytest.raises(UserNotOffline):
            user.set_role(Role.TENANT_ADMIN, package=CC)
        user.go_offline()
        user.set_role(Role.TENANT_ADMIN, package=CC)
        assert user.role is Role.TENANT_ADMIN and not user.takes_calls

    def test_a_deactivated_user_cannot_change_presence(self) -> None:
        user = new_agent()
        user.deactivate("left the company")
        for command in ("go_available", "take_break", "go_offline", "offer"):
            with pytest.raises(UserDeactivated):
                COMMANDS[command][0](user)
        user.reactivate()
        user.go_available()

    def test_deactivation_signs_an_idle_agent_out(self) -> None:
        user = agent_in(Presence.WRAP_UP)
        user.deactivate()
        assert event_names(user) == ["WentOffline", "Deactivated"]
        assert user.presence is Presence.OFFLINE

    @pytest.mark.parametrize("state", [Presence.RINGING, Presence.ON_CALL])
    def test_an_agent_is_not_deactivated_mid_interaction(self, state: Presence) -> None:
        with pytest.raises(AgentBusy):
            agent_in(state).deactivate()


class TestRolesAndPackages:
    @pytest.mark.parametrize("role", [Role.AGENT, Role.SUPERVISOR])
    def test_a_basic_tenant_has_no_agents(self, role: Role) -> None:
        with pytest.raises(PackageHasNoAgents):
            User.create("acme", "An", "an@acme.vn", role, package=Package.BASIC)
        admin = User.create("acme", "An", "an@acme.vn", Role.TENANT_ADMIN, package=Package.BASIC)
        with pytest.raises(PackageHasNoAgents):
            admin.set_role(role, package=Package.BASIC)

    def test_operators_live_in_the_operator_space_only(self) -> None:
        with pytest.raises(InvalidUser):
            User.create("acme", "Ops", "ops@carrier.vn", Role.OPERATOR, package=CC)
        with pytest.raises(InvalidUser):
            User.create("_", "An", "an@acme.vn", Role.AGENT, package=CC)
        with pytest.raises(InvalidUser):
            new_agent().set_role(Role.OPERATOR, package=CC)

    def test_an_unknown_role_is_refused(self) -> None:
        with pytest.raises(InvalidUser):
            User.create("acme", "An", "an@acme.vn", "manager", package=CC)


class TestProfile:
    def test_a_user_is_created_offline_with_a_normalized_login(self, agents: Agents) -> None:
        user_id = agents.create_user(
            "acme", "  Trần  Thị Bình ", " Binh@Acme.VN ", "agent", package=CC, extension="1001"
        )
        user = agents.get("acme", user_id)
        assert (user["name"], user["login"], user["extension"]) == (
            "Trần Thị Bình",
            "binh@acme.vn",
            "1001",
        )
        assert (user["role"], user["presence"], user["active"]) == ("agent", "offline", True)

    @pytest.mark.parametrize("extension", ["1", "1234567", "10a", "", " 101"])
    def test_an_extension_is_two_to_six_digits(self, extension: str) -> None:
        with pytest.raises(InvalidUser):
            new_agent().set_extension(extension)

    def test_an_extension_is_changed_or_cleared(self) -> None:
        user = new_agent()
        user.set_extension("123456")
        user.set_extension(None)
        assert user.extension is None

    def test_a_mobile_endpoint_needs_a_phone_number_stored_in_e164(self) -> None:
        user = new_agent(reachable=False)
        user.add_endpoint(EndpointKind.MOBILE, "091 234 5678")
        user.add_endpoint("mobile", "+84912345678")
        assert [(e.kind, e.address) for e in user.endpoints] == [
            (EndpointKind.MOBILE, "+84912345678")
        ]
        with pytest.raises(InvalidPhoneNumber):
            user.add_endpoint(EndpointKind.MOBILE, "")

    def test_a_browser_endpoint_has_no_address(self) -> None:
        user = new_agent(reachable=False)
        with pytest.raises(InvalidEndpoint):
            user.add_endpoint(EndpointKind.WEBRTC, "sip:101@pbx")
        user.add_endpoint(EndpointKind.WEBRTC)
        user.add_endpoint(EndpointKind.WEBRTC, "")
        assert len(user.endpoints) == 1

    @pytest.mark.parametrize("kind", [EndpointKind.SIP_PHONE, EndpointKind.IP_PHONE])
    def test_a_phone_endpoint_needs_a_sip_address(self, kind: EndpointKind) -> None:
        user = new_agent(reachable=False)
        with pytest.raises(InvalidEndpoint):
            user.add_endpoint(kind, "")
        with pytest.raises(InvalidEndpoint):
            user.add_endpoint(kind, "sip:1 01@pbx")
        user.add_endpoint(kind, " sip:101@pbx.acme.vn ")
        assert user.endpoints[0].address == "sip:101@pbx.acme.vn"

    def test_an_unknown_endpoint_kind_is_refused(self) -> None:
        with pytest.raises(InvalidEndpoint):
            new_agent().add_endpoint("fax", "123")

    def test_the_last_endpoint_stays_while_the_agent_is_not_offline(self) -> None:
        user = agent_in(Presence.AVAILABLE)
        user.add_endpoint(EndpointKind.MOBILE, "0912345678")
        user.remove_endpoint(EndpointKind.MOBILE, "0912345678")
        with pytest.raises(EndpointRequired):
            user.remove_endpoint(EndpointKind.WEBRTC)
        user.go_offline()
        user.remove_endpoint(EndpointKind.WEBRTC)
        assert user.endpoints == []

    def test_skills_have_levels_from_one_to_ten(self) -> None:
        user = new_agent()
        user.set_skill("Billing", 7)
        user.set_skill("billing", 7)
        user.set_skill(" vietnamese ", 10)
        user.set_skill("english", 1)
        assert user.skills == {"billing": 7, "vietnamese": 10, "english": 1}
        assert event_names(user).count("SkillSet") == 3
        user.remove_skill("ENGLISH")
        user.remove_skill("english")
        assert event_names(user) == ["SkillRemoved"]

    @pytest.mark.parametrize("level", [0, 11, -1, 2.5, True, "5"])
    def test_a_skill_level_outside_one_to_ten_is_refused(self, level: Any) -> None:
        with pytest.raises(InvalidUser):
            new_agent().set_skill("billing", level)

    def test_departments_and_pickup_groups_are_joined_and_left(self) -> None:
        user = new_agent()
        user.collect_events()
        user.join_department("Sales")
        user.join_department(" Sales ")
        user.join_pickup_group("Night shift")
        user.leave_department("Support")
        assert (user.departments, user.pickup_groups) == ({"Sales"}, {"Night shift"})
        assert event_names(user) == ["DepartmentJoined", "PickupGroupJoined"]
        user.leave_department("Sales")
        user.leave_pickup_group("Night shift")
        assert not user.departments and not user.pickup_groups
        with pytest.raises(InvalidUser):
            user.join_pickup_group("")


class TestApplication:
    def test_another_tenants_user_is_not_found(self, agents: Agents) -> None:
        user_id = agents.create_user("acme", "An", "an@acme.vn", Role.AGENT, package=CC)
        with pytest.raises(NotFound):
            agents.get("globex", user_id)
        with pytest.raises(NotFound):
            agents.go_available("globex", user_id)
        with pytest.raises(NotFound):
            agents.get("acme", uuid4())

    def test_a_working_day_through_the_application(self, agents: Agents) -> None:
        user_id: UUID = agents.create_user("acme", "An", "an@acme.vn", Role.AGENT, package=CC)
        agents.add_endpoint("acme", user_id, EndpointKind.SIP_PHONE, "sip:101@pbx")
        agents.set_skill("acme", user_id, "billing", 8)
        agents.join_department("acme", user_id, "Support")
        agents.join_pickup_group("acme", user_id, "Front desk")
        agents.go_available("acme", user_id)
        agents.offer("acme", user_id, CALL)
        assert agents.get("acme", user_id)["presence"] == "ringing"
        agents.answer("acme", user_id, CALL)
        agents.end_interaction("acme", user_id, CALL)
        assert agents.get("acme", user_id)["conversation_id"] == CALL
        agents.take_break("acme", user_id, "lunch")
        shown = agents.get("acme", user_id)
        assert (shown["presence"], shown["break_reason"]) == ("break", "lunch")
        agents.go_available("acme", user_id)
        agents.go_offline("acme", user_id, "end of shift")
        agents.deactivate("acme", user_id)
        shown = agents.get("acme", user_id)
        assert (shown["presence"], shown["active"]) == ("offline", False)
        assert shown["skills"] == {"billing": 8}
        assert shown["endpoints"] == [{"kind": "sip_phone", "address": "sip:101@pbx"}]


def test_a_user_reloaded_from_its_events_equals_the_one_that_made_them(
    transcoder_env: dict[str, str],
) -> None:
    agents = Agents(env=transcoder_env)
    user = new_agent(Role.SUPERVISOR)
    user.add_endpoint(EndpointKind.MOBILE, "0912345678")
    user.set_skill("billing", 4)
    user.join_department("Support")
    user.join_pickup_group("Front desk")
    user.set_extension("2002")
    user.go_available()
    user.start_interaction(uuid4())
    user.end_interaction(user.conversation_id or "", wrap_up=True)
    user.take_break("training")
    agents.save(user)

    reloaded: User = agents.repository.get(user.id)
    assert reloaded is not user
    assert {k: v for k, v in vars(reloaded).items() if k != "_pending_events"} == {
        k: v for k, v in vars(user).items() if k != "_pending_events"
    }
    assert reloaded.role is Role.SUPERVISOR and reloaded.presence is Presence.BREAK
