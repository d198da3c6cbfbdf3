"""A periodic kernel timer read by the event loop: a Linux timerfd, through libc.

The loops' own timers sleep in whole milliseconds (asyncio rounds its epoll timeout up, libuv
counts in ms), so a 20 ms media round woke 0-1 ms late at random. A timerfd armed with
absolute CLOCK_MONOTONIC deadlines wakes the loop's poll as soon as the kernel timer expires
(tens of microseconds), and reading it says how many periods went by. ``os.timerfd_create``
arrives only in Python 3.13, hence ctypes; elsewhere ``periodic_timer`` returns None and the
caller keeps the loop's timers.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
import time
import weakref
from collections.abc import Callable

__all__ = ["PeriodicTimer", "periodic_timer"]

_CLOCK_MONOTONIC = 1  # time.monotonic() reads the same clock on Linux
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _timespec(seconds: float) -> _Timespec:
    whole = int(seconds)
    return _Timespec(whole, int(round((seconds - whole) * 1e9)))


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p,
        ]  # fmt: skip
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()

Wake = Callable[[float], None]


class PeriodicTimer:
    """Calls ``wake(now)`` in the loop at ``start + n * period`` (n = 1, 2, ...); after a
    stall, once for all the periods that went by (``now`` tells how many)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, period: float, wake: Wake) -> None:
        self.loop = loop
        self.period = period
        self._fd = fd
        self._wake = wake
        self._closed = False
        # the loop may be closed (and collected) with the timer running: the descriptor goes too
        self._finalizer = weakref.finalize(self, os.close, fd)
        self.start = time.monotonic()
        first = _timespec(self.start + period)
        spec = _Itimerspec(_timespec(period), first)
        assert _LIBC is not None
        try:
            if _LIBC.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            loop.add_reader(fd, self._ready)
        except BaseException:
            self._finalizer()
            raise

    def _ready(self) -> None:
        try:
            os.read(self._fd, 8)  # the number of expirations; the clock says which round is due
        except BlockingIOError:
            return
        self._wake(time.monotonic())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.loop.is_closed():
            self.loop.remove_reader(self._fd)
        self._finalizer()


def periodic_timer(
    loop: asyncio.AbstractEventLoop, period: float, wake: Wake
) -> PeriodicTimer | None:
    """A running kernel timer, or None where there is none (not Linux, out of descriptors)."""
    if _LIBC is None:
        return None
    fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
    if fd < 0:
        return None
    try:
        return PeriodicTimer(loop, fd, period, wake)
    except (OSError, NotImplementedError):  # a loop without add_reader (Windows' proactor)
        return None
