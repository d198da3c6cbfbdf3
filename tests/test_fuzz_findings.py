"""What the request-path fuzzer found, each pinned by a test against the running service over
real UDP: requests the service used to leave unanswered (an exception above the transaction
layer), a registration the database refused, and an IVR call whose caller vanished that never
ended."""

from __future__ import annotations

import asyncio
import re
import secrets

import asyncpg

from tests.helpers.fuzz_mutations import PASSWORD, digest_header
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import MakeHelpline, Running
from tests.helpers.sip_texts import SDP

USER = "seedivr"


def register(phone: RawHandset, target: tuple[str, int], extra: str = "", cseq: int = 1) -> str:
    call_id = f"reg-{phone.port}"
    return (
        f"REGISTER sip:{target[0]}:{target[1]} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {phone.host}:{phone.port};rport;branch=z9hG4bK{secrets.token_hex(6)}\n"
        f"From: <sip:{USER}@{target[0]}>;tag=r1\nTo: <sip:{USER}@{target[0]}>\n"
        f"Call-ID: {call_id}\nCSeq: {cseq} REGISTER\n"
        f"Contact: <sip:{USER}@{phone.host}:{phone.port}>\nMax-Forwards: 70\n{extra}"
        "Content-Length: 0\n\n"
    )


async def exchange(phone: RawHandset, text: str | bytes, target: tuple[str, int]) -> str:
    if isinstance(text, str):
        phone.send(text, target)
    else:
        phone.sock.sendto(text, target)
    return await asyncio.to_thread(phone.recv_until, "SIP/2.0 ", 5)


async def nonce(phone: RawHandset, target: tuple[str, int]) -> str:
    challenge = await exchange(phone, register(phone, target), target)
    found = re.search(r'nonce="([^"]+)"', challenge)
    assert challenge.startswith("SIP/2.0 401") and found, challenge
    return found.group(1)


def no_failures(helpline: Running) -> None:
    stack = helpline.service.stack
    assert stack.request_failures == 0 and stack.unanswered_failures == 0


async def test_an_empty_authorization_header_is_challenged(make_helpline: MakeHelpline) -> None:
    async with make_helpline() as helpline:
        phone, target = RawHandset("127.0.0.2"), (helpline.host, helpline.port)
        try:
            reply = await exchange(phone, register(phone, target, "Authorization:  \n"), target)
            assert reply.startswith("SIP/2.0 401"), reply  # was: IndexError, no answer
        finally:
            phone.close()
        no_failures(helpline)


async def test_digest_parameters_that_are_not_utf8_are_refused(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline(digest_algorithms=["MD5", "SHA-256"]) as helpline:
        await helpline.add_volunteer(USER, PASSWORD)
        phone, target = RawHandset("127.0.0.2"), (helpline.host, helpline.port)
        try:
            auth = digest_header("REGISTER", f"sip:{target[0]}:{target[1]}", USER,
                                 await nonce(phone, target), 1)  # fmt: skip
            text = register(phone, target, f"Authorization: {auth}\n", cseq=2)
            wire = text.replace("\n", "\r\n").encode().replace(b'uri="sip', b'uri="\xffsip')
            reply = await exchange(phone, wire, target)
            assert reply.startswith(("SIP/2.0 401", "SIP/2.0 403")), reply  # was: no answer
        finally:
            phone.close()
        no_failures(helpline)


async def test_a_registration_with_nul_in_its_user_agent_is_stored(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline(digest_algorithms=["MD5", "SHA-256"]) as helpline:
        await helpline.add_volunteer(USER, PASSWORD)
        phone, target = RawHandset("127.0.0.2"), (helpline.host, helpline.port)
        try:
            auth = digest_header("REGISTER", f"sip:{target[0]}:{target[1]}", USER,
                                 await nonce(phone, target), 1)  # fmt: skip
            extra = f"Authorization: {auth}\nUser-Agent: Desk\x00Phone 1.0\n"
            reply = await exchange(phone, register(phone, target, extra, cseq=2), target)
            assert reply.startswith("SIP/2.0 200"), reply
        finally:
            phone.close()
        service = helpline.service
        assert service.writer is not None and await service.writer.flush(10)
        assert service.db is not None
        conn = await asyncpg.connect(service.db.url)
        try:
            rows = await conn.fetch("select user_agent from registrations where aor = $1", USER)
        finally:
            await conn.close()
        assert [r["user_agent"] for r in rows] == ["Desk\ufffdPhone 1.0"]  # was: write refused


async def test_an_ivr_caller_who_vanishes_without_bye_is_hung_up_on_media_timeout(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline(call_flow="ivr", media_timeout=1.5) as helpline:
        caller, target = RawHandset(), (helpline.host, helpline.port)
        try:
            sdp = SDP.format(port=41008).replace("\n", "\r\n")
            caller.send(
                f"INVITE sip:09000767@{target[0]}:{target[1]} SIP/2.0\n"
                f"Via: SIP/2.0/UDP {caller.host}:{caller.port};rport;branch=z9hG4bKvan1\n"
                f"From: <sip:anonymous@{caller.host}>;tag=v1\nTo: <sip:09000767@{target[0]}>\n"
                f"Call-ID: vanish-1\nCSeq: 1 INVITE\nContact: <sip:c@{caller.host}:{caller.port}>\n"
                f"Max-Forwards: 70\nContent-Type: application/sdp\n"
                f"Content-Length: {len(sdp)}\n\n{sdp.replace(chr(13), '')}",
                target,
            )
            ok = await asyncio.to_thread(caller.recv_until, "SIP/2.0 200", 5)
            to = re.search(r"^To: (.*)$", ok, re.M)
            assert to is not None
            caller.send(
                f"ACK sip:helpline@{target[0]}:{target[1]} SIP/2.0\n"
                f"Via: SIP/2.0/UDP {caller.host}:{caller.port};rport;branch=z9hG4bKvan2\n"
                f"From: <sip:anonymous@{caller.host}>;tag=v1\nTo: {to.group(1).strip()}\n"
                "Call-ID: vanish-1\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n",
                target,
            )
            # no RTP and no BYE from the caller: the service hangs up after media_timeout
            bye = await asyncio.to_thread(caller.recv_until, "BYE", 8)
            assert "Call-ID: vanish-1" in bye
        finally:
            caller.close()
        for _ in range(50):
            if not helpline.service.switchboard.legs:
                break
            await asyncio.sleep(0.1)
        assert not helpline.service.switchboard.legs
