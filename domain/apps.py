"""Every domain application in one container, built with one persistence environment.

`DomainApps()` with no environment keeps events in memory (eventsourcing's POPO
recorders), which is what unit tests and in-process replays use;
`DomainApps.build(env)` with `PERSISTENCE_MODULE=eventstore` puts each on its own
JetStream stream. Process managers and the web layer take the container and call the
verbs they need.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from domain.agents import Agents
from domain.base import TenantApplication
from domain.call_service import Calls
from domain.campaigns import Campaigns
from domain.conversations import Conversations
from domain.customers import Customers
from domain.ivr import IvrFlows
from domain.queues import Queues
from domain.routing import RoutingDecisions
from domain.sla import SlaPolicies
from domain.sla_clocks import SlaClocks
from domain.templates import ReplyTemplates
from domain.tenants import Tenants
from domain.tickets import Tickets

AGGREGATE_CACHE_MAXSIZE = "AGGREGATE_CACHE_MAXSIZE"


@dataclass(frozen=True)
class DomainApps:
    tenants: Tenants
    agents: Agents
    customers: Customers
    conversations: Conversations
    calls: Calls
    tickets: Tickets
    queues: Queues
    routing: RoutingDecisions
    ivr: IvrFlows
    sla: SlaPolicies
    sla_clocks: SlaClocks
    templates: ReplyTemplates
    campaigns: Campaigns

    @classmethod
    def build(cls, env: Mapping[str, str] | None = None) -> DomainApps:
        # Aggregates stay cached between commands (agents take several a call); each
        # get still fast-forwards from the store, so another process's writes are seen.
        settings = {AGGREGATE_CACHE_MAXSIZE: "10000", **(env or {})}
        built: dict[str, Any] = {}
        try:
            for f in fields(cls):
                app_class = _CLASSES[f.name]
                built[f.name] = app_class(env=settings)
        except BaseException:
            for app in built.values():
                app.close()
            raise
        return cls(**built)

    def __iter__(self) -> Iterator[TenantApplication]:
        return (getattr(self, f.name) for f in fields(self))

    def by_name(self) -> dict[str, TenantApplication]:
        """Each application under its stream name (`Application.name`)."""
        return {str(app.name): app for app in self}

    def close(self) -> None:
        for app in self:
            app.close()


_CLASSES: dict[str, type[TenantApplication]] = {
    "tenants": Tenants,
    "agents": Agents,
    "customers": Customers,
    "conversations": Conversations,
    "calls": Calls,
    "tickets": Tickets,
    "queues": Queues,
    "routing": RoutingDecisions,
    "ivr": IvrFlows,
    "sla": SlaPolicies,
    "sla_clocks": SlaClocks,
    "templates": ReplyTemplates,
    "campaigns": Campaigns,
}

# By stream name (`Application.name`): what a read model's `upstreams` refer to.
APP_CLASSES: dict[str, type[TenantApplication]] = {str(c.name): c for c in _CLASSES.values()}
