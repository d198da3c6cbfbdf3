"""Keepalive OPTIONS to registered handsets over UDP and TCP: a binding whose keepalive goes
unanswered is marked unreachable and not rung, and removed after `keepalive_max_misses`
misses in a row; an answer or a REGISTER refresh restores it. A PJSIP handset answers its
keepalives; a bare UDP socket answers them only when the test says so.

SIP T1 is 50 ms here, so a keepalive counts as missed after 3.2 s (64*T1).
"""

from __future__ import annotations

import asyncio
import time

from ivr.loader import DEFAULT_PLAN
from pbx.sip.registrar import Binding
from queues.roster import VolunteerState
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, MakeHelpline, Running
from tests.helpers.volunteers import PASSWORD, state
from tests.peers.pjsua_phone import AsyncPjsuaPhone

FAST = {"keepalive_interval": 0.5, "keepalive_max_misses": 3, "sip_t1": 0.05}


def binding_at(helpline: Running, user: str, port: int) -> Binding | None:
    """The user's binding registered from source `port`, if there is one."""
    for b in helpline.service.registrar.bindings.get(user, {}).values():
        if b.source.port == port:
            return b
    return None


def reachable(helpline: Running, user: str, port: int) -> bool:
    b = binding_at(helpline, user, port)
    return b is not None and b.reachable


def unreachable(helpline: Running, user: str, port: int) -> bool:
    b = binding_at(helpline, user, port)
    return b is not None and not b.reachable


async def register(helpline: Running, raw: RawHandset, user: str) -> None:
    target = (helpline.host, helpline.port)
    final = await asyncio.to_thread(raw.register, target, user, PASSWORD, contact_port=raw.port)
    assert final.startswith("SIP/2.0 200"), final


async def answer_keepalives_until(helpline: Running, raw: RawHandset, done: object) -> None:
    """Answer the OPTIONS that arrive (older ones are stray by now) until `done()` holds."""
    target = (helpline.host, helpline.port)
    deadline = time.monotonic() + 15
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the keepalive answers did not restore the binding"
        ping = await asyncio.to_thread(raw.recv_until, "OPTIONS", 5)
        await asyncio.to_thread(raw.answer, ping, "200 OK", target)


def received_first_lines(raw: RawHandset) -> list[str]:
    """Every message waiting on the socket, first lines only (it is not read otherwise)."""
    lines = []
    while True:
        try:
            lines.append(raw.recv(timeout=0.05).split("\r\n", 1)[0])
        except TimeoutError:
            return lines


async def test_an_unanswered_udp_keepalive_skips_the_handset_until_it_answers_then_removes_it(
    make_helpline: MakeHelpline,
) -> None:
    settings = {**FAST, "keepalive_max_misses": 4}
    async with captured_logs() as logs, make_helpline(call_flow="direct", **settings) as helpline:
        await helpline.add_volunteer("duo", PASSWORD)
        async with AsyncPjsuaPhone("live") as live, AsyncPjsuaPhone("caller") as caller:
            await live.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await live.register(helpline.host, helpline.port, "duo", PASSWORD) == 200
            await caller.start(free_port())
            raw = RawHandset(HANDSET_HOST)
            try:
                await register(helpline, raw, "duo")
                await until(lambda: unreachable(helpline, "duo", raw.port), 10)
                assert reachable(helpline, "duo", live.port)  # PJSIP answers its keepalives
                # a call rings the live handset only
                received_first_lines(raw)
                uri = f"sip:09000767@{helpline.host}:{helpline.port}"
                calling = asyncio.create_task(caller.make_call(uri, timeout=20))
                await live.wait_incoming(timeout=10)
                await live.answer(200)
                assert await calling == 200
                assert not [x for x in received_first_lines(raw) if x.startswith("INVITE")]
                await caller.hangup()
                assert await live.wait_disconnected(timeout=10) == 200
                # answering a keepalive restores it: it is rung again
                await answer_keepalives_until(
                    helpline, raw, lambda: reachable(helpline, "duo", raw.port)
                )
                ringable = helpline.service.registrar.ringable("duo", time.time())
                assert sorted(b.source.port for b in ringable) == sorted([raw.port, live.port])
                # unanswered again, then a REGISTER refresh restores it too
                await until(lambda: unreachable(helpline, "duo", raw.port), 10)
                await register(helpline, raw, "duo")
                assert reachable(helpline, "duo", raw.port)
                # misses in a row: removed; the volunteer is still reachable on the other
                await until(lambda: binding_at(helpline, "duo", raw.port) is None, 30)
                assert reachable(helpline, "duo", live.port)
                assert "duo" in helpline.service.registrar.registered_users(time.time())
            finally:
                raw.close()
    changes = [e["change"] for e in log_events(logs, "registration") if e["user"] == "duo"]
    assert changes[:8] == [  # then the live handset unregisters as the test ends
        "added", "added", "unreachable", "reachable", "unreachable", "refreshed",
        "unreachable", "lost",
    ]  # fmt: skip


async def test_tcp_handsets_are_kept_alive_and_lost_when_gone(make_helpline: MakeHelpline) -> None:
    """A PJSIP handset on TCP answers its keepalives on its connection; once it has vanished
    the keepalives go unanswered: unreachable (its volunteer's registration lapses, as they
    have no other handset), then removed."""
    settings = {**FAST, "keepalive_max_misses": 2, "registration_grace": 60.0}
    async with ivr_helpline(make_helpline, DEFAULT_PLAN, **settings) as helpline:
        await helpline.add_volunteer("tina", PASSWORD)
        async with AsyncPjsuaPhone("tcp") as phone:
            await phone.start(free_port(HANDSET_HOST), transport="tcp", bind=HANDSET_HOST)
            assert await phone.register(helpline.host, helpline.port, "tina", PASSWORD) == 200
            assert await phone.make_call(f"sip:*1@{helpline.host}:{helpline.port}") == 200
            assert await phone.wait_disconnected(timeout=20) == 200
            (b,) = helpline.service.registrar.bindings["tina"].values()
            assert b.source.transport.value == "tcp"
            await asyncio.sleep(5.0)  # more than one keepalive timeout: all were answered
            assert b.reachable and binding_at(helpline, "tina", b.source.port) is b
            assert "OPTIONS sip:tina@" in phone.log_text(tail=200_000)
            await phone.kill()
        await until(lambda: not helpline.service.roster.get("tina").registered, 10)
        await until(lambda: "tina" not in helpline.service.registrar.bindings, 15)
        assert state(helpline, "tina") is VolunteerState.AVAILABLE  # within the grace
