"""The shared 20 ms media clock: the kernel timer under it, its round numbers, and the garbage
collector kept out of a round (pbx/media/clock.py, pbx/media/ticker.py)."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from typing import Any

import pytest

from pbx.media.ticker import Ticker
from tests.helpers.polling import until

LINUX = sys.platform.startswith("linux")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kernel_timer", [True, False], ids=["timerfd", "loop-timer"])
async def test_rounds_follow_the_clock_without_drift(kernel_timer: bool) -> None:
    """Round n fires at start + n * 20 ms: after many rounds the number is the clock's, and
    every round (or a jump over rounds the loop slept through) comes once, in order."""
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, kernel_timer=kernel_timer)
    seen: list[tuple[int, float]] = []
    ticker.subscribe(lambda tick: seen.append((tick, time.monotonic())))
    started = time.monotonic()
    await until(lambda: len(seen) >= 25, timeout=10)
    ticker.unsubscribe(ticker_callbacks(ticker)[0])
    assert not ticker.running
    ticks = [tick for tick, _ in seen]
    assert ticks == sorted(set(ticks)) and ticks[0] == 1
    assert ticker.skipped == sum(b - a - 1 for a, b in zip(ticks, ticks[1:], strict=False))
    tick, at = seen[-1]
    # never early, and the number says which deadline is due (not a count of wake-ups)
    assert at - started >= tick * ticker.period - 0.002
    assert tick == int((at - started) / ticker.period + 0.5) or tick == int(
        (at - started) / ticker.period
    )


def ticker_callbacks(ticker: Ticker) -> list[Any]:
    return [*ticker._subscribers, *ticker._late]


@pytest.mark.skipif(not LINUX, reason="the kernel timer is a Linux timerfd")
async def test_each_run_of_the_clock_returns_its_kernel_timer() -> None:
    """The clock holds one descriptor while something plays, none when nothing does: a
    thousand prompts one after another leave no descriptor behind."""
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop)
    before = open_descriptors()
    for _ in range(3):
        rounds: list[int] = []
        ticker.subscribe(rounds.append)
        assert open_descriptors() == before + 1
        await until(lambda: len(rounds) >= 2, timeout=5)  # noqa: B023
        ticker.unsubscribe(rounds.append)
        assert not ticker.running
        assert open_descriptors() == before


async def test_no_garbage_collection_inside_a_round() -> None:
    """A collection in the middle of a round would delay every packet after it: it waits
    until the round is over, and then runs."""
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop)
    inside = [False]
    during: list[str] = []
    after: list[str] = []

    def observe(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            (during if inside[0] else after).append(phase)

    kept: list[list[int]] = []

    def round_(tick: int) -> None:
        inside[0] = True
        # new containers that stay: as many as several young-generation collections take
        kept.extend([i] for i in range(gc.get_threshold()[0] * 5))
        inside[0] = False

    gc.callbacks.append(observe)
    try:
        ticker.subscribe(round_)
        await until(lambda: len(after) >= 1, timeout=5)
        ticker.unsubscribe(round_)
    finally:
        gc.callbacks.remove(observe)
    assert during == []
    assert gc.isenabled()
