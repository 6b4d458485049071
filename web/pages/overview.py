"""The overview dashboard (CT18): today's traffic at a glance, for supervisors and tenant
admins — calls and conversations per hour by channel, calls answered and abandoned per
hour, service level per queue, what waits now, agents by state, and tickets breaching or
at risk of breaching their SLA.

`GET /t/<tenant>/overview` is the page and `GET /t/<tenant>/overview/charts` its charts
alone, which the page's script (web/static/board.js, as the board's) fetches again on
each change of the read models it is drawn from, and every few seconds as "now" moves on.
The charts are inline SVG drawn here, on the server, from the read models (the boards;
the tickets with their SLA state): no chart library, nothing from elsewhere. Every number
a chart shows is in its text too (a table under it, and each bar's title), so the page
reads without the drawing.

"Today" is the board's day (web.pages.board.DAY_ZONE), hours counted from its midnight.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Router, get
from litestar.response import Template

from domain.tickets import TicketStatus
from domain.vocabulary import Channel, Presence
from projections.access import AccessReadModel
from projections.boards import AgentBoardReadModel, QueueBoardReadModel
from projections.tickets import TicketsReadModel
from web.pages.auth import PAGE_EXCEPTION_HANDLERS, page, signed_in_guard
from web.pages.board import RoleForbidden, allowed, day_bounds, role_forbidden

HOURS = 24
# What the charts are drawn from: a change of one of these redraws them.
OVERVIEW_READMODELS = ("agent_board", "queue_board", "tickets")
# Seconds between two redraws when nothing changed (the hour, the waits' ages move on).
REFRESH_SECONDS = 15
# The industry default the service level is held against (80 % within 20 s).
SERVICE_LEVEL_TARGET = 0.8
CHANNEL_COLOURS = {
    Channel.CALL.value: "#1f5fa8",
    Channel.CHAT.value: "#2a9d8f",
    Channel.EMAIL.value: "#e9a23b",
    Channel.SMS.value: "#8e5ea2",
    Channel.FACEBOOK_COMMENT.value: "#3b5998",
    Channel.MESSENGER.value: "#d6336c",
}
PRESENCE_COLOURS = {
    Presence.AVAILABLE.value: "#1b7f3b",
    Presence.RINGING.value: "#1f5fa8",
    Presence.ON_CALL.value: "#2a9d8f",
    Presence.WRAP_UP.value: "#e9a23b",
    Presence.BREAK.value: "#a15c00",
    Presence.OFFLINE.value: "#999999",
}
ANSWERED_COLOUR, ABANDONED_COLOUR = "#1b7f3b", "#c0392b"
# Tickets not finished: those whose SLA may still be breached or at risk.
OPEN_TICKETS = tuple(
    s.value for s in TicketStatus if s not in (TicketStatus.RESOLVED, TicketStatus.CLOSED)
)
SLA_LIMIT = 1000  # tickets counted per state; more shows as this many and more

# The drawing's size, in SVG user units (it scales to its box).
WIDTH, HEIGHT, LEFT, TOP, BOTTOM = 480, 180, 30, 10, 22
BAR_ROW, BAR_LEFT = 24, 110


def overview_router(
    access: AccessReadModel,
    agents: AgentBoardReadModel,
    queues: QueueBoardReadModel,
    tickets: TicketsReadModel,
) -> Router:
    def charts(tenant_id: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        _, midnight = day_bounds(now)
        hourly = queues.hourly(tenant_id, midnight, HOURS)
        waits = queues.board(tenant_id, since=midnight, until=now)
        floor = agents.board(tenant_id)
        return {
            "tenant": tenant_id,
            "refresh": REFRESH_SECONDS,
            **traffic(hourly),
            "outcomes": vertical_bars(
                [
                    ("answered", ANSWERED_COLOUR, hourly["answered"]),
                    ("abandoned", ABANDONED_COLOUR, hourly["abandoned"]),
                ],
                stacked=False,
            ),
            "answered": sum(hourly["answered"]),
            "abandoned": sum(hourly["abandoned"]),
            "service_levels": service_levels(waits),
            "waiting": horizontal_bars(
                [(q["name"] or q["id"], q["waiting"], str(q["waiting"])) for q in waits],
                "#1f5fa8",
            ),
            "waiting_now": sum(q["waiting"] for q in waits),
            "presences": presences(floor),
            "sla": sla_counts(tickets, tenant_id, now),
        }

    @get("/t/{tenant_id:str}/overview", include_in_schema=False)
    async def overview(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        allowed(request)
        return page(request, "overview.html", **charts(tenant_id))

    @get("/t/{tenant_id:str}/overview/charts", include_in_schema=False)
    async def overview_charts(request: Request[Any, Any, Any], tenant_id: str) -> Template:
        allowed(request)
        return page(request, "overview_charts.html", **charts(tenant_id))

    return Router(
        path="/",
        route_handlers=[overview, overview_charts],
        guards=[signed_in_guard(access)],
        exception_handlers={**PAGE_EXCEPTION_HANDLERS, RoleForbidden: role_forbidden},
    )


def traffic(hourly: dict[str, Any]) -> dict[str, Any]:
    """Calls and conversations started per hour, stacked by channel, and the totals."""
    arrivals: dict[str, list[int]] = hourly["arrivals"]
    channels = [c.value for c in Channel if c.value in arrivals]
    series = [(c, CHANNEL_COLOURS[c], arrivals[c]) for c in channels]
    totals = {c: sum(arrivals[c]) for c in channels}
    return {
        "traffic": vertical_bars(series, stacked=True),
        "traffic_totals": totals,
        "calls_today": totals.get(Channel.CALL.value, 0),
        "conversations_today": sum(n for c, n in totals.items() if c != Channel.CALL.value),
    }


def vertical_bars(series: Sequence[tuple[str, str, list[int]]], *, stacked: bool) -> dict[str, Any]:
    """One bar (or one per series, side by side) per hour: rectangles in SVG units, the
    vertical scale's ticks and the hours' labels."""
    hours = len(series[0][2]) if series else HOURS
    per_hour = [[values[h] for _, _, values in series] for h in range(hours)]
    top = max([sum(v) if stacked else max(v, default=0) for v in per_hour] + [1])
    top = _nice(top)
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - TOP - BOTTOM
    slot = plot_w / hours
    width = slot * 0.75 / (1 if stacked or not series else len(series))
    bars = []
    for h, values in enumerate(per_hour):
        base = 0
        for i, ((key, colour, _), n) in enumerate(zip(series, values, strict=True)):
            if not n:
                continue
            height = plot_h * n / top
            offset = 0 if stacked else i * width
            bars.append(
                {
                    "x": round(LEFT + h * slot + slot * 0.125 + offset, 1),
                    "y": round(TOP + plot_h - height - (plot_h * base / top), 1),
                    "w": round(width, 1),
                    "h": round(height, 1),
                    "colour": colour,
                    "key": key,
                    "hour": h,
                    "n": n,
                }
            )
            if stacked:
                base += n
    ticks = [
        {"y": round(TOP + plot_h - plot_h * v / top, 1), "value": v}
        for v in sorted({0, top // 2, top})
    ]
    labels = [
        {"x": round(LEFT + h * slot + slot / 2, 1), "text": f"{h:02d}"} for h in range(0, hours, 3)
    ]
    return {
        "bars": bars,
        "ticks": ticks,
        "labels": labels,
        "legend": [(key, colour) for key, colour, _ in series],
        "hours": [
            {"hour": h, "values": dict(zip([k for k, _, _ in series], v, strict=True))}
            for h, v in enumerate(per_hour)
            if any(v)
        ],
        "width": WIDTH,
        "height": HEIGHT,
        "axis_y": TOP + plot_h,
        "left": LEFT,
    }


def horizontal_bars(
    rows: Sequence[tuple[str, float, str]],
    colour: str,
    top: float | None = None,
    colours: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One bar per row (label, value, the value as shown), scaled to `top` (the largest
    value by default)."""
    scale = top if top is not None else max([v for _, v, _ in rows] + [1])
    span = WIDTH - BAR_LEFT - 40
    return {
        "rows": [
            {
                "label": label,
                "value": value,
                "text": text,
                "y": i * BAR_ROW + 4,
                "w": round(span * min(value, scale) / scale, 1) if scale else 0,
                "colour": colours[i] if colours else colour,
            }
            for i, (label, value, text) in enumerate(rows)
        ],
        "width": WIDTH,
        "height": max(1, len(rows)) * BAR_ROW + 8,
        "left": BAR_LEFT,
        "span": span,
        "prefix": "",
    }


