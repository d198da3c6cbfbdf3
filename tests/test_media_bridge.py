"""The media runtime's bridge and shared ticker over real UDP sockets on 127.0.0.1.

The far ends are plain asyncio datagram sockets sending RTP built with pbx.media.rtp,
so every test checks what actually goes over the wire.
"""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from pbx.media import g711, tones
from pbx.media.bridge import Bridge, BridgeEnd, Side
from pbx.media.g711 import Codec
from pbx.media.ports import PortPool
from pbx.media.rtp import RtpSender
from pbx.media.ticker import Ticker, ticker_for
from tests.helpers.freed import ref
from tests.helpers.media_runtime import leg_and_peer, port_pool, rtp_peers, tone_of
from tests.helpers.rtp_peer import (
    Peer,
    decoded,
    send_digit,
    stream,
    wait_until,
)

pool = pytest.fixture(port_pool)
peers = pytest.fixture(rtp_peers)


# ------------------------------------------------------------------------ bridge
async def test_bridge_transcodes_both_ways_and_hides_addresses(
    pool: PortPool, peers: list[Peer]
) -> None:
    leg_a, peer_a = await leg_and_peer(pool, peers, codec=Codec.PCMA)
    leg_b, peer_b = await leg_and_peer(pool, peers, codec=Codec.PCMU)
    bridge = Bridge(leg_a, leg_b).start()
    try:
        await asyncio.gather(
            stream(
                peer_a, leg_a.local_address, tones.sine(1000, 400), Codec.PCMA, RtpSender(), 0.002
            ),
            stream(
                peer_b, leg_b.local_address, tones.sine(400, 400), Codec.PCMU, RtpSender(), 0.002
            ),
        )
        await wait_until(lambda: len(peer_a.packets) == 20 and len(peer_b.packets) == 20)

        assert {p.payload_type for p in peer_b.packets} == {Codec.PCMU}
        assert {p.payload_type for p in peer_a.packets} == {Codec.PCMA}
        assert tones.dominant_frequency(decoded(peer_b.packets), [400, 1000]) == 1000
        assert tones.dominant_frequency(decoded(peer_a.packets), [400, 1000]) == 400
        # Each side only ever sees the service's own port.
        assert set(peer_b.sources) == {leg_b.local_address}
        assert set(peer_a.sources) == {leg_a.local_address}
        assert (bridge.a_to_b.relayed, bridge.a_to_b.transcoded) == (20, 20)
        assert (bridge.b_to_a.relayed, bridge.b_to_a.transcoded) == (20, 20)
    finally:
        leg_a.close()
        leg_b.close()
    assert await bridge.done is BridgeEnd.LEG_CLOSED


async def test_bridge_keeps_dtmf_to_itself_by_default(pool: PortPool, peers: list[Peer]) -> None:
    leg_a, peer_a = await leg_and_peer(pool, peers)
    leg_b, peer_b = await leg_and_peer(pool, peers)
    digits: list[str] = []
    leg_b.on_dtmf = digits.append
    bridge = Bridge(leg_a, leg_b).start()
    try:
        await send_digit(peer_b, leg_b.local_address, "*", RtpSender())
        await stream(peer_b, leg_b.local_address, tones.sine(400, 100), Codec.PCMU, RtpSender())
        await wait_until(lambda: len(peer_a.packets) == 5)
        assert digits == ["*"]  # the volunteer's feature code reached the service...
        assert all(p.payload_type == Codec.PCMU for p in peer_a.packets)  # ...not the caller
        assert bridge.b_to_a.dtmf_relayed == 0
    finally:
        bridge.stop()
        leg_a.close()
        leg_b.close()
    assert await bridge.done is BridgeEnd.STOPPED


async def test_ended_bridge_and_its_legs_are_freed_without_the_cycle_collector(
    pool: PortPool, peers: list[Peer]
) -> None:
    # A call's media objects must go the moment the call ends: left in reference cycles they
    # pile up for the cyclic collector, whose passes cost CPU per call and pause the loop.
    leg_a, peer_a = await leg_and_peer(pool, peers)
    leg_b, peer_b = await leg_and_peer(pool, peers)
    bridge = Bridge(leg_a, leg_b).start()
    await stream(peer_a, leg_a.local_address, tones.sine(400, 100), Codec.PCMU, RtpSender())
    await wait_until(lambda: len(peer_b.packets) == 5)
    gc.collect()
    gc.disable()
    try:
        leg_a.close()
        leg_b.close()
        assert await bridge.done is BridgeEnd.LEG_CLOSED
        await asyncio.sleep(0)  # the done future's callbacks
        kept = [ref(o) for o in (bridge, leg_a, leg_b, leg_a.endpoint, leg_b.endpoint)]
        del bridge, leg_a, leg_b
        assert [ref() for ref in kept] == [None] * len(kept)
    finally:
        gc.enable()


