"""The raw baselines the benchmarks divide by, defined once so every bench means the same."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.aio.msg import Msg


async def ordered_read(nc: Client, subject: str, stream: str, n: int, timeout: float = 300) -> None:
    """Read n messages with a stock nats-py ordered consumer whose callback only counts."""
    done = asyncio.get_running_loop().create_future()
    count = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal count
        count += 1
        if count == n and not done.done():
            done.set_result(None)

    sub = await nc.jetstream().subscribe(subject, stream=stream, cb=on_msg, ordered_consumer=True)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        await sub.unsubscribe()
