"""The pages' live streams: a tenant's read-model changes (projections.live, NATS
`live.<tenant>.>`) as server-sent events, until the browser goes."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

import msgspec
from nats.aio.client import Client as NatsClient

from projections import live

# A first event at once, so that the browser knows it is connected.
HELLO = '{"readmodel": "", "kind": "hello", "key": ""}'


async def change_events(
    nc: NatsClient, subject: str, concerns: Callable[[live.LiveChange], bool] | None = None
) -> AsyncGenerator[str, None]:
    """Each change on `subject` as one event; with `concerns`, only those it accepts."""
    sub = await nc.subscribe(subject)
    try:
        yield HELLO
        async for msg in sub.messages:
            if concerns is not None:
                try:
                    change = live.decode(msg.data)
                except msgspec.DecodeError:
                    continue  # not ours to show
                if not concerns(change):
                    continue
            yield msg.data.decode()
    finally:
        await sub.unsubscribe()
