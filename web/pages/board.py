"""The supervisor's live board (CC16-CC19): agents and their state, queues and their
waits, today's productivity, every call in progress — and the changes pushed as they
happen; from a call's row the supervisor listens, whispers, barges in, takes over or
hangs up.

`GET /t/<tenant>/board` is the page, `GET /t/<tenant>/board/tables` its tables alone (what
the page's script fetches again when something changed), and `GET /t/<tenant>/live` a
server-sent event stream of the tenant's read-model changes (`projections.live`, NATS
`live.<tenant>.>`): the subject is built from the signed-in user's tenant, never from
anything the browser sends, so a stream carries one tenant's changes only.
Supervisors and tenant admins see the board; an agent of the tenant gets a 403 that says
why. Acting on a call is the supervisor's alone: a tenant admin sees the calls without
their action forms, and a POST of theirs is a 403 that says why.

Live calls are the inbox read model's calls in progress (`InboxReadModel.live_calls`):
caller, queue, the agents on it, and a state — waiting, ringing, talking or held.

`POST /t/<tenant>/board/calls/<call>/<action>` (listen, whisper, barge, takeover,
hangup) publishes the telephony command the bridge carries out (telephony_bridge.commands
`Supervise` with the mode, `TakeOver`, `HangUpCall` with the supervisor's id, which the
call's history keeps as a force hang-up). The supervisor's own first endpoint is rung
(the bridge dials it); the call is looked up in the call log *of the path's tenant*, so
another tenant's call, like an unknown one, is a 404, and a call that has ended a 409.
What the switch then did comes back as facts and shows on the board like every change;
the POST answers with a redirect to the board (303).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, cast
from urllib.parse import quote
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from litestar import Request, Response, Router, get, post
from litestar.response import Redirect, ServerSentEvent, Template
from litestar.status_codes import (
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
)
from nats.aio.client import Client as NatsClient

from domain.apps import DomainApps
from domain.asyncapp import AsyncRunner
from domain.call_legs import PartyKind, SupervisionMode
from projections import live
from projections.access import AccessReadModel, Principal
from projections.boards import AgentBoardReadModel, QueueBoardReadModel
from projections.calllog import CallLogReadModel
from projections.inbox import InboxReadModel
from telephony_bridge import commands
from web.pages.auth import (
    PAGE_EXCEPTION_HANDLERS,
    home_url,
    page,
    principal_of,
    signed_in_guard,
)
from web.pages.owned import is_uuid
from web.pages.streams import change_events

BOARD_ROLES = frozenset({"supervisor", "tenant_admin"})
# Who may act on a live call from the board (listen, whisper, barge, take over, hang up).
SUPERVISING_ROLES = frozenset({"supervisor"})
# Whose day "today" is: the brochure's country; a tenant's own calendar is a later step.
DAY_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# What the board shows comes from these read models (and the inbox's calls in progress);
# other changes do not redraw it.
BOARD_READMODELS = ("agent_board", "queue_board", "inbox:live_call")
# What a supervisor may do to a call from its row (CC19).
MODES = tuple(m.value for m in SupervisionMode)
ACTIONS = (*MODES, "takeover", "hangup")
# The call's states that have someone talking to the customer (what may be supervised).
ANSWERED = ("talking", "held")


class RoleForbidden(Exception):
    """A signed-in user of the tenant whose role may not see the page."""

    # As an HTTP error: answered by its page, logged without a traceback (web.app).
    status_code = 403


class SupervisingForbidden(Exception):
    """A user who sees the board but whose role may not act on its calls."""

    status_code = 403


class CallRefused(Exception):
    """A supervisor's action on a call that cannot be done: its status and the message."""

    def __init__(self, status_code: int, message_key: str) -> None:
        super().__init__(message_key)
        self.status_code = status_code
        self.message_key = message_key


def day_bounds(now: datetime) -> tuple[date, datetime]:
    """Today (in DAY_ZONE) and its midnight."""
    today = now.astimezone(DAY_ZONE).date()
    return today, datetime.combine(today, datetime.min.time(), DAY_ZONE)


def allowed(request: Request[Any, Any, Any]) -> Principal:
    """The signed-in user, if their role sees the supervisor's pages."""
    principal = principal_of(request)
    if principal.role not in BOARD_ROLES:
        raise RoleForbidden
    return principal


