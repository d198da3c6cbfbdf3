"""The queue dispatcher: the thin asyncio adapter of `queues.engine`, and its only user.

One task for the whole service applies the engine's timers (wrap-ups ending, maximum waits
passing) and its offers, and hands each to the waiting caller's own task through an inbox.
That task rings the volunteer and reports back through the verbs below (connected, missed,
abandoned, ...); each verb wakes the dispatcher, so a freed volunteer or a new caller is
matched at once rather than at the next tick. Time is read here (`now`), never by the callers.
Everything lives in memory: no database on this path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from queues.engine import Offer, QueueConfig, QueueEngine
from queues.roster import Roster

log = structlog.get_logger("queues.dispatcher")


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
        self._engine = QueueEngine({}, roster)
        self.now = now
        self.interval = interval
        self.on_change = on_change
        self.offering = offering
        self._inboxes: dict[str, asyncio.Queue[QueueEvent]] = {}
        self._kick = asyncio.Event()
        self._overflow_all = False  # draining with drain_waiting = overflow

    # --- the service -----------------------------------------------------------------------------
    def configure(self, queues: Mapping[str, QueueConfig]) -> None:
        """The queues of the plan in force (a reload keeps the callers of queues it keeps)."""
        self._engine.configure(queues)

    @property
    def queues(self) -> Mapping[str, QueueConfig]:
        return self._engine.queues

    def drain(self, overflow: bool, notice: str) -> None:
        """The service is draining: every waiting caller hears `notice` and waits on, or goes
        to their queue's overflow now (and so does anyone who joins a queue later)."""
        if overflow:
            self._overflow_all = True
        else:
            for call_ref in self._engine.waiting_calls():
                self._deliver(call_ref, Notice(notice))
        self.kick()

    def kick(self) -> None:
        """Match again now (the roster changed: a volunteer logged in, paused, ...)."""
        self._kick.set()

    # --- a waiting caller's verbs ----------------------------------------------------------------
    def inbox(self, call_ref: str) -> asyncio.Queue[QueueEvent]:
        """Where a caller's offers and overflow arrive, from now until `leave`."""
        return self._inboxes.setdefault(call_ref, asyncio.Queue())

    def join(self, call_ref: str, queue: str, region: str | None) -> None:
        """Put a caller (who has an inbox) at the back of the line."""
        self._engine.enqueue(call_ref, queue, region, self.now())
        self.kick()

    def requeue_first(self, call_ref: str, queue: str) -> None:
        """A caller whose volunteer left them (whisper, hand-over failed) is first in line."""
        self._engine.enqueue(call_ref, queue, None, self.now(), front=True)
        self.kick()

    def missed(self, call_ref: str, username: str) -> None:
        """The offered volunteer did not answer (or could not be rung): the caller waits on."""
        self._engine.ring_no_answer(call_ref, username, self.now())
        self.kick()

    def connected(self, call_ref: str, username: str) -> float:
        """The offered volunteer answered; returns how long the caller waited."""
        now = self.now()
        waited = now - self._engine.joined_at(call_ref)
        self._engine.connected(call_ref, username, now)
        self.kick()
        return waited

    def call_ended(self, call_ref: str) -> None:
        """The volunteer's part of the call is over: their wrap-up begins."""
        self._engine.call_ended(call_ref, self.now())
        self.kick()

    def handset_lost(self, call_ref: str) -> None:
        """The volunteer's handset vanished mid-call: the caller is back at the front."""
        self._engine.handset_lost(call_ref, self.now())
        self.kick()

    def abandon(self, call_ref: str) -> float:
        """The caller hung up while waiting; returns how long they waited."""
        waited = self._engine.abandon(call_ref, self.now())
        self.kick()
        return waited

    def remove(self, call_ref: str) -> None:
        """Out of the line for good (the caller is told goodbye)."""
        self._engine.remove(call_ref, self.now())
        self.kick()

    def leave(self, call_ref: str) -> None:
        """The caller is done with the queues: out of line if still in it, inbox closed."""
        if self._engine.is_waiting(call_ref):
            self._engine.remove(call_ref, self.now())
        self._inboxes.pop(call_ref, None)
        self.kick()

    # --- what a waiting caller is told, and gauges ----------------------------------------------
    def place(self, call_ref: str) -> tuple[int, float | None] | None:
        """(position in line, estimated wait in seconds or None if unknown), or None when the
        caller is not waiting (being rung or talking)."""
        if not self._engine.is_waiting(call_ref):
            return None
        estimate = self._engine.estimated_wait(call_ref, self.now())
        return self._engine.position(call_ref), estimate

    def waiting_calls(self) -> list[str]:
        return self._engine.waiting_calls()

    def waiting(self, queue: str) -> int:
        return self._engine.waiting(queue)

    def longest_wait(self, queue: str, now: float) -> float:
        return self._engine.longest_wait(queue, now)

    # --- the dispatching task --------------------------------------------------------------------
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
        for call_ref, queue in self._engine.overflowed(now, everyone=self._overflow_all):
            self._deliver(call_ref, Overflowed(queue))
        for offer in self._engine.dispatch(now) if self.offering() else ():
            if not self._deliver(offer.call_ref, offer):  # nobody to ring for: give it back
                self._engine.remove(offer.call_ref, now)
        self.on_change()

    def _deliver(self, call_ref: str, event: QueueEvent) -> bool:
        inbox = self._inboxes.get(call_ref)
        if inbox is None:
            log.warning("queue_event_unclaimed", call=call_ref, event=type(event).__name__)
            return False
        inbox.put_nowait(event)
        return True
