"""Accepting TCP and TLS connections ourselves, the same way on every event loop.

``loop.create_server`` differs between loops where it matters most. Out of file descriptors,
asyncio leaves the connection waiting in the backlog and retries accept a second later; uvloop
(libuv) drops the waiting connections and closes the listening server for good, silently: no
SIP over TCP or TLS until a restart. So the service accepts on its listening socket itself
(``add_reader``), pauses accepting for a second when descriptors run out (the connection waits
in the kernel's backlog), and hands each accepted socket to ``loop.connect_accepted_socket``,
which runs the TLS handshake under its timeout on either loop.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Callable

import structlog

__all__ = ["StreamListener"]

log = structlog.get_logger("pbx.sip.listener")

BACKLOG = 100  # as loop.create_server: accepted per wake-up, and the kernel's queue length
PAUSE_WHEN_OUT_OF_FILES = 1.0  # s, as asyncio
_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class StreamListener:
    """One listening TCP socket; every accepted connection gets a protocol from ``factory``."""

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        *,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
        on_out_of_files: Callable[[OSError], None] = lambda exc: None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._factory = factory
        self._ssl = ssl_context
        self._handshake_timeout = handshake_timeout if ssl_context is not None else None
        self._on_out_of_files = on_out_of_files
        self._handshakes: set[asyncio.Task[None]] = set()
        self._resume: asyncio.TimerHandle | None = None
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        factory: Callable[[], asyncio.Protocol],
        *,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
        on_out_of_files: Callable[[OSError], None] = lambda exc: None,
    ) -> StreamListener:
        """Bind and listen on (host, port) like ``create_server(..., reuse_address=True)``."""
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            return cls(
                sock, factory, ssl_context=ssl_context, handshake_timeout=handshake_timeout,
                on_out_of_files=on_out_of_files,
            )  # fmt: skip
        except BaseException:
            sock.close()
            raise

    def getsockname(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def _accept(self) -> None:
        for _ in range(BACKLOG):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FILES:  # wait in the backlog until files are free
                    self._on_out_of_files(exc)
                    self._loop.remove_reader(self._sock.fileno())
                    self._resume = self._loop.call_later(PAUSE_WHEN_OUT_OF_FILES, self._resumed)
                    return
                # the peer gave up before we accepted (ECONNABORTED, ...): the next one
                log.debug("accept_failed", error=str(exc))
                continue
            task = self._loop.create_task(self._connect(conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    def _resumed(self) -> None:
        self._resume = None
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self._factory, conn, ssl=self._ssl, ssl_handshake_timeout=self._handshake_timeout
            )
        except (OSError, ssl.SSLError, TimeoutError, EOFError) as exc:  # a failed TLS handshake
            log.debug("connection_setup_failed", error=str(exc) or type(exc).__name__)
            conn.close()

    def close(self) -> None:
        """Stop accepting; connections already made stay (their owner closes them)."""
        if self._closed:
            return
        self._closed = True
        if self._resume is not None:
            self._resume.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for task in self._handshakes:
            task.cancel()

    async def wait_closed(self) -> None:
        if self._handshakes:
            await asyncio.gather(*self._handshakes, return_exceptions=True)
