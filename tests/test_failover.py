"""The loss of a machine, with Kamailio in front (issue 10): node A (the leader) is killed with
SIGKILL while callers wait; a new carrier call reaches a volunteer via node B within 10 s,
without any handset registering again; no volunteer ever has two calls; when A comes back it
stays standby, and calls keep going to B.

Kamailio on 127.0.0.1 (the shipped deploy/kamailio/kamailio.cfg), A on 127.0.0.11, B on
127.0.0.12, one PostgreSQL; the volunteers' PJSIP handsets register and log in through
Kamailio; the carrier (sipp) calls through Kamailio too (tests/edge_cluster.py)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg

from ivr.loader import DEFAULT_PLAN
from tests.helpers.edge_cluster import Cluster, logged, most_calls_at_once
from tests.helpers.ivr_helpline import without_wrap_up
from tests.helpers.polling import until
from tests.helpers.served import fresh_volunteers
from tests.helpers.volunteers import PASSWORD
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.sipp import SippProcess

FAILOVER_LIMIT = 10.0  # seconds from killing the leader to a call ringing a volunteer via B


async def stored(pg_url: str) -> bool:
    """Both volunteers on shift and both handsets' bindings (with Kamailio's Path) in the
    shared database (written behind by A)."""
    conn = await asyncpg.connect(pg_url)
    try:
        states = await conn.fetch("select state from shifts")
        paths = await conn.fetch("select path from registrations")
    finally:
        await conn.close()
    return (
        sorted(r["state"] for r in states) == ["available", "available"]
        and len(paths) == 2
        and all(r["path"] and "received=sip:127.0.0.2:" in r["path"] for r in paths)
    )


async def answer_and_hang_up(phone: AsyncPjsuaPhone, caller: SippProcess) -> None:
    """The volunteer answers, talks a moment and ends the call; the caller saw it end."""
    await phone.answer(200)
    await asyncio.sleep(1.0)
    await phone.hangup()
    result = await asyncio.to_thread(caller.wait, 30)
    result.assert_ok()


async def test_a_killed_leader_behind_kamailio_fails_over_to_the_standby(
    tmp_path: Path, pg_url: str
) -> None:
    await fresh_volunteers(pg_url, tmp_path, "vera", "wim", password=PASSWORD)
    plan = without_wrap_up(DEFAULT_PLAN, tmp_path / "dialplan.yaml")
    cluster = Cluster.make(tmp_path, plan, pg_url)
    callers: list[SippProcess] = []
    try:
        await cluster.start()
        async with AsyncPjsuaPhone("vera") as vera, AsyncPjsuaPhone("wim") as wim:
            await cluster.on_shift(vera, "vera")
            await cluster.on_shift(wim, "wim")
            await until(lambda: bool(logged(cluster.a, "volunteer_state")), timeout=10)
            started = time.monotonic()
            while not await stored(pg_url):
                assert time.monotonic() - started < 10, "not written behind within 10 s"
                await asyncio.sleep(0.1)

            # Two calls in progress on A (one per volunteer), and a third caller waiting.
            for _ in range(2):
                callers.append(cluster.call())
                phone = await cluster.rung(timeout=30)
                assert phone is not None, cluster.describe()
                await phone.answer(200)
            callers.append(cluster.call())
            await until(lambda: len(logged(cluster.a, "queue_announcement")) >= 3, timeout=30)

            cluster.a.send(signal.SIGKILL)
            killed = time.monotonic()
            cluster.a.wait_exit(10)
            # the volunteers hear silence and hang up (their BYEs go nowhere: A is gone)
            await asyncio.gather(vera.hangup(), wim.hangup())

            # The carrier calls again (a 503 from Kamailio while no node leads: again) until
            # a volunteer's handset rings via B.
            phone = None
            while phone is None:
                assert time.monotonic() - killed < FAILOVER_LIMIT, cluster.describe()
                caller = cluster.call()
                callers.append(caller)
                phone = await cluster.rung(FAILOVER_LIMIT - (time.monotonic() - killed), caller)
                if phone is None:
                    await asyncio.sleep(0.2)  # refused (503/408): the carrier tries again
            failover = time.monotonic() - killed
            assert failover <= FAILOVER_LIMIT, cluster.describe()
            assert logged(cluster.b, "inbound_call"), cluster.describe()
            await answer_and_hang_up(phone, caller)

            # A comes back while B leads: it stays standby, and the next call goes via B.
            cluster.a.start()
            await until(lambda: bool(logged(cluster.a, "service_started")), timeout=60)
            await asyncio.sleep(2.5)  # a few tries of the lease, a few probes by Kamailio
            assert cluster.a.ready() == 503 and cluster.b.ready() == 200
            caller = cluster.call()
            callers.append(caller)
            phone = await cluster.rung(timeout=30)
            assert phone is not None, cluster.describe()
            await answer_and_hang_up(phone, caller)
            assert len(logged(cluster.b, "inbound_call")) == 2
            assert not logged(cluster.a, "inbound_call", 2)
            assert not logged(cluster.a, "lease_acquired", 2)

            for handset in (vera, wim):
                # registered once, through Kamailio, and never again
                assert len(handset.events("reg_state")) == 1, handset.events("reg_state")
                assert most_calls_at_once(handset.events()) == 1
            [takeover] = logged(cluster.b, "takeover")
            assert (takeover["on_shift"], takeover["calls_lost"]) == (2, 2), takeover
    except BaseException:
        print(cluster.describe())
        raise
    finally:
        for c in callers:
            c.stop()
        cluster.stop()
    print(f"failover: a volunteer rung via B {failover:.2f} s after A was killed")
