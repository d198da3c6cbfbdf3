"""How many concurrent bridged calls does this machine relay?

The service side (this process, one asyncio loop, the real MediaLeg/Bridge code) bridges
N calls: caller legs in PCMA, volunteer legs in PCMU, so every packet is transcoded
(``--codecs same``: PCMA on both legs, plain relaying).
A separate load-generator process plays both handsets of every call over loopback: it
sends one 20 ms packet per stream per tick and receives what the bridge relays,
measuring loss and delay (receive time minus the tick at which the packet's source was
sent). N grows until loss or lateness appears, the service CPU saturates, or the time
budget (~60 s) runs out. Prints figures, asserts nothing.

    .venv/bin/python bench/bench_media_relay.py [--budget 60] [--seconds 5] [--filler]
                                                [--codecs transcode|same]

``--filler`` keeps every caller leg continuous with the line filler, as the service does
from the answer on: it watches each leg every 20 ms and sends only when the relay is quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import select
import socket
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx import event_loop  # noqa: E402
from pbx.media import g711  # noqa: E402
from pbx.media.bridge import Bridge  # noqa: E402
from pbx.media.filler import LineFiller  # noqa: E402
from pbx.media.g711 import Codec  # noqa: E402
from pbx.media.leg import MediaLeg  # noqa: E402
from pbx.media.offer_answer import NegotiatedMedia  # noqa: E402
from pbx.media.ports import PortPool  # noqa: E402
from pbx.media.sdp import Direction  # noqa: E402

HOST = "127.0.0.1"
PERIOD = 0.02
LATE = 0.040  # a packet more than two periods behind its source is useless to a jitter buffer
HEADER = struct.Struct("!BBHII")


@dataclass
class LevelResult:
    calls: int
    sent: int
    received: int
    delays: list[float]
    generator_cpu: float  # fraction of one core
    service_cpu: float = 0.0
    seconds: float = 0.0
    runqueue: float = 0.0  # fraction of the time the service was runnable but not running
    loop_lag_p99: float = 0.0  # ms
    shares: list[float] = field(default_factory=list)  # per stream: share of packets relayed

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else 0.0

    @property
    def achieved(self) -> int:
        """Calls relayed both ways (at least 95% of each direction's packets arrived)."""
        shares = self.shares
        return sum(min(shares[i], shares[i + 1]) >= 0.95 for i in range(0, len(shares), 2))

    @property
    def late(self) -> float:
        return sum(d > LATE for d in self.delays) / len(self.delays) if self.delays else 0.0

    def pct(self, q: float) -> float:
        if not self.delays:
            return float("nan")
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# ----------------------------------------------------------------- load generator
# One bridged call as the load generator sees it: where the caller's handset sends (the
# relay's port for leg a) and in which codec, and the same for the volunteer's handset.
# Both compare_media.py (against rtpengine) and this bench drive their relay with it.
CallMedia = tuple[tuple[str, int], tuple[str, int], Codec, Codec]


def generator(conn: Connection, seconds: float, check_payload: bool = False) -> None:
    """Both handsets of every call: two sockets (all callers, all volunteers).

    A relayed packet is told apart by the relay port it came from (each call's legs have
    their own ports, and a relay sends from the port it receives on: symmetric RTP), so
    any relay can be measured whatever SSRC it sends with. ``check_payload`` skips packets
    whose payload is not the other side's silence (the line filler's comfort noise).
    """
    socks = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    conn.send([s.getsockname()[1] for s in socks])
    calls: list[CallMedia] = conn.recv()

    # Stream 2i: caller i -> relay port a; stream 2i+1: volunteer i -> relay port b.
    # The relay re-sends stream 2i from port b and 2i+1 from port a.
    payloads = {codec: g711.encode(codec, bytes(320)) for codec in Codec}
    streams = []
    by_source: dict[tuple[str, int], tuple[int, bytes]] = {}
    for i, (addr_a, addr_b, codec_a, codec_b) in enumerate(calls):
        streams.append((socks[0], addr_a, codec_a, 0x1000 + 2 * i))
        streams.append((socks[1], addr_b, codec_b, 0x1000 + 2 * i + 1))
        # what the relay sends: the other side's silence, transcoded if the codecs differ
        by_source[addr_b] = (2 * i, g711.transcode(payloads[codec_a], codec_a, codec_b))
        by_source[addr_a] = (2 * i + 1, g711.transcode(payloads[codec_b], codec_b, codec_a))
    base_ts: dict[int, int] = {}
    tick_times: list[float] = []
    delays: list[float] = []
    received = 0
    counts = [0] * len(streams)  # packets relayed per stream

    def drain(until: float) -> None:
        nonlocal received
        while True:
            timeout = until - time.monotonic()
            if timeout <= 0:
                return
            ready, _, _ = select.select(socks, [], [], timeout)
            for sock in ready:
                while True:
                    try:
                        data, source = sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    now = time.monotonic()
                    known = by_source.get(source)
                    if known is None or len(data) < 12 or 192 <= data[1] <= 223:
                        continue  # not ours, or RTCP
                    stream, expected = known
                    if check_payload and data[12:] != expected:
                        continue  # the line filler's comfort noise (--filler)
                    ts = HEADER.unpack_from(data)[3]
                    base = base_ts.setdefault(stream, ts)
                    index = ((ts - base) & 0xFFFFFFFF) // 160
                    received += 1
                    counts[stream] += 1
                    if index < len(tick_times):
                        delays.append(now - tick_times[index])

    cpu0 = time.process_time()
    start = time.monotonic()
    ticks = int(seconds / PERIOD)
    for k in range(ticks):
        deadline = start + k * PERIOD
        drain(deadline)
        tick_times.append(time.monotonic())
        for sock, addr, codec, ssrc in streams:
            header = HEADER.pack(0x80, int(codec), k & 0xFFFF, (k * 160) & 0xFFFFFFFF, ssrc)
            with contextlib.suppress(BlockingIOError):  # a dropped send shows up as loss
                sock.sendto(header + payloads[codec], addr)
    drain(time.monotonic() + 0.3)
    cpu = (time.process_time() - cpu0) / (time.monotonic() - start)
    conn.send((ticks * len(streams), received, delays, cpu, [c / ticks for c in counts]))
    for sock in socks:
        sock.close()


# ------------------------------------------------------------------------ service
CODECS = {
    "transcode": (Codec.PCMA, Codec.PCMU),  # every packet transcoded
    "same": (Codec.PCMA, Codec.PCMA),  # plain relaying
}


async def run_level(
    pool: PortPool,
    calls: int,
    seconds: float,
    filler: LineFiller | None = None,
    codecs: tuple[Codec, Codec] = CODECS["transcode"],
) -> LevelResult:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=generator, args=(child, seconds, filler is not None), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    port_a, port_b = await loop.run_in_executor(None, parent.recv)
    legs: list[MediaLeg] = []
    bridges = []
    description: list[CallMedia] = []
    for _ in range(calls):
        a = await MediaLeg.open(
            pool,
            NegotiatedMedia(HOST, port_a, codecs[0], None, 20, Direction.SENDRECV),
            media_timeout=None,
        )
        b = await MediaLeg.open(
            pool,
            NegotiatedMedia(HOST, port_b, codecs[1], None, 20, Direction.SENDRECV),
            media_timeout=None,
        )
        legs += [a, b]
        bridges.append(Bridge(a, b).start())
        if filler is not None:
            filler.keep(a)
        description.append((a.local_address, b.local_address, codecs[0], codecs[1]))
    parent.send(description)
    lags: list[float] = []
    probe = asyncio.create_task(loop_lag_probe(lags))
    cpu0, t0, wait0 = time.process_time(), time.monotonic(), runqueue_wait()
    sent, received, delays, gen_cpu, shares = await loop.run_in_executor(None, parent.recv)
    elapsed = time.monotonic() - t0
    waited = (runqueue_wait() - wait0) / elapsed
    probe.cancel()
    service_cpu = (time.process_time() - cpu0) / elapsed
    proc.join(5)
    for leg in legs:
        leg.close()
    await asyncio.sleep(0.05)
    result = LevelResult(
        calls, sent, received, delays, gen_cpu, service_cpu, elapsed, waited, shares=shares
    )
    result.loop_lag_p99 = sorted(lags)[int(0.99 * len(lags))] * 1000 if lags else float("nan")
    return result


def runqueue_wait() -> float:
    """Seconds this process's threads spent waiting for a CPU (Linux schedstat)."""
    total = 0
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


async def loop_lag_probe(lags: list[float]) -> None:
    """How late the service's own event loop runs a 10 ms timer: if this is large while
    the service CPU is low, the OS did not schedule us (other load), not our code."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + 0.01
        await asyncio.sleep(0.01)
        lags.append(loop.time() - due)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="total seconds, roughly")
    parser.add_argument("--seconds", type=float, default=5.0, help="streaming time per level")
    parser.add_argument("--start", type=int, default=50, help="first number of calls")
    parser.add_argument("--filler", action="store_true", help="callers kept by the filler")
    parser.add_argument(
        "--codecs",
        choices=sorted(CODECS),
        default="transcode",
        help="transcode: PCMA callers, PCMU volunteers (every packet transcoded); "
        "same: PCMA on both legs (plain relaying, as rtpengine without transcoding)",
    )
    args = parser.parse_args()
    filler = LineFiller() if args.filler else None

    pool = PortPool(HOST, 30000, 39999)
    print(
        f"media relay bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
        f"(other work on the machine skews delays), {args.seconds:.0f} s per level, "
        + (
            "PCMA<->PCMU transcoding on every packet"
            if args.codecs == "transcode"
            else "PCMA on both legs (plain relay)"
        )
        + (", caller legs kept by the line filler" if args.filler else "")
    )
    print(
        "runq% = share of wall time the service was runnable but waiting for a CPU "
        "(machine contention, not our code)"
    )
    print(
        f"{'calls':>6} {'pkt/s':>7} {'loss%':>6} {'late%':>6} {'p50ms':>6} {'p99ms':>7} "
        f"{'svcCPU%':>7} {'us/pkt':>7} {'CPU%/call':>9} {'genCPU%':>7} {'lag99ms':>7} "
        f"{'runq%':>5}"
    )
    begin = time.monotonic()
    calls = args.start
    best: LevelResult | None = None
    last: LevelResult | None = None
    while time.monotonic() - begin + args.seconds + 2 < args.budget:
        r = await run_level(pool, calls, args.seconds, filler, CODECS[args.codecs])
        last = r
        pps = r.received / r.seconds
        us_per_pkt = r.service_cpu * r.seconds / max(1, r.received) * 1e6
        print(
            f"{r.calls:>6} {pps:>7.0f} {100 * r.loss:>6.2f} {100 * r.late:>6.2f} "
            f"{r.pct(0.5):>6.1f} {r.pct(0.99):>7.1f} {100 * r.service_cpu:>7.1f} "
            f"{us_per_pkt:>7.1f} {100 * r.service_cpu / r.calls:>9.3f} "
            f"{100 * r.generator_cpu:>7.1f} {r.loop_lag_p99:>7.1f} "
            f"{100 * r.runqueue:>5.0f}",
            flush=True,
        )
        healthy = r.loss < 0.005 and r.late < 0.05
        if healthy:
            best = r
        if not healthy or r.service_cpu > 0.95:
            break
        if r.generator_cpu > 0.9:
            print("load generator saturated its core: the service limit is higher than shown")
            break
        # Aim the next level at ~85% of one core, but at most double.
        per_call = r.service_cpu / r.calls
        calls = max(calls + 25, min(2 * calls, int(0.85 / per_call) if per_call else 2 * calls))
    if best is not None:
        per_call = best.service_cpu / best.calls
        print(
            f"\nrelayed cleanly: {best.calls} calls ({2 * best.calls} streams), "
            f"p99 delay {best.pct(0.99):.1f} ms"
        )
        print(
            f"service CPU per call: {100 * per_call:.3f}% of a core "
            f"({100 * per_call / 2:.3f}% per stream direction)"
        )
        print(
            f"extrapolated: ~{int(1 / per_call)} calls saturate one core (one media process "
            "per core; the other core also carries SIP and the load generator here)"
        )
    if last is not None and last is not best:
        print(
            f"degraded at {last.calls} calls: loss {100 * last.loss:.2f}%, "
            f"late {100 * last.late:.2f}%, service CPU {100 * last.service_cpu:.0f}%"
        )
    if best is not None and best.delays:
        print(f"mean delay at the best level: {statistics.fmean(best.delays) * 1000:.2f} ms")


if __name__ == "__main__":
    event_loop.run(main())
