"""Failover time of the active/standby lease (issue 10): from the leading node being killed
(SIGKILL) or stopped (SIGTERM, a planned stop) to the standby answering /ready with 200.

One embedded PostgreSQL (started here, not counted) is shared by two `helpline serve` nodes on
127.0.0.11 and 127.0.0.12 with `ha_lease` on. Each run stops the node that leads, times the
other one's takeover (polling /ready every 10 ms), starts the stopped node again and waits
until it stands by. The takeover is bounded by `ha_retry_interval` (1 s): the standby tries
the lock once a second. Prints every run and the median and maximum. Asserts nothing.

    .venv/bin/python bench/bench_failover.py [--runs 10] [--retry-interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ivr.loader import DEFAULT_PLAN  # noqa: E402
from pbx.db.embedded import start_embedded  # noqa: E402
from tests.pg_state import pg_state_dir  # noqa: E402
from tests.served import Served, fresh_volunteers  # noqa: E402


async def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    raise SystemExit(f"{what}: not within {timeout} s")


def standing_by(node: Served) -> bool:
    try:
        return any(e["event"] == "standby" for e in node.events())
    except OSError:
        return False


async def bench(runs: int, retry: float) -> None:
    with pg_state_dir() as pg_dir, tempfile.TemporaryDirectory() as tmp:
        server = start_embedded(pg_dir)
        try:
            await fresh_volunteers(server.url, Path(tmp), "vera", password="bench-pass-word-7")
            env = {"HELPLINE_HA_LEASE": "true", "HELPLINE_HA_RETRY_INTERVAL": str(retry),
                   "HELPLINE_LOG_LEVEL": "info"}  # fmt: skip
            nodes = [
                Served(
                    Path(tmp) / name / "state",
                    DEFAULT_PLAN,
                    server.url,
                    host=host,
                    env={**env, "HELPLINE_NODE_NAME": name},
                )  # fmt: skip
                for name, host in (("a", "127.0.0.11"), ("b", "127.0.0.12"))
            ]
            for node in nodes:
                node.state_dir.parent.mkdir(parents=True)
            leader, standby = nodes
            leader.start()
            await wait_for("a leads", lambda: leader.ready() == 200)
            standby.start()
            await wait_for("b stands by", lambda: standing_by(standby))
            figures: dict[str, list[float]] = {"SIGKILL": [], "SIGTERM": []}
            try:
                for run in range(runs):
                    how = signal.SIGKILL if run % 2 == 0 else signal.SIGTERM
                    await asyncio.sleep(retry * (run % 3) / 3)  # vary the phase of the retries
                    leader.send(how)
                    took = await wait_for("takeover", lambda: standby.ready() == 200)  # noqa: B023
                    leader.wait_exit(30)
                    figures[how.name].append(took)
                    print(f"run {run + 1}: {how.name} -> the standby serves in {took:.3f} s")
                    leader.start()
                    await wait_for("back as standby", lambda: standing_by(leader))  # noqa: B023
                    leader, standby = standby, leader
            finally:
                for node in nodes:
                    node.stop()
            for name, values in figures.items():
                if values:
                    print(f"{name}: median {statistics.median(values):.3f} s, "
                          f"max {max(values):.3f} s over {len(values)} runs")  # fmt: skip
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--retry-interval", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(bench(args.runs, args.retry_interval))


if __name__ == "__main__":
    main()
