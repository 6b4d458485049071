"""An eventsourcing persistence module backed by NATS JetStream.

Set `PERSISTENCE_MODULE=eventstore` and `NATS_URL=nats://host:4222` and any eventsourcing
Application keeps its events in JetStream: no SQLite or in-memory store on this path.
Stored payloads use `eventstore.transcoder.MsgspecTranscoder` unless `TRANSCODER_TOPIC`
says otherwise. Stream and subject layout: `eventstore.layout` (integrators read it).

Settings (read through eventsourcing's Environment, so `<APPNAME>_NATS_URL` wins over
`NATS_URL`): `NATS_URL` (required; a comma-separated list for a cluster),
`EVENTSTORE_REPLICAS` (default 1; 3 on a cluster), `CREATE_TABLE` (default yes: create the
stream when missing).

How appends stay correct
------------------------
*Notification ids.* One stream per application; an event's notification id is its stream
sequence, assigned by the server: totally ordered, never reused (a refused publish does
not consume a sequence).

*Optimistic concurrency.* Each aggregate has one subject. Its first message in a save
carries `Nats-Expected-Last-Subject-Sequence: <seq>` — the server appends only if the last
message on that subject is still `<seq>`, checked under the stream's lock. Of two writers
that read the same version, exactly one matches; the other gets error 10071, which
becomes eventsourcing's `IntegrityError` once a fresh read confirms the version is taken.
A creation (`<seq>` 0) also carries `Nats-Expected-Last-Subject-Sequence-Subject:
es.*.<app>.<aggregate>`, so an aggregate id can exist under one tenant only; later saves
learn the aggregate's tenant from the store and are refused (`TenantMismatchError`) under
another. The store remembers each aggregate's last (version, sequence) from its own reads
and writes, so a save after a load costs one round trip; a first version is sent
expecting "no message yet" without a lookup.

*Atomic saves.* A save of one message is one publish. A save of several events (and a
process application's tracking record) is a JetStream atomic batch (ADR-50; server 2.12+,
`allow_atomic` on the stream): every message carries `Nats-Batch-Id` and
`Nats-Batch-Sequence`, the last one `Nats-Batch-Commit: 1`, and the server stages the
batch and stores it only at the commit, all together with contiguous sequences, after
checking every expected-sequence header under lock. If the writer dies before the commit,
the server abandons the staged batch (after 10 s idle) and nothing of it is ever stored
or delivered. nats-py 2.16 has the header names but no batch helper, so
`JetStreamStore._publish` speaks the protocol with `publish`/`request`. Limits: 1000
messages per batch (a larger save raises ProgrammingError), 50 batches in flight per
stream (the store keeps itself under 40).

*Timeouts.* A publish that times out may still have been stored; the store reads the
aggregate's last message and reports success if it is ours, an OperationalError otherwise.

*Undecodable messages.* A message on an event subject that is not a valid envelope
(written by someone else, or corrupted) raises `UndecodableEventError` carrying its
stream sequence; readers stop there. The operator looks at it with
`cloudcc events show APP SEQ` and, once the cause is dealt with, records
`cloudcc events skip APP SEQ --reason ...`: an append-only record on `ops.<app>.skip`
that every reader honours from then on. Nothing is deleted (the stream denies deletes).
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import (
    InfrastructureFactory,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic, strtobool

from eventstore import connection
from eventstore.layout import StreamLayout
from eventstore.recorders import (
    JetStreamAggregateRecorder,
    JetStreamApplicationRecorder,
    JetStreamProcessRecorder,
    JetStreamSubscription,
    JetStreamTrackingRecorder,
)
from eventstore.store import JetStreamStore, TenantMismatchError, UndecodableEventError

DEFAULT_TRANSCODER_TOPIC = "eventstore.transcoder:MsgspecTranscoder"


class JetStreamFactory(InfrastructureFactory[TrackingRecorder]):
    """Builds recorders on one shared NATS connection per URL."""

    NATS_URL = "NATS_URL"
    EVENTSTORE_REPLICAS = "EVENTSTORE_REPLICAS"
    CREATE_TABLE = "CREATE_TABLE"

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        url = self.env.get(self.NATS_URL)
        if not url:
            raise OSError("eventstore needs NATS_URL (e.g. nats://127.0.0.1:4222)")
        if not self.env.get(self.TRANSCODER_TOPIC):
            self.env[self.TRANSCODER_TOPIC] = DEFAULT_TRANSCODER_TOPIC
        self.replicas = int(self.env.get(self.EVENTSTORE_REPLICAS, "1"))
        self.conn = connection.acquire(url)
        self._closed = False

    def _store(self, kind: str = "es") -> JetStreamStore:
        store = JetStreamStore(
            self.conn, StreamLayout(self.env.name or "app", kind), replicas=self.replicas
        )
        if strtobool(self.env.get(self.CREATE_TABLE, "yes")):
            self.conn.run(store.ensure_stream())
        return store

    def aggregate_recorder(self, purpose: str = "events") -> JetStreamAggregateRecorder:
        return JetStreamAggregateRecorder(self._store("ss" if purpose == "snapshots" else "es"))

    def application_recorder(self) -> JetStreamApplicationRecorder:
        topic = self.env.get(self.APPLICATION_RECORDER_TOPIC)
        cls = resolve_topic(topic) if topic else JetStreamApplicationRecorder
        return cls(self._store())

    def tracking_recorder(
        self, tracking_recorder_class: type[TrackingRecorder] | None = None
    ) -> TrackingRecorder:
        if tracking_recorder_class is None:
            topic = self.env.get(self.TRACKING_RECORDER_TOPIC)
            tracking_recorder_class = resolve_topic(topic) if topic else JetStreamTrackingRecorder
        cls: Any = tracking_recorder_class
        return cls(self._store())

    def process_recorder(self) -> JetStreamProcessRecorder:
        topic = self.env.get(self.PROCESS_RECORDER_TOPIC)
        cls = resolve_topic(topic) if topic else JetStreamProcessRecorder
        return cls(self._store())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            connection.release(self.conn)


__all__ = [
    "JetStreamAggregateRecorder",
    "JetStreamApplicationRecorder",
    "JetStreamFactory",
    "JetStreamProcessRecorder",
    "JetStreamStore",
    "JetStreamSubscription",
    "JetStreamTrackingRecorder",
    "StreamLayout",
    "TenantMismatchError",
    "UndecodableEventError",
]
