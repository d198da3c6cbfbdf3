"""Digit collection and menus over real RTP on 127.0.0.1.

The caller is a plain asyncio datagram socket (tests.helpers.rtp_peer.Peer) that sends
RFC 4733 key presses and records the prompts it hears; which prompt was heard is told by
its tone frequency.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ivr.collect import Collected, CollectEnd, DigitBuffer, Menu, MenuEnd, collect_digits
from pbx.media import tones
from pbx.media.dtmf import dtmf_packets
from pbx.media.leg import MediaLeg
from pbx.media.ports import PortPool
from pbx.media.rtp import RtpPacket, RtpSender
from tests.helpers.rtp_peer import HOST, TE_PT, Peer, decoded, media_for, send_digit, wait_until

MENU_HZ, INVALID_HZ, NO_INPUT_HZ = 400.0, 1000.0, 700.0
TONES = (MENU_HZ, INVALID_HZ, NO_INPUT_HZ)


@pytest.fixture
async def call() -> AsyncIterator[tuple[MediaLeg, Peer]]:
    peer = await Peer.open()
    leg = await MediaLeg.open(PortPool(HOST, 42000, 42199), media_for(peer.port))
    yield leg, peer
    leg.close()
    peer.close()


def spurts(peer: Peer) -> list[list[RtpPacket]]:
    """Received audio split into talk-spurts (one per prompt played), by the marker bit."""
    out: list[list[RtpPacket]] = []
    for packet in peer.audio():
        if packet.marker or not out:
            out.append([])
        out[-1].append(packet)
    return out


def heard(peer: Peer) -> list[float]:
    """The tone of every prompt the caller heard, in order."""
    return [tones.dominant_frequency(decoded(s), TONES) for s in spurts(peer)]


async def listening(task: asyncio.Task[Collected]) -> None:
    """Let a collection just created start listening before keys are pressed: uvloop runs the
    I/O that is ready before a task scheduled meanwhile (asyncio the other way round), so a
    key sent at once could reach the leg before the collection does."""
    await asyncio.sleep(0)
    assert not task.done()


async def press(peer: Peer, leg: MediaLeg, keys: str, sender: RtpSender) -> None:
    for key in keys:
        await send_digit(peer, leg.local_address, key, sender)


async def test_key_during_prompt_stops_it_and_is_the_first_digit(
    call: tuple[MediaLeg, Peer],
) -> None:
    leg, peer = call
    task = asyncio.create_task(
        collect_digits(
            leg,
            [tones.sine(MENU_HZ, 4000)],
            max_digits=6,
            first_digit_timeout=2,
            inter_digit_timeout=2,
        )
    )
    await wait_until(lambda: len(peer.audio()) >= 5)
    await press(peer, leg, "12#", RtpSender())
    got = await asyncio.wait_for(task, 5)
    assert (got.digits, got.reason) == ("12", CollectEnd.TERMINATOR)
    assert len(peer.audio()) < 100  # the 200-frame prompt stopped at the first key


async def test_fast_keys_during_prompt_are_all_kept(call: tuple[MediaLeg, Peer]) -> None:
    leg, peer = call
    task = asyncio.create_task(
        collect_digits(
            leg,
            [tones.sine(MENU_HZ, 4000)],
            max_digits=4,
            first_digit_timeout=2,
            inter_digit_timeout=2,
        )
    )
    await wait_until(lambda: len(peer.audio()) >= 3)
    sender = RtpSender()
    # All four presses go out back to back, before the collector can have looked at any.
    packets = [p for key in "9081" for p in dtmf_packets(key, sender, TE_PT, duration_ms=40)]
    for packet in packets:
        peer.send(packet, leg.local_address)
    got = await asyncio.wait_for(task, 5)
    assert (got.digits, got.reason) == ("9081", CollectEnd.COMPLETE)


async def test_digits_after_the_prompt_until_max_digits(call: tuple[MediaLeg, Peer]) -> None:
    leg, peer = call
    task = asyncio.create_task(
        collect_digits(
            leg,
            [tones.sine(MENU_HZ, 200)],
            max_digits=3,
            first_digit_timeout=2,
            inter_digit_timeout=2,
        )
    )
    await wait_until(lambda: len(peer.audio()) == 10)  # the whole prompt was heard
    await asyncio.sleep(0.1)
    await press(peer, leg, "456", RtpSender())
    got = await asyncio.wait_for(task, 5)
    assert (got.digits, got.reason) == ("456", CollectEnd.COMPLETE)
    assert len(peer.audio()) == 10


async def test_inter_digit_timeout_returns_what_was_typed(call: tuple[MediaLeg, Peer]) -> None:
    leg, peer = call
    task = asyncio.create_task(
        collect_digits(leg, [], max_digits=4, first_digit_timeout=2, inter_digit_timeout=0.3)
    )
    await listening(task)
    await press(peer, leg, "73", RtpSender())
    got = await asyncio.wait_for(task, 5)
    assert (got.digits, got.reason) == ("73", CollectEnd.TIMEOUT)


async def test_no_input_and_a_lone_terminator(call: tuple[MediaLeg, Peer]) -> None:
    leg, peer = call
    got = await collect_digits(
        leg,
        [tones.sine(MENU_HZ, 100)],
        max_digits=4,
        first_digit_timeout=0.2,
        inter_digit_timeout=0.2,
    )
    assert (got.digits, got.reason) == ("", CollectEnd.NO_INPUT)
    assert len(peer.audio()) == 5

    task = asyncio.create_task(
        collect_digits(leg, [], max_digits=4, first_digit_timeout=2, inter_digit_timeout=2)
    )
    await listening(task)
    await press(peer, leg, "#", RtpSender())
    got = await asyncio.wait_for(task, 5)
    assert (got.digits, got.reason) == ("", CollectEnd.TERMINATOR)


async def test_without_barge_in_the_prompt_plays_out_and_keys_are_kept(
    call: tuple[MediaLeg, Peer],
) -> None:
    leg, peer = call
    task = asyncio.create_task(
        collect_digits(
            leg,
            [tones.sine(MENU_HZ, 600)],
            max_digits=2,
            first_digit_timeout=2,
            inter_digit_timeout=2,
            barge_in=False,
        )
    )
    await wait_until(lambda: len(peer.audio()) >= 3)
    await press(peer, leg, "5", RtpSender())
    leg.deliver_digit("6")  # a key by SIP INFO counts the same
    got = await asyncio.wait_for(task, 5)
    assert (got.digits, got.reason) == ("56", CollectEnd.COMPLETE)
    await wait_until(lambda: len(peer.audio()) == 30)  # all 600 ms were sent


async def test_caller_hanging_up_while_collecting(call: tuple[MediaLeg, Peer]) -> None:
    leg, peer = call
    task = asyncio.create_task(
        collect_digits(
            leg,
            [tones.sine(MENU_HZ, 200)],
            max_digits=4,
            first_digit_timeout=5,
            inter_digit_timeout=5,
        )
    )
    await wait_until(lambda: len(peer.audio()) == 10)
    await press(peer, leg, "8", RtpSender())
    await asyncio.sleep(0.05)
    leg.close()
    got = await asyncio.wait_for(task, 2)
    assert (got.digits, got.reason) == ("8", CollectEnd.LEG_CLOSED)


def menu(leg: MediaLeg, buffer: DigitBuffer | None = None, retries: int = 2) -> Menu:
    return Menu(
        leg,
        [tones.sine(MENU_HZ, 200)],
        {"1", "2"},
        timeout=0.3,
        retries=retries,
        invalid_prompt=[tones.sine(INVALID_HZ, 100)],
        no_input_prompt=[tones.sine(NO_INPUT_HZ, 100)],
        buffer=buffer,
    )


async def test_menu_invalid_key_then_silence_then_default(call: tuple[MediaLeg, Peer]) -> None:
    leg, peer = call
    task = asyncio.create_task(menu(leg).run())
    await wait_until(lambda: len(peer.audio()) >= 3)
    await press(peer, leg, "9", RtpSender())  # not on the menu
    result = await asyncio.wait_for(task, 5)
    assert result.reason is MenuEnd.DEFAULT
    assert (result.attempts, result.invalid, result.no_input) == (3, 1, 2)
    assert heard(peer) == [MENU_HZ, INVALID_HZ, MENU_HZ, NO_INPUT_HZ, MENU_HZ, NO_INPUT_HZ]


async def test_menu_valid_key_after_a_retry(call: tuple[MediaLeg, Peer]) -> None:
    leg, peer = call
    task = asyncio.create_task(menu(leg).run())
    await wait_until(lambda: len(heard(peer)) >= 2)  # prompt, then the no-input prompt
    await wait_until(lambda: len(heard(peer)) >= 3)  # menu again
    await press(peer, leg, "2", RtpSender())
    result = await asyncio.wait_for(task, 5)
    assert (result.reason, result.choice, result.attempts) == (MenuEnd.CHOSEN, "2", 2)
    assert heard(peer) == [MENU_HZ, NO_INPUT_HZ, MENU_HZ]


async def test_menu_with_no_retries_and_a_hangup(call: tuple[MediaLeg, Peer]) -> None:
    leg, peer = call
    result = await menu(leg, retries=0).run()
    assert (result.reason, result.attempts) == (MenuEnd.DEFAULT, 1)
    task = asyncio.create_task(menu(leg).run())
    await wait_until(lambda: len(heard(peer)) >= 3)
    leg.close()
    result = await asyncio.wait_for(task, 2)
    assert result.reason is MenuEnd.LEG_CLOSED


async def test_key_typed_ahead_skips_the_menu_prompt(call: tuple[MediaLeg, Peer]) -> None:
    leg, peer = call
    with DigitBuffer(leg) as buffer:
        await press(peer, leg, "1", RtpSender())
        await wait_until(lambda: buffer.pending == 1)
        result = await menu(leg, buffer).run()
    assert (result.reason, result.choice) == (MenuEnd.CHOSEN, "1")
    assert peer.audio() == []
