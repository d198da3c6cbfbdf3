"""One epoll set for all RTP sockets of an event loop: one wake-up reads every ready port.

With ``loop.add_reader`` per socket, each readable socket costs the event loop a selector key
lookup, a callback handle and a trip through its ready queue, and an RTP port is readable
once per packet (one packet per 20 ms per call). The media poller registers a single epoll
descriptor with the loop instead; when it is readable the poller polls it once (no waiting)
and calls each ready socket's reader directly. Level-triggered like the loop's own selector:
a reader that leaves datagrams behind is called again at the next wake-up, so one busy port
cannot hold up the others or the loop. A port carries one packet per packet time (20 ms), so
readers read one datagram per wake-up (a read that finds nothing costs a syscall and an
exception, nearly one per packet) while wake-ups come at least once per packet time; after a
longer gap (an idle spell, or the loop was held up) they drain their socket, so a backlog is
caught up at once. Where epoll is missing (not Linux) readers go to the loop as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
import weakref
from collections.abc import Callable

__all__ = ["MediaPoller", "poller_for"]

Reader = Callable[[], None]

_MAX_EVENTS = 1024  # per wake-up; the rest are reported again at the next one


class MediaPoller:
    """Readers of many sockets behind one descriptor registered with ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, use_epoll: bool = True) -> None:
        self.loop = loop
        self._epoll = select.epoll() if use_epoll and hasattr(select, "epoll") else None
        self._readers: dict[int, Reader] = {}
        self._attached = False
        self._last_wakeup = 0.0
        # Seconds between this wake-up and the one before. A reader whose stream sends a
        # packet per ``t`` seconds drains its socket when the gap exceeds ``t`` (several
        # packets may be waiting) and reads one datagram otherwise: while wake-ups come at
        # least once per packet time, one read each keeps up, so no backlog can build up.
        # Infinite without epoll: the loop calls each reader on its own, readers drain.
        self.gap = float("inf") if self._epoll is None else 0.0
        self.wakeups = 0  # times the loop woke the poller
        self.events = 0  # sockets found readable, over all wake-ups

    def __len__(self) -> int:
        return len(self._readers)

    def add_reader(self, fd: int, reader: Reader) -> None:
        """Call ``reader()`` whenever ``fd`` is readable, until ``remove_reader``."""
        if self._epoll is None:
            self.loop.add_reader(fd, reader)
            return
        # An entry left for this number is stale: its socket was closed without
        # remove_reader (the kernel only reuses a free number) and has left the epoll set.
        # Registering a socket that is still registered raises (FileExistsError).
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = reader
        if not self._attached:
            self.loop.add_reader(self._epoll.fileno(), self._ready)
            self._attached = True

    def remove_reader(self, fd: int, reader: Reader, *, closed: bool = False) -> None:
        """Stop calling ``reader``. ``closed``: the socket is closed already, so ``fd`` may
        now number somebody else's socket: only our bookkeeping is dropped."""
        if self._epoll is None:
            if not closed and not self.loop.is_closed():
                self.loop.remove_reader(fd)
            return
        if self._readers.get(fd) != reader:  # bound methods: equal, not identical
            return  # never ours, or the number now belongs to another endpoint's socket
        del self._readers[fd]
        if not closed:  # a closed descriptor has left the epoll set by itself
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
        if not self._readers and self._attached:
            self._attached = False
            if not self.loop.is_closed():
                self.loop.remove_reader(self._epoll.fileno())

    def _ready(self) -> None:
        assert self._epoll is not None
        readers = self._readers
        ready = self._epoll.poll(0, _MAX_EVENTS)
        now = time.monotonic()
        self.gap = now - self._last_wakeup
        self._last_wakeup = now
        self.wakeups += 1
        self.events += len(ready)
        for fd, _ in ready:
            reader = readers.get(fd)
            if reader is None:  # removed by an earlier reader in this round
                continue
            try:
                reader()
            except Exception as exc:  # one broken reader must not starve the others
                self.loop.call_exception_handler(
                    {"message": "media reader failed", "exception": exc}
                )


_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MediaPoller] = (
    weakref.WeakKeyDictionary()
)


def poller_for(loop: asyncio.AbstractEventLoop | None = None) -> MediaPoller:
    """The media poller of ``loop`` (default: the running loop)."""
    loop = loop or asyncio.get_running_loop()
    poller = _POLLERS.get(loop)
    if poller is None:
        poller = _POLLERS[loop] = MediaPoller(loop)
    return poller
