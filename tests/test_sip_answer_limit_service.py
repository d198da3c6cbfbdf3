"""The answer limit in the running service: a trunk call the service has not answered when
sip_invite_answer_limit passes (here: a volunteer's handset that rings on and on in the direct
flow) gets 500 from the transaction layer, the handset stops ringing (CANCEL), the call leg and
the server transaction is gone, and it is counted. Real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, MakeHelpline
from tests.helpers.sip_texts import INVITE


@pytest.mark.timeout(60)
async def test_an_invite_left_ringing_past_the_limit_gets_500_and_the_handset_stops(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline(
        digest_algorithms=["MD5"], sip_invite_answer_limit=1.5, call_flow="direct"
    ) as helpline:
        await helpline.add_volunteer("ria", "lantern-quiet-42")
        handset, caller = RawHandset(HANDSET_HOST), RawHandset()
        target = (helpline.host, helpline.port)
        try:
            final = await asyncio.to_thread(
                handset.register, target, "ria", "lantern-quiet-42", contact_port=handset.port
            )
            assert final.startswith("SIP/2.0 200"), final
            caller.send(
                INVITE.format(host=helpline.host, port=helpline.port, me=caller.host,
                              myport=caller.port),
                target,
            )  # fmt: skip
            started = time.monotonic()
            ringing = await asyncio.to_thread(handset.recv_until, "INVITE", 5)
            await asyncio.to_thread(handset.answer, ringing, "180 Ringing", target)
            await asyncio.to_thread(caller.recv_until, "180", 5)
            refused = await asyncio.to_thread(caller.recv_until, "SIP/2.0 5", 5)
            waited = time.monotonic() - started
            assert refused.startswith("SIP/2.0 500 Server Internal Error - No answer in time")
            assert 1.2 < waited < 4.0
            # the call is over for the service too: the handset stops ringing
            cancel = await asyncio.to_thread(handset.recv_until, "CANCEL", 5)
            await asyncio.to_thread(handset.answer, cancel, "200 OK", target)
            await asyncio.to_thread(handset.answer, ringing, "487 Request Terminated", target)
        finally:
            handset.close()
            caller.close()
        service = helpline.service
        assert service.stack.layer.stats.abandoned == 1
        deadline = time.monotonic() + 20
        layer = service.stack.layer
        while (service.switchboard.legs or layer.server_count()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        # (the INVITE to the handset lingers for Timer D, 32 s, as RFC 3261 wants)
        assert not service.switchboard.legs and layer.server_count() == 0
