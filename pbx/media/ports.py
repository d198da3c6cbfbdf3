"""RTP port allocation: even RTP ports with RTCP on port+1 (RFC 3550 section 11).

Both sockets of a pair are bound here so nobody else can take the RTCP port; the RTCP
socket is only held (we multiplex nothing on it), the kernel drops what piles up.
Allocation walks the range round-robin rather than reusing the lowest free port, so a
port freed by a finished call is not handed out again at once and late packets of the
old call cannot leak into a new one.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field

__all__ = ["AllocatedPort", "PortPool", "PortsExhausted"]


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
        self._cursor = 0

    @property
    def capacity(self) -> int:
        return len(self._ports)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> AllocatedPort:
        """Bind the next free pair; skip ports taken by other processes.

        Raises PortsExhausted when every pair in the range is in use or unbindable.
        """
        n = len(self._ports)
        for _ in range(n):
            port = self._ports[self._cursor]
            self._cursor = (self._cursor + 1) % n
            if port in self._in_use:
                continue
            pair = self._bind_pair(port)
            if pair is None:
                continue
            rtp, rtcp = pair
            self._in_use.add(port)
            return AllocatedPort(self.host, port, rtp, rtcp, self)
        raise PortsExhausted(
            f"no free RTP port pair on {self.host} in {self.start}-{self.end} "
            f"({len(self._in_use)} of {n} pairs held by this process, the rest taken by "
            "others): widen the rtp port range or lower the call limit"
        )

    def _bind_pair(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        socks: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.setblocking(False)
                sock.bind((self.host, p))
        except OSError as exc:
            for sock in socks:
                sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # out of descriptors: the call is refused (503) like when the range is full
                raise PortsExhausted(f"cannot open an RTP socket: {exc}") from exc
            raise
        return socks[0], socks[1]

    def _release(self, port: int) -> None:
        self._in_use.discard(port)
