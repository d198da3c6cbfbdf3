"""The caller's 200 OK is kept alive until their ACK (RFC 3261 13.3.1.4), against sipp callers.

Over UDP a lost 200 or ACK would otherwise leave the caller ringing while the IVR talks to
nobody, or a call standing that the caller's side never confirmed. The service answers at once
(the IVR), sends the 200 again at T1, 2*T1, ... (capped at T2) while no ACK comes, stops once it
does, and after 64*T1 without one ends the call with a BYE. The fixture's T1 is 0.1 s.
"""

from __future__ import annotations

from tests.conftest import MakeHelpline
from tests.helpers.polling import until
from tests.peers.sipp import SippResult, run_sipp_async


def invite_200s(result: SippResult) -> list[str]:
    return [m for m in result.received("SIP/2.0 200") if "INVITE" in _cseq(m)]


def _cseq(message: str) -> str:
    return next((line for line in message.splitlines() if line.lower().startswith("cseq:")), "")


async def test_late_ack_gets_the_200_again_until_it_comes(make_helpline: MakeHelpline) -> None:
    async with make_helpline(call_flow="ivr", volunteer_whisper="") as helpline:
        result = await run_sipp_async(
            "uac_call_late_ack", helpline.target, service="09000767",
            keys={"ack_after_ms": "1000"}, timeout_s=20,
        )  # fmt: skip
        result.assert_ok()  # after the ACK the call stood: the caller's BYE got its 200
        # sent at 0, then again at 0.1, 0.3 and 0.7 s: the ACK came at 1 s
        assert len(invite_200s(result)) >= 3, result.describe()
        # once the ACK is there the 200 is not sent again (the 1.5 s copy never comes)
        messages = result.messages()
        acked = next(i for i, (d, m) in enumerate(messages) if d == "sent" and m.startswith("ACK"))
        after = [
            m for d, m in messages[acked:]
            if d == "received" and m.startswith("SIP/2.0 200") and "INVITE" in _cseq(m)
        ]  # fmt: skip
        assert after == [], result.describe()
        await until(lambda: not helpline.service.switchboard.legs)


async def test_caller_who_never_acks_gets_a_bye_after_64_t1(make_helpline: MakeHelpline) -> None:
    async with make_helpline(call_flow="ivr", volunteer_whisper="") as helpline:
        result = await run_sipp_async(
            "uac_call_no_ack", helpline.target, service="09000767",
            keys={"bye_within_ms": "15000"}, timeout_s=30,
        )  # fmt: skip
        result.assert_ok()  # the service gave up on the ACK and hung up with a BYE
        # 0, 0.1, 0.3, 0.7, 1.5, 3.1 s (T2 = 4 s caps nothing before 64*T1 = 6.4 s)
        assert len(invite_200s(result)) >= 5, result.describe()
        await until(lambda: not helpline.service.switchboard.legs)
