"""This service side by side with the peers a user would pick instead, in one run.

Sections (each its own module, in the shape of ``compare_table.py``):

- ``compare_setups``: the same sipp load (setups/s at rising rates, fixed hold time) against this
  service and against the sippy B2BUA with its embedded RTP proxy (rtp.io);
- ``compare_media``: the same media load (bridged calls, RTP both ways, plain and transcoded)
  against this service's relay and against rtpengine in userspace mode.

Installs nothing: when a peer or tool is missing it says what and how to install it, and stops
(``--skip-missing`` runs the sections that can run and names the others). The output is Markdown
with the date, the machine and the exact command, ready for ``bench/RESULTS.md``.

``--native``: this service with its compiled modules (``pbx/native.py``; build them first with
``scripts/build_native.py``), in this process's relay and in the service it starts alike;
without it, plain Python. The report's header says which.

    .venv/bin/python bench/compare.py [--quick] [--native] [--only setups|media]
                                      [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from compare_table import Table  # noqa: E402

SECTIONS = {
    "setups": ("compare_setups", "Call setups: this service and the sippy B2BUA (rtp.io)"),
    "media": ("compare_media", "Media relay: this service and rtpengine (userspace)"),
}


def this_service() -> str:
    from pbx import native

    if native.STATUS.active:
        return f"- This service: native, {native.STATUS.reason} (`--native`, pbx/native.py)"
    return "- This service: plain Python"


def machine() -> list[str]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    git = subprocess.run(
        ["git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return [
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {os.cpu_count()} cores ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        f"- Load average before the run: {load}",
        f"- Commit: {git or 'unknown'}",
        f"- Command: `{shlex.join([interpreter(), *sys.argv])}`",
    ]


def interpreter() -> str:
    try:
        return str(Path(sys.executable).relative_to(BENCH.parent))
    except ValueError:
        return sys.executable


def load(name: str) -> ModuleType:
    return importlib.import_module(SECTIONS[name][0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run of each section")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument("--skip-missing", action="store_true")
    parser.add_argument("--native", action="store_true", help="this service's compiled modules")
    parser.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    args = parser.parse_args()
    names = args.only or list(SECTIONS)
    if args.native:  # before the sections import pbx, which activates the build (and the
        os.environ["HELPLINE_NATIVE"] = "1"  # service started by compare_setups inherits it)
    modules = {name: load(name) for name in names}
    if args.native:
        from pbx import native

        if not native.STATUS.active:
            print(f"--native: the compiled modules cannot be used: {native.STATUS.reason}",
                  file=sys.stderr)  # fmt: skip
            return 2

    missing = {name: module.missing() for name, module in modules.items()}
    absent = {name: lines for name, lines in missing.items() if lines}
    for name, lines in absent.items():
        print(f"{name}: cannot run, missing:", file=sys.stderr)
        for line in lines:
            print(f"  - {line}", file=sys.stderr)
    if absent and not args.skip_missing:
        return 2

    report = ["# Side by side", "", *machine(), this_service(), ""]
    print("\n".join(report), flush=True)
    for name, module in modules.items():
        title = SECTIONS[name][1]
        if name in absent:
            skipped = f"## {title}\n\nNot run: " + "; ".join(absent[name]) + "\n"
            report.append(skipped)
            print(skipped, flush=True)
            continue
        started = time.monotonic()
        tables: list[Table] = module.run(quick=args.quick)
        header = f"## {title}\n\n({time.monotonic() - started:.0f} s)\n"
        print(header, flush=True)
        report.append(header)
        for table in tables:
            text = table.markdown()
            print(text, flush=True)
            report.append(text)
    if args.out:
        args.out.write_text("\n".join(report))
        print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
