"""`cloudcc projections status|rebuild [NAME]|verify`: an operator's hold on the read models.

- `status`: each read model's position (read from its file, read-only) and lag (the
  stream's last event minus the position), and its state in the running instance.
- `rebuild [NAME]`: from zero, into a new file next to the live one, then an atomic
  rename over it. Refused while cloudcc runs on the data directory: the running
  projection has the file open and would go on writing into the replaced one. The
  command holds the data directory's lock meanwhile, so `cloudcc up` waits its turn.
- `verify`: rebuilds every read model into a scratch directory, up to the position of
  the live copy, compares them table by table and row by row, prints the differences
  and exits 1 if there are any. Safe while cloudcc runs (it only reads the live file).

NATS is found through `NATS_URL`, else the running instance's; with neither (an embedded
set-up that is stopped), `rebuild` and `verify` start the embedded nats-server on the
data directory for their run.

The commands live here rather than in projections/ because they need the runtime's
lock, instance file and embedded server: deploy/ is the one room that may import all.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploy.runtime import LOCK_FILE, find_instance
from deploy.settings import Settings


class Refused(Exception):
    """The command cannot run now; the message says why and what to do."""


def register(subparsers: Any) -> None:
    projections = subparsers.add_parser(
        "projections", help="read models: status, rebuild from the event log, verify"
    )
    commands = projections.add_subparsers(
        dest="projections_command", required=True, metavar="ACTION"
    )
    status = commands.add_parser("status", help="position and lag of each read model")
    rebuild = commands.add_parser(
        "rebuild", help="rebuild read models from zero (cloudcc must be stopped)"
    )
    rebuild.add_argument("name", nargs="?", help="one read model (default: all)")
    verify = commands.add_parser(
        "verify", help="rebuild into a scratch place and compare with the live read models"
    )
    verify.add_argument("--limit", type=int, default=10, help="differences shown per table (10)")
    for parser in (status, rebuild, verify):
        parser.add_argument("--data", help="data directory (default $CLOUDCC_DATA or ./var)")
    status.set_defaults(func=_status)
    rebuild.set_defaults(func=_rebuild)
    verify.set_defaults(func=_verify)


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(**({"data_dir": args.data} if args.data else {}))


def _fail(message: str) -> int:
    print(f"cloudcc: {message}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path) -> Iterator[None]:
    """The runtime's own lock on the data directory, held for this command's run."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        info = find_instance(data_dir) or {}
        raise Refused(
            f"cloudcc is running on {data_dir} (pid {info.get('pid') or '?'}): "
            "stop cloudcc first (`cloudcc stop`), then rebuild"
        ) from None
    # As the runtime does: the pid names the holder to `cloudcc status` and `up`.
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    try:
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _nats(settings: Settings, *, locked: bool) -> Iterator[str]:
    """A NATS URL with the event store: NATS_URL, the running instance's, or embedded."""
    if settings.nats_url:
        yield settings.nats_url
        return
    info = find_instance(settings.data_dir)
    if info is not None:
        if not info["nats_url"]:
            raise Refused(f"cloudcc on {settings.data_dir} is just starting; try again")
        yield info["nats_url"]
        return
    from deploy.natsserver import NatsServer

    # Stopped embedded set-up: its stream lives under <data>/nats. Starting that server
    # here is safe only while nobody else can (the data directory's lock).
    with contextlib.ExitStack() as stack:
        if not locked:
            stack.enter_context(_data_dir_lock(settings.data_dir))
        server = NatsServer(
            data_dir=settings.data_dir / "nats", sync_interval=settings.sync_interval
        )
        server.start()
        stack.callback(server.stop)
        yield server.url


def _specs(name: str | None) -> list[Any]:
    from projections.registry import READMODELS

    if name is None:
        return list(READMODELS.values())
    if name not in READMODELS:
        raise Refused(f"no read model {name!r}; there are: {', '.join(READMODELS)}")
    return [READMODELS[name]]


def _where(positions: dict[str, int]) -> str:
    """Positions as operators read them: `position 42`, or `customers 42, calls 7`."""
    if len(positions) == 1:
        return f"position {next(iter(positions.values()))}"
    return ", ".join(f"{name} {position}" for name, position in positions.items())


