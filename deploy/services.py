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
    TIMELINE,
    ReadModelSpec,
)
from projections.routing import Router
from projections.service import ProjectionService
from projections.timeline import TimelineReadModel
from telephony_bridge.bridge import TelephonyBridge
from web.api.auth import SECURITY, api_key_guard
from web.api.calls import calls_router
from web.api.customers import customers_router
from web.pages.auth import pages_router
from web.pages.board import board_router
from web.pages.inbox import inbox_router


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

    def __init__(self, dialplan: DialplanReadModel, switch: str, data_dir: Path) -> None:
        self.dialplan, self.switch, self.data_dir = dialplan, switch, data_dir
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
        # The call log is read from its file: this process need not be the one keeping it.
        call_log = _kept_or_opened(domain, CALL_LOG, CallLogReadModel, settings.data_dir)
        access = domain.readmodels[ACCESS.name]
        assert isinstance(access, AccessReadModel)
        # Every API route behind one door: a key of the tenant in the path (web.api.auth).
        api = HttpRouter(
            path="/",
            route_handlers=[
                customers_router(domain),
                calls_router(CallsApi(call_log, settings.data_dir)),
            ],
            guards=[api_key_guard(access)],
            security=SECURITY,
        )
        runtime.add_route_handlers(api)
        # The pages people sign in to (OP4) check users with the same access read model.
        runtime.add_route_handlers(pages_router(access))
        # The boards are read from their files, kept by this process or another.
        board = _kept_or_opened(domain, AGENT_BOARD, AgentBoardReadModel, settings.data_dir)
        waits = _kept_or_opened(domain, QUEUE_BOARD, QueueBoardReadModel, settings.data_dir)
        runtime.add_route_handlers(board_router(access, board, waits, lambda: runtime.nc))
        # The inbox lists from read models and shows a conversation from the domain.
        inbox = _kept_or_opened(domain, INBOX, InboxReadModel, settings.data_dir)
        timeline = _kept_or_opened(domain, TIMELINE, TimelineReadModel, settings.data_dir)
        runtime.add_route_handlers(
            inbox_router(
                access, inbox, timeline, domain.customers_read, lambda: domain.apps, domain.runner
            )
        )
    if settings.runs("telephony"):
        dialplan = domain.readmodels[DIALPLAN.name]
        assert isinstance(dialplan, DialplanReadModel)
        runtime.add_service(TelephonyService(dialplan, settings.switch, settings.data_dir))
    if runtime.settings.demo:
        from deploy.demo import DemoService  # only `up --demo` needs it

        runtime.add_service(DemoService(domain))
