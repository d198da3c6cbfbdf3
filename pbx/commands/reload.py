"""`helpline reload`: ask the running service to load dialplan.yaml again (SIGHUP)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from pbx.config import ConfigError, load_settings


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
    try:
        settings = load_settings(state_dir=args.state_dir)
    except ConfigError as exc:
        print(f"helpline: configuration error: {exc}", file=sys.stderr)
        return 2
    pid_file = settings.state_dir / "helpline.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        print(f"helpline: no running service found via {pid_file}: {exc}", file=sys.stderr)
        return 1
    print(f"helpline: asked service {pid} to reload its dialplan (see its log for the result)")
    return 0
