"""Pacing quality of N simultaneous prompts driven by the one shared 20 ms ticker.

The service side (this process) plays the same prompt on N legs at once; a separate
receiver process timestamps every packet and reports the inter-packet interval
deviation from 20 ms (p50/p99/max), the RFC 3550 interarrival jitter, how many ticks
the clock had to skip, and the service CPU per stream. Prints figures, asserts nothing.

Arrival times are the kernel's (SO_TIMESTAMPNS: when the packet reached the receiver's
socket, on loopback the moment it was sent), so the figures are the service's pacing, not
the receiver's own scheduling; ``udev99`` is the p99 with the receiver's user-space clock
read after each recv, as this bench measured before.

    .venv/bin/python bench/bench_playback_jitter.py [--streams 100 300 500] [--seconds 4]
        [--mode prompt prompt+filler filler] [--realtime PRIORITY]

``--realtime`` (default: the service's ``realtime_priority``, 10) runs this process's event loop
thread at SCHED_RR as ``helpline serve`` does (``pbx/realtime.py``); ``--realtime 0`` at normal
priority. The receiver process always runs at normal priority.

Modes: ``prompt`` plays the prompt on every leg; ``prompt+filler`` also keeps every leg
continuous with the line filler (what a caller's leg costs now: the filler looks at each
leg every round but sends nothing while the prompt plays); ``filler`` sends only the
filler's comfort noise (a menu waiting for a key, a queue between messages).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx import event_loop  # noqa: E402
from pbx.config import Settings  # noqa: E402
from pbx.media import tones  # noqa: E402
from pbx.media.filler import LineFiller  # noqa: E402
from pbx.media.g711 import Codec  # noqa: E402
from pbx.media.leg import MediaLeg  # noqa: E402
from pbx.media.offer_answer import NegotiatedMedia  # noqa: E402
from pbx.media.player import Player  # noqa: E402
from pbx.media.ports import PortPool  # noqa: E402
from pbx.media.sdp import Direction  # noqa: E402
from pbx.media.ticker import ticker_for  # noqa: E402
from pbx.realtime import request_realtime  # noqa: E402

HOST = "127.0.0.1"
HEADER = struct.Struct("!BBHII")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python names it from 3.12 on
TIMESPEC = struct.Struct("@qq")


def receiver(conn: Connection) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((HOST, 0))
    conn.send(sock.getsockname()[1])
    sock.settimeout(5.0)  # until the first packet
    arrivals: dict[int, list[tuple[float, int]]] = {}
    read_at: dict[int, list[float]] = {}  # the receiver's own clock after each recv
    try:
        while True:
            data, ancillary, _, _ = sock.recvmsg(2048, 64)
            now = time.monotonic()
            _, _, _, ts, ssrc = HEADER.unpack_from(data)
            stamp = now
            for level, kind, value in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS):
                    sec, nsec = TIMESPEC.unpack_from(value)
                    stamp = sec + nsec * 1e-9
            arrivals.setdefault(ssrc, []).append((stamp, ts))
            read_at.setdefault(ssrc, []).append(now)
            sock.settimeout(0.5)  # the end: nothing for half a second
    except TimeoutError:
        pass
    user_deviations = [
        abs((t1 - t0) - 0.02)
        for series in read_at.values()
        for t0, t1 in zip(series, series[1:], strict=False)
    ]
    deviations: list[float] = []
    jitters: list[float] = []
    packets = 0
    for series in arrivals.values():
        packets += len(series)
        jitter = 0.0
        for (t0, ts0), (t1, ts1) in zip(series, series[1:], strict=False):
            deviations.append(abs((t1 - t0) - 0.02))
            # RFC 3550 A.8: J += (|D| - J) / 16, D = arrival spacing - timestamp spacing.
            d = (t1 - t0) - ((ts1 - ts0) & 0xFFFFFFFF) / 8000
            jitter += (abs(d) - jitter) / 16
        jitters.append(jitter)
    conn.send((len(arrivals), packets, deviations, jitters, pct(user_deviations, 0.99)))
    sock.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(pool: PortPool, streams: int, seconds: float, mode: str) -> None:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=receiver, args=(child,), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    port = await loop.run_in_executor(None, parent.recv)
    media = NegotiatedMedia(HOST, port, Codec.PCMA, None, 20, Direction.SENDRECV)
    legs = [await MediaLeg.open(pool, media, media_timeout=None) for _ in range(streams)]
    prompt = tones.sine(440, int(seconds * 1000))
    ticker = ticker_for()
    skipped0 = ticker.skipped
    filler = LineFiller(ticker)
    cpu0, t0 = time.process_time(), time.monotonic()
    if mode != "prompt":
        for leg in legs:
            filler.keep(leg)
    if mode == "filler":
        await asyncio.sleep(seconds)
    else:
        players = [Player(leg, [prompt]).start() for leg in legs]
        await asyncio.gather(*(p.done for p in players))
    for leg in legs:
        filler.release(leg)
    cpu, elapsed = time.process_time() - cpu0, time.monotonic() - t0
    skipped = ticker.skipped - skipped0
    n_streams, packets, deviations, jitters, udev99 = await loop.run_in_executor(None, parent.recv)
    proc.join(5)
    for leg in legs:
        leg.close()
    expected = streams * -(-len(prompt) // 320)
    print(
        f"{mode:>13} {streams:>7} {packets:>8}/{expected:<8} {pct(deviations, 0.5):>6.2f} "
        f"{pct(deviations, 0.99):>6.2f} {pct(deviations, 1.0):>7.2f} {udev99:>6.2f} "
        f"{pct(jitters, 0.5):>7.2f} {pct(jitters, 1.0):>7.2f} {skipped:>5} "
        f"{100 * cpu / elapsed:>6.1f} {100 * cpu / elapsed / streams:>9.4f}",
        flush=True,
    )
    if n_streams != streams:
        print(f"        (only {n_streams} of {streams} streams arrived)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 300, 500])
    parser.add_argument("--seconds", type=float, default=4.0, help="prompt length")
    parser.add_argument(
        "--mode", nargs="+", default=["prompt"], choices=["prompt", "prompt+filler", "filler"]
    )
    parser.add_argument(
        "--realtime", type=int, default=Settings().realtime_priority, metavar="PRIORITY",
        help="SCHED_RR priority of this (the service's) side, as `helpline serve` sets it "
        "(default: the setting's default; 0: normal priority)",
    )  # fmt: skip
    args = parser.parse_args()
    realtime = request_realtime(args.realtime)  # before the receiver process starts
    pool = PortPool(HOST, 30000, 39999)
    print(
        f"playback jitter bench: {event_loop.loop_name()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}, {args.seconds:.0f} s prompt per stream (PCMA), "
        + (f"SCHED_RR priority {realtime.priority}" if realtime.granted
           else f"normal priority ({realtime.reason})")
    )  # fmt: skip
    print("interval deviation = |inter-arrival - 20 ms|; jitter = RFC 3550 estimate per stream")
    print(
        f"{'mode':>13} {'streams':>7} {'packets/expected':>17} {'dev50':>6} {'dev99':>6} "
        f"{'devmax':>7} {'udev99':>6} {'jit50':>7} {'jitmax':>7} {'skip':>5} {'CPU%':>6} "
        f"{'CPU%/strm':>9}   (ms)"
    )
    for streams in args.streams:
        for mode in args.mode:
            await run(pool, streams, args.seconds, mode)


if __name__ == "__main__":
    event_loop.run(main())
