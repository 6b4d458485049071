"""Process managers: projections that act (routing, SLA timers, the campaign runner).

A process manager is a read model (`SqliteReadModel`: its state is tables, fed exactly
once from its upstream streams, rebuildable and verifiable like any other) plus `act`,
which the runner calls after new events were applied and whenever `next_due()` comes.
`act` looks at the state and issues domain commands; those commands' events are the
decisions, so the log explains every action, and they come back through the upstream
streams to update the state.

Because a decision's events arrive after `act` returned, `act` may run again before it
sees them: each act must be idempotent — the command is refused or a no-op the second
time (the aggregate knows), or the manager remembers in memory what it has in flight
until its events arrive. After a restart the state comes back from the tables, so what
fell due while the process was down is acted on at the first `act` (catch-up).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from projections.readmodel import SqliteReadModel


@dataclass
class ActContext:
    """What `act` may use: the domain applications, the time, and NATS for commands.

    `publish(subject, payload)` sends a command to another service (the telephony bridge,
    a connector); it is thread-safe and returns once NATS has taken the message.
    """

    apps: Any  # domain.apps.DomainApps (Any: process managers must not import deploy)
    now: datetime
    publish: Callable[[str, bytes], None] = field(default=lambda subject, payload: None)


class ProcessManager(SqliteReadModel):
    """A read model whose `act` turns its state into domain commands."""

    def act(self, ctx: ActContext) -> list[Any]:
        """Issue the commands that are due at `ctx.now`; what was decided (for logs/tests).

        A manager may also start commands and return without waiting for them (routing
        does, so that one slow append holds up no other decision); it then returns what
        finished since its last act, and keeps what is still running claimed.
        """
        raise NotImplementedError

    def actionable(self, event: Any) -> bool:
        """Whether this event, once applied, may give `act` something to do. Every event
        by default; a manager that follows busy streams says which ones matter, so that
        it does not act after every burst of events it only keeps for reference."""
        return True

    def next_due(self) -> datetime | None:
        """The earliest time `act` has something to do without a new event; None if never."""
        return None
