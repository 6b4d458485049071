"""Users and agents (OP4, AX4-AX6, AX11, AX15, CC7, CC9, CC16): who works for a tenant.

One aggregate, `User`, covers every role: a tenant admin and an agent differ in what they
may do, not in what they are. A user has a role, an extension, endpoints where calls reach
them, skills with levels (CC9), departments (AX11), pickup groups (AX15), and a presence
that follows a state machine (CC16):

    offline   -> available
    available -> break | offline | ringing (offered) | on_call (started without ringing)
    ringing   -> on_call (answered) | available (declined or timed out)
    on_call   -> wrap_up | available (ended)
    wrap_up   -> available | break
    break     -> available | offline | break (another reason)

Routing (a later step) offers a conversation only to an available agent; `offer` refuses
anyone else, so "never an agent who is not available" is enforced here, not trusted.

Decisions where the product is silent:
- Only agents and supervisors take calls. A tenant admin or operator stays offline, and a
  user whose role stops taking calls must be offline first.
- A tenant on the Basic package has no agents or supervisors (see
  domain.tenants.allows_agents); commands giving those roles take the tenant's package.
- Operators (the carrier or a dealer) are users of the operator's own space, tenant id
  "_" (the event store's system token), and nobody else lives there.
- Logins and extensions are unique per tenant, but an aggregate sees only itself: the
  read model of users checks that before a command is sent.
- Calls routed to a user ring their first endpoint, or the one they prefer for now
  (`prefer_endpoint`, an event routing reads): the browser softphone (CC7) prefers the
  user's WebRTC endpoint while a browser of theirs is registered at the switch and clears
  that when the last one leaves. Removing the preferred endpoint ends the preference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from uuid import UUID

import msgspec
from eventsourcing.domain import event

from domain.base import DomainError, TenantAggregate, TenantApplication
from domain.checks import checked_enum, clean_name
from domain.passwords import hash_password, is_password_hash
from domain.phones import normalize_phone_number
from domain.tenants import allows_agents, valid_tenant_id
from domain.vocabulary import EndpointKind, Package, Presence, Role

# The operator's users live outside every tenant, under the event store's system token.
OPERATOR_SPACE = "_"

CALL_TAKING_ROLES = frozenset({Role.AGENT, Role.SUPERVISOR})

# The presence state machine of the module docstring: from each state, where it may go.
PRESENCE_TRANSITIONS: Mapping[Presence, frozenset[Presence]] = MappingProxyType(
    {
        Presence.OFFLINE: frozenset({Presence.AVAILABLE}),
        Presence.AVAILABLE: frozenset(
            {Presence.BREAK, Presence.OFFLINE, Presence.RINGING, Presence.ON_CALL}
        ),
        Presence.RINGING: frozenset({Presence.ON_CALL, Presence.AVAILABLE}),
        Presence.ON_CALL: frozenset({Presence.WRAP_UP, Presence.AVAILABLE}),
        Presence.WRAP_UP: frozenset({Presence.AVAILABLE, Presence.BREAK}),
        # break -> break is a change of reason ("lunch", then "meeting") without an
        # available moment in between in which a call could be offered.
        Presence.BREAK: frozenset({Presence.AVAILABLE, Presence.OFFLINE, Presence.BREAK}),
    }
)

MIN_SKILL_LEVEL, MAX_SKILL_LEVEL = 1, 10
_EXTENSION = re.compile(r"^\d{2,6}$")
_LOGIN = re.compile(r"^\S{1,254}$")
_SIP_ADDRESS = re.compile(r"^\S{1,255}$")


class InvalidUser(DomainError):
    """A user command with values the domain does not accept."""


class InvalidEndpoint(InvalidUser):
    """An endpoint whose address does not fit its kind."""


class PackageHasNoAgents(DomainError):
    """The tenant's package (Basic) has nobody who takes calls through the service."""


class RoleTakesNoCalls(DomainError):
    """Only agents and supervisors take calls; other roles stay offline."""


class UserDeactivated(DomainError):
    """A deactivated user's presence cannot change."""


class InvalidPresenceTransition(DomainError):
    """The presence state machine has no such step from the user's current state."""


