"""Rebuilding a read model from the event log, and comparing two copies of one.

A rebuild reads each upstream application's notifications through the event store (pages of 1000,
which the store serves from one read-ahead consumer), decodes each with the
application's own mapper and applies it with the read model's own `handle`, in
notification order. It always writes into a fresh file: `cloudcc projections rebuild`
then swaps it for the live one, `cloudcc projections verify` compares the two.

A message that does not decode stops the rebuild (`UndecodableEventError`, with its
sequence) unless an operator recorded a skip for it, in which case the store passes it,
as the live projection does.

`compare` opens nothing itself: it takes two connections, so that the caller can hold a
read snapshot of the live file (see `live_snapshot`) while a running instance writes on.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder, OperationalError

from projections.readmodel import SqliteReadModel
from projections.registry import ReadModelSpec

PAGE = 1000
# While a rebuild writes its scratch file (measured on the customers read model, whose
# every event is a few B-tree writes at random places, see bench/README.md):
# - the rollback journal in memory, not WAL: each page's commit then writes its pages
#   once, into the file, instead of into the WAL and again at each checkpoint. Not OFF:
#   a failed statement or ROLLBACK must still undo its writes, as it does for the live
#   projection, or a read model that recovers from an error would rebuild differently;
# - one connection holding its lock throughout, so SQLite keeps its page cache between
#   transactions instead of checking the file for other writers at each one;
# - a page cache of 64 MiB instead of 2 MiB: the tables of a read model are written all
#   over, and a small cache reads the same pages back again and again.
SCRATCH_PRAGMAS = (
    "PRAGMA journal_mode=MEMORY",
    "PRAGMA locking_mode=EXCLUSIVE",
    "PRAGMA cache_size=-65536",
)


class RebuildError(Exception):
    """An event the read model could not take; the message names it."""


# --------------------------------------------------------------------------- reading
def open_applications(spec: ReadModelSpec[Any], nats_url: str) -> dict[str, Application[Any]]:
    """The read model's upstream applications on the event store, for reading only."""
    env = {
        "PERSISTENCE_MODULE": "eventstore",
        "NATS_URL": nats_url,
        # A read must not create an application's stream (a typo'd URL or a fresh
        # cluster would otherwise get an empty one); a missing stream reads as empty.
        "CREATE_TABLE": "no",
    }
    apps: dict[str, Application[Any]] = {}
    try:
        for name, app_class in spec.app_classes.items():
            apps[name] = app_class(env=env)
    except BaseException:
        close_applications(apps)
        raise
    return apps


def close_applications(apps: Mapping[str, Application[Any]]) -> None:
    for app in apps.values():
        app.close()


def last_event(recorder: ApplicationRecorder) -> int:
    """The last event's notification id, 0 for an empty or missing stream."""
    try:
        return recorder.max_notification_id() or 0
    except OperationalError:
        return 0  # the stream does not exist yet: nothing was ever appended


class Progress:
    """A one-line progress report on stderr: `name: done/total (rate/s)`."""

    def __init__(self, name: str, total: int, out: TextIO | None = None) -> None:
        self.name = name
        self.total = total
        self.out = out or sys.stderr
        self.started = time.monotonic()
        self._shown = 0.0

    def update(self, events: int, position: int, *, final: bool = False) -> None:
        now = time.monotonic()
        # A redraw per page would flood a slow terminal or a log file; 10 a second do.
        if not final and now - self._shown < 0.1:
            return
        self._shown = now
        elapsed = max(now - self.started, 1e-6)
        percent = 100.0 if not self.total else min(position / self.total, 1.0) * 100
        line = (
            f"{self.name}: position {position}/{self.total} ({percent:5.1f}%), "
            f"{events} events, {events / elapsed:,.0f}/s"
        )
        self.out.write(f"\r{line}" + ("\n" if final else ""))
        self.out.flush()


