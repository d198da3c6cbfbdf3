"""Callers through the IVR of the default dialplan, with real PJSIP handsets on both sides.

The IVR's clock is fixed at a Tuesday 15:00 in Amsterdam: Arabic is closed (evenings only)
and so is the info line (weekdays 10:00-14:00), whose after-hours voicemail
tests/test_voicemail.py uses.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ivr.loader import DEFAULT_PLAN
from tests.helpers.audio import active_part, read_wav, tone_share
from tests.helpers.ivr_helpline import ivr_helpline, ivr_paths, without_wrap_up
from tests.helpers.logs import captured_logs
from tests.helpers.ports import free_port
from tests.helpers.service import MakeHelpline
from tests.helpers.volunteers import on_shift
from tests.peers.pjsua_phone import AsyncPjsuaPhone


async def test_key_1_reaches_a_dutch_volunteer(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    async with captured_logs() as logs, ivr_helpline(make_helpline, DEFAULT_PLAN) as helpline:
        async with AsyncPjsuaPhone("vera") as volunteer, AsyncPjsuaPhone("caller") as caller:
            await on_shift(helpline, volunteer, "vera")
            await caller.start(free_port())
            # the caller is answered at once: the IVR greets them
            assert await caller.make_call(f"sip:0900-0767@{helpline.host}:{helpline.port}") == 200
            await caller.send_dtmf("1")  # RFC 4733, during the welcome: kept for the menu
            await volunteer.wait_incoming(timeout=15)
            await volunteer.answer(200)
            await caller.play_tone(1000)
            await volunteer.record(tmp_path / "heard.wav")
            await asyncio.sleep(1.5)
            heard = await volunteer.stop_record()
            await caller.hangup()
            await volunteer.wait_disconnected(timeout=10)
    assert ivr_paths(logs)[0] == ["welcome", "language_menu", "dutch"]
    assert tone_share(active_part(read_wav(heard)[0]), 1000) > 0.8


async def test_closed_language_offers_dutch(make_helpline: MakeHelpline) -> None:
    async with captured_logs() as logs, ivr_helpline(make_helpline, DEFAULT_PLAN) as helpline:
        async with AsyncPjsuaPhone("wim") as volunteer, AsyncPjsuaPhone("caller") as caller:
            await on_shift(helpline, volunteer, "wim")
            await caller.start(free_port())
            assert await caller.make_call(f"sip:09000767@{helpline.host}:{helpline.port}") == 200
            await caller.send_dtmf("2")  # Arabic: closed at 15:00
            await asyncio.sleep(1.0)
            await caller.send_dtmf("1")  # "press 1 to continue in Dutch"
            await volunteer.wait_incoming(timeout=30)
            await caller.hangup()
    path = ivr_paths(logs)[0]
    assert path == ["welcome", "language_menu", "arabic", "closed_offer_dutch", "dutch"]


async def test_reload_during_a_call_drops_nothing(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    plan = without_wrap_up(DEFAULT_PLAN, tmp_path / "dialplan.yaml")
    async with captured_logs() as logs, ivr_helpline(make_helpline, plan, wrap_up=True) as helpline:
        async with AsyncPjsuaPhone("xena") as volunteer, AsyncPjsuaPhone("caller") as caller:
            await on_shift(helpline, volunteer, "xena")
            await caller.start(free_port())
            assert await caller.make_call(f"sip:09000767@{helpline.host}:{helpline.port}") == 200
            await caller.send_dtmf("1")
            await volunteer.wait_incoming(timeout=15)
            await volunteer.answer(200)
            # while they talk, the admin changes the plan: the national number now greets as a
            # partner line first
            plan.write_text(
                plan.read_text().replace(
                    'number: "0900-0767"\n    type: national\n    start: welcome',
                    'number: "0900-0767"\n    type: national\n    start: partner_welcome',
                )
            )
            assert helpline.service.reload_dialplan()
            await caller.play_tone(1000)
            await volunteer.record(tmp_path / "after-reload.wav")
            await asyncio.sleep(1.5)
            heard = await volunteer.stop_record()
            await caller.hangup()
            assert await volunteer.wait_disconnected(timeout=10) == 200  # a normal BYE
            # a new call follows the new plan
            assert await caller.make_call(f"sip:09000767@{helpline.host}:{helpline.port}") == 200
            await volunteer.wait_incoming(timeout=15)
            await caller.hangup()
    assert tone_share(active_part(read_wav(heard)[0]), 1000) > 0.8
    first, second = ivr_paths(logs)[:2]
    assert first[0] == "welcome" and second[0] == "partner_welcome"


async def test_sipp_caller_presses_1_with_rfc4733_and_reaches_a_volunteer(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    from tests.peers.rtp_pcap import media_pcap, pcap_duration_ms
    from tests.peers.sipp import start_sipp

    # the caller presses 1 (RFC 4733) over the welcome, then talks (a 1000 Hz tone)
    pcap = media_pcap(
        tmp_path / "press1.pcap", tone_hz=1000, tone_ms=12000, digits="1", lead_ms=500,
        digits_first=True,
    )  # fmt: skip
    async with captured_logs() as logs, ivr_helpline(make_helpline, DEFAULT_PLAN) as helpline:
        async with AsyncPjsuaPhone("yara") as volunteer:
            await on_shift(helpline, volunteer, "yara")
            caller = start_sipp(
                "uac_call_rtp", helpline.target, service="09000767",
                files={"media.pcap": pcap}, pause_ms=pcap_duration_ms(pcap) + 2000, timeout_s=40,
            )  # fmt: skip
            incoming = await volunteer.wait_incoming(timeout=20)
            assert incoming.display == "Hulplijn NL"  # the queue, nothing of the caller
            await volunteer.answer(200)
            await volunteer.record(tmp_path / "heard.wav")
            await asyncio.sleep(1.5)
            heard = await volunteer.stop_record()
            result = await asyncio.to_thread(caller.wait, 40)
            result.assert_ok()  # the caller's BYE after its pause ended the call
            await volunteer.wait_disconnected(timeout=10)
    assert ivr_paths(logs)[0] == ["welcome", "language_menu", "dutch"]
    assert tone_share(active_part(read_wav(heard)[0]), 1000) > 0.8  # the caller's voice


async def test_queue_overflow_after_max_wait(make_helpline: MakeHelpline, tmp_path: Path) -> None:
    """Nobody on shift: after the queue's max_wait the caller goes to its overflow node."""
    plan = tmp_path / "dialplan.yaml"
    plan.write_text(DEFAULT_PLAN.read_text().replace("max_wait: 900", "max_wait: 2", 1))
    async with captured_logs() as logs, ivr_helpline(make_helpline, plan) as helpline:
        async with AsyncPjsuaPhone("caller") as caller:
            await caller.start(free_port())
            assert await caller.make_call(f"sip:09000767@{helpline.host}:{helpline.port}") == 200
            await caller.send_dtmf("1")
            registry = helpline.service.metrics.registry
            for _ in range(100):  # until the queue has overflowed into its voicemail
                overflows = registry.get_sample_value(
                    "helpline_queue_overflows_total", {"queue": "dutch"}
                )
                if overflows == 1 and len(ivr_paths(logs)) == 1:
                    break
                await asyncio.sleep(0.2)
            assert overflows == 1
            await caller.hangup()
        await asyncio.sleep(0.5)
    first, second = ivr_paths(logs)[:2]
    assert first == ["welcome", "language_menu", "dutch"] and second == ["queue_full"]
