"""Small helpers shared by the integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def retry(fn: Callable[[], T], seconds: float = 20) -> T:
    """`fn()` until it stops raising: a restarted server or a cluster electing a leader
    refuses calls for a moment; after `seconds` the last error is raised."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
