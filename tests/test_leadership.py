"""Active/standby over one PostgreSQL: only the node holding the leadership lease answers and
distributes calls; when it is killed (SIGKILL: PostgreSQL drops its session and the lock),
the standby takes over within seconds and the volunteer who logged in at the dead node gets
the next call without touching the handset; the node that comes back stays standby.

Two `helpline serve` processes, A on 127.0.0.11 and B on 127.0.0.12, share the test's
embedded PostgreSQL; the volunteer's handset (PJSIP) is on the handsets' address, the carrier
(sipp) on 127.0.0.1, the trunk address of both nodes."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from ivr.loader import DEFAULT_PLAN
from tests.helpers.ivr_helpline import without_wrap_up
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.served import Served, fresh_volunteers
from tests.helpers.service import HANDSET_HOST
from tests.helpers.volunteers import PASSWORD, on_shift_in_database
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.sipp import run_sipp_async, start_sipp

NODE_A, NODE_B = "127.0.0.11", "127.0.0.12"
TAKEOVER_LIMIT = 5.0  # seconds from killing the leader to the standby taking calls


def ready_text(served: Served) -> tuple[int | None, str]:
    """GET /ready: (status, body), (None, "") while nothing answers."""
    url = f"http://127.0.0.1:{served.metrics_port}/ready"
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return int(resp.status), resp.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()
    except OSError:
        return None, ""


def options_status(served: Served) -> tuple[int, str]:
    """An out-of-dialog OPTIONS probe (as Kamailio's dispatcher sends) from the trunk address:
    (status, the whole answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3.0)
        port = sock.getsockname()[1]
        probe = (
            f"OPTIONS sip:{served.target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-probe{time.monotonic_ns()}\r\n"
            f"From: <sip:probe@127.0.0.1:{port}>;tag=probe\r\n"
            f"To: <sip:{served.target}>\r\nCall-ID: probe-{time.monotonic_ns()}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(probe.encode(), (served.host, served.sip_port))
        answer = sock.recv(65535).decode(errors="replace")
    return int(answer.split()[1]), answer


def logged(served: Served, event: str, run: int | None = None) -> list[dict[str, object]]:
    try:
        return [e for e in served.events(run) if e["event"] == event]
    except OSError:
        return []


async def assert_standby(served: Served) -> None:
    assert ready_text(served) == (503, "standby"), served.describe()
    status, answer = await asyncio.to_thread(options_status, served)
    assert status == 503 and "Retry-After: 5" in answer, answer
    refused = await run_sipp_async(
        "uac_expect_status", served.target, service="09000767",
        keys={"expect_status": "503"}, timeout_s=20,
    )  # fmt: skip
    assert refused.ok, refused.describe()
    assert "Retry-After: 5" in refused.received("SIP/2.0 503")[0]


@asynccontextmanager
async def two_nodes(
    tmp_path: Path, pg_url: str, plan: Path
) -> AsyncIterator[tuple[Served, Served]]:
    """Node A leading and node B standing by, over the test's PostgreSQL, with vera."""
    await fresh_volunteers(pg_url, tmp_path, "vera", password=PASSWORD)
    env = {"HELPLINE_VOLUNTEER_WHISPER": "", "HELPLINE_HA_LEASE": "true"}
    a = Served(tmp_path / "a" / "state", plan, pg_url, host=NODE_A,
               env={**env, "HELPLINE_NODE_NAME": "a"})  # fmt: skip
    b = Served(tmp_path / "b" / "state", plan, pg_url, host=NODE_B,
               env={**env, "HELPLINE_NODE_NAME": "b"})  # fmt: skip
    for node in (a, b):
        node.state_dir.parent.mkdir(parents=True)
    try:
        a.start()
        await until(lambda: a.ready() == 200, timeout=60)  # A starts first: A leads
        b.start()
        await until(lambda: [e["leader"] for e in logged(b, "standby")] == ["a"], timeout=60)
        yield a, b
    finally:
        a.stop()
        b.stop()


async def on_shift_at(phone: AsyncPjsuaPhone, node: Served) -> None:
    """The handset registers at `node` and its volunteer logs in there with *1."""
    await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
    assert await phone.register(node.host, node.sip_port, "vera", PASSWORD) == 200
    assert await phone.make_call(f"sip:*1@{node.target}") == 200
    assert await phone.wait_disconnected(timeout=20) == 200


async def rung_and_answered(phone: AsyncPjsuaPhone, node: Served) -> None:
    """A carrier's call to `node` (press 1: the Dutch queue) rings the volunteer's handset;
    the volunteer answers, talks a second and hangs up."""
    call = asyncio.create_task(
        run_sipp_async(
            "uac_call_key_wait_bye", node.target, service="09000767",
            keys={"bye_within_ms": "40000"}, timeout_s=60,
        )
    )  # fmt: skip
    try:
        incoming = await phone.wait_incoming(timeout=30)
    except Exception:
        call.cancel()
        raise AssertionError(f"not rung; the node said {node.describe()}") from None
    assert '"Hulplijn NL"' in incoming.remote_uri
    await phone.answer(200)
    await asyncio.sleep(1.0)
    await phone.hangup()
    result = await call
    assert result.ok, f"{node.describe()}\n{result.describe()}"


async def test_the_standby_takes_over_when_the_leader_is_killed(
    tmp_path: Path, pg_url: str
) -> None:
    plan = without_wrap_up(DEFAULT_PLAN, tmp_path / "dialplan.yaml")
    async with two_nodes(tmp_path, pg_url, plan) as (a, b), AsyncPjsuaPhone("vera") as phone:
        await assert_standby(b)
        assert (await asyncio.to_thread(options_status, a))[0] == 200
        await on_shift_at(phone, a)
        logged_in = time.monotonic()
        while not await on_shift_in_database(pg_url):
            assert time.monotonic() - logged_in < 5, "not written behind within 5 s"
            await asyncio.sleep(0.02)
        written = time.monotonic() - logged_in

        a.send(signal.SIGKILL)
        killed = time.monotonic()
        a.wait_exit(10)
        await until(lambda: b.ready() == 200, timeout=TAKEOVER_LIMIT + 5)
        took = time.monotonic() - killed
        assert took <= TAKEOVER_LIMIT, f"the standby took {took:.1f} s\n{b.describe()}"
        [takeover] = logged(b, "takeover")
        assert (takeover["on_shift"], takeover["handsets"], takeover["calls_lost"]) == (
            1, 1, 0,
        ), takeover  # fmt: skip
        assert (await asyncio.to_thread(options_status, b))[0] == 200

        # A carrier's call to B rings the volunteer's handset, which registered at A and
        # has not sent anything since.
        await rung_and_answered(phone, b)

        # A comes back while B holds the lease: it stays standby.
        a.start()
        await until(lambda: bool(logged(a, "service_started")), timeout=60)
        await asyncio.sleep(2.5)  # a few tries of the lock
        await assert_standby(a)
        assert b.ready() == 200
        assert [e["leader"] for e in logged(a, "standby", 2)] == ["b"]
    names = [e["event"] for e in b.events()]
    # nothing came from the handset to B: its binding was taken over, not renewed
    assert "registration" not in names[: names.index("inbound_call")]
    assert not logged(a, "lease_acquired", 2)
    print(f"written behind {written:.2f} s after login; standby took over in {took:.2f} s")


def with_wrap_up(plan: Path, into: Path, seconds: int) -> Path:
    """A copy of `plan` whose queues give volunteers `seconds` of wrap-up after a call."""
    without_wrap_up(plan, into)
    into.write_text(into.read_text().replace("wrap_up: 0\n", f"wrap_up: {seconds}\n"))
    return into


async def shift_state(pg_url: str) -> str | None:
    conn = await asyncpg.connect(pg_url)
    try:
        state = await conn.fetchval("select state from shifts where username = 'vera'")
    finally:
        await conn.close()
    return str(state) if state is not None else None


def calls_lost(served: Served) -> float | None:
    url = f"http://127.0.0.1:{served.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("helpline_ha_calls_lost_total "):
                return float(line.split()[1])
    return None


async def test_a_call_lost_with_the_leader_is_counted_and_its_volunteer_comes_back(
    tmp_path: Path, pg_url: str
) -> None:
    """vera is in a call on A when A is killed: B counts the lost call, puts vera in the
    wrap-up the call's end would have given her, and then offers her the next call."""
    plan = with_wrap_up(DEFAULT_PLAN, tmp_path / "dialplan.yaml", 2)
    async with two_nodes(tmp_path, pg_url, plan) as (a, b), AsyncPjsuaPhone("vera") as phone:
        await on_shift_at(phone, a)
        await asyncio.sleep(2.5)  # the wrap-up of the *1 call, if any, is over
        with start_sipp(
            "uac_call_key_wait_bye", a.target, service="09000767",
            keys={"bye_within_ms": "60000"}, timeout_s=70,
        ):  # fmt: skip
            await phone.wait_incoming(timeout=30)
            await phone.answer(200)
            for _ in range(100):  # the leader wrote her state behind
                if await shift_state(pg_url) == "in_call":
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"not in_call in the database; A said {a.describe()}")
            a.send(signal.SIGKILL)
            a.wait_exit(10)
            await until(lambda: b.ready() == 200, timeout=TAKEOVER_LIMIT + 5)
        await phone.hangup()  # the handset notices nothing; its volunteer hangs up
        [takeover] = logged(b, "takeover")
        assert (takeover["on_shift"], takeover["calls_lost"]) == (1, 1), takeover
        assert calls_lost(b) == 1.0
        # in wrap-up at B (as after any call), then available again, and rung
        states = [(e["user"], e["state"]) for e in logged(b, "shift_restored")]
        assert states == [("vera", "wrap_up")], states
        await until(lambda: bool(logged(b, "volunteer_state")), timeout=10)
        ended = [e for e in logged(b, "volunteer_state") if e["kind"] == "wrap_up_ended"]
        assert [e["user"] for e in ended] == ["vera"], b.describe()
        await rung_and_answered(phone, b)


async def test_a_leader_that_loses_its_lease_connection_stands_down_before_another_leads(
    tmp_path: Path, pg_url: str
) -> None:
    """The database ends the leader's lease session (as a failover of the database, a network
    cut or an administrator would): the leader stops serving at once, and exactly one node
    leads afterwards, never both."""
    plan = without_wrap_up(DEFAULT_PLAN, tmp_path / "dialplan.yaml")
    async with two_nodes(tmp_path, pg_url, plan) as (a, b):
        conn = await asyncpg.connect(pg_url)
        try:
            ended = await conn.fetchval(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                " where application_name = 'helpline-lease:a'"
            )
        finally:
            await conn.close()
        assert ended == 1
        await until(lambda: bool(logged(a, "lease_lost")), timeout=5)
        await until(lambda: bool(logged(b, "leading") or len(logged(a, "leading")) == 2), 10)
        await asyncio.sleep(1.5)  # the other node has tried the lock again meanwhile
        readiness = sorted([ready_text(a), ready_text(b)], key=lambda r: r[0] or 0)
        assert readiness == [(200, "serving"), (503, "standby")], readiness
        [lost] = logged(a, "lease_lost")
        assert lost["reason"] == "connection_closed"
        # the old leader stood down before anyone (itself again, or B) took the lease
        acquired = sorted(
            str(e["timestamp"]) for e in logged(a, "lease_acquired") + logged(b, "lease_acquired")
        )
        assert len(acquired) == 2 and acquired[0] < str(lost["timestamp"]) < acquired[1]


def waiting_callers(served: Served) -> float:
    url = f"http://127.0.0.1:{served.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as resp:
        lines = resp.read().decode().splitlines()
    return sum(
        float(line.split()[-1]) for line in lines if line.startswith("helpline_queue_waiting{")
    )


async def test_a_planned_stop_hands_the_lease_over_and_no_volunteer_gets_two_calls(
    tmp_path: Path, pg_url: str
) -> None:
    """SIGTERM on the leader while its volunteer talks: the standby takes new calls at once;
    the caller who rings it then waits while the volunteer still talks on the draining node,
    is offered to her once that call ends there, and the drained node exits."""
    plan = without_wrap_up(DEFAULT_PLAN, tmp_path / "dialplan.yaml")
    async with two_nodes(tmp_path, pg_url, plan) as (a, b), AsyncPjsuaPhone("vera") as phone:
        await on_shift_at(phone, a)
        keys = {"bye_within_ms": "60000"}
        with start_sipp("uac_call_key_wait_bye", a.target, service="09000767", keys=keys,
                        timeout_s=70) as first:  # fmt: skip
            talking = await phone.wait_incoming(timeout=30)
            await phone.answer(200)
            for _ in range(100):
                if await shift_state(pg_url) == "in_call":
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"not in_call in the database; A said {a.describe()}")
            a.send(signal.SIGTERM)
            await until(lambda: b.ready() == 200, timeout=TAKEOVER_LIMIT + 5)
            assert ready_text(a) == (503, "draining")
            [takeover] = logged(b, "takeover")
            assert (takeover["calls_lost"], takeover["calls_elsewhere"]) == (0, 1), takeover

            with start_sipp("uac_call_key_wait_bye", b.target, service="09000767", keys=keys,
                            timeout_s=70) as second:  # fmt: skip
                await until(lambda: waiting_callers(b) == 1, timeout=20)
                await asyncio.sleep(3.0)  # B leads, a caller waits: vera is not offered it
                assert len(phone.events("incoming")) == 1, b.describe()
                assert waiting_callers(b) == 1

                await phone.hangup(call=talking.call)  # her call on A ends
                assert (await asyncio.to_thread(first.wait, 20)).ok
                assert await asyncio.to_thread(a.wait_exit, 20) == 0  # drained: A exits
                incoming = await phone.wait_incoming(timeout=20)  # and B offers her the caller
                assert '"Hulplijn NL"' in incoming.remote_uri
                await phone.answer(200)
                await asyncio.sleep(1.0)
                await phone.hangup()
                result = await asyncio.to_thread(second.wait, 20)
                assert result.ok, f"{b.describe()}\n{result.describe()}"
        assert calls_lost(b) == 0.0
    settled = [(e["user"], e["state"]) for e in logged(b, "shift_settled")]
    assert settled == [("vera", "available")], settled


async def test_a_handset_that_registers_at_the_standby_is_rung_by_the_leader(
    tmp_path: Path, pg_url: str
) -> None:
    """A REGISTER may reach either node: the standby answers it and writes it through to the
    shared database, and the leader takes the binding from there and rings that handset."""
    plan = without_wrap_up(DEFAULT_PLAN, tmp_path / "dialplan.yaml")
    async with two_nodes(tmp_path, pg_url, plan) as (a, b), AsyncPjsuaPhone("vera") as phone:
        await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
        assert await phone.register(b.host, b.sip_port, "vera", PASSWORD) == 200
        await until(lambda: bool(logged(a, "registration_taken")), timeout=10)
        assert await phone.make_call(f"sip:*1@{a.target}") == 200  # the leader takes calls
        assert await phone.wait_disconnected(timeout=20) == 200
        await rung_and_answered(phone, a)
        assert not logged(a, "registration")  # nothing reached A but the *1 call
