"""The call layer on in-memory SIP: the real call application (`pbx.app.build_service`) with its
stack on an in-memory network, phones as sans-IO cores on the same network, RTP on real
loopback sockets. A trunk call answered by the IVR, a volunteer logging in from the handset,
the queued caller offered to the volunteer and bridged, BYE ending both legs, and a caller who
gives up while the volunteer's handset rings. Each takes a few seconds at most (prompts play in
real time; SIP takes milliseconds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pbx.media.g711 import Codec
from pbx.media.rtp import RtpSender
from pbx.media.tones import sine
from pbx.sip.dialog import DialogState
from queues.roster import VolunteerState
from tests.helpers.audio import loud_part, tone_share
from tests.helpers.memory_handsets import Handset, media_address, sdp_offer
from tests.helpers.memory_phones import Caller
from tests.helpers.memory_service import MemoryHelpline, memory_helpline
from tests.helpers.polling import until
from tests.helpers.rtp_peer import Peer as RtpPeer
from tests.helpers.rtp_peer import decoded, send_digit, stream

TRUNK, HANDSET = "127.0.0.1", "127.0.0.2"  # the trunk by its address; handsets elsewhere
PASSWORD = "correct-horse-battery"
NATIONAL = "09000767"
CALLER_NUMBER = "0612345678"  # in the caller's From: it must reach nobody


@pytest.fixture
async def rtp() -> AsyncIterator[list[RtpPeer]]:
    opened: list[RtpPeer] = []
    yield opened
    for peer in opened:
        peer.close()


async def on_shift(
    helpline: MemoryHelpline, rtp: list[RtpPeer], name: str, port: int = 5062
) -> Handset:
    """The volunteer's handset registers, then dials *1: the service answers, confirms with a
    prompt and hangs up; the volunteer is available."""
    media = await RtpPeer.open(HANDSET)
    rtp.append(media)
    handset = Handset(
        helpline.network, HANDSET, 5062, user=name, sdp=sdp_offer(HANDSET, media.port)
    )
    handset.register(helpline.peer, PASSWORD)
    await until(lambda: handset.register_statuses[-1:] == [200], timeout=5)
    handset.dial(helpline.peer, "*1", PASSWORD)
    await until(lambda: handset.final == 200, timeout=5)
    dialog = handset.dialog
    assert dialog is not None
    await until(lambda: dialog.state is DialogState.TERMINATED, timeout=10)  # the service's BYE
    assert helpline.service.roster.get(name).state is VolunteerState.AVAILABLE
    return handset


async def call_queue(helpline: MemoryHelpline, rtp: list[RtpPeer], port: int) -> Caller:
    """A carrier call on the national number, answered by the IVR; the caller presses 1."""
    media = await RtpPeer.open(TRUNK)
    rtp.append(media)
    caller = Caller(helpline.network, TRUNK, port, user=CALLER_NUMBER)
    caller.invite(helpline.peer, NATIONAL, sdp=sdp_offer(TRUNK, media.port))
    await until(lambda: caller.final is not None, timeout=5)
    assert caller.final == 200 and caller.acks_sent >= 1
    answer = [r for r in caller.responses if r.status == 200][0]
    await send_digit(media, media_address(answer.body), "1", RtpSender())
    return caller


async def test_a_queued_caller_is_bridged_to_the_volunteer_and_bye_ends_both_legs(
    tmp_path: Path, rtp: list[RtpPeer]
) -> None:
    async with memory_helpline(tmp_path, {"anna": PASSWORD}) as helpline:
        anna = await on_shift(helpline, rtp, "anna")
        caller = await call_queue(helpline, rtp, 5070)
        await until(lambda: len(anna.offers) == 1, timeout=10)  # offered to the volunteer
        offer = anna.offers[0].request
        assert CALLER_NUMBER not in offer.to_bytes().decode()  # it reaches no volunteer
        anna.answer()
        await until(lambda: anna.incoming_acks >= 1, timeout=5)
        service = helpline.service
        await until(lambda: service.roster.get("anna").state is VolunteerState.IN_CALL)
        # bridged: the volunteer hears what the caller says (relayed by the anchored media)
        caller_rtp, anna_rtp = rtp[1], rtp[0]
        before = len(anna_rtp.audio())
        to_service = media_address(caller.responses[-1].body)
        await stream(caller_rtp, to_service, sine(1000, 600), Codec.PCMU, RtpSender(), 0.02)
        await until(lambda: len(anna_rtp.audio()) >= before + 25, timeout=5)
        heard = loud_part(decoded(anna_rtp.audio()[before:]))
        assert tone_share(heard, 1000) > 0.8
        caller.hang_up()
        await until(lambda: caller.bye_status == 200 and anna.byes_received == 1, timeout=5)
        await until(lambda: len(service.switchboard.table) == 0, timeout=5)
        assert service.roster.get("anna").state is not VolunteerState.IN_CALL


async def test_a_caller_hanging_up_while_the_volunteer_rings_cancels_the_ringing(
    tmp_path: Path, rtp: list[RtpPeer]
) -> None:
    async with memory_helpline(tmp_path, {"anna": PASSWORD}) as helpline:
        anna = await on_shift(helpline, rtp, "anna")
        caller = await call_queue(helpline, rtp, 5070)
        await until(lambda: len(anna.offers) == 1, timeout=10)
        service = helpline.service
        assert service.roster.get("anna").state is VolunteerState.RINGING
        caller.hang_up()  # before the volunteer answers
        await until(lambda: caller.bye_status == 200 and anna.cancelled, timeout=5)
        await until(lambda: len(service.switchboard.table) == 0, timeout=5)
        await until(lambda: service.roster.get("anna").state is VolunteerState.AVAILABLE)
        assert anna.incoming is None


async def test_direct_flow_cancel_while_ringing_ends_both_legs(
    tmp_path: Path, rtp: list[RtpPeer]
) -> None:
    """With `call_flow: direct` a carrier call rings a registered handset at once; the
    caller's CANCEL is answered 487 and the handset's ringing is cancelled too."""
    async with memory_helpline(tmp_path, {"anna": PASSWORD}, call_flow="direct") as helpline:
        handset_media, caller_media = await RtpPeer.open(HANDSET), await RtpPeer.open(TRUNK)
        rtp += [handset_media, caller_media]
        anna = Handset(
            helpline.network, HANDSET, 5062, user="anna", sdp=sdp_offer(HANDSET, handset_media.port)
        )
        anna.register(helpline.peer, PASSWORD)
        await until(lambda: anna.register_statuses[-1:] == [200], timeout=5)
        caller = Caller(helpline.network, TRUNK, 5070)
        caller.invite(helpline.peer, NATIONAL, sdp=sdp_offer(TRUNK, caller_media.port))
        await until(lambda: len(anna.offers) == 1, timeout=5)
        await until(lambda: any(r.status == 180 for r in caller.responses), timeout=5)
        caller.cancel()
        await until(lambda: caller.final is not None and anna.cancelled, timeout=5)
        assert caller.final == 487
        await until(lambda: len(helpline.service.switchboard.table) == 0, timeout=5)
