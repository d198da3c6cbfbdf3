"""Free ports for the tests' listeners: SIP (UDP and TCP), TLS, metrics, web, peers.

A port taken by binding to port 0 comes from the kernel's ephemeral range, and is free only
until something else binds: every outgoing TCP connection (the service's to PostgreSQL, a
handset's) takes its local port from that same range, and a second pick can return the very
port the first one did (seen in CI: a service's TLS port already in use when it started). So a
port here is picked at random above the ephemeral range when there is room (Linux's default
range ends at 60999), else below it, checked free for UDP and TCP both, and never handed out
twice within a while in this process: the tests of one run pick ports one after another.
The ranges below 32768 belong to RTP (services 20000-31999, sipp's media 10000-19999).

Under pytest-xdist (scripts/test.sh runs two workers) each worker picks from its own share of
a range (`worker_share`): two processes picking at random from the same ports would sooner or
later hand out the same one between one's check and its bind (seen once in 1,354 tests).
"""

from __future__ import annotations

import os
import random
import socket
from collections import deque
from pathlib import Path

__all__ = ["free_port", "worker_share"]

_RECENT: deque[int] = deque(maxlen=2000)  # handed out lately: the range holds more than this
_RANDOM = random.SystemRandom()
_HEADROOM = 64


def _range() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    # The top _HEADROOM ports of a range are never picked: peers take RTP ranges that start at
    # a free port (baresip and pyVoIP up to +20, sipp's media +3), which must stay below 65536.
    if high <= 65535 - 4000:
        return range(high + 1, 65536 - _HEADROOM)
    return range(4000, min(low, 10000) - _HEADROOM)  # below the sipp media and RTP ranges


def worker_share(ports: range, headroom: int = _HEADROOM) -> range:
    """This pytest-xdist worker's slice of ``ports`` (all of them outside xdist), without its
    top ``headroom`` ports: a peer's RTP range starting at a picked port stays in the slice."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    if count <= 1 or not worker.isdigit():
        return ports
    size = len(ports) // count
    index = int(worker) % count
    share = ports[index * size : (index + 1) * size]  # a range, with the same step
    return range(share.start, share.stop - headroom, share.step)


_PORTS = worker_share(_range())  # the machine's ephemeral range does not change during a run


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now for both UDP and TCP on ``host``, and not given out lately."""
    ports = _PORTS
    for _ in range(200):
        port = _RANDOM.choice(ports)
        if port in _RECENT:
            continue
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((host, port))
        except OSError:
            continue
        _RECENT.append(port)
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")
