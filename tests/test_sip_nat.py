"""Handsets behind home NAT: calls go where the REGISTER really came from, and are kept alive."""

from __future__ import annotations

import asyncio
import time

from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, MakeHelpline
from tests.peers.sipp import start_sipp


async def test_call_goes_to_the_address_the_register_came_from(make_helpline: MakeHelpline) -> None:
    async with make_helpline(digest_algorithms=["MD5"]) as helpline:
        await helpline.add_volunteer("femke", "pass-word-abc")
        handset = RawHandset(HANDSET_HOST)
        target = (helpline.host, helpline.port)
        try:
            # The Contact names port 9 (what a phone behind NAT believes is its address).
            final = await asyncio.to_thread(
                handset.register, target, "femke", "pass-word-abc", contact_port=9
            )
            assert final.startswith("SIP/2.0 200"), final
            binding = helpline.service.registrar.contacts("femke", time.time())[0]
            assert binding.source.port == handset.port and binding.contact.port == 9
            caller = start_sipp(
                "uac_expect_status", helpline.target, service="09000767",
                keys={"expect_status": "480"}, timeout_s=30,
            )  # fmt: skip
            invite = await asyncio.to_thread(handset.recv_until, "INVITE", 10)
            # sent to the real source address, addressed to the registered Contact
            assert invite.startswith(f"INVITE sip:femke@{handset.host}:9 ")
            await asyncio.to_thread(handset.answer, invite, "486 Busy Here", target)
            result = await asyncio.to_thread(caller.wait, 30)
            result.assert_ok()  # busy handset and nobody else: the caller hears 480
        finally:
            handset.close()


async def test_udp_handsets_get_keepalive_options(make_helpline: MakeHelpline) -> None:
    async with make_helpline(digest_algorithms=["MD5"], keepalive_interval=0.3) as helpline:
        await helpline.add_volunteer("gert", "pass-word-def")
        handset = RawHandset(HANDSET_HOST)
        try:
            target = (helpline.host, helpline.port)
            final = await asyncio.to_thread(
                handset.register, target, "gert", "pass-word-def", contact_port=handset.port
            )
            assert final.startswith("SIP/2.0 200"), final
            ping = await asyncio.to_thread(handset.recv_until, "OPTIONS", 5)
            assert f"OPTIONS sip:gert@{handset.host}:{handset.port}" in ping
        finally:
            handset.close()