def service_levels(waits: list[dict[str, Any]]) -> dict[str, Any]:
    """Each queue's service level today, against the target."""
    rows = [
        (
            q["name"] or q["id"],
            q["service_level"] or 0.0,
            "—" if q["service_level"] is None else f"{round(q['service_level'] * 100)}%",
        )
        for q in waits
    ]
    chart = horizontal_bars(rows, "#2a9d8f", top=1.0)
    chart["target_x"] = round(BAR_LEFT + chart["span"] * SERVICE_LEVEL_TARGET, 1)
    chart["target"] = round(SERVICE_LEVEL_TARGET * 100)
    return chart


def presences(floor: list[dict[str, Any]]) -> dict[str, Any]:
    """How many agents are in each state now."""
    counts = {p.value: 0 for p in Presence}
    for agent in floor:
        counts[agent["presence"]] = counts.get(agent["presence"], 0) + 1
    rows = [(p, n, str(n)) for p, n in counts.items()]
    chart = horizontal_bars(rows, "#999", colours=[PRESENCE_COLOURS.get(p, "#999") for p in counts])
    chart["prefix"] = "presence."  # the labels are states, shown in the page's language
    return chart


def sla_counts(tickets: TicketsReadModel, tenant_id: str, now: datetime) -> dict[str, int]:
    """Unfinished tickets whose SLA is breached, and at risk of it, now (the tickets read
    model works the state out at `now`, CC22)."""
    return {
        state: len(
            tickets.list(tenant_id, status=OPEN_TICKETS, sla=state, now=now, limit=SLA_LIMIT)
        )
        for state in ("breached", "at_risk")
    }


def _nice(n: int) -> int:
    """The scale's top: `n` rounded up to 1, 2 or 5 times a power of ten."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if n <= m * step:
                return m * step
        step *= 10
