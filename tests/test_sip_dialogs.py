"""Inside a call: hold and resume by re-INVITE, in-dialog OPTIONS and INFO, CSeq order."""

from __future__ import annotations

import asyncio

from tests.helpers.raw_call import connect, sdp
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, MakeHelpline


async def test_hold_resume_options_info_and_cseq_order(make_helpline: MakeHelpline) -> None:
    async with make_helpline(digest_algorithms=["MD5"]) as helpline:
        await helpline.add_volunteer("olga", "pass-word-hold")
        caller, volunteer = RawHandset(), RawHandset(HANDSET_HOST)
        try:
            _, vol = await connect(helpline, caller, volunteer, "olga", "pass-word-hold")
            # the volunteer puts the caller on hold: we answer recvonly (RFC 3264 section 8.4)
            vol.request("INVITE", sdp(42010, "sendonly", version=2))
            held = await asyncio.to_thread(volunteer.recv_until, "SIP/2.0 2", 5)
            vol.ack()
            assert "a=recvonly" in held and "m=audio" in held
            # ... and resumes
            vol.request("INVITE", sdp(42010, "sendrecv", version=3))
            resumed = await asyncio.to_thread(volunteer.recv_until, "SIP/2.0 2", 5)
            vol.ack()
            assert "a=sendrecv" in resumed
            # an unusable offer is refused without ending the call
            vol.request("INVITE", sdp(42010).replace("RTP/AVP 8 0 101", "RTP/AVP 18"))
            refused = await asyncio.to_thread(volunteer.recv_until, "SIP/2.0 4", 5)
            assert refused.startswith("SIP/2.0 488"), refused
            vol.ack()
            vol.request("OPTIONS")
            assert (await asyncio.to_thread(volunteer.recv_until, "SIP/2.0", 5)).startswith(
                "SIP/2.0 200"
            )
            vol.request("INFO", "Signal=5\r\nDuration=160\r\n", "application/dtmf-relay")
            assert (await asyncio.to_thread(volunteer.recv_until, "SIP/2.0", 5)).startswith(
                "SIP/2.0 200"
            )
            vol.cseq -= 3  # a request older than the last one in this dialog
            vol.request("OPTIONS")
            stale = await asyncio.to_thread(volunteer.recv_until, "SIP/2.0 5", 5)
            assert stale.startswith("SIP/2.0 500"), stale
            vol.cseq += 10
            # the volunteer hangs up: the caller gets a BYE, the volunteer a 200
            vol.request("BYE")
            assert (await asyncio.to_thread(volunteer.recv_until, "SIP/2.0", 5)).startswith(
                "SIP/2.0 200"
            )
            bye = await asyncio.to_thread(caller.recv_until, "BYE", 5)
            assert bye.startswith("BYE sip:c@")
        finally:
            caller.close()
            volunteer.close()
