"""asyncio adapters for SIP over UDP, TCP and TLS (RFC 3261 section 18).

Bytes in, parsed messages out to one handler; messages out to a Peer. Malformed requests are
answered statelessly with their specific 400 reason when enough of them could be read; everything
else that is malformed is dropped and counted. Nothing raised by a peer's bytes leaves this module.

Before any parsing, every datagram and stream chunk passes the admission (pbx/sip/admission.py):
a source over its rate is banned and its bytes are dropped unread and unanswered. TCP/TLS
connections are capped per source, and one on which nothing was registered or called (and that
we did not open) is closed after `unregistered_timeout`.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import structlog

from pbx.sip.admission import Admission, Verdict
from pbx.sip.headers import Headers
from pbx.sip.listener import StreamListener
from pbx.sip.message import Message, Request, Response
from pbx.sip.parser import ParseFailure, StreamFramer, parse_message
from pbx.sip.peer import Peer, TransportKind

log = structlog.get_logger("pbx.sip.transport")

MessageHandler = Callable[[Message, Peer], None]


@dataclass
class TransportLimits:
    max_message_size: int = 65535
    max_connections: int = 2000
    idle_timeout: float = 120.0
    # a TCP/TLS connection on which no REGISTER or INVITE succeeded (and that we did not send a
    # request over) is closed this long after it opened; trunk connections are exempt
    unregistered_timeout: float = 60.0
    tls_handshake_timeout: float = 10.0


@dataclass
class TransportStats:
    received: int = 0
    sent: int = 0
    malformed: int = 0
    rejected_400: int = 0
    connections_refused: int = 0
    connections_closed_idle: int = 0
    connections_closed_unregistered: int = 0
    accept_failures: int = 0  # out of file descriptors (EMFILE/ENFILE) on accept
    send_failures: int = 0


def error_response(failure: ParseFailure) -> Response | None:
    """A stateless answer to a malformed request, or None when it cannot be answered."""
    h = failure.headers
    if not failure.is_request or h is None:
        return None
    if not all(name in h for name in ("Via", "From", "To", "Call-ID", "CSeq")):
        return None
    if (h.get("CSeq") or "").split()[-1:] == ["ACK"]:
        return None  # an ACK is never answered
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in h.fields(name):
            headers.add(name, value)
    reason = failure.reason if failure.status == 400 else None
    return Response(failure.status, reason, headers)


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransports) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # selector datagram transports do not subclass asyncio.DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        host, port = str(addr[0]), int(addr[1])
        if not self.owner.admit(host, len(data), 1):
            return  # rate-limited or banned: dropped before parsing, no answer
        peer = Peer(TransportKind.UDP, host, port)
        if not data.strip(b"\r\n\x00"):
            return  # CRLF keepalive
        if len(data) > self.owner.limits.max_message_size:
            self.owner.stats.malformed += 1
            return
        try:
            message = parse_message(data, datagram=True)
        except ParseFailure as failure:
            self.owner.on_malformed(failure, peer)
            return
        self.owner.deliver(message, peer)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.
        log.debug("udp_error", error=str(exc))


class _Stream(asyncio.Protocol):
    def __init__(self, owner: SipTransports, kind: TransportKind) -> None:
        self.owner = owner
        self.kind = kind
        self.id = next(owner._ids)
        self.framer = StreamFramer(max_size=owner.limits.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.last_activity = self.opened_at = asyncio.get_running_loop().time()
        self.ready = asyncio.get_running_loop().create_future()
        self.counted = False  # holds a place in the admission's per-source connection count
        self.vouched = False  # registered, in a dialog, outbound or a trunk: not closed early

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport; uvloop's are not asyncio.Transport subclasses, so no isinstance
        self.transport = transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer(self.kind, str(host), int(port), self.id)
        if len(self.owner._connections) >= self.owner.limits.max_connections:
            self.owner.stats.connections_refused += 1
            transport.abort()
            return
        admission = self.owner.admission
        if admission is None:
            self.vouched = True  # no admission policy: only the idle timeout applies
        else:
            if not admission.connection_opened(self.peer.host, self.owner.clock()):
                self.owner.stats.connections_refused += 1
                transport.abort()
                return
            self.counted = True
            self.vouched = admission.is_exempt(self.peer.host)
        self.owner._connections[self.id] = self
        self.owner._by_address[(self.kind, self.peer.host, self.peer.port)] = self
        if not self.ready.done():
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last_activity = asyncio.get_running_loop().time()
        assert self.peer is not None
        if not self.owner.admit(self.peer.host, len(data), 0):
            self._drop()
            return
        for item in self.framer.feed(data):
            if not self.owner.admit(self.peer.host, 0, 1):  # one request's worth per message
                self._drop()
                return
            if isinstance(item, ParseFailure):
                self.owner.on_malformed(item, self.peer)
            else:
                self.owner.deliver(item, self.peer)
        if self.framer.keepalive_pending():
            self.send(b"\r\n")  # RFC 5626 section 3.5.1: pong to a double-CRLF ping
        if self.framer.broken and self.transport is not None:
            # the stream cannot be re-synchronised after a framing error (RFC 4475 3.1.2.2/3.1.2.3)
            self.transport.close()

    def _drop(self) -> None:
        """A banned source's connection ends: nothing more is read from it."""
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._forget(self)
        if self.counted and self.owner.admission is not None and self.peer is not None:
            self.counted = False
            self.owner.admission.connection_closed(self.peer.host)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost"))

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.last_activity = asyncio.get_running_loop().time()
            self.transport.write(data)