async def test_injected_tone_is_heard_by_one_side_only(pool: PortPool, peers: list[Peer]) -> None:
    caller, caller_peer = await leg_and_peer(pool, peers, codec=Codec.PCMA)
    volunteer, volunteer_peer = await leg_and_peer(pool, peers, codec=Codec.PCMU)
    bridge = Bridge(caller, volunteer).start()
    try:
        talk = asyncio.gather(
            stream(
                caller_peer,
                caller.local_address,
                tones.sine(400, 1200),
                Codec.PCMA,
                RtpSender(),
                0.02,
            ),
            stream(
                volunteer_peer,
                volunteer.local_address,
                tones.sine(400, 1200),
                Codec.PCMU,
                RtpSender(),
                0.02,
            ),
        )
        await wait_until(lambda: len(volunteer_peer.packets) >= 5)
        await asyncio.wait_for(bridge.inject_tone(Side.B, tones.sine(1000, 300)), 3)
        await talk
        await asyncio.sleep(0.1)

        at_volunteer = [tone_of(g711.decode(Codec.PCMU, p.payload)) for p in volunteer_peer.packets]
        at_caller = [tone_of(g711.decode(Codec.PCMA, p.payload)) for p in caller_peer.packets]
        assert at_volunteer.count(1000.0) == 15  # 300 ms of tone, one frame per tick
        assert at_volunteer.index(1000.0) > 0 and at_volunteer[-1] == 400.0  # caller before/after
        assert 1000.0 not in at_caller and at_caller.count(400.0) >= 50
        assert bridge.a_to_b.replaced >= 10
        seqs = [p.sequence for p in volunteer_peer.packets]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
    finally:
        caller.close()
        volunteer.close()


async def test_mixed_tone_keeps_the_other_party_audible(pool: PortPool, peers: list[Peer]) -> None:
    caller, caller_peer = await leg_and_peer(pool, peers)
    volunteer, volunteer_peer = await leg_and_peer(pool, peers)
    bridge = Bridge(caller, volunteer).start()
    try:
        talk = stream(
            caller_peer,
            caller.local_address,
            tones.sine(400, 600, 0.2),
            Codec.PCMU,
            RtpSender(),
            0.02,
        )
        tone = bridge.inject_tone(volunteer, tones.sine(1000, 200, 0.2), mix=True)
        await asyncio.gather(talk, tone)
        await asyncio.sleep(0.1)
        mixed = [g711.decode(Codec.PCMU, p.payload) for p in volunteer_peer.packets]
        both = [
            f
            for f in mixed
            if tones.goertzel_power(f, 1000) > 0.005 and tones.goertzel_power(f, 400) > 0.005
        ]
        assert len(both) >= 5
    finally:
        caller.close()
        volunteer.close()


# ------------------------------------------------------------------------ ticker
async def test_ticker_skips_missed_ticks_instead_of_bursting() -> None:
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop)
    seen: list[tuple[int, float]] = []

    def on_tick(tick: int) -> None:
        seen.append((tick, loop.time()))
        if len(seen) == 1:
            time.sleep(0.15)  # the loop is blocked for 7.5 periods

    ticker.subscribe(on_tick)
    await wait_until(lambda: len(seen) >= 5)
    ticker.unsubscribe(on_tick)
    assert not ticker.running
    ticks = [t for t, _ in seen]
    assert ticks == sorted(set(ticks))
    assert ticks[1] >= ticks[0] + 7  # jumped over the deadlines missed while blocked
    assert ticker.skipped >= 6


async def test_ticker_is_shared_and_survives_resubscription_from_a_callback() -> None:
    ticker = ticker_for()
    assert ticker_for() is ticker
    calls: list[int] = []

    def second(tick: int) -> None:
        calls.append(tick)

    def first(tick: int) -> None:
        ticker.unsubscribe(first)
        ticker.subscribe(second)

    ticker.subscribe(first)
    await wait_until(lambda: len(calls) >= 3)
    ticker.unsubscribe(second)
    assert calls == sorted(set(calls))
    assert not ticker.running
