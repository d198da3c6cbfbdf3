"""The service's `SipStack` on the in-memory network: its transports, and the network run in step
with the event loop.

`MemoryTransports` is what `pbx.sip.stack.Transports` asks for (start with the stack's receive
handler, send, the local address, close) over a `Network` instead of sockets: what the stack
sends is put on the network as bytes, what arrives is parsed with the real parser and handed to
the stack, as `SipTransports` does for UDP. The stack keeps its own clock (the event loop's): the
call layer above it awaits and sleeps in real time, so `run_in_real_time` moves the network's
virtual clock along with the loop's, and the phones on it (`SipNode`s) keep their RFC timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

from pbx.sip.errors import SipParseError
from pbx.sip.message import Message
from pbx.sip.parser import parse_message
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.transport import MessageHandler, TransportStats
from tests.helpers.memory_network import Address, Network


class MemoryTransports:
    """UDP only, on `network` at the host and port the stack starts on."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.stats = TransportStats()
        self.connection_count = 0  # no connections on a datagram network
        self._handler: MessageHandler | None = None
        self._address: Address | None = None

    # --- what the stack uses ---------------------------------------------------------------------
    async def start(
        self,
        handler: MessageHandler,
        host: str,
        port: int,
        tls_port: int | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._handler = handler
        self._address = (host, port)
        self.network.attach(self)

    def local_address(self, kind: TransportKind) -> tuple[str, int] | None:
        return self._address if kind is TransportKind.UDP else None

    def send(self, message: Message, peer: Peer) -> None:
        self.stats.sent += 1
        self.network.send(self.address, (peer.host, peer.port), message.to_bytes())

    async def close(self) -> None:
        self._handler = None  # the network keeps the address; nothing is delivered any more

    # --- what the network uses -------------------------------------------------------------------
    @property
    def address(self) -> Address:
        assert self._address is not None, "not started"
        return self._address

    def datagram_received(self, data: bytes, source: Address) -> None:
        if self._handler is None:
            return
        try:
            message = parse_message(data)
        except SipParseError:
            self.stats.malformed += 1
            return
        self.stats.received += 1
        self._handler(message, Peer(TransportKind.UDP, *source))

    def next_deadline(self) -> float | None:
        return None  # the stack's timers run on the event loop

    def on_timer(self, now: float) -> None:
        pass


@contextlib.asynccontextmanager
async def run_in_real_time(network: Network, tick: float = 0.002) -> AsyncIterator[Network]:
    """Deliver the network's datagrams and fire its nodes' timers as the event loop's time
    passes (every `tick` seconds), until the block ends."""
    loop = asyncio.get_running_loop()
    started = loop.time() - network.now

    async def pump() -> None:
        while True:
            network.run(max(0.0, loop.time() - started - network.now))
            await asyncio.sleep(tick)

    task = asyncio.create_task(pump())
    try:
        yield network
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
