"""The read models, in one place: what each is called, which stream it follows, how it
is opened, and which application decodes its events.

`cloudcc up` (deploy.services) runs a projection for each entry; `cloudcc projections
status|rebuild|verify` (projections.cli) walks the same list, so a read model added here
is served, rebuilt and verified alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from eventsourcing.application import Application

from domain.customers import Customers
from projections.customers import CustomersReadModel
from projections.readmodel import SqliteReadModel

READMODELS_DIR = "readmodels"
M = TypeVar("M", bound=SqliteReadModel, covariant=True)


@dataclass(frozen=True)
class ReadModelSpec(Generic[M]):
    """One read model: `name` is also its file name under `<data>/readmodels/`."""

    name: str
    # The eventsourcing application whose stream (ES_<APP>) the read model follows; its
    # mapper decodes the stored events (transcoder, topics, cipher or compression).
    app_class: type[Application[Any]]
    factory: Callable[[Path], M]

    @property
    def app_name(self) -> str:
        return str(self.app_class.name)

    def path(self, data_dir: Path) -> Path:
        return data_dir / READMODELS_DIR / f"{self.name}.sqlite"

    def open(self, data_dir: Path) -> M:
        return self.factory(self.path(data_dir))


# Typed on their own so that deploy.services gets each read model's own class back.
CUSTOMERS = ReadModelSpec("customers", Customers, CustomersReadModel)

READMODELS: dict[str, ReadModelSpec[SqliteReadModel]] = {spec.name: spec for spec in (CUSTOMERS,)}
