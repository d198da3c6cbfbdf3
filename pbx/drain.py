"""A planned stop: take no new calls, let the calls in progress finish, then exit.

`SIGTERM` or `helpline drain` starts it. New INVITEs get 503 with Retry-After (a carrier or
a proxy such as Kamailio then tries another node), the readiness endpoint says "draining",
callers waiting in a queue are told and wait on for a volunteer (or go to their queue's
overflow, as `drain_waiting` says), and once the last call has ended the service stops. After
`drain_timeout` seconds whatever is left is hung up, so a stop always ends.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from pbx.calls.legs import Leg
from queues.dispatcher import Dispatcher

log = structlog.get_logger("pbx.drain")

WAITING_NOTICE = "all_busy_hold"  # "all volunteers are busy, stay on the line": true, and enough
POLL_SECONDS = 0.2


class Readiness(enum.StrEnum):
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"


@dataclass
class Drain:
    legs: dict[tuple[str, str], Leg]  # the switchboard's live call legs
    dispatcher: Dispatcher
    timeout: float
    overflow_waiting: bool
    retry_after: int
    on_start: Callable[[], None] = lambda: None  # e.g. hand an active/standby lease over
    state: Readiness = Readiness.STARTING

    def refusing(self) -> int | None:
        """Retry-After seconds for a new INVITE while not serving; None to take the call."""
        return self.retry_after if self.state is Readiness.DRAINING else None

    async def run(self, on_progress: Callable[[int], None] = lambda calls: None) -> bool:
        """Drain until no call is left (True) or the timeout has passed (False; the calls
        left are hung up)."""
        self.state = Readiness.DRAINING
        self.on_start()
        started = time.monotonic()
        log.info("draining", calls=len(self.legs), timeout=self.timeout,
                 waiting=len(self.dispatcher.waiting_calls()))  # fmt: skip
        self.dispatcher.drain(self.overflow_waiting, WAITING_NOTICE)
        while self.legs:
            if time.monotonic() - started >= self.timeout:
                left = list(self.legs.values())
                log.warning("drain_timeout", calls=len(left))
                await asyncio.gather(
                    *(leg.hangup("drain_timeout") for leg in left), return_exceptions=True
                )
                return False
            on_progress(len(self.legs))
            await asyncio.sleep(POLL_SECONDS)
        log.info("drained", seconds=round(time.monotonic() - started, 1))
        return True
