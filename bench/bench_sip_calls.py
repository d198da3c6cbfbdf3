"""Call setups per second from a carrier trunk, with sipp as both the trunk and the volunteers.

The service runs as its own process (`helpline serve`, on an embedded PostgreSQL this script
starts), so its CPU is read alone from /proc/<pid>/stat. N volunteer accounts register with MD5
digest from one UDP port on 127.0.0.2 (a small client here); one sipp UAS
(bench/sipp_volunteer_answer.xml: 180 and 200 at once) then listens on that port and answers every
call the service rings there. The trunk is a sipp UAC on 127.0.0.1 (sipp_trunk_call.xml: INVITE
09000767, hold --hold-ms, BYE; a 180 after the 200 is ignored) at a fixed rate for a bounded number
of calls, for each rate in turn, stopping at the first rate with failures, at one where the service
no longer keeps up (fewer than 90% of the offered setups/s), or when the time budget is spent. The
service answers the caller only once a volunteer answered and anchors the media of both legs, so a
setup is: INVITE in, INVITE out, 180/200 back, 200 to the caller.

Per rate it prints: calls attempted/succeeded/failed and the trunk's retransmissions (INVITE or
BYE resent after 500 ms without an answer: the service fell behind); call setup time p50/p95/max
(sipp's response time from sending the INVITE to receiving the 200, -trace_rtt, in whole
milliseconds; the two sipp scenarios talking directly measure 0 ms; it includes the whisper
prompt the volunteer hears before the caller is connected, unless --no-whisper); achieved
setups/s (200s received per second, first to last); service CPU ms per call attempted (/proc
counts 10 ms ticks, so small runs are coarse), its average CPU over the level and its busiest
second, in % of one core (one asyncio loop cannot use more than one); the peak of concurrent
calls (sipp UAC, sampled every 250 ms); and the CPU the sipp processes used, since they share
the machine. A level that fails prints why: sipp's failure counters, calls still unfinished
15 s after the last should have ended, and the responses that failed calls (480: no volunteer
free).

The direct router rings each volunteer with one call at a time, so concurrency is bounded by the
number of volunteers (--volunteers; by default enough for the highest rate, whisper and hold).
Volunteer accounts are written with the repository `helpline volunteers add` uses (one CLI
process per account would take a minute). Keepalive OPTIONS are turned off
(HELPLINE_KEEPALIVE_INTERVAL) since the sipp UAS does not answer them; sipp sends no RTP, so keep
--hold-ms below the service's media_timeout (60 s). Prints figures, asserts nothing; the machine
is shared, so figures are noisy.

    .venv/bin/python bench/bench_sip_calls.py [--rates 10 25 50 100] [--seconds 10]
        [--hold-ms 1000] [--volunteers N] [--no-whisper] [--budget 170] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sip_call_service import (  # noqa: E402
    CALLER,
    HANDSET_IP,
    SERVICE_NUMBER,
    SIPP,
    TRUNK_IP,
    TRUNK_SCENARIO,
    VOLUNTEER_SCENARIO,
    Processes,
    _create_volunteers,
    children_cpu,
    cpu_seconds,
    free_port,
    loop_wakeups,
    media_port,
    pin,
    register_all,
    runqueue_wait,
    start_service,
    trunk_scenario,
    wait_ready,
    whisper_seconds,
)

from pbx.db.embedded import EmbeddedPostgres, start_embedded  # noqa: E402
from pbx.logs import configure_logging  # noqa: E402


# --- sipp -----------------------------------------------------------------------------------------
def sipp_base(
    scenario: Path, ip: str, port: int, timeout_s: float, run_dir: Path, calls: int = 1
) -> list[str]:
    return [
        SIPP, "-sf", str(scenario), "-i", ip, "-bind_local", "-p", str(port), "-t", "u1",
        "-mi", ip, "-mp", str(media_port(ip, calls)), "-ci", ip, "-cp", str(free_port(ip)),
        "-nostdin", "-timeout", f"{timeout_s:.0f}s", "-timeout_error",
        "-trace_err", "-error_file", str(run_dir / "errors.log"),
        "-trace_stat", "-stf", str(run_dir / "stats.csv"), "-fd", "250ms",
    ]  # fmt: skip


def start_volunteers(
    procs: Processes, run_dir: Path, port: int, timeout_s: float
) -> subprocess.Popen[bytes]:
    run_dir.mkdir(parents=True)
    cmd = sipp_base(VOLUNTEER_SCENARIO, HANDSET_IP, port, timeout_s, run_dir)
    proc = procs.start(cmd, run_dir / "sipp.log", cwd=run_dir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # listening once the port is taken
        if proc.poll() is not None:
            raise RuntimeError(f"sipp UAS exited: {(run_dir / 'sipp.log').read_text()[-2000:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((HANDSET_IP, port))
            except OSError:
                return proc
        time.sleep(0.05)
    raise TimeoutError("sipp UAS did not bind its port")


def stats_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    rows = [r for r in csv.reader(path.open(newline=""), delimiter=";") if r]
    return [dict(zip(rows[0], r, strict=False)) for r in rows[1:]]


def number(row: dict[str, str], name: str) -> int:
    try:
        return int(float(row.get(name, "0") or 0))
    except ValueError:
        return 0


def rtt_samples(run_dir: Path) -> list[tuple[float, float]]:
    """(time since sipp start in ms, setup time in ms) per call, from -trace_rtt."""
    out: list[tuple[float, float]] = []
    for path in run_dir.glob("*_rtt.csv"):
        for row in csv.reader(path.open(newline=""), delimiter=";"):
            with contextlib.suppress(ValueError, IndexError):
                out.append((float(row[0]), float(row[1])))
    return sorted(out)


# --- one rate ------------------------------------------------------------------------------------
@dataclass
class Level:
    rate: float
    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    retransmissions: int = 0  # INVITEs/BYEs the trunk had to resend: the service fell behind
    setup_ms: tuple[float, float, float] = (math.nan, math.nan, math.nan)  # p50, p95, max
    achieved_cps: float = math.nan
    service_cpu: float = math.nan  # seconds
    service_peak: float = math.nan  # highest share of one core over any 1 s
    service_wait: float = math.nan  # seconds its event loop was runnable but not running
    service_wakeups: int = -1  # times its event loop slept and was woken (-1: not read)
    wall: float = math.nan
    peak_calls: int = 0
    sipp_cpu: float = math.nan  # both sipp processes, seconds
    exit_code: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def unfinished(self) -> int:
        return self.attempted - self.succeeded - self.failed

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.service_cpu / self.attempted if self.attempted else math.nan

    @property
    def wakeups_per_call(self) -> float:
        if not self.attempted or self.service_wakeups < 0:
            return math.nan
        return self.service_wakeups / self.attempted

    @property
    def ok(self) -> bool:
        return self.attempted > 0 and self.succeeded == self.attempted and self.exit_code == 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def wait_sampling(proc: subprocess.Popen[bytes], timeout: float, service: int) -> tuple[int, float]:
    """Waits for sipp; returns its exit code and the service's busiest second (share of a core)."""
    deadline = time.monotonic() + timeout
    peak = 0.0
    last_t, last_cpu = time.monotonic(), cpu_seconds(service)
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)
        now, cpu = time.monotonic(), cpu_seconds(service)
        if now - last_t >= 0.9:  # /proc counts in 10 ms ticks: shorter windows are too coarse
            peak = max(peak, (cpu - last_cpu) / (now - last_t))
            last_t, last_cpu = now, cpu
    if proc.poll() is None:
        return -9, peak  # the caller ends it
    return proc.returncode, peak


