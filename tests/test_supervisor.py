"""The supervisor's screens on a real `cloudcc up` with the built-in switch (CC16-CC19,
CT18): calls placed through the switch panel show on the board's live calls with their
agent; "listen" from the board rings the supervisor's own phone, which then hears both
sides and is heard by nobody; "hang up" ends the call for everyone and the call's history
says who; an agent may not (nor may a tenant admin act on a call), another tenant's call
is not found, an ended one is refused; and the overview dashboard counts the day's traffic
as it was placed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from helpers import panel, running_instance, wait_for
from test_signin import known

from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.calls import Call
from domain.vocabulary import EndpointKind, Package, RoutingPolicy

SUPPORT, REMOTE = "sup-floor", "sup-remote"
HOTLINE, QUIET_LINE, REMOTE_LINE = "+842873100001", "+842873100002", "+842873100003"
COUNT, COUNT_QUIET = "+842873100011", "+842873100012"
PASSWORD = "mật khẩu giám sát 2024"


class Site:
    def __init__(self, url: str, apps: DomainApps, nats_url: str) -> None:
        self.url, self.apps, self.nats_url = url, apps, nats_url
        self.data = Path()  # the instance's data directory (its access read model)
        self.people: dict[str, UUID] = {}
        self.queues: dict[str, UUID] = {}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, follow_redirects=False)


def floor(
    apps: DomainApps, tenant: str, lines: list[str], agent_phone: str, supervisor_phone: str
) -> dict[str, UUID]:
    """A tenant: the first hotline into queue "Support" taken by agent An (a SIP phone),
    the second into queue "Quiet" nobody can take (a skill nobody has); supervisor Chi on
    a desk phone; agent Binh, who signs in but takes no calls; tenant admin Dung, who sees
    the board but does not supervise calls."""
    apps.tenants.register(tenant, tenant.title(), Package.CONTACT_CENTER, lines)
    support = apps.queues.create(tenant, "Support")
    quiet = apps.queues.create(
        tenant, "Quiet", policy=RoutingPolicy.SKILL, required_skills={"nobody": 1}
    )
    for queue in (support, quiet):
        apps.queues.set_waiting_rules(tenant, queue, ring_timeout_seconds=20, max_wait_seconds=600)
    apps.tenants.route_hotline(tenant, lines[0], "queue", support)
    apps.tenants.route_hotline(tenant, lines[1], "queue", quiet)
    an = apps.agents.create_user(tenant, "An Trần", "an", "agent", package=Package.CONTACT_CENTER)
    apps.agents.add_endpoint(tenant, an, EndpointKind.SIP_PHONE, agent_phone)
    apps.agents.go_available(tenant, an)
    chi = apps.agents.create_user(
        tenant, "Chi Lê", "chi", "supervisor", package=Package.CONTACT_CENTER
    )
    apps.agents.add_endpoint(tenant, chi, EndpointKind.SIP_PHONE, supervisor_phone)
    binh = apps.agents.create_user(
        tenant, "Bình Võ", "binh", "agent", package=Package.CONTACT_CENTER
    )
    dung = apps.agents.create_user(
        tenant, "Dũng Phan", "dung", "tenant_admin", package=Package.CONTACT_CENTER
    )
    for user in (chi, binh, dung):
        apps.agents.set_password(tenant, user, PASSWORD)
    return {"an": an, "chi": chi, "binh": binh, "dung": dung, "support": support, "quiet": quiet}


@pytest.fixture(scope="module")
def site(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data: Path = tmp_path_factory.mktemp("supervisor")
    port = free_port()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        with running_instance(data, nats_url, port, CLOUDCC_WRAP_UP_SECONDS="0"):
            s = Site(f"http://127.0.0.1:{port}", apps, nats_url)
            s.data = data
            s.people = floor(apps, SUPPORT, [HOTLINE, QUIET_LINE], "6001", "6900")
            remote = floor(apps, REMOTE, [REMOTE_LINE, "+842873100004"], "7001", "7900")
            s.people["remote_an"] = remote["an"]
            yield s
    finally:
        apps.close()


def sign_in(site: Site, tenant: str, login: str) -> httpx.Client:
    http = site.client()
    form = http.get("/signin")
    token = re.search(r'name="_csrf_token" value="([^"]+)"', form.text)
    assert token, form.text
    fields = {"organisation": tenant, "login": login, "password": PASSWORD}
    # Failed sign-ins are throttled: wait until the access read model knows the user.
    wait_for(lambda: known(site, tenant, login), lambda k: k is not False)  # type: ignore[arg-type]
    answer = wait_for(
        lambda: http.post("/signin", data={**fields, "_csrf_token": token.group(1)}),
        lambda r: r.is_redirect,
    )
    assert answer.status_code == 303, answer.text
    return http


def csrf(http: httpx.Client, tenant: str) -> str:
    """The token of the forms of the user's pages (the home page's sign-out form)."""
    found = re.search(r'name="_csrf_token" value="([^"]+)"', http.get(f"/t/{tenant}/").text)
    assert found
    return found.group(1)


def act(http: httpx.Client, tenant: str, call_id: str, action: str) -> httpx.Response:
    return http.post(
        f"/t/{tenant}/board/calls/{call_id}/{action}", data={"_csrf_token": csrf(http, tenant)}
    )


def place(site: Site, hotline: str, caller: str, **party: Any) -> tuple[str, str]:
    """A customer calls the hotline: (the switch's call ref, the call's id)."""
    placed = asyncio.run(
        panel(
            site.nats_url,
            "call",
            {"caller_number": caller, "hotline": hotline, "party": party},
        )
    )
    ref = placed["channel_id"]
    tenant = SUPPORT if hotline in (HOTLINE, QUIET_LINE) else REMOTE
    return ref, str(Call.create_id(tenant, ref))


def call_view(site: Site, tenant: str, call_id: str) -> dict[str, Any] | None:
    try:
        return site.apps.calls.get(tenant, UUID(call_id))
    except Exception:  # noqa: BLE001 - not there yet
        return None


def ended(site: Site, tenant: str, call_id: str) -> dict[str, Any] | None:
    """The call's view once it has ended (or as it is after a while)."""
    return wait_for(
        lambda: call_view(site, tenant, call_id), lambda c: bool(c and c["ended_at"]), 20
    )


