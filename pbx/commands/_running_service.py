"""Signalling the running service, found by the pid file in its state directory (`helpline
reload`, `helpline drain`)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from pbx.config import ConfigError, load_settings


def signal_service(state_dir: Path | None, sig: signal.Signals) -> tuple[int, Path] | int:
    """Send `sig` to the service: (its pid, its pid file), or an exit status after saying why
    on stderr (2: bad configuration, 1: no running service)."""
    try:
        settings = load_settings(state_dir=state_dir)
    except ConfigError as exc:
        print(f"helpline: configuration error: {exc}", file=sys.stderr)
        return 2
    pid_file = settings.state_dir / "helpline.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, sig)
    except (OSError, ValueError) as exc:
        print(f"helpline: no running service found via {pid_file}: {exc}", file=sys.stderr)
        return 1
    return pid, pid_file
