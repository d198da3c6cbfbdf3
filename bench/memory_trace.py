"""What grows in the service's memory under steady load: `helpline demo --role service` run
under tracemalloc, with the simulated phones (`--role traffic`) in a second process; every
--interval seconds the service writes a tracemalloc snapshot, its live objects counted by type
(after a full collection, so garbage in reference cycles is not counted as live) and its RSS.
At the end the first snapshot after --warmup is compared with the last: the allocation sites
that grew most, the types whose live count grew, and the growth per call that ended between
them. Bench-only: the hook is this script's own wrapper around the CLI, not in `pbx/`.

    .venv/bin/python bench/memory_trace.py                       # 14 minutes, fast turnover
    .venv/bin/python bench/memory_trace.py --minutes 30 --peak   # the soak's load

tracemalloc makes the service several times slower and bigger; its figures are allocation
sites and counts, not RSS. A site that grows in step with the calls that ended, without bound,
is a leak; one that stops growing once full (a bounded cache, a pool) is fill.

With ``--rounds N`` the phones come in N separate runs of ``--round-minutes`` each instead, and
the service dumps at the quiet point after each run: no call, no live transaction and the same
handsets registered. Nothing a call owns is alive then, so the dumps compare like with like: what
still grows from one quiet point to the next, round after round, is a leak or a fill, and the
rounds tell them apart (a fill stops). A dump during load cannot: it may fall on more calls.

    .venv/bin/python bench/memory_trace.py --rounds 6              # ~30 minutes
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import linecache
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parent.parent
HELPLINE = REPO / ".venv" / "bin" / "helpline"
sys.path.insert(0, str(REPO))

from soak import scrape, total  # noqa: E402  (bench/ is on the path: the script's own directory)


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _dump(out: Path, n: int) -> None:
    """Snapshot n: live object counts by type after a full collection, and tracemalloc's."""
    before = gc.get_count()
    collected = gc.collect()
    objects = gc.get_objects()
    types = Counter(type(o).__qualname__ for o in objects)
    caches = {f"{f.__module__}.{f.__qualname__}": f.cache_info()._asdict() for f in objects
              if isinstance(f, functools._lru_cache_wrapper)
              and f.__module__.startswith(("pbx.", "queues."))}  # fmt: skip
    (out / f"types-{n}.json").write_text(json.dumps({
        "at": time.time(), "rss_kb": _rss_kb(), "gc_count_before": before,
        "cyclic_garbage_collected": collected, "objects": len(gc.get_objects()),
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "traced_kb": tracemalloc.get_traced_memory()[0] // 1024 if tracemalloc.is_tracing() else 0,
        "types": dict(types), "lru_caches": caches,
    }))  # fmt: skip
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(str(out / f"snap-{n}.pickle"))
    (out / f"done-{n}").touch()


def serve(argv: list[str]) -> None:
    """The child: the service as `helpline demo --role service` runs it, dumping on SIGUSR1 (in a
    thread, so the event loop is only paused for the dump)."""
    out = Path(os.environ["MEMTRACE_DIR"])
    count = [0]
    requests = threading.Semaphore(0)

    def worker() -> None:
        while True:
            requests.acquire()
            _dump(out, count[0])
            count[0] += 1

    threading.Thread(target=worker, daemon=True).start()
    signal.signal(signal.SIGUSR1, lambda *_: requests.release())
    from pbx.cli import main

    main(argv)


def _traceback_key(stat: tracemalloc.StatisticDiff) -> str:
    # tracemalloc lists the oldest frame first: show the innermost project frames first
    frames = [f for f in reversed(stat.traceback)
              if "/pbx/" in f.filename or "/queues/" in f.filename]  # fmt: skip
    shown = frames[:5] or list(reversed(stat.traceback))[:2]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in shown)