@dataclass
class SipTransports:
    handler: MessageHandler = field(default=lambda message, peer: None)  # set by `start`
    limits: TransportLimits = field(default_factory=TransportLimits)
    stats: TransportStats = field(default_factory=TransportStats)
    client_ssl: ssl.SSLContext | None = None
    observe: Callable[[str, Message], None] | None = None  # metrics hook: ("in"|"out", message)
    admission: Admission | None = None  # per-source rate limits and bans, checked before parsing
    clock: Callable[[], float] = time.monotonic  # the event loop's clock (for admission)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._udp: _Datagram | None = None
        self._servers: list[StreamListener] = []
        self._out_of_files_logged = -1e9
        self._connections: dict[int, _Stream] = {}
        self._by_address: dict[tuple[TransportKind, str, int], _Stream] = {}
        self._local: dict[TransportKind, tuple[str, int]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        # peers whose last connect failed: a departed handset is logged once, not at every
        # retry or keepalive (bounded like the connection table; oldest forgotten first)
        self._unreachable: OrderedDict[tuple[TransportKind, str, int], None] = OrderedDict()

    # --- listening -----------------------------------------------------------------------------
    async def start(
        self,
        handler: MessageHandler,
        host: str,
        port: int,
        tls_port: int | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """Listen on UDP and TCP (and TLS when given), delivering to `handler` (the stack's
        receive path: the stack is built with these transports, so it hands it over here)."""
        self.handler = handler
        await self.start_udp(host, port)
        await self.start_stream(TransportKind.TCP, host, port)
        if tls_port is not None and tls_context is not None:
            await self.start_stream(TransportKind.TLS, host, tls_port, tls_context)

    async def start_udp(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Datagram(self), local_addr=(host, port)
        )
        self._udp = protocol
        _widen_receive_buffer(transport.get_extra_info("socket"))
        bound = transport.get_extra_info("sockname")[:2]
        self._local[TransportKind.UDP] = (str(bound[0]), int(bound[1]))
        return self._local[TransportKind.UDP]

    async def start_stream(
        self, kind: TransportKind, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        server = StreamListener.open(
            host,
            port,
            lambda: _Stream(self, kind),
            ssl_context=ssl_context,
            handshake_timeout=self.limits.tls_handshake_timeout,
            on_out_of_files=self._out_of_files,
        )
        self._servers.append(server)
        bound = server.getsockname()
        self._local[kind] = (str(bound[0]), int(bound[1]))
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_idle())
        return self._local[kind]

    def _out_of_files(self, exc: OSError) -> None:
        """No descriptor for a new connection: it waits in the backlog (StreamListener retries
        a second later); counted every time, logged once in 10 s."""
        self.stats.accept_failures += 1
        now = self.clock()
        if now - self._out_of_files_logged >= 10.0:
            self._out_of_files_logged = now
            log.warning("accept_out_of_descriptors", error=str(exc))

    def local_address(self, kind: TransportKind) -> tuple[str, int] | None:
        return self._local.get(kind)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # --- inbound ---------------------------------------------------------------------------------
    def admit(self, host: str, size: int, requests: int) -> bool:
        """Admission before parsing; a new ban is logged once (the address of a source that
        floods us: a handset's or an attacker's, never a trunk's, which are exempt)."""
        if self.admission is None:
            return True
        verdict = self.admission.admit(host, size, self.clock(), requests)
        if verdict is Verdict.ADMIT:
            return True
        if verdict is not Verdict.BANNED:
            for ban in self.admission.take_bans():
                log.warning(
                    "source_banned", source=ban.host, seconds=ban.seconds, offence=ban.offence,
                    reason=ban.reason.value,
                )  # fmt: skip
        return False

    def deliver(self, message: Message, peer: Peer) -> None:
        self.stats.received += 1
        try:
            if self.observe is not None:
                self.observe("in", message)
            self.handler(message, peer)
        except Exception:  # a bug above must not take the transport down
            log.exception("handler_failed", peer=str(peer))

    def on_malformed(self, failure: ParseFailure, peer: Peer) -> None:
        self.stats.malformed += 1
        answer = error_response(failure)
        log.info("malformed_message", peer=str(peer), reason=failure.reason, answered=bool(answer))
        if answer is not None:
            self.stats.rejected_400 += 1
            self.send(answer, peer)

    # --- outbound --------------------------------------------------------------------------------
    def send(self, message: Message, peer: Peer) -> None:
        if self.observe is not None:
            self.observe("out", message)
        if peer.transport is not TransportKind.UDP and _vouches(message):
            conn = self._connection_for(peer)
            if conn is not None:
                conn.vouched = True
        data = message.to_bytes()
        if len(data) > self.limits.max_message_size and peer.transport is TransportKind.UDP:
            log.warning("message_too_large_for_udp", size=len(data), peer=str(peer))
            self.stats.send_failures += 1
            return
        self.send_bytes(data, peer)

    def send_bytes(self, data: bytes, peer: Peer) -> None:
        self.stats.sent += 1
        if peer.transport is TransportKind.UDP:
            if self._udp is None or self._udp.transport is None:
                self.stats.send_failures += 1
                return
            try:
                self._udp.transport.sendto(data, (peer.host, peer.port))
            except ValueError as exc:  # uvloop: a host name (a Via's sent-by) is not looked up
                self.stats.send_failures += 1
                log.info("udp_send_failed", peer=str(peer), error=str(exc))
            return
        conn = self._connection_for(peer)
        if conn is not None:
            conn.send(data)
            return
        task = asyncio.create_task(self._connect_and_send(data, peer))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _connection_for(self, peer: Peer) -> _Stream | None:
        return self._connections.get(peer.connection_id or -1) or self._by_address.get(
            (peer.transport, peer.host, peer.port)
        )

    async def _connect_and_send(self, data: bytes, peer: Peer) -> None:
        loop = asyncio.get_running_loop()
        ssl_ctx = self.client_ssl if peer.transport is TransportKind.TLS else None
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Stream(self, peer.transport), peer.host, peer.port, ssl=ssl_ctx
                ),
                timeout=5.0,
            )
            await proto.ready
            proto.vouched = True  # we opened it, towards a handset or destination we chose
            self._unreachable.pop((peer.transport, peer.host, peer.port), None)
            proto.send(data)
        except ssl.SSLCertVerificationError as exc:
            # the peer is not who the CA bundle vouches for: nothing is sent to it
            self.stats.send_failures += 1
            log.warning("tls_peer_refused", peer=str(peer), why=exc.verify_message)
            self._connect_failed(peer, exc)
        except (OSError, TimeoutError, ConnectionError) as exc:
            self.stats.send_failures += 1
            self._connect_failed(peer, exc)

    def _connect_failed(self, peer: Peer, exc: BaseException) -> None:
        key = (peer.transport, peer.host, peer.port)
        if key in self._unreachable:
            log.debug("connect_failed", peer=str(peer), error=str(exc))
            return
        if len(self._unreachable) >= self.limits.max_connections:
            self._unreachable.popitem(last=False)
        self._unreachable[key] = None
        log.info("connect_failed", peer=str(peer), error=str(exc), again="logged at debug")

    # --- housekeeping ----------------------------------------------------------------------------
    def _forget(self, conn: _Stream) -> None:
        self._connections.pop(conn.id, None)
        if conn.peer is not None:
            key = (conn.kind, conn.peer.host, conn.peer.port)
            if self._by_address.get(key) is conn:
                del self._by_address[key]

    async def _sweep_idle(self) -> None:
        loop = asyncio.get_running_loop()
        shortest = min(self.limits.idle_timeout, self.limits.unregistered_timeout)
        interval = max(0.2, min(10.0, shortest / 4))
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            deadline = now - self.limits.idle_timeout
            unvouched_deadline = now - self.limits.unregistered_timeout
            for conn in list(self._connections.values()):
                if conn.transport is None:
                    continue
                if conn.last_activity < deadline:
                    self.stats.connections_closed_idle += 1
                    conn.transport.close()
                elif not conn.vouched and conn.opened_at < unvouched_deadline:
                    self.stats.connections_closed_unregistered += 1
                    if self.admission is not None:
                        self.admission.count_drop("unregistered")
                    conn.transport.close()
            if self.admission is not None:
                self.admission.sweep(self.clock())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.abort()
        for server in self._servers:
            await server.wait_closed()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()


UDP_RECEIVE_BUFFER = 4 << 20


def _widen_receive_buffer(sock: Any) -> None:
    """A larger UDP receive buffer rides out bursts (a flood being banned, a trunk's burst of
    calls) without the kernel dropping a trunk's datagrams while the loop is busy."""
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_RECEIVE_BUFFER)
            return
        except OSError:  # SO_RCVBUFFORCE needs CAP_NET_ADMIN; SO_RCVBUF is capped by rmem_max
            continue


def _vouches(message: Message) -> bool:
    """Whether sending `message` on a connection shows its peer is one we deal with: a request
    we send (only to registered handsets and dialog peers) or a 2xx to REGISTER or INVITE."""
    if isinstance(message, Request):
        return True
    if not 200 <= message.status < 300:
        return False
    method = (message.headers.get("CSeq") or "").split()[-1:]
    return method in (["REGISTER"], ["INVITE"])


def request_summary(message: Message) -> str:
    """For logs: method or status and CSeq; never From/To/Contact, which may hold a number."""
    if isinstance(message, Request):
        return f"{message.method} {message.headers.get('CSeq')}"
    return f"{message.status} {message.headers.get('CSeq')}"
