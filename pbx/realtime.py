"""Real-time scheduling for the event loop's thread, so media keeps its pace on a busy machine.

Every prompt, hold track and comfort-noise stream leaves on the shared 20 ms ticker, all in one
burst per round (``pbx/media/ticker.py``). At normal priority the kernel may run another process
in the middle of that burst: the packets after it leave milliseconds late and the callers'
jitter buffers see it (500 prompts, `bench/bench_playback_jitter.py`: p99 interval deviation
2.5-3.9 ms; 0.7-1.3 ms at real-time priority). Telephony servers run their media at real-time
priority for that reason (FreeSWITCH's packaged unit, Asterisk's ``-p``, rtpengine's
``--scheduling``).

``SCHED_RR`` with ``SCHED_RESET_ON_FORK``: only the calling thread (the event loop's) gets it.
Threads and processes it starts later (the embedded PostgreSQL, executor threads) run at normal
priority, so a database checkpoint never competes with the media and a runaway child cannot
hold a core. The kernel's real-time throttling (95% of each second by default) keeps even a
runaway loop from locking the machine. The priority is kept when ``serve`` gives up root.

Allowed for root, for a process with CAP_SYS_NICE, or within RLIMIT_RTPRIO (systemd:
``LimitRTPRIO=``; PAM: ``rtprio`` in limits.conf). Refused otherwise: the service then runs at
normal priority and says so once, with how to allow it.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

__all__ = ["MAX_PRIORITY", "Realtime", "request_realtime"]

MAX_PRIORITY = 99  # SCHED_RR priorities are 1..99 on Linux


@dataclass(frozen=True)
class Realtime:
    """What ``request_realtime`` achieved: ``granted`` the priority, or why not."""

    priority: int
    granted: bool
    reason: str = ""


def request_realtime(priority: int) -> Realtime:
    """Run the calling thread at ``SCHED_RR`` ``priority`` (0: leave it as it is).

    Never raises for a refusal: the service must start either way."""
    if priority <= 0:
        return Realtime(0, False, "disabled (realtime_priority = 0)")
    if not hasattr(os, "SCHED_RR") or not hasattr(os, "sched_setscheduler"):
        return Realtime(priority, False, "this platform has no SCHED_RR")
    policy = os.SCHED_RR | getattr(os, "SCHED_RESET_ON_FORK", 0)
    try:
        os.sched_setscheduler(0, policy, os.sched_param(min(priority, MAX_PRIORITY)))
    except PermissionError:
        if os.geteuid() == 0:  # e.g. a container, or a cgroup without a real-time budget
            return Realtime(
                priority,
                False,
                "refused for root here (a container or a cgroup "
                "without a real-time budget?); set realtime_priority = 0 to silence",
            )
        soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
        return Realtime(
            priority, False,
            f"not permitted (not root, no CAP_SYS_NICE, RLIMIT_RTPRIO {soft}): allow it with "
            f"LimitRTPRIO={priority} in the systemd unit or rtprio in limits.conf, or set "
            "realtime_priority = 0",
        )  # fmt: skip
    except OSError as exc:
        return Realtime(priority, False, f"refused by the kernel: {exc.strerror}")
    return Realtime(min(priority, MAX_PRIORITY), True)
