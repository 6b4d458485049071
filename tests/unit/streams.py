"""Helpers the read-model tests share: the clock events are stamped with, and applying
a read model's streams in a chosen interleaving (a live projection and a rebuild
interleave them differently; the tables must not tell)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.persistence import ApplicationRecorder

from domain.apps import DomainApps
from projections.readmodel import SqliteReadModel


class EventClock:
    """The time events are stamped with (eventsourcing's clock), set by the test."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.now = start

    def at(self, seconds: float) -> None:
        self.now = self.start + timedelta(seconds=seconds)


def feed(
    model: SqliteReadModel, apps: DomainApps, order: Callable[[list[list[Any]]], list[Any]]
) -> None:
    """Apply every upstream's events, each stream in its own order, interleaved by `order`
    (which gets one list of (position, event, upstream) per stream)."""
    streams = []
    for upstream in model.upstreams:
        app = apps.by_name()[upstream]
        assert isinstance(app.recorder, ApplicationRecorder)
        notifications = app.recorder.select_notifications(1, 100_000)
        streams.append([(n.id, app.mapper.to_domain_event(n), upstream) for n in notifications])
    for position, event, upstream in order(streams):
        model.apply(position, event, upstream)


def round_robin(streams: list[list[Any]]) -> list[Any]:
    longest = max(len(s) for s in streams)
    return [s[i] for i in range(longest) for s in streams if i < len(s)]


def reversed_streams(streams: list[list[Any]]) -> list[Any]:
    return [item for stream in reversed(streams) for item in stream]
