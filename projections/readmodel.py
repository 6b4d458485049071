"""Read models in SQLite (WAL), each applying an event and its position in one transaction.

Why SQLite in WAL mode: embedded (no server to run), one file per read model that an
operator can copy or drop and rebuild, readers never block the single writer, and a
transaction makes "apply the event and move the position" atomic — which is what makes a
projection apply every event exactly once across restarts and `kill -9`.

A read model may follow several applications' streams (`upstreams`, by application
name): it keeps one position per stream in `tracking`. Events of one stream arrive in
stream order; between streams there is no order (a live projection and a rebuild
interleave them differently). So the rule every read model keeps: **a row is written by
the events of one stream only**, and what combines streams does so when it is read
(a join or a lookup at query time). Then any interleaving gives the same tables, which is
what `cloudcc projections verify` checks.

`changed(tenant, kind, key)` inside `handle` notes what a reader may want to refetch;
the runner publishes those notes on NATS after the transaction commits (live updates).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, NamedTuple


class Change(NamedTuple):
    """One thing a read model changed, for the web layer to push: `kind` names the view
    (e.g. "conversation", "agent"), `key` the row (an id)."""

    tenant_id: str
    readmodel: str
    kind: str
    key: str


class SqliteReadModel:
    """Base for one read model in its own SQLite file, with its tracked positions."""

    name = "readmodel"
    # The application names whose streams feed this read model (ES_<NAME>).
    upstreams: tuple[str, ...] = ()
    schema: tuple[str, ...] = ()

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._changes: list[Change] = []
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            # `projection` holds the upstream application's name.
            db.execute(
                "CREATE TABLE IF NOT EXISTS tracking (projection TEXT PRIMARY KEY, position INTEGER NOT NULL)"
            )
            for statement in self.schema:
                db.execute(statement)

    def connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            # NORMAL in WAL mode: a crash can lose the last transactions, never corrupt;
            # lost ones are re-applied from the event store since the position goes too.
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def _upstream(self, upstream: str | None) -> str:
        if upstream is None:
            if len(self.upstreams) != 1:
                raise ValueError(f"{self.name} follows {self.upstreams}: name the upstream")
            return self.upstreams[0]
        if upstream not in self.upstreams:
            raise ValueError(f"{self.name} does not follow {upstream!r}")
        return upstream

    def position(self, upstream: str | None = None) -> int:
        row = (
            self.connect()
            .execute(
                "SELECT position FROM tracking WHERE projection = ?", (self._upstream(upstream),)
            )
            .fetchone()
        )
        return int(row[0]) if row else 0

    def positions(self) -> dict[str, int]:
        return {upstream: self.position(upstream) for upstream in self.upstreams}

    def apply(self, position: int, event: Any, upstream: str | None = None) -> bool:
        """Apply one event at its notification id; False if it was applied before."""
        return self.apply_batch([(position, event)], upstream) == 1

    def apply_batch(self, events: list[tuple[int, Any]], upstream: str | None = None) -> int:
        """Apply events of one stream, in order, in one transaction; how many were new.

        Either all of them and the last position are stored, or none: a failure rolls the
        batch back (the caller may then apply one by one to find the event at fault).
        """
        stream = self._upstream(upstream)
        db = self.connect()
        db.execute("BEGIN IMMEDIATE")
        mark = len(self._changes)
        try:
            row = db.execute(
                "SELECT position FROM tracking WHERE projection = ?", (stream,)
            ).fetchone()
            done = row[0] if row else 0
            applied = 0
            for position, event in events:
                if position <= done:
                    continue
                self.handle(db, event)
                done = position
                applied += 1
            if applied:
                db.execute(
                    "INSERT INTO tracking(projection, position) VALUES (?, ?) "
                    "ON CONFLICT(projection) DO UPDATE SET position = excluded.position",
                    (stream, done),
                )
            db.execute("COMMIT")
            return applied
        except BaseException:
            del self._changes[mark:]
            db.execute("ROLLBACK")
            raise

    def advance(self, position: int, upstream: str | None = None) -> None:
        """Move past a message an operator decided to skip, changing nothing else."""
        db = self.connect()
        db.execute(
            "INSERT INTO tracking(projection, position) VALUES (?, ?) "
            "ON CONFLICT(projection) DO UPDATE SET position = max(position, excluded.position)",
            (self._upstream(upstream), position),
        )

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        """Change the tables for one domain event (inside the caller's transaction)."""
        raise NotImplementedError

    def changed(self, tenant_id: str, kind: str, key: str) -> None:
        """Note, inside `handle`, that a row readers show has changed."""
        self._changes.append(Change(tenant_id, self.name, kind, key))

    def take_changes(self) -> list[Change]:
        """The changes noted since the last call (committed ones only)."""
        changes, self._changes = self._changes, []
        return changes