def board_router(
    access: AccessReadModel,
    agents: AgentBoardReadModel,
    queues: QueueBoardReadModel,
    nats: Callable[[], NatsClient],
    *,
    calls: InboxReadModel,
    call_log: CallLogReadModel,
    apps: Callable[[], DomainApps],
    runner: AsyncRunner,
) -> Router:
    def tables(tenant_id: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        today, midnight = day_bounds(now)
        floor = agents.board(tenant_id)
        waits = queues.board(tenant_id, since=midnight, until=now)
        return {
            "tenant": tenant_id,
            "agents": floor,
            "queues": waits,
            "productivity": agents.productivity(tenant_id, today, DAY_ZONE, now=now),
            "calls": live_calls(calls.live_calls(tenant_id), floor, waits, now),
        }

    @get("/t/{tenant_id:str}/board", include_in_schema=False)
    async def board(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        allowed(request)
        sent = request.query_params.get("sent")
        return page(
            request,
            "board.html",
            sent=sent if sent in ACTIONS else None,
            **tables(tenant_id),
        )

    @get("/t/{tenant_id:str}/board/tables", include_in_schema=False)
    async def board_tables(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        allowed(request)
        return page(request, "board_tables.html", **tables(tenant_id))

    @get("/t/{tenant_id:str}/live", include_in_schema=False)
    async def changes(request: Request[Any, Any, Any], tenant_id: str) -> ServerSentEvent:
        allowed(request)
        # From the session's tenant (the guard made sure it is the path's): the wall.
        subject = live.tenant_filter(principal_of(request).tenant_id)
        return ServerSentEvent(change_events(nats(), subject))

    @post("/t/{tenant_id:str}/board/calls/{call_id:str}/{action:str}", include_in_schema=False)
    async def act(
        request: Request[Any, Any, Any], tenant_id: str, call_id: str, action: str
    ) -> Response[Any]:
        me = allowed(request)
        if me.role not in SUPERVISING_ROLES:
            raise SupervisingForbidden
        if action not in ACTIONS:
            raise CallRefused(HTTP_404_NOT_FOUND, "supervise.no_action")
        call = call_log.get(me.tenant_id, call_id) if is_uuid(call_id) else None
        if call is None:
            raise CallRefused(HTTP_404_NOT_FOUND, "supervise.no_call")
        if call["outcome"] != "in_progress":
            raise CallRefused(HTTP_409_CONFLICT, "supervise.ended")
        supervisor = UUID(me.user_id)
        common = {"command_id": f"board:{uuid4()}", "tenant_id": me.tenant_id}
        ref = call["call_ref"]
        command: commands.Command
        if action == "hangup":
            command = commands.HangUpCall(**common, call_ref=ref, supervisor_id=supervisor)
        elif not call["answered_at"]:
            raise CallRefused(HTTP_409_CONFLICT, "supervise.not_answered")
        elif action == "takeover":
            if not _listening(call, me.user_id):
                raise CallRefused(HTTP_409_CONFLICT, "supervise.listen_first")
            command = commands.TakeOver(**common, call_ref=ref, supervisor_id=supervisor)
        else:
            user = await runner(apps().agents.get, me.tenant_id, supervisor)
            endpoints = cast(list[dict[str, str]], user.get("endpoints") or [])
            if not endpoints:
                raise CallRefused(HTTP_409_CONFLICT, "supervise.no_phone")
            kind, address = endpoints[0]["kind"], endpoints[0]["address"]
            command = commands.Supervise(
                **common,
                call_ref=ref,
                supervisor_id=supervisor,
                endpoint_kind=kind,
                # A browser has no address of its own: the switch reaches it by the user.
                address=address or f"{kind}:{me.user_id}",
                mode=action,
            )
        nc = nats()
        await nc.publish(commands.subject(me.tenant_id, command), commands.encode(command))
        await nc.flush()
        return Redirect(f"/t/{quote(me.tenant_id, safe='')}/board?sent={action}", status_code=303)

    def refused(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        assert isinstance(exc, CallRefused)
        tenant = principal_of(request).tenant_id
        return page(
            request,
            "board.html",
            exc.status_code,
            error=exc.message_key,
            sent=None,
            **tables(tenant),
        )

    return Router(
        path="/",
        route_handlers=[board, board_tables, changes, act],
        guards=[signed_in_guard(access)],
        exception_handlers={
            **PAGE_EXCEPTION_HANDLERS,
            RoleForbidden: role_forbidden,
            SupervisingForbidden: supervising_forbidden,
            CallRefused: refused,
        },
    )


def live_calls(
    rows: list[dict[str, Any]],
    floor: list[dict[str, Any]],
    waits: list[dict[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """The calls in progress as the board shows them: who calls, in which queue, which
    agents are on it (or ringing), who supervises, the state and since when."""
    names = {a["id"]: a["name"] for a in floor}
    queue_names = {q["id"]: q["name"] for q in waits}
    shown = []
    for call in rows:
        agents = [leg for leg in call["legs"] if leg["party"] == PartyKind.AGENT.value]
        talking = [leg for leg in agents if leg["answered_at"]]
        supervisors = [leg for leg in call["legs"] if leg["party"] == PartyKind.SUPERVISOR.value]
        if call["state"] == "on_hold":
            state = "held"
        elif call["state"] == "talking":
            state = "talking"
        elif agents:
            state = "ringing"
        else:
            state = "waiting" if call["queue_id"] else "connecting"
        started = datetime.fromisoformat(call["started_at"])
        shown.append(
            {
                "id": call["id"],
                "direction": call["direction"],
                "caller": call["customer_number"] or call["hotline"] or "",
                "hotline": call["hotline"],
                "queue": queue_names.get(call["queue_id"]) if call["queue_id"] else None,
                "agents": [names.get(leg["user_id"], leg["user_id"]) for leg in talking or agents],
                "supervisors": [names.get(leg["user_id"], leg["user_id"]) for leg in supervisors],
                "state": state,
                "answered": state in ANSWERED,
                "started_at": call["started_at"],
                "seconds": max(0, int((now - started).total_seconds())),
            }
        )
    return shown


def _listening(call: dict[str, Any], user_id: str) -> bool:
    """Whether the user is on the call as a supervisor still: their leg joins the call's
    history once they listen (the bridge reports it when the eavesdrop starts)."""
    return any(
        leg["party"] == PartyKind.SUPERVISOR.value
        and leg["user_id"] == user_id
        and not leg["ended_at"]
        for leg in call["legs"]
    )


def role_forbidden(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The 403 page of a role that may not see the supervisor's pages, saying why."""
    home = home_url(principal_of(request).tenant_id)
    return page(
        request, "forbidden.html", HTTP_403_FORBIDDEN, home=home, message_key="board.role_only"
    )


def supervising_forbidden(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The 403 page of a role that sees the board but may not act on its calls."""
    home = home_url(principal_of(request).tenant_id)
    return page(
        request,
        "forbidden.html",
        HTTP_403_FORBIDDEN,
        home=home,
        message_key="supervise.supervisor_only",
    )
