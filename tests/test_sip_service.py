"""The SIP core as trunks and handsets meet it: real sipp and PJSIP peers over loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import asyncpg

from pbx.sip.peer import TransportKind
from tests.helpers.ports import free_port
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, MakeHelpline, Running
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.sipp import run_sipp_async, start_sipp

CALLER_NUMBER = "0612345678"  # a caller's number: it must never reach a volunteer


async def test_options_answered_over_udp_and_tcp(helpline: Running) -> None:
    udp = await run_sipp_async("uac_options", helpline.target, transport="u1")
    udp.assert_ok()
    tcp = await run_sipp_async("uac_options", helpline.target, transport="t1")
    tcp.assert_ok()
    answer = udp.received("SIP/2.0 200")[0]
    assert "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS" in answer
    assert "Accept: application/sdp" in answer


async def test_one_md5_challenge_by_default(helpline: Running) -> None:
    """One challenge, MD5: every handset answers it (baresip 1.0 refuses a challenge list
    with an algorithm it does not know); SHA-256 is set per volunteer (set-digest)."""
    await helpline.add_volunteer("anna", "correct-horse-9")
    result = await run_sipp_async(
        "uac_register_digest",
        helpline.target,
        keys={"user": "anna", "password": "correct-horse-9", "expires": "300"},
        local_ip=HANDSET_HOST,
        timeout_s=10,
    )
    result.assert_ok()
    (challenge,) = [
        line
        for line in result.received("SIP/2.0 401")[0].splitlines()
        if "WWW-Authenticate" in line
    ]
    assert "algorithm=MD5" in challenge and 'qop="auth"' in challenge


async def test_md5_handset_registers_with_digest_then_unregisters(
    make_helpline: MakeHelpline,
) -> None:
    """sipp, like many older desk phones, only answers an MD5 challenge listed first."""
    async with make_helpline(digest_algorithms=["MD5", "SHA-256"]) as helpline:
        await _register_and_unregister(helpline)


async def _register_and_unregister(helpline: Running) -> None:
    await helpline.add_volunteer("anna", "correct-horse-9")
    result = await run_sipp_async(
        "uac_register_digest",
        helpline.target,
        keys={"user": "anna", "password": "correct-horse-9", "expires": "300"},
        local_ip=HANDSET_HOST,
        pause_ms=300,
    )
    result.assert_ok()
    assert result.received("SIP/2.0 401") and result.received("SIP/2.0 200")
    # unregistered at the end of the scenario
    assert (
        helpline.service.registrar.contacts("anna", helpline.service.switchboard.wall_clock()) == []
    )
    # the change was written behind to the events table, without any caller data
    assert helpline.service.writer is not None
    assert await helpline.service.writer.flush(5.0)
    conn = await asyncpg.connect(helpline.service.db.url)  # type: ignore[union-attr]
    try:
        kinds = [r["kind"] for r in await conn.fetch("select kind from events order by id")]
    finally:
        await conn.close()
    assert "registration.added" in kinds and "registration.removed" in kinds


async def test_wrong_password_is_refused(make_helpline: MakeHelpline) -> None:
    async with make_helpline(digest_algorithms=["MD5"]) as helpline:
        await _wrong_password(helpline)


async def _wrong_password(helpline: Running) -> None:
    await helpline.add_volunteer("bram", "right-password-1")
    result = await run_sipp_async(
        "uac_register_digest",
        helpline.target,
        keys={"user": "bram", "password": "wrong-password-1", "expires": "300"},
        local_ip=HANDSET_HOST,
        timeout_s=10,
    )
    assert not result.ok
    refusal = result.received("SIP/2.0 403")
    assert refusal, result.describe()
    # the one reason phrase of every authentication failure: nothing tells why
    assert refusal[0].splitlines()[0].strip() == "SIP/2.0 403 Forbidden"
    assert helpline.service.registrar.bindings == {}


async def test_invite_from_untrusted_address_is_challenged_and_places_no_call(
    helpline: Running,
) -> None:
    await helpline.add_volunteer("carla", "pass-word-123")
    async with AsyncPjsuaPhone("carla") as phone:
        await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
        assert await phone.register(helpline.host, helpline.port, "carla", "pass-word-123") == 200
        result = await run_sipp_async(
            "uac_expect_status",
            helpline.target,
            local_ip="127.0.0.2",
            service="09000767",
            keys={"expect_status": "407", "caller": CALLER_NUMBER},
        )
        result.assert_ok()
        # challenged like any caller outside the trunk (it could be a volunteer's handset),
        # once: nothing in the answer says whether the number or a user exists
        assert len(result.received("SIP/2.0 407")) == 1
        await asyncio.sleep(0.5)
        assert phone.events("incoming") == []  # the handset never rang
        assert helpline.service.switchboard.legs == {}


async def test_trunk_call_with_no_volunteer_gets_480(helpline: Running) -> None:
    result = await run_sipp_async(
        "uac_expect_status",
        helpline.target,
        service="09000767",
        keys={"expect_status": "480", "caller": CALLER_NUMBER},
    )
    result.assert_ok()
    assert result.received("SIP/2.0 100"), "100 Trying must come at once"


async def test_trunk_call_reaches_registered_handset_anonymously(helpline: Running) -> None:
    await helpline.add_volunteer("dirk", "pass-word-456")
    async with AsyncPjsuaPhone("dirk") as phone:
        phone_port = free_port()
        await phone.start(phone_port, bind=HANDSET_HOST)
        assert await phone.register(helpline.host, helpline.port, "dirk", "pass-word-456") == 200
        call = asyncio.create_task(
            run_sipp_async(
                "uac_call",
                helpline.target,
                service="09000767",
                keys={"caller": CALLER_NUMBER, "caller_display": "Jan Jansen"},
                pause_ms=1000,
            )
        )
        incoming = await phone.wait_incoming(timeout=10)
        assert CALLER_NUMBER not in incoming.invite and "Jan Jansen" not in incoming.invite
        assert incoming.display == "Hulplijn"
        # media is anchored: the handset is offered the service's address, not the caller's port
        assert f"c=IN IP4 {helpline.host}" in incoming.sdp
        await phone.answer(200)
        result = await call
        result.assert_ok()
        await phone.wait_disconnected(timeout=10)
        # ...and the caller learns nothing of the volunteer: neither name nor address
        answer = result.received("SIP/2.0 200")[0]
        assert "dirk" not in answer and f":{phone_port}" not in answer
        low, high = helpline.settings.rtp_port_min, helpline.settings.rtp_port_max
        media_port = int(answer.split("m=audio ")[1].split()[0])
        assert low <= media_port <= high


async def test_caller_cancel_stops_the_ringing_handset(helpline: Running) -> None:
    await helpline.add_volunteer("eva", "pass-word-789")
    async with AsyncPjsuaPhone("eva") as phone:
        await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
        assert await phone.register(helpline.host, helpline.port, "eva", "pass-word-789") == 200
        call = asyncio.create_task(
            run_sipp_async(
                "uac_cancel", helpline.target, service="09000767", keys={"ring_ms": "1500"}
            )
        )
        await phone.wait_incoming(timeout=10)
        result = await call
        result.assert_ok()
        assert result.received("SIP/2.0 487")
        status = await phone.wait_disconnected(timeout=10)
        assert status == 487  # the handset saw our CANCEL
        assert helpline.service.switchboard.legs == {}


async def test_malformed_requests_get_specific_400s_and_service_keeps_answering(
    helpline: Running,
) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    probe.settimeout(3)
    cases = {
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK1\r\n"
        b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: 1\r\nCSeq: 99999999999 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n": b"CSeq",
        b"OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK2\r\n"
        b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: 2\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n": b"505",
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK3\r\n"
        b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: 3\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: 50\r\n\r\nshort": b"Content-Length",
    }
    try:
        for message, expected in cases.items():
            probe.sendto(message, ("127.0.0.1", helpline.port))
            reply = await asyncio.to_thread(probe.recv, 4000)
            first = reply.split(b"\r\n")[0]
            assert first.startswith(b"SIP/2.0 4") or first.startswith(b"SIP/2.0 5"), first
            assert expected in first, first
        probe.sendto(b"\x00\xff garbage \r\n\r\n", ("127.0.0.1", helpline.port))
        probe.sendto(b"SIP/2.0 999 Nope\r\n\r\n", ("127.0.0.1", helpline.port))
    finally:
        probe.close()
    (await run_sipp_async("uac_options", helpline.target)).assert_ok()
    assert helpline.service.stack.transports.stats.malformed >= 5


async def test_options_over_tls(helpline: Running) -> None:
    port = helpline.service.stack.port(TransportKind.TLS)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    local = writer.get_extra_info("sockname")
    writer.write(
        (
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS 127.0.0.1:{local[1]};branch=z9hG4bKtls1\r\n"
            "From: <sip:probe@127.0.0.1>;tag=9\r\nTo: <sip:127.0.0.1>\r\n"
            "Call-ID: tls-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"SIP/2.0 200 OK"), head


async def test_idle_tcp_connection_is_closed(make_helpline: MakeHelpline) -> None:
    async with make_helpline(connection_idle_timeout=0.5) as svc:
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
        data = await asyncio.wait_for(reader.read(100), 10)  # EOF when the server closes it
        assert data == b""
        assert svc.service.stack.transports.stats.connections_closed_idle == 1
        writer.close()


async def test_sipp_uas_as_volunteer_handset(make_helpline: MakeHelpline) -> None:
    """sipp plays the volunteer's handset (UAS): registered from its port, it is called there."""
    async with make_helpline(digest_algorithms=["MD5"], volunteer_whisper="") as helpline:
        await helpline.add_volunteer("tess", "pass-word-uas")
        port = free_port(HANDSET_HOST)
        registrar = RawHandset(HANDSET_HOST, port=port)
        try:
            final = await asyncio.to_thread(
                registrar.register, (helpline.host, helpline.port), "tess", "pass-word-uas",
                contact_port=port,
            )  # fmt: skip
        finally:
            registrar.close()
        assert final.startswith("SIP/2.0 200"), final
        handset = start_sipp(
            "uas_answer", None, local_ip=HANDSET_HOST, local_port=port, timeout_s=30
        )
        caller = await run_sipp_async(
            "uac_call", helpline.target, service="09000767", pause_ms=500, timeout_s=30
        )
        caller.assert_ok()
        answered = await asyncio.to_thread(handset.wait, 30)
        answered.assert_ok()
        invite = answered.received("INVITE")[0]
        assert f"INVITE sip:tess@{HANDSET_HOST}:{port}" in invite and '"Hulplijn"' in invite


async def test_tcp_handset_is_called_on_its_own_connection(helpline: Running) -> None:
    """A handset registered over TCP gets its calls on that connection (the only way through
    a home NAT for TCP), while the caller comes in over UDP."""
    await helpline.add_volunteer("umar", "pass-word-tcp")
    async with AsyncPjsuaPhone("umar") as phone:
        await phone.start(free_port(HANDSET_HOST), transport="tcp", bind=HANDSET_HOST)
        assert await phone.register(helpline.host, helpline.port, "umar", "pass-word-tcp") == 200
        binding = helpline.service.registrar.contacts("umar", time.time())[0]
        assert binding.source.transport is TransportKind.TCP
        connections = helpline.service.stack.transports.connection_count
        call = asyncio.create_task(
            run_sipp_async("uac_call", helpline.target, service="09000767", pause_ms=500)
        )
        incoming = await phone.wait_incoming(timeout=10)
        assert "SIP/2.0/TCP" in incoming.invite
        await phone.answer(200)
        (await call).assert_ok()
        assert helpline.service.stack.transports.connection_count == connections  # reused
