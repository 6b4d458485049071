"""What `cloudcc up` runs besides NATS and HTTP: the domain applications, the projections
and their APIs. The runtime calls `register_services` before it starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from litestar import Router as HttpRouter

from connectors.bus import FactConsumer, ensure_facts_stream, start_fact_consumers
from connectors.handlers import FactApps
from connectors.livechat.outbound import ChatHub
from connectors.livechat.services import LiveChat
from deploy.settings import SettingsError
from domain.apps import DomainApps
from domain.asyncapp import AsyncRunner
from domain.customers import Customers
from projections.access import AccessReadModel
from projections.boards import AgentBoardReadModel, QueueBoardReadModel
from projections.calllog import CallLogReadModel
from projections.dialplan import DialplanReadModel
from projections.feeds import Feeds
from projections.inbox import InboxReadModel
from projections.readmodel import SqliteReadModel
from projections.registry import (
    ACCESS,
    AGENT_BOARD,
    CALL_LOG,
    CUSTOMERS,
    DIALPLAN,
    INBOX,
    QUEUE_BOARD,
    READMODELS,
    ROUTING,
    TEMPLATES,
    TICKETS,
    TIMELINE,
    ReadModelSpec,
)
from projections.routing import Router
from projections.routing_state import RoutingState
from projections.service import ProjectionService
from projections.templates import TemplatesReadModel
from projections.tickets import TicketsReadModel
from projections.timeline import TimelineReadModel
from telephony_bridge.bridge import TelephonyBridge
from web.api.auth import SECURITY, api_key_guard
from web.api.calls import calls_router
from web.api.customers import customers_router
from web.api.v1 import TenantApi, tenant_routers
from web.pages.auth import instance_secret, pages_router
from web.pages.board import board_router
from web.pages.chat import chat_router
from web.pages.customers import customers_router as customer_pages
from web.pages.inbox import inbox_router
from web.pages.overview import overview_router
from web.pages.phone import phone_router
from web.pages.tickets import tickets_router as ticket_pages


class DomainService:
    """Builds the eventsourcing applications on the event store once NATS is up."""

    name = "domain"

    def __init__(
        self,
        data_dir: Path,
        readmodels: Iterable[str] | None = None,
        *,
        wrap_up_seconds: float = 15.0,
    ) -> None:
        self.runner = AsyncRunner()
        # Where each read model lives is the registry's to say: `cloudcc projections`
        # must find the very file this service writes. `readmodels` names those this
        # process keeps up to date (all by default).
        names = list(READMODELS) if readmodels is None else list(readmodels)
        self.customers_read = CUSTOMERS.open(data_dir)
        self.readmodels: dict[str, SqliteReadModel] = {}
        for name in names:
            spec = READMODELS[name]
            self.readmodels[name] = (
                self.customers_read if spec is CUSTOMERS else spec.open(data_dir)
            )
        router = self.readmodels.get(ROUTING.name)
        if isinstance(router, Router):
            router.wrap_up_seconds = wrap_up_seconds
        self._apps: DomainApps | None = None

    @property
    def apps(self) -> DomainApps:
        if self._apps is None:
            raise RuntimeError("the domain service has not started")
        return self._apps

    @property
    def fact_apps(self) -> FactApps:
        apps = self.apps
        return FactApps(
            customers=apps.customers,
            conversations=apps.conversations,
            calls=apps.calls,
            campaigns=apps.campaigns,
        )

    @property
    def customers(self) -> Customers:
        return self.apps.customers

    async def start(self, runtime: Any) -> None:
        env = {
            "PERSISTENCE_MODULE": "eventstore",
            "NATS_URL": runtime.nats_url,
            "EVENTSTORE_REPLICAS": str(runtime.settings.replicas),
        }
        # Building an application connects and creates its stream: keep it off the loop.
        self._apps = await self.runner(DomainApps.build, env)

    async def stop(self) -> None:
        if self._apps is not None:
            self._apps.close()
            self._apps = None
        self.runner.close()

    def health(self) -> dict[str, Any]:
        return {"state": "running" if self._apps else "stopped", "error": None}


class FactsService:
    """The fact subscribers (connectors.bus): facts from channels and the switch become
    domain commands. Several processes may run it; they share each kind's consumer."""

    name = "facts"

    def __init__(self, domain: DomainService) -> None:
        self.domain = domain
        self._consumers: list[FactConsumer] = []

    async def start(self, runtime: Any) -> None:
        js = runtime.nc.jetstream()
        await ensure_facts_stream(js)
        self._consumers = await start_fact_consumers(js, self.domain.fact_apps, self.domain.runner)

    async def stop(self) -> None:
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            await consumer.stop()

    def health(self) -> dict[str, Any]:
        errors = [f"{c.kind}: {c.error}" for c in self._consumers if c.error]
        state = "running" if self._consumers else "stopped"
        return {"state": state, "error": "; ".join(errors) or None}


