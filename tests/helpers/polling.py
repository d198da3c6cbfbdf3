"""Waiting in tests for what the service does asynchronously, without fixed sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(what: Callable[[], bool], timeout: float = 15.0) -> None:
    """Return as soon as `what()` holds; fail the test if it does not within `timeout` s."""
    for _ in range(int(timeout / 0.05)):
        if what():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout}s")
