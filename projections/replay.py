"""Bringing a read model up to date in-process, from applications the caller holds.

The live runner (projections.service) reads the event store over NATS; this reads each
upstream application's recorder directly. Unit tests use it with in-memory applications,
and it states the contract the runner keeps: every upstream's notifications in order,
each applied once at its own position.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder

from projections.readmodel import SqliteReadModel

PAGE = 500


def catch_up(readmodel: SqliteReadModel, apps: Mapping[str, Application[Any]] | Any) -> int:
    """Apply every event the read model has not seen yet; how many were applied.

    `apps` maps application names to applications, or is a container with `by_name()`
    (domain.apps.DomainApps).
    """
    by_name = apps.by_name() if hasattr(apps, "by_name") else apps
    applied = 0
    for upstream in readmodel.upstreams:
        app = by_name[upstream]
        recorder = app.recorder
        assert isinstance(recorder, ApplicationRecorder)
        while True:
            page = recorder.select_notifications(readmodel.position(upstream) + 1, PAGE)
            if not page:
                break
            for notification in page:
                event = app.mapper.to_domain_event(notification)
                applied += readmodel.apply(notification.id, event, upstream)
    return applied
