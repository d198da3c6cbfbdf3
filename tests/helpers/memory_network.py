"""SIP cores on an in-memory datagram network with a virtual clock, for call flows without sockets.

Each `SipNode` is the sans-IO transaction core that `pbx.sip.stack.SipStack` drives over
sockets (`pbx.sip.transactions.TransactionLayer`), with the same duties the adapter has: carry
out the effects in order, parse what arrives with the real parser, route responses back to the
client transaction that sent the request, and fire timers at their deadlines. Here the wire is a
`Network` that queues datagrams in memory and the clock is virtual: it jumps from one event (an
arrival, a timer) to the next, so a flow that spans 32 s of RFC 3261 timers runs in
milliseconds, and dropping a chosen datagram shows exactly which timer recovers it. This is how
aioquic tests its connection: two endpoints, datagrams handed across, time passed in.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pbx.sip.message import Request, Response, make_response
from pbx.sip.parser import parse_message
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.timers import Timers
from pbx.sip.transactions import (
    Abandoned,
    Deliver,
    Effect,
    NoAck,
    Send,
    Terminated,
    TimedOut,
    TransactionId,
    TransactionLayer,
    Uas2xxRetransmitter,
)
from pbx.sip.via import MAGIC_COOKIE

Address = tuple[str, int]


@dataclass
class Datagram:
    """One message put on the in-memory wire (kept in `Network.wire` whether lost or not)."""

    at: float
    source: Address
    target: Address
    data: bytes
    lost: bool = False

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode()

    @property
    def summary(self) -> str:
        """`INVITE` for a request, `200 INVITE` for a response (status and CSeq method)."""
        line = self.first_line
        if not line.startswith("SIP/2.0 "):
            return line.split(" ", 1)[0]
        status = line.split(" ", 2)[1]
        for header in self.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
            name, _, value = header.decode().partition(":")
            if name.strip().lower() == "cseq":
                return f"{status} {value.split()[-1]}"
        return status


Loss = Callable[[Datagram], bool]


class Endpoint(Protocol):
    """What the network delivers to and asks for deadlines: a `SipNode`, or a stack's
    transports (tests/helpers/memory_stack.py)."""

    @property
    def address(self) -> Address: ...

    def datagram_received(self, data: bytes, source: Address) -> None: ...

    def next_deadline(self) -> float | None: ...

    def on_timer(self, now: float) -> None: ...


def no_loss(datagram: Datagram) -> bool:
    return False


class Network:
    """Datagrams between nodes with a fixed one-way latency; `loss` decides, per datagram put
    on the wire, whether it is lost. Time only moves in `run`/`run_until`."""

    def __init__(self, latency: float = 0.01, loss: Loss = no_loss) -> None:
        self.latency = latency
        self.loss = loss
        self.now = 0.0
        self.wire: list[Datagram] = []
        self._nodes: dict[Address, Endpoint] = {}
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._stuck = 0  # steps in a row at one instant: a timer that never moves on is a bug

    def attach(self, node: Endpoint) -> None:
        if node.address in self._nodes:
            raise ValueError(f"{node.address} is taken")
        self._nodes[node.address] = node

    def send(self, source: Address, target: Address, data: bytes) -> None:
        datagram = Datagram(self.now, source, target, data)
        datagram.lost = self.loss(datagram)
        self.wire.append(datagram)
        node = self._nodes.get(target)
        if not datagram.lost and node is not None:
            self.call_at(self.now + self.latency, lambda: node.datagram_received(data, source))

    def call_at(self, when: float, action: Callable[[], None]) -> None:
        """Run `action` at virtual time `when` (a TU's later step: answering after ringing)."""
        heapq.heappush(self._events, (max(when, self.now), next(self._order), action))

    def _next_time(self) -> float | None:
        times = [n.next_deadline() for n in self._nodes.values()]
        if self._events:
            times.append(self._events[0][0])
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def _step(self, until: float) -> bool:
        when = self._next_time()
        if when is None or when > until:
            return False
        self._stuck = self._stuck + 1 if when <= self.now else 0
        if self._stuck > 10_000:
            raise AssertionError(f"time stands still at {self.now:.3f}: a deadline never passes")
        self.now = max(self.now, when)
        while self._events and self._events[0][0] <= self.now:
            heapq.heappop(self._events)[2]()
        for node in list(self._nodes.values()):
            deadline = node.next_deadline()
            if deadline is not None and deadline <= self.now:
                node.on_timer(self.now)
        return True

    def run(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass, handling every event in it."""
        end = self.now + seconds
        while self._step(end):
            pass
        self.now = end

    def run_until(self, condition: Callable[[], bool], limit: float = 120.0) -> None:
        """Handle events until `condition()` holds; fail if it does not within `limit` virtual
        seconds (or nothing is left to happen)."""
        end = self.now + limit
        while not condition():
            if not self._step(end):
                raise AssertionError(f"not within {limit} virtual seconds (now {self.now:.3f})")

    def summaries(self, *, lost: bool | None = None) -> list[str]:
        """What went on the wire, in order (`lost`: only lost, or only delivered, datagrams)."""
        return [d.summary for d in self.wire if lost is None or d.lost is lost]


ResponseHandler = Callable[[Response], None]


@dataclass
class ServerRequest:
    """A request the core delivered to the TU: answer it through `node.respond(transaction)`."""

    request: Request
    source: Peer
    transaction: TransactionId | None  # None for an ACK to a 2xx
    cancels: TransactionId | None = None  # a CANCEL: the INVITE server transaction it matched


@dataclass
class SipNode:
    """One SIP endpoint's transaction core on a `Network` (UDP, its address is `host:port`)."""

    network: Network
    host: str
    port: int
    on_request: Callable[[ServerRequest], None]
    on_stray_response: ResponseHandler = lambda response: None
    on_no_ack: Callable[[Response], None] = lambda response: None
    timers: Timers = field(default_factory=Timers)

    def __post_init__(self) -> None:
        self.layer = TransactionLayer(self.timers, sent_by=[(self.host, self.port)])
        self._waiting: dict[TransactionId, ResponseHandler] = {}
        self._retransmitting: list[Uas2xxRetransmitter] = []
        self.network.attach(self)

    @property
    def address(self) -> Address:
        return self.host, self.port

    @property
    def now(self) -> float:
        return self.network.now

    def peer(self) -> Peer:
        """How other nodes address this one."""
        return Peer(TransportKind.UDP, self.host, self.port)

    # --- from the network --------------------------------------------------------------------
    def datagram_received(self, data: bytes, source: Address) -> None:
        message = parse_message(data)
        self._apply(self.layer.receive(message, Peer(TransportKind.UDP, *source), self.now))

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self._put(effect.message.to_bytes(), effect.peer)
            elif isinstance(effect, Deliver):
                self._deliver(effect)
            elif isinstance(effect, TimedOut):
                handler = self._waiting.get(effect.transaction)
                if handler is not None:  # timer B/F: as if a 408 had arrived
                    handler(make_response(effect.request, 408, "Request Timeout"))
            elif isinstance(effect, Terminated):
                self._waiting.pop(effect.transaction, None)
            elif isinstance(effect, Abandoned):
                pass  # the layer answered 500 itself; the TU's tests see it on the wire

    def _deliver(self, effect: Deliver) -> None:
        message = effect.message
        if isinstance(message, Request):
            incoming = ServerRequest(message, effect.source, effect.transaction, effect.cancels)
            self.on_request(incoming)
            return
        handler = None if effect.transaction is None else self._waiting.get(effect.transaction)
        if handler is not None:
            handler(message)
        else:
            self.on_stray_response(message)

    def _put(self, data: bytes, peer: Peer) -> None:
        self.network.send(self.address, (peer.host, peer.port), data)

    # --- from the TU -------------------------------------------------------------------------
    def request(self, request: Request, peer: Peer, on_response: ResponseHandler) -> TransactionId:
        """Send `request` in a new client transaction; every response it passes up (provisional,
        final, 2xx retransmissions while Accepted, 408 on timeout) goes to `on_response`."""
        request.headers.prepend("Via", self.via())
        transaction, effects = self.layer.send_request(request, peer, self.now)
        self._waiting[transaction] = on_response
        self._apply(effects)
        return transaction

    def via(self) -> str:
        branch = MAGIC_COOKIE + secrets.token_hex(8)
        return f"SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport"

    def respond(self, transaction: TransactionId, response: Response) -> list[Send]:
        effects = self.layer.send_response(transaction, response, self.now)
        self._apply(effects)
        return [e for e in effects if isinstance(e, Send)]

    def respond_once(self, transaction: TransactionId, response: Response) -> None:
        """A challenge or refusal sent once (as the service sends them)."""
        self._apply(self.layer.send_response_once(transaction, response))

    def answer_2xx(self, transaction: TransactionId, response: Response) -> Uas2xxRetransmitter:
        """Send a 2xx to an INVITE and keep it alive until its ACK (RFC 3261 13.3.1.4)."""
        (sent,) = self.respond(transaction, response)
        retransmitter = Uas2xxRetransmitter(response, sent.peer, self.now, self.timers)
        self._retransmitting.append(retransmitter)
        return retransmitter

    def cancel(self, transaction: TransactionId) -> None:
        self._apply(self.layer.cancel(transaction, self.now))

    def send_stateless(self, request: Request, peer: Peer) -> None:
        """An ACK for a 2xx: outside any transaction, with a Via of its own."""
        request.headers.remove("Via")
        request.headers.prepend("Via", self.via())
        self._put(request.to_bytes(), peer)

    # --- time --------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        deadlines = [self.layer.next_deadline()]
        deadlines += [r.next_deadline() for r in self._retransmitting]
        due = [d for d in deadlines if d is not None]
        return min(due) if due else None

    def on_timer(self, now: float) -> None:
        self._apply(self.layer.on_timer(now))
        for retransmitter in list(self._retransmitting):
            for effect in retransmitter.on_timer(now):
                if isinstance(effect, NoAck):
                    self.on_no_ack(effect.response)
                else:
                    self._put(effect.message.to_bytes(), effect.peer)
            if retransmitter.finished:
                self._retransmitting.remove(retransmitter)

    @property
    def idle(self) -> bool:
        """No transaction and no 2xx retransmission left."""
        return len(self.layer) == 0 and not self._retransmitting
