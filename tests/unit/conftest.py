"""Shared by the unit tests: the two transcoders every application is tested on.

Replay must hold with eventsourcing's default JSON transcoder and with the event store's
own (eventstore.transcoder), so a test that builds its application from `transcoder_env`
runs once on each, and every event payload it records is proven to survive both.
Selecting the transcoder needs no server: the applications run in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import eventsourcing.domain
import pytest
from streams import EventClock

TRANSCODERS = {
    "json": {},
    "msgspec": {"TRANSCODER_TOPIC": "eventstore.transcoder:MsgspecTranscoder"},
}


@pytest.fixture(params=sorted(TRANSCODERS))
def transcoder_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of an application on this run's transcoder: `App(env=...)`."""
    return TRANSCODERS[request.param]


@pytest.fixture
def event_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], EventClock]:
    """`event_clock(start)`: events are stamped with the returned clock's time, not now."""

    def start_at(start: datetime) -> EventClock:
        clock = EventClock(start)
        monkeypatch.setattr(eventsourcing.domain, "datetime_now_with_tzinfo", lambda: clock.now)
        return clock

    return start_at
