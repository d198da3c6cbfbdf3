"""CPU per media stream with SRTP next to plain RTP, through the real media path.

Two MediaLegs on loopback (this process, one asyncio loop) send G.711 packets to each other as
fast as the loop takes them; each packet is built, protected, sent, received, authenticated and
decrypted, parsed and handed to a listener, as in a call. Per mode (plain RTP and each SRTP
suite): microseconds of process CPU per packet (its send plus its receive), and the share of one
core a stream costs at 50 packets/s each way (one call leg of the service). Then the cost of the
cipher alone (protect + unprotect, no sockets). Prints figures, asserts nothing.

    .venv/bin/python bench/bench_srtp.py [--packets 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx import event_loop  # noqa: E402
from pbx.media.g711 import Codec  # noqa: E402
from pbx.media.leg import MediaLeg  # noqa: E402
from pbx.media.offer_answer import NegotiatedMedia  # noqa: E402
from pbx.media.ports import PortPool  # noqa: E402
from pbx.media.rtp import RtpSender  # noqa: E402
from pbx.media.sdp import Direction  # noqa: E402
from pbx.media.srtp import SrtpKeys, SrtpSession, Suite  # noqa: E402

PAYLOAD = b"\xd5" * 160
MODES: list[Suite | None] = [None, *Suite]


def negotiated(port: int, keys: SrtpKeys | None) -> NegotiatedMedia:
    return NegotiatedMedia("127.0.0.1", port, Codec.PCMA, 101, 20, Direction.SENDRECV, srtp=keys)


async def through_legs(suite: Suite | None, packets: int) -> float:
    """Process CPU seconds per packet, sent by one leg and received by the other."""
    pool = PortPool("127.0.0.1", 43000, 43998)
    a, b = await MediaLeg.open(pool), await MediaLeg.open(pool)
    ka = kb = None
    if suite is not None:
        x, y = os.urandom(suite.key_length), os.urandom(suite.key_length)
        ka, kb = SrtpKeys(suite, x, y), SrtpKeys(suite, y, x)
    a.update(negotiated(b.local_address[1], ka))
    b.update(negotiated(a.local_address[1], kb))
    got = 0

    def heard(payload: bytes, codec: Codec) -> None:
        nonlocal got
        got += 1

    b.add_audio_listener(heard)
    start = time.process_time()
    sent = 0
    while sent < packets:
        for _ in range(50):  # a burst the socket buffer takes, then let the loop read it
            a.send_audio(PAYLOAD, encoded=True)
        sent += 50
        await asyncio.sleep(0)
        while got < sent - 100:
            await asyncio.sleep(0)
    deadline = time.monotonic() + 2
    while got < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    used = time.process_time() - start
    lost = sent - got
    a.close()
    b.close()
    if lost > sent // 100:
        print(f"  ({lost} of {sent} packets lost: figure unreliable)")
    return used / max(got, 1)


def cipher_only(suite: Suite, packets: int) -> float:
    x, y = os.urandom(suite.key_length), os.urandom(suite.key_length)
    tx, rx = SrtpSession(SrtpKeys(suite, x, y)), SrtpSession(SrtpKeys(suite, y, x))
    sender = RtpSender()
    raw = [sender.packet_bytes(PAYLOAD, Codec.PCMA, 160, False) for _ in range(packets)]
    start = time.process_time()
    for p in raw:
        rx.unprotect(tx.protect(p))
    return (time.process_time() - start) / packets


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=20000)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} (2 shared cores: figures are noisy)")
    print(f"{'mode':28} {'us/packet':>10} {'% core per stream':>18} {'x plain':>8}")
    plain = 0.0
    for suite in MODES:
        per_packet = await through_legs(suite, args.packets)
        plain = plain or per_packet
        name = "plain RTP" if suite is None else f"SRTP {suite.name}"
        share = per_packet * 50 * 100  # a leg: 50 packets/s in and 50 out = 50 of these/s
        print(f"{name:28} {per_packet * 1e6:10.1f} {share:17.3f}% {per_packet / plain:8.2f}")
    print("\ncipher alone (protect + unprotect of one 172-byte packet, no sockets):")
    for suite in Suite:
        print(f"  {suite.name:26} {cipher_only(suite, args.packets) * 1e6:8.2f} us")


if __name__ == "__main__":
    event_loop.run(main())