class FeedsService:
    """Stops the stream feeds once the projections reading them have stopped."""

    name = "feeds"

    def __init__(self, feeds: Feeds) -> None:
        self.feeds = feeds

    async def start(self, runtime: Any) -> None:
        pass  # a feed starts when its first projection attaches

    async def stop(self) -> None:
        self.feeds.stop()

    def health(self) -> dict[str, Any]:
        return {"state": "running", "error": None}


@dataclass(frozen=True)
class CallsApi:
    """What the calls, recordings and CDR API reads (web.api.calls)."""

    call_log: CallLogReadModel
    data_dir: Path


class TelephonyService:
    """The telephony bridge (telephony_bridge.bridge) on the configured switch: the
    built-in one in this process, or FreeSWITCH over its Event Socket."""

    name = "telephony"

    def __init__(
        self, dialplan: DialplanReadModel, switch: str, data_dir: Path, domain: DomainService
    ) -> None:
        self.dialplan, self.switch, self.data_dir = dialplan, switch, data_dir
        self.domain = domain
        self.bridge: TelephonyBridge | None = None
        self.driver: Any = None
        self.panel: Any = None

    async def start(self, runtime: Any) -> None:
        js = runtime.nc.jetstream()
        await ensure_facts_stream(js)
        self.driver = driver_for(self.switch)
        self.bridge = TelephonyBridge(
            runtime.nc,
            js,
            self.driver,
            self.dialplan,
            self.data_dir / "recordings",
            owns_every_call=self.switch == "builtin",
        )
        await self.bridge.start()
        if self.switch == "builtin":
            # The built-in switch's callers and phones are played through its panel.
            from telephony_bridge.switchctl import SwitchPanel
            from web.pages.phone import forget_browsers

            # No browser is registered at a switch that just started: their users' calls
            # ring their first endpoint again (web.pages.phone). Before the panel lets
            # browsers register, so that none of theirs is cleared.
            domain = self.domain
            routing = domain.readmodels.get(ROUTING.name)
            if routing is None and ROUTING.path(self.data_dir).exists():
                routing = ROUTING.open(self.data_dir)
            if isinstance(routing, RoutingState):
                await domain.runner(forget_browsers, routing, domain.apps.agents)
            self.panel = SwitchPanel(runtime.nc, self.driver)
            await self.panel.start()

    async def stop(self) -> None:
        if self.panel is not None:
            await self.panel.stop()
            self.panel = None
        if self.bridge is not None:
            await self.bridge.stop()
            self.bridge = None

    def health(self) -> dict[str, Any]:
        bridge = self.bridge
        return {
            "state": "running" if bridge else "stopped",
            "error": None,
            "switch": self.switch.split("@")[-1],
            "live_legs": len(bridge.legs) if bridge else 0,
            "commands": bridge.commands_done if bridge else 0,
            "errors": bridge.errors if bridge else 0,
        }


def driver_for(switch: str) -> Any:
    """`builtin`, or `freeswitch://:PASSWORD@HOST:PORT`."""
    if switch == "builtin":
        from telephony_bridge.switch import BuiltinSwitch

        return BuiltinSwitch()
    from urllib.parse import urlsplit

    from telephony_bridge.freeswitch import FreeSwitchDriver

    url = urlsplit(switch)
    return FreeSwitchDriver(
        url.hostname or "127.0.0.1", url.port or 8021, url.password or "ClueCon"
    )


M = TypeVar("M", bound=SqliteReadModel)


def _kept_or_opened(
    domain: DomainService, spec: ReadModelSpec[SqliteReadModel], cls: type[M], data_dir: Path
) -> M:
    """The read model this process keeps, or else its file opened for reading."""
    kept = domain.readmodels.get(spec.name)
    model = kept if kept is not None else spec.open(data_dir)
    assert isinstance(model, cls)
    return model


