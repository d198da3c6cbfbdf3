"""A departed TCP/TLS handset is logged once, not at every attempt to reach it."""

from __future__ import annotations

import asyncio
import socket

from pbx.sip.peer import Peer, TransportKind
from pbx.sip.transport import SipTransports
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.polling import until
from tests.helpers.service import free_port


async def _send_and_settle(transports: SipTransports, peer: Peer) -> None:
    transports.send_bytes(b"\r\n\r\n", peer)
    await asyncio.gather(*list(transports._pending))


async def test_connect_failed_is_logged_once_per_peer_until_it_connects_again() -> None:
    transports = SipTransports(handler=lambda message, peer: None)
    port = free_port()
    gone = Peer(TransportKind.TCP, "127.0.0.1", port)  # nothing listens there
    async with captured_logs() as logs:
        for _ in range(3):  # e.g. keepalives and retransmissions to a departed handset
            await _send_and_settle(transports, gone)
        assert transports.stats.send_failures == 3
        assert len(log_events(logs, "connect_failed")) == 1
        # the handset comes back: reached, then it departs again and that is news again
        accepted: list[asyncio.StreamWriter] = []

        async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted.append(w)

        server = await asyncio.start_server(accept, "127.0.0.1", port)
        async with server:
            await _send_and_settle(transports, gone)
            assert transports.stats.send_failures == 3
            for w in accepted:
                w.close()
        await until(lambda: transports.connection_count == 0)
        await _send_and_settle(transports, gone)
        await _send_and_settle(transports, gone)
    assert len(log_events(logs, "connect_failed")) == 2
    await transports.close()


async def test_a_udp_peer_named_by_host_name_is_not_an_exception() -> None:
    """A response routed to a Via's sent-by host name (no rport, no received): asyncio looks the
    name up in sendto, uvloop refuses; either way nothing is raised into the stack, and the
    transport goes on sending to addresses."""
    transports = SipTransports(handler=lambda message, peer: None)
    await transports.start_udp("127.0.0.1", 0)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    try:
        transports.send_bytes(b"SIP/2.0 200 OK\r\n\r\n", Peer(TransportKind.UDP, "x.invalid", 5060))
        here = Peer(TransportKind.UDP, "127.0.0.1", receiver.getsockname()[1])
        transports.send_bytes(b"SIP/2.0 200 OK\r\n\r\n", here)
        data = await asyncio.to_thread(receiver.recv, 2048)
        assert data.startswith(b"SIP/2.0 200 OK")
    finally:
        receiver.close()
        await transports.close()
