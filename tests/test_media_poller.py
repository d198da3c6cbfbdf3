"""The media poller (all RTP sockets of a loop behind one epoll descriptor) over real UDP
sockets on 127.0.0.1: calls keep their media when other calls end in the same wake-up, when
a closed port's descriptor number is reused by the next call, and after the loop was held up.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from pbx.media.bridge import Bridge
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg
from pbx.media.poller import poller_for
from pbx.media.ports import PortPool
from pbx.media.rtp import RtpSender
from tests.helpers.media_runtime import leg_and_peer, port_pool, rtp_peers
from tests.helpers.rtp_peer import Peer, media_for, wait_until

pool = pytest.fixture(port_pool)
peers = pytest.fixture(rtp_peers)

FRAME = b"\xd5" * 160


def _errors(loop: asyncio.AbstractEventLoop) -> list[dict[str, object]]:
    seen: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    return seen


async def test_calls_relay_on_when_another_call_ends_in_the_same_wake_up(
    pool: PortPool, peers: list[Peer]
) -> None:
    errors = _errors(asyncio.get_running_loop())
    calls = []
    for _ in range(3):
        a, caller = await leg_and_peer(pool, peers, Codec.PCMA)
        b, volunteer = await leg_and_peer(pool, peers, Codec.PCMA)
        calls.append((a, caller, b, volunteer, Bridge(a, b).start()))
    # The first call's caller leg hangs up the second call as its packet arrives; the
    # second call's packets are ready in the same wake-up.
    doomed = calls[1]

    def hang_up_the_second_call(_payload: bytes, _codec: Codec) -> None:
        doomed[0].close()
        doomed[2].close()

    calls[0][0].add_audio_listener(hang_up_the_second_call)
    senders = [RtpSender() for _ in calls]
    for _ in range(5):
        for (a, caller, _b, _v, _bridge), sender in zip(calls, senders, strict=True):
            caller.send(sender.packet(FRAME, Codec.PCMA, 160), a.local_address)
        await asyncio.sleep(0.02)
    for index in (0, 2):
        _a, _caller, _b, volunteer, bridge = calls[index]
        await wait_until(lambda v=volunteer: len(v.audio()) == 5)
        assert bridge.a_to_b.relayed == 5
    assert doomed[4].done.done() and doomed[0].closed
    assert errors == []
    for a, _caller, b, _volunteer, _bridge in calls:
        a.close()
        b.close()


async def test_a_call_keeps_its_media_when_a_closed_port_number_is_reused(
    pool: PortPool, peers: list[Peer]
) -> None:
    old, _ = await leg_and_peer(pool, peers, Codec.PCMA)
    peer = await Peer.open()
    peers.append(peer)
    fd = old.endpoint.port.rtp_socket.fileno()
    old.endpoint.port.close()  # the port went away under the leg (its descriptor is free)
    new = await MediaLeg.open(pool, media_for(peer.port, Codec.PCMA))
    assert new.endpoint.port.rtp_socket.fileno() == fd  # the next call got the same number
    old.close()  # must not take the new call's reader with it
    heard: list[bytes] = []
    new.add_audio_listener(lambda payload, _codec: heard.append(payload))
    sender = RtpSender()
    for _ in range(3):
        peer.send(sender.packet(FRAME, Codec.PCMA, 160), new.local_address)
    await wait_until(lambda: len(heard) == 3)
    assert len(poller_for()) >= 1
    new.close()


async def test_a_backlog_after_the_loop_was_held_up_is_caught_up_in_one_wake_up(
    pool: PortPool, peers: list[Peer]
) -> None:
    a, caller = await leg_and_peer(pool, peers, Codec.PCMA)
    b, volunteer = await leg_and_peer(pool, peers, Codec.PCMA)
    bridge = Bridge(a, b).start()
    sender = RtpSender()
    caller.send(sender.packet(FRAME, Codec.PCMA, 160), a.local_address)
    await wait_until(lambda: bridge.a_to_b.relayed == 1)
    await asyncio.sleep(0.06)  # a quiet spell: the next wake-up follows a gap
    loop_blocked_until = time.monotonic() + 0.1
    for _ in range(5):  # five packets pile up in the socket while the loop is held up
        caller.send(sender.packet(FRAME, Codec.PCMA, 160), a.local_address)
    while time.monotonic() < loop_blocked_until:
        pass
    poller = poller_for()
    wakeups = poller.wakeups
    await wait_until(lambda: bridge.a_to_b.relayed == 6)
    assert poller.wakeups - wakeups == 1  # all five in the first wake-up
    await wait_until(lambda: len(volunteer.audio()) == 6)
    a.close()
    b.close()
