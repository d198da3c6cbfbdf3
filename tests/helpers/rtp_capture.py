"""A raw RTP receiver for tests: the media socket of a caller, recording every packet with the
kernel's arrival time (SO_TIMESTAMPNS), so the gaps measured are the sender's, not those of a
test thread waiting for the GIL. Parses RTP itself, independently of pbx.media.

`CpuWait` tells a gap the service caused from one the machine caused: it samples how long
this process's main thread (the service's event loop, in tests) waited for a CPU while it was
runnable (Linux schedstat), so a test on a loaded machine can tell the two apart.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

_SO_TIMESTAMPNS = 35  # Linux; SCM_TIMESTAMPNS has the same value
_TIMESPEC = struct.Struct("qq")
_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True)
class Captured:
    at: float  # arrival, seconds (kernel timestamp, wall clock)
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


class RtpCapture:
    """Binds a UDP port on loopback and records RTP arriving there until closed."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.sock.settimeout(0.2)
        self.host, self.port = self.sock.getsockname()
        self.packets: list[Captured] = []
        self.sources: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtp-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        space = socket.CMSG_SPACE(_TIMESPEC.size)
        while not self._stop.is_set():
            try:
                data, ancillary, _, source = self.sock.recvmsg(2048, space)
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                    at = sec + nsec / 1e9
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            _, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
            self.sources.add(source)
            self.packets.append(Captured(at, b1 & 0x7F, b1 > 0x7F, seq, ts, ssrc, data[12:]))

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(data, to)

    def since(self, at: float) -> list[Captured]:
        return [p for p in list(self.packets) if p.at >= at]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def __enter__(self) -> RtpCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CpuWait:
    """Samples, every few ms in a thread, the time the main thread could not run although it
    was ready: its cumulative run-queue wait (/proc/self/schedstat), plus the steal time of the
    CPU it was last on (/proc/stat: the hypervisor ran another guest there). A virtual
    machine's guest counts stolen time as the thread's own running, so the run-queue wait alone
    misses it (a gap of 127 ms with no wait was seen on this kind of VM)."""

    def __init__(self, every: float = 0.005) -> None:
        self.samples: list[tuple[float, float]] = []  # (wall time, seconds not run so far)
        self._every = every
        self._tick = 1 / os.sysconf("SC_CLK_TCK")  # /proc/stat counts in clock ticks
        self._stolen = 0.0  # steal on the main thread's CPU, summed over the intervals
        self._last: tuple[int, list[int]] | None = None  # (its CPU, every CPU's steal ticks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-wait", daemon=True)
        self._thread.start()

    @staticmethod
    def _waited() -> float:
        with open("/proc/self/schedstat") as f:  # the thread group leader: the main thread
            return int(f.read().split()[1]) / 1e9

    @staticmethod
    def _cpu_and_steal() -> tuple[int, list[int]]:
        with open("/proc/self/stat") as f:  # field 39: the CPU it last ran on
            cpu = int(f.read().rsplit(")", 1)[1].split()[36])
        with open("/proc/stat") as f:
            steal = [int(line.split()[8]) for line in f if line[:3] == "cpu" and line[3] != " "]
        return cpu, steal

    def _not_run(self) -> float:
        cpu, steal = self._cpu_and_steal()
        if self._last is not None:
            last_cpu, last_steal = self._last  # the interval is charged to where it began
            if last_cpu < len(steal):
                self._stolen += (steal[last_cpu] - last_steal[last_cpu]) * self._tick
        self._last = (cpu, steal)
        return self._waited() + self._stolen

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.samples.append((time.time(), self._not_run()))

    def during(self, start: float, end: float) -> float:
        """Seconds the main thread was ready but not run (waiting for a CPU, or its CPU taken
        by the hypervisor) between the samples around start..end."""
        samples = list(self.samples)
        before = [w for t, w in samples if t <= start]
        after = [w for t, w in samples if t >= end]
        if not before or not after:
            return 0.0
        return after[0] - before[-1]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def __enter__(self) -> CpuWait:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Continuity:
    """What a stream looked like: the largest gap between arrivals, and where the sender's
    sequence numbers and timestamps broke (each listed as the packet index)."""

    packets: int
    seconds: float
    max_gap: float
    seq_breaks: list[int]
    ts_steps: dict[int, int]  # index -> timestamp step, for steps other than 160
    markers: list[int]
    ssrcs: set[int]
    clock_drift: float  # largest |timestamp time - arrival time| relative to the first packet

    @property
    def rate(self) -> float:
        return (self.packets - 1) / self.seconds if self.seconds > 0 else 0.0


def continuity(packets: list[Captured]) -> Continuity:
    if not packets:
        return Continuity(0, 0.0, float("inf"), [], {}, [], set(), 0.0)
    first = packets[0]
    max_gap = 0.0
    seq_breaks: list[int] = []
    ts_steps: dict[int, int] = {}
    drift = 0.0
    for i in range(1, len(packets)):
        prev, cur = packets[i - 1], packets[i]
        max_gap = max(max_gap, cur.at - prev.at)
        if (cur.seq - prev.seq) & 0xFFFF != 1:
            seq_breaks.append(i)
        step = (cur.timestamp - prev.timestamp) & 0xFFFFFFFF
        if step != 160:
            ts_steps[i] = step
        media_time = ((cur.timestamp - first.timestamp) & 0xFFFFFFFF) / 8000
        drift = max(drift, abs(media_time - (cur.at - first.at)))
    return Continuity(
        packets=len(packets),
        seconds=packets[-1].at - first.at,
        max_gap=max_gap,
        seq_breaks=seq_breaks,
        ts_steps=ts_steps,
        markers=[i for i, p in enumerate(packets) if p.marker],
        ssrcs={p.ssrc for p in packets},
        clock_drift=drift,
    )