def rebuild_into(
    spec: ReadModelSpec[Any],
    apps: Mapping[str, Application[Any]],
    path: Path,
    *,
    stop: Mapping[str, int] | None = None,
    progress: TextIO | None = None,
) -> dict[str, int]:
    """Build `spec`'s read model from zero into the new file `path`; its final positions.

    Upstream streams are read one after the other: read models do not depend on the
    order between streams (projections.readmodel). `stop` ends each stream's part at
    that notification id (verify stops where the live copy is). The file is closed when
    this returns, with its WAL checkpointed into it.
    """
    if path.exists():
        raise FileExistsError(f"{path} exists; a rebuild starts from an empty file")
    ends: dict[str, int] = {}
    for upstream in spec.upstreams:
        recorder = apps[upstream].recorder
        assert isinstance(recorder, ApplicationRecorder)  # every application's recorder is one
        end = last_event(recorder)
        if stop is not None:
            end = min(stop.get(upstream, 0), end)
        ends[upstream] = end
    model = spec.factory(path)
    db = model.connect()
    # A scratch file: if this process dies the file is thrown away, so a crash may leave
    # it in any state; what is kept is fsynced once at the end (see replace_live).
    db.execute("PRAGMA synchronous=OFF")
    for pragma in SCRATCH_PRAGMAS:
        db.execute(pragma)
    bar = Progress(spec.name, sum(ends.values()), progress)
    applied = done = 0
    try:
        for upstream, end in ends.items():
            app = apps[upstream]
            recorder = app.recorder
            assert isinstance(recorder, ApplicationRecorder)
            position = 0
            while position < end:
                page = recorder.select_notifications(position + 1, PAGE, stop=end)
                if not page:
                    break  # what is left up to `end` was skipped by an operator
                _apply_page(model, upstream, app, db, page)
                position = page[-1].id
                applied += len(page)
                bar.update(applied, done + position)
            if end:
                # Passed skipped messages count as read, as for the live projection: both
                # copies then end at the same position.
                model.advance(end, upstream)
            done += end
        bar.update(applied, done, final=True)
        # Back to what a live read model runs in (and what SqliteReadModel sets when it
        # opens one): the file's header says WAL from here on, for whoever opens it next.
        db.execute("PRAGMA locking_mode=NORMAL")
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    return ends


def _apply_page(
    model: SqliteReadModel,
    upstream: str,
    app: Application[Any],
    db: sqlite3.Connection,
    page: Any,
) -> None:
    # One transaction per page, not per event as the live projection does: nothing reads
    # this file until the rebuild is complete, and a thousand commits cost much more.
    to_domain_event = app.mapper.to_domain_event
    handle = model.handle
    db.execute("BEGIN IMMEDIATE")
    try:
        for notification in page:
            try:
                handle(db, to_domain_event(notification))
            except Exception as error:
                raise RebuildError(
                    f"{model.name}: event {notification.id} ({notification.topic}) "
                    f"could not be applied: {type(error).__name__}: {error}"
                ) from error
        db.execute(
            "INSERT INTO tracking(projection, position) VALUES (?, ?) "
            "ON CONFLICT(projection) DO UPDATE SET position = excluded.position",
            (upstream, page[-1].id),
        )
        db.execute("COMMIT")
        model.take_changes()  # nobody is told of a rebuild's changes
    except BaseException:
        db.execute("ROLLBACK")
        raise


def sqlite_files(path: Path) -> list[Path]:
    """A SQLite file and its WAL companions."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def replace_live(rebuilt: Path, live: Path) -> None:
    """Put a rebuilt (closed) file in the live one's place, atomically.

    Only when no process has the live file open: its WAL and shared-memory files go
    first, since SQLite would otherwise replay the old file's WAL onto the new one.
    """
    with open(rebuilt, "rb+") as f:
        os.fsync(f.fileno())
    for companion in sqlite_files(live)[1:]:
        companion.unlink(missing_ok=True)
    os.replace(rebuilt, live)
    # The rename itself is durable only once the directory is.
    fd = os.open(live.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_files(path: Path) -> None:
    for one in sqlite_files(path):
        with suppress(FileNotFoundError):
            one.unlink()


# ------------------------------------------------------------------------- reading files
def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection: status and verify never write a live read model."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    db.row_factory = sqlite3.Row
    return db


def tracked_positions(db: sqlite3.Connection, upstreams: Iterable[str]) -> dict[str, int]:
    """Each upstream's position in a read model file (0 for a stream never read)."""
    try:
        rows = dict(db.execute("SELECT projection, position FROM tracking").fetchall())
    except sqlite3.OperationalError:
        rows = {}  # no tracking table: the file was never opened by a read model
    return {upstream: int(rows.get(upstream, 0)) for upstream in upstreams}


