"""`helpline drain`: a planned stop of the running service (SIGTERM): no new calls, the calls
in progress finish (up to `drain_timeout`), then the service exits."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from pbx.commands._running_service import signal_service


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "drain",
        help="stop the running service once its calls have ended",
        description="New calls get 503 with Retry-After (a proxy or carrier tries another node), "
        "/ready says draining, waiting callers are told and wait on (or overflow, setting "
        "drain_waiting), and the service exits after the last call or after drain_timeout. "
        "Sending SIGTERM does the same; a second SIGTERM stops at once.",
    )
    p.add_argument("--state-dir", type=Path, help="the service's data directory (default ./var)")
    p.add_argument("--wait", action="store_true", help="return only when the service has exited")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    found = signal_service(args.state_dir, signal.SIGTERM)
    if isinstance(found, int):
        return found
    pid, pid_file = found
    print(f"helpline: service {pid} is draining: no new calls, it exits after the last one")
    while args.wait and pid_file.exists():
        time.sleep(0.5)
    return 0