def hears(site: Site, listener: str, speaker: str) -> bool:
    answer = asyncio.run(panel(site.nats_url, "hears", {"listener": listener, "speaker": speaker}))
    return bool(answer["hears"])


def row_of(html: str, call_id: str) -> str:
    found = re.search(rf'<tr data-call="{call_id}".*?</tr>', html, re.S)
    return found.group(0) if found else ""


def test_a_live_call_shows_on_the_board_and_the_supervisor_listens_then_hangs_it_up(
    site: Site,
) -> None:
    asyncio.run(panel(site.nats_url, "party", {"address": "6001", "party": {"answer_after": 0.2}}))
    asyncio.run(panel(site.nats_url, "party", {"address": "6900", "party": {"answer_after": 0.2}}))
    http = sign_in(site, SUPPORT, "chi")
    with http.stream("GET", f"/t/{SUPPORT}/live", timeout=20) as stream:
        lines = stream.iter_lines()
        assert "hello" in next(line for line in lines if line.startswith("data:"))
        ref, call_id = place(site, HOTLINE, "0905000001")
        # The board's stream carries the call's changes (what makes the page redraw it).
        change = next(line for line in lines if "live_call" in line and call_id in line)
        assert '"inbox"' in change

    def talking(r: httpx.Response) -> bool:
        row = row_of(r.text, call_id)
        return 'data-state="talking"' in row and "An Trần" in row

    tables = wait_for(lambda: http.get(f"/t/{SUPPORT}/board/tables?lang=en"), talking, 20)
    row = row_of(tables.text, call_id)
    assert talking(tables), tables.text
    assert "+84905000001" in row and "Support" in row and "Talking" in row
    for action in ("listen", "whisper", "barge", "takeover", "hangup"):
        assert f"/t/{SUPPORT}/board/calls/{call_id}/{action}" in row
    assert 'name="_csrf_token"' in row
    page = http.get(f"/t/{SUPPORT}/board?lang=en")
    assert page.status_code == 200 and "Calls in progress" in page.text
    assert call_id in page.text

    # Listen: Chi's desk phone (6900) is rung and joins hearing both sides, heard by none.
    answer = act(http, SUPPORT, call_id, "listen")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/t/{SUPPORT}/board?sent=listen"
    chi = str(site.people["chi"])

    def supervising(mode: str) -> Any:
        def check(c: dict[str, Any] | None) -> bool:
            return bool(c) and any(
                leg["user_id"] == chi and leg["supervision"] == mode
                for leg in c["legs"]  # type: ignore[index]
            )

        return check

    call = wait_for(lambda: call_view(site, SUPPORT, call_id), supervising("listen"), 20)
    assert call is not None and supervising("listen")(call), call
    [sup] = [leg for leg in call["legs"] if leg["party"] == "supervisor"]
    [agent] = [leg for leg in call["legs"] if leg["party"] == "agent"]
    assert sup["address"] == "6900"
    assert hears(site, sup["leg_id"], ref) and hears(site, sup["leg_id"], agent["leg_id"])
    assert not hears(site, ref, sup["leg_id"]) and not hears(site, agent["leg_id"], sup["leg_id"])
    # The board says who supervises the call.
    shown = wait_for(
        lambda: http.get(f"/t/{SUPPORT}/board/tables"),
        lambda r: "Chi Lê" in row_of(r.text, call_id),
    )
    assert "Chi Lê" in row_of(shown.text, call_id)

    # Whisper: now the agent hears Chi, the customer still does not.
    assert act(http, SUPPORT, call_id, "whisper").status_code == 303
    call = wait_for(lambda: call_view(site, SUPPORT, call_id), supervising("whisper"), 20)
    assert call is not None and supervising("whisper")(call), call
    assert hears(site, agent["leg_id"], sup["leg_id"]) and not hears(site, ref, sup["leg_id"])

    # Hang up: the call ends for everyone, as Chi's doing, and leaves the board.
    assert act(http, SUPPORT, call_id, "hangup").status_code == 303
    done = ended(site, SUPPORT, call_id)
    assert done is not None and done["forced_by"] == chi
    gone = wait_for(lambda: http.get(f"/t/{SUPPORT}/board/tables"), lambda r: call_id not in r.text)
    assert call_id not in gone.text
    # An ended call can no longer be supervised: 409, with the reason.
    refused = act(http, SUPPORT, call_id, "listen")
    assert refused.status_code == 409 and "This call has ended" in refused.text
    http.close()


