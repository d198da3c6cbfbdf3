"""Failover time of active/standby behind Kamailio (issue 10), for an unplanned stop (SIGKILL)
and a planned one (SIGTERM: the leader drains and hands the lease over).

Kamailio (deploy/kamailio/kamailio.cfg) on 127.0.0.1, node A on 127.0.0.11 and node B on
127.0.0.12 with `ha_lease` on over one embedded PostgreSQL (started here, not counted), one
volunteer's PJSIP handset registered and on shift through Kamailio (tests/helpers/edge_cluster.py).
Each run stops the leading node, alternately with SIGKILL and SIGTERM, and times from the signal:
- `ready`: the other node answering /ready with 200 (it took the lease and the shared picture;
  polled every 10 ms). Bounded by `ha_retry_interval` (1 s): a standby tries the lock that often.
- `rung` / `answered`: a carrier call through Kamailio reaching the volunteer's handset via the
  other node, and being answered (a call refused with 503 or 408 meanwhile is tried again).
  The ring includes about 1 s of IVR (the caller is answered, hears the welcome and presses 1 a
  second later); the failover itself is the rest.
Then the stopped node starts again (it comes back as standby) and the next run stops the new
leader. Prints every run, then per signal the median and maximum. Asserts nothing; the machine
is shared, so figures are noisy.

    .venv/bin/python bench/bench_failover.py [--runs 6]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ivr.loader import DEFAULT_PLAN  # noqa: E402
from pbx.db.embedded import start_embedded  # noqa: E402
from tests.helpers.edge_cluster import Cluster, logged  # noqa: E402
from tests.helpers.ivr_helpline import without_wrap_up  # noqa: E402
from tests.helpers.pg_state import pg_state_dir  # noqa: E402
from tests.helpers.polling import until  # noqa: E402
from tests.helpers.served import Served, fresh_volunteers  # noqa: E402
from tests.helpers.volunteers import PASSWORD  # noqa: E402
from tests.peers.pjsua_phone import AsyncPjsuaPhone  # noqa: E402
from tests.peers.sipp import SippProcess  # noqa: E402

FIGURES = ("ready", "rung", "answered")


async def ready_after(node: Served, stopped: float, timeout: float = 60.0) -> float:
    """Seconds from `stopped` to `node` answering /ready with 200."""
    while time.monotonic() - stopped < timeout:
        if await asyncio.to_thread(node.ready) == 200:
            return time.monotonic() - stopped
        await asyncio.sleep(0.01)
    raise SystemExit(f"no takeover within {timeout} s")


async def first_answered_call(cluster: Cluster, stopped: float) -> tuple[float, float]:
    """Seconds from `stopped` to the handset ringing and to the call being answered."""
    while True:
        caller: SippProcess = cluster.call()
        try:
            phone = await cluster.rung(30.0, caller)
            if phone is None:
                await asyncio.sleep(0.2)  # refused (503/408): the carrier tries again
                continue
            rung = time.monotonic() - stopped
            await phone.answer(200)
            answered = time.monotonic() - stopped
            await asyncio.sleep(0.5)
            await phone.hangup()
            await asyncio.to_thread(caller.wait, 30)
            return rung, answered
        finally:
            caller.stop()


async def bench(runs: int, pg_url: str, tmp: Path) -> None:
    await fresh_volunteers(pg_url, tmp, "vera", password=PASSWORD)
    plan = without_wrap_up(DEFAULT_PLAN, tmp / "dialplan.yaml")
    cluster = Cluster.make(tmp, plan, pg_url)
    figures: dict[str, dict[str, list[float]]] = {
        "SIGKILL": {f: [] for f in FIGURES}, "SIGTERM": {f: [] for f in FIGURES},
    }  # fmt: skip
    try:
        await cluster.start()
        async with AsyncPjsuaPhone("vera") as vera:
            await cluster.on_shift(vera, "vera")
            await asyncio.sleep(1.0)  # the shift and binding are written behind
            leader, standby = cluster.a, cluster.b
            for run in range(runs):
                how = signal.SIGKILL if run % 2 == 0 else signal.SIGTERM
                leader.send(how)
                stopped = time.monotonic()
                ready, (rung, answered) = await asyncio.gather(
                    ready_after(standby, stopped), first_answered_call(cluster, stopped)
                )
                await asyncio.to_thread(leader.wait_exit, 30)
                for f, value in zip(FIGURES, (ready, rung, answered), strict=True):
                    figures[how.name][f].append(value)
                print(
                    f"run {run + 1}: {how.name} {name(cluster, leader)}; "
                    f"{name(cluster, standby)} ready after {ready:.2f} s, rung {rung:.2f} s, "
                    f"answered {answered:.2f} s",
                    flush=True,
                )
                leader.start()  # comes back as standby
                await until(lambda: started(leader), timeout=60)  # noqa: B023
                await until(lambda: leader.ready() == 503, timeout=10)  # noqa: B023
                await asyncio.sleep(2.0)  # Kamailio's probes see it (as down: standby)
                leader, standby = standby, leader
    finally:
        cluster.stop()
    for how, by_figure in figures.items():
        if by_figure["ready"]:
            print(
                f"{how} over {len(by_figure['ready'])} runs: "
                + ", ".join(
                    f"{f} median {statistics.median(v):.2f} s max {max(v):.2f} s"
                    for f, v in by_figure.items()
                )
            )


def started(served: Served) -> bool:
    return bool(logged(served, "service_started"))


def name(cluster: Cluster, served: Served) -> str:
    return "A" if served is cluster.a else "B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6, help="alternately SIGKILL and SIGTERM")
    args = parser.parse_args()
    with pg_state_dir() as pg, tempfile.TemporaryDirectory() as tmp:
        server = start_embedded(pg)
        try:
            asyncio.run(bench(args.runs, server.url, Path(tmp)))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
