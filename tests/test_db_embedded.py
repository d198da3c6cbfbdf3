"""The embedded PostgreSQL: start, reuse, stale state after crashes, sharing between processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from pbx.db.database import open_database
from pbx.db.embedded import start_embedded
from tests.helpers.pg_state import pg_state_dir

PYTHON = sys.executable


@pytest.fixture
def state() -> Iterator[Path]:
    with pg_state_dir() as path:
        yield path


def postmaster_pid(state_dir: Path) -> int | None:
    pidfile = state_dir / "pg" / "postmaster.pid"
    if not pidfile.exists():
        return None
    return int(pidfile.read_text().splitlines()[0])


def running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def can_query(url: str) -> bool:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return bool(await conn.fetchval("SELECT 1") == 1)
    finally:
        await conn.close()


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-c", code, *args], capture_output=True, text=True, timeout=120, check=True
    )


async def test_open_database_embedded_migrates_and_close_stops(state: Path) -> None:
    db = await open_database(None, state)
    try:
        assert db.embedded is not None
        assert await db.pool.fetchval("SELECT max(version) FROM schema_version") >= 1
        pid = postmaster_pid(state)
        assert running(pid)
    finally:
        await db.close()
    assert not running(pid)


async def test_server_left_running_by_a_crashed_run_is_reused(state: Path) -> None:
    # A process starts the server and dies without stopping it.
    run_python(
        "import os, sys; from pathlib import Path; from pbx.db.embedded import start_embedded;"
        "start_embedded(Path(sys.argv[1])); os._exit(0)",
        str(state),
    )
    pid = postmaster_pid(state)
    assert running(pid)
    server = start_embedded(state)
    try:
        assert postmaster_pid(state) == pid  # attached, not restarted
        assert await can_query(server.url)
    finally:
        # The crashed process is still listed as a user; it is dead, so stop() really stops.
        assert server.stop()
    assert not running(pid)


async def test_stale_pidfile_naming_an_unrelated_live_process(state: Path) -> None:
    server = start_embedded(state)
    pidfile = state / "pg" / "postmaster.pid"
    lines = pidfile.read_text().splitlines()
    server.stop()
    # After a reboot the pid in a leftover postmaster.pid may belong to anything: here, us.
    lines[0] = str(os.getpid())
    pidfile.write_text("\n".join(lines) + "\n")
    os.chmod(pidfile, 0o600)
    server = start_embedded(state)
    try:
        assert postmaster_pid(state) != os.getpid()
        assert await can_query(server.url)
    finally:
        server.stop()


async def test_restart_after_server_was_killed(state: Path) -> None:
    server = start_embedded(state)
    pid = postmaster_pid(state)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    server = start_embedded(state)
    try:
        assert postmaster_pid(state) != pid
        assert await can_query(server.url)
    finally:
        server.stop()


async def test_server_in_use_by_another_process_is_not_stopped(state: Path) -> None:
    # Another process (say the service) uses the server and keeps running.
    holder = subprocess.Popen(
        [
            PYTHON,
            "-c",
            "import sys; from pathlib import Path; from pbx.db.embedded import start_embedded;"
            "start_embedded(Path(sys.argv[1])); print('up', flush=True); sys.stdin.read()",
            str(state),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    while (line := holder.stdout.readline()) and line.strip() != "up":
        pass  # structlog's default output goes to stdout too
    assert line.strip() == "up"
    server = start_embedded(state)  # e.g. the CLI
    try:
        assert not server.stop()
        assert await can_query(server.url)
        holder.stdin.close()
        holder.wait(timeout=60)
        assert server.stop()  # the other user has gone: now it stops
        assert not running(postmaster_pid(state))
    finally:
        holder.kill()
        holder.wait(timeout=60)
        server.stop(force=True)


async def test_open_database_reports_unreachable_server(state: Path) -> None:
    with pytest.raises(OSError):
        await open_database("postgresql://postgres@127.0.0.1:1/postgres", state)
