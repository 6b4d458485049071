"""What `cloudcc up` runs besides NATS and HTTP: the domain applications, the projections
and their APIs. The runtime calls `register_services` before it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from domain.asyncapp import AsyncRunner
from domain.customers import Customers
from projections.registry import CUSTOMERS
from projections.service import ProjectionService
from web.api.customers import customers_router


class DomainService:
    """Builds the eventsourcing applications on the event store once NATS is up."""

    name = "domain"

    def __init__(self, data_dir: Path) -> None:
        self.runner = AsyncRunner()
        # Where each read model lives is the registry's to say: `cloudcc projections`
        # must find the very file this service writes.
        self.customers_read = CUSTOMERS.open(data_dir)
        self._customers: Customers | None = None

    @property
    def customers(self) -> Customers:
        if self._customers is None:
            raise RuntimeError("the domain service has not started")
        return self._customers

    async def start(self, runtime: Any) -> None:
        env = {
            "PERSISTENCE_MODULE": "eventstore",
            "NATS_URL": runtime.nats_url,
            "EVENTSTORE_REPLICAS": str(runtime.settings.replicas),
        }
        # Building an application connects and creates its stream: keep it off the loop.
        self._customers = await self.runner(Customers, env=env)

    async def stop(self) -> None:
        if self._customers is not None:
            self._customers.close()
            self._customers = None
        self.runner.close()

    def health(self) -> dict[str, Any]:
        return {"state": "running" if self._customers else "stopped", "error": None}


def register_services(runtime: Any) -> None:
    domain = DomainService(runtime.settings.data_dir)
    runtime.add_service(domain)
    runtime.add_service(
        ProjectionService(lambda: domain.customers, CUSTOMERS.app_name, domain.customers_read)
    )
    runtime.add_route_handlers(customers_router(domain))
