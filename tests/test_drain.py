"""A planned stop drains: SIGTERM while two callers talk to volunteers and a third waits. New
INVITEs get 503 with Retry-After and /ready says draining; the two conversations go on (audio
both ways) until the parties hang up; the waiting caller is told and kept until a volunteer is
free; the process exits once the last call has ended."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from ivr.loader import DEFAULT_PLAN
from pbx import event_loop
from tests.helpers.audio import active_part, read_wav, tone_share
from tests.helpers.ivr_helpline import ivr_helpline, ivr_paths, without_wrap_up
from tests.helpers.logs import captured_logs
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.served import HELPLINE, Served, fresh_volunteers
from tests.helpers.service import HANDSET_HOST, MakeHelpline
from tests.helpers.volunteers import PASSWORD
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.sipp import run_sipp_async


async def log_in(served: Served, phone: AsyncPjsuaPhone, name: str) -> None:
    await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
    assert await phone.register("127.0.0.1", served.sip_port, name, PASSWORD) == 200
    assert await phone.make_call(f"sip:*1@{served.target}") == 200
    assert await phone.wait_disconnected(timeout=20) == 200


async def call_dutch(served: Served, caller: AsyncPjsuaPhone) -> None:
    await caller.start(free_port())
    assert await caller.make_call(f"sip:09000767@{served.target}") == 200
    await caller.send_dtmf("1")


def waiting(served: Served) -> float:
    url = f"http://127.0.0.1:{served.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith('helpline_queue_waiting{queue="dutch"}'):
            return float(line.split()[-1])
    return 0.0


async def record_tone(
    tmp_path: Path, speaker: AsyncPjsuaPhone, listener: AsyncPjsuaPhone, freq: int
) -> tuple[Path, int]:
    """What `listener` hears while `speaker` sends a tone (read once the phones are closed:
    PJSIP completes a WAV when its recorder is destroyed)."""
    await speaker.play_tone(freq)
    await listener.record(tmp_path / f"{listener.sync.name}-{freq}.wav")
    await asyncio.sleep(1.5)
    heard = await listener.stop_record()
    await speaker.stop_audio()
    return Path(heard), freq


async def test_sigterm_drains_calls_in_progress_then_exits(tmp_path: Path, pg_url: str) -> None:
    await fresh_volunteers(pg_url, tmp_path, "anna", "bram", password=PASSWORD)
    plan = without_wrap_up(DEFAULT_PLAN, tmp_path / "dialplan.yaml")
    served = Served(tmp_path / "state", plan, pg_url, env={"HELPLINE_VOLUNTEER_WHISPER": ""})
    try:
        served.start()
        await until(lambda: served.ready() == 200, timeout=60)
        async with (
            AsyncPjsuaPhone("anna") as anna,
            AsyncPjsuaPhone("bram") as bram,
            AsyncPjsuaPhone("c1") as c1,
            AsyncPjsuaPhone("c2") as c2,
            AsyncPjsuaPhone("c3") as c3,
        ):
            await log_in(served, anna, "anna")  # idle longest: the first caller's
            await log_in(served, bram, "bram")
            await call_dutch(served, c1)
            await anna.wait_incoming(timeout=20)
            await anna.answer(200)
            await call_dutch(served, c2)
            await bram.wait_incoming(timeout=20)
            await bram.answer(200)
            await call_dutch(served, c3)
            await until(lambda: waiting(served) == 1, timeout=20)

            served.send(signal.SIGTERM)
            await until(lambda: served.ready() == 503, timeout=10)
            refused = await run_sipp_async(
                "uac_expect_status", served.target, service="09000767",
                keys={"expect_status": "503"}, timeout_s=20,
            )  # fmt: skip
            assert refused.ok, refused.describe()
            answer = refused.received("SIP/2.0 503")[0]
            assert "Retry-After: 30" in answer

            # the conversations go on: audio both ways, by content
            heard = [await record_tone(tmp_path, c1, anna, 1000)]
            heard.append(await record_tone(tmp_path, bram, c2, 400))
            # the waiting caller was told, and waits on for the next free volunteer
            await until(lambda: any(e["event"] == "waiting_notice" for e in served.events()))
            await c1.hangup()  # the first conversation ends: anna is free for the third
            await anna.wait_disconnected(timeout=10)
            await anna.wait_incoming(timeout=20)
            await anna.answer(200)
            heard.append(await record_tone(tmp_path, c3, anna, 700))
            assert served.proc is not None and served.proc.poll() is None  # calls still on
            await bram.hangup()  # the parties end the calls, in their own time
            await c2.wait_disconnected(timeout=10)
            await c3.hangup()
            await anna.wait_disconnected(timeout=10)
            code = await asyncio.to_thread(served.wait_exit, 20)
    finally:
        served.stop()
    assert code == 0, served.describe()
    for path, freq in heard:  # audio flowed in both conversations, and to the third caller
        assert tone_share(active_part(read_wav(path)[0]), freq) > 0.8, path
    events = [e["event"] for e in served.events()]
    assert "draining" in events and "drained" in events and "service_stopped" in events
    notice = next(e for e in served.events() if e["event"] == "waiting_notice")
    assert notice["prompt"] == "all_busy_hold"


async def test_with_drain_waiting_overflow_a_waiting_caller_goes_to_the_overflow(
    make_helpline: MakeHelpline,
) -> None:
    """`drain_waiting = "overflow"`: the caller waiting at a planned stop is sent to the
    queue's overflow (the Dutch queue's: apologise and take a message) instead of waiting on,
    and the drain ends once they hang up."""
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, DEFAULT_PLAN, drain_waiting="overflow") as helpline,
    ):
        async with AsyncPjsuaPhone("caller") as caller:
            await caller.start(free_port())
            assert await caller.make_call(f"sip:09000767@{helpline.target}") == 200
            await caller.send_dtmf("1")
            engine = helpline.service.dispatcher
            await until(lambda: engine.waiting("dutch") == 1)  # nobody on shift
            drain = asyncio.create_task(helpline.service.drain.run())
            await until(lambda: engine.waiting("dutch") == 0)
            assert helpline.service.readiness() == (False, "draining")
            refused = await run_sipp_async(
                "uac_expect_status", helpline.target, service="09000767",
                keys={"expect_status": "503"}, timeout_s=20,
            )  # fmt: skip
            assert refused.ok, refused.describe()
            await asyncio.sleep(1.0)  # hearing "we cannot connect you now, leave a message"
            assert not drain.done()  # the caller's call is still in progress
            await caller.hangup()
            assert await asyncio.wait_for(drain, 10) is True
    registry = helpline.service.metrics.registry
    assert registry.get_sample_value("helpline_queue_overflows_total", {"queue": "dutch"}) == 1
    steps = [step for path in ivr_paths(logs) for step in path]
    assert steps == ["welcome", "language_menu", "dutch", "queue_full"]


async def test_calls_left_at_the_drain_timeout_are_hung_up(make_helpline: MakeHelpline) -> None:
    """A stop always ends: a call still going at `drain_timeout` gets a BYE."""
    async with ivr_helpline(make_helpline, DEFAULT_PLAN, drain_timeout=1.0) as helpline:
        async with AsyncPjsuaPhone("caller") as caller:
            await caller.start(free_port())
            assert await caller.make_call(f"sip:09000767@{helpline.target}") == 200
            await caller.send_dtmf("1")
            engine = helpline.service.dispatcher
            await until(lambda: engine.waiting("dutch") == 1)
            assert await helpline.service.drain.run() is False  # kept waiting: timed out
            assert await caller.wait_disconnected(timeout=10) == 200  # our BYE ended it
            assert not helpline.service.switchboard.legs


def test_helpline_drain_stops_an_idle_service(tmp_path: Path, pg_url: str) -> None:
    """`helpline drain --wait` returns once the service has exited (at once: no calls)."""
    served = Served(tmp_path / "state", DEFAULT_PLAN, pg_url)
    try:
        served.start()
        deadline = time.monotonic() + 60
        while served.ready() != 200:
            assert time.monotonic() < deadline, served.describe()
            time.sleep(0.1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
        done = subprocess.run(
            [HELPLINE, "drain", "--wait", "--state-dir", str(served.state_dir)],
            capture_output=True, text=True, timeout=30, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert served.wait_exit(10) == 0
    finally:
        served.stop()
    events = [e["event"] for e in served.events()]
    assert "draining" in events and "drained" in events
    # it says which event loop ran: uvloop where installed, unless HELPLINE_EVENT_LOOP says not
    expected = "asyncio" if event_loop.loop_factory() is asyncio.new_event_loop else "uvloop"
    assert [e["loop"] for e in served.events() if e["event"] == "event_loop"] == [expected]
