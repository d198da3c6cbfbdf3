"""One shared 20 ms media clock per event loop.

Everything that paces audio (prompts, music on hold, tones, DTMF) subscribes here, so
500 simultaneous prompts cost one timer wake-up per 20 ms instead of 500 tasks.

Deadlines are ``start + n * period``, so lateness of one wake-up does not accumulate into
drift the way repeated ``sleep(0.02)`` does. When the loop was blocked for longer than a
period, the missed ticks are skipped rather than fired back to back: subscribers see a jump
in the tick number and decide themselves (a prompt just continues, which the far end's
jitter buffer absorbs) instead of bursting packets.

The wake-up itself comes from a kernel timer (a Linux timerfd read with ``add_reader``, see
``clock.py``) where there is one: the loops' own timers round their sleep to whole
milliseconds, so every round started 0-1 ms late at random, and that spread went straight
into the interval every stream's listener hears. The garbage collector waits while a round
sends (a collection in the middle would delay every packet after it), and runs after it.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

import structlog

from pbx.media.clock import PeriodicTimer, periodic_timer

__all__ = ["FRAME_MS", "FRAME_SAMPLES", "TickCallback", "Ticker", "ticker_for"]

FRAME_MS = 20
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
_PERIOD = FRAME_MS / 1000

TickCallback = Callable[[int], None]

log = structlog.get_logger("pbx.media.ticker")


class Ticker:
    """A drift-free periodic clock; runs only while somebody is subscribed."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, period: float = _PERIOD, *, kernel_timer: bool = True
    ) -> None:
        if period <= 0:
            raise ValueError(f"tick period must be positive, got {period}")
        self.loop = loop
        self.period = period
        self._kernel_timer = kernel_timer  # False: the loop's call_at (tests, other platforms)
        self._timer: PeriodicTimer | None = None
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
        return self._handle is not None or self._timer is not None

    def subscribe(self, callback: TickCallback, *, late: bool = False) -> None:
        """Call ``callback(tick_number)`` every period, from the next deadline on; a ``late``
        callback runs after every other one of the round."""
        (self._late if late else self._subscribers)[callback] = None
        if not self.running and not self._firing:
            self._next = 1
            self._timer = periodic_timer(self.loop, self.period, self._wake) if (
                self._kernel_timer
            ) else None  # fmt: skip
            if self._timer is not None:
                self._start = self._timer.start
            else:
                self._start = self.loop.time()
                self._schedule()

    def unsubscribe(self, callback: TickCallback) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        self._subscribers.pop(callback, None)
        self._late.pop(callback, None)
        if not len(self) and not self._firing:
            self._stop()

    def _stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def _schedule(self) -> None:
        self._handle = self.loop.call_at(self._start + self._next * self.period, self._fire)

    def _wake(self, now: float) -> None:
        """The kernel timer expired (once or more often since the last read)."""
        self._round(now)
        if not len(self):
            self._stop()

    def _fire(self) -> None:
        self._round(self.loop.time())
        if len(self):
            self._schedule()
        else:
            self._handle = None

    def _round(self, now: float) -> None:
        tick = self._next
        behind = int((now - self._start) / self.period)
        if behind > tick:  # blocked past later deadlines: skip them, no burst
            self.skipped += behind - tick
            tick = behind
        self._next = tick + 1
        self.ticks += 1
        self.tick = tick
        self._firing = True
        collecting = gc.isenabled()
        if collecting:  # a collection now would delay every packet after it: after the round
            gc.disable()
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
            if collecting:
                gc.enable()


_TICKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


def ticker_for(loop: asyncio.AbstractEventLoop | None = None) -> Ticker:
    """The process-wide ticker of ``loop`` (default: the running loop)."""
    loop = loop or asyncio.get_running_loop()
    ticker = _TICKERS.get(loop)
    if ticker is None:
        ticker = _TICKERS[loop] = Ticker(loop)
    return ticker
