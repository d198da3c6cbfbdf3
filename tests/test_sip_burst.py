"""A burst of malformed requests from one address leaves no transaction behind, and the trunk's
next call is answered as before. The burst is the request-path fuzzer's mutations (bad URIs and
numbers, huge and truncated values, wrong Content-Length, broken SDP and digest parameters,
unknown methods...) of real sipp/PJSIP requests, blasted over one UDP socket.

5,000 requests here to stay bounded in time; bench/burst_malformed.py runs the 50,000 of the
issue with the same code."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

import pytest

from tests.conftest import MakeHelpline
from tests.fuzz_requests import blast, burst_datagrams
from tests.peers.sipp import run_sipp_async
from tests.service_fixture import UNLIMITED_SOURCE, Running

BURST = 5_000


@dataclass
class BurstResult:
    sent: int
    seconds: float  # to send the burst
    transactions: int  # server transactions the burst created
    answered: int
    abandoned: int
    left: int  # transactions left once the timers ran
    legs_left: int
    drained_after: float  # seconds from the end of the burst until the table was empty
    peak: int  # most transactions seen live at once


async def burst_from_one_address(helpline: Running, count: int, seed: int = 11) -> BurstResult:
    service = helpline.service
    layer = service.stack.layer
    before = layer.stats.server_created
    target = (helpline.host, helpline.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.2", 0))
        datagrams = burst_datagrams(count, "127.0.0.2", sock.getsockname()[1], target, seed)
        peak = 0
        sending = asyncio.create_task(asyncio.to_thread(blast, sock, datagrams, target))
        while not sending.done():
            peak = max(peak, len(layer))
            await asyncio.sleep(0.05)
        seconds = await sending
        end = time.monotonic()
        deadline = end + 60
        while (len(layer) or service.switchboard.legs) and time.monotonic() < deadline:
            peak = max(peak, len(layer))
            await asyncio.sleep(0.1)
        drained = time.monotonic() - end
    stats = layer.stats
    return BurstResult(
        count, seconds, stats.server_created - before, stats.server_answered, stats.abandoned,
        len(layer), len(service.switchboard.legs), drained, peak,
    )  # fmt: skip


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
