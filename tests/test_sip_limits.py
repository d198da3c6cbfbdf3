"""Restarts, retransmissions, toll fraud and hostile sizes: what keeps the service trustworthy."""

from __future__ import annotations

import asyncio
import time

from tests.helpers.ports import free_port
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, MakeHelpline, running_service
from tests.helpers.sip_texts import INVITE, SDP
from tests.peers.sipp import run_sipp_async, start_sipp


async def test_bindings_survive_a_restart(make_helpline: MakeHelpline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with make_helpline(digest_algorithms=["MD5"]) as first:
        await first.add_volunteer("hanna", "pass-word-ghi")
        handset = RawHandset(HANDSET_HOST)
        final = await asyncio.to_thread(
            handset.register, (first.host, first.port), "hanna", "pass-word-ghi",
            contact_port=handset.port,
        )  # fmt: skip
        assert final.startswith("SIP/2.0 200"), final
        assert first.service.writer is not None and await first.service.writer.flush(5)
        settings = first.settings
    try:
        # a new process on the same database: the handset is still reachable without re-registering
        async with running_service(
            tmp_path / "second", settings.database_url, sip_port=settings.sip_port,
            digest_algorithms=["MD5"], call_flow="direct",
        ) as second:  # fmt: skip
            bindings = second.service.registrar.contacts("hanna", time.time())
            assert [(b.source.host, b.source.port) for b in bindings] == [
                (handset.host, handset.port)
            ]
            caller = start_sipp(
                "uac_expect_status", second.target, service="09000767",
                keys={"expect_status": "480"},
            )  # fmt: skip
            invite = await asyncio.to_thread(handset.recv_until, "INVITE", 10)
            await asyncio.to_thread(
                handset.answer, invite, "480 Temporarily Unavailable", (second.host, second.port)
            )
            (await asyncio.to_thread(caller.wait, 30)).assert_ok()
    finally:
        handset.close()


async def test_retransmitted_invite_makes_one_call(make_helpline: MakeHelpline) -> None:
    async with make_helpline() as helpline:
        caller = RawHandset()
        try:
            text = INVITE.format(
                host=helpline.host, port=helpline.port, me=caller.host, myport=caller.port
            )
            target = (helpline.host, helpline.port)
            caller.send(text, target)
            first = await asyncio.to_thread(caller.recv_until, "SIP/2.0", 5)
            caller.send(text, target)  # the same INVITE again, as a UDP retransmission
            caller.send(text, target)
            replies = [first]
            while True:
                try:
                    replies.append(await asyncio.to_thread(caller.recv, 1.5))
                except TimeoutError:
                    break
            statuses = [r.split("\r\n", 1)[0] for r in replies]
            # one call: 100 Trying, then exactly one final response (480, nobody registered)
            assert statuses[0] == "SIP/2.0 100 Trying"
            finals = [s for s in statuses if not s.startswith("SIP/2.0 1")]
            assert set(finals) == {"SIP/2.0 480 Temporarily Unavailable - No volunteer available"}
            assert helpline.service.stack.layer.stats.server_created == 1
        finally:
            caller.close()


async def test_volunteer_cannot_dial_out(make_helpline: MakeHelpline) -> None:
    """Toll fraud guard: an authenticated handset may not call an outside number."""
    from tests.peers.pjsua_phone import AsyncPjsuaPhone

    async with make_helpline() as helpline:
        await helpline.add_volunteer("ivo", "pass-word-jkl")
        uas = start_sipp("uas_answer", None, timeout_s=20)  # an "outside number" that would answer
        try:
            async with AsyncPjsuaPhone("ivo") as phone:
                await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
                assert (
                    await phone.register(helpline.host, helpline.port, "ivo", "pass-word-jkl")
                    == 200
                )
                status = await phone.make_call(f"sip:0031201234567@{helpline.host}:{helpline.port}")
                assert status in (403, 404), status
        finally:
            result = uas.stop()
        assert result.received("INVITE") == []  # nothing left the service


async def test_oversized_and_flooding_input(make_helpline: MakeHelpline) -> None:
    async with make_helpline(max_message_size=4000, max_dialogs=0) as helpline:
        probe = RawHandset()
        target = (helpline.host, helpline.port)
        try:
            big = INVITE.replace("Max-Forwards: 70\n", "X-Padding: " + "a" * 5000 + "\n")
            probe.send(big.format(host=helpline.host, port=helpline.port, me=probe.host,
                                  myport=probe.port), target)  # fmt: skip
            # too large: dropped without an answer, and the service keeps answering
            (await run_sipp_async("uac_options", helpline.target)).assert_ok()
            assert helpline.service.stack.transports.stats.malformed == 1
            # the dialog table is full (max_dialogs=0): a new call is refused with 503
            probe.send(INVITE.format(host=helpline.host, port=helpline.port, me=probe.host,
                                     myport=probe.port), target)  # fmt: skip
            reply = await asyncio.to_thread(probe.recv_until, "SIP/2.0 5", 5)
            assert reply.startswith("SIP/2.0 503") and "Retry-After:" in reply
        finally:
            probe.close()


async def test_call_whose_ack_never_comes_is_cleaned_up(make_helpline: MakeHelpline) -> None:
    async with make_helpline(digest_algorithms=["MD5"]) as helpline:  # T1 = 0.1 s
        await helpline.add_volunteer("joke", "pass-word-mno")
        volunteer, caller = RawHandset(HANDSET_HOST), RawHandset()
        target = (helpline.host, helpline.port)
        try:
            final = await asyncio.to_thread(
                volunteer.register, target, "joke", "pass-word-mno", contact_port=volunteer.port
            )
            assert final.startswith("SIP/2.0 200")
            offer = SDP.format(port=41000)
            invite = INVITE.format(
                host=helpline.host, port=helpline.port, me=caller.host, myport=caller.port
            ).replace(
                "Content-Length: 0\n\n",
                "Content-Type: application/sdp\n"
                f"Content-Length: {len(offer) + offer.count(chr(10))}\n\n{offer}",
            )
            caller.send(invite, target)
            ringing = await asyncio.to_thread(volunteer.recv_until, "INVITE", 5)
            await asyncio.to_thread(
                volunteer.answer, ringing, "200 OK", target, SDP.format(port=42000)
            )
            ack = await asyncio.to_thread(volunteer.recv_until, "ACK", 5)
            assert ack.startswith("ACK ")
            # The caller never ACKs: the 200 is retransmitted, then the call is torn down.
            oks = 0
            while True:
                msg = await asyncio.to_thread(caller.recv, 10)
                first = msg.split("\r\n", 1)[0]
                if first.startswith("SIP/2.0 200"):
                    oks += 1
                elif first.startswith("BYE "):
                    break
            assert oks >= 3  # retransmitted with T1 doubling (RFC 3261 13.3.1.4)
            bye = await asyncio.to_thread(volunteer.recv_until, "BYE", 5)
            assert bye.startswith("BYE sip:h@")
            await asyncio.sleep(0.5)
            assert helpline.service.switchboard.legs == {}
        finally:
            volunteer.close()
            caller.close()