def register_services(runtime: Any) -> None:
    """Everything by default; with `CLOUDCC_SERVICES`, only the parts named (scaled out:
    the fact consumers, the API and each read model may each run in its own process)."""
    settings = runtime.settings
    known = {"all", "facts", "api", "telephony", "readmodels", *READMODELS}
    if unknown := settings.services - known:
        raise SettingsError(
            f"CLOUDCC_SERVICES: no service {', '.join(sorted(unknown))}; "
            f"there are: {', '.join(sorted(known))}"
        )
    names = [name for name in READMODELS if settings.runs(name)]
    if settings.runs("api"):
        # The API answers from the customers read model and checks keys with the access
        # one, which also signs people in to the pages: both must be kept up to date in
        # the process that serves them (their files are in this process's data directory).
        names += [n for n in (CUSTOMERS.name, ACCESS.name) if n not in names]
    if settings.runs("telephony") and DIALPLAN.name not in names:
        names.append(DIALPLAN.name)  # the bridge takes inbound calls from it, likewise
    if settings.demo and len(names) < len(READMODELS):
        raise SettingsError("--demo runs every service: leave CLOUDCC_SERVICES unset")
    domain = DomainService(settings.data_dir, names, wrap_up_seconds=settings.wrap_up_seconds)
    runtime.add_service(domain)
    if settings.runs("facts"):
        runtime.add_service(FactsService(domain))
    # One reader per stream for all the projections of this process (projections.feeds);
    # added before them, so stopped after them.
    feeds = FeedsService(Feeds(lambda: domain.apps))
    runtime.add_service(feeds)
    for readmodel in domain.readmodels.values():
        runtime.add_service(ProjectionService(lambda: domain.apps, readmodel, feeds=feeds.feeds))
    if settings.runs("api"):
        _serve_web(runtime, domain)
    if settings.runs("telephony"):
        dialplan = domain.readmodels[DIALPLAN.name]
        assert isinstance(dialplan, DialplanReadModel)
        runtime.add_service(TelephonyService(dialplan, settings.switch, settings.data_dir, domain))
    if runtime.settings.demo:
        from deploy.demo import DemoService  # only `up --demo` needs it

        runtime.add_service(DemoService(domain))


def _serve_web(runtime: Any, domain: DomainService) -> None:
    """The API and the pages. Each reads the read models this process keeps, or else their
    files in its data directory, kept by another process (scaled out)."""
    data_dir = runtime.settings.data_dir

    def opened(spec: ReadModelSpec[SqliteReadModel], cls: type[M]) -> M:
        return _kept_or_opened(domain, spec, cls, data_dir)

    def apps() -> DomainApps:
        return domain.apps

    def nats() -> Any:
        return runtime.nc

    call_log = opened(CALL_LOG, CallLogReadModel)
    inbox, tickets = opened(INBOX, InboxReadModel), opened(TICKETS, TicketsReadModel)
    board, waits = (
        opened(AGENT_BOARD, AgentBoardReadModel),
        opened(QUEUE_BOARD, QueueBoardReadModel),
    )
    timeline, customers = opened(TIMELINE, TimelineReadModel), domain.customers_read
    access = domain.readmodels[ACCESS.name]
    assert isinstance(access, AccessReadModel)
    runner = domain.runner
    # Every API route behind one door: a key of the tenant in the path (web.api.auth).
    tenant_api = TenantApi(
        inbox=inbox, tickets=tickets, agent_board=board, queue_board=waits, apps=apps, runner=runner
    )
    api = HttpRouter(
        path="/",
        route_handlers=[
            customers_router(domain),
            calls_router(CallsApi(call_log, data_dir)),
            *tenant_routers(tenant_api),
        ],
        guards=[api_key_guard(access)],
        security=SECURITY,
    )
    # The live chat (CT8, CT9): the widget script, visitors' sockets, replies pushed.
    chat = LiveChat(apps, runner, board, access, instance_secret(data_dir), ChatHub(nats), nats)
    templates = opened(TEMPLATES, TemplatesReadModel)
    for handlers in (
        api,
        # The pages people sign in to (OP4) check users with the same access read model.
        pages_router(access),
        chat_router(chat),
        board_router(
            access, board, waits, nats, calls=inbox, call_log=call_log, apps=apps, runner=runner
        ),
        overview_router(access, board, waits, tickets),
        inbox_router(
            access, inbox, timeline, customers, tickets, templates, board, waits, apps, runner, nats
        ),
        # The agent's phone: pop, controls, notes, click-to-call, softphone.
        phone_router(access, customers, timeline, board, apps, runner, nats),
        customer_pages(access, customers, timeline, tickets, inbox, apps, runner),
        ticket_pages(access, tickets, customers, inbox, board, apps, runner),
    ):
        runtime.add_route_handlers(handlers)
