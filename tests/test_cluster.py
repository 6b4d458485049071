"""The scaled-out set-up: a three-node cluster, streams replicated ×3, one node lost."""

from __future__ import annotations

import uuid
from pathlib import Path

from eventsourcing.persistence import StoredEvent
from helpers import retry

import eventstore
from deploy.natsserver import local_cluster
from eventstore import connection
from eventstore.layout import StreamLayout
from eventstore.store import JetStreamStore


def test_appends_acknowledged_by_a_r3_stream_survive_the_loss_of_a_node(tmp_path: Path) -> None:
    nodes = local_cluster(tmp_path)
    for node in nodes:
        node.start()
    url = ",".join(n.url for n in nodes)
    conn = connection.NatsConnection(url)
    try:
        store = JetStreamStore(conn, StreamLayout("clustered"), replicas=3)
        retry(lambda: conn.run(store.ensure_stream()))
        info = conn.run(conn.js.stream_info(store.layout.stream))
        assert info.config.num_replicas == 3
        recorder = eventstore.JetStreamApplicationRecorder(store)
        aggs = [uuid.uuid4() for _ in range(50)]
        for agg in aggs:
            retry(lambda agg=agg: recorder.insert_events([StoredEvent(agg, 1, "t", b"{}")]))

        leader = conn.run(conn.js.stream_info(store.layout.stream)).cluster.leader
        victim = next(n for n in nodes if n.server_name == leader)
        victim.kill()  # the stream's leader, by SIGKILL

        # The two survivors elect a new leader and keep every acknowledged append.
        events = retry(lambda: recorder.select_notifications(None, 100))
        assert {n.originator_id for n in events} == set(aggs)
        later = uuid.uuid4()
        retry(lambda: recorder.insert_events([StoredEvent(later, 1, "t", b"{}")]))
        assert retry(lambda: recorder.select_events(later))[0].originator_version == 1
    finally:
        conn.close()
        for node in nodes:
            node.stop()