# ------------------------------------------------------------------------------ status
def _status(args: argparse.Namespace) -> int:
    from eventsourcing.persistence import OperationalError

    from eventstore import connection
    from eventstore.layout import StreamLayout
    from eventstore.store import JetStreamStore
    from projections.rebuild import connect_readonly, tracked_positions

    settings = _settings(args)
    info = find_instance(settings.data_dir)
    url = settings.nats_url or (info["nats_url"] if info else None)
    services: dict[str, Any] = {}
    if info is not None and info["http_url"]:
        from deploy.cli import _get_json

        with contextlib.suppress(OSError, ValueError):
            services = _get_json(f"{info['http_url']}/health").get("services", {})
    conn = connection.NatsConnection(url) if url else None
    try:
        rows = []
        for spec in _specs(None):
            path = spec.path(settings.data_dir)
            positions: dict[str, int] | None = None
            if path.exists():
                db = connect_readonly(path)
                try:
                    positions = tracked_positions(db, spec.upstreams)
                finally:
                    db.close()
            health = services.get(spec.name)
            state = health["state"] if health else ("not running" if info is None else "?")
            if health and health.get("error"):
                state += f" ({health['error']})"
            # One line per stream followed: a read model fed by several is as current
            # as its most lagging stream.
            for upstream in spec.upstreams:
                lag = "?"
                position = None if positions is None else positions[upstream]
                if conn is not None:
                    store = JetStreamStore(conn, StreamLayout(upstream))
                    try:
                        last = conn.run(store.max_notification_id()) or 0
                    except OperationalError:
                        last = 0  # no stream yet: nothing was ever appended
                    lag = str(max(last - (position or 0), 0))
                shown = "no file" if position is None else str(position)
                rows.append((spec.name, upstream, shown, lag, state))
    finally:
        if conn is not None:
            conn.close()
    print(f"read models in {settings.data_dir}")
    print(f"{'NAME':<16} {'STREAM':<16} {'POSITION':>10} {'LAG':>8}  STATE")
    for name, upstream, shown, lag, state in rows:
        print(f"{name:<16} {upstream:<16} {shown:>10} {lag:>8}  {state}")
    if conn is None:
        print("lag: unknown (no NATS_URL and cloudcc is not running)", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- rebuild
def _rebuild(args: argparse.Namespace) -> int:
    from eventstore.codec import UndecodableEventError
    from projections.rebuild import (
        RebuildError,
        close_applications,
        open_applications,
        rebuild_into,
        remove_files,
        replace_live,
    )

    settings = _settings(args)
    try:
        specs = _specs(args.name)
        with _data_dir_lock(settings.data_dir), _nats(settings, locked=True) as url:
            for spec in specs:
                live = spec.path(settings.data_dir)
                live.parent.mkdir(parents=True, exist_ok=True)
                # Same directory as the live file, so the final rename is atomic.
                scratch = live.with_name(f".{live.name}.rebuild-{os.getpid()}")
                remove_files(scratch)
                apps = open_applications(spec, url)
                try:
                    positions = rebuild_into(spec, apps, scratch)
                    replace_live(scratch, live)
                except (UndecodableEventError, RebuildError) as error:
                    remove_files(scratch)
                    return _fail(f"rebuild of {spec.name} stopped, live copy unchanged: {error}")
                except BaseException:
                    remove_files(scratch)
                    raise
                finally:
                    close_applications(apps)
                print(f"{spec.name}: rebuilt up to {_where(positions)} into {live}")
    except Refused as refused:
        return _fail(str(refused))
    return 0


# ------------------------------------------------------------------------------ verify
def _verify(args: argparse.Namespace) -> int:
    from eventstore.codec import UndecodableEventError
    from projections.rebuild import (
        RebuildError,
        close_applications,
        compare,
        connect_readonly,
        live_snapshot,
        open_applications,
        rebuild_into,
    )

    settings = _settings(args)
    differences = 0
    try:
        with (
            _nats(settings, locked=False) as url,
            tempfile.TemporaryDirectory(prefix="cloudcc-verify-") as scratch_dir,
        ):
            for spec in _specs(None):
                live = spec.path(settings.data_dir)
                if not live.exists():
                    print(f"{spec.name}: no live read model at {live}")
                    differences += 1
                    continue
                apps = open_applications(spec, url)
                try:
                    with live_snapshot(live, spec.upstreams) as (live_db, positions):
                        position = _where(positions)
                        scratch = Path(scratch_dir) / live.name
                        rebuild_into(spec, apps, scratch, stop=positions)
                        rebuilt_db = connect_readonly(scratch)
                        try:
                            found = compare(live_db, rebuilt_db, args.limit)
                        finally:
                            rebuilt_db.close()
                except (UndecodableEventError, RebuildError) as error:
                    return _fail(f"verify of {spec.name} could not rebuild: {error}")
                finally:
                    close_applications(apps)
                if not found:
                    print(f"{spec.name}: identical to a rebuild up to {position}")
                    continue
                total = sum(d.count for d in found)
                differences += total
                print(f"{spec.name}: {total} difference(s) up to {position}:")
                for diff in found:
                    more = diff.count - len(diff.shown)
                    print(f"  {diff.table}: {diff.count}")
                    for line in diff.shown:
                        print(f"    {line}")
                    if more:
                        print(f"    ... and {more} more")
    except Refused as refused:
        return _fail(str(refused))
    return 1 if differences else 0
