"""Debian's softphones as volunteers' handsets, over UDP, TCP and TLS, on the default settings.

baresip and linphone-cli each register (from the handsets' address, not the trunk's), log in to
a shift with *1 and take a trunk call through the default dialplan (the caller presses 1 for
Dutch). Audio is checked by its content both ways: the caller (PJSIP) sends 1000 Hz, the handset
400 Hz. The caller's number, sent in From and P-Asserted-Identity, appears nowhere in what the
handset received or printed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pbx.sip.peer import TransportKind
from queues.roster import VolunteerState
from tests.helpers.audio import active_part, read_wav, tone_share
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.service import HANDSET_HOST, MakeHelpline
from tests.helpers.volunteers import PASSWORD
from tests.peers.baresip import Baresip
from tests.peers.linphone import Linphone
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.softphone import SipAccount, Softphone, Transport

PHONES: dict[str, type[Softphone]] = {"baresip": Baresip, "linphone": Linphone}
CALLER_NUMBER = "0612345678"
CALLER_TONE, HANDSET_TONE = 1000, 400


def tail(pcm: bytes, seconds: float, rate: int) -> bytes:
    return pcm[-int(2 * rate * seconds) :]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
@pytest.mark.parametrize("kind", list(PHONES))
async def test_a_softphone_volunteer_logs_in_and_takes_a_trunk_call(
    make_helpline: MakeHelpline, tmp_path: Path, kind: str, transport: Transport
) -> None:
    async with captured_logs() as logs, make_helpline(call_flow="ivr") as helpline:
        await helpline.add_volunteer("vera", PASSWORD)
        port = helpline.service.stack.port(TransportKind(transport))
        account = SipAccount("vera", PASSWORD, helpline.host, port, transport)
        roster = helpline.service.roster
        async with (
            PHONES[kind](account, bind=HANDSET_HOST, tone_hz=HANDSET_TONE) as phone,
            AsyncPjsuaPhone("caller") as caller,
        ):
            await phone.wait_registered()
            assert "vera" not in roster  # registered, not on shift
            login = await phone.dial("*1")  # confirmed with a prompt, then the service hangs up
            await phone.wait_ended(timeout=20, after=await phone.wait_established(after=login))
            assert roster.get("vera").state is VolunteerState.AVAILABLE
            confirmation = read_wav(phone.heard())  # before close() deletes it

            await caller.start(free_port(), user=CALLER_NUMBER)
            ring = phone.mark()
            number = f"sip:09000767@{helpline.host}:{helpline.port}"
            pai = {"P-Asserted-Identity": f"<sip:{CALLER_NUMBER}@127.0.0.1>"}
            assert await caller.make_call(number, headers=pai) == 200
            await caller.send_dtmf("1")  # Dutch, during the welcome
            await caller.play_tone(CALLER_TONE)
            answered = await phone.wait_established(timeout=20, after=ring)  # auto-answer
            await until(lambda: bool(log_events(logs, "call_connected")))  # after the whisper
            assert roster.get("vera").state is VolunteerState.IN_CALL
            await caller.record(tmp_path / "caller.wav")
            await asyncio.sleep(1.5)
            caller_heard = await caller.stop_record()
            await caller.hangup()
            await phone.wait_ended(after=answered)
            handset_heard = read_wav(phone.heard())
            trace = phone.trace()
    pcm, rate = confirmation
    assert active_part(pcm, rate=rate), "the handset heard no login confirmation"
    pcm, rate = handset_heard
    heard = tail(active_part(pcm, rate=rate), 1.0, rate)
    assert len(heard) == 2 * rate and tone_share(heard, CALLER_TONE, rate) > 0.8
    assert tone_share(active_part(read_wav(caller_heard)[0]), HANDSET_TONE) > 0.8
    assert '"Hulplijn NL"' in trace  # the handset's trace holds the call it was offered...
    assert CALLER_NUMBER not in trace  # ...and nothing of the caller's number