def run_level(
    procs: Processes,
    run_dir: Path,
    target: str,
    rate: float,
    calls: int,
    hold_ms: int,
    whisper: float,
    service: int,
    uas: int,
    scenario: Path | None = None,
) -> Level:
    run_dir.mkdir(parents=True)
    # Calls still open 15 s after the last should have ended are counted as unfinished.
    timeout_s = calls / rate + hold_ms / 1000 + whisper + 15
    uac = trunk_scenario(run_dir, hold_ms, scenario or TRUNK_SCENARIO)
    cmd = sipp_base(uac, TRUNK_IP, free_port(TRUNK_IP), timeout_s, run_dir, calls)
    cmd += ["-m", str(calls), "-r", f"{rate:g}", "-d", str(hold_ms), "-s", SERVICE_NUMBER]
    cmd += ["-l", str(calls)]  # sipp's own default (3 x rate x hold) would cap concurrency
    cmd += ["-key", "caller", CALLER, "-key", "caller_display", CALLER]
    cmd += ["-trace_rtt", "-rtt_freq", "1", target]
    cpu0, uas0, kids0 = cpu_seconds(service), cpu_seconds(uas), children_cpu()
    wait0, wakeups0 = runqueue_wait(service), loop_wakeups(service)
    start = time.monotonic()
    proc = procs.start(cmd, run_dir / "sipp.log", cwd=run_dir)
    code, peak = wait_sampling(proc, timeout_s + 10, service)
    if code == -9:
        procs.end(proc, signal.SIGKILL)
    level = Level(rate=rate, wall=time.monotonic() - start, exit_code=code, service_peak=peak)
    level.service_cpu = cpu_seconds(service) - cpu0
    level.service_wait = runqueue_wait(service) - wait0
    wakeups = loop_wakeups(service)
    level.service_wakeups = wakeups - wakeups0 if min(wakeups, wakeups0) >= 0 else -1
    level.sipp_cpu = (children_cpu() - kids0) + (cpu_seconds(uas) - uas0)
    rows = stats_rows(run_dir / "stats.csv")
    if rows:
        last = rows[-1]
        level.attempted = number(last, "OutgoingCall(C)")
        level.succeeded = number(last, "SuccessfulCall(C)")
        level.failed = number(last, "FailedCall(C)")
        level.retransmissions = number(last, "Retransmissions(C)")
        level.peak_calls = max(number(r, "CurrentCall") for r in rows)
        level.failures = [
            f"{k[6:-3]}={v}" for k, v in last.items()
            if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)"
            and number(last, k)
        ]  # fmt: skip
    if level.unfinished:
        level.failures.append(f"unfinished={level.unfinished}")
    errors = run_dir / "errors.log"
    if errors.exists():  # the responses that failed calls, e.g. 480: no volunteer free
        text = errors.read_text(errors="replace")
        got = re.findall(r"while expecting [^\n]*received 'SIP/2\.0 (\d{3})", text)
        level.failures += [f"{got.count(c)} x {c}" for c in sorted(set(got))]
    samples = rtt_samples(run_dir)
    setup = [ms for _, ms in samples]
    level.setup_ms = (percentile(setup, 0.5), percentile(setup, 0.95), max(setup, default=math.nan))
    if len(samples) > 1 and samples[-1][0] > samples[0][0]:
        level.achieved_cps = (len(samples) - 1) / ((samples[-1][0] - samples[0][0]) / 1000)
    return level


