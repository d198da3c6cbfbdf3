"""The queue dispatcher: the asyncio side of `queues.engine`.

One task for the whole service applies the engine's timers (wrap-ups ending, maximum waits
passing) and its offers, and hands each to the waiting caller's own task through an inbox.
That task rings the volunteer and reports back (connected, ring-no-answer, abandoned), then
`kick()`s the dispatcher so a freed volunteer or a new caller is matched at once rather than
at the next tick. Everything lives in memory: no database on this path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from ivr.model import Queue
from queues.engine import Offer, QueueConfig, QueueEngine
from queues.roster import Roster

log = structlog.get_logger("pbx.calls.dispatcher")


@dataclass(frozen=True)
class Overflowed:
    """The caller has waited the queue's maximum; its overflow takes over."""

    queue: str


@dataclass(frozen=True)
class Notice:
    """Something the waiting caller should hear now (the service is draining)."""

    prompt: str


QueueEvent = Offer | Overflowed | Notice


class Dispatcher:
    def __init__(
        self,
        roster: Roster,
        *,
        now: Callable[[], float] = time.time,
        interval: float = 0.5,
        on_change: Callable[[], None] = lambda: None,  # roster events to drain (DB, metrics)
        offering: Callable[[], bool] = lambda: True,  # False: another node leads (pbx.ha)
    ) -> None:
        self.engine = QueueEngine({}, roster)
        self.now = now
        self.interval = interval
        self.on_change = on_change
        self.offering = offering
        self._inboxes: dict[str, asyncio.Queue[QueueEvent]] = {}
        self._kick = asyncio.Event()
        self._overflow_all = False  # draining with drain_waiting = overflow

    def drain(self, overflow: bool, notice: str) -> None:
        """The service is draining: every waiting caller hears `notice` and waits on, or goes
        to their queue's overflow now (and so does anyone who joins a queue later)."""
        if overflow:
            self._overflow_all = True
        else:
            for call_ref in self.engine.waiting_calls():
                self._deliver(call_ref, Notice(notice))
        self.kick()

    def configure(self, queues: Mapping[str, Queue]) -> None:
        self.engine.configure({q.name: QueueConfig.from_dialplan(q) for q in queues.values()})

    def inbox(self, call_ref: str) -> asyncio.Queue[QueueEvent]:
        """Where a caller's offers and overflow arrive, from now until `leave`."""
        return self._inboxes.setdefault(call_ref, asyncio.Queue())

    def join(self, call_ref: str, queue: str, region: str | None) -> None:
        """Put a caller (who has an inbox) at the back of the line."""
        self.engine.enqueue(call_ref, queue, region, self.now())
        self.kick()

    def leave(self, call_ref: str) -> None:
        """The caller is done with the queues: out of line if still in it, inbox closed."""
        if self.engine.is_waiting(call_ref):
            self.engine.remove(call_ref, self.now())
        self._inboxes.pop(call_ref, None)
        self.kick()

    def kick(self) -> None:
        self._kick.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval)
            self._kick.clear()
            try:
                self.step()
            except Exception:  # one bad step must not stop every queue
                log.exception("dispatch_failed")

    def step(self) -> None:
        now = self.now()
        for call_ref, queue in self.engine.overflowed(now, everyone=self._overflow_all):
            self._deliver(call_ref, Overflowed(queue))
        for offer in self.engine.dispatch(now) if self.offering() else ():
            if not self._deliver(offer.call_ref, offer):  # nobody to ring for: give it back
                self.engine.remove(offer.call_ref, now)
        self.on_change()

    def _deliver(self, call_ref: str, event: QueueEvent) -> bool:
        inbox = self._inboxes.get(call_ref)
        if inbox is None:
            log.warning("queue_event_unclaimed", call=call_ref, event=type(event).__name__)
            return False
        inbox.put_nowait(event)
        return True
