"""A burst of malformed requests from one address leaves no transaction behind, and the trunk's
next call is answered as before. The burst is the request-path fuzzer's mutations (bad URIs and
numbers, huge and truncated values, wrong Content-Length, broken SDP and digest parameters,
unknown methods...) of real sipp/PJSIP requests, blasted over one UDP socket.

5,000 requests here to stay bounded in time; bench/burst_malformed.py runs the 50,000 of the
issue with the same code."""

from __future__ import annotations

import pytest

from tests.helpers.bursts import burst_from_one_address
from tests.helpers.service import UNLIMITED_SOURCE, MakeHelpline
from tests.peers.sipp import run_sipp_async

BURST = 5_000


@pytest.mark.timeout(120)
async def test_a_burst_of_malformed_requests_leaves_nothing_and_the_trunk_still_gets_through(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline(call_flow="ivr", volunteer_whisper="", **UNLIMITED_SOURCE) as helpline:
        result = await burst_from_one_address(helpline, BURST)
        assert result.left == 0 and result.legs_left == 0, result
        assert result.transactions > BURST // 5, result  # most reached the application
        assert result.answered == result.transactions and result.abandoned == 0, result
        assert helpline.service.stack.request_failures == 0
        # afterwards the carrier's call is answered as before (the IVR answers at once)
        call = await run_sipp_async(
            "uac_call", helpline.target, service="09000767", pause_ms=500, timeout_s=20
        )
        call.assert_ok()
