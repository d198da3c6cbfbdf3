"""How a call ended, as its record says: closed hours, refused by the service, a volunteer's
handset lost, the direct call flow and a service that stops mid-call. Real PJSIP callers and
handsets over loopback; records are read back from the database they were written behind to.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from ivr.loader import DEFAULT_PLAN, load_dialplan
from pbx.anonymity import CallerContext
from pbx.call_records import MAX_REFUSED_PER_SECOND, CallRecords, ended_closed, record_op
from pbx.db.call_records import fold_old_records
from pbx.db.migrate import migrate
from pbx.db.ops import DataOp, Upsert, op_sql
from pbx.media.prompts import DEFAULT_RECORDINGS, PromptLibrary
from pbx.reports import build_report, partner_statement, render_csv, render_text
from tests.helpers.caller_number import DIGITS
from tests.helpers.callers import CALLER_NUMBER, call_queue
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.service import HANDSET_HOST, MakeHelpline, Running
from tests.helpers.volunteers import PASSWORD, on_shift
from tests.peers.pjsua_phone import AsyncPjsuaPhone

AMS = ZoneInfo("Europe/Amsterdam")
HELPLINE = [sys.executable, "-c", "from pbx.cli import main; main()"]
PROMPTS = PromptLibrary(DEFAULT_RECORDINGS)


async def stored(helpline: Running, url: str) -> list[dict[str, Any]]:
    """The records in the database once the write-behind has written what it holds."""
    assert await helpline.service.writer.flush(30)
    return await read_records(url)


async def read_records(url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT * FROM call_records ORDER BY started_at")
    finally:
        await conn.close()
    out = [dict(r) for r in rows]
    assert DIGITS not in repr(out) and CALLER_NUMBER not in repr(out)
    return out


# --- closed hours --------------------------------------------------------------------------


def test_a_closed_branch_is_a_closed_ending_unless_it_leads_on() -> None:
    plan = load_dialplan(DEFAULT_PLAN, prompts=PROMPTS)
    menu = ("welcome", "language_menu")
    assert ended_closed(plan, (*menu, "arabic", "closed_offer_dutch"))  # hung up on "closed"
    assert not ended_closed(plan, (*menu, "arabic", "closed_offer_dutch", "dutch"))  # queued
    assert not ended_closed(plan, (*menu, "arabic", "arabic_queue"))  # open
    assert not ended_closed(plan, ("night_113", "dutch"))  # outside 113's hours: a volunteer
    assert not ended_closed(plan, ("info_line", "info_line_voicemail"))  # a message is taken
    assert not ended_closed(plan, menu)


def closed_hangup_plan(into: Path) -> Path:
    """The default plan, but a closed language line says so and ends the call."""
    old = (
        "  closed_offer_dutch:\n    type: menu\n    prompts: closed\n    keys:\n      1: dutch\n"
        "    timeout: 5\n    retries: 0\n    default: dutch\n"
    )
    text = DEFAULT_PLAN.read_text()
    assert old in text
    into.write_text(
        text.replace(old, "  closed_offer_dutch:\n    type: hangup\n    prompts: closed\n")
    )
    return into


async def test_a_call_ending_at_closed_hours_is_recorded_closed(
    make_helpline: MakeHelpline, pg_url: str, tmp_path: Path
) -> None:
    """Tuesday 15:00: the Arabic line (evenings) is closed; the caller is told and hung up on."""
    plan = closed_hangup_plan(tmp_path / "dialplan.yaml")
    async with ivr_helpline(make_helpline, plan) as helpline:
        async with AsyncPjsuaPhone("caller") as caller:
            await call_queue(helpline, caller, key="2")
            assert await caller.wait_disconnected(timeout=30) == 200  # our BYE after "closed"
        await until(lambda: helpline.service.switchboard.legs == {})
        records = await stored(helpline, pg_url)
    assert [(r["outcome"], r["language"], r["queue"]) for r in records] == [("closed", "ar", None)]
    assert records[0]["ivr_path"][-1] == "closed_offer_dutch"


def test_closed_calls_are_their_own_figure_in_the_report() -> None:
    at = datetime(2026, 11, 24, 15, tzinfo=AMS)
    base = {
        "entry_kind": "national", "entry_line": "09000767", "region": None, "partner": None,
        "ivr_path": [], "language": "ar", "queue": None, "wait_seconds": None,
        "answered_by": None, "talk_seconds": None, "transfer_to": None,
        "transfer_result": None, "overflowed": False, "returning_today": False,
    }  # fmt: skip
    rows = [
        {**base, "started_at": at, "outcome": "closed"},
        {**base, "started_at": at, "outcome": "closed"},
        {**base, "started_at": at, "outcome": "ivr_hangup"},
        {**base, "started_at": at, "outcome": "refused", "language": None},
    ]
    report = build_report(rows, date(2026, 11, 24), date(2026, 11, 24), AMS)
    assert (report.total.calls, report.total.closed, report.total.refused) == (4, 2, 1)
    assert report.by["language"]["ar"].closed == 2
    csv_text = render_csv(report)
    assert "total,,closed,2\n" in csv_text and "total,,refused,1\n" in csv_text
    assert "language,ar,closed,2\n" in csv_text
    text = render_text(report)
    by_language = text.split("By language\n")[1].splitlines()
    assert by_language[0].split()[:7] == [
        "language", "calls", "offered", "answered", "abandoned", "overflowed", "closed"
    ]  # fmt: skip
    assert by_language[2].split()[:7] == ["ar", "3", "0", "0", "0", "0", "2"]


# --- refused --------------------------------------------------------------------------------


async def test_calls_the_service_refuses_are_recorded_refused(
    make_helpline: MakeHelpline, pg_url: str
) -> None:
    """A trunk call refused while draining and one over the call limit each leave a record of
    the line dialled, nothing of the caller; a volunteer's challenged INVITE (logging in with
    *1) is no call and leaves none."""
    async with ivr_helpline(make_helpline, DEFAULT_PLAN) as helpline:
        async with AsyncPjsuaPhone("vol") as vol, AsyncPjsuaPhone("caller") as caller:
            await on_shift(helpline, vol, "vol")  # challenged with 407 first, then logs in
            await caller.start(free_port())
            pai = {"P-Asserted-Identity": f"<sip:{CALLER_NUMBER}@127.0.0.1>"}
            uri = f"sip:0881234500@{helpline.host}:{helpline.port}"  # a partner's line
            helpline.service.switchboard.max_dialogs = 0  # full: every new call over the limit
            assert await caller.make_call(uri, headers=pai) == 503
            helpline.service.switchboard.max_dialogs = 5000
            assert await helpline.service.drain.run()  # no calls: drained at once, refusing
            assert await caller.make_call(f"sip:09000767@{helpline.host}:{helpline.port}",
                                          headers=pai) == 503  # fmt: skip
        records = await stored(helpline, pg_url)
    assert [(r["outcome"], r["entry_kind"], r["entry_line"], r["partner"]) for r in records] == [
        ("refused", "partner", "0881234500", "Wijkteam Utrecht"),
        ("refused", "national", "09000767", None),
    ]
    assert all(r["ivr_path"] == [] and r["answered_by"] is None for r in records)


# --- handset lost ---------------------------------------------------------------------------


async def test_a_lost_handset_ending_the_call_is_recorded_handset_lost(
    make_helpline: MakeHelpline, pg_url: str, tmp_path: Path
) -> None:
    """`volunteer_lost: goodbye`: the volunteer's handset vanishes mid-call, the caller is told
    and the call ends; the record names the volunteer who answered and outcome handset_lost."""
    plan = tmp_path / "dialplan.yaml"
    plan.write_text(
        DEFAULT_PLAN.read_text().replace(
            "    overflow: queue_full\n", "    overflow: queue_full\n    volunteer_lost: goodbye\n"
        )
    )
    async with ivr_helpline(make_helpline, plan, media_timeout=2.0) as helpline:
        async with AsyncPjsuaPhone("gone") as gone, AsyncPjsuaPhone("caller") as caller:
            await on_shift(helpline, gone, "gone")
            await call_queue(helpline, caller)
            await gone.wait_incoming(timeout=15)
            await gone.answer(200)
            await caller.play_tone(1000)
            await gone.play_tone(400)
            await until(lambda: helpline.service.dispatcher.waiting("dutch") == 0)
            await gone.kill()  # power cut: no BYE, no more RTP
            assert await caller.wait_disconnected(timeout=20) == 200
        await until(lambda: helpline.service.switchboard.legs == {})
        records = await stored(helpline, pg_url)
    assert [(r["outcome"], r["answered_by"], r["queue"]) for r in records] == [
        ("handset_lost", "gone", "dutch")
    ]
    assert records[0]["talk_seconds"] is not None and records[0]["talk_seconds"] > 0


# --- direct call flow and shutdown ------------------------------------------------------------


async def test_direct_calls_are_recorded(make_helpline: MakeHelpline, pg_url: str) -> None:
    """`call_flow: direct` (a trunk call rings a registered handset): one record, answered."""
    async with make_helpline(call_flow="direct", volunteer_whisper="") as helpline:
        await helpline.add_volunteer("kees", PASSWORD)
        async with AsyncPjsuaPhone("kees") as kees, AsyncPjsuaPhone("caller") as caller:
            await kees.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await kees.register(helpline.host, helpline.port, "kees", PASSWORD) == 200
            await caller.start(free_port())
            pai = {"P-Asserted-Identity": f"<sip:{CALLER_NUMBER}@127.0.0.1>"}
            uri = f"sip:020-6250000@{helpline.host}:{helpline.port}"  # Amsterdam's local line
            dialing = asyncio.create_task(caller.make_call(uri, headers=pai))
            await kees.wait_incoming(timeout=15)
            await kees.answer(200)
            assert await dialing == 200
            await asyncio.sleep(0.5)
            await caller.hangup()
            assert await kees.wait_disconnected(timeout=10) == 200
        await until(lambda: helpline.service.switchboard.legs == {})
        records = await stored(helpline, pg_url)
    assert [(r["outcome"], r["answered_by"], r["entry_kind"], r["region"]) for r in records] == [
        ("answered", "kees", "local", "Amsterdam")
    ]
    assert records[0]["talk_seconds"] > 0


async def test_a_call_in_progress_when_the_service_stops_keeps_its_record(
    make_helpline: MakeHelpline, pg_url: str
) -> None:
    """The service stops while a caller waits in a queue: the call's record is written
    (outcome shutdown), once."""
    async with AsyncPjsuaPhone("caller") as caller:
        async with ivr_helpline(make_helpline, DEFAULT_PLAN) as helpline:
            await call_queue(helpline, caller)
            await until(lambda: helpline.service.dispatcher.waiting("dutch") == 1)
        records = await read_records(pg_url)  # the service has stopped
    assert [(r["outcome"], r["queue"], r["language"]) for r in records] == [
        ("shutdown", "dutch", "nl")
    ]


# --- partners' statement past retention -------------------------------------------------------


async def test_the_partner_statement_counts_months_folded_into_daily_counts(
    pg_url: str,
) -> None:
    """Records of March 2024 are folded (retention); `report partners --month 2024-03` still
    bills them: calls, answered and talk time per partner."""
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate(conn)
        await conn.execute("TRUNCATE call_records, call_daily_counts")
        plan = load_dialplan(DEFAULT_PLAN, prompts=PROMPTS)
        records = CallRecords(submit=lambda op: None)
        calls = [  # (day, line dialled, answered after, talk seconds)
            (10, "0881234500", True, 120.0), (10, "0881234500", False, 0.0),
            (11, "0885550100", True, 300.0), (12, "09000767", True, 50.0),
            (15, "0881234500", None, 0.0),  # shut down mid-wait
        ]  # fmt: skip
        for i, (day, line, answered, talk) in enumerate(calls):
            records.clock = lambda day=day: datetime(2024, 3, day, 12, tzinfo=UTC)
            records.monotonic = lambda: 0.0
            records.started(f"r{i}", CallerContext(f"r{i}", line, None, "udp"), plan)
            records.queued(f"r{i}", "dutch")
            if answered:
                records.answered(f"r{i}", "v", 10.0)
                records.monotonic = lambda talk=talk: talk
                records.talk_ended(f"r{i}", None)
            outcome = {True: "answered", False: "abandoned", None: "shutdown"}[answered]
            record = records.finished(f"r{i}", outcome)
            assert record is not None
            await conn.execute(*_sql(record_op(record)))
        assert await fold_old_records(conn, datetime(2024, 11, 1, tzinfo=UTC)) == 5
        assert await conn.fetchval("SELECT count(*) FROM call_records") == 0
        done = await asyncio.to_thread(
            subprocess.run,
            [*HELPLINE, "report", "partners", "--month", "2024-03", "--csv", "-",
             "--database-url", pg_url, "--timezone", "Europe/Amsterdam"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout == (
            "month,partner,calls,answered,talk_seconds\n"
            "2024-03,Gemeente Zwolle,1,1,300\n"
            "2024-03,Wijkteam Utrecht,3,1,120\n"
        )
    finally:
        await conn.execute("TRUNCATE call_records, call_daily_counts")
        await conn.close()


def _sql(op: DataOp) -> tuple[Any, ...]:
    sql, args = op_sql(op)
    return (sql, *args)


def test_the_partner_statement_adds_daily_counts_to_records() -> None:
    rec = {"partner": "Gemeente Zwolle", "answered_by": "v", "talk_seconds": 60.0}
    counts = [
        {"partner": "Gemeente Zwolle", "calls": 3, "answered": 2, "talk_seconds": 240.0},
        {"partner": "", "calls": 5, "answered": 5, "talk_seconds": 500.0},
        {"partner": "Wijkteam Utrecht", "calls": 1, "answered": 0, "talk_seconds": 0.0},
    ]
    lines = partner_statement([rec], counts)
    assert [(p.partner, p.calls, p.answered, p.talk_seconds) for p in lines] == [
        ("Gemeente Zwolle", 4, 3, 300.0), ("Wijkteam Utrecht", 1, 0, 0.0)
    ]  # fmt: skip


def test_a_flood_of_refused_calls_is_recorded_bounded() -> None:
    """Refused calls are written up to a bound per second: a flood cannot fill the write-behind;
    the next second records again."""
    plan = load_dialplan(DEFAULT_PLAN, prompts=PROMPTS)
    ops: list[DataOp] = []
    now = [100.0]
    records = CallRecords(submit=ops.append, monotonic=lambda: now[0])
    for _ in range(MAX_REFUSED_PER_SECOND + 30):
        records.refused("09000767", plan)
    assert len(ops) == MAX_REFUSED_PER_SECOND
    now[0] = 101.0
    records.refused("09000767", None)  # no plan loaded: the record has no line
    assert len(ops) == MAX_REFUSED_PER_SECOND + 1
    assert isinstance(ops[0], Upsert) and ops[0].values["entry_line"] == "09000767"
    assert isinstance(ops[-1], Upsert) and ops[-1].values["entry_kind"] == "unknown"
    assert {op.values["outcome"] for op in ops if isinstance(op, Upsert)} == {"refused"}