def test_an_agent_may_not_supervise_and_other_tenants_or_unknown_calls_are_not_found(
    site: Site,
) -> None:
    # A call of another tenant, waiting in its queue (nobody there answers it).
    asyncio.run(panel(site.nats_url, "party", {"address": "7001", "party": {"answer_after": None}}))
    remote_ref, remote_id = place(site, REMOTE_LINE, "0905000002")
    assert wait_for(lambda: call_view(site, REMOTE, remote_id), lambda c: c is not None)
    # A call of our own waiting in a queue nobody can take: not answered yet.
    quiet_ref, quiet_id = place(site, QUIET_LINE, "0905000003")

    http = sign_in(site, SUPPORT, "chi")
    waiting = wait_for(
        lambda: http.get(f"/t/{SUPPORT}/board/tables?lang=en"),
        lambda r: 'data-state="waiting"' in row_of(r.text, quiet_id),
    )
    row = row_of(waiting.text, quiet_id)
    assert "Quiet" in row and "Waiting" in row
    # Only hang-up is offered on a call nobody answered; listening is refused with why.
    assert f"{quiet_id}/hangup" in row and f"{quiet_id}/listen" not in row
    refused = act(http, SUPPORT, quiet_id, "listen")
    assert refused.status_code == 409 and "No agent has answered this call" in refused.text
    # Another tenant's call through our board: not found, as an unknown one.
    assert remote_id not in http.get(f"/t/{SUPPORT}/board/tables").text
    for bad in (remote_id, str(UUID(int=7)), "not-a-call"):
        answer = act(http, SUPPORT, bad, "listen")
        assert answer.status_code == 404 and "This call was not found" in answer.text, bad
    # Through the other tenant's path: that is not Chi's organisation.
    token = csrf(http, SUPPORT)
    other = http.post(f"/t/{REMOTE}/board/calls/{remote_id}/hangup", data={"_csrf_token": token})
    assert other.status_code == 403
    # An unknown action, and a form without its CSRF token.
    assert act(http, SUPPORT, quiet_id, "mute-everyone").status_code == 404
    assert http.post(f"/t/{SUPPORT}/board/calls/{quiet_id}/hangup").status_code == 403
    assert call_view(site, SUPPORT, quiet_id)["ended_at"] is None  # type: ignore[index]
    http.close()

    # An agent of the tenant: neither the board nor its actions.
    agent = sign_in(site, SUPPORT, "binh")
    assert agent.get(f"/t/{SUPPORT}/board").status_code == 403
    assert agent.get(f"/t/{SUPPORT}/overview").status_code == 403
    refused = act(agent, SUPPORT, quiet_id, "hangup")
    assert refused.status_code == 403 and "giám sát viên" in refused.text
    agent.close()
    view = call_view(site, SUPPORT, quiet_id)
    assert view is not None and view["ended_at"] is None and view["forced_by"] is None

    # A tenant admin sees the board and its calls, but acting on a call is a supervisor's:
    # no action forms on the rows, and a POST is refused with why.
    admin = sign_in(site, SUPPORT, "dung")
    tables = wait_for(
        lambda: admin.get(f"/t/{SUPPORT}/board/tables?lang=en"),
        lambda r: 'data-state="waiting"' in row_of(r.text, quiet_id),
    )
    assert tables.status_code == 200
    row = row_of(tables.text, quiet_id)
    assert "Quiet" in row and "/board/calls/" not in row and "<form" not in row
    assert admin.get(f"/t/{SUPPORT}/board").status_code == 200
    for action in ("hangup", "listen"):
        refused = act(admin, SUPPORT, quiet_id, action)
        assert refused.status_code == 403, refused.text
        assert "Only supervisors" in refused.text
    admin.close()
    view = call_view(site, SUPPORT, quiet_id)
    assert view is not None and view["ended_at"] is None and view["forced_by"] is None

    # Both end: the quiet caller gives up, the remote one too.
    for ref in (quiet_ref, remote_ref):
        asyncio.run(panel(site.nats_url, "hangup", {"channel_id": ref}))
    for tenant, cid in ((SUPPORT, quiet_id), (REMOTE, remote_id)):
        assert ended(site, tenant, cid)


