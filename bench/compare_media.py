"""Relayed media side by side: this service's relay against rtpengine in userspace mode.

A section of ``bench/compare.py`` (the shape is in ``compare_table.py``). The same load runs
against both relays, one after the other: N bridged calls with RTP both ways at 50 packets/s
per direction, played by the load-generator process of ``bench_media_relay.py`` (two
sockets, all callers and all volunteers, one 20 ms packet per stream per tick; loss, late
packets and delay measured on what comes back). Two modes: ``plain`` (PCMA on both legs)
and ``transcoded`` (PCMA callers, PCMU volunteers: every packet transcoded).

- This service: the real MediaLeg/Bridge code on one asyncio loop in this process
  (``bench_media_relay.run_level``).
- rtpengine (Debian ``rtpengine-daemon``): started here on loopback with no kernel
  forwarding (``--table=-1``), driven over its ng control protocol (bencoded dictionaries
  over UDP): one ``offer``/``answer`` per call (for ``transcoded`` the offer masks PCMA and
  adds PCMU, so the volunteer side speaks PCMU and rtpengine transcodes), ``delete`` after.

CPU per call is the relay process's CPU time over the level (all its threads, from
/proc/<pid>/task/*/schedstat for rtpengine, getrusage for this process) divided by the
streaming time and the number of calls: % of one core per call. Run alone:

    .venv/bin/python bench/compare_media.py [--quick] [--levels 100 200 300 400] [--seconds 6]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent
for _path in (str(_BENCH.parent), str(_BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench_media_relay import (  # noqa: E402
    CODECS,
    HOST,
    CallMedia,
    LevelResult,
    generator,
    run_level,
)
from compare_table import Table  # noqa: E402

from pbx import event_loop  # noqa: E402
from pbx.media.g711 import Codec  # noqa: E402
from pbx.media.ports import PortPool  # noqa: E402

RTPENGINE = "/usr/bin/rtpengine"
LEVELS = (100, 200, 300, 400)
QUICK_LEVELS = (100,)
MODES = {"plain": "same", "transcoded": "transcode"}
RTPENGINE_PORTS = (40000, 59999)  # this service's relay uses 30000-39999 here
SERVICE_PORTS = (30000, 39999)
CLEAN_LOSS = 0.005
CLEAN_LATE = 0.05
PLAIN_TARGET = 1.25  # this service's CPU per call at most 1.25x rtpengine's


def rtpengine_path() -> str | None:
    return shutil.which("rtpengine") or (RTPENGINE if os.access(RTPENGINE, os.X_OK) else None)


def missing() -> list[str]:
    if rtpengine_path() is None:
        return ["rtpengine (media relay peer): apt-get install rtpengine-daemon"]
    return []


# ------------------------------------------------------------------ ng protocol
def bencode(value: Any) -> bytes:
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    value, end = _bdecode(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes after bencoded value")
    return value


def _bdecode(data: bytes, i: int) -> tuple[Any, int]:
    kind = data[i : i + 1]
    if kind == b"d":
        i += 1
        result: dict[str, Any] = {}
        while data[i : i + 1] != b"e":
            key, i = _bdecode(data, i)
            result[key.decode()], i = _bdecode(data, i)
        return result, i + 1
    if kind == b"l":
        i += 1
        items = []
        while data[i : i + 1] != b"e":
            item, i = _bdecode(data, i)
            items.append(item)
        return items, i + 1
    if kind == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1 : end]), end + 1
    colon = data.index(b":", i)
    start = colon + 1
    length = int(data[i:colon])
    return data[start : start + length], start + length


class NgClient:
    """ng control requests over UDP: ``<cookie> <bencoded dict>``, answered with the cookie."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))

    def __call__(self, command: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
        cookie = secrets.token_hex(6).encode()
        request = cookie + b" " + bencode(command)
        for _ in range(3):  # UDP: resend on timeout, the cookie makes the reply unambiguous
            self.sock.sendto(request, self.address)
            self.sock.settimeout(timeout)
            with contextlib.suppress(TimeoutError):
                while True:
                    reply = self.sock.recv(65535)
                    if reply.startswith(cookie + b" "):
                        result: dict[str, Any] = bdecode(reply[len(cookie) + 1 :])
                        if result.get("result") != b"ok" and result.get("result") != b"pong":
                            raise RuntimeError(f"rtpengine {command['command']}: {result}")
                        return result
        raise TimeoutError(f"rtpengine does not answer {command['command']}")

    def close(self) -> None:
        self.sock.close()


def _sdp(port: int, codec: Codec) -> str:
    name = codec.name
    return (
        "v=0\r\n"
        f"o=- {port} 1 IN IP4 {HOST}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {HOST}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP {int(codec)}\r\n"
        f"a=rtpmap:{int(codec)} {name}/8000\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


def _media_port(sdp: bytes) -> int:
    found = re.search(rb"^m=audio (\d+) ", sdp, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no audio port in rtpengine's SDP: {sdp!r}")
    return int(found.group(1))


# -------------------------------------------------------------------- rtpengine
@contextlib.contextmanager
def rtpengine(workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], NgClient]]:
    """rtpengine on loopback, userspace forwarding only, until the block ends."""
    path = rtpengine_path()
    if path is None:
        raise RuntimeError("; ".join(missing()))
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((HOST, 0))
    ng_port = probe.getsockname()[1]
    probe.close()
    log = (workdir / "rtpengine.log").open("wb")
    proc = subprocess.Popen(
        [
            path,
            "--config-file=none",
            "--foreground",
            "--table=-1",  # no kernel forwarding: every packet through userspace
            f"--interface={HOST}",
            f"--listen-ng={HOST}:{ng_port}",
            f"--port-min={RTPENGINE_PORTS[0]}",
            f"--port-max={RTPENGINE_PORTS[1]}",
            "--delete-delay=0",
            "--log-stderr",
            "--log-level=4",
            f"--pidfile={workdir / 'rtpengine.pid'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ng = NgClient((HOST, ng_port))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                ng({"command": "ping"}, timeout=0.3)
                break
            except TimeoutError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"rtpengine did not start; see {workdir / 'rtpengine.log'}"
                    ) from None
        yield proc, ng
    finally:
        ng.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` (Linux schedstat, nanoseconds)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def rtpengine_level(
    proc: subprocess.Popen[bytes], ng: NgClient, calls: int, seconds: float, mode: str
) -> LevelResult:
    codec_a, codec_b = CODECS[MODES[mode]]
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    gen = ctx.Process(target=generator, args=(child, seconds), daemon=True)
    gen.start()
    port_callers, port_volunteers = parent.recv()
    tag = secrets.token_hex(4)
    call_ids = []
    description: list[CallMedia] = []
    try:
        for i in range(calls):
            call_id = f"bench-{tag}-{i}"
            offer: dict[str, Any] = {
                "command": "offer",
                "call-id": call_id,
                "from-tag": "caller",
                "sdp": _sdp(port_callers, codec_a),
                "flags": ["trust-address"],
            }
            if codec_a != codec_b:  # the volunteer side is offered PCMU only: transcoding
                offer["codec"] = {"mask": [codec_a.name], "transcode": [codec_b.name]}
            offered = ng(offer)
            call_ids.append(call_id)
            answered = ng(
                {
                    "command": "answer",
                    "call-id": call_id,
                    "from-tag": "caller",
                    "to-tag": "volunteer",
                    "sdp": _sdp(port_volunteers, codec_b),
                    "flags": ["trust-address"],
                }
            )
            # The caller sends to the port of rtpengine's answer, the volunteer to the offer's.
            description.append(
                (
                    (HOST, _media_port(answered["sdp"])),
                    (HOST, _media_port(offered["sdp"])),
                    codec_a,
                    codec_b,
                )
            )
        parent.send(description)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        sent, received, delays, gen_cpu, shares = parent.recv()
        elapsed = time.monotonic() - t0
        cpu = (cpu_seconds(proc.pid) - cpu0) / elapsed
        gen.join(5)
    finally:
        for call_id in call_ids:
            with contextlib.suppress(TimeoutError, RuntimeError):
                ng({"command": "delete", "call-id": call_id, "from-tag": "caller"})
    return LevelResult(calls, sent, received, delays, gen_cpu, cpu, elapsed, shares=shares)


def service_level(pool: PortPool, calls: int, seconds: float, mode: str) -> LevelResult:
    # The relay runs on the loop the service runs on (uvloop where installed).
    return event_loop.run(run_level(pool, calls, seconds, None, CODECS[MODES[mode]]))


# ---------------------------------------------------------------------- report
def _clean(r: LevelResult) -> bool:
    return r.loss < CLEAN_LOSS and r.late < CLEAN_LATE


def _row(calls: int, system: str, r: LevelResult, ratio: str) -> tuple[str, ...]:
    us_per_packet = r.service_cpu * r.seconds / max(1, r.received) * 1e6
    return (
        str(calls),
        system,
        str(r.achieved),
        f"{100 * r.loss:.2f}",
        f"{100 * r.late:.2f}",
        f"{r.pct(0.99):.1f}",
        f"{100 * r.service_cpu:.1f}",
        f"{100 * r.service_cpu / calls:.3f}",
        f"{us_per_packet:.1f}",
        ratio,
    )


COLUMNS = (
    "calls",
    "system",
    "achieved",
    "loss %",
    "late %",
    "delay p99 ms",
    "relay CPU % of a core",
    "CPU % per call",
    "us per packet",
    "rtpengine / this service",
)


def run(
    *, quick: bool = False, levels: tuple[int, ...] | None = None, seconds: float = 0.0
) -> list[Table]:
    levels = levels or (QUICK_LEVELS if quick else LEVELS)
    seconds = seconds or (2.0 if quick else 6.0)
    pool = PortPool(HOST, *SERVICE_PORTS)
    tables = []
    with (
        tempfile.TemporaryDirectory(prefix="compare-media-") as tmp,
        rtpengine(Path(tmp)) as (
            proc,
            ng,
        ),
    ):
        threads = len(list(Path(f"/proc/{proc.pid}/task").iterdir()))
        for mode in MODES:
            rows = []
            clean_ratios: list[float] = []
            all_ratios: list[float] = []
            for calls in levels:
                ours = service_level(pool, calls, seconds, mode)
                theirs = rtpengine_level(proc, ng, calls, seconds, mode)
                ratio = theirs.service_cpu / ours.service_cpu if ours.service_cpu else float("nan")
                all_ratios.append(ratio)
                if _clean(ours) and _clean(theirs):
                    clean_ratios.append(ratio)
                rows.append(_row(calls, "this service", ours, ""))
                rows.append(_row(calls, "rtpengine", theirs, f"{ratio:.2f}"))
            used = clean_ratios or all_ratios
            median = statistics.median(used)
            if mode == "plain":
                verdict = (
                    f"plain relay: this service uses {1 / median:.2f}x rtpengine's CPU per call "
                    f"(median over {'clean' if clean_ratios else 'all'} levels); target at most "
                    f"{PLAIN_TARGET}x: {'met' if 1 / median <= PLAIN_TARGET else 'NOT met'}"
                )
            else:
                verdict = (
                    f"transcoded relay: rtpengine uses {median:.2f}x this service's CPU per call "
                    f"(median over {'clean' if clean_ratios else 'all'} levels); target this "
                    f"service ahead: {'met' if median > 1 else 'NOT met'}"
                )
            notes = [
                verdict,
                "one level at a time, this service then rtpengine, each "
                f"{seconds:g} s of RTP both ways at 50 packets/s per direction; "
                f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end",
                "achieved: calls with at least 95% of both directions relayed; late: more "
                "than 40 ms behind the source packet; CPU: the relay process's CPU time "
                "over the level (all threads), % of one core",
                f"rtpengine {_rtpengine_version()} userspace (--table=-1), "
                f"{threads} threads; this service: one event loop "
                f"({event_loop.loop_factory().__module__.split('.')[0]})",
            ]
            title = (
                "Media relay, plain (PCMA both legs): this service vs rtpengine"
                if mode == "plain"
                else "Media relay, transcoded (PCMA<->PCMU): this service vs rtpengine"
            )
            tables.append(Table(title, COLUMNS, rows, notes))
    return tables


def _rtpengine_version() -> str:
    path = rtpengine_path()
    if path is None:
        return "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5)
        found = re.search(r"Version:\s*(\S+)", out.stdout + out.stderr)
        if found:
            return found.group(1)
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short level per mode")
    parser.add_argument("--levels", type=int, nargs="+", help="calls per level")
    parser.add_argument("--seconds", type=float, default=0.0, help="streaming time per level")
    args = parser.parse_args()
    absent = missing()
    if absent:
        print("missing:", *absent, sep="\n  ")
        sys.exit(2)
    for table in run(
        quick=args.quick,
        levels=tuple(args.levels) if args.levels else None,
        seconds=args.seconds,
    ):
        print(table.markdown())


if __name__ == "__main__":
    main()