def report(out: Path, first: int, last: int, calls: int, top: int) -> str:
    a = json.loads((out / f"types-{first}.json").read_text())
    b = json.loads((out / f"types-{last}.json").read_text())
    minutes = (b["at"] - a["at"]) / 60
    traced = " (under tracemalloc)" if b.get("traced_kb") else ""
    lines = [f"between dump {first} and {last}: {minutes:.1f} minutes, {calls} calls ended; "
             f"RSS {a['rss_kb'] / 1024:.1f} -> {b['rss_kb'] / 1024:.1f} MiB{traced}; "
             f"live objects {a['objects']} -> {b['objects']}; cyclic garbage found by the "
             f"dumps' full collections: {a['cyclic_garbage_collected']}, "
             f"{b['cyclic_garbage_collected']}"]  # fmt: skip
    per = max(calls, 1)
    lines.append("\nlive objects by type, largest growth (after a full collection):")
    ta, tb = Counter(a["types"]), Counter(b["types"])
    grown = sorted(((tb[k] - ta[k], k) for k in tb.keys() | ta.keys()), reverse=True)
    for d, k in grown[:top]:
        if d <= 0:
            break
        lines.append(f"  {d:+8d}  {d / per:+8.2f}/call  {k} ({ta[k]} -> {tb[k]})")
    sa, sb = out / f"snap-{first}.pickle", out / f"snap-{last}.pickle"
    if sa.exists() and sb.exists():
        s1 = tracemalloc.Snapshot.load(str(sa))
        s2 = tracemalloc.Snapshot.load(str(sb))
        ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
                  tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
                  tracemalloc.Filter(False, linecache.__file__)]  # fmt: skip
        s1, s2 = s1.filter_traces(ignore), s2.filter_traces(ignore)
        total = sum(s.size for s in s2.statistics("filename")) - sum(
            s.size for s in s1.statistics("filename")
        )
        lines.append(f"\ntraced memory growth in all: {total / 1024:+.1f} KiB "
                     f"({total / per:+.0f} B/call)")  # fmt: skip
        lines.append("\nallocation sites (line), largest growth:")
        for st in s2.compare_to(s1, "lineno")[:top]:
            f = st.traceback[0]
            where = f"{f.filename.replace(str(REPO) + '/', '')}:{f.lineno}"
            lines.append(f"  {st.size_diff / 1024:+9.1f} KiB {st.count_diff:+7d} blocks "
                         f"{st.size_diff / per:+7.0f} B/call  {where}")  # fmt: skip
        lines.append("\nby traceback (project frames), largest growth:")
        for st in s2.compare_to(s1, "traceback")[:top]:
            lines.append(f"  {st.size_diff / 1024:+9.1f} KiB {st.count_diff:+7d} blocks  "
                         f"{_traceback_key(st)}")  # fmt: skip
    lines.append("\nthe project's lru caches at the last dump (hits, misses, size/max):")
    for name, c in sorted(b["lru_caches"].items()):
        rate = c["hits"] / max(1, c["hits"] + c["misses"])
        lines.append(
            f"  {name}: {c['hits']} hits, {c['misses']} misses ({rate:.0%} hits), "
            f"{c['currsize']}/{c['maxsize']}"
        )
    return "\n".join(lines)


LIVE = {  # gauges of what a call holds, read with each dump
    "legs": "helpline_sip_dialog_legs",
    "transactions": "helpline_sip_transactions",
    "media": "helpline_media_legs",
    "handsets": "helpline_registered_handsets",
}


def _metrics(port: int) -> dict[str, int]:
    """Calls ended (all outcomes) and the LIVE gauges, summed over their series."""
    metrics = scrape(port)
    names = {"ended": "helpline_calls_total", **LIVE}
    return {key: int(total(metrics, name)) for key, name in names.items()}


def _live_text(m: dict[str, int]) -> str:
    return ", ".join(f"{m[k]} {k}" for k in LIVE)


def _dump_service(service: subprocess.Popen[bytes], work: Path, n: int) -> dict[str, Any]:
    service.send_signal(signal.SIGUSR1)
    while not (work / f"done-{n}").exists():
        if service.poll() is not None:
            raise SystemExit(f"service exited: see {work / 'service.log'}")
        time.sleep(0.2)
    return cast("dict[str, Any]", json.loads((work / f"types-{n}.json").read_text()))


def _quiet(port: int, timeout: float) -> dict[str, int]:
    """Wait until no call leg and no transaction is alive (UDP transactions linger 32 s)."""
    deadline = time.monotonic() + timeout
    while True:
        m = _metrics(port)
        if (m["legs"] == 0 and m["transactions"] == 0) or time.monotonic() > deadline:
            return m
        time.sleep(2.0)


