"""Small helpers shared by the integration tests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from deploy.natsserver import NatsServer
from eventstore.connection import NatsConnection
from eventstore.layout import StreamLayout
from eventstore.store import JetStreamStore

T = TypeVar("T")


def retry(fn: Callable[[], T], seconds: float = 20) -> T:
    """`fn()` until it stops raising: a restarted server or a cluster electing a leader
    refuses calls for a moment; after `seconds` the last error is raised."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def private_server(tmp_path: Path, app: str) -> Iterator[tuple[NatsServer, JetStreamStore]]:
    """A nats-server of the test's own (to stop, kill or restart) and a store on it."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    conn = NatsConnection(server.url)
    try:
        store = JetStreamStore(conn, StreamLayout(app))
        conn.run(store.ensure_stream())
        yield server, store
    finally:
        conn.close()
        server.stop()
