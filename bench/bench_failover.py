"""Failover time behind Kamailio: from SIGKILL of the leading node to the first carrier call
answered by a volunteer via the other node (issue 10).

Kamailio (deploy/kamailio/kamailio.cfg) on 127.0.0.1, node A on 127.0.0.11 and node B on
127.0.0.12 over one embedded PostgreSQL, one volunteer's PJSIP handset registered and on shift
through Kamailio (tests/edge_cluster.py). Each round kills the leader, has the carrier call
through Kamailio (a call refused with 503 or 408 while nobody leads is retried) until the
handset rings, answers it and hangs up, then starts the killed node again (it comes back as
standby) before the next round kills the new leader. Printed per round: seconds to the ring
and to the answer; then the median. The ring includes about 1 s of IVR (the caller is answered,
hears the welcome and presses 1 a second later); the node failover itself is the rest.
Asserts nothing; the machine is shared, so figures are noisy.

    .venv/bin/python bench/bench_failover.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
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
from tests.edge_cluster import Cluster, logged  # noqa: E402
from tests.peers.pjsua_phone import AsyncPjsuaPhone  # noqa: E402
from tests.peers.sipp import SippProcess  # noqa: E402
from tests.pg_state import pg_state_dir  # noqa: E402
from tests.polling import until  # noqa: E402
from tests.served import Served, fresh_volunteers  # noqa: E402
from tests.test_ivr_calls import PASSWORD, without_wrap_up  # noqa: E402


async def first_answered_call(cluster: Cluster, killed: float) -> tuple[float, float]:
    """Seconds from `killed` to the handset ringing and to the call being answered."""
    while True:
        caller: SippProcess = cluster.call()
        try:
            phone = await cluster.rung(30.0, caller)
            if phone is None:
                await asyncio.sleep(0.2)  # refused (503/408): the carrier tries again
                continue
            rung = time.monotonic() - killed
            await phone.answer(200)
            answered = time.monotonic() - killed
            await asyncio.sleep(0.5)
            await phone.hangup()
            await asyncio.to_thread(caller.wait, 30)
            return rung, answered
        finally:
            caller.stop()


async def bench(rounds: int, pg_url: str, tmp: Path) -> None:
    await fresh_volunteers(pg_url, tmp, "vera", password=PASSWORD)
    plan = without_wrap_up(DEFAULT_PLAN, tmp / "dialplan.yaml")
    cluster = Cluster.make(tmp, plan, pg_url)
    results: list[tuple[float, float]] = []
    try:
        await cluster.start()
        async with AsyncPjsuaPhone("vera") as vera:
            await cluster.on_shift(vera, "vera")
            await asyncio.sleep(1.0)  # the shift and binding are written behind
            leader, standby = cluster.a, cluster.b
            for n in range(1, rounds + 1):
                leader.send(signal.SIGKILL)
                killed = time.monotonic()
                leader.wait_exit(10)
                rung, answered = await first_answered_call(cluster, killed)
                results.append((rung, answered))
                print(
                    f"round {n}: killed {name(cluster, leader)}; rung via {name(cluster, standby)}"
                    f" after {rung:.2f} s, answered {answered:.2f} s"
                )
                leader.start()  # comes back as standby
                await until(functools.partial(started, leader), timeout=60)
                await asyncio.sleep(2.0)
                leader, standby = standby, leader
    finally:
        cluster.stop()
    if results:
        rung = statistics.median(r for r, _ in results)
        answered = statistics.median(a for _, a in results)
        print(f"median over {len(results)} rounds: rung {rung:.2f} s, answered {answered:.2f} s")


def started(served: Served) -> bool:
    return bool(logged(served, "service_started"))


def name(cluster: Cluster, served: Served) -> str:
    return "A" if served is cluster.a else "B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with pg_state_dir() as pg, tempfile.TemporaryDirectory() as tmp:
        server = start_embedded(pg)
        try:
            asyncio.run(bench(args.rounds, server.url, Path(tmp)))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
