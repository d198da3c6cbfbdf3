"""A scripted day of calls with real peers (PJSIP callers on the trunk address, a PJSIP volunteer
and the 113 backline on 127.0.0.2 / loopback), while the database is down: every call leaves
exactly one anonymous record once it is back, and the report, its CSV, the partner statement and
the charts hold exactly the day's figures. The caller's number appears nowhere.

The calendar is faked, never slept through: the record builder's clock hands out the scripted
start times of the day (Tuesday 24 November 2026), and the report is asked for that day.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from prometheus_client import generate_latest

from ivr.loader import DEFAULT_PLAN
from ivr.prompts import number_names
from pbx.calls.inbound import HelplineCalls
from pbx.db.embedded import start_embedded
from pbx.media.prompts import PromptLibrary
from tests.helpers.caller_number import DIGITS
from tests.helpers.callers import CALLER_NUMBER
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.pg_state import pg_state_dir
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.service import Running, running_service
from tests.helpers.volunteers import dial_feature_code, on_shift
from tests.peers.pjsua_phone import AsyncPjsuaPhone

AMS = ZoneInfo("Europe/Amsterdam")
# the scripted day: when each call starts (Amsterdam time), in the order they are placed
STARTS = [datetime(2026, 11, 24, h, m, tzinfo=AMS) for h, m in
          ((9, 5), (10, 20), (14, 40), (20, 10), (20, 15), (23, 30))]  # fmt: skip
PARTNER_NUMBER = "0881234500"  # Wijkteam Utrecht's own line, forwarded to the helpline
OTHER_CALLERS = ["0687650001", "0687650002", "0687650003", "0687650004"]
HELPLINE = [sys.executable, "-c", "from pbx.cli import main; main()"]


def scripted_clock() -> Iterator[datetime]:
    yield from STARTS
    raise AssertionError("more calls than scripted")


@asynccontextmanager
async def day_service(url: str, state: Path, plan: Path) -> AsyncIterator[Running]:
    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Running]:
        async with running_service(state, url, **{"sip_t1": 0.1, **overrides}) as running:
            yield running

    async with ivr_helpline(make, plan) as helpline:
        app = helpline.service.switchboard.app
        assert isinstance(app, HelplineCalls)
        starts = scripted_clock()
        app.records.clock = lambda: next(starts)
        yield helpline


async def call(helpline: Running, phone: AsyncPjsuaPhone, number: str, **headers: str) -> None:
    """A caller on the national number picks Dutch (key 1)."""
    await phone.start(free_port())
    uri = f"sip:09000767@{helpline.host}:{helpline.port}"
    pai = {"P-Asserted-Identity": f"<sip:{number}@127.0.0.1>"}
    assert await phone.make_call(uri, headers={**pai, **headers}) == 200
    await phone.send_dtmf("1")


async def talk_and_hang_up(caller: AsyncPjsuaPhone, volunteer: AsyncPjsuaPhone) -> None:
    await volunteer.wait_incoming(timeout=20)
    await volunteer.answer(200)
    await asyncio.sleep(1.0)
    await caller.hangup()
    assert await volunteer.wait_disconnected(timeout=10) == 200


def report(*args: str, url: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    done = subprocess.run(
        [*HELPLINE, "report", *args, "--database-url", url, "--timezone", "Europe/Amsterdam"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def csv_figures(text: str) -> dict[tuple[str, str, str], str]:
    return {
        (r["section"], r["key"], r["figure"]): r["value"] for r in csv.DictReader(io.StringIO(text))
    }


async def test_a_scripted_day_through_a_database_outage(tmp_path: Path) -> None:
    backline_port = free_port()
    plan = tmp_path / "dialplan.yaml"
    plan.write_text(
        DEFAULT_PLAN.read_text()
        .replace(
            '"sip:0800-0113@sip-trunk.example.nl"', f'"sip:0800-0113@127.0.0.1:{backline_port}"'
        )
        .replace("max_wait: 900", "max_wait: 6", 1)
    )
    with pg_state_dir() as pg_dir:
        server = start_embedded(pg_dir)
        url = server.url
        try:
            async with (
                captured_logs() as logs,
                day_service(url, tmp_path / "state", plan) as helpline,
            ):
                service = helpline.service
                engine = service.dispatcher
                async with (
                    AsyncPjsuaPhone("backline") as backline,
                    AsyncPjsuaPhone("vera") as vera,
                    AsyncPjsuaPhone("a") as a, AsyncPjsuaPhone("b") as b,
                    AsyncPjsuaPhone("g") as g, AsyncPjsuaPhone("c") as c,
                    AsyncPjsuaPhone("d") as d, AsyncPjsuaPhone("e") as e,
                ):  # fmt: skip
                    await backline.start(backline_port)
                    await on_shift(helpline, vera, "vera")
                    server.stop()  # the database goes away for the whole day of calls
                    # 09:05 answered; 10:20 the same caller again, handed over to 113
                    await call(helpline, a, CALLER_NUMBER)
                    await talk_and_hang_up(a, vera)
                    await call(helpline, b, CALLER_NUMBER)
                    await vera.wait_incoming(timeout=20)
                    await vera.answer(200)
                    await vera.play_tone(400)  # a talking volunteer: their media flows
                    await asyncio.sleep(0.5)
                    await vera.send_dtmf("*9")  # a warm hand-over: she talks to 113 first
                    await backline.wait_incoming(timeout=20)
                    await backline.answer(200)
                    await asyncio.sleep(0.5)
                    await vera.hangup()  # and completes it by hanging up: caller meets 113
                    await asyncio.sleep(0.5)
                    await b.hangup()
                    assert await backline.wait_disconnected(timeout=10) == 200
                    # 14:40 a partner's line forwarded to us (Diversion names the partner's number;
                    # History-Info carries the caller's, which must not count)
                    await call(
                        helpline, g, OTHER_CALLERS[0],
                        Diversion=f"<sip:{PARTNER_NUMBER}@127.0.0.1>;reason=unconditional",
                        **{"History-Info": f"<sip:{CALLER_NUMBER}@127.0.0.1>;index=1"},
                    )  # fmt: skip
                    await talk_and_hang_up(g, vera)
                    await dial_feature_code(helpline, vera, "*0")  # nobody on shift tonight
                    # 20:10 gives up at once; 20:15 after about 2 s
                    for phone, number, patience in ((c, OTHER_CALLERS[1], 0.0),
                                                    (d, OTHER_CALLERS[2], 2.0)):  # fmt: skip
                        await call(helpline, phone, number)
                        await until(lambda: engine.waiting("dutch") == 1, timeout=20)
                        await asyncio.sleep(patience)
                        await phone.hangup()
                        await until(lambda: engine.waiting("dutch") == 0)
                    # 23:30 waits the queue's maximum: overflow into the voicemail
                    await call(helpline, e, OTHER_CALLERS[3])
                    registry = service.metrics.registry
                    await until(
                        lambda: registry.get_sample_value(
                            "helpline_queue_overflows_total", {"queue": "dutch"}
                        ) == 1, timeout=30,
                    )  # fmt: skip
                    await e.play_tone(700)  # leaves a message after the prompt and beep
                    prompts = PromptLibrary(helpline.settings.recordings)
                    days = math.ceil(helpline.settings.voicemail_retention / 86400)
                    notice = ("voicemail_kept_intro", *number_names(days),
                              "day" if days == 1 else "days", "voicemail_kept_outro")  # fmt: skip
                    before_beep = sum(prompts.duration("nl", n) for n in notice)
                    await asyncio.sleep(
                        prompts.duration("nl", "max_wait_message")
                        + prompts.duration("nl", "voicemail_callback")
                        + before_beep
                        + 2.5
                    )
                    await e.hangup()
                await until(lambda: len(log_events(logs, "call_finished")) == 6, timeout=20)
                assert service.writer is not None and service.writer.pending >= 6
                server = start_embedded(pg_dir)  # the database is back
                assert await service.writer.flush(60)
                scrape = generate_latest(service.metrics.registry).decode()
                arrived = service.metrics.registry.get_sample_value(
                    "helpline_calls_by_entry_total", {"kind": "national"}
                )
                partner_calls = service.metrics.registry.get_sample_value(
                    "helpline_partner_calls_total", {"partner": "Wijkteam Utrecht"}
                )
            conn = await asyncpg.connect(url)
            try:
                rows = [
                    dict(r)
                    for r in await conn.fetch("SELECT * FROM call_records ORDER BY started_at")
                ]
            finally:
                await conn.close()
            day = ("--from", "2026-11-24", "--to", "2026-11-24")
            text = report(*day, "--charts", str(tmp_path / "charts"), url=url)
            table_csv = report(*day, "--csv", "-", url=url)
            statement = report("partners", "--month", "2026-11", "--csv", "-", url=url)
            statement_text = report("partners", "--month", "2026-11", url=url)
        finally:
            server.stop()

    # one record per call, each once, in the scripted order
    assert [r["started_at"] for r in rows] == STARTS
    assert len({r["id"] for r in rows}) == 6
    assert [r["outcome"] for r in rows] == [
        "answered", "handed_over", "answered", "abandoned", "abandoned", "voicemail"
    ]  # fmt: skip
    assert [r["returning_today"] for r in rows] == [False, True, False, False, False, False]
    assert [r["answered_by"] for r in rows] == ["vera"] * 3 + [None] * 3
    assert all(r["entry_kind"] == "national" and r["queue"] == "dutch" for r in rows)
    assert all(r["language"] == "nl" for r in rows)
    assert rows[0]["ivr_path"] == ["welcome", "language_menu", "dutch"]
    assert rows[5]["ivr_path"] == ["welcome", "language_menu", "dutch", "queue_full"]
    assert (rows[1]["transfer_to"], rows[1]["transfer_result"]) == ("backline_113", "answered")
    assert (rows[2]["partner"], rows[2]["partner_via"]) == ("Wijkteam Utrecht", "forwarding")
    assert [r["partner"] for r in rows].count(None) == 5
    assert [r["overflowed"] for r in rows] == [False] * 5 + [True]
    waits = [r["wait_seconds"] for r in rows]
    assert waits[3] < 1.5 and 1.9 < waits[4] < 5.0 and 5.9 < waits[5] < 8.0
    assert all(r["talk_seconds"] > 0.5 for r in rows[:3] if r is not rows[1])
    assert all(r["offered"] == 1 and r["ring_no_answer"] == 0 for r in rows[:3])

    # the report: table and CSV hold exactly the day's figures
    f = csv_figures(table_csv)
    total = {k[2]: v for k, v in f.items() if k[0] == "total"}
    assert {k: total[k] for k in ("calls", "offered", "answered", "abandoned", "overflowed",
                                  "voicemail", "answered_within_60s", "repeat_callers")} == {
        "calls": "6", "offered": "6", "answered": "3", "abandoned": "2", "overflowed": "1",
        "voicemail": "1", "answered_within_60s": "3", "repeat_callers": "1",
    }  # fmt: skip
    assert total["service_level_answered"] == "1"
    assert total["service_level_offered"] == "0.6"  # 3 answered in time of 3 answered + 2 gone
    assert total["abandoned_0-10s"] == "2" and total["abandoned_10-30s"] == "0"
    assert total["repeat_share"] == "0.167"
    assert f[("language", "nl", "calls")] == "6"
    assert f[("partner", "Wijkteam Utrecht", "calls")] == "1"
    assert f[("entry", "national 09000767", "calls")] == "6"
    assert f[("transfer", "backline_113", "answered")] == "1"
    load = {k[1]: int(v) for k, v in f.items() if k[0] == "load" and v != "0"}
    assert load == {"Tue 09": 1, "Tue 10": 1, "Tue 14": 1, "Tue 20": 2, "Tue 23": 1}
    table = [line.split() for line in text.splitlines()]
    assert ["service_level_offered", "0.6"] in table and ["calls", "6"] in table
    assert ["backline_113", "answered", "1"] in table
    # the partner statement
    assert statement.splitlines() == [
        "month,partner,calls,answered,talk_seconds",
        f"2026-11,Wijkteam Utrecht,1,1,{rows[2]['talk_seconds']:.3f}".rstrip("0").rstrip("."),
    ]
    assert statement_text.splitlines()[-1].split()[:4] == ["Wijkteam", "Utrecht", "1", "1"]
    # the charts
    charts = sorted((tmp_path / "charts").glob("*.png"))
    assert [p.name for p in charts] == [
        "calls_by_language.png", "load_heatmap.png", "service_level.png"
    ]  # fmt: skip
    assert all(p.read_bytes().startswith(b"\x89PNG") and p.stat().st_size > 5000 for p in charts)
    # metrics
    assert arrived == 6 and partner_calls == 1
    # the caller's number, in any form, nowhere
    everything = "\n".join(
        [logs.getvalue(), repr(rows), text, table_csv, statement, statement_text, scrape]
    )
    for number in (CALLER_NUMBER, DIGITS, *OTHER_CALLERS):
        assert number not in everything
        assert all(number.encode() not in p.read_bytes() for p in charts)
