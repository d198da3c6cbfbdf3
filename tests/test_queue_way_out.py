"""Every queue has a way out, end to end with the default plan's overflows (max_wait shortened):
a caller on the Farsi queue with no Farsi volunteer reaches a Dutch volunteer (a PJSIP handset)
after max_wait; a caller on the 113 night line with nobody trained reaches the 113 backline
(sipp as the 113 professional, echoing the caller's audio back)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ivr.loader import DEFAULT_PLAN
from pbx.calls.inbound import HelplineCalls
from tests.helpers.audio import active_part, loud_part, read_wav, tone_share
from tests.helpers.callers import CALLER_NUMBER, call_queue
from tests.helpers.ivr_helpline import ivr_helpline, ivr_paths
from tests.helpers.logs import captured_logs
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.service import MakeHelpline, Running
from tests.helpers.volunteers import on_shift
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.sipp import start_sipp

AMS = ZoneInfo("Europe/Amsterdam")
TUESDAY_1900 = datetime(2026, 11, 24, 19, 0, tzinfo=AMS)  # the Farsi queue is open
WEDNESDAY_0300 = datetime(2026, 11, 25, 3, 0, tzinfo=AMS)  # the 113 night line


def _plan(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    text = DEFAULT_PLAN.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    plan = tmp_path / "dialplan.yaml"
    plan.write_text(text)
    return plan


def _overflows(helpline: Running) -> dict[str, float]:
    """Callers who waited a queue's max_wait, by queue (the metric)."""
    found: dict[str, float] = {}
    for metric in helpline.service.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "helpline_queue_overflows_total" and sample.value:
                found[sample.labels["queue"]] = sample.value
    return found


def _at(helpline: Running, when: datetime) -> None:
    app = helpline.service.switchboard.app
    assert isinstance(app, HelplineCalls)
    app.clock = lambda: when


async def test_a_farsi_caller_with_no_farsi_volunteer_reaches_the_dutch_queue(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    plan = _plan(
        tmp_path, ("    language: fa\n    schedule: evenings\n    priority: 10\n    max_wait: 600",
                   "    language: fa\n    schedule: evenings\n    priority: 10\n    max_wait: 2"),
    )  # fmt: skip
    async with captured_logs() as logs, ivr_helpline(make_helpline, plan) as helpline:
        _at(helpline, TUESDAY_1900)
        async with AsyncPjsuaPhone("dana") as dana, AsyncPjsuaPhone("caller") as caller:
            await on_shift(helpline, dana, "dana", languages=["nl"])  # speaks no Farsi
            await call_queue(helpline, caller, key="3")
            dispatcher = helpline.service.dispatcher
            await until(lambda: dispatcher.waiting("farsi") == 1, timeout=15)
            incoming = await dana.wait_incoming(timeout=30)  # max_wait, the message, then rings
            assert dispatcher.waiting("farsi") == 0
            await dana.answer(200)
            await caller.play_tone(1000)
            await dana.play_tone(400)
            await dana.record(tmp_path / "dana.wav")
            await caller.record(tmp_path / "caller.wav")
            await asyncio.sleep(1.5)
            dana_heard = await dana.stop_record()
            caller_heard = await caller.stop_record()
            await caller.hangup()
            assert await dana.wait_disconnected(timeout=10) == 200
            overflows = _overflows(helpline)
    paths = ivr_paths(logs)
    assert paths[0][-2:] == ["farsi", "farsi_queue"]
    assert paths[1] == ["to_dutch", "dutch"]  # the overflow: told, in Farsi, then the Dutch queue
    assert overflows == {"farsi": 1.0}
    assert tone_share(loud_part(read_wav(dana_heard)[0]), 1000) > 0.8
    assert tone_share(active_part(read_wav(caller_heard)[0]), 400) > 0.8
    assert '"Hulplijn NL"' in incoming.remote_uri and CALLER_NUMBER not in incoming.invite


async def test_a_113_caller_with_nobody_trained_reaches_the_113_backline(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    port = free_port()
    plan = _plan(
        tmp_path,
        ('"sip:0800-0113@sip-trunk.example.nl"', f'"sip:0800-0113@127.0.0.1:{port}"'),
        ("    unstaffed_wait: 20 ", "    unstaffed_wait: 2 "),  # max_wait stays 120 s
    )
    backline = start_sipp("uas_answer", local_port=port, rtp_echo=True, timeout_s=60)
    try:
        async with captured_logs() as logs, ivr_helpline(make_helpline, plan) as helpline:
            _at(helpline, WEDNESDAY_0300)
            async with AsyncPjsuaPhone("otto") as otto, AsyncPjsuaPhone("caller") as caller:
                await on_shift(helpline, otto, "otto")  # on shift, but not trained by 113
                await caller.start(free_port())
                headers = {"P-Asserted-Identity": f"<sip:{CALLER_NUMBER}@127.0.0.1>"}
                uri = f"sip:0800-0113001@{helpline.host}:{helpline.port}"
                assert await caller.make_call(uri, headers=headers) == 200
                await until(lambda: len(ivr_paths(logs)) == 2, timeout=30)  # the overflow
                await caller.play_tone(1000)  # echoed by the 113 professional's end
                await asyncio.sleep(1.0)  # "we connect you with 113", then the call is set up
                await caller.record(tmp_path / "caller.wav")
                await asyncio.sleep(1.5)
                heard = await caller.stop_record()
                await caller.hangup()
                answered = await asyncio.to_thread(backline.wait, 20)
                overflows = _overflows(helpline)
                assert otto.events("incoming") == []  # an untrained volunteer is never offered it
    finally:
        backline.stop()
    answered.assert_ok()
    invite = answered.received("INVITE")[0]
    assert "INVITE sip:0800-0113@127.0.0.1" in invite and CALLER_NUMBER not in invite
    paths = ivr_paths(logs)
    assert paths[0] == ["night_113", "night_113_queue"]
    assert paths[1] == ["night_113_backline"]
    assert overflows == {"night_113": 1.0}
    assert tone_share(active_part(read_wav(heard)[0]), 1000) > 0.8  # through to 113 and back
