"""Read models in SQLite (WAL), each applying an event and its position in one transaction.

Why SQLite in WAL mode: embedded (no server to run), one file per read model that an
operator can copy or drop and rebuild, readers never block the single writer, and a
transaction makes "apply the event and move the position" atomic — which is what makes a
projection apply every event exactly once across restarts and `kill -9`.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any


class SqliteReadModel:
    """Base for one read model in its own SQLite file, with its tracked position."""

    name = "readmodel"
    schema: tuple[str, ...] = ()

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
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

    def position(self) -> int:
        row = (
            self.connect()
            .execute("SELECT position FROM tracking WHERE projection = ?", (self.name,))
            .fetchone()
        )
        return int(row[0]) if row else 0

    def apply(self, position: int, event: Any) -> bool:
        """Apply one event at its notification id; False if it was applied before."""
        db = self.connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT position FROM tracking WHERE projection = ?", (self.name,)
            ).fetchone()
            if row and row[0] >= position:
                db.execute("ROLLBACK")
                return False
            self.handle(db, event)
            db.execute(
                "INSERT INTO tracking(projection, position) VALUES (?, ?) "
                "ON CONFLICT(projection) DO UPDATE SET position = excluded.position",
                (self.name, position),
            )
            db.execute("COMMIT")
            return True
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def advance(self, position: int) -> None:
        """Move past a message an operator decided to skip, changing nothing else."""
        db = self.connect()
        db.execute(
            "INSERT INTO tracking(projection, position) VALUES (?, ?) "
            "ON CONFLICT(projection) DO UPDATE SET position = max(position, excluded.position)",
            (self.name, position),
        )

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        """Change the tables for one domain event (inside the caller's transaction)."""
        raise NotImplementedError
