"""CPU per relayed packet of the media relay, measured without pacing (back-to-back runs).

``bench_media_relay.py`` measures the relay under a real 20 ms paced load, but on a shared
machine its CPU per packet moves with the scheduling (how many ports are ready per wake-up).
This bench isolates the relay's own cost: N bridged calls (the real MediaLeg/Bridge code on
one asyncio loop); in each round one packet goes into ``--batch`` ports, then the loop runs
until the bridge has relayed them all. Only that part is timed (process CPU time), the
sending and the draining of what comes back are not. ``--batch`` all ports is the loaded
case (one wake-up finds every port ready), a small batch the lightly loaded one. Prints
us of CPU per relayed packet (user and system), and a median over repeats.

    .venv/bin/python bench/bench_relay_cpu.py [--calls 200] [--rounds 200] [--repeat 5]
                                              [--codecs same transcode] [--batch 400 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import statistics
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx import event_loop  # noqa: E402
from pbx.media import g711  # noqa: E402
from pbx.media.bridge import Bridge  # noqa: E402
from pbx.media.g711 import Codec  # noqa: E402
from pbx.media.leg import MediaLeg  # noqa: E402
from pbx.media.offer_answer import NegotiatedMedia  # noqa: E402
from pbx.media.ports import PortPool  # noqa: E402
from pbx.media.sdp import Direction  # noqa: E402

HOST = "127.0.0.1"
HEADER = struct.Struct("!BBHII")
CODECS = {"transcode": (Codec.PCMA, Codec.PCMU), "same": (Codec.PCMA, Codec.PCMA)}


def _drain(sock: socket.socket) -> int:
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(2048)
            count += 1
    return count


async def measure(
    pool: PortPool, calls: int, rounds: int, codecs: tuple[Codec, Codec], batch: int
) -> tuple[float, float]:
    """(user, system) us of CPU per relayed packet."""
    handsets = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        handsets.append(sock)
    legs: list[MediaLeg] = []
    streams: list[tuple[socket.socket, tuple[str, int], Codec, MediaLeg]] = []
    for _ in range(calls):
        pair = []
        for sock, codec in zip(handsets, codecs, strict=True):
            leg = await MediaLeg.open(
                pool,
                NegotiatedMedia(HOST, sock.getsockname()[1], codec, None, 20, Direction.SENDRECV),
                media_timeout=None,
            )
            pair.append(leg)
        Bridge(pair[0], pair[1]).start()
        legs += pair
        # a packet into leg a is relayed out of leg b, and the other way round
        streams.append((handsets[0], pair[0].local_address, codecs[0], pair[1]))
        streams.append((handsets[1], pair[1].local_address, codecs[1], pair[0]))
    payloads = {codec: g711.encode(codec, bytes(320)) for codec in Codec}
    user = system = 0.0
    relayed = 0
    for k in range(rounds):
        for start in range(0, len(streams), batch):
            chunk = streams[start : start + batch]
            outputs = [dst.endpoint.stats for _, _, _, dst in chunk]
            target = sum(s.tx_packets for s in outputs) + len(chunk)
            for i, (sock, addr, codec, _) in enumerate(chunk):
                header = HEADER.pack(0x80, codec, k & 0xFFFF, k * 160, 0x1000 + start + i)
                sock.sendto(header + payloads[codec], addr)
            t0 = resource.getrusage(resource.RUSAGE_SELF)
            for _ in range(100):  # a lost datagram must not hang the bench
                await asyncio.sleep(0)
                if sum(s.tx_packets for s in outputs) >= target:
                    break
            t1 = resource.getrusage(resource.RUSAGE_SELF)
            user += t1.ru_utime - t0.ru_utime
            system += t1.ru_stime - t0.ru_stime
            relayed += sum(_drain(sock) for sock in handsets)
    for leg in legs:
        leg.close()
    for sock in handsets:
        sock.close()
    await asyncio.sleep(0.05)
    relayed = max(relayed, 1)  # (no rounds: set-up only, as bench_instructions runs it)
    return user / relayed * 1e6, system / relayed * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=200, help="packets per port")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--codecs", nargs="+", choices=sorted(CODECS), default=["same"])
    parser.add_argument("--batch", type=int, nargs="+", default=[400, 20])
    args = parser.parse_args()
    pool = PortPool(HOST, 30000, 39999)
    print(
        f"relay CPU per packet: {args.calls} bridged calls, {args.rounds} packets per port, "
        f"median of {args.repeat}; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'codecs':>9} {'batch':>5} {'us/pkt':>7} {'user':>6} {'sys':>6}   (each repeat)")
    for mode in args.codecs:
        for batch in args.batch:
            runs = [
                await measure(pool, args.calls, args.rounds, CODECS[mode], batch)
                for _ in range(args.repeat)
            ]
            total = statistics.median(u + s for u, s in runs)
            user = statistics.median(u for u, _ in runs)
            system = statistics.median(s for _, s in runs)
            each = " ".join(f"{u + s:.1f}" for u, s in runs)
            print(f"{mode:>9} {batch:>5} {total:>7.2f} {user:>6.2f} {system:>6.2f}   ({each})")


if __name__ == "__main__":
    event_loop.run(main())  # the service's loop; HELPLINE_EVENT_LOOP=asyncio for the other