def rounds_table(marks: list[dict[str, int]], dumps: list[dict[str, Any]]) -> str:
    head = " round  calls ended   RSS MiB  traced KiB  live objects  " + "  ".join(LIVE)
    lines = ["\nat each quiet point (after a full collection):", head]
    for n, (m, d) in enumerate(zip(marks, dumps, strict=True)):
        lines.append(f" {n + 1:5d}  {m['ended']:11d}  {d['rss_kb'] / 1024:8.1f}  "
                     f"{d['traced_kb']:10d}  {d['objects']:12d}  "
                     + "  ".join(f"{m[k]:{len(k)}d}" for k in LIVE))  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=14.0)
    p.add_argument("--interval", type=float, default=120.0)
    p.add_argument("--warmup", type=float, default=4.0,
                   help="minutes before the first compared dump")  # fmt: skip
    p.add_argument("--frames", type=int, default=25)
    p.add_argument("--peak", action="store_true", help="the soak's load instead of fast turnover")
    p.add_argument("--callers-per-minute", type=float, default=30.0,
                   help="fast turnover arrivals (0.001: handsets on shift, no calls)")  # fmt: skip
    p.add_argument("--no-tracemalloc", action="store_true", help="object counts and RSS only")
    p.add_argument("--sip-port", type=int, default=5280)
    p.add_argument("--metrics-port", type=int, default=9280)
    p.add_argument("--backline-port", type=int, default=5089,
                   help="the simulated 113 (not the soak's 5079: both can run)")  # fmt: skip
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--rounds", type=int, default=0,
                   help="phones in N runs, a dump at the quiet point after each")  # fmt: skip
    p.add_argument("--round-minutes", type=float, default=3.0)
    p.add_argument("--settle", type=float, default=120.0,
                   help="at most N s for the calls and transactions to end")  # fmt: skip
    args = p.parse_args()
    (REPO / "var").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="memtrace-", dir=REPO / "var"))
    load = (["--peak"] if args.peak else
            ["--callers-per-minute", f"{args.callers_per_minute:g}", "--volunteers", "12",
             "--talk-seconds", "15", "--patience-seconds", "60"])  # fmt: skip
    common = [*load, "--sip-port", str(args.sip_port), "--seed", "14",
              "--backline-port", str(args.backline_port)]  # fmt: skip
    trace = [] if args.no_tracemalloc else ["-X", f"tracemalloc={args.frames}"]
    svc_cmd = [sys.executable, *trace, __file__, "--serve", "demo", "--role", "service",
               "--state-dir", str(work / "state"), "--metrics-port", str(args.metrics_port),
               *common]  # fmt: skip
    traffic_cmd = [
        str(HELPLINE),
        "demo",
        "--role",
        "traffic",
        "--minutes",
        f"{args.round_minutes if args.rounds else args.minutes:g}",
        "--state-dir",
        str(work / "traffic"),
        "--metrics-port",
        "0",
        *common,
    ]
    env = {**os.environ, "MEMTRACE_DIR": str(work), "PYTHONUNBUFFERED": "1",
           "HELPLINE_WEB_PORT": str(args.metrics_port + 1)}  # fmt: skip
    marks: list[dict[str, int]] = []  # the metrics at each dump
    dumps: list[dict[str, Any]] = []  # and what the service wrote at it
    with (work / "service.log").open("wb") as slog, (work / "traffic.log").open("ab") as tlog:
        service = subprocess.Popen(svc_cmd, stdout=slog, stderr=subprocess.STDOUT, env=env)
        traffic = None
        try:
            while "service ready" not in (work / "service.log").read_text(errors="replace"):
                if service.poll() is not None:
                    raise SystemExit(f"service exited: see {work / 'service.log'}")
                time.sleep(0.5)
            if args.rounds:
                for n in range(args.rounds):
                    traffic = subprocess.Popen(traffic_cmd, stdout=tlog, stderr=subprocess.STDOUT,
                                               env=env)  # fmt: skip
                    traffic.wait()
                    marks.append(_quiet(args.metrics_port, args.settle))
                    d = _dump_service(service, work, n)
                    dumps.append(d)
                    print(f"memtrace: round {n + 1} quiet, {marks[n]['ended']} calls ended, "
                          f"{_live_text(marks[n])}, {d['rss_kb'] / 1024:.1f} MiB, "
                          f"{d['traced_kb']} KiB traced", flush=True)  # fmt: skip
            else:
                traffic = subprocess.Popen(traffic_cmd, stdout=tlog, stderr=subprocess.STDOUT,
                                           env=env)  # fmt: skip
                t0 = time.monotonic()
                at = args.warmup * 60
                while at <= args.minutes * 60 + 1:
                    time.sleep(max(0.0, t0 + at - time.monotonic()))
                    marks.append(_metrics(args.metrics_port))
                    d = _dump_service(service, work, len(marks) - 1)
                    print(f"memtrace: dump {len(marks) - 1} at {at / 60:.1f} min, "
                          f"{marks[-1]['ended']} calls ended, {_live_text(marks[-1])}, "
                          f"{d['rss_kb'] / 1024:.1f} MiB", flush=True)  # fmt: skip
                    at += args.interval
        finally:
            for proc in (traffic, service):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    last = len(marks) - 1
    if last > 0:
        if args.rounds:
            print(rounds_table(marks, dumps))
        print(report(work, 0, last, marks[last]["ended"] - marks[0]["ended"], args.top))
        if last > 1:
            print("\n--- second half only ---")
            mid = last // 2
            print(report(work, mid, last, marks[last]["ended"] - marks[mid]["ended"], args.top))
    if args.keep:
        print(f"memtrace: dumps in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