class AgentNotAvailable(InvalidPresenceTransition):
    """A conversation was offered to (or started by) an agent who is not available."""


class ConversationMismatch(InvalidPresenceTransition):
    """The command names another conversation than the one the agent is ringing for or on."""


class UnknownEndpoint(InvalidEndpoint):
    """The endpoint named is not one of the user's."""


class EndpointRequired(DomainError):
    """An agent who is not offline must be reachable on at least one endpoint."""


class UserNotOffline(DomainError):
    """The change needs the user offline first (e.g. a role that takes no calls)."""


class AgentBusy(DomainError):
    """The user is ringing or on a call; the change would cut a customer off."""


class Endpoint(msgspec.Struct, frozen=True):
    """Where a user is reached: a kind (AX4-AX6, CC7) and its address ("" for a browser)."""

    kind: EndpointKind
    address: str


def _endpoint(kind: EndpointKind | str, address: str) -> Endpoint:
    endpoint_kind = checked_enum(EndpointKind, kind, InvalidEndpoint)
    if not isinstance(address, str):
        raise InvalidEndpoint("an endpoint's address is text")
    if endpoint_kind is EndpointKind.MOBILE:
        return Endpoint(endpoint_kind, normalize_phone_number(address, e164=True))
    if endpoint_kind is EndpointKind.WEBRTC:
        # A browser registers itself when the agent logs in; there is nothing to dial.
        if address.strip():
            raise InvalidEndpoint("a browser (WebRTC) endpoint has no address")
        return Endpoint(endpoint_kind, "")
    if not _SIP_ADDRESS.match(address.strip()):
        raise InvalidEndpoint(f"a {endpoint_kind} endpoint needs a SIP user or URI, no spaces")
    return Endpoint(endpoint_kind, address.strip())


def _login(value: str) -> str:
    login = value.strip().lower() if isinstance(value, str) else ""
    if not _LOGIN.match(login):
        raise InvalidUser("a login (email or user name) is 1 to 254 characters, no spaces")
    return login


