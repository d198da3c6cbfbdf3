"""The authentication guard in the running service, with real peers over loopback: a nonce is
tied to the address it was issued to, every failure reads "403 Forbidden", failures lock a
source out until its back-off passes, challenges are sent once (never retransmitted towards an
unverified source), wrong PINs count across calls, and the trunk address never holds a handset.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import socket
import time

from ivr.loader import DEFAULT_PLAN
from pbx.calls.inbound import HelplineCalls
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, TRUNK_HOST, MakeHelpline, Running
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.sipp import run_sipp_async

PASSWORD = "correct-horse-battery"
OTHER_HOST = "127.0.0.3"


def register_text(
    phone: RawHandset, helpline: Running, user: str, *, auth: str = "", cseq: int = 1
) -> str:
    return (
        f"REGISTER sip:{helpline.host}:{helpline.port} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {phone.host}:{phone.port};branch=z9hG4bK{secrets.token_hex(6)};rport\n"
        f"From: <sip:{user}@{helpline.host}>;tag=g{cseq}\nTo: <sip:{user}@{helpline.host}>\n"
        f"Call-ID: guard-{user}-{phone.host}\nCSeq: {cseq} REGISTER\n"
        f"Contact: <sip:{user}@{phone.host}:{phone.port}>\nExpires: 120\n"
        f"Max-Forwards: 70\n{auth}Content-Length: 0\n\n"
    )


def authorization(challenge: str, helpline: Running, user: str, password: str) -> str:
    """The Authorization header a client computes for a 401 (MD5, qop=auth), with hashlib."""
    nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)  # type: ignore[union-attr]
    uri = f"sip:{helpline.host}:{helpline.port}"
    ha1 = hashlib.md5(f"{user}:helpline:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
    cnonce, nc = secrets.token_hex(4), "00000001"
    resp = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Authorization: Digest username="{user}", realm="helpline", nonce="{nonce}", '
        f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"\n'
    )


async def exchange(phone: RawHandset, helpline: Running, text: str) -> str:
    phone.send(text, (helpline.host, helpline.port))
    return await asyncio.to_thread(phone.recv_until, "SIP/2.0 ", 5)


def first_line(message: str) -> str:
    return message.split("\r\n", 1)[0]


async def test_a_nonce_issued_to_one_address_is_refused_from_another(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline() as helpline:
        await helpline.add_volunteer("noor", PASSWORD)
        home, thief = RawHandset(HANDSET_HOST), RawHandset(OTHER_HOST)
        try:
            challenge = await exchange(home, helpline, register_text(home, helpline, "noor"))
            assert first_line(challenge).startswith("SIP/2.0 401")
            # the same valid answer (right password, this nonce) sent from another address
            stolen = authorization(challenge, helpline, "noor", PASSWORD)
            reply = await exchange(
                thief, helpline, register_text(thief, helpline, "noor", auth=stolen, cseq=2)
            )
            assert first_line(reply).startswith("SIP/2.0 401"), reply  # a fresh challenge only
            assert helpline.service.registrar.bindings == {}
            # from the address it was issued to, the nonce is good
            reply = await exchange(
                home, helpline, register_text(home, helpline, "noor", auth=stolen, cseq=3)
            )
            assert first_line(reply) == "SIP/2.0 200 OK", reply
            [binding] = helpline.service.registrar.contacts(
                "noor", helpline.service.switchboard.wall_clock()
            )
            assert (binding.source.host, binding.algorithm) == (HANDSET_HOST, "MD5")
        finally:
            home.close()
            thief.close()


async def test_wrong_password_and_unknown_user_get_the_same_answer(helpline: Running) -> None:
    await helpline.add_volunteer("olga", PASSWORD)
    answers = []
    for user, password in (("olga", "not-her-password"), ("nobody", PASSWORD)):
        result = await run_sipp_async(
            "uac_register_digest", helpline.target, local_ip=HANDSET_HOST, timeout_s=10,
            keys={"user": user, "password": password, "expires": "300"},
        )  # fmt: skip
        [refusal] = result.received("SIP/2.0 403")
        answers.append(first_line(refusal.replace("\n", "\r\n")).strip())
    assert answers == ["SIP/2.0 403 Forbidden"] * 2


async def test_failures_lock_a_source_out_until_the_backoff_passes(
    make_helpline: MakeHelpline,
) -> None:
    async with (
        captured_logs() as logs,
        make_helpline(auth_source_failures=3, auth_lockout=2.0) as helpline,
    ):
        await helpline.add_volunteer("piet", PASSWORD)
        async with AsyncPjsuaPhone("piet") as phone:
            await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            for _ in range(3):
                assert (
                    await phone.register(helpline.host, helpline.port, "piet", "guess-1234") == 403
                )
            # locked: now even the right password is refused, without a challenge to answer
            assert await phone.register(helpline.host, helpline.port, "piet", PASSWORD) == 403
            raw = RawHandset(HANDSET_HOST)
            try:
                reply = await exchange(raw, helpline, register_text(raw, helpline, "piet"))
                assert first_line(reply) == "SIP/2.0 403 Forbidden"
            finally:
                raw.close()
            # another address is not locked out
            other = RawHandset(OTHER_HOST)
            try:
                reply = await exchange(other, helpline, register_text(other, helpline, "piet"))
                assert first_line(reply).startswith("SIP/2.0 401")
            finally:
                other.close()
            await asyncio.sleep(2.2)  # the back-off passes: the right password works again
            assert await phone.register(helpline.host, helpline.port, "piet", PASSWORD) == 200
    assert [e["key"] for e in log_events(logs, "auth_locked_out")] == ["source"]


async def test_a_challenge_is_sent_once_to_a_source_that_does_not_answer(
    helpline: Running,
) -> None:
    """RFC 3261 26.3.2.4: unauthenticated requests are challenged statelessly, so a spoofed
    source gets one 401/407 per request it (seemingly) sent, never a retransmitted stream."""
    await helpline.add_volunteer("quinn", PASSWORD)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HANDSET_HOST, 0))
    port = sock.getsockname()[1]
    invite = (
        f"INVITE sip:*1@{helpline.host}:{helpline.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HANDSET_HOST}:{port};branch=z9hG4bKspoof1\r\n"
        f"From: <sip:quinn@{helpline.host}>;tag=s1\r\nTo: <sip:*1@{helpline.host}>\r\n"
        f"Call-ID: spoof-1\r\nCSeq: 1 INVITE\r\nContact: <sip:quinn@{HANDSET_HOST}:{port}>\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    register = RawHandset.__new__(RawHandset)  # only its text builder needs host/port
    register.host, register.port = HANDSET_HOST, port
    sent = [invite, register_text(register, helpline, "quinn").replace("\n", "\r\n")]
    try:
        for text in sent:
            sock.sendto(text.encode(), (helpline.host, helpline.port))
        # the INVITE transaction would retransmit its 407 at 0.1, 0.2, 0.4 ... s (T1 = 0.1 s)
        statuses = await asyncio.to_thread(_collect_statuses, sock, 3.5)
        # no 100 Trying either: the client retransmits its INVITE if the 407 is lost
        assert sorted(statuses) == [401, 407], statuses
        assert len(helpline.service.stack.layer) == 0  # nothing kept for the unverified source
        # a retransmission of the INVITE is a new request: answered once more, once
        sock.sendto(invite.encode(), (helpline.host, helpline.port))
        statuses = await asyncio.to_thread(_collect_statuses, sock, 2.0)
        assert statuses == [407], statuses
    finally:
        sock.close()


def _collect_statuses(sock: socket.socket, seconds: float) -> list[int]:
    statuses = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            break
        statuses.append(int(data.split(b" ", 2)[1]))
    return statuses


async def test_register_from_the_trunk_address_is_refused_and_the_carrier_still_gets_through(
    make_helpline: MakeHelpline,
) -> None:
    async with captured_logs() as logs, make_helpline(volunteer_whisper="") as helpline:
        await helpline.add_volunteer("rik", PASSWORD)
        async with AsyncPjsuaPhone("intruder") as intruder, AsyncPjsuaPhone("rik") as handset:
            # valid credentials, but sent from the carrier's address: refused, nothing bound
            await intruder.start(free_port(TRUNK_HOST), bind=TRUNK_HOST)
            assert await intruder.register(helpline.host, helpline.port, "rik", PASSWORD) == 403
            assert helpline.service.registrar.bindings == {}
            # the volunteer's real handset registers from its own address
            await handset.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await handset.register(helpline.host, helpline.port, "rik", PASSWORD) == 200
            # the carrier's next INVITE is a carrier call (not challenged) and reaches rik
            call = asyncio.create_task(
                run_sipp_async(
                    "uac_call", helpline.target, service="09000767", pause_ms=500, timeout_s=30
                )
            )
            await handset.wait_incoming(timeout=15)
            await handset.answer(200)
            result = await call
            result.assert_ok()
            assert result.received("SIP/2.0 407") == []
            assert intruder.events("incoming") == []
    refused = log_events(logs, "register_from_trunk_refused")
    assert [e["source"] for e in refused] == [TRUNK_HOST]


async def test_wrong_pins_are_counted_across_calls(make_helpline: MakeHelpline) -> None:
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, DEFAULT_PLAN, pin_failures=2, pin_lockout=10.0) as helpline,
    ):
        await helpline.add_volunteer("sam", PASSWORD, pin="4711")
        app = helpline.service.switchboard.app
        assert isinstance(app, HelplineCalls)
        roster = helpline.service.roster
        target = f"sip:*1@{helpline.host}:{helpline.port}"
        async with AsyncPjsuaPhone("sam") as phone:
            await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await phone.register(helpline.host, helpline.port, "sam", PASSWORD) == 200
            # first call: one wrong PIN, then the caller hangs up (to try again afresh)
            assert await phone.make_call(target) == 200
            await phone.send_dtmf("1111#")
            await asyncio.sleep(1.5)
            await phone.hangup()
            # second call: one more wrong PIN reaches the limit over both calls
            assert await phone.make_call(target) == 200
            await phone.send_dtmf("2222#")
            assert await phone.wait_disconnected(timeout=30) == 200  # told, then hung up
            # third call, with the right PIN: refused while locked, the PIN not even asked
            assert await phone.make_call(target) == 200
            await phone.send_dtmf("4711#")
            assert await phone.wait_disconnected(timeout=30) == 200
            assert "sam" not in roster
            desk = app.shift_desk
            assert desk is not None and desk.pins.locked_for("sam", time.time()) > 0
            await until(lambda: desk.pins.locked_for("sam", time.time()) == 0, timeout=15)
            assert await phone.make_call(target) == 200
            await phone.send_dtmf("4711#")
            assert await phone.wait_disconnected(timeout=30) == 200
            helpline.service.drain_roster_events()
            assert "sam" in roster
    # the second and third calls heard the refusal (the first was hung up while asking again)
    reasons = [e["reason"] for e in log_events(logs, "shift_login_refused")]
    assert reasons[-2:] == ["pin_locked", "pin_locked"], reasons
    assert len(log_events(logs, "pin_locked_out")) == 1
    done = [e["prompts"] for e in log_events(logs, "feature_code_done")]
    assert done[-3:] == [["pin_locked"], ["pin_locked"], ["shift_login_ok"]], done
