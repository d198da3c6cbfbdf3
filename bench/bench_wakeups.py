"""What waking up costs: the CPU of a fixed piece of the service's work, run back to back and
run with a sleep before each piece, as an event loop does when messages arrive one at a time.

The piece is one SIP INVITE parsed and its 100 Trying built and serialised (the INVITE of
``bench_parser.py``), repeated 1, 5 or 20 times (``--sizes``). With a gap, the process sleeps
before each piece (``time.sleep``: it leaves the CPU and is woken by the kernel, as an idle
event loop is from ``epoll_wait``). The CPU is the process's own (``time.process_time``),
pinned to one core. The extra CPU per piece over the back-to-back run is what one wake-up
costs: the sleep and wake system calls, the scheduler, and on a virtual machine the caches and
TLB the core lost to others while this process slept.

This is why ``bench_sip_calls.py`` and ``compare_setups.py`` print the event loop's wake-ups per
call: at 100 setups/s every message wakes the loop alone (about five times a call), at 400/s
messages queue up and one wake-up serves several. Prints figures only; asserts nothing.

    .venv/bin/python bench/bench_wakeups.py [--pieces 2000] [--cpu 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_parser import INVITE  # noqa: E402

from pbx.sip.message import Request, make_response  # noqa: E402
from pbx.sip.parser import parse_message  # noqa: E402


def piece(size: int) -> None:
    for _ in range(size):
        request = parse_message(INVITE)
        assert isinstance(request, Request)
        make_response(request, 100).to_bytes()


def cpu_per_piece(size: int, gap_ms: float, pieces: int) -> float:
    """Microseconds of this process's CPU per piece, with ``gap_ms`` of sleep before each."""
    piece(size)  # warm
    gap = gap_ms / 1000
    start = time.process_time()
    for _ in range(pieces):
        if gap:
            time.sleep(gap)
        piece(size)
    return (time.process_time() - start) / pieces * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pieces", type=int, default=2000, help="pieces per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 20],
                        help="messages per piece (the work one wake-up does)")  # fmt: skip
    parser.add_argument("--gaps", type=float, nargs="+", default=[0.5, 2, 10],
                        help="sleeps before each piece, ms")  # fmt: skip
    parser.add_argument("--cpu", type=int, default=0, help="core to pin to (-1: no pinning)")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per cell (median)")
    args = parser.parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    print(f"nproc={os.cpu_count()} pinned to core {args.cpu}; CPU us per piece (median of "
          f"{args.repeat}); extra = the cost of one wake-up")  # fmt: skip
    print(f"{'messages/piece':>14} {'back to back':>12} " + " ".join(
        f"{f'gap {g:g} ms':>12} {'extra':>7}" for g in args.gaps))  # fmt: skip
    for size in args.sizes:
        pieces = max(50, args.pieces // size)

        def median(gap: float, size: int = size, pieces: int = pieces) -> float:
            runs = sorted(cpu_per_piece(size, gap, pieces) for _ in range(args.repeat))
            return runs[len(runs) // 2]

        base = median(0)
        cells = []
        for gap in args.gaps:
            with_gap = median(gap)
            cells.append(f"{with_gap:>12.1f} {with_gap - base:>+7.1f}")
        print(f"{size:>14} {base:>12.1f} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