def _extension(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _EXTENSION.match(value):
        raise InvalidUser("an extension is 2 to 6 digits")
    return value


def skill_name(value: str, error: type[DomainError]) -> str:
    """A skill as agents have it and queues require it (CC9): matched by this name.

    Lower case, because skills are matched, not displayed.
    """
    return clean_name(value, "a skill's name", 64, error).lower()


def _conversation(value: UUID | str) -> str:
    text = str(value) if isinstance(value, UUID) else value
    if not isinstance(text, str) or not 0 < len(text.strip()) <= 128:
        raise InvalidUser("a conversation id is a UUID or 1 to 128 characters")
    return text.strip()


class User(TenantAggregate):
    """A tenant's user of any role, and for agents their reachability and presence."""

    class Created(TenantAggregate.Created):
        tenant_id: str
        name: str
        login: str
        role: str
        extension: str | None

    class RoleChanged(TenantAggregate.Event):
        role: str

    class ExtensionChanged(TenantAggregate.Event):
        extension: str | None

    class EndpointAdded(TenantAggregate.Event):
        kind: str
        address: str

    class EndpointRemoved(TenantAggregate.Event):
        kind: str
        address: str

    class EndpointPreferred(TenantAggregate.Event):
        # Calls routed to the user ring this endpoint rather than their first (CC7: a
        # browser softphone while it is registered).
        kind: str
        address: str

    class EndpointPreferenceCleared(TenantAggregate.Event):
        # The preference named is over: calls ring the first endpoint again.
        kind: str
        address: str

    class SkillSet(TenantAggregate.Event):
        skill: str
        level: int

    class SkillRemoved(TenantAggregate.Event):
        skill: str

    class DepartmentJoined(TenantAggregate.Event):
        department: str

    class DepartmentLeft(TenantAggregate.Event):
        department: str

    class PickupGroupJoined(TenantAggregate.Event):
        group: str

    class PickupGroupLeft(TenantAggregate.Event):
        group: str

    class WentAvailable(TenantAggregate.Event):
        pass

    class BreakTaken(TenantAggregate.Event):
        reason: str

    class WentOffline(TenantAggregate.Event):
        reason: str

    class Offered(TenantAggregate.Event):
        conversation_id: str

    class Answered(TenantAggregate.Event):
        conversation_id: str

    class OfferDeclined(TenantAggregate.Event):
        conversation_id: str
        reason: str

    class InteractionStarted(TenantAggregate.Event):
        conversation_id: str

    class InteractionEnded(TenantAggregate.Event):
        conversation_id: str
        wrap_up: bool

    class WrapUpFinished(TenantAggregate.Event):
        conversation_id: str

    class Deactivated(TenantAggregate.Event):
        reason: str

    class Reactivated(TenantAggregate.Event):
        pass

    class PasswordSet(TenantAggregate.Event):
        # Only the scrypt hash (domain.passwords): the event log is read by projections,
        # rebuilds and `cloudcc events`, so a plain password must never reach it.
        password_hash: str

    @classmethod
    def create(
        cls,
        tenant_id: str,
        name: str,
        login: str,
        role: Role | str,
        *,
        package: Package,
        extension: str | None = None,
    ) -> User:
        """A new, active, offline user; `package` is the tenant's, for the Basic rule."""
        chosen = checked_enum(Role, role, InvalidUser)
        if chosen is Role.OPERATOR:
            if tenant_id != OPERATOR_SPACE:
                raise InvalidUser(f"operators are users of the operator space {OPERATOR_SPACE!r}")
        elif tenant_id == OPERATOR_SPACE:
            raise InvalidUser("the operator space only has operators")
        else:
            valid_tenant_id(tenant_id)
        _check_package(chosen, package)
        return cls(
            tenant_id=tenant_id,
            name=clean_name(name, "a user's name", 200, InvalidUser),
            login=_login(login),
            role=chosen.value,
            extension=_extension(extension),
        )

    @event(Created)
    def __init__(
        self, tenant_id: str, name: str, login: str, role: str, extension: str | None
    ) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.login = login
        self.role = Role(role)
        self.extension = extension
        self.endpoints: list[Endpoint] = []
        # Rung for the calls routed to the user instead of their first endpoint.
        self.preferred_endpoint: Endpoint | None = None
        self.skills: dict[str, int] = {}
        self.departments: set[str] = set()
        self.pickup_groups: set[str] = set()
        self.presence = Presence.OFFLINE
        self.break_reason: str | None = None
        self.conversation_id: str | None = None  # the one ringing, on call or wrapped up
        self.active = True
        # Whether one was set; the hash itself is kept by the access read model, which
        # checks sign-ins, not by the aggregate, which never needs it.
        self.has_password = False

    @property
    def takes_calls(self) -> bool:
        return self.role in CALL_TAKING_ROLES

    # Mutators: one per event, no checks (they also run on replay).

    @event(RoleChanged)
    def _change_role(self, role: str) -> None:
        self.role = Role(role)

    @event(ExtensionChanged)
    def _change_extension(self, extension: str | None) -> None:
        self.extension = extension

    @event(EndpointAdded)
    def _add_endpoint(self, kind: str, address: str) -> None:
        self.endpoints.append(Endpoint(EndpointKind(kind), address))

    @event(EndpointRemoved)
    def _remove_endpoint(self, kind: str, address: str) -> None:
        removed = Endpoint(EndpointKind(kind), address)
        self.endpoints.remove(removed)
        if self.preferred_endpoint == removed:
            # An endpoint that is gone is preferred no more (read models do the same).
            self.preferred_endpoint = None

    @event(EndpointPreferred)
    def _prefer_endpoint(self, kind: str, address: str) -> None:
        self.preferred_endpoint = Endpoint(EndpointKind(kind), address)

    @event(EndpointPreferenceCleared)
    def _clear_endpoint_preference(self, kind: str, address: str) -> None:
        self.preferred_endpoint = None

    @event(SkillSet)
    def _set_skill(self, skill: str, level: int) -> None:
        self.skills[skill] = level

    @event(SkillRemoved)
    def _remove_skill(self, skill: str) -> None:
        del self.skills[skill]

    @event(DepartmentJoined)
    def _join_department(self, department: str) -> None:
        self.departments.add(department)

    @event(DepartmentLeft)
    def _leave_department(self, department: str) -> None:
        self.departments.discard(department)

    @event(PickupGroupJoined)
    def _join_pickup_group(self, group: str) -> None:
        self.pickup_groups.add(group)

    @event(PickupGroupLeft)
    def _leave_pickup_group(self, group: str) -> None:
        self.pickup_groups.discard(group)

    def _become(self, presence: Presence, conversation_id: str | None = None) -> None:
        self.presence = presence
        self.conversation_id = conversation_id
        self.break_reason = None

    @event(WentAvailable)
    def _go_available(self) -> None:
        self._become(Presence.AVAILABLE)

    @event(BreakTaken)
    def _take_break(self, reason: str) -> None:
        self._become(Presence.BREAK)
        self.break_reason = reason

    @event(WentOffline)
    def _go_offline(self, reason: str) -> None:
        self._become(Presence.OFFLINE)

    @event(Offered)
    def _offer(self, conversation_id: str) -> None:
        self._become(Presence.RINGING, conversation_id)

    @event(Answered)
    def _answer(self, conversation_id: str) -> None:
        self._become(Presence.ON_CALL, conversation_id)

    @event(OfferDeclined)
    def _decline_offer(self, conversation_id: str, reason: str) -> None:
        self._become(Presence.AVAILABLE)

    @event(InteractionStarted)
    def _start_interaction(self, conversation_id: str) -> None:
        self._become(Presence.ON_CALL, conversation_id)

    @event(InteractionEnded)
    def _end_interaction(self, conversation_id: str, wrap_up: bool) -> None:
        if wrap_up:
            self._become(Presence.WRAP_UP, conversation_id)
        else:
            self._become(Presence.AVAILABLE)

    @event(WrapUpFinished)
    def _finish_wrap_up(self, conversation_id: str) -> None:
        self._become(Presence.AVAILABLE)

    @event(Deactivated)
    def _deactivate(self, reason: str) -> None:
        self.active = False

    @event(Reactivated)
    def _reactivate(self) -> None:
        self.active = True

    @event(PasswordSet)
    def _set_password(self, password_hash: str) -> None:
        self.has_password = True

    # Profile commands. Each is idempotent when what it asks for already holds (no event).

    def set_role(self, role: Role | str, *, package: Package) -> None:
        """Change the role; `package` is the tenant's, for the Basic rule."""
        chosen = checked_enum(Role, role, InvalidUser)
        if chosen is self.role:
            return
        if Role.OPERATOR in (chosen, self.role):
            raise InvalidUser("nobody becomes or stops being an operator; create a new user")
        _check_package(chosen, package)
        if chosen not in CALL_TAKING_ROLES and self.presence is not Presence.OFFLINE:
            raise UserNotOffline(f"a {chosen} takes no calls: go offline first")
        self._change_role(chosen.value)

    def set_extension(self, extension: str | None) -> None:
        """Give the user an extension (CC1), or none."""
        wanted = _extension(extension)
        if wanted != self.extension:
            self._change_extension(wanted)

    def add_endpoint(self, kind: EndpointKind | str, address: str = "") -> None:
        endpoint = _endpoint(kind, address)
        if endpoint not in self.endpoints:
            self._add_endpoint(endpoint.kind.value, endpoint.address)

    def remove_endpoint(self, kind: EndpointKind | str, address: str = "") -> None:
        endpoint = _endpoint(kind, address)
        if endpoint not in self.endpoints:
            return
        if len(self.endpoints) == 1 and self.presence is not Presence.OFFLINE:
            raise EndpointRequired("the last endpoint of a user who is not offline stays")
        self._remove_endpoint(endpoint.kind.value, endpoint.address)

    def prefer_endpoint(self, kind: EndpointKind | str, address: str = "") -> None:
        """Ring this endpoint of the user's for the calls routed to them, rather than the
        first one (CC7: the browser softphone while a browser of theirs is registered)."""
        endpoint = _endpoint(kind, address)
        if endpoint not in self.endpoints:
            raise UnknownEndpoint(f"the user has no {endpoint.kind} endpoint {endpoint.address!r}")
        if endpoint != self.preferred_endpoint:
            self._prefer_endpoint(endpoint.kind.value, endpoint.address)

    def clear_endpoint_preference(self, kind: EndpointKind | str, address: str = "") -> None:
        """Stop preferring this endpoint: calls ring the first one again. Nothing happens
        when another endpoint (or none) is preferred by now."""
        endpoint = _endpoint(kind, address)
        if endpoint == self.preferred_endpoint:
            self._clear_endpoint_preference(endpoint.kind.value, endpoint.address)

    def set_skill(self, skill: str, level: int) -> None:
        """Give a skill a level from 1 (novice) to 10 (expert), for routing by skill (CC9)."""
        name = skill_name(skill, InvalidUser)
        if type(level) is not int or not MIN_SKILL_LEVEL <= level <= MAX_SKILL_LEVEL:
            raise InvalidUser(
                f"a skill level is a whole number {MIN_SKILL_LEVEL}-{MAX_SKILL_LEVEL}"
            )
        if self.skills.get(name) != level:
            self._set_skill(name, level)

    def remove_skill(self, skill: str) -> None:
        name = skill_name(skill, InvalidUser)
        if name in self.skills:
            self._remove_skill(name)

    def join_department(self, department: str) -> None:
        name = clean_name(department, "a department's name", 64, InvalidUser)
        if name not in self.departments:
            self._join_department(name)

    def leave_department(self, department: str) -> None:
        name = clean_name(department, "a department's name", 64, InvalidUser)
        if name in self.departments:
            self._leave_department(name)

    def join_pickup_group(self, group: str) -> None:
        name = clean_name(group, "a pickup group's name", 64, InvalidUser)
        if name not in self.pickup_groups:
            self._join_pickup_group(name)

    def leave_pickup_group(self, group: str) -> None:
        name = clean_name(group, "a pickup group's name", 64, InvalidUser)
        if name in self.pickup_groups:
            self._leave_pickup_group(name)

    def deactivate(self, reason: str = "") -> None:
        """Stop the user working; signs them out, but never mid-interaction."""
        if not self.active:
            return
        if self.presence in (Presence.RINGING, Presence.ON_CALL):
            raise AgentBusy(f"the user is {self.presence}; deactivate once the call is over")
        if self.presence is not Presence.OFFLINE:
            # Deactivation signs out from any idle state, wrap-up included, which the
            # agent's own go_offline may not: the agent is leaving, not pausing.
            self._go_offline("deactivated")
        self._deactivate(reason.strip())

    def reactivate(self) -> None:
        if not self.active:
            self._reactivate()

    def set_password(self, password_hash: str) -> None:
        """Set the password the user signs in with (OP4), as `hash_password` made it.

        Always recorded, even for the same password: a new salt makes a new hash, and a
        reset is worth its line in the history.
        """
        if not is_password_hash(password_hash):
            raise InvalidUser("a password is set as its hash (domain.passwords.hash_password)")
        self._set_password(password_hash)

    # Presence commands (CC16). Going to the state one is in is a no-op; the steps of an
    # interaction name their conversation and are strict.

    def go_available(self) -> None:
        self._check_active()
        if self.presence is Presence.AVAILABLE:
            return
        if self.presence is Presence.WRAP_UP:
            self.finish_wrap_up()
            return
        if self.presence in (Presence.RINGING, Presence.ON_CALL):
            # These steps belong to a conversation: decline_offer or end_interaction.
            raise InvalidPresenceTransition(f"the agent is {self.presence}; end that first")
        if not self.takes_calls:
            raise RoleTakesNoCalls(f"a {self.role} takes no calls and stays offline")
        if not self.endpoints:
            raise EndpointRequired("add an endpoint before going available")
        self._check_transition(Presence.AVAILABLE)
        self._go_available()

    def take_break(self, reason: str) -> None:
        """Pause (e.g. "lunch"); the reason is shown to supervisors (CC16)."""
        self._check_active()
        why = clean_name(reason, "a break reason", 100, InvalidUser)
        if self.presence is Presence.BREAK and self.break_reason == why:
            return
        self._check_transition(Presence.BREAK)
        self._take_break(why)

    def go_offline(self, reason: str = "") -> None:
        self._check_active()
        if self.presence is Presence.OFFLINE:
            return
        self._check_transition(Presence.OFFLINE)
        self._go_offline(reason.strip())

    def offer(self, conversation_id: UUID | str) -> None:
        """Ring this agent for a conversation; only an available agent is offered one."""
        self._check_active()
        conversation = _conversation(conversation_id)
        if self.presence is not Presence.AVAILABLE:
            raise AgentNotAvailable(f"the agent is {self.presence}, not available")
        self._offer(conversation)

    def answer(self, conversation_id: UUID | str) -> None:
        self._check_in(Presence.RINGING, conversation_id)
        self._answer(_conversation(conversation_id))

    def decline_offer(self, conversation_id: UUID | str, reason: str = "rejected") -> None:
        """Stop ringing without answering: rejected by the agent, or "timed_out"."""
        self._check_in(Presence.RINGING, conversation_id)
        why = clean_name(reason, "a reason", 100, InvalidUser)
        self._decline_offer(_conversation(conversation_id), why)

    def start_interaction(self, conversation_id: UUID | str) -> None:
        """Go on a call without ringing: an outbound call, or an auto-answered one."""
        self._check_active()
        conversation = _conversation(conversation_id)
        if self.presence is not Presence.AVAILABLE:
            raise AgentNotAvailable(f"the agent is {self.presence}, not available")
        self._start_interaction(conversation)

    def end_interaction(self, conversation_id: UUID | str, wrap_up: bool = True) -> None:
        """The call is over: to wrap-up (notes, CC6) or straight back to available."""
        self._check_in(Presence.ON_CALL, conversation_id)
        self._end_interaction(_conversation(conversation_id), bool(wrap_up))

    def finish_wrap_up(self) -> None:
        self._check_active()
        if self.presence is not Presence.WRAP_UP:
            raise InvalidPresenceTransition(f"the agent is {self.presence}, not in wrap-up")
        self._finish_wrap_up(self.conversation_id or "")

    def _check_active(self) -> None:
        if not self.active:
            raise UserDeactivated("a deactivated user's presence cannot change")

    def _check_transition(self, to: Presence) -> None:
        if to not in PRESENCE_TRANSITIONS[self.presence]:
            raise InvalidPresenceTransition(f"no step from {self.presence} to {to}")

    def _check_in(self, presence: Presence, conversation_id: UUID | str) -> None:
        self._check_active()
        if self.presence is not presence:
            raise InvalidPresenceTransition(f"the agent is {self.presence}, not {presence}")
        if _conversation(conversation_id) != self.conversation_id:
            raise ConversationMismatch(
                f"the agent is {presence} for {self.conversation_id}, not {conversation_id}"
            )


def _check_package(role: Role, package: Package) -> None:
    tenant_package = checked_enum(Package, package, InvalidUser)
    if role in CALL_TAKING_ROLES and not allows_agents(tenant_package):
        raise PackageHasNoAgents(f"the {package} package has no {role}s (SIP trunk only)")


class Agents(TenantApplication):
    """The user and presence verbs; returns ids and plain dicts, never aggregates."""

    name = "agents"

    def create_user(
        self,
        tenant_id: str,
        name: str,
        login: str,
        role: Role | str,
        *,
        package: Package,
        extension: str | None = None,
    ) -> UUID:
        """Create a user; `package` is the tenant's (Tenants.get), for the Basic rule."""
        user = User.create(tenant_id, name, login, role, package=package, extension=extension)
        self.save(user)
        return user.id

    def set_role(
        self, tenant_id: str, user_id: UUID, role: Role | str, *, package: Package
    ) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.set_role(role, package=package))

    def set_extension(self, tenant_id: str, user_id: UUID, extension: str | None) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.set_extension(extension))

    def add_endpoint(
        self, tenant_id: str, user_id: UUID, kind: EndpointKind | str, address: str = ""
    ) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.add_endpoint(kind, address))

    def remove_endpoint(
        self, tenant_id: str, user_id: UUID, kind: EndpointKind | str, address: str = ""
    ) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.remove_endpoint(kind, address))

    def prefer_endpoint(
        self, tenant_id: str, user_id: UUID, kind: EndpointKind | str, address: str = ""
    ) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.prefer_endpoint(kind, address))

    def clear_endpoint_preference(
        self, tenant_id: str, user_id: UUID, kind: EndpointKind | str, address: str = ""
    ) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.clear_endpoint_preference(kind, address))

    def set_skill(self, tenant_id: str, user_id: UUID, skill: str, level: int) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.set_skill(skill, level))

    def remove_skill(self, tenant_id: str, user_id: UUID, skill: str) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.remove_skill(skill))

    def join_department(self, tenant_id: str, user_id: UUID, department: str) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.join_department(department))

    def leave_department(self, tenant_id: str, user_id: UUID, department: str) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.leave_department(department))

    def join_pickup_group(self, tenant_id: str, user_id: UUID, group: str) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.join_pickup_group(group))

    def leave_pickup_group(self, tenant_id: str, user_id: UUID, group: str) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.leave_pickup_group(group))

    def go_available(self, tenant_id: str, user_id: UUID) -> None:
        self.change(tenant_id, user_id, User, User.go_available)

    def take_break(self, tenant_id: str, user_id: UUID, reason: str) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.take_break(reason))

    def go_offline(self, tenant_id: str, user_id: UUID, reason: str = "") -> None:
        self.change(tenant_id, user_id, User, lambda u: u.go_offline(reason))

    def offer(self, tenant_id: str, user_id: UUID, conversation_id: UUID | str) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.offer(conversation_id))

    def answer(self, tenant_id: str, user_id: UUID, conversation_id: UUID | str) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.answer(conversation_id))

    def decline_offer(
        self,
        tenant_id: str,
        user_id: UUID,
        conversation_id: UUID | str,
        reason: str = "rejected",
    ) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.decline_offer(conversation_id, reason))

    def start_interaction(self, tenant_id: str, user_id: UUID, conversation_id: UUID | str) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.start_interaction(conversation_id))

    def end_interaction(
        self,
        tenant_id: str,
        user_id: UUID,
        conversation_id: UUID | str,
        wrap_up: bool = True,
    ) -> None:
        self.change(tenant_id, user_id, User, lambda u: u.end_interaction(conversation_id, wrap_up))

    def finish_wrap_up(self, tenant_id: str, user_id: UUID) -> None:
        self.change(tenant_id, user_id, User, User.finish_wrap_up)

    def deactivate(self, tenant_id: str, user_id: UUID, reason: str = "") -> None:
        self.change(tenant_id, user_id, User, lambda u: u.deactivate(reason))

    def reactivate(self, tenant_id: str, user_id: UUID) -> None:
        self.change(tenant_id, user_id, User, User.reactivate)

    def set_password(self, tenant_id: str, user_id: UUID, password: str) -> None:
        """Set a user's password; it is hashed here, so only the hash reaches the event."""
        self.get_owned(tenant_id, user_id, User)  # an unknown user before the slow hash
        password_hash = hash_password(password)
        self.change(tenant_id, user_id, User, lambda u: u.set_password(password_hash))

    def get(self, tenant_id: str, user_id: UUID) -> dict[str, object]:
        user = self.get_owned(tenant_id, user_id, User)
        return {
            "id": str(user.id),
            "tenant_id": user.tenant_id,
            "name": user.name,
            "login": user.login,
            "role": user.role.value,
            "extension": user.extension,
            "endpoints": [{"kind": e.kind.value, "address": e.address} for e in user.endpoints],
            "preferred_endpoint": None
            if user.preferred_endpoint is None
            else {
                "kind": user.preferred_endpoint.kind.value,
                "address": user.preferred_endpoint.address,
            },
            "skills": dict(sorted(user.skills.items())),
            "departments": sorted(user.departments),
            "pickup_groups": sorted(user.pickup_groups),
            "presence": user.presence.value,
            "break_reason": user.break_reason,
            "conversation_id": user.conversation_id,
            "takes_calls": user.takes_calls,
            "active": user.active,
            "has_password": user.has_password,
            "version": user.version,
        }
