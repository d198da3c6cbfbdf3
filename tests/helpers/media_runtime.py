"""What the media runtime tests share: a port pool, RTP peers closed after the test, a media leg
facing a peer, and the tone a frame carries. A test file makes the fixtures its own with
`pool = pytest.fixture(port_pool)` and `peers = pytest.fixture(rtp_peers)`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pbx.media import tones
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg
from pbx.media.ports import PortPool
from tests.helpers.rtp_peer import HOST, Peer, media_for

HIJACKER = "127.0.0.2"


def tone_of(payload_pcm: bytes, candidates: tuple[float, ...] = (400.0, 1000.0)) -> float | None:
    """The candidate that dominates a frame, or None for (near) silence."""
    if tones.rms(payload_pcm) < 500:
        return None
    return tones.dominant_frequency(payload_pcm, candidates)


def port_pool() -> PortPool:
    """The `pool` fixture: RTP ports of the tests' own range."""
    return PortPool(HOST, 41000, 41999)


async def rtp_peers() -> AsyncIterator[list[Peer]]:
    """The `peers` fixture: RTP sockets a test opens, closed after it."""
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


async def leg_and_peer(
    pool: PortPool, peers: list[Peer], codec: Codec = Codec.PCMU, **endpoint: object
) -> tuple[MediaLeg, Peer]:
    peer = await Peer.open()
    peers.append(peer)
    leg = await MediaLeg.open(pool, media_for(peer.port, codec), **endpoint)  # type: ignore[arg-type]
    return leg, peer
