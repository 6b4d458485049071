"""eventsourcing's own recorder and application test cases, run against a real nats-server."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.persistence import TrackingRecorder
from eventsourcing.tests.application import ApplicationTestCase, ExampleApplicationTestCase
from eventsourcing.tests.persistence import (
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    InfrastructureFactoryTestCase,
    NonInterleavingNotificationIDsBaseCase,
    ProcessRecorderTestCase,
    TrackingRecorderTestCase,
)
from eventsourcing.utils import Environment
from nats.js.errors import NotFoundError

import eventstore
from eventstore import connection
from eventstore.layout import StreamLayout
from eventstore.store import JetStreamStore


@pytest.fixture(autouse=True, scope="class")
def _nats(request: pytest.FixtureRequest, nats_url: str) -> Iterator[None]:
    request.cls.nats_url = nats_url
    yield


class _FreshStream:
    """Each test gets a stream of its own: the library's tests expect an empty store."""

    nats_url: str

    def store(self) -> JetStreamStore:
        conn = connection.acquire(self.nats_url)
        self.addCleanup(connection.release, conn)  # type: ignore[attr-defined]
        store = JetStreamStore(conn, StreamLayout(f"t{uuid.uuid4().hex[:12]}"))
        conn.run(store.ensure_stream())
        return store


class TestAggregateRecorder(_FreshStream, AggregateRecorderTestCase):
    def create_recorder(self) -> eventstore.JetStreamAggregateRecorder:
        return eventstore.JetStreamAggregateRecorder(self.store())


class TestApplicationRecorder(_FreshStream, ApplicationRecorderTestCase):
    def create_recorder(self) -> eventstore.JetStreamApplicationRecorder:
        return eventstore.JetStreamApplicationRecorder(self.store())

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestTrackingRecorder(_FreshStream, TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        return eventstore.JetStreamTrackingRecorder(self.store())


class TestProcessRecorder(_FreshStream, ProcessRecorderTestCase):
    def create_recorder(self) -> eventstore.JetStreamProcessRecorder:
        return eventstore.JetStreamProcessRecorder(self.store())


class TestNonInterleavingNotificationIDs(_FreshStream, NonInterleavingNotificationIDsBaseCase):
    def create_recorder(self) -> eventstore.JetStreamApplicationRecorder:
        return eventstore.JetStreamApplicationRecorder(self.store())


class _TrackingSubclass(eventstore.JetStreamTrackingRecorder):
    pass


class TestInfrastructureFactory(InfrastructureFactoryTestCase[eventstore.JetStreamFactory]):
    nats_url: str

    def setUp(self) -> None:
        self.env = Environment(
            "TestApp", {"PERSISTENCE_MODULE": "eventstore", "NATS_URL": self.nats_url}
        )
        super().setUp()

    def expected_factory_class(self) -> type[eventstore.JetStreamFactory]:
        return eventstore.JetStreamFactory

    def expected_aggregate_recorder_class(self) -> type[Any]:
        return eventstore.JetStreamAggregateRecorder

    def expected_application_recorder_class(self) -> type[Any]:
        return eventstore.JetStreamApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[Any]:
        return eventstore.JetStreamTrackingRecorder

    def tracking_recorder_subclass(self) -> type[Any]:
        return _TrackingSubclass

    def expected_process_recorder_class(self) -> type[Any]:
        return eventstore.JetStreamProcessRecorder


class _WithEventStoreEnviron:
    """The application test cases read os.environ, as a deployed application would."""

    nats_url: str

    def setUp(self) -> None:
        # Each test expects an empty store: drop the streams its applications use.
        conn = connection.acquire(self.nats_url)
        try:
            for name in ("ES_APPLICATION", "SS_APPLICATION", "ES_BANKACCOUNTS", "SS_BANKACCOUNTS"):
                with contextlib.suppress(NotFoundError):
                    conn.run(conn.js.delete_stream(name))
        finally:
            connection.release(conn)
        self._saved = dict(os.environ)
        os.environ["PERSISTENCE_MODULE"] = "eventstore"
        os.environ["NATS_URL"] = self.nats_url
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        os.environ.clear()
        os.environ.update(self._saved)


class TestExampleApplication(_WithEventStoreEnviron, ExampleApplicationTestCase):
    expected_factory_topic = "eventstore:JetStreamFactory"


class TestApplication(_WithEventStoreEnviron, ApplicationTestCase):
    pass


del AggregateRecorderTestCase
del ApplicationRecorderTestCase
del TrackingRecorderTestCase
del ProcessRecorderTestCase
del NonInterleavingNotificationIDsBaseCase
del InfrastructureFactoryTestCase
del ExampleApplicationTestCase
del ApplicationTestCase
