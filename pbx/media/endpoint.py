"""RTP endpoint: one UDP socket from the port pool, symmetric RTP, media timeout.

Symmetric RTP (RFC 4961 style "latching"): handsets behind NAT announce a private
address in SDP, so we send where their valid RTP really comes from. Latching is the
classic RTP-hijack vector ("RTP bleed": anyone spraying RTP at our port range steals
the stream), so a stream only ever accepts its signalled peer:

- until the first acceptable packet we send to the SDP address;
- acceptable sources are exactly the SDP address, or any port on the IP address the
  call's signalling came from (``signalling_hosts``: a NAT'd handset's media leaves
  from its public IP, on a port nobody told us);
- we latch once per (re)negotiation, to the first acceptable source of valid RTP with
  a negotiated payload type (``set_remote`` starts a new negotiation: a re-INVITE with
  a new address legitimately moves the stream);
- once latched, packets from any other source are dropped and counted (``foreign``),
  whatever they carry and however long the latched source is silent: never relatched.

With SRTP agreed (``set_protection``), every packet from the signalled peer is authenticated
before anything else looks at it, so a forged or tampered packet can neither latch nor reach
the call: it is dropped and counted (``srtp_dropped``); what we send is protected last.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from pbx.media import udp
from pbx.media.poller import MediaPoller, poller_for
from pbx.media.ports import AllocatedPort, PortPool
from pbx.media.rtp import RtpError, RtpPacket
from pbx.media.srtp import SrtpSession

if TYPE_CHECKING:  # a type only: the compiled twin of pbx.media.udp has the functions alone
    from pbx.media.udp import Peer

__all__ = ["Address", "EndpointStats", "RtpEndpoint"]

Address = tuple[Any, ...]  # (host, port) for IPv4, (host, port, flow, scope) for IPv6
PacketHandler = Callable[[RtpPacket], None]

_READ_BATCH = 32  # datagrams per wake-up at most while catching up
_MAX_DATAGRAM = 2048  # G.711 at 20 ms is 172 bytes; anything near this is not ours

log = structlog.get_logger("pbx.media.endpoint")


@dataclass(slots=True)
class EndpointStats:
    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    malformed: int = 0  # not parseable as RTP
    rtcp: int = 0  # RTCP multiplexed onto the RTP port (RFC 5761)
    unexpected_pt: int = 0  # valid RTP with a payload type that was not negotiated
    foreign: int = 0  # valid RTP from a source other than the signalled peer: dropped
    tx_dropped: int = 0  # nowhere to send yet, closed, or the socket buffer was full
    send_errors: int = 0  # socket errors on send/receive (unreachable network, ...)
    latches: int = 0  # negotiations that latched to a source
    timeouts: int = 0
    srtp_dropped: int = 0  # failed SRTP authentication or replay check: dropped


class RtpEndpoint:
    """RTP on one allocated port, read through the loop's media poller (``poller.py``).

    Not an asyncio datagram transport on purpose: that path costs about twice the CPU
    per packet (it allocates a 256 KiB buffer per recvfrom and queues sends), and a
    media server lives on per-packet cost. One datagram is read per wake-up (a call's port
    holds one packet per 20 ms: draining until EAGAIN cost a failed recvfrom and an
    exception for nearly every packet), a bounded batch when the poller's last gap between
    wake-ups was longer than the stream's packet time; what is left is read at the next
    wake-up (level-triggered), so a flooded port cannot starve the others. A send that
    would block is dropped (late RTP is worthless), not queued.
    """

    def __init__(
        self,
        port: AllocatedPort,
        *,
        on_packet: PacketHandler | None = None,
        media_timeout: float | None = 30.0,
        on_timeout: Callable[[RtpEndpoint], None] | None = None,
        signalling_hosts: Collection[str] = (),
        on_foreign: Callable[[], None] | None = None,
    ) -> None:
        self.port = port
        self.on_packet = on_packet
        self.on_timeout = on_timeout
        self.on_foreign = on_foreign  # a stray packet was dropped (service-wide counter)
        self.on_closed: Callable[[RtpEndpoint], None] | None = None
        # IP addresses the call's signalling came from: media from any port on them is ours.
        self.signalling_hosts = frozenset(h for h in map(_normal_ip, signalling_hosts) if h)
        self.stats = EndpointStats()
        self.last_rx: float | None = None  # loop.time() of the last accepted packet
        self._media_timeout = media_timeout
        self._sock = port.rtp_socket
        self._family = int(port.rtp_socket.family)
        # Datagram I/O through pbx.media.udp: sources and destinations are its peers (the
        # address tuples in plain Python, socket address bytes when compiled).
        self._recvfrom = udp.receiver(port.rtp_socket)
        self._sendto = udp.sender(port.rtp_socket)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: MediaPoller | None = None
        # Seconds per packet the peer sends (SDP ptime; set by the leg): after a longer gap
        # between the poller's wake-ups, several may be waiting and a read drains the socket.
        self.packet_time = 0.02
        self._fd = -1
        self._closed = False
        self._closed_future: asyncio.Future[None] | None = None
        self._sdp_address: Address | None = None
        self._negotiated = False  # set_remote was called: there is a peer to latch to
        self._payload_types: frozenset[int] | None = None
        self._latched: Peer | None = None
        self._send_to: Peer | None = None
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._timeout_since = 0.0
        self._timed_out = False
        self._srtp: SrtpSession | None = None

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    async def open(cls, pool: PortPool, **kwargs: Any) -> RtpEndpoint:
        """Allocate a port from ``pool`` and start receiving on it."""
        port = pool.allocate()
        try:
            endpoint = cls(port, **kwargs)
            endpoint.attach(asyncio.get_running_loop())
        except BaseException:
            port.close()
            raise
        return endpoint

    def attach(self, loop: asyncio.AbstractEventLoop, poller: MediaPoller | None = None) -> None:
        """Start receiving on ``loop`` (done by ``open``), through ``poller`` (default: the
        loop's media poller)."""
        if self._loop is not None:
            raise RuntimeError("endpoint already attached to a loop")
        self._loop = loop
        self._sock.setblocking(False)
        self._fd = self._sock.fileno()
        self._poller = poller or poller_for(loop)
        self._poller.add_reader(self._fd, self._read_ready)
        self._closed_future = loop.create_future()
        self._timeout_since = loop.time()
        self._arm_timeout()

    def _read_ready(self) -> None:
        try:
            data, source = self._recvfrom(_MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.error_received(exc)
            return
        self._received(data, source)
        poller = self._poller
        if poller is not None and poller.gap > self.packet_time and not self._closed:
            self._drain()

    def _drain(self) -> None:
        """The rest of a backlog, bounded: the loop was held up and packets piled up."""
        recvfrom = self._recvfrom
        for _ in range(_READ_BATCH - 1):
            try:
                data, source = recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            self._received(data, source)
            if self._closed:  # a handler closed us
                return

    def close(self) -> None:
        """Stop receiving and sending and release the port pair; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._cancel_timeout()
        if self._poller is not None:
            self._poller.remove_reader(self._fd, self._read_ready, closed=self.port.closed)
        self.port.close()
        if self._closed_future is not None and not self._closed_future.done():
            self._closed_future.set_result(None)
        on_closed = self.on_closed
        # The handlers are bound methods of the leg that holds this endpoint: dropping them
        # breaks the cycle, so a call's media objects go by reference counting at its end
        # rather than waiting for the cyclic garbage collector (bench/README.md, round five).
        self.on_packet = self.on_closed = self.on_timeout = self.on_foreign = None
        if on_closed is not None:
            on_closed(self)

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_closed(self) -> None:
        if self._closed_future is not None:
            await asyncio.shield(self._closed_future)

    # ---------------------------------------------------------------- addressing
    @property
    def local_address(self) -> tuple[str, int]:
        return self.port.host, self.port.port

    @property
    def latched(self) -> Address | None:
        """The source we accepted RTP from in this negotiation, if any."""
        return None if self._latched is None else udp.address(self._latched)

    @property
    def remote_address(self) -> Address | None:
        """Where ``send`` goes: the latched source, else the SDP address."""
        return None if self._send_to is None else udp.address(self._send_to)

    def set_remote(
        self, host: str, port: int, payload_types: Collection[int] | None = None
    ) -> None:
        """Start a (re)negotiation: new SDP address, accepted payload types, latch anew.

        ``payload_types=None`` accepts any payload type. ``host`` must be an IP literal
        (SDP parsing refuses names); anything else, or the unspecified address of an
        RFC 2543 hold, gives no address to send to (and no DNS lookup per packet).
        """
        ip = _normal_ip(host)
        usable = ip is not None and port != 0 and ip not in _UNSPECIFIED
        self._sdp_address = (ip, port) if usable else None
        self._negotiated = True
        self._payload_types = None if payload_types is None else frozenset(payload_types)
        self._latched = None
        # None: stream disabled (port 0) or held, or not an address of the socket's family
        sdp = self._sdp_address
        self._send_to = None if sdp is None else udp.peer(self._family, sdp)

    @property
    def protection(self) -> SrtpSession | None:
        """The SRTP session protecting this stream, or None for plain RTP."""
        return self._srtp

    def set_protection(self, session: SrtpSession | None) -> None:
        """SRTP from now on (a session), or plain RTP (None), as the last negotiation agreed."""
        self._srtp = session

    def set_payload_types(self, payload_types: Collection[int] | None) -> None:
        """Change the accepted payload types without a new latch (codec change only)."""
        self._payload_types = None if payload_types is None else frozenset(payload_types)

    # ------------------------------------------------------------------- receive
    def datagram_received(self, data: bytes, addr: Address) -> None:
        """``data`` arrived from ``addr`` (as ``socket.recvfrom`` gives a source)."""
        source = udp.peer(self._family, addr)
        if source is None:  # not an address a socket of this family receives from: a stray
            self.stats.foreign += 1
            if self.on_foreign is not None:
                self.on_foreign()
            return
        self._received(data, source)

    def _received(self, data: bytes, source: Peer) -> None:
        stats = self.stats
        # Source first: a stray costs no parsing, and can never latch or relatch.
        latch = source != self._latched
        if latch and not self._may_latch(source):
            stats.foreign += 1
            if self.on_foreign is not None:
                self.on_foreign()
            return
        srtp = self._srtp
        if len(data) > 1 and 192 <= data[1] <= 223:  # inlined is_rtcp(): hot path
            stats.rtcp += 1
            if srtp is not None:
                srtp.unprotect_rtcp(data)  # authenticated (and counted), otherwise unused
            return
        if srtp is not None:
            plain = srtp.unprotect(data)
            if plain is None:
                stats.srtp_dropped += 1
                return
            data = plain
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            stats.malformed += 1
            return
        if self._payload_types is not None and packet.payload_type not in self._payload_types:
            stats.unexpected_pt += 1
            return
        if latch:  # the signalled peer's first valid RTP in this negotiation
            self._latched = self._send_to = source
            stats.latches += 1
        stats.rx_packets += 1
        stats.rx_bytes += len(data)
        self.last_rx = now = self._loop.time() if self._loop else 0.0
        if self._timed_out:
            self._timed_out = False
            self._timeout_since = now
            self._arm_timeout()
        if self.on_packet is not None:
            self.on_packet(packet)

    def _may_latch(self, source: Peer) -> bool:
        """Nothing latched yet in this negotiation, and ``source`` is the signalled peer."""
        if self._latched is not None or not self._negotiated:
            return False  # latched to somebody else, or not negotiated (yet): a stray
        addr = udp.address(source)
        host = _normal_ip(str(addr[0]))
        return (host, addr[1]) == self._sdp_address or host in self.signalling_hosts

    def error_received(self, exc: Exception) -> None:
        """Socket errors (ICMP unreachable reported by the kernel, ...): counted only."""
        self.stats.send_errors += 1

    # ---------------------------------------------------------------------- send
    def send(self, packet: RtpPacket | bytes) -> bool:
        """Send to the latched/SDP address; False if not sent (nowhere to, or it would block)."""
        addr = self._send_to
        if addr is None or self._closed:
            self.stats.tx_dropped += 1
            return False
        data = packet if isinstance(packet, bytes) else packet.to_bytes()
        if self._srtp is not None:
            data = self._srtp.protect(data)
        try:
            self._sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.stats.tx_dropped += 1
            return False
        except OSError as exc:
            self.error_received(exc)
            return False
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(data)
        return True

    # ------------------------------------------------------------- media timeout
    @property
    def media_timeout(self) -> float | None:
        return self._media_timeout

    def set_media_timeout(self, seconds: float | None) -> None:
        """Change (None: disable, e.g. while the peer holds us inactive) and restart it."""
        self._media_timeout = seconds
        self._cancel_timeout()
        self._timed_out = False
        if self._loop is not None:
            self._timeout_since = self._loop.time()
            self._arm_timeout()

    def _arm_timeout(self) -> None:
        # One timer per timeout period, re-armed lazily, never one per packet.
        if self._media_timeout is None or self._closed or self._loop is None:
            return
        reference = max(self.last_rx or 0.0, self._timeout_since)
        self._timeout_handle = self._loop.call_at(
            reference + self._media_timeout, self._check_timeout
        )

    def _check_timeout(self) -> None:
        self._timeout_handle = None
        if self._media_timeout is None or self._closed or self._loop is None:
            return
        reference = max(self.last_rx or 0.0, self._timeout_since)
        if self._loop.time() - reference < self._media_timeout - 1e-3:
            self._arm_timeout()
            return
        self._timed_out = True
        self.stats.timeouts += 1
        if self.on_timeout is not None:
            self.on_timeout(self)

    def _cancel_timeout(self) -> None:
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
            self._timeout_handle = None


_UNSPECIFIED = frozenset({"0.0.0.0", "::"})  # as _normal_ip writes them


# Cached: every endpoint normalises its call's hosts (two legs, a few each) and ``ipaddress``
# costs ~3-5 us per text; a call's peers repeat across calls. Bounded, so texts from strays
# or forged SDP can only evict entries (costing a parse again), never grow the table.
@functools.lru_cache(maxsize=1024)
def _normal_ip(host: str) -> str | None:
    """``host`` as the text recvfrom reports for it, or None if it is not an IP literal."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
