"""The event loop's real-time priority (pbx/realtime.py): granted where allowed, and refused
with a reason that says how to allow it, never an error; the setting is checked.

Granted (as root) is asserted on a real `helpline serve` in tests/test_privileges.py.
"""

from __future__ import annotations

import json
import os
import pwd
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from pbx.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[1]
PROBE = (
    "import json, os; from pbx.realtime import request_realtime; r = request_realtime({prio});"
    "print(json.dumps([r.granted, r.priority, r.reason, os.sched_getscheduler(0)]))"
)


def _probe(priority: int, user: str | None = None) -> tuple[bool, int, str, int]:
    """request_realtime in a process of its own (a granted priority would stay with the test
    runner's thread otherwise), as ``user`` with no real-time allowance."""

    def unprivileged() -> None:
        resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
        if user is not None:
            entry = pwd.getpwnam(user)
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(prio=priority)], capture_output=True, text=True,
        check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=unprivileged,
    ).stdout  # fmt: skip
    granted, prio, reason, policy = json.loads(out)
    return granted, prio, reason, policy


def test_a_process_without_the_right_runs_at_normal_priority_and_says_how_to_allow_it() -> None:
    user = "nobody" if os.geteuid() == 0 else None  # root may always: become somebody else
    granted, priority, reason, policy = _probe(10, user)
    assert not granted and priority == 10
    assert "not permitted" in reason and "LimitRTPRIO=10" in reason and "= 0" in reason
    assert policy == os.SCHED_OTHER


def test_zero_leaves_the_priority_alone() -> None:
    granted, priority, reason, policy = _probe(0)
    assert (granted, priority, policy) == (False, 0, os.SCHED_OTHER)
    assert "disabled" in reason


@pytest.mark.skipif(os.geteuid() != 0, reason="granting SCHED_RR needs root here")
def test_root_gets_round_robin_reset_on_fork() -> None:
    granted, priority, _, policy = _probe(12)
    assert granted and priority == 12
    assert policy == os.SCHED_RR | os.SCHED_RESET_ON_FORK


@pytest.mark.parametrize("value", ["-1", "100", "high"])
def test_a_priority_out_of_range_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError, match="realtime_priority"):
        load_settings(env={"HELPLINE_REALTIME_PRIORITY": value})
