"""A packet capture on the loopback interface (AF_PACKET, needs root or CAP_NET_RAW): every
UDP datagram between any two loopback addresses, as an eavesdropper on the path would see it.
Independent of pbx.media: it parses IPv4/UDP/RTP itself.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass

_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4  # each loopback packet is seen twice: keep the incoming copy only
_SO_RCVBUFFORCE = 33  # Linux; root may exceed rmem_max


@dataclass(frozen=True)
class Datagram:
    src: tuple[str, int]
    dst: tuple[str, int]
    data: bytes

    @property
    def rtp_payload(self) -> bytes | None:
        """The payload if this looks like RTP (version 2, not RTCP), else None."""
        d = self.data
        if len(d) < 12 or d[0] >> 6 != 2 or 192 <= d[1] <= 223:
            return None
        return d[12 + 4 * (d[0] & 0x0F) :]

    @property
    def payload_type(self) -> int:
        return self.data[1] & 0x7F


def send_spoofed(data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
    """Send a UDP datagram on loopback with a forged source address and port (raw socket, root),
    as a man in the middle would: the receiver cannot tell it from its peer's by address."""
    for host in (src[0], dst[0]):
        if not host.startswith("127."):
            raise ValueError("spoofed packets stay on loopback")
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(data), 0) + data  # no UDP checksum
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
        socket.inet_aton(src[0]), socket.inet_aton(dst[0]),
    )  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        sock.sendto(header + udp, (dst[0], 0))  # the kernel fills in the IP checksum


class LoopbackSniffer:
    """Captures UDP on ``lo`` from start until closed."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        self.sock.bind(("lo", 0))
        # every test on this machine shares loopback (floods included): a deep buffer so that
        # this thread, competing with the service for the GIL, loses nothing in a burst
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 64 * 1024 * 1024)
        self.sock.settimeout(0.2)
        self.datagrams: list[Datagram] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lo-sniffer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, info = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                self.errors += 1  # e.g. ENOBUFS under a flood: keep capturing
                continue
            if info[2] == _PACKET_OUTGOING or len(frame) < 14 + 20 + 8:
                continue
            ip = frame[14:]
            if ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
                continue
            ihl = (ip[0] & 0x0F) * 4
            sport, dport, length = struct.unpack_from("!HHH", ip, ihl)
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            payload = ip[ihl + 8 : ihl + length]
            self.datagrams.append(Datagram((src, sport), (dst, dport), payload))

    def mark(self) -> int:
        """A point in the capture: pass it to ``between(after=...)``."""
        return len(self.datagrams)

    def between(self, a: str, b: str, after: int = 0) -> list[Datagram]:
        """Datagrams sent from host ``a`` to host ``b`` (captured since the mark ``after``)."""
        return [d for d in self.datagrams[after:] if d.src[0] == a and d.dst[0] == b]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def __enter__(self) -> LoopbackSniffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