def test_the_overview_counts_the_days_calls_as_they_were_placed(site: Site, nats_url: str) -> None:
    tenant = "sup-count"
    apps = site.apps
    floor(apps, tenant, [COUNT, COUNT_QUIET], "8001", "8900")
    asyncio.run(panel(nats_url, "party", {"address": "8001", "party": {"answer_after": 0.2}}))
    http = sign_in(site, tenant, "chi")
    empty = http.get(f"/t/{tenant}/overview?lang=en")
    assert empty.status_code == 200 and "Overview of today" in empty.text
    assert re.search(r'id="total-calls">0<', empty.text)
    assert "<svg" in empty.text and "cdn" not in empty.text.lower()

    # Two calls answered by An, each caller hanging up after a moment; one caller gives
    # up waiting in the queue nobody takes.
    for n in (1, 2):
        placed = asyncio.run(
            panel(
                nats_url,
                "call",
                {
                    "caller_number": f"090600000{n}",
                    "hotline": COUNT,
                    "party": {"hang_up_after": 0.5},
                },
            )
        )
        call_id = str(Call.create_id(tenant, placed["channel_id"]))
        done = ended(site, tenant, call_id)
        assert done is not None and done["answered_at"], done
    placed = asyncio.run(
        panel(
            nats_url,
            "call",
            {"caller_number": "0906000003", "hotline": COUNT_QUIET, "party": {"abandon_after": 1}},
        )
    )
    quiet_id = str(Call.create_id(tenant, placed["channel_id"]))
    gave_up = ended(site, tenant, quiet_id)
    assert gave_up is not None and gave_up["abandoned"], gave_up

    def counted(r: httpx.Response) -> bool:
        return all(
            re.search(pattern, r.text)
            for pattern in (
                r'id="total-calls">3<',
                r'id="total-answered">2<',
                r'id="total-abandoned">1<',
            )
        )

    charts = wait_for(lambda: http.get(f"/t/{tenant}/overview/charts?lang=en"), counted, 20)
    assert counted(charts), charts.text
    text = charts.text
    # The bars say the same as the totals: two answered, one abandoned, three calls.
    answered = [int(n) for n in re.findall(r'data-key="answered"[^>]*data-n="(\d+)"', text)]
    abandoned = [int(n) for n in re.findall(r'data-key="abandoned"[^>]*data-n="(\d+)"', text)]
    calls = [int(n) for n in re.findall(r'data-key="call"[^>]*data-n="(\d+)"', text)]
    assert (sum(answered), sum(abandoned), sum(calls)) == (2, 1, 3)
    # Service level per queue: both queues drawn; the quiet one has none answered.
    assert 'data-label="Support"' in text and 'data-label="Quiet"' in text
    assert re.search(r'data-label="Quiet" data-value="0.0"', text)
    # Agents by state: An available; Chi and Binh offline.
    states = text.split('id="agents"')[1].split('id="sla"')[0]
    agents = dict(re.findall(r'data-label="(\w+)" data-value="(\d+)"', states))
    assert len(agents) == 6 and agents["available"] == "1" and agents["offline"] == "2", agents
    assert "SLA breached" in text and 'id="sla-breached">0<' in text
    # Another tenant's overview stays closed.
    assert http.get(f"/t/{SUPPORT}/overview").status_code == 403
    http.close()


