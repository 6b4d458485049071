"""Shared by the unit tests: the two transcoders every application is tested on.

Replay must hold with eventsourcing's default JSON transcoder and with the event store's
own (eventstore.transcoder), so a test that builds its application from `transcoder_env`
runs once on each, and every event payload it records is proven to survive both.
Selecting the transcoder needs no server: the applications run in memory.
"""

from __future__ import annotations

import pytest

TRANSCODERS = {
    "json": {},
    "msgspec": {"TRANSCODER_TOPIC": "eventstore.transcoder:MsgspecTranscoder"},
}


@pytest.fixture(params=sorted(TRANSCODERS))
def transcoder_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of an application on this run's transcoder: `App(env=...)`."""
    return TRANSCODERS[request.param]
