"""A burst of mutated requests from one address at the running service, and what it left."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

from tests.helpers.fuzz_requests import blast, burst_datagrams
from tests.helpers.service import Running


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
