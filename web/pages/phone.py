"""The agent's phone (CC4-CC7): the incoming-call pop, call controls, notes, click-to-call
and the browser softphone.

- `GET /t/<tenant>/phone/events` is a server-sent event stream of what the switch reports
  about the signed-in user's own calls: a call rings them (or they dial out), is
  answered, held, resumed, muted, recorded, transferred, ended. It reads the call facts
  of the user's tenant (`facts.<tenant>.call`, connectors.facts) and keeps those about a
  leg of that user; tenant and user come from the session, never from the browser. A
  "ringing" or "dialing" event is sent once the domain knows the leg, so the pop it
  causes can be drawn from the domain at once, and it carries the call's information.
- `GET /t/<tenant>/phone/calls/<id>` draws one call (`?fragment=1`: the panel's part
  alone): caller, hotline, queue, IVR path, wait, the customer known by that number with
  the last of their timeline, the call's notes and the controls. Only for someone who
  has been on the call; another tenant's id, or an unknown one, is not found.
- `POST /t/<tenant>/phone/calls/<id>/<action>` (JSON or a form) acts on a call the user
  is on: hold, resume, mute, unmute, record, stop-recording, hangup, transfer (to an
  active agent or supervisor of the tenant, anyone else being not found, or an outside
  number) publish the telephony command (telephony_bridge.commands) for the bridge;
  note saves a note on the call (domain).
  Attended transfer: consult (a target as for transfer) publishes ConsultTransfer: the
  customer is held while the user talks with the consulted agent or number (whose pop
  rings as for a transfer). Then, for the user consulting only: complete-transfer
  (CompleteTransfer: the consulted party takes the customer, the user leaves),
  cancel-transfer (CancelTransfer: back to the customer, the consult leg dropped) or
  three-way (ThreeWay: the three talk together). Complete and three-way wait for the
  consulted party to answer; a blind transfer, a resume or a second consult wait for the
  consult to be over. In a three-way call, leave hangs up the user's leg alone (on the
  built-in switch; with FreeSWITCH, their own phone does), where hangup ends the call
  for everyone. The stream tells the consulting user `consulting`, `consult_answered`,
  `consult_cancelled` (also when the consulted party hangs up), `transferred`, and both
  of them `conference`; the consulted user `transfer_completed` once the call is theirs.
  A call the user is not on is 403, an ended one or a wrong state 409, bad input 400.
- `POST /t/<tenant>/phone/dial` with `number` and/or `customer_id`: click-to-call (AX2):
  the user's phone rings first, then the customer (`Originate`); with both, the number
  must be one of the customer's (as domain.phones normalises them), or it is a 400. A form post is sent
  back (303) to `back` or else the page it came from (the Referer), if either is a page
  of the tenant, or else to the home page.
- The softphone (CC7): the stream with `?softphone=1` registers the browser at the user's
  WebRTC address on the built-in switch (its NATS panel, telephony_bridge.switchctl),
  which then lets that address ring until the browser answers; `answer`, `decline` and
  `dtmf` act on the user's leg there. While a browser of the user's is registered, their
  calls ring there: registering makes the WebRTC endpoint the one they prefer
  (`User.prefer_endpoint`, an event routing reads instead of ringing their first
  endpoint), and when the switch says the last browser at the address left, the stream
  that leaves clears that (`User.clear_endpoint_preference`): calls go to their first
  endpoint (a desk phone, say) again; so it does if the switch cannot say (a stream
  cancelled while registering lets go all the same, and each step of its end runs even
  if one before it failed). A process that died took its streams' ends with it: the
  process that runs the built-in switch clears every browser preference as it starts
  (`forget_browsers`), since no browser is registered at a switch that just started.
  Per address, registering and leaving are done one at a time, so a tab that opens as
  another closes never ends up unpreferred. A transfer
  to the user rings the same endpoint; click-to-call still rings their first one (its
  leg is off the hook from the start, so a browser could not pick it up). Signalling
  only: the built-in switch carries no audio, and with FreeSWITCH the browser would need
  a SIP/WebRTC client of its own (`softphone: unavailable` is then what the stream says,
  and nothing is preferred). `POST /t/<tenant>/phone/softphone` adds a WebRTC endpoint
  to a user who has none (after their other endpoints; the stream then prefers it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections import defaultdict
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit
from uuid import UUID, uuid4

import anyio
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.response import Redirect, ServerSentEvent, Template
from litestar.status_codes import (
    HTTP_202_ACCEPTED,
    HTTP_400_BAD_REQUEST,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError

from connectors import facts
from domain.apps import DomainApps
from domain.asyncapp import AsyncRunner
from domain.base import DomainError, NotFound
from domain.calls import MAX_CALL_NOTE, Call
from domain.phones import InvalidPhoneNumber, normalize_phone_number
from domain.vocabulary import EndpointKind
from eventstore.layout import tenant_token
from projections.access import AccessReadModel, Principal
from projections.boards import AgentBoardReadModel
from projections.customers import CustomersReadModel
from projections.routing_state import RoutingState
from projections.timeline import TimelineReadModel
from telephony_bridge import commands
from web.pages.auth import (
    PAGE_EXCEPTION_HANDLERS,
    home_url,
    page,
    page_language,
    principal_of,
    signed_in_guard,
)
from web.pages.i18n import translate
from web.pages.owned import is_uuid, own_page

log = logging.getLogger(__name__)

PHONE_ROLES = frozenset({"agent", "supervisor"})
HISTORY = 5  # timeline entries in the pop (CC5)
# How long the stream waits for the domain to record a leg the switch reported.
DOMAIN_LAG_SECONDS = 5.0
PANEL = "switch.builtin"
PANEL_TIMEOUT = 3.0
DTMF_KEYS = frozenset("0123456789*#")

_call_facts = msgspec.json.Decoder(facts.CallFact)


class PhoneRefused(Exception):
    """A phone request refused, with a message key (web.pages.texts.phone); raised as the
    subclass of its HTTP status (`refusal`), since the status is a class's attribute for
    web.app to log it without a traceback."""

    status_code = HTTP_400_BAD_REQUEST
    # Whether the request refused may have reached the switch all the same (no answer).
    maybe_delivered = False

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key, self.values = key, values


class _Forbidden(PhoneRefused):
    status_code = HTTP_403_FORBIDDEN


class _NotFound(PhoneRefused):
    status_code = HTTP_404_NOT_FOUND


class _Conflict(PhoneRefused):
    status_code = HTTP_409_CONFLICT


class _Unavailable(PhoneRefused):
    status_code = HTTP_503_SERVICE_UNAVAILABLE


_REFUSALS: dict[int, type[PhoneRefused]] = {
    cls.status_code: cls for cls in (PhoneRefused, _Forbidden, _NotFound, _Conflict, _Unavailable)
}


def refusal(status: int, key: str, **values: Any) -> PhoneRefused:
    return _REFUSALS[status](key, **values)


class ControlForm(msgspec.Struct, kw_only=True):
    """Every control's body; each uses its own fields, the others are ignored."""

    agent_id: str = ""
    number: str = ""
    body: str = ""
    key: str = ""
    digit: str = ""
    back: str = ""


