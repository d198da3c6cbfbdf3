"""Signal: the calls' events that can be waited for without a task (pbx/calls/signal.py)."""

from __future__ import annotations

import asyncio

from pbx.calls.signal import Signal


async def test_a_waiter_completes_when_the_signal_is_set_and_at_once_after() -> None:
    signal = Signal()
    before = signal.waiter()
    await asyncio.sleep(0)
    assert not before.done()
    signal.set()
    assert before.done() and before.result() is None
    after = signal.waiter()
    assert after.done()
    await asyncio.wait_for(signal.wait(), 1)  # still an asyncio.Event for everyone else


async def test_cancelling_one_wait_leaves_the_others_waiting() -> None:
    signal = Signal()
    first, second = signal.waiter(), signal.waiter()
    first.cancel()
    signal.set()
    assert first.cancelled()
    assert second.done() and not second.cancelled()


async def test_the_first_of_several_signals_with_asyncio_wait() -> None:
    hung_up, media_dead = Signal(), Signal()
    waits = {hung_up.waiter(), media_dead.waiter()}
    asyncio.get_running_loop().call_soon(media_dead.set)
    done, pending = await asyncio.wait(waits, timeout=1, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == 1
    for future in pending:
        future.cancel()
    assert media_dead.is_set() and not hung_up.is_set()


async def test_abandoned_waits_do_not_pile_up_on_a_long_call() -> None:
    signal = Signal()
    for _ in range(1000):
        signal.waiter().cancel()
    assert len(signal._futures) <= 8
    last = signal.waiter()
    signal.set()
    assert last.done()


async def test_wait_for_says_whether_the_signal_came_before_the_time_was_up() -> None:
    acked = Signal()
    asyncio.get_running_loop().call_later(0.01, acked.set)
    assert await acked.wait_for(5) is True
    assert await acked.wait_for(0) is True  # already set: at once

    never = Signal()
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await never.wait_for(0.05) is False
    assert loop.time() - began > 0.04  # the timer, not at once (the loop clock is coarse)
    never.set()  # setting it after the time was up disturbs nothing
    assert await never.wait_for(0) is True


async def test_a_cancelled_wait_for_leaves_no_timer_and_no_error_behind() -> None:
    signal = Signal()
    errors: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        waiting = asyncio.create_task(signal.wait_for(0.02))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert waiting.cancelled()
        await asyncio.sleep(0.05)  # past the timer it had armed
        signal.set()
    finally:
        loop.set_exception_handler(None)
    assert errors == []