@contextmanager
def live_snapshot(
    path: Path, upstreams: Iterable[str]
) -> Iterator[tuple[sqlite3.Connection, dict[str, int]]]:
    """(connection, positions) on one read snapshot of a live read model.

    The position and every row later read come from the same transaction: in WAL mode
    the writer goes on meanwhile, unseen, so a running instance that moves on causes no
    false differences.
    """
    db = connect_readonly(path)
    try:
        db.execute("BEGIN")
        yield db, tracked_positions(db, upstreams)
    finally:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        db.close()


# ----------------------------------------------------------------------------- compare
@dataclass
class TableDiff:
    table: str
    count: int = 0
    shown: list[str] = field(default_factory=list)

    def add(self, line: str, limit: int) -> None:
        self.count += 1
        if len(self.shown) < limit:
            self.shown.append(line)


def _tables(db: sqlite3.Connection) -> list[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return [r[0] for r in rows]


def _columns(db: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    """(columns, primary-key columns in key order)."""
    info = db.execute(f'PRAGMA table_info("{table}")').fetchall()
    columns = [r[1] for r in info]
    key = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    return columns, key


def _key_text(names: list[str], values: tuple[Any, ...]) -> str:
    return "(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, values, strict=True)) + ")"


def compare(
    live: sqlite3.Connection, rebuilt: sqlite3.Connection, limit: int = 10
) -> list[TableDiff]:
    """Differences between two copies of a read model, table by table, row by row.

    Rows are matched by primary key; a table without one is compared as a multiset of
    rows. At most `limit` differences per table are kept as text, all are counted.
    """
    found: list[TableDiff] = []
    live_tables, rebuilt_tables = set(_tables(live)), set(_tables(rebuilt))
    for table in sorted(live_tables | rebuilt_tables):
        diff = TableDiff(table)
        found.append(diff)
        if table not in live_tables:
            diff.add("table missing from the live copy", limit)
            continue
        if table not in rebuilt_tables:
            diff.add("table not in the rebuilt copy", limit)
            continue
        columns, key = _columns(live, table)
        if (columns, key) != _columns(rebuilt, table):
            diff.add(
                f"columns differ: live {columns}, rebuilt {_columns(rebuilt, table)[0]}", limit
            )
            continue
        select = f'SELECT {", ".join(f"{chr(34)}{c}{chr(34)}" for c in columns)} FROM "{table}"'
        if not key:
            live_rows = Counter(tuple(r) for r in live.execute(select))
            rebuilt_rows = Counter(tuple(r) for r in rebuilt.execute(select))
            for row in sorted((live_rows - rebuilt_rows).elements(), key=repr):
                diff.add(f"row {_key_text(columns, row)} in the live copy only", limit)
            for row in sorted((rebuilt_rows - live_rows).elements(), key=repr):
                diff.add(f"row {_key_text(columns, row)} missing from the live copy", limit)
            continue
        at = [columns.index(k) for k in key]
        live_by_key = {tuple(r[i] for i in at): tuple(r) for r in live.execute(select)}
        rebuilt_by_key = {tuple(r[i] for i in at): tuple(r) for r in rebuilt.execute(select)}
        for k in sorted(live_by_key.keys() | rebuilt_by_key.keys(), key=repr):
            mine, theirs = live_by_key.get(k), rebuilt_by_key.get(k)
            where = f"row {_key_text(key, k)}"
            if theirs is None:
                diff.add(f"{where} in the live copy only", limit)
            elif mine is None:
                diff.add(f"{where} missing from the live copy", limit)
            elif mine != theirs:
                changed = [
                    f"{c}: live {a!r}, rebuilt {b!r}"
                    for c, a, b in zip(columns, mine, theirs, strict=True)
                    if a != b
                ]
                diff.add(f"{where} differs: " + "; ".join(changed), limit)
    return [d for d in found if d.count]
