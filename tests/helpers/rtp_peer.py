"""Plain asyncio RTP sockets standing in for a handset or trunk, and the media they negotiate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

from pbx.media import g711
from pbx.media.dtmf import dtmf_packets
from pbx.media.g711 import Codec
from pbx.media.offer_answer import NegotiatedMedia
from pbx.media.rtp import RtpPacket, RtpSender
from pbx.media.sdp import Direction

HOST = "127.0.0.1"
TE_PT = 101


class Peer(asyncio.DatagramProtocol):
    """A bare RTP socket standing in for a handset or trunk."""

    def __init__(self) -> None:
        self.packets: list[RtpPacket] = []
        self.sources: list[tuple[str, int]] = []
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, host: str = HOST) -> Peer:
        loop = asyncio.get_running_loop()
        peer = cls()
        await loop.create_datagram_endpoint(lambda: peer, local_addr=(host, 0))
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append(RtpPacket.parse(data))
        self.sources.append(addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes | RtpPacket, to: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data if isinstance(data, bytes) else data.to_bytes(), to)

    def audio(self) -> list[RtpPacket]:
        return [p for p in self.packets if p.payload_type in (0, 8)]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def media_for(peer_port: int, codec: Codec = Codec.PCMU, **kw: object) -> NegotiatedMedia:
    params: dict[str, object] = {
        "remote_host": HOST,
        "remote_port": peer_port,
        "codec": codec,
        "telephone_event_pt": TE_PT,
        "ptime": 20,
        "direction": Direction.SENDRECV,
    }
    params.update(kw)
    return NegotiatedMedia(**params)  # type: ignore[arg-type]


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + 320] for i in range(0, len(pcm) - 319, 320)]


async def stream(
    peer: Peer,
    to: tuple[str, int],
    pcm: bytes,
    codec: Codec,
    sender: RtpSender,
    pace: float = 0.0,
) -> None:
    """Send ``pcm`` as 20 ms RTP frames, optionally paced."""
    for index, frame in enumerate(frames(pcm)):
        peer.send(sender.packet(g711.encode(codec, frame), codec, 160, index == 0), to)
        await asyncio.sleep(pace)


async def send_digit(peer: Peer, to: tuple[str, int], digit: str, sender: RtpSender) -> None:
    for packet in dtmf_packets(digit, sender, TE_PT, duration_ms=60):
        peer.send(packet, to)
        await asyncio.sleep(0.005)


def decoded(packets: list[RtpPacket]) -> bytes:
    return b"".join(g711.decode(Codec(p.payload_type), p.payload) for p in packets)
