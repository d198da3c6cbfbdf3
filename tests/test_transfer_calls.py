"""Transfers to configured destinations (here the info line, a PJSIP phone on loopback): the
caller is connected with audio both ways, the destination sees nothing of the caller, and a
destination that refuses sends the caller to the step's `on_failure`."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ivr.loader import DEFAULT_PLAN
from pbx.calls.inbound import HelplineCalls
from tests.helpers.audio import active_part, read_wav, tone_share
from tests.helpers.ivr_helpline import ivr_helpline, ivr_paths
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.ports import free_port
from tests.helpers.service import MakeHelpline
from tests.helpers.volunteers import on_shift
from tests.peers.pjsua_phone import AsyncPjsuaPhone

TUESDAY_1100 = datetime(2026, 11, 24, 11, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))  # info line open
CALLER_NUMBER = "0612345678"


def plan_with_info_line_at(port: int, tmp_path: Path) -> Path:
    plan = tmp_path / "dialplan.yaml"
    plan.write_text(
        DEFAULT_PLAN.read_text().replace(
            '"sip:info-line@pbx.example.nl"', f'"sip:info-line@127.0.0.1:{port}"'
        )
    )
    return plan


async def test_transfer_to_the_info_line_connects_both_ways(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    port = free_port()
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, plan_with_info_line_at(port, tmp_path)) as helpline,
    ):
        app = helpline.service.switchboard.app
        assert isinstance(app, HelplineCalls)
        app.clock = lambda: TUESDAY_1100
        async with AsyncPjsuaPhone("info") as info, AsyncPjsuaPhone("caller") as caller:
            await info.start(port)
            await caller.start(free_port())
            headers = {"P-Asserted-Identity": f"<sip:{CALLER_NUMBER}@127.0.0.1>"}
            uri = f"sip:0900-1234567@{helpline.host}:{helpline.port}"
            assert await caller.make_call(uri, headers=headers) == 200
            incoming = await info.wait_incoming(timeout=20)
            await info.answer(200)
            await caller.play_tone(1000)
            await info.play_tone(400)
            await info.record(tmp_path / "info.wav")
            await caller.record(tmp_path / "caller.wav")
            await asyncio.sleep(1.5)
            info_heard = await info.stop_record()
            caller_heard = await caller.stop_record()
            await caller.hangup()
            assert await info.wait_disconnected(timeout=10) == 200
    assert tone_share(active_part(read_wav(info_heard)[0]), 1000) > 0.8
    assert tone_share(active_part(read_wav(caller_heard)[0]), 400) > 0.8
    assert CALLER_NUMBER not in incoming.invite and '"Hulplijn"' in incoming.remote_uri
    assert ivr_paths(logs)[0] == ["info_line", "info_line_transfer"]


async def test_a_refused_transfer_goes_to_on_failure(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    port = free_port()
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, plan_with_info_line_at(port, tmp_path)) as helpline,
    ):
        app = helpline.service.switchboard.app
        assert isinstance(app, HelplineCalls)
        app.clock = lambda: TUESDAY_1100
        async with AsyncPjsuaPhone("info") as info, AsyncPjsuaPhone("caller") as caller:
            await info.start(port)
            await caller.start(free_port())
            uri = f"sip:0900-1234567@{helpline.host}:{helpline.port}"
            assert await caller.make_call(uri) == 200
            await info.wait_incoming(timeout=20)
            await info.answer(486)  # busy
            for _ in range(100):  # until the caller has been sent on to the voicemail step
                if len(ivr_paths(logs)) == 2:
                    break
                await asyncio.sleep(0.1)
            await caller.hangup()
    first, second = ivr_paths(logs)[:2]
    assert first == ["info_line", "info_line_transfer"] and second[0] == "info_line_voicemail"


async def test_volunteer_hands_the_caller_over_to_113_with_one_key(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    """In a call, the volunteer presses *9 (one programmable key on a desk phone): the caller
    is told and connected to the 113 backline, the volunteer's handset is free again."""
    port = free_port()
    plan = tmp_path / "dialplan.yaml"
    plan.write_text(
        DEFAULT_PLAN.read_text().replace(
            '"sip:0800-0113@sip-trunk.example.nl"', f'"sip:0800-0113@127.0.0.1:{port}"'
        )
    )
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, plan, handover_mode="blind") as helpline,
    ):
        async with (
            AsyncPjsuaPhone("backline") as backline,
            AsyncPjsuaPhone("vera") as volunteer,
            AsyncPjsuaPhone("caller") as caller,
        ):
            await backline.start(port)
            await on_shift(helpline, volunteer, "vera")
            await caller.start(free_port())
            headers = {"P-Asserted-Identity": f"<sip:{CALLER_NUMBER}@127.0.0.1>"}
            uri = f"sip:0900-0767@{helpline.host}:{helpline.port}"
            assert await caller.make_call(uri, headers=headers) == 200
            await caller.send_dtmf("1")
            await volunteer.wait_incoming(timeout=15)
            await volunteer.answer(200)
            await volunteer.play_tone(400)  # a talking volunteer: their media flows
            await asyncio.sleep(0.5)
            await volunteer.send_dtmf("*9")
            assert await volunteer.wait_disconnected(timeout=10) == 200  # the volunteer is free
            incoming = await backline.wait_incoming(timeout=20)  # after "we connect you to 113"
            await backline.answer(200)
            await caller.play_tone(1000)
            await backline.record(tmp_path / "113.wav")
            await asyncio.sleep(1.5)
            heard = await backline.stop_record()
            await caller.hangup()
            assert await backline.wait_disconnected(timeout=10) == 200
    assert tone_share(active_part(read_wav(heard)[0]), 1000) > 0.8
    assert CALLER_NUMBER not in incoming.invite
    assert [e["outcome"] for e in log_events(logs, "call_finished")] == ["handed_over"]
