"""RTP port allocation: even RTP ports with RTCP on port+1 (RFC 3550 section 11).

Both sockets of a pair are bound here so nobody else can take the RTCP port; the RTCP
socket is only held (we multiplex nothing on it), the kernel drops what piles up.
Ports are picked at random from the free ones (an outsider cannot guess the port of the
next call from the last one, which is what RTP-bleed style attacks rely on), and a
released port cools off behind a short queue before it is free again, so late packets
of a finished call do not leak into the next one.
"""

from __future__ import annotations

import errno
import secrets
import socket
from collections import deque
from dataclasses import dataclass, field

__all__ = ["AllocatedPort", "PortPool", "PortsExhausted"]


_MAX_TRIES = 32  # binds per allocation: a range mostly taken by others costs bounded work
_COOL_MAX = 64  # recently released pairs held back from reuse
_OUT_OF_SOCKETS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Created non-blocking where the kernel can (Linux): no ioctl afterwards, four times a call.
_NONBLOCK: int = getattr(socket, "SOCK_NONBLOCK", 0)


class PortsExhausted(RuntimeError):
    """No free RTP port pair is left in the configured range."""


@dataclass(eq=False)
class AllocatedPort:
    """A bound RTP/RTCP socket pair; ``close()`` releases both and returns the port."""

    host: str
    port: int
    rtp_socket: socket.socket
    rtcp_socket: socket.socket
    _pool: PortPool | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def rtcp_port(self) -> int:
        return self.port + 1

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close both sockets (the RTP one may already be owned/closed by a transport)."""
        self._closed = True
        self.rtp_socket.close()
        self.rtcp_socket.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool._release(self.port)


class PortPool:
    """Hands out bound even RTP ports from ``[start, end]`` on ``host``."""

    def __init__(self, host: str, start: int, end: int) -> None:
        if start % 2:
            start += 1
        if not 0 < start < end <= 65535:
            raise ValueError(f"invalid RTP port range {start}-{end}")
        self.host = host
        self.start = start
        self.end = end
        self._ports = range(start, end, 2)  # port+1 must stay within the range
        if not self._ports:
            raise ValueError(f"RTP port range {start}-{end} holds no even/odd pair")
        self._in_use: set[int] = set()
        self._free: list[int] = list(self._ports)
        self._cooling: deque[int] = deque()  # released, free again once the queue is full
        self._cool_max = min(_COOL_MAX, len(self._ports) // 4)

    @property
    def capacity(self) -> int:
        return len(self._ports)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> AllocatedPort:
        """Bind a random free pair; a port taken by another process is skipped.

        Bounded: at most ``_MAX_TRIES`` binds per call. Raises PortsExhausted when every
        pair is in use, nothing bindable was found, or the process is out of sockets.
        """
        unbindable: list[int] = []
        try:
            for _ in range(_MAX_TRIES):
                port = self._take()
                if port is None:
                    break
                pair = self._bind_pair(port)
                if pair is None:
                    unbindable.append(port)  # another process holds it, maybe not for long
                    continue
                rtp, rtcp = pair
                self._in_use.add(port)
                return AllocatedPort(self.host, port, rtp, rtcp, self)
        finally:
            self._free.extend(unbindable)
        raise PortsExhausted(
            f"no free RTP port pair on {self.host} in {self.start}-{self.end} "
            f"({len(self._in_use)} of {len(self._ports)} pairs held by this process, the rest "
            "taken by others): widen the rtp port range or lower the call limit"
        )

    def _take(self) -> int | None:
        free = self._free
        if free:
            index = secrets.randbelow(len(free))
            free[index], free[-1] = free[-1], free[index]
            return free.pop()
        if self._cooling:  # everything else is busy: a cooling port beats refusing the call
            return self._cooling.popleft()
        return None

    def _bind_pair(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        socks: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(family, socket.SOCK_DGRAM | _NONBLOCK)
                socks.append(sock)
                if not _NONBLOCK:
                    sock.setblocking(False)
                sock.bind((self.host, p))
        except OSError as exc:
            for sock in socks:
                sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            if exc.errno in _OUT_OF_SOCKETS:
                raise PortsExhausted(f"cannot open RTP sockets: {exc.strerror}") from None
            raise
        return socks[0], socks[1]

    def _release(self, port: int) -> None:
        if port not in self._in_use:
            return
        self._in_use.discard(port)
        self._cooling.append(port)
        while len(self._cooling) > self._cool_max:
            self._free.append(self._cooling.popleft())