class DialForm(msgspec.Struct, kw_only=True):
    number: str = ""
    customer_id: str = ""
    back: str = ""


def phone_router(
    access: AccessReadModel,
    customers: CustomersReadModel,
    timeline: TimelineReadModel,
    agents: AgentBoardReadModel,
    apps: Callable[[], DomainApps],
    runner: AsyncRunner,
    nats: Callable[[], NatsClient],
) -> Router:
    # Per softphone address: its registrations and the preference that follows them, one
    # stream at a time (a browser's tab opening as another closes).
    softphone_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def allowed(request: Request[Any, Any, Any]) -> Principal:
        principal = principal_of(request)
        if principal.role not in PHONE_ROLES:
            raise refusal(HTTP_403_FORBIDDEN, "phone.role_only")
        return principal

    async def load_call(principal: Principal, call_id: str) -> dict[str, Any]:
        """The call if this user has been on it; 404 unknown (or another tenant's), 403
        someone else's."""
        try:
            cid = UUID(call_id)
        except ValueError:
            raise refusal(HTTP_404_NOT_FOUND, "phone.no_call") from None
        try:
            call: dict[str, Any] = await runner(apps().calls.get, principal.tenant_id, cid)
        except NotFound:
            raise refusal(HTTP_404_NOT_FOUND, "phone.no_call") from None
        if not _legs_of(call, principal.user_id):
            raise refusal(HTTP_403_FORBIDDEN, "phone.not_your_call")
        return call

    async def my_leg(principal: Principal, call_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The live call and this user's live leg on it; 409 when either is gone."""
        call = await load_call(principal, call_id)
        if call["ended_at"]:
            raise refusal(HTTP_409_CONFLICT, "phone.call_ended")
        live = [leg for leg in _legs_of(call, principal.user_id) if not leg["ended_at"]]
        if not live:
            raise refusal(HTTP_409_CONFLICT, "phone.left_call")
        return call, live[-1]

    async def publish(command: commands.Command) -> None:
        nc = nats()
        await nc.publish(commands.subject(command.tenant_id, command), commands.encode(command))

    async def ask_switch(verb: str, request: dict[str, Any]) -> dict[str, Any]:
        """The built-in switch's panel; 503 when there is none (FreeSWITCH), 409 when it
        refuses (the leg is gone, say)."""
        try:
            reply = await nats().request(
                f"{PANEL}.{verb}", msgspec.json.encode(request), PANEL_TIMEOUT
            )
        except NoRespondersError:
            raise refusal(HTTP_503_SERVICE_UNAVAILABLE, "phone.no_softphone") from None
        except (NatsError, TimeoutError):
            unanswered = refusal(HTTP_503_SERVICE_UNAVAILABLE, "phone.no_softphone")
            unanswered.maybe_delivered = True
            raise unanswered from None
        answer: dict[str, Any] = msgspec.json.decode(reply.data)
        if "error" in answer:
            raise refusal(HTTP_409_CONFLICT, "phone.switch_refused", reason=answer["error"])
        return answer

    async def call_context(principal: Principal, call: dict[str, Any]) -> dict[str, Any]:
        tenant = principal.tenant_id
        info = await pop_info(principal, call)
        known = _customers_by_number(customers, tenant, call["customer_number"])
        history = timeline.for_customer(tenant, known[0]["id"], limit=HISTORY) if known else []
        mine = _legs_of(call, principal.user_id)
        live = [leg for leg in mine if not leg["ended_at"]]
        leg = live[-1] if live else mine[-1]
        board = agents.board(tenant)
        colleagues = [
            a
            for a in board
            if a["id"] != principal.user_id and a.get("role") in ("agent", "supervisor")
        ]
        names = {a["id"]: a["name"] for a in board}
        on_call = bool(live) and not call["ended_at"]
        return {
            "tenant": tenant,
            "call": call,
            "info": info,
            "leg": leg,
            "off_hook": _off_hook(call, leg),
            "on_call": on_call,
            **_consult_state(call, leg, names, on_call=on_call),
            "customer": known[0] if known else None,
            "others": known[1:],
            "history": history,
            "colleagues": colleagues,
            "note_limit": MAX_CALL_NOTE,
            "note_key": str(uuid4()),
            "base": f"{home_url(tenant)}phone/calls/{call['id']}",
        }

    async def respond(
        request: Request[Any, Any, Any], payload: dict[str, Any], back: str
    ) -> Response[Any]:
        if _wants_json(request):
            return Response(payload, status_code=HTTP_202_ACCEPTED)
        return Redirect(back, status_code=303)

    @get("/t/{tenant_id:str}/phone/calls/{call_id:str}", include_in_schema=False)
    async def call_page(request: Request[Any, Any, Any], tenant_id: str, call_id: str) -> Template:
        principal = allowed(request)
        call = await load_call(principal, call_id)
        context = await call_context(principal, call)
        fragment = request.query_params.get("fragment") == "1"
        return page(request, "phone_call_info.html" if fragment else "phone_call.html", **context)

    @post("/t/{tenant_id:str}/phone/calls/{call_id:str}/{action:str}", include_in_schema=False)
    async def control(
        request: Request[Any, Any, Any], tenant_id: str, call_id: str, action: str
    ) -> Response[Any]:
        principal = allowed(request)
        form = await _body(request, ControlForm)
        back = own_page(principal.tenant_id, form.back) or (
            f"{home_url(principal.tenant_id)}phone/calls/{quote(call_id, safe='')}"
        )
        if action == "note":
            return await add_note(request, principal, call_id, form, back)
        if action not in _ACTIONS:
            raise refusal(HTTP_404_NOT_FOUND, "phone.no_action", action=action)
        call, leg = await my_leg(principal, call_id)
        tenant, ref = principal.tenant_id, call["call_ref"]
        head: dict[str, Any] = {"command_id": str(uuid4()), "tenant_id": tenant, "call_ref": ref}
        answered = _off_hook(call, leg)
        softphone = leg["endpoint"] == EndpointKind.WEBRTC.value
        if action == "answer":
            if answered:
                raise refusal(HTTP_409_CONFLICT, "phone.already_answered")
            if not softphone:
                raise refusal(HTTP_409_CONFLICT, "phone.answer_on_your_phone")
            await ask_switch("answer", {"channel_id": leg["leg_id"]})
            return await respond(request, {"done": action, "leg_id": leg["leg_id"]}, back)
        if action == "decline":
            if answered or not softphone:
                raise refusal(HTTP_409_CONFLICT, "phone.cannot_decline")
            await ask_switch("hangup", {"channel_id": leg["leg_id"], "cause": "CALL_REJECTED"})
            return await respond(request, {"done": action, "leg_id": leg["leg_id"]}, back)
        if not answered or not call["answered_at"]:
            raise refusal(HTTP_409_CONFLICT, "phone.not_answered")
        consulting = call["consulting"]
        if consulting and consulting[1] == leg["leg_id"] and action not in ("mute", "unmute"):
            # The colleague being consulted talks with the agent only; the call, its
            # customer and its recording stay the consulting agent's.
            raise refusal(HTTP_409_CONFLICT, "phone.consulted_only_mute")
        if action == "leave" and _originates(call, leg):
            # The leg that dialled a call holds it up: the bridge ends the call with it,
            # so leaving a three-way call from it would drop the other two.
            raise refusal(HTTP_409_CONFLICT, "phone.not_from_outbound")
        if action == "dtmf":
            if form.digit not in DTMF_KEYS or len(form.digit) != 1:
                raise refusal(HTTP_400_BAD_REQUEST, "phone.bad_digit")
            if not softphone:
                raise refusal(HTTP_409_CONFLICT, "phone.answer_on_your_phone")
            await ask_switch("dtmf", {"channel_id": leg["leg_id"], "digit": form.digit})
            return await respond(request, {"done": action, "digit": form.digit}, back)
        if action == "leave":
            # Out of a three-way call, the other two talking on: the user's leg alone is
            # hung up, as their own phone would (the built-in switch's panel).
            if not _consult_state(call, leg, {}, on_call=True)["three_way"]:
                raise refusal(HTTP_409_CONFLICT, "phone.not_three_way")
            try:
                await ask_switch(
                    "hangup", {"channel_id": leg["leg_id"], "cause": "NORMAL_CLEARING"}
                )
            except _Unavailable as unavailable:
                refused = refusal(HTTP_503_SERVICE_UNAVAILABLE, "phone.leave_on_your_phone")
                refused.maybe_delivered = unavailable.maybe_delivered
                raise refused from None
            return await respond(request, {"done": action, "leg_id": leg["leg_id"]}, back)
        if consulting and action in ("resume", "transfer", "consult"):
            # The customer waits on hold for the consult to be completed or cancelled.
            raise refusal(HTTP_409_CONFLICT, "phone.consulting_now")
        command: commands.Command
        if action in ("complete-transfer", "cancel-transfer", "three-way"):
            if not consulting or consulting[0] != leg["leg_id"]:
                raise refusal(HTTP_409_CONFLICT, "phone.not_consulting")
            consult_leg = _leg_by_id(call, consulting[1])
            answered_consult = consult_leg is not None and bool(consult_leg["answered_at"])
            if action != "cancel-transfer" and not answered_consult:
                raise refusal(HTTP_409_CONFLICT, "phone.consult_not_answered")
            verb = _CONSULT_COMMANDS[action]
            command = verb(**head)
        elif action == "hold":
            if call["held"]:
                raise refusal(HTTP_409_CONFLICT, "phone.already_held")
            command = commands.HoldCall(**head)
        elif action == "resume":
            if not call["held"]:
                raise refusal(HTTP_409_CONFLICT, "phone.not_held")
            command = commands.ResumeCall(**head)
        elif action == "mute":
            command = commands.MuteLeg(**head, leg_id=leg["leg_id"])
        elif action == "unmute":
            command = commands.UnmuteLeg(**head, leg_id=leg["leg_id"])
        elif action == "record":
            if any(r["stopped_at"] is None for r in call["recordings"]):
                raise refusal(HTTP_409_CONFLICT, "phone.already_recording")
            command = commands.StartRecording(**head)
        elif action == "stop-recording":
            if not any(r["stopped_at"] is None for r in call["recordings"]):
                raise refusal(HTTP_409_CONFLICT, "phone.not_recording")
            command = commands.StopRecording(**head)
        elif action == "hangup":
            command = commands.HangUpCall(**head)
        elif action == "consult":
            target = await transfer_target(principal, form)
            command = commands.ConsultTransfer(**head, from_leg_id=leg["leg_id"], to=target)
        else:  # transfer
            target = await transfer_target(principal, form)
            command = commands.TransferCall(**head, from_leg_id=leg["leg_id"], to=target)
        await publish(command)
        return await respond(
            request, {"done": action, "command_id": command.command_id, "call_ref": ref}, back
        )

    async def transfer_target(principal: Principal, form: ControlForm) -> commands.Target:
        if form.agent_id and form.number:
            raise refusal(HTTP_400_BAD_REQUEST, "phone.one_target")
        if form.number:
            try:
                number = normalize_phone_number(form.number.strip(), e164=True)
            except InvalidPhoneNumber:
                raise refusal(HTTP_400_BAD_REQUEST, "phone.bad_number") from None
            return commands.Target(address=number)
        if not form.agent_id:
            raise refusal(HTTP_400_BAD_REQUEST, "phone.no_target")
        if form.agent_id == principal.user_id:
            raise refusal(HTTP_400_BAD_REQUEST, "phone.not_to_yourself")
        target = await user_of_tenant(principal.tenant_id, form.agent_id, colleague=True)
        kind, address = _endpoint_of(target, rung=True)
        return commands.Target(agent_id=UUID(target["id"]), endpoint_kind=kind, address=address)

    async def user_of_tenant(
        tenant: str, user_id: str, *, colleague: bool = False
    ) -> dict[str, Any]:
        """A user of the tenant with a phone; a `colleague` (a call is handed to them)
        must also be active and take calls (an agent or a supervisor): anyone else is as
        unknown as a user who is not there."""
        try:
            found: dict[str, Any] = await runner(apps().agents.get, tenant, UUID(user_id))
        except (NotFound, ValueError):
            raise refusal(HTTP_404_NOT_FOUND, "phone.no_agent") from None
        if colleague and not (found["active"] and found["role"] in PHONE_ROLES):
            raise refusal(HTTP_404_NOT_FOUND, "phone.no_agent")
        if not found["endpoints"]:
            raise refusal(HTTP_409_CONFLICT, "phone.agent_has_no_phone")
        return found

    async def add_note(
        request: Request[Any, Any, Any],
        principal: Principal,
        call_id: str,
        form: ControlForm,
        back: str,
    ) -> Response[Any]:
        call = await load_call(principal, call_id)
        body = form.body.strip()
        if not body:
            raise refusal(HTTP_400_BAD_REQUEST, "phone.empty_note")
        if len(body) > MAX_CALL_NOTE:
            raise refusal(HTTP_400_BAD_REQUEST, "phone.note_too_long", limit=MAX_CALL_NOTE)
        # A key the form did not bring is a new note; the same key twice is one note.
        key = form.key if is_uuid(form.key) else str(uuid4())
        try:
            await runner(
                apps().calls.add_note,
                principal.tenant_id,
                UUID(call["id"]),
                UUID(principal.user_id),
                body,
                datetime.now(UTC),
                f"web-note-{key}",
            )
        except DomainError as e:
            raise refusal(HTTP_409_CONFLICT, "phone.refused", reason=str(e)) from None
        return await respond(request, {"done": "note", "call_id": call["id"]}, back)

    @post("/t/{tenant_id:str}/phone/dial", include_in_schema=False)
    async def dial(request: Request[Any, Any, Any], tenant_id: str) -> Response[Any]:
        principal = allowed(request)
        form = await _body(request, DialForm)
        tenant = principal.tenant_id
        customer_id: UUID | None = None
        number = form.number.strip()
        if form.customer_id:
            found = customers.get(tenant, form.customer_id) if is_uuid(form.customer_id) else None
            if found is None:
                raise refusal(HTTP_404_NOT_FOUND, "phone.no_customer")
            customer_id = UUID(found["id"])
            phones = [value for kind, value in found["identities"] if kind == "phone"]
            if not number:
                if not phones:
                    raise refusal(HTTP_409_CONFLICT, "phone.customer_has_no_phone")
                number = phones[0]
            else:
                # The call is the customer's: only to a number of theirs, as the domain
                # normalises phones, never another number filed under their name.
                try:
                    wanted = normalize_phone_number(number)
                except InvalidPhoneNumber:
                    raise refusal(HTTP_400_BAD_REQUEST, "phone.bad_number") from None
                if not any(_same_number(phone, wanted) for phone in phones):
                    raise refusal(HTTP_400_BAD_REQUEST, "phone.not_customers_number")
        if not number:
            raise refusal(HTTP_400_BAD_REQUEST, "phone.no_number")
        try:
            number = normalize_phone_number(number, e164=True)
        except InvalidPhoneNumber:
            raise refusal(HTTP_400_BAD_REQUEST, "phone.bad_number") from None
        try:
            me = await user_of_tenant(tenant, principal.user_id)
        except _Conflict:
            raise refusal(HTTP_409_CONFLICT, "phone.you_have_no_phone") from None
        kind, address = _endpoint_of(me)
        command = commands.Originate(
            command_id=str(uuid4()),
            tenant_id=tenant,
            hotline=None,
            to_number=number,
            agent_id=UUID(principal.user_id),
            agent_endpoint_kind=kind,
            agent_address=address,
            customer_id=customer_id,
        )
        await publish(command)
        # Back where the button was (the customer's page), if that is one of the tenant's.
        referer = urlsplit(request.headers.get("referer", ""))
        came_from = referer.path + (f"?{referer.query}" if referer.query else "")
        back = own_page(tenant, form.back) or own_page(tenant, came_from) or home_url(tenant)
        return await respond(
            request, {"done": "dial", "command_id": command.command_id, "number": number}, back
        )

    @get("/t/{tenant_id:str}/phone/events", include_in_schema=False)
    async def events(request: Request[Any, Any, Any], tenant_id: str) -> ServerSentEvent:
        principal = allowed(request)
        # From the session's user (the guard made sure the tenant is the path's): the wall.
        address: str | None = None  # None: no softphone asked for
        if request.query_params.get("softphone") == "1":
            address = ""  # no browser phone, unless the user has one
            with contextlib.suppress(NotFound, ValueError):
                me = await runner(apps().agents.get, principal.tenant_id, UUID(principal.user_id))
                address = _webrtc_address(me)
        return ServerSentEvent(pop_stream(principal, address))

    async def pop_stream(principal: Principal, softphone: str | None) -> AsyncGenerator[str, None]:
        tenant, user = principal.tenant_id, principal.user_id
        nc = nats()
        sub = await nc.subscribe(f"facts.{tenant_token(tenant)}.call")
        # Whether a registration may have reached the switch: set before asking, since a
        # stream cancelled while the switch answers must still let it go.
        register_sent = False
        try:
            yield json.dumps({"kind": "hello"})
            if softphone is not None:
                state = "no_endpoint"
                if softphone:
                    async with softphone_locks[softphone]:
                        registered = False
                        try:
                            register_sent = True
                            await ask_switch("register", {"address": softphone})
                            registered, state = True, "registered"
                        except PhoneRefused as refused:
                            # No switch, or it said no: nothing counted. No answer: it
                            # may have counted it.
                            register_sent = refused.maybe_delivered
                            state = "unavailable"
                        if registered:
                            await prefer_browser(principal, prefer=True)
                yield json.dumps({"kind": "softphone", "state": state, "address": softphone})
            mine: dict[str, str] = {}  # call ref -> this user's leg on it
            consults: dict[str, str] = {}  # call ref -> the leg this user consults
            async for msg in sub.messages:
                try:
                    fact = _call_facts.decode(msg.data)
                except msgspec.DecodeError:
                    continue
                event = _pop_event(fact, user, mine, consults)
                if event is None:
                    continue
                event["call_id"] = str(Call.create_id(tenant, fact.call_ref))
                call = await settled(principal, event)
                if event["kind"] in ("ringing", "dialing"):
                    event["info"] = None if call is None else await pop_info(principal, call)
                yield json.dumps(event)
        finally:
            # The browser left: the stream is being cancelled, and these must still run,
            # each of them even if one before failed.
            with anyio.CancelScope(shield=True):
                try:
                    await sub.unsubscribe()
                except Exception:
                    log.exception("phone stream of %s: unsubscribing failed", user)
                if register_sent and softphone:
                    await leave_softphone(principal, softphone)

    async def leave_softphone(principal: Principal, address: str) -> None:
        """One browser of the user's left `address`: let it go at the switch and, if it
        was the last one there (or the switch cannot say), ring their first endpoint
        again: a browser that is gone must not keep their calls."""
        async with softphone_locks[address]:
            left: dict[str, Any] | None = None
            try:
                left = await ask_switch("unregister", {"address": address})
            except Exception as error:  # noqa: BLE001 - the preference goes all the same
                log.warning("softphone %s: unregistering failed: %r", address, error)
            if left is None or left.get("registrations") == 0:
                try:
                    await prefer_browser(principal, prefer=False)
                except Exception:
                    log.exception("softphone %s: the preference was not cleared", address)

    async def prefer_browser(principal: Principal, *, prefer: bool) -> None:
        """Ring the user's browser for their calls from now on, or stop: a domain event
        (User.EndpointPreferred / EndpointPreferenceCleared) that routing follows."""
        agents_app = apps().agents
        verb = agents_app.prefer_endpoint if prefer else agents_app.clear_endpoint_preference
        try:
            # Shielded: a stream cancelled meanwhile must not leave it half done, after
            # (or while) the leaving stream clears it.
            with anyio.CancelScope(shield=True):
                await runner(
                    verb, principal.tenant_id, UUID(principal.user_id), EndpointKind.WEBRTC, ""
                )
        except DomainError as error:  # the endpoint was removed meanwhile, say
            log.warning("softphone of %s: preference not changed: %s", principal.user_id, error)

    async def settled(principal: Principal, event: dict[str, Any]) -> dict[str, Any] | None:
        """The call once the domain shows what `event` says (it lags the switch a little),
        so that what the browser fetches on the event is already drawn with it; None if
        it does not within DOMAIN_LAG_SECONDS (the event is sent all the same)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DOMAIN_LAG_SECONDS
        while True:
            with contextlib.suppress(NotFound):
                call = await runner(apps().calls.get, principal.tenant_id, UUID(event["call_id"]))
                if _shows(call, event):
                    return call
            if loop.time() > deadline:
                return None
            await asyncio.sleep(0.05)

    async def pop_info(principal: Principal, call: dict[str, Any]) -> dict[str, Any]:
        """What the pop shows at once (CC4, CC5): the call, and who the customer is."""
        tenant = principal.tenant_id
        queue_name = None
        if call["queue_id"]:
            with contextlib.suppress(NotFound):
                queue = await runner(apps().queues.get, tenant, UUID(call["queue_id"]))
                queue_name = queue["name"]
        info = _call_info(call, queue_name)
        known = _customers_by_number(customers, tenant, call["customer_number"])
        info["customer"] = {"id": known[0]["id"], "name": known[0]["name"]} if known else None
        return info

    @post("/t/{tenant_id:str}/phone/softphone", include_in_schema=False)
    async def use_browser(request: Request[Any, Any, Any], tenant_id: str) -> Response[Any]:
        """Make this user's browser one of their phones (a WebRTC endpoint)."""
        principal = allowed(request)
        form = await _body(request, ControlForm)
        try:
            await runner(
                apps().agents.add_endpoint,
                principal.tenant_id,
                UUID(principal.user_id),
                EndpointKind.WEBRTC,
                "",
            )
        except DomainError as e:
            raise refusal(HTTP_409_CONFLICT, "phone.refused", reason=str(e)) from None
        back = own_page(principal.tenant_id, form.back) or home_url(principal.tenant_id)
        return await respond(request, {"done": "softphone"}, back)

    def refused(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        assert isinstance(exc, PhoneRefused)
        if _wants_json(request) or request.url.path.endswith("/events"):
            message = translate(page_language(request), exc.key, **exc.values)
            return Response({"error": exc.key, "message": message}, status_code=exc.status_code)
        return page(
            request,
            "phone_refused.html",
            exc.status_code,
            message_key=exc.key,
            values=exc.values,
            home=home_url(principal_of(request).tenant_id),
        )

    return Router(
        path="/",
        route_handlers=[call_page, control, dial, events, use_browser],
        guards=[signed_in_guard(access)],
        exception_handlers={**PAGE_EXCEPTION_HANDLERS, PhoneRefused: refused},
    )


_ACTIONS = frozenset(
    {
        "answer",
        "decline",
        "dtmf",
        "hold",
        "resume",
        "mute",
        "unmute",
        "record",
        "stop-recording",
        "hangup",
        "transfer",
        "consult",
        "complete-transfer",
        "cancel-transfer",
        "three-way",
        "leave",
    }
)


_CONSULT_COMMANDS: dict[
    str, type[commands.CompleteTransfer | commands.CancelTransfer | commands.ThreeWay]
] = {
    "complete-transfer": commands.CompleteTransfer,
    "cancel-transfer": commands.CancelTransfer,
    "three-way": commands.ThreeWay,
}


def _pop_event(
    fact: Any, user: str, mine: dict[str, str], consults: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """What `fact` means for the user's phone panel, or None if it is not about them.
    `mine` remembers the user's leg per call, from its ring to its end; `consults` the
    consult leg of a call whose attended transfer the user makes or is consulted about
    (their own leg then), until the consult is over."""
    if consults is None:
        consults = {}
    ref = fact.call_ref
    if isinstance(fact, facts.CallAgentRinging) and str(fact.agent_id) == user:
        mine[ref] = fact.leg_id
        return {"kind": "ringing", "leg_id": fact.leg_id, "endpoint": fact.agent_endpoint}
    if isinstance(fact, facts.CallStarted) and fact.agent_id and str(fact.agent_id) == user:
        mine[ref] = fact.caller_leg_id
        return {"kind": "dialing", "leg_id": fact.caller_leg_id, "endpoint": fact.agent_endpoint}
    to_leg = (
        fact.to_leg
        if isinstance(fact, facts.CallTransferred)
        else fact.consult_leg
        if isinstance(fact, facts.CallTransferRequested)
        else None
    )
    if to_leg is not None and to_leg.user_id is not None and str(to_leg.user_id) == user:
        mine[ref] = to_leg.leg_id
        if isinstance(fact, facts.CallTransferRequested):
            consults[ref] = to_leg.leg_id  # the user is the one consulted
        return {"kind": "ringing", "leg_id": to_leg.leg_id, "endpoint": to_leg.endpoint}
    leg = mine.get(ref)
    if leg is None:
        return None
    head = {"leg_id": leg, "call_ref": ref}
    consult = consults.get(ref)
    # Whether the user is the one consulting (else the one consulted, if `consult`).
    consulting = consult is not None and consult != leg
    if isinstance(fact, facts.CallTransferRequested) and fact.from_leg_id == leg:
        consults[ref] = fact.consult_leg.leg_id
        return {"kind": "consulting", **head, "consult_leg_id": fact.consult_leg.leg_id}
    if isinstance(fact, facts.CallAnswered) and consulting and fact.leg_id == consult:
        return {"kind": "consult_answered", **head, "consult_leg_id": consult}
    if isinstance(fact, facts.CallHeld | facts.CallResumed) and consult is not None:
        return None  # the consult holds the customer, who is nobody's to resume meanwhile
    if isinstance(fact, facts.CallTransferCompleted):
        consults.pop(ref, None)
        return {"kind": "transferred" if consulting else "transfer_completed", **head}
    if isinstance(fact, facts.CallTransferCancelled):
        consults.pop(ref, None)
        # The one consulted hears of it as their leg ends.
        return {"kind": "consult_cancelled", **head} if consulting else None
    if isinstance(fact, facts.CallHungUp) and consulting and fact.leg_id == consult:
        # The consulted party hung up (or never answered): back with the customer.
        del consults[ref]
        return {"kind": "consult_cancelled", **head}
    if isinstance(fact, facts.CallConferenceJoined):
        consults.pop(ref, None)
        return {"kind": "conference", **head, "joined_leg_id": fact.leg_id}
    if isinstance(fact, facts.CallAnswered):
        return {"kind": "answered", **head, "answered_leg_id": fact.leg_id}
    if isinstance(fact, facts.CallHeld):
        return {"kind": "held", **head}
    if isinstance(fact, facts.CallResumed):
        return {"kind": "resumed", **head}
    if isinstance(fact, facts.CallMuted | facts.CallUnmuted) and fact.leg_id == leg:
        return {"kind": "muted" if isinstance(fact, facts.CallMuted) else "unmuted", **head}
    if isinstance(fact, facts.CallRecordingStarted):
        return {"kind": "recording", **head}
    if isinstance(fact, facts.CallRecordingStopped):
        return {"kind": "recording_stopped", **head}
    if isinstance(fact, facts.CallTransferred) and fact.from_leg_id == leg:
        return {"kind": "transferred", **head}
    ended = isinstance(fact, facts.CallForceEnded | facts.CallLost) or (
        isinstance(fact, facts.CallHungUp) and fact.leg_id == leg
    )
    if ended:
        del mine[ref]
        consults.pop(ref, None)
        return {"kind": "ended", **head}
    return None


def _shows(call: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether the domain's view of the call already shows the event."""
    kind = event["kind"]
    legs = {leg["leg_id"]: leg for leg in call["legs"]}
    mine = legs.get(event["leg_id"])
    if mine is None:
        return False
    recording = any(r["stopped_at"] is None for r in call["recordings"])
    shown: dict[str, Any] = {
        "ringing": lambda: True,
        "dialing": lambda: True,
        "answered": lambda: bool(legs.get(event.get("answered_leg_id"), {}).get("answered_at")),
        "held": lambda: call["held"],
        "resumed": lambda: not call["held"],
        "muted": lambda: mine["muted"],
        "unmuted": lambda: not mine["muted"],
        "recording": lambda: recording,
        "recording_stopped": lambda: not recording,
        "transferred": lambda: bool(mine["ended_at"]),
        "consulting": lambda: bool(call["consulting"]),
        "consult_answered": lambda: bool(
            legs.get(event.get("consult_leg_id"), {}).get("answered_at")
        ),
        "consult_cancelled": lambda: not call["consulting"],
        "transfer_completed": lambda: not call["consulting"],
        "conference": lambda: event.get("joined_leg_id") in call["conference_leg_ids"],
        "ended": lambda: bool(mine["ended_at"] or call["ended_at"]),
    }
    return bool(shown.get(kind, lambda: True)())


def _call_info(call: dict[str, Any], queue_name: str | None) -> dict[str, Any]:
    """What the pop shows about a call (CC4)."""
    started = datetime.fromisoformat(call["started_at"])
    answered = call["answered_at"] and datetime.fromisoformat(call["answered_at"])
    waited = ((answered or datetime.now(UTC)) - started).total_seconds()
    return {
        "call_id": call["id"],
        "direction": call["direction"],
        "caller": call["customer_number"],
        "hotline": call["hotline"],
        "queue": queue_name,
        "ivr": [{"node": step["node_id"], "digits": step["digits"]} for step in call["ivr_path"]],
        "wait_seconds": round(max(0.0, waited)),
        "held": call["held"],
        "ended": bool(call["ended_at"]),
    }


def _off_hook(call: dict[str, Any], leg: dict[str, Any]) -> bool:
    """Whether the user is talking on `leg`: it answered, or it placed the call (an
    agent's click-to-call leg is off the hook from the start)."""
    return bool(leg["answered_at"]) or leg["leg_id"] == call["legs"][0]["leg_id"]


def _consult_state(
    call: dict[str, Any], leg: dict[str, Any], names: dict[str, str], *, on_call: bool
) -> dict[str, Any]:
    """The attended transfer as the user on `leg` sees it: `consult`, the party they are
    consulting (who, and whether they answered); `consulted_by`, the colleague consulting
    them; `three_way`, whether they talk in a three-way call."""
    consult: dict[str, Any] | None = None
    consulted_by: str | None = None
    consulting = call["consulting"] if on_call else None
    if consulting and consulting[0] == leg["leg_id"]:
        other = _leg_by_id(call, consulting[1])
        if other is not None:
            user = other["user_id"]
            consult = {
                "name": names.get(user, "") if user else other["address"],
                "answered": bool(other["answered_at"]),
            }
    elif consulting and consulting[1] == leg["leg_id"]:
        other = _leg_by_id(call, consulting[0])
        consulted_by = names.get((other or {}).get("user_id") or "", "")
    live = [g for g in call["legs"] if not g["ended_at"] and g["party"] != "supervisor"]
    # A conference going on now (one who joined it still there, nobody being consulted),
    # not one that ended before a later consult.
    joined = set(call["conference_leg_ids"])
    three_way = (
        on_call
        and not call["consulting"]
        and any(g["leg_id"] in joined for g in live)
        and len(live) >= 3
    )
    return {"consult": consult, "consulted_by": consulted_by, "three_way": three_way}


def _originates(call: dict[str, Any], leg: dict[str, Any]) -> bool:
    """Whether `leg` dialled the call (an outbound or internal call's first leg)."""
    return (
        call["direction"] != "inbound"
        and bool(call["legs"])
        and (call["legs"][0]["leg_id"] == leg["leg_id"])
    )


def _leg_by_id(call: dict[str, Any], leg_id: str) -> dict[str, Any] | None:
    return next((leg for leg in call["legs"] if leg["leg_id"] == leg_id), None)


def _legs_of(call: dict[str, Any], user_id: str) -> list[dict[str, Any]]:
    return [leg for leg in call["legs"] if leg["user_id"] == user_id]


def _customers_by_number(
    customers: CustomersReadModel, tenant: str, number: str | None
) -> list[dict[str, Any]]:
    """The tenant's customers with this phone number (usually one; two until merged)."""
    if not number:
        return []
    try:
        wanted = normalize_phone_number(number)
    except InvalidPhoneNumber:
        return []
    found = []
    for customer in customers.search(tenant, wanted, limit=10):
        for kind, value in customer["identities"]:
            if kind == "phone" and _same_number(value, wanted):
                found.append(customer)
                break
    return found


def _same_number(value: str, wanted: str) -> bool:
    try:
        return normalize_phone_number(value) == wanted
    except InvalidPhoneNumber:
        return False


def _endpoint_of(user: dict[str, Any], *, rung: bool = False) -> tuple[str, str]:
    """A user's phone (a browser has no address of its own: `webrtc:<user id>`): their
    first endpoint or, for a call that rings them (`rung`), the one they prefer for now
    if any, as routing rings it."""
    endpoint = (rung and user.get("preferred_endpoint")) or user["endpoints"][0]
    kind = str(endpoint["kind"])
    return kind, endpoint["address"] or f"{kind}:{user['id']}"


def forget_browsers(routing: RoutingState, agents: Any) -> int:
    """Clear every user's preference for their browser (WebRTC) endpoint; how many were.

    For the process that runs the built-in switch, as it starts: the browsers registered
    at the switch that ran before (a crash, a restart) are gone with it, and a stream of
    theirs may never have cleared its user's preference, which would ring the browser
    for good. None is registered at a switch that just started, so every such
    preference goes. The users are found in routing's state (`agents` is the domain's
    application, which decides: it clears only what the user still prefers). Blocking:
    run it on a worker thread.
    """
    try:
        rows = routing.preferred_endpoints(EndpointKind.WEBRTC.value)
    except sqlite3.Error:
        log.exception("browser preferences not cleared: routing's state is unreadable")
        return 0
    cleared = 0
    for tenant, agent_id, kind, address in rows:
        try:
            agents.clear_endpoint_preference(tenant, UUID(agent_id), kind, address)
            cleared += 1
        except Exception as error:  # noqa: BLE001 - the others' go all the same
            log.warning("softphone of %s: preference not cleared: %r", agent_id, error)
    if cleared:
        log.info("switch started: %d browser preference(s) cleared", cleared)
    return cleared


def _webrtc_address(user: dict[str, Any]) -> str:
    """The user's browser endpoint's address, or "" if they have none."""
    for endpoint in user["endpoints"]:
        if endpoint["kind"] == EndpointKind.WEBRTC.value:
            return str(endpoint["address"] or f"webrtc:{user['id']}")
    return ""


async def _body(request: Request[Any, Any, Any], kind: type[Any]) -> Any:
    """The request's JSON or form body as `kind`; anything else a 400."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("application/json"):
            return msgspec.json.decode(await request.body(), type=kind)
        raw = await request.form()
        values = {key: raw.get(key) for key in raw}
        return msgspec.convert(values, kind)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise refusal(HTTP_400_BAD_REQUEST, "phone.bad_request") from None


def _wants_json(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("content-type", "").startswith(
        "application/json"
    ) or "application/json" in request.headers.get("accept", "")
