"""The operator's way past an undecodable message: `cloudcc events show|skip`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from eventsourcing.persistence import StoredEvent

import eventstore
from eventstore import connection
from eventstore.layout import StreamLayout
from eventstore.store import JetStreamStore

ROOT = Path(__file__).parent.parent


def cloudcc(nats_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        cwd=ROOT,
        env={**os.environ, "NATS_URL": nats_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_show_then_skip_lets_readers_pass_a_bad_message(nats_url: str) -> None:
    app = f"ops{uuid.uuid4().hex[:8]}"
    conn = connection.acquire(nats_url)
    try:
        store = JetStreamStore(conn, StreamLayout(app))
        conn.run(store.ensure_stream())
        recorder = eventstore.JetStreamApplicationRecorder(store)
        recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "t", b"{}")])
        conn.run(conn.js.publish(f"es.acme.{app}.{uuid.uuid4()}", b"written by someone else"))
        recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "t", b"{}")])

        shown = cloudcc(nats_url, "events", "show", app, "2")
        assert shown.returncode == 0, shown.stderr
        assert "decodes: NO" in shown.stdout and "skipped: no" in shown.stdout
        assert f"es.acme.{app}." in shown.stdout

        refused = cloudcc(nats_url, "events", "skip", app, "1", "--reason", "x")
        assert refused.returncode == 1 and "decodes" in refused.stderr

        skipped = cloudcc(
            nats_url, "events", "skip", app, "2", "--reason", "foreign writer", "--by", "ops"
        )
        assert skipped.returncode == 0, skipped.stderr
        assert (
            "skipped: yes: foreign writer" in cloudcc(nats_url, "events", "show", app, "2").stdout
        )

        assert [n.id for n in recorder.select_notifications(None, 10)] == [1, 3]
    finally:
        connection.release(conn)
