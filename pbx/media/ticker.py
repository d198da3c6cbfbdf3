"""One shared 20 ms media clock per event loop.

Everything that paces audio (prompts, music on hold, tones, DTMF) subscribes here, so
500 simultaneous prompts cost one timer wake-up per 20 ms instead of 500 tasks.

Deadlines are ``start + n * period`` on ``loop.time()``, so lateness of one wake-up does
not accumulate into drift the way repeated ``sleep(0.02)`` does. When the loop was
blocked for longer than a period, the missed ticks are skipped rather than fired back
to back: subscribers see a jump in the tick number and decide themselves (a prompt just
continues, which the far end's jitter buffer absorbs) instead of bursting packets.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

import structlog

__all__ = ["FRAME_MS", "FRAME_SAMPLES", "TickCallback", "Ticker", "ticker_for"]

FRAME_MS = 20
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
_PERIOD = FRAME_MS / 1000

TickCallback = Callable[[int], None]

log = structlog.get_logger("pbx.media.ticker")


class Ticker:
    """A drift-free periodic clock; runs only while somebody is subscribed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = _PERIOD) -> None:
        if period <= 0:
            raise ValueError(f"tick period must be positive, got {period}")
        self.loop = loop
        self.period = period
        self._subscribers: dict[TickCallback, None] = {}  # insertion-ordered set
        # Called after all the others in every round: fillers that send only when no
        # other source sent in this round (``subscribe(..., late=True)``).
        self._late: dict[TickCallback, None] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._next = 0  # index of the next deadline
        self._firing = False
        self.ticks = 0  # callbacks rounds fired since the clock (re)started
        self.tick = 0  # number of the deadline of the round firing now (or fired last)
        self.skipped = 0  # deadlines skipped because the loop was late by > 1 period

    def __len__(self) -> int:
        return len(self._subscribers) + len(self._late)

    @property
    def running(self) -> bool:
        return self._handle is not None

    def subscribe(self, callback: TickCallback, *, late: bool = False) -> None:
        """Call ``callback(tick_number)`` every period, from the next deadline on; a ``late``
        callback runs after every other one of the round."""
        (self._late if late else self._subscribers)[callback] = None
        if self._handle is None and not self._firing:
            self._start = self.loop.time()
            self._next = 1
            self._schedule()

    def unsubscribe(self, callback: TickCallback) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        self._subscribers.pop(callback, None)
        self._late.pop(callback, None)
        if not len(self) and self._handle is not None and not self._firing:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        self._handle = self.loop.call_at(self._start + self._next * self.period, self._fire)

    def _fire(self) -> None:
        tick = self._next
        behind = int((self.loop.time() - self._start) / self.period)
        if behind > tick:  # blocked past later deadlines: skip them, no burst
            self.skipped += behind - tick
            tick = behind
        self._next = tick + 1
        self.ticks += 1
        self.tick = tick
        self._firing = True
        try:
            for group in (self._subscribers, self._late):
                for callback in tuple(group):
                    if callback not in group:  # removed by an earlier callback
                        continue
                    try:
                        callback(tick)
                    except Exception:  # one broken subscriber must not silence all others
                        log.exception("media_tick_subscriber_failed")  # and unsubscribed
                        group.pop(callback, None)
        finally:
            self._firing = False
        if len(self):
            self._schedule()
        else:
            self._handle = None


_TICKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


def ticker_for(loop: asyncio.AbstractEventLoop | None = None) -> Ticker:
    """The process-wide ticker of ``loop`` (default: the running loop)."""
    loop = loop or asyncio.get_running_loop()
    ticker = _TICKERS.get(loop)
    if ticker is None:
        ticker = _TICKERS[loop] = Ticker(loop)
    return ticker
