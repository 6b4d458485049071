"""Calling the synchronous domain applications from async code without blocking its loop.

eventsourcing applications block while they append or read. Litestar handlers and
faststream subscribers run on an event loop that must keep serving other requests, so
every command goes to a worker thread; the loop only awaits the result.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class AsyncRunner:
    """Runs blocking domain calls on a bounded pool of worker threads."""

    def __init__(self, max_workers: int = 32) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="domain")

    async def __call__(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