def test_the_supervisor_barges_in_then_takes_the_call_over_from_the_board(site: Site) -> None:
    asyncio.run(panel(site.nats_url, "party", {"address": "6001", "party": {"answer_after": 0.2}}))
    asyncio.run(panel(site.nats_url, "party", {"address": "6900", "party": {"answer_after": 0.2}}))
    http = sign_in(site, SUPPORT, "chi")
    ref, call_id = place(site, HOTLINE, "0905000009")
    assert wait_for(
        lambda: http.get(f"/t/{SUPPORT}/board/tables"),
        lambda r: 'data-state="talking"' in row_of(r.text, call_id),
        20,
    )
    # Taking over is for a supervisor already listening in.
    early = act(http, SUPPORT, call_id, "takeover")
    assert early.status_code == 409 and "Hãy nghe cuộc gọi trước" in early.text
    chi = str(site.people["chi"])

    def chi_leg(c: dict[str, Any] | None) -> dict[str, Any] | None:
        legs = [g for g in (c or {}).get("legs", []) if g["user_id"] == chi]
        return legs[0] if legs else None

    assert act(http, SUPPORT, call_id, "barge").status_code == 303
    call = wait_for(
        lambda: call_view(site, SUPPORT, call_id),
        lambda c: bool(chi_leg(c) and chi_leg(c)["supervision"] == "barge"),  # type: ignore[index]
        20,
    )
    sup = chi_leg(call)
    assert sup is not None and sup["supervision"] == "barge", call
    [agent] = [g for g in call["legs"] if g["party"] == "agent"]  # type: ignore[index]
    # Barging: the customer and the agent both hear Chi.
    assert hears(site, ref, sup["leg_id"]) and hears(site, agent["leg_id"], sup["leg_id"])

    assert act(http, SUPPORT, call_id, "takeover").status_code == 303
    taken = wait_for(
        lambda: call_view(site, SUPPORT, call_id),
        lambda c: bool(chi_leg(c) and chi_leg(c)["party"] == "agent"),  # type: ignore[index]
        20,
    )
    assert taken is not None and not taken["ended_at"], taken
    [was] = [g for g in taken["legs"] if g["leg_id"] == agent["leg_id"]]
    assert was["ended_at"]  # An has left; Chi talks with the customer
    assert hears(site, ref, sup["leg_id"]) and hears(site, sup["leg_id"], ref)
    asyncio.run(panel(site.nats_url, "hangup", {"channel_id": ref}))
    assert ended(site, SUPPORT, call_id)
    http.close()
