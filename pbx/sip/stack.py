"""The asyncio adapter that runs the sans-IO transaction layer over the transports.

It turns transaction effects into I/O (sends, timers, deliveries to the core) and gives the core an
awaitable API: `request()` for client transactions and `respond()` for server transactions.

The line never goes dead: a request whose handling raises is answered here (400 when the request
itself was unreadable, else 500) unless the core had already answered it, and the failure is
logged by kind and code location only (never a header value: they may carry a caller's number).
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Protocol

import structlog

from pbx.sip.admission import Admission
from pbx.sip.errors import SipParseError
from pbx.sip.headers import Headers
from pbx.sip.message import Message, Request, Response, make_response
from pbx.sip.parser import KNOWN_METHODS
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.timers import Timers
from pbx.sip.transactions import (
    Abandoned,
    Deliver,
    Effect,
    Send,
    ServerState,
    Terminated,
    TimedOut,
    TransactionId,
    TransactionLayer,
)
from pbx.sip.transport import MessageHandler, TransportStats, request_summary
from pbx.sip.via import MAGIC_COOKIE

log = structlog.get_logger("pbx.sip.stack")

ProvisionalHandler = Callable[[Response], None]


class Transports(Protocol):
    """What the stack sends and listens through: `SipTransports` (UDP, TCP, TLS sockets) in
    the service, an in-memory network in tests. Received messages go to the handler given to
    `start` (the stack's own receive path, which exists only once the stack does)."""

    stats: TransportStats  # read by the metrics through the stack

    @property
    def connection_count(self) -> int: ...

    async def start(
        self,
        handler: MessageHandler,
        host: str,
        port: int,
        tls_port: int | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None: ...

    def local_address(self, kind: TransportKind) -> tuple[str, int] | None: ...

    def send(self, message: Message, peer: Peer) -> None: ...

    async def close(self) -> None: ...


@dataclass
class IncomingRequest:
    """A request delivered to the core, with what is needed to answer it."""

    request: Request
    source: Peer
    transaction: TransactionId | None  # None for an ACK to a 2xx (no transaction)
    stack: SipStack
    cancelled_invite: TransactionId | None = None  # for a CANCEL: the INVITE it matched
    origin: Peer | None = None  # who really sent it, when a trusted edge proxy relayed it

    @property
    def real_source(self) -> Peer:
        """The sender: `source`, or behind an edge proxy the address it was received from
        there (pbx/sip/edge.py). Replies still go to `source`, the proxy."""
        return self.origin or self.source

    def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Response:
        response = make_response(
            self.request, status, reason, to_tag=to_tag, body=body, content_type=content_type
        )
        for name, value in headers or []:
            response.headers.add(name, value)
        self.stack.respond(self, response)
        return response

    @property
    def unanswered(self) -> bool:
        """The request has a live server transaction that no final response has been sent on."""
        if self.transaction is None:
            return False
        state = self.stack.layer.server_transaction_state(self.transaction)
        return state in (ServerState.TRYING, ServerState.PROCEEDING)

    def fail(self, status: int = 500, reason: str = "Server Internal Error") -> bool:
        """Answer `status` if nothing final was sent yet (the core failed to); True if it was."""
        if not self.unanswered:
            return False
        self.stack.unanswered_failures += 1
        self.respond(status, reason, to_tag=secrets.token_hex(6))
        return True


def _is_trying(effect: Effect) -> bool:
    return (
        isinstance(effect, Send)
        and isinstance(effect.message, Response)
        and effect.message.status == 100
    )


RequestHandler = Callable[[IncomingRequest], None]
ResponseHandler = Callable[[Response, Peer], None]
TimeoutHandler = Callable[[TransactionId, Request], None]


class TransactionUser(Protocol):
    """The core above the stack (RFC 3261's TU): what the stack delivers to."""

    def on_request(self, incoming: IncomingRequest) -> None:
        """A new request (or an ACK to a 2xx) to answer through `incoming`."""

    def on_stray_response(self, response: Response, peer: Peer) -> None:
        """A response matching no client transaction (e.g. a 2xx retransmission to an INVITE)."""

    def on_server_timeout(self, transaction: TransactionId, request: Request) -> None:
        """A server transaction the layer ended without the core's final answer."""


@dataclass
class RequestHandlers:
    """A transaction user made of plain functions (tests, tools)."""

    on_request: RequestHandler
    on_stray_response: ResponseHandler = lambda response, peer: None
    on_server_timeout: TimeoutHandler = lambda txn, request: None


@dataclass
class _Pending:
    future: asyncio.Future[Response]
    on_provisional: ProvisionalHandler | None


@dataclass
class SipStack:
    """Built before its transaction user (the switchboard sends through it, so it must exist
    first) and given that user by `start`, the moment requests can first arrive."""

    transports: Transports  # the service's sockets (pbx.sip.transport), or a test's network
    timers: Timers = field(default_factory=Timers)
    max_transactions: int = 20000
    public_host: str = "127.0.0.1"
    admission: Admission | None = None  # per-source limits before parsing; its exempt: trunks
    trunk_reserved_transactions: int = 0  # of max_transactions, only for admission-exempt sources

    def __post_init__(self) -> None:
        self.request_failures = 0  # the core raised while handling a request (answered here)
        self.requests_malformed = 0  # ... a SipParseError: a header it read was not valid SIP
        self.unanswered_failures = 0  # requests answered by fail() (the core had not answered)
        admission = self.admission
        self.layer = TransactionLayer(
            self.timers,
            max_transactions=self.max_transactions,
            reserved=self.trunk_reserved_transactions if admission is not None else 0,
            privileged=lambda peer: admission is not None and admission.is_exempt(peer.host),
        )
        self._user: TransactionUser = _NOBODY  # until start()
        self._pending: dict[TransactionId, _Pending] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(
        self,
        user: TransactionUser,
        host: str,
        port: int,
        tls_port: int | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """Listen, delivering to `user` (the stack and its user need each other: the user is
        handed over here rather than set on either after construction)."""
        self._user = user
        self._loop = asyncio.get_running_loop()
        await self.transports.start(self._on_message, host, port, tls_port, tls_context)
        self._register_sent_by()

    def _register_sent_by(self) -> None:
        ours: set[tuple[str, int]] = set()
        for kind in TransportKind:
            local = self.transports.local_address(kind)
            if local is not None:
                ours.add((self.public_host, local[1]))
                ours.add(local)
        self.layer.set_sent_by(ours)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        await self.transports.close()

    def port(self, kind: TransportKind) -> int:
        local = self.transports.local_address(kind)
        if local is None:
            raise RuntimeError(f"{kind.value} transport is not running")
        return local[1]

    @property
    def now(self) -> float:
        # the loop it started on (asyncio.get_running_loop() makes a getpid() system call on
        # every read, and the clock is read for every message)
        loop = self._loop
        return (loop if loop is not None else asyncio.get_running_loop()).time()

    # --- effects ----------------------------------------------------------------------------------
    def _on_message(self, message: Message, peer: Peer) -> None:
        try:
            effects = self.layer.receive(message, peer, self.now)
        except Exception as exc:  # the layer promises not to raise; a bug must not kill reading
            log.error("receive_failed", error=type(exc).__name__, at=failure_site(exc))
            return
        self._apply(effects)

    def _apply(self, effects: list[Effect]) -> None:
        trying: Send | None = None
        for effect in effects:
            try:
                if _is_trying(effect):
                    assert isinstance(effect, Send)
                    trying = effect  # sent after the request is delivered, if still wanted
                    continue
                self._apply_one(effect)
                if trying is not None and isinstance(effect, Deliver):
                    if self._still_proceeding(effect.transaction):
                        self._apply_one(trying)
                    trying = None
            except Exception as exc:
                log.error(
                    "effect_failed",
                    effect=type(effect).__name__,
                    error=type(exc).__name__,
                    at=failure_site(exc),
                )
        if trying is not None:
            self._apply_one(trying)
        self._schedule()

    def _still_proceeding(self, transaction: TransactionId | None) -> bool:
        """A new INVITE's 100 Trying goes out only if the core did not answer it at once: a
        request challenged or refused statelessly gets no provisional response (RFC 3261
        8.2.7), so a lost 407 is retransmitted by the client instead of awaited forever."""
        if transaction is None:
            return True
        return self.layer.server_transaction_state(transaction) is ServerState.PROCEEDING

    def _deliver_request(self, incoming: IncomingRequest) -> None:
        """Hand a new request to the core; if that raises, answer for it (never silence)."""
        try:
            self._user.on_request(incoming)
        except SipParseError as exc:  # a header read lazily was not valid SIP: the peer's fault
            self.requests_malformed += 1
            if incoming.unanswered:  # the answer first: nothing below may leave it unsent
                incoming.respond(400, exc.reason, to_tag=secrets.token_hex(6))
            method = incoming.request.method
            log.info(
                "request_malformed",
                method=method if method in KNOWN_METHODS else "other",
                reason=exc.reason,  # generic ("Malformed parameter in Contact"), never a value
            )
        except Exception as exc:
            self.request_failures += 1
            incoming.fail()  # the answer first: nothing below may leave it unsent
            method = incoming.request.method
            log.error(
                "request_failed",
                method=method if method in KNOWN_METHODS else "other",
                error=type(exc).__name__,
                at=failure_site(exc),
            )

    def _apply_one(self, effect: Effect) -> None:
        if isinstance(effect, Send):
            self.transports.send(effect.message, effect.peer)
        elif isinstance(effect, Deliver):
            message = effect.message
            if isinstance(message, Request):
                self._deliver_request(
                    IncomingRequest(
                        message, effect.source, effect.transaction, self, effect.cancels
                    )
                )
            elif effect.transaction is not None and effect.transaction in self._pending:
                pending = self._pending[effect.transaction]
                if message.status < 200:
                    if pending.on_provisional is not None:
                        pending.on_provisional(message)
                elif not pending.future.done():
                    pending.future.set_result(message)
                else:
                    self._user.on_stray_response(message, effect.source)
            else:
                self._user.on_stray_response(message, effect.source)
        elif isinstance(effect, TimedOut):
            pending_req = self._pending.get(effect.transaction)
            if pending_req is not None:
                if not pending_req.future.done():
                    timeout = make_response(effect.request, 408, "Request Timeout - No response")
                    pending_req.future.set_result(timeout)
            else:
                self._user.on_server_timeout(effect.transaction, effect.request)
        elif isinstance(effect, Abandoned):
            method = effect.request.method
            log.warning(
                "transaction_abandoned",
                method=method if method in KNOWN_METHODS else "other",
                transaction=str(effect.transaction),
            )
            self._user.on_server_timeout(effect.transaction, effect.request)  # the core lets it go
        elif isinstance(effect, Terminated):
            pending_t = self._pending.pop(effect.transaction, None)
            if pending_t is not None and not pending_t.future.done():
                pending_t.future.set_result(
                    Response(408, "Request Timeout - Transaction ended", Headers())
                )

    def _schedule(self) -> None:
        deadline = self.layer.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            loop = self._loop or asyncio.get_running_loop()
            self._timer = loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self._apply(self.layer.on_timer(self.now))

    # --- API for the core ----------------------------------------------------------------------
    def via_for(self, transport: TransportKind) -> str:
        port = self.port(transport)
        branch = MAGIC_COOKIE + secrets.token_hex(10)
        return f"SIP/2.0/{transport.via_name} {self.public_host}:{port};branch={branch};rport"

    def respond(self, incoming: IncomingRequest, response: Response) -> None:
        if incoming.transaction is None:
            # no transaction (e.g. an ACK): nothing to answer
            return
        self._apply(self.layer.send_response(incoming.transaction, response, self.now))

    def respond_once(self, incoming: IncomingRequest, response: Response) -> None:
        """A challenge or refusal sent once, its transaction ended (no retransmissions)."""
        if incoming.transaction is None:
            return
        self._apply(self.layer.send_response_once(incoming.transaction, response))

    async def request(
        self,
        request: Request,
        peer: Peer,
        on_provisional: ProvisionalHandler | None = None,
        on_transaction: Callable[[TransactionId], None] | None = None,
    ) -> Response:
        """Send a request in a new client transaction; the final response (408 on timeout)."""
        request.headers.prepend("Via", self.via_for(peer.transport))
        txn, effects = self.layer.send_request(request, peer, self.now)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[txn] = _Pending(future, on_provisional)
        if on_transaction is not None:
            on_transaction(txn)
        self._apply(effects)
        try:
            return await future
        finally:
            if future.done():
                self._pending.pop(txn, None)

    def cancel(self, transaction: TransactionId) -> None:
        self._apply(self.layer.cancel(transaction, self.now))

    def send_stateless(self, message: Message, peer: Peer, *, new_via: bool = True) -> None:
        """ACKs for 2xx and 2xx retransmissions go outside transactions (RFC 3261 section 17)."""
        if new_via and isinstance(message, Request):
            message.headers.remove("Via")
            message.headers.prepend("Via", self.via_for(peer.transport))
        log.debug("send_stateless", what=request_summary(message), peer=str(peer))
        self.transports.send(message, peer)


_NOBODY = RequestHandlers(lambda incoming: None)  # nothing arrives before start()


def failure_site(exc: BaseException, frames: int = 4) -> str:
    """Where an exception came from (innermost frames: file:line function), without its
    message or any local value, so that logging it cannot leak what a request carried."""
    tb = traceback.extract_tb(exc.__traceback__)[-frames:]
    return " < ".join(
        f"{'/'.join(PurePath(f.filename).parts[-2:])}:{f.lineno} {f.name}" for f in reversed(tb)
    )
