"""`helpline serve` started as root gives up root once its sockets are bound, and still serves.

The service runs as a real subprocess on its defaults (embedded PostgreSQL in its state dir, the
IVR), under an interpreter the service user can read (a production install; the test runner's
own Python may live under /root), and is driven by sipp over loopback.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.db.embedded import EmbeddedPostgres
from pbx.privileges import ServiceUser, service_user, unreachable
from tests.helpers.pg_state import pg_state_dir
from tests.helpers.service import free_port
from tests.peers.sipp import run_sipp

REPO = Path(__file__).resolve().parents[1]
SERVICE_USER = "helpline"  # what scripts/bootstrap.sh creates

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping root needs root")


def _user() -> ServiceUser:
    try:
        return service_user(SERVICE_USER)
    except RuntimeError as exc:
        pytest.fail(f"{exc} (scripts/bootstrap.sh creates it when run as root)")


def _interpreter(user: ServiceUser) -> list[str]:
    """A Python 3.11 the service user can run, with the project's packages on its path."""
    site = sysconfig.get_paths()["purelib"]
    for python in (sys.executable, "/usr/bin/python3.11"):
        stdlib = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        if stdlib and all(unreachable(Path(p), user, 0o5) is None for p in (stdlib, site, REPO)):
            return [python, "-c", "from pbx.cli import main; main()"]
    pytest.skip("no Python 3.11 installation readable by the service user on this machine")


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    env["PYTHONPATH"] = f"{sysconfig.get_paths()['purelib']}:{REPO}"
    env["XDG_RUNTIME_DIR"] = "/tmp"
    env["HELPLINE_WEB_PORT"] = "none"  # 8080 may be taken on this machine; not under test here
    env.update({f"HELPLINE_{k.upper()}": v for k, v in settings.items()})
    return env


def _serve(command: list[str], state: Path, port: int, **settings: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *command, "serve", "--sip-host", "127.0.0.1", "--sip-port", str(port),
            "--tls-port", str(free_port()), "--metrics-port", "0", "--state-dir", str(state),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**settings),
        cwd=REPO,
    )  # fmt: skip


def _ids(pid: int) -> dict[str, list[int]]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    found = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            found[key] = [int(v) for v in value.split()]
    return found


def _scheduling(tid: int) -> tuple[int, int]:
    """A thread's (or process's) scheduling policy, without the reset-on-fork flag, and its
    real-time priority."""
    policy = os.sched_getscheduler(tid) & ~getattr(os, "SCHED_RESET_ON_FORK", 0)
    return policy, os.sched_getparam(tid).sched_priority


@pytest.fixture
def state() -> Iterator[Path]:
    with pg_state_dir() as base:  # reachable by other users, as a real install's would be
        yield base / "state"
        pgdata = base / "state" / "pg"
        if pgdata.exists():  # the dropped service could not stop its server: root does
            EmbeddedPostgres(pgdata.resolve(), "", "pgserver").stop(force=True)


@needs_root
def test_serve_as_root_drops_to_the_service_user_and_still_answers(state: Path) -> None:
    user = _user()
    command = _interpreter(user)
    port = free_port()
    proc = _serve(command, state, port)
    try:
        deadline = time.monotonic() + 90
        pid_file = state / "helpline.pid"
        while not pid_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        pid = int(pid_file.read_text())
        while _ids(pid)["Uid"][0] == 0:  # the drop follows the start at once
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        ids = _ids(pid)
        assert ids["Uid"] == [user.uid] * 4  # real, effective, saved and filesystem uid
        # The event loop's thread keeps its real-time priority (realtime_priority, default 10)
        # after the drop; nothing it started runs at real-time priority.
        assert _scheduling(pid) == (os.SCHED_RR, 10)
        others = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
        assert all(_scheduling(t) == (os.SCHED_OTHER, 0) for t in others), others
        assert ids["Gid"] == [user.gid] * 4
        assert 0 not in ids["Groups"]
        # it keeps the embedded database's group: new connections reach the server's socket
        pgdata = state / "pg"
        assert pgdata.stat().st_gid in ids["Groups"]
        assert stat.S_IMODE(pgdata.stat().st_mode) == 0o750
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        assert _scheduling(postmaster) == (os.SCHED_OTHER, 0)  # the database: normal priority

        target = f"127.0.0.1:{port}"
        run_sipp("uac_options", target, timeout_s=10).assert_ok()  # answered as before
        # A trunk call: answered by the IVR (media port, prompts and the plan read as the user).
        run_sipp("uac_call", target, service="09000767", pause_ms=1500, timeout_s=20).assert_ok()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # A normal stop prints nothing alarming: the embedded server is left running for the next
    # start (the service is no longer its owner), and pgserver's exit hook does not complain.
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert not (state / "helpline.pid").exists()  # the user could write its state dir
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(e["event"] == "privileges_dropped" for e in events)
    assert any(e["event"] == "realtime_priority" and e["priority"] == 10 for e in events)
    assert not [e for e in events if e.get("level") in ("error", "critical")], events
    owners = {p.name: p.stat().st_uid for p in state.iterdir() if p.name != "pg"}
    assert owners and set(owners.values()) == {user.uid}, owners
    assert stat.S_IMODE((state / "tls").stat().st_mode) == 0o700


@needs_root
def test_serve_as_root_refuses_to_start_with_a_missing_service_user(
    tmp_path: Path, pg_url: str
) -> None:
    absent = "helpline-no-such-user"
    with pytest.raises(KeyError):
        pwd.getpwnam(absent)
    proc = _serve(
        [str(Path(sys.executable).with_name("helpline"))], tmp_path / "state", free_port(),
        run_as_user=absent, database_url=pg_url,
    )  # fmt: skip
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"run_as_user {absent!r} does not exist" in err


def test_reachability_follows_the_mode_bits_of_every_parent() -> None:
    user = ServiceUser("someone", uid=4242, gid=4242, groups=(4242,))
    with pg_state_dir() as base:  # a directory every user may pass
        (base / "open" / "inner").mkdir(parents=True)
        (base / "closed" / "inner").mkdir(parents=True)
        (base / "open").chmod(0o755)
        (base / "closed").chmod(0o700)
        assert unreachable(base / "open" / "inner", user, 0o5) is None
        assert unreachable(base / "closed" / "inner", user, 0o5) == base / "closed"
        assert unreachable(base / "open" / "new", user, 0o7) == base / "open"  # no w on it
        if os.geteuid() == 0:
            (base / "closed").chmod(0o750)
            os.chown(base / "closed", 0, 4242)  # the user's group may pass now
            assert unreachable(base / "closed" / "inner", user, 0o5) is None
