"""The read models, in one place: what each is called, which streams it follows and how
it is opened.

`cloudcc up` (deploy.services) runs a projection for each entry; `cloudcc projections
status|rebuild|verify` (deploy.projections_cli) walks the same list, so a read model
added here is served, rebuilt and verified alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from eventsourcing.application import Application

from domain.apps import APP_CLASSES
from projections.access import AccessReadModel
from projections.boards import AgentBoardReadModel, QueueBoardReadModel
from projections.calllog import CallLogReadModel
from projections.campaign_runner import CampaignRunner
from projections.customers import CustomersReadModel
from projections.dialplan import DialplanReadModel
from projections.inbox import InboxReadModel
from projections.readmodel import SqliteReadModel
from projections.routing import Router
from projections.sla_timers import SlaTimers
from projections.templates import TemplatesReadModel
from projections.tickets import TicketsReadModel
from projections.timeline import TimelineReadModel

READMODELS_DIR = "readmodels"
M = TypeVar("M", bound=SqliteReadModel, covariant=True)


@dataclass(frozen=True)
class ReadModelSpec(Generic[M]):
    """One read model: its name is also its file name under `<data>/readmodels/`."""

    model_class: type[M]

    @property
    def name(self) -> str:
        return self.model_class.name

    @property
    def upstreams(self) -> tuple[str, ...]:
        return self.model_class.upstreams

    @property
    def app_classes(self) -> dict[str, type[Application[Any]]]:
        """The eventsourcing application of each upstream stream (ES_<APP>): its mapper
        decodes the stored events (transcoder, topics, cipher or compression)."""
        return {name: APP_CLASSES[name] for name in self.upstreams}

    def factory(self, path: Path) -> M:
        return self.model_class(path)

    def path(self, data_dir: Path) -> Path:
        return data_dir / READMODELS_DIR / f"{self.name}.sqlite"

    def open(self, data_dir: Path) -> M:
        return self.factory(self.path(data_dir))


# Typed on their own so that deploy.services gets each read model's own class back.
CUSTOMERS = ReadModelSpec(CustomersReadModel)
INBOX = ReadModelSpec(InboxReadModel)
TICKETS = ReadModelSpec(TicketsReadModel)
CALL_LOG = ReadModelSpec(CallLogReadModel)
TIMELINE = ReadModelSpec(TimelineReadModel)
TEMPLATES = ReadModelSpec(TemplatesReadModel)
AGENT_BOARD = ReadModelSpec(AgentBoardReadModel)
QUEUE_BOARD = ReadModelSpec(QueueBoardReadModel)
# Who may call the API (tenants' API keys).
ACCESS = ReadModelSpec(AccessReadModel)
# What the telephony bridge reads to take an inbound call.
DIALPLAN = ReadModelSpec(DialplanReadModel)
# Process managers: read models that act (projections.process).
ROUTING = ReadModelSpec(Router)
SLA_TIMERS = ReadModelSpec(SlaTimers)
CAMPAIGN_RUNNER = ReadModelSpec(CampaignRunner)

READMODELS: dict[str, ReadModelSpec[SqliteReadModel]] = {
    spec.name: spec
    for spec in (
        CUSTOMERS,
        INBOX,
        TICKETS,
        CALL_LOG,
        TIMELINE,
        TEMPLATES,
        AGENT_BOARD,
        QUEUE_BOARD,
        DIALPLAN,
        ACCESS,
        ROUTING,
        SLA_TIMERS,
        CAMPAIGN_RUNNER,
    )
}
