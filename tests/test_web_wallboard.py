"""The wallboard in a real headless Chromium: it loads, shows what the service reports, and
follows a volunteer logging in (PJSIP handset on 127.0.0.2 dialling *1) and callers arriving
(PJSIP trunk callers on 127.0.0.1) within seconds; the caller's number appears nowhere."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from ivr.loader import DEFAULT_PLAN
from tests.helpers.browser import chromium
from tests.helpers.callers import CALLER_NUMBER, call_queue
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.polling import until
from tests.helpers.service import MakeHelpline, free_port
from tests.helpers.volunteers import on_shift
from tests.peers.pjsua_phone import AsyncPjsuaPhone


async def sse_frames(url: str, seconds: float) -> str:
    """What the event stream sends in `seconds`."""
    out: list[bytes] = []
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        try:
            async with asyncio.timeout(seconds):
                async for chunk in response.content.iter_any():
                    out.append(chunk)
        except TimeoutError:
            pass
    return b"".join(out).decode()


async def test_wallboard_follows_volunteers_and_callers(make_helpline: MakeHelpline) -> None:
    port = free_port()
    async with ivr_helpline(make_helpline, DEFAULT_PLAN, wrap_up=True, web_port=port) as helpline:
        base = f"http://127.0.0.1:{port}"
        service = helpline.service
        async with (
            chromium() as browser,
            AsyncPjsuaPhone("anna") as anna,
            AsyncPjsuaPhone("c1") as c1,
            AsyncPjsuaPhone("c2") as c2,
        ):
            await browser.get(f"{base}/wallboard")
            await browser.until_text("#live", lambda t: t == "live")
            # every queue of the plan, all empty
            for queue in service.dispatcher.queues:
                row = f'#queues tr[data-queue="{queue}"]'
                assert await browser.until_text(f"{row} .waiting", lambda t: t == "0")
            assert await browser.text("#calls-today") == "0"

            await on_shift(helpline, anna, "anna", languages=["nl", "ar"], region="Utrecht")
            nl = '#languages tr[data-key="nl"]'
            await browser.until_text(f"{nl} .available", lambda t: t == "1", timeout=3)
            await browser.until_text('#languages tr[data-key="ar"] .available', lambda t: t == "1")
            await browser.until_text(
                '#regions tr[data-key="Utrecht"] .available', lambda t: t == "1"
            )

            await call_queue(helpline, c1)  # rings anna, who answers
            await anna.wait_incoming(timeout=15)
            await anna.answer(200)
            await browser.until_text(f"{nl} .in_call", lambda t: t == "1", timeout=5)
            await call_queue(helpline, c2)  # nobody free: waits in line
            await until(lambda: service.dispatcher.waiting("dutch") == 1)
            dutch = '#queues tr[data-queue="dutch"]'
            await browser.until_text(f"{dutch} .waiting", lambda t: t == "1", timeout=3)
            # the longest wait counts up, as the dispatcher says
            await browser.until_text(
                f"{dutch} .longest", lambda t: t not in ("0:00", ""), timeout=4
            )
            board = json.loads(await _get(f"{base}/api/wallboard"))
            waited = service.dispatcher.longest_wait("dutch", time.time())
            row = next(q for q in board["queues"] if q["name"] == "dutch")
            assert row["waiting"] == 1 and abs(row["longest_wait"] - waited) <= 1.5
            await browser.screenshot("wallboard")

            # no caller data anywhere: page, JSON, event stream
            assert CALLER_NUMBER not in await browser.source()
            stream = await sse_frames(f"{base}/api/wallboard/events", 1.5)
            assert stream.startswith("data: {") and '"waiting":1' in stream
            for text in (stream, json.dumps(board)):
                assert CALLER_NUMBER not in text and "sip:" not in text

            await c2.hangup()  # abandoned while waiting: counted today
            await browser.until_text(f"{dutch} .abandoned", lambda t: t == "1", timeout=5)
            await browser.until_text(f"{dutch} .waiting", lambda t: t == "0", timeout=3)
            await c1.hangup()
            await browser.until_text(f"{nl} .wrap_up", lambda t: t == "1", timeout=5)
            await browser.until_text("#calls-today", lambda t: t == "2", timeout=5)
            # both came in on the national number; nobody was transferred
            assert await browser.text('#entries tr[data-key="national"] .count') == "2"
            assert await browser.text("#transfers") == "0"
            registry = service.metrics.registry
            for outcome in ("answered", "abandoned"):
                shown = await browser.text(f'#outcomes tr[data-key="{outcome}"] .count')
                counted = registry.get_sample_value("helpline_calls_total", {"outcome": outcome})
                assert shown is not None and counted is not None and int(shown) == int(counted)


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.text()
