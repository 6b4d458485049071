"""projections.feeds: one reader per stream, each projection handed what comes after its
own position, errors handed to every projection attached."""

from __future__ import annotations

from typing import Any

import pytest

from domain.customers import Customers
from projections.feeds import Feeds, Stopped, Unreadable

TENANT = "acme"


class Apps:
    def __init__(self, app: Customers) -> None:
        self.app = app

    def by_name(self) -> dict[str, Any]:
        return {"customers": self.app}


def ids(attachment: Any, count: int) -> list[int]:
    got: list[int] = []
    while len(got) < count:
        got += [seq for seq, _ in attachment.next()]
    return got


def test_each_projection_gets_what_comes_after_its_own_position() -> None:
    app = Customers()
    for i in range(5):
        app.register(TENANT, f"c{i}")
    feeds = Feeds(lambda: Apps(app))
    try:
        _, ahead = feeds.attach("customers", 3)
        assert ids(ahead, 2) == [4, 5]
        # One further behind: the feed reads again from there, and the one ahead is not
        # handed what it has had.
        _, behind = feeds.attach("customers", 0)
        assert ids(behind, 5) == [1, 2, 3, 4, 5]
        app.register(TENANT, "c5")
        assert ids(ahead, 1) == [6] and ids(behind, 1) == [6]
        assert ahead.inbox.empty() and behind.inbox.empty()
    finally:
        feeds.stop()
    with pytest.raises(Stopped):
        ahead.next()


def test_an_event_nobody_can_read_is_handed_to_everyone_attached() -> None:
    app = Customers()
    app.register(TENANT, "ok")
    app.register(TENANT, "bad")
    real = app.mapper.to_domain_event

    def to_domain_event(notification: Any) -> Any:
        if notification.id == 2:
            raise ValueError("garbled")
        return real(notification)

    app.mapper.to_domain_event = to_domain_event  # type: ignore[method-assign]
    feeds = Feeds(lambda: Apps(app))
    try:
        _, one = feeds.attach("customers", 0)
        _, two = feeds.attach("customers", 0)
        for attachment in (one, two):
            assert ids(attachment, 1) == [1]  # what came before it is handed over
            with pytest.raises(Unreadable, match="event 2: ValueError: garbled"):
                attachment.next()
    finally:
        feeds.stop()
