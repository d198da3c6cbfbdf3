"""Call setups side by side: this service and the sippy B2BUA with its embedded RTP proxy.

A section of ``bench/compare.py`` (see ``compare_table.py``). The same sipp load goes to both
systems on the same machine, one rate at a time: this service, then sippy, then the next rate (both
are up all along, each with its own far side; the one not under load is idle). A sipp UAC on
127.0.0.1 is the carrier's trunk (``sipp_trunk_call.xml``: INVITE with a G.711 offer, 200, ACK,
hold, BYE; a 180 after the 200 is ignored, as a carrier ignores it) at rising rates for a fixed
number of seconds each, and a sipp UAS on 127.0.0.2 (``sipp_volunteer_answer.xml``: 180 and 200 at
once) is the far side. No RTP is sent: neither system needs it to set a call up (both anchor the
media, and this service's line filler sends its comfort noise on the legs meanwhile, which is part
of its cost per call).

- **this service**: ``helpline serve`` with the direct call flow and no whisper, exactly as
  ``bench_sip_calls.py --no-whisper`` runs it (embedded PostgreSQL, volunteers registered with
  digest from the UAS's port): every call rings a registered volunteer.
- **sippy**: the PyPI ``sippy`` B2BUA (``b2bua``) with a static route to the UAS, no RADIUS
  (``-u -A 0``) and ``rtp.io``, its RTPproxy embedded in the same process (``-r rtp.io:...``,
  listening on 127.0.0.1 only), so each call's media is anchored as in this service. It runs
  from its own virtualenv (``bench/.peers-venv``), never the project's.

With two cores or more, the system measured is pinned to core 0 and everything else (sipp,
PostgreSQL, this script) to the others, for both systems alike; both main threads run at
``helpline serve``'s real-time priority (``realtime_priority``, SCHED_RR 10, threads they start
at normal priority) where that is allowed. Per rate and system: calls,
achieved setups/s, failures, setup time p50/p95 (INVITE to 200, sipp's -trace_rtt), CPU ms per
call of the system's process (from /proc: user + system, all threads, rtp.io's included), the
setups per CPU-second that gives, and how long the system waited for its core (other processes
on it). A system stops at its first rate with failures or below 90% of the offered rate, and
the ratio of CPU per call counts towards the target only at rates both systems carried so: a
system that fell behind spends its CPU on its backlog (the trunk's retransmissions, longer
queues), which says nothing of what a call costs it.

    .venv/bin/python bench/compare_setups.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from bench_sip_calls import Level, database, machine, run_level, start_volunteers  # noqa: E402
from compare_table import Table  # noqa: E402
from sip_call_service import (  # noqa: E402
    HANDSET_IP,
    TRUNK_IP,
    TRUNK_SCENARIO,
    Processes,
    _create_volunteers,
    free_port,
    register_all,
    rtp_span,
    start_service,
    wait_ready,
)

from pbx.config import Settings  # noqa: E402
from pbx.realtime import request_realtime  # noqa: E402

PEERS_VENV = BENCH / ".peers-venv"
B2BUA = PEERS_VENV / "bin" / "b2bua"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
INSTALL_SIPPY = (
    "python3 -m venv bench/.peers-venv && "
    "bench/.peers-venv/bin/pip install sippy==2.5.0 rtp.io==1.1.1"
)
HOLD_MS = 1000
# From 50/s: on a slow hour of a slow machine sippy cannot keep up with 100/s, and a ratio
# against a saturated system measures its backlog (retransmissions), not its cost per call.
FULL_RATES = (50, 100, 200, 300, 400, 500, 600)
FULL_SECONDS = 10.0
QUICK_RATES = (50, 100)
QUICK_SECONDS = 2.0
TARGET_RATE = 500  # setups/s on one core
TARGET_RATIO = 2.0  # times the sippy B2BUA's setups per CPU-second
SERVICE = "this service"
SIPPY = "sippy B2BUA + rtp.io"
# RTP port ranges that never overlap: both systems are up at once, and rtp.io holds its
# sessions' ports after the calls ended (about 1,200 after 300 calls); a port taken is one the
# other cannot use (this service skips it, and ran out of ports at 500/s when the ranges met).
SERVICE_RTP = (20000, 29999)
SIPPY_RTP = (30000, 41999)


def missing() -> list[str]:
    """What this section needs that is not there, with the command that installs it."""
    out: list[str] = []
    if shutil.which("sipp") is None:
        out.append("sipp (the load): apt-get install sip-tester")
    ok = B2BUA.exists() and PEERS_PYTHON.exists()
    if ok:
        check = [str(PEERS_PYTHON), "-c", "import sippy, rtp.io"]
        ok = subprocess.run(check, capture_output=True, timeout=60, check=False).returncode == 0
    if not ok:
        out.append(f"the sippy B2BUA with rtp.io, in its own virtualenv: {INSTALL_SIPPY}")
    return out


# --- one system ----------------------------------------------------------------------------------
@dataclass
class SystemRun:
    name: str
    levels: list[Level] = field(default_factory=list)
    error: str = ""  # why it could not run at all


@dataclass(frozen=True)
class System:
    """A system up and ready for load: where sipp sends the trunk's calls, and the processes
    whose CPU is measured (the system) and which answers as the volunteers (a sipp UAS)."""

    port: int
    pid: int
    uas: int
    work: Path


def _level(procs: Processes, system: System, rate: int, seconds: float) -> Level:
    calls = max(1, round(rate * seconds))
    level = None
    for attempt in range(2):  # sipp may lose a race for its media port and place no call
        level = run_level(
            procs, system.work / f"rate{rate}-{attempt}", f"{TRUNK_IP}:{system.port}", rate,
            calls, HOLD_MS, 0.0, system.pid, system.uas, TRUNK_SCENARIO,
        )  # fmt: skip
        if level.attempted:
            break
    assert level is not None
    return level


def _volunteers(rates: tuple[int, ...]) -> int:
    # One call per volunteer at a time: the hold, plus slack for slow setups under overload.
    return max(20, math.ceil(max(rates) * (HOLD_MS / 1000 + 1.5)))


@contextmanager
def service_up(
    work: Path, procs: Processes, rates: tuple[int, ...], budget: float, cpus: set[int] | None
) -> Iterator[System]:
    users = [f"vol{i:04d}" for i in range(_volunteers(rates))]
    with database(work) as db:
        asyncio.run(_create_volunteers(db.url, work, users))
        port = free_port(TRUNK_IP)
        state = work / "service"
        state.mkdir()
        assert SERVICE_RTP[0] + rtp_span(len(users)) <= SERVICE_RTP[1] + 1, "RTP ranges meet"
        service = start_service(
            procs, state, db.url, port, False, len(users), cpus, rtp_low=SERVICE_RTP[0]
        )
        try:
            wait_ready(service, (TRUNK_IP, port), state / "service.log")
            uas_port = free_port(HANDSET_IP)
            register_all(users, (TRUNK_IP, port), uas_port)
            uas = start_volunteers(procs, work / "uas", uas_port, budget)
            try:
                time.sleep(1.0)  # the registrations' database writes settle
                yield System(port, service.pid, uas.pid, work)
            finally:
                procs.end(uas, signal.SIGUSR1)
        finally:
            procs.end(service)  # SIGTERM: it stops before its database does


@contextmanager
def sippy_up(
    work: Path, procs: Processes, rates: tuple[int, ...], budget: float, cpus: set[int] | None
) -> Iterator[System]:
    uas_port = free_port(HANDSET_IP)
    uas = start_volunteers(procs, work / "uas", uas_port, budget)
    port = free_port(TRUNK_IP)
    low, high = SIPPY_RTP  # two ports per leg, two legs per call
    rtp = f"-l;{TRUNK_IP};-m;{low};-M;{high};-F"  # -F: root is fine here
    cmd = [
        str(B2BUA), "-f", "-l", TRUNK_IP, "-p", str(port), "-s", f"{HANDSET_IP}:{uas_port}",
        "-u", "-A", "0", "-c", str(work / "b2bua.sock"), "-P", str(work / "b2bua.pid"),
        "-L", str(work / "b2bua.log"), "-r", f"rtp.io:{rtp}",
    ]  # fmt: skip
    # Run as this service runs: pinned, and its main thread at `helpline serve`'s default
    # real-time priority (threads it starts at normal priority: reset on fork), if allowed.
    b2bua = procs.start(cmd, work / "b2bua.out", cwd=work, preexec_fn=_as_the_service(cpus))
    try:
        _wait_bound(b2bua, port, work / "b2bua.out")
        time.sleep(1.0)  # its RTPproxy thread starts after the SIP socket
        yield System(port, b2bua.pid, uas.pid, work)
    finally:
        procs.end(b2bua)
        procs.end(uas, signal.SIGUSR1)


def _as_the_service(cpus: set[int] | None) -> Callable[[], None]:
    def setup() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        request_realtime(Settings().realtime_priority)

    return setup


def _wait_bound(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"b2bua exited: {log.read_text(errors='replace')[-2000:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((TRUNK_IP, port))
            except OSError:
                return
        time.sleep(0.1)
    raise TimeoutError("b2bua did not bind its SIP port")


def _budget(rates: tuple[int, ...], seconds: float) -> float:
    # Each system's volunteers wait through the other's levels too (they take turns).
    return 2 * len(rates) * (seconds + HOLD_MS / 1000 + 30) + 60


# --- the section ---------------------------------------------------------------------------------
def run(*, quick: bool = False) -> list[Table]:
    rates, seconds = (QUICK_RATES, QUICK_SECONDS) if quick else (FULL_RATES, FULL_SECONDS)
    said = machine()
    before = os.sched_getaffinity(0)
    cpus: set[int] | None = None
    if 0 in before and len(before) >= 2:  # pinned as the targets say: "on one core"
        cpus = {0}
        os.sched_setaffinity(0, before - cpus)  # sipp, PostgreSQL and this script: elsewhere
    work = Path(tempfile.mkdtemp(prefix="helpline-compare-setups-"))
    work.chmod(0o755)  # as root pgserver runs PostgreSQL as its own user, which must enter
    procs = Processes()
    runs = {name: SystemRun(name) for name in (SERVICE, SIPPY)}
    keep = False
    budget = _budget(rates, seconds)
    try:
        with ExitStack() as stack:
            up: dict[str, System] = {}
            for name, start in ((SERVICE, service_up), (SIPPY, sippy_up)):
                sub = work / ("service" if name == SERVICE else "sippy")
                sub.mkdir()
                sub.chmod(0o755)
                try:
                    up[name] = stack.enter_context(start(sub, procs, rates, budget, cpus))
                except (OSError, RuntimeError, TimeoutError) as exc:
                    runs[name].error = f"{type(exc).__name__}: {exc}"[:300]
                    keep = True
            # One rate at a time, this service then sippy: both measured within a minute of
            # each other, so this machine's drift (its speed changes by the hour) cancels out.
            print(f"rates {', '.join(map(str, rates))}/s, {seconds:g} s each", flush=True)
            for rate in rates:
                for name in list(up):
                    print(f"  {name}, {rate}/s:", end=" ", flush=True)
                    try:
                        level = _level(procs, up[name], rate, seconds)
                    except (OSError, RuntimeError, TimeoutError) as exc:
                        runs[name].error = f"{type(exc).__name__}: {exc}"[:300]
                        print(runs[name].error, flush=True)
                        del up[name]
                        keep = True
                        continue
                    runs[name].levels.append(level)
                    print(_summary(level), flush=True)
                    if not level.ok:
                        keep = True
                    if not _completed(level):
                        del up[name]  # no more levels for it; its process stays up to the end
                    time.sleep(1.0)  # the last calls' teardown, before the next CPU window
                if not up:
                    break
    finally:
        procs.end_all()
        os.sched_setaffinity(0, before)
        if keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    pinning = "system pinned to core 0, sipp and the rest to the others" if cpus else "unpinned"
    pinning += (
        f"; both systems' main threads at SCHED_RR {Settings().realtime_priority}"
        if os.geteuid() == 0
        else "; both at normal priority (not root)"
    )
    return _tables(list(runs.values()), rates, seconds, said, pinning)


def _tables(
    runs: list[SystemRun], rates: tuple[int, ...], seconds: float, said: str, pinning: str
) -> list[Table]:
    columns = (
        "system", "rate/s", "calls", "achieved/s", "failures", "setup p50", "setup p95",
        "CPU ms/call", "setups per CPU-s", "waited", "loop wakeups/call",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = []
    for r in runs:
        if r.error:
            rows.append((r.name, "-", "-", "-", r.error, "-", "-", "-", "-", "-", "-"))
        for lv in r.levels:
            p50, p95, _ = lv.setup_ms
            fails = lv.attempted - lv.succeeded
            detail = f"{fails} ({', '.join(lv.failures)})" if lv.failures else str(fails)
            rows.append((
                r.name, f"{lv.rate:g}", str(lv.attempted), f"{lv.achieved_cps:.1f}", detail,
                f"{p50:.0f} ms", f"{p95:.0f} ms", f"{lv.cpu_ms_per_call:.2f}",
                f"{1000 / lv.cpu_ms_per_call:.0f}" if lv.cpu_ms_per_call > 0 else "-",
                f"{100 * lv.service_wait / lv.wall:.0f}%" if lv.wall else "-",
                f"{lv.wakeups_per_call:.1f}",
            ))  # fmt: skip
    setups = Table(
        "Call setups: this service and the sippy B2BUA with rtp.io",
        columns,
        rows,
        [
            f"{said}; {pinning}",
            f"sipp trunk (bench/sipp_trunk_call.xml), {seconds:g} s of calls per rate, hold "
            f"{HOLD_MS} ms, no RTP sent; far side a sipp UAS answering at once",
            "CPU ms/call: the system's process CPU (user + system, all threads) over the rate's "
            "calls; waited: share of the time its event loop waited for its core; loop "
            "wakeups/call: voluntary context switches of its main thread over the rate's calls",
            "a system stops at its first rate with failures or below 90% of the offered rate",
        ],
    )
    return [setups, _ratios(runs, rates)]


def _ratios(runs: list[SystemRun], rates: tuple[int, ...]) -> Table:
    by = {r.name: {lv.rate: lv for lv in r.levels} for r in runs}
    ours, peer = by.get(SERVICE, {}), by.get(SIPPY, {})
    rows: list[tuple[str, ...]] = []
    ratios: list[float] = []
    for rate in rates:
        a, b = ours.get(rate), peer.get(rate)
        if a is None and b is None:
            continue
        text = "-"
        if a is not None and b is not None and a.cpu_ms_per_call > 0:
            ratio = b.cpu_ms_per_call / a.cpu_ms_per_call
            text = f"{ratio:.2f}"
            if _completed(a) and _completed(b):  # only these count towards the target
                ratios.append(ratio)
            else:
                short = [
                    f"{name} {'failed' if not lv.ok else f'fell behind ({lv.achieved_cps:.1f}/s)'}"
                    for name, lv in ((SERVICE, a), (SIPPY, b))
                    if not _completed(lv)
                ]
                text += f" ({' and '.join(short)}: not counted)"
        rows.append((
            str(rate),
            f"{a.cpu_ms_per_call:.2f}" if a else "-",
            f"{b.cpu_ms_per_call:.2f}" if b else "-",
            text,
        ))  # fmt: skip
    best = max(
        (lv.achieved_cps for lv in ours.values() if lv.ok and lv.achieved_cps >= 0.95 * lv.rate),
        default=0.0,
    )
    rate_met = best >= TARGET_RATE
    ratio_met = bool(ratios) and min(ratios) >= TARGET_RATIO
    notes = [
        "ratio: sippy's CPU per call over this service's, i.e. this service's setups per "
        "CPU-second over sippy's (above 1: this service does more setups per CPU-second)",
        f"target {TARGET_RATE} setups/s on one core: {'met' if rate_met else 'NOT met'} "
        f"(highest rate completed without failures: {best:.0f}/s)",
        f"target {TARGET_RATIO:g}x sippy's setups per CPU-second: "
        + (
            f"{'met' if ratio_met else 'NOT met'} (lowest ratio {min(ratios):.2f})"
            if ratios
            else "not measured (no rate completed by both)"
        ),
    ]
    return Table(
        "Call setups: CPU per call, sippy B2BUA / this service",
        ("rate/s", "this service CPU ms/call", "sippy CPU ms/call", "ratio sippy / this service"),
        rows,
        notes,
    )


def _completed(lv: Level) -> bool:
    """The rate was carried: no failures and at least 90% of it achieved (as the runs stop)."""
    return lv.ok and lv.achieved_cps >= 0.9 * lv.rate


def _summary(lv: Level) -> str:
    p50, p95, _ = lv.setup_ms
    text = (
        f"{lv.succeeded}/{lv.attempted} ok, {lv.achieved_cps:.1f} setups/s, setup p50 {p50:.0f} "
        f"p95 {p95:.0f} ms, {lv.cpu_ms_per_call:.2f} CPU ms/call"
    )
    return text + (f", failures: {', '.join(lv.failures)}" if lv.failures else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (< 1 min)")
    args = parser.parse_args()
    lacking = missing()
    if lacking:
        print("missing:\n" + "\n".join(f"  {line}" for line in lacking))
        raise SystemExit(2)
    from pbx.logs import configure_logging

    configure_logging("warning", "console")  # the database's own log lines
    for table in run(quick=args.quick):
        print(table.markdown())


if __name__ == "__main__":
    main()
