"""`helpline reload`: ask the running service to load dialplan.yaml again (SIGHUP)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from pbx.commands._running_service import signal_service


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reload",
        help="reload the dialplan of the running service",
        description="Validate-and-swap the dialplan in the running service (like SIGHUP). "
        "Check it first with `helpline check`; an invalid plan is refused and the old one stays.",
    )
    p.add_argument("--state-dir", type=Path, help="the service's data directory (default ./var)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    found = signal_service(args.state_dir, signal.SIGHUP)
    if isinstance(found, int):
        return found
    print(f"helpline: asked service {found[0]} to reload its dialplan (see its log for the result)")
    return 0