# --- report ---------------------------------------------------------------------------------------
HEADER = (
    f"{'rate':>5} {'calls':>5} {'ok':>5} {'fail':>4} {'retr':>4} "
    f"{'setup p50':>9} {'p95':>7} {'max':>7} {'setups/s':>8} {'CPU ms/call':>11} "
    f"{'svc CPU avg':>11} {'peak':>4} {'waited':>6} {'wakeups/call':>12} {'calls up':>8} "
    f"{'sipp CPU':>8}"
)


def line(lv: Level) -> str:
    p50, p95, top = lv.setup_ms
    busy = 100 * lv.service_cpu / lv.wall if lv.wall else math.nan
    waited = 100 * lv.service_wait / lv.wall if lv.wall else math.nan
    text = (
        f"{lv.rate:>5g} {lv.attempted:>5} {lv.succeeded:>5} {lv.failed:>4} "
        f"{lv.retransmissions:>4} {p50:>7.0f}ms {p95:>5.0f}ms {top:>5.0f}ms "
        f"{lv.achieved_cps:>8.1f} {lv.cpu_ms_per_call:>11.2f} {busy:>10.0f}% "
        f"{100 * lv.service_peak:>3.0f}% {waited:>5.0f}% {lv.wakeups_per_call:>12.1f} "
        f"{lv.peak_calls:>8} {lv.sipp_cpu:>7.1f}s"
    )
    if lv.failures:
        text += f"  failures: {', '.join(lv.failures)}"
    if lv.exit_code not in (0, 1):
        text += f"  (sipp exit {lv.exit_code})"
    return text


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        version = subprocess.run(
            [SIPP, "-v"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        sipp = next((w for w in version.split() if w.startswith("v3")), "?")
    except (OSError, subprocess.TimeoutExpired):
        sipp = "?"
    return f"machine: nproc={os.cpu_count()} load average {load} (1/5/15 min), sipp {sipp}"


# --- main -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def database(state: Path) -> Iterator[EmbeddedPostgres]:
    server = start_embedded(state)
    try:
        yield server
    finally:
        server.stop(force=True)


def bench(args: argparse.Namespace, work: Path, procs: Processes) -> None:
    began = time.monotonic()
    hold = args.hold_ms / 1000
    whisper = whisper_seconds(not args.no_whisper)
    # Each call keeps its volunteer busy for whisper + hold (+ setup and teardown).
    volunteers = args.volunteers or max(20, math.ceil(max(args.rates) * (hold + whisper + 1.0)))
    users = [f"vol{i:04d}" for i in range(volunteers)]
    said = f"volunteer whisper {whisper:.2f} s (part of every setup)" if whisper else "no whisper"
    print(
        f"{volunteers} volunteers, hold {args.hold_ms} ms, {said}, "
        f"{args.seconds:g} s of calls per rate, budget {args.budget:g} s",
        flush=True,
    )
    with database(work) as db:
        asyncio.run(_create_volunteers(db.url, work, users))
        port = free_port(TRUNK_IP)
        # Its own state directory, apart from the database's.
        state = work / "service"
        state.mkdir()
        service = start_service(
            procs, state, db.url, port, not args.no_whisper, volunteers, args.service_cpus
        )
        try:
            target = (TRUNK_IP, port)
            wait_ready(service, target, state / "service.log")
            uas_port = free_port(HANDSET_IP)
            t0 = time.monotonic()
            register_all(users, target, uas_port)
            print(
                f"registered {volunteers} volunteers in {time.monotonic() - t0:.2f} s, "
                f"service ready {time.monotonic() - began:.1f} s after start",
                flush=True,
            )
            uas = start_volunteers(procs, work / "uas", uas_port, args.budget + 60)
            time.sleep(1.0)  # let the registrations' database writes settle
            print(HEADER, flush=True)
            for rate in args.rates:
                calls = max(1, round(rate * args.seconds))
                needed = calls / rate + hold + whisper + 5
                if time.monotonic() - began + needed > args.budget:
                    print(f"(rate {rate:g} skipped: over the {args.budget:g} s budget)")
                    break
                if rate * (hold + whisper + 0.2) > volunteers:
                    print(f"(rate {rate:g}: more concurrent calls than {volunteers} volunteers)")
                level = run_level(
                    procs, work / f"rate{rate:g}", f"{TRUNK_IP}:{port}", rate, calls,
                    args.hold_ms, whisper, service.pid, uas.pid,
                )  # fmt: skip
                print(line(level), flush=True)
                if service.poll() is not None:
                    print(f"service exited ({service.returncode}); see {state / 'service.log'}")
                    break
                if not level.ok:
                    print(f"failures at {rate:g} calls/s: stopping (details in {work})")
                    if any(f.endswith("x 480") for f in level.failures):
                        print(
                            f"  480 = no volunteer free: {level.peak_calls} calls up, "
                            f"{volunteers} volunteers (slow setups hold them longer)"
                        )
                    args.keep = True
                    break
                if level.achieved_cps < 0.9 * rate:
                    print(f"saturated at {rate:g} calls/s (no higher rate will do better)")
                    break
                time.sleep(1.0)  # the last calls' teardown, before the next CPU window
            procs.end(uas, signal.SIGUSR1)
        finally:
            procs.end(service)  # SIGTERM: the service stops cleanly before its database does
    print(f"total {time.monotonic() - began:.0f} s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[10, 25, 50, 100], help="calls/s, in order"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of calls per rate")
    parser.add_argument("--hold-ms", type=int, default=1000, help="call duration after answer")
    parser.add_argument(
        "--volunteers", type=int, default=0, help="handsets (default: enough for the top rate)"
    )
    parser.add_argument(
        "--no-whisper", action="store_true", help="connect at once (no prompt to the volunteer)"
    )
    parser.add_argument("--budget", type=float, default=170.0, help="total seconds, roughly")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--service-cpu", type=int, default=None, metavar="N",
        help="pin the service to core N and everything else (sipp, database) to the others",
    )  # fmt: skip
    args = parser.parse_args()
    args.service_cpus = pin(args.service_cpu)
    # SIGTERM ends the bench like Ctrl-C, so the cleanup below still runs.
    signal.signal(signal.SIGTERM, _interrupt)
    configure_logging("warning", "console")  # this process's own (database) log lines
    print(machine(), flush=True)
    if args.service_cpus:
        print(f"service pinned to core {args.service_cpu}, sipp and the rest to the others")
    # As root pgserver runs PostgreSQL as its own user, which must be able to enter this directory.
    work = Path(tempfile.mkdtemp(prefix="helpline-bench-calls-"))
    work.chmod(0o755)
    procs = Processes()
    try:
        bench(args, work, procs)
    except KeyboardInterrupt:
        print("interrupted")
        args.keep = True
    finally:
        procs.end_all()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
