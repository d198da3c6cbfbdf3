"""The embedded PostgreSQL server (pgserver) that runs when no external database is configured.

pgserver runs the server on a Unix socket inside the data directory (as user `pgserver` when we
are root, since postgres refuses to run as root) and keeps a list of the processes using it in
`.handle_pids.json`. A server left running by an earlier run is reused. We never let pgserver
stop it at exit: `stop()` does that explicitly, and only when no other live process (the
service while the CLI runs, or the other way round) still uses it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import structlog

from pbx.private_files import private_dir

log = structlog.get_logger()

_START_ATTEMPTS = 3


def _is_live_postgres(pid: int, pgdata: Path) -> bool:
    """Whether `pid` is a running (not zombie) postgres serving `pgdata`."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or str(proc.name()) != "postgres":
            return False
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.AccessDenied:
            return True
        return str(pgdata) in cmdline
    except psutil.NoSuchProcess:
        return False


def _is_live(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _clear_stale_lock(pgdata: Path) -> None:
    """Remove postmaster.pid and the socket lock when the process they name is gone.

    pgserver (and postgres itself) treat any existing pid as a running server, which is wrong
    for a zombie or a pid reused by an unrelated process after a crash or reboot.
    """
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
    except FileNotFoundError:
        return
    try:
        # Negative: a single-user backend, as initdb's bootstrap runs.
        pid = abs(int(lines[0]))
    except (IndexError, ValueError):
        pid = 0
    if pid and _is_live_postgres(pid, pgdata):
        # Running; if it is still starting up, give it a moment to become ready.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            lines = pidfile.read_text().splitlines() if pidfile.exists() else []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
            time.sleep(0.2)
        return
    log.warning("db.embedded.stale_pidfile", pid=pid)
    if len(lines) >= 5 and lines[4].strip() and lines[3].strip():
        sock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}"
        for path in (sock, sock.with_name(sock.name + ".lock")):
            path.unlink(missing_ok=True)
    pidfile.unlink(missing_ok=True)


def _remove_failed_init(pgdata: Path) -> None:
    """An initdb that failed half-way leaves files behind, and initdb wants an empty directory."""
    if pgdata.is_dir():
        for child in pgdata.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _import_pgserver() -> Any:
    # platformdirs warns about XDG_RUNTIME_DIR at import; pgserver copes, so keep stderr clean.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    url: str
    system_user: str | None

    def _handles(self) -> Path:
        return self.pgdata / ".handle_pids.json"

    def _other_live_users(self) -> list[int]:
        """Prune our pid and dead ones from pgserver's handle list; return the rest."""
        path = self._handles()
        try:
            pids = [int(p) for p in json.loads(path.read_text())]
        except (FileNotFoundError, ValueError, TypeError):
            pids = []
        others = [p for p in pids if p != os.getpid() and _is_live(p)]
        path.write_text(json.dumps(others))
        return others

    def stop(self, force: bool = False) -> bool:
        """Stop the server unless another live process uses it (or `force`); True if stopped.

        A service that dropped root (pbx/privileges.py) is not the server's owner: it leaves
        the server running, for the next start (or `helpline` run as root) to reuse or stop."""
        try:
            return self._stop(force)
        except PermissionError:
            log.info("db.embedded.left_running", reason="not_owner")
            return False

    def _stop(self, force: bool) -> bool:
        pgserver = _import_pgserver()
        with pgserver.PostgresServer._lock:
            pgserver.PostgresServer._instances.pop(self.pgdata, None)
            others = self._other_live_users()
            if others and not force:
                log.info("db.embedded.left_running", users=len(others))
                return False
            # Signal the postmaster ourselves rather than run pg_ctl as the server's user: that
            # user may no longer be able to reach the data directory (a parent made private).
            for sig, mode in ((signal.SIGINT, "fast"), (signal.SIGQUIT, "immediate")):
                pid = self._running()
                if pid is None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                deadline = time.monotonic() + 60
                while self._running() == pid and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self._running() is not None:
                    log.warning("db.embedded.stop_slow", mode=mode)
            if self._running() is not None:
                raise RuntimeError(f"could not stop the embedded PostgreSQL in {self.pgdata}")
            log.info("db.embedded.stopped")
            return True

    def _running(self) -> int | None:
        """The pid of the live postmaster serving our data directory, if any."""
        try:
            pid = abs(int((self.pgdata / "postmaster.pid").read_text().splitlines()[0]))
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if _is_live_postgres(pid, self.pgdata) else None


def start_embedded(state_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to an already running) PostgreSQL with its data in `state_dir/pg`."""
    private_dir(state_dir)  # as root, pgserver opens it for traversal by its own user
    pgdata = (state_dir / "pg").resolve()
    pgserver = _import_pgserver()
    last_error: Exception | None = None
    for attempt in range(1, _START_ATTEMPTS + 1):
        if pgdata.exists():
            _clear_stale_lock(pgdata)
        # A cached handle from an earlier start in this process may describe a stopped server.
        pgserver.PostgresServer._instances.pop(pgdata, None)
        try:
            server = pgserver.get_server(pgdata, cleanup_mode=None)
            # stop() keeps pgserver's handle list. pgserver's own exit hook would do the same
            # under a lock file made by whoever started first, and a service that dropped root
            # cannot open it: a PermissionError traceback on every stop.
            atexit.unregister(server._cleanup)
            url = str(server.get_uri())
            log.info("db.embedded.ready", pgdata=str(pgdata))
            return EmbeddedPostgres(pgdata=pgdata, url=url, system_user=server.system_user)
        except (subprocess.SubprocessError, AssertionError, OSError, ValueError) as exc:
            # e.g. backends of a killed server still hold its shared memory for a moment.
            last_error = exc
            log.warning("db.embedded.start_failed", attempt=attempt, error=type(exc).__name__)
            if not (pgdata / "PG_VERSION").exists():
                _remove_failed_init(pgdata)
            time.sleep(attempt)
    raise RuntimeError(f"could not start embedded PostgreSQL in {pgdata}") from last_error
