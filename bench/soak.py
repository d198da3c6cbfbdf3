"""The one-hour soak at the helpline's busiest hour: `helpline demo --peak`, the service and the
simulated phones in two processes, with the service's memory and CPU read from /proc every
minute next to its /metrics; the figures go to bench/SOAK.md (or --out).

    .venv/bin/python bench/soak.py                  # 60 minutes plus the drain (about 62)
    .venv/bin/python bench/soak.py --minutes 3      # a short trial run

Bounded: the phones stop taking new callers after --minutes, let calls end for 60 s, then hang
up whatever is left (at most 30 s more); the service is then stopped (SIGTERM, then SIGKILL).
CPU figures are CPU time of the service process (utime + stime), not wall-clock rates.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELPLINE = REPO / ".venv" / "bin" / "helpline"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")


@dataclass
class Sample:
    at: float  # seconds since the traffic started
    rss_kb: int
    cpu_s: float  # service process, user + system
    traffic_cpu_s: float  # the simulator's process (for context only)
    arrived: int
    outcomes: Counter[str]
    waiting: int
    legs: int
    media_legs: int
    answered_waits: tuple[int, float]  # (count, sum) of the answered-wait histogram

    @property
    def ended(self) -> int:
        return sum(self.outcomes.values())

    @property
    def in_progress(self) -> int:
        return self.arrived - self.ended


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    baseline_rss_kb: int = 0  # the service up, volunteers registered, before the first caller
    baseline_cpu_s: float = 0.0


def proc_cpu_rss(pid: int) -> tuple[float, int]:
    """CPU seconds (utime + stime) and resident set size in kB of `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)
    with open(f"/proc/{pid}/statm") as f:
        rss_pages = int(f.read().split()[1])
    return cpu, rss_pages * PAGE // 1024


def scrape(port: int) -> dict[str, list[tuple[str, float]]]:
    """The /metrics samples by name: [(labels, value)]."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = _SAMPLE.match(line)
        if m:
            out.setdefault(m[1], []).append((m[2] or "", float(m[3])))
    return out


def total(metrics: dict[str, list[tuple[str, float]]], name: str) -> float:
    return sum(v for _, v in metrics.get(name, []))


def by_label(metrics: dict[str, list[tuple[str, float]]], name: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for labels, value in metrics.get(name, []):
        m = re.search(r'="([^"]*)"', labels)
        out[m[1] if m else ""] += int(value)
    return out


def sample(at: float, service: int, traffic: int | None, port: int) -> Sample:
    cpu, rss = proc_cpu_rss(service)
    traffic_cpu = proc_cpu_rss(traffic)[0] if traffic is not None else 0.0
    m = scrape(port)
    return Sample(
        at=at, rss_kb=rss, cpu_s=cpu, traffic_cpu_s=traffic_cpu,
        arrived=int(total(m, "helpline_calls_arrived_total")),
        outcomes=by_label(m, "helpline_calls_total"),
        waiting=int(total(m, "helpline_queue_waiting")),
        legs=int(total(m, "helpline_sip_dialog_legs")),
        media_legs=int(total(m, "helpline_media_legs")),
        answered_waits=(int(total(m, "helpline_queue_answered_wait_seconds_count")),
                        total(m, "helpline_queue_answered_wait_seconds_sum")),
    )  # fmt: skip


def wait_for_line(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{path.stem} exited with {proc.returncode}: see {path}")
        time.sleep(0.5)
    raise SystemExit(f"no '{text}' in {path} after {timeout:.0f} s")


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    system = f"{platform.system()} {platform.release()}"
    return (f"{platform.node()}: {os.cpu_count()} CPUs ({model}), {mem_kb // 1024} MiB RAM, "
            f"{system}, Python {platform.python_version()}")  # fmt: skip


def error_lines(log: Path) -> list[str]:
    """Lines of the service's log at error level or worse, and tracebacks."""
    bad = re.compile(r"\[(error|critical)\s*\]|Traceback|\berror\b.*exception", re.IGNORECASE)
    return [line for line in log.read_text(errors="replace").splitlines() if bad.search(line)]


def warning_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines()
            if re.search(r"\[warning\s*\]", line)]  # fmt: skip


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def render(run: Run, args: argparse.Namespace, commands: list[str], started: datetime,
           summary: str, log: Path) -> str:  # fmt: skip
    s = run.samples
    lines = [
        f"# Soak: {args.minutes:g} minutes at the busiest hour's load (`helpline demo --peak`)",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; {s[-1].at / 60:.1f} minutes from the first "
        f"caller to the last sample ({args.minutes:g} minutes of callers, then the drain).",
        f"- Machine: {machine()}.",
        f"- Load average at the end (1/5/15 min): {_loadavg()}: anything else running on the "
        "machine shows here; the CPU figures are CPU time of the service process (utime + "
        "stime from /proc), per call, so other work changes them little.",
        "- Commands (run by `bench/soak.py`; the service and the simulated phones are two "
        "processes, so the figures below are the service's alone):",
        "",
        *[f"      {c}" for c in commands],
        "",
        "## Peak load, from ../shared/HELPLINE.md",
        "",
        "- About 250,000 conversations a year: 250,000 / 365 = 685 a day, 28.5 an hour on "
        "average. The busiest hour (evenings) is taken as twice the average hour: "
        "**about 60 calls offered per hour** (1 a minute).",
        "- About 900 volunteers at 4-5 hours a week: 900 x 4.5 = 4,050 volunteer-hours a week "
        "/ 168 hours = 24 on shift in an average hour; the busiest hour has half as many again: "
        "**36 volunteers on shift**.",
        "- No spare capacity: the volunteer-hours are spent on the conversations. 24 volunteers "
        "x 8,760 hours a year / 250,000 conversations = 50 minutes of a volunteer per "
        "conversation: **48 minutes of talk** (mean, exponential; the Dutch queue's wrap-up of "
        "60 s on top). 36 volunteers then answer about 43 calls an hour against 60 offered: a "
        "queue forms and callers give up (mean patience 4 minutes, here).",
        "- The hour starts as a busy hour does: every volunteer already in a call (36 callers in "
        "the first minute, on top of the hourly rate). Mix as the demo: mostly Dutch, 3% each "
        "Arabic/Farsi/Turkish, 5% on the 113 line; volunteers miss 8% of offers and hand 5% of "
        "conversations over to (a simulated) 113.",
        "",
        "## Every minute",
        "",
        "In progress: calls arrived and not yet ended (IVR, waiting, ringing, talking). "
        "Per-interval outcomes: calls that ended in that minute. CPU: service CPU seconds used "
        "in that minute.",
        "",
        "| min | RSS MiB | CPU s in the minute | in progress | waiting | SIP legs | media legs "
        "| arrived | answered | abandoned | handed over | other |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    prev: Sample | None = None
    for x in s:
        d = x.outcomes - (prev.outcomes if prev else Counter())
        other = sum(v for k, v in d.items() if k not in ("answered", "abandoned", "handed_over"))
        lines.append(
            f"| {x.at / 60:.0f} | {x.rss_kb / 1024:.1f} "
            f"| {x.cpu_s - (prev.cpu_s if prev else run.baseline_cpu_s):.2f} "
            f"| {x.in_progress} | {x.waiting} | {x.legs} | {x.media_legs} "
            f"| {x.arrived - (prev.arrived if prev else 0)} | {d['answered']} | {d['abandoned']} "
            f"| {d['handed_over']} | {other} |"
        )
        prev = x
    last = s[-1]
    o = last.outcomes
    answered = o["answered"] + o["handed_over"]
    waits = last.answered_waits
    cpu = last.cpu_s - run.baseline_cpu_s
    # call-minutes: calls in progress integrated over the samples (trapezoids)
    call_minutes = sum((a.in_progress + b.in_progress) / 2 * (b.at - a.at) / 60
                       for a, b in zip(s, s[1:], strict=False))  # fmt: skip
    trend = steady_trend(s, args.steady_from, args.minutes)
    peak_calls = max(x.in_progress for x in s)
    at_peak = max(s, key=lambda x: x.in_progress)
    per_call_kb = ((at_peak.rss_kb - run.baseline_rss_kb) / at_peak.in_progress
                   if at_peak.in_progress else 0.0)  # fmt: skip
    errors, warnings = error_lines(log), warning_lines(log)
    level = "-"
    sl_line = summary_line(summary, "service level")
    if sl_line:
        level = sl_line.split(":", 1)[1].strip()
    lines += [
        "",
        "## At the end",
        "",
        f"- Offered (arrived at the service): **{last.arrived}**; ended: answered "
        f"{o['answered']}, handed over to 113 {o['handed_over']}, abandoned {o['abandoned']}, "
        "other "
        + (
            ", ".join(
                f"{k} {v}"
                for k, v in sorted(o.items())
                if k not in ("answered", "handed_over", "abandoned")
            )
            or "none"
        )
        + f"; still in progress at the last sample: {last.in_progress}.",
        f"- Answered by a volunteer (incl. handed over): {answered}; average wait of answered "
        f"calls {waits[1] / waits[0]:.1f} s"
        if waits[0]
        else "- Answered: none",
        f"- Service level (answered within 30 s, of answered + abandoned, as the simulator "
        f"counts it): {level}.",
        "- The simulator's own summary (callers' side; it agrees with the service's counts by "
        "construction, see `pbx/demo/traffic.py` PickUps):",
        "",
        *[f"      {line}" for line in summary.strip().splitlines()],
        "",
        f"- Memory: RSS {run.baseline_rss_kb / 1024:.1f} MiB with the volunteers registered "
        f"before the first caller; {s[0].rss_kb / 1024:.1f} MiB after the first minute; "
        f"max {max(x.rss_kb for x in s) / 1024:.1f} MiB; {last.rss_kb / 1024:.1f} MiB at the "
        "end.",
        f"- Steady state (minute {args.steady_from:g} to the end of the traffic, before the "
        f"drain): {trend}.",
        f"- Memory per call: {per_call_kb:.0f} kB of RSS over the baseline per call in progress "
        f"at the busiest sample ({at_peak.in_progress} calls, minute {at_peak.at / 60:.0f}); "
        "per minute, RSS over the baseline divided by the calls in progress: "
        + ", ".join(
            f"{(x.rss_kb - run.baseline_rss_kb) / x.in_progress:.0f}"
            for x in s
            if x.in_progress >= 5
        )
        + " kB (samples with 5 calls or more).",
        f"- CPU: {cpu:.1f} s of service CPU in all; {cpu / last.arrived * 1000:.0f} ms per "
        f"call offered; {cpu / call_minutes * 1000:.1f} ms per call-minute in progress "
        f"({call_minutes:.0f} call-minutes; up to {peak_calls} calls at once, each relaying "
        "or playing 50 RTP packets a second both ways). The simulator's process used "
        f"{last.traffic_cpu_s:.0f} s (not the service's)."
        if last.arrived and call_minutes
        else f"- CPU: {cpu:.1f} s",
        f"- Errors in the service's log: {len(errors)} (warnings: {len(warnings)})"
        + (":" if errors else "."),
        *[f"      {e[:200]}" for e in errors[:20]],
    ]
    if warnings:
        kinds = Counter(re.sub(r".*\[warning\s*\]\s*(\S+).*", r"\1", w) for w in warnings)
        by_kind = ", ".join(f"{k} {v}" for k, v in kinds.most_common())
        lines.append(f"- Warnings by event: {by_kind}")
    return "\n".join(lines) + "\n"


def _fit(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Least squares y = a + b x: (a, b, standard deviation of the residuals)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / var
    a = my - b * mx
    sd = (sum((y - a - b * x) ** 2 for x, y in points) / max(1, n - 2)) ** 0.5
    return a, b, sd


def steady_trend(s: list[Sample], start: float, minutes: float) -> str:
    """RSS over the steady part of the hour as a measured statement: the least-squares slope
    per minute, what it adds up to over the window and per call offered in it, and the
    residual noise; "flat" then means a growth no bigger than that noise."""
    window = [x for x in s if start * 60 - 5 <= x.at <= minutes * 60 + 5]
    if len(window) < 3:
        return "too few samples"
    _, b, sd = _fit([(x.at / 60, x.rss_kb) for x in window])  # kB against minutes
    span = (window[-1].at - window[0].at) / 60
    calls = window[-1].arrived - window[0].arrived
    at = {round(x.at / 60): x.rss_kb / 1024 for x in window}
    marks = ", ".join(f"minute {m} {at[m]:.1f}" for m in (10, 30, 60) if m in at)
    per_call = f", {b * span / calls:+.1f} kB per call offered in it ({calls})" if calls else ""
    return (f"RSS MiB {marks or '-'}; least-squares slope {b:+.1f} kB/minute, "
            f"{b * span / 1024:+.2f} MiB over the {span:.0f} minutes{per_call}; residuals "
            f"{sd:.0f} kB (sd)")  # fmt: skip


def summary_line(summary: str, start: str) -> str | None:
    return next((line for line in summary.splitlines() if line.startswith(start)), None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    p.add_argument("--sip-port", type=int, default=5270)
    p.add_argument("--metrics-port", type=int, default=9270)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--steady-from", type=float, default=10.0,
                   help="minute from which RSS is taken as steady (warm-up over)")  # fmt: skip
    p.add_argument("--out", type=Path, default=REPO / "bench" / "SOAK.md")
    p.add_argument("--keep", action="store_true",
                   help="keep the state directory (logs: var/soak-last-*)")  # fmt: skip
    args = p.parse_args()
    (REPO / "var").mkdir(exist_ok=True)  # not in a fresh clone
    work = Path(tempfile.mkdtemp(prefix="soak-", dir=REPO / "var"))
    svc_log, traffic_log = work / "service.log", work / "traffic.log"
    common = ["--peak", "--sip-port", str(args.sip_port), "--seed", str(args.seed)]
    svc_cmd = [str(HELPLINE), "demo", "--role", "service", "--state-dir", str(work / "state"),
               "--metrics-port", str(args.metrics_port), *common]  # fmt: skip
    traffic_cmd = [str(HELPLINE), "demo", "--role", "traffic", "--minutes", f"{args.minutes:g}",
                   "--state-dir", str(work / "traffic"), "--metrics-port", "0",
                   *common]  # fmt: skip
    commands = [" ".join(c).replace(str(REPO) + "/", "").replace(str(work), "$WORK")
                for c in (svc_cmd, traffic_cmd)]  # fmt: skip
    started = datetime.now(UTC)
    run = Run()
    # the wallboard on a port of its own: another service on the machine may hold the default
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HELPLINE_WEB_PORT": str(args.metrics_port + 1)}
    with svc_log.open("wb") as slog, traffic_log.open("wb") as tlog:
        service = subprocess.Popen(svc_cmd, stdout=slog, stderr=subprocess.STDOUT, env=env)
        traffic: subprocess.Popen[bytes] | None = None
        try:
            wait_for_line(svc_log, "service ready", service, 180)
            time.sleep(2)
            run.baseline_cpu_s, run.baseline_rss_kb = proc_cpu_rss(service.pid)
            traffic = subprocess.Popen(traffic_cmd, stdout=tlog, stderr=subprocess.STDOUT,
                                       env=env)  # fmt: skip
            wait_for_line(traffic_log, "volunteers on shift", traffic, 180)
            run.baseline_cpu_s, run.baseline_rss_kb = proc_cpu_rss(service.pid)
            t0 = time.monotonic()
            print(f"soak: {commands[1]}; samples every {args.interval:g} s", flush=True)
            next_at = t0 + args.interval
            limit = t0 + args.minutes * 60 + 600  # the phones stop on their own well before
            while time.monotonic() < limit:
                done = traffic.poll() is not None
                time.sleep(max(0.0, next_at - time.monotonic()) if not done else 0)
                x = sample(time.monotonic() - t0, service.pid,
                           None if traffic.poll() is not None else traffic.pid,
                           args.metrics_port)  # fmt: skip
                if traffic.poll() is not None and run.samples:
                    x.traffic_cpu_s = run.samples[-1].traffic_cpu_s
                run.samples.append(x)
                print(f"soak: {x.at / 60:5.1f} min rss {x.rss_kb / 1024:.1f} MiB cpu "
                      f"{x.cpu_s - run.baseline_cpu_s:.1f} s calls {x.in_progress} waiting "
                      f"{x.waiting} ended {dict(x.outcomes)}", flush=True)  # fmt: skip
                next_at += args.interval
                if done:
                    break
            else:
                traffic.send_signal(signal.SIGINT)
        finally:
            for proc in (traffic, service):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    summary = traffic_log.read_text(errors="replace")
    summary = "\n".join(line for line in summary.splitlines()
                        if not line.startswith("helpline demo:"))  # fmt: skip
    text = render(run, args, commands, started, summary, svc_log)
    args.out.write_text(text)
    print(text)
    if args.keep:
        print(f"soak: logs and state in {work}")
    else:
        for log in (svc_log, traffic_log):
            shutil.copy(log, REPO / "var" / f"soak-last-{log.name}")  # var/ is not committed
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
