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
