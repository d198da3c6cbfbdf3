"""Signal: an asyncio.Event that can be waited for without a task.

A call often waits for the first of several things: either side hanging up, the media going
silent, a hand-over asked for. `asyncio.create_task(event.wait())` for each of them costs a
task, a coroutine and, for all but the first, a cancellation thrown into it, on every call.
`waiter()` gives a plain future instead, done when the signal is set; `asyncio.wait` takes it
as it takes a task, and cancelling it ends only that wait. Everything else is asyncio.Event's.
"""

from __future__ import annotations

import asyncio

__all__ = ["Signal"]

_PRUNE_AT = 8  # waiters kept before the cancelled ones are dropped (a long call's few waits)


class Signal(asyncio.Event):
    def __init__(self) -> None:
        super().__init__()
        self._futures: list[asyncio.Future[None]] = []

    def waiter(self) -> asyncio.Future[None]:
        """A future of its own, done once the signal is set (at once if it is)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.is_set():
            future.set_result(None)
            return future
        if len(self._futures) >= _PRUNE_AT:
            self._futures = [f for f in self._futures if not f.done()]
        self._futures.append(future)
        return future

    async def wait_for(self, timeout: float) -> bool:
        """True once the signal is set, False if ``timeout`` seconds pass first: a future and a
        timer, not the task ``asyncio.wait_for`` wraps around ``wait()``."""
        if self.is_set():
            return True
        waiter = self.waiter()
        timer = asyncio.get_running_loop().call_later(timeout, _time_up, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
        return self.is_set()

    def set(self) -> None:
        if self.is_set():
            return
        super().set()
        futures, self._futures = self._futures, []
        for future in futures:
            if not future.done():
                future.set_result(None)


def _time_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
