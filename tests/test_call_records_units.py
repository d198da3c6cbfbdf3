"""Call records without a call: what the record builder notes, the report's figures on records of
any date, retention in the real database, and what anonymity hands over (repeat caller as a
yes/no, the forwarding partner's number only when it is a partner's)."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from ivr.loader import DEFAULT_PLAN, load_dialplan
from pbx.anonymity import CallerContext, CallerHasher, caller_context
from pbx.call_records import CallRecords, record_op
from pbx.db.call_records import fetch_records, fold_old_records, months_before
from pbx.db.migrate import migrate
from pbx.db.ops import DataOp, op_sql
from pbx.db.writebehind import WriteBehind
from pbx.media.prompts import DEFAULT_RECORDINGS, PromptLibrary
from pbx.metrics import Metrics
from pbx.reports import build_report, figures, partner_statement, percentile, render_csv
from pbx.sip.message import Request
from pbx.sip.parser import parse_message
from pbx.staffing_metrics import partner_numbers, watch_staffing
from queues.roster import Roster, Volunteer
from tests.helpers.caller_number import DIGITS, INVITE
from tests.helpers.service import running_service
from tests.helpers.sip_texts import SDP

AMS = ZoneInfo("Europe/Amsterdam")
PROMPTS = PromptLibrary(DEFAULT_RECORDINGS)


def invite(**extra: str) -> Request:
    sdp = SDP.format(port=40000).replace("\n", "\r\n")
    text = INVITE.format(host="127.0.0.1", port=5060, me="127.0.0.2", myport=5062,
                         length=len(sdp), sdp="")  # fmt: skip
    head, _, _ = text.partition("\n\n")
    lines = [line for line in head.split("\n") if not line.startswith("Content-Length")]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in extra.items()]
    message = parse_message(
        ("\r\n".join(lines) + f"\r\nContent-Length: {len(sdp)}\r\n\r\n" + sdp).encode()
    )
    assert isinstance(message, Request)
    return message


def test_forwarding_header_names_a_partner_never_the_caller() -> None:
    plan = load_dialplan(DEFAULT_PLAN, prompts=PROMPTS)
    partners = partner_numbers(plan)
    hasher = CallerHasher(forwarders=lambda: partners)
    # the carrier's INVITE has a Diversion naming the caller's own number: not a partner
    assert caller_context(invite(), hasher, 1000.0, "udp").forwarded_by is None
    forwarded = invite(History_Info="<tel:+31881234500>;index=1.1")
    ctx = caller_context(forwarded, hasher, 1000.0, "udp")
    assert ctx.forwarded_by == "0881234500" and plan.numbers["0881234500"].partner
    assert DIGITS not in repr(ctx)


def test_repeat_caller_is_a_yes_or_no_of_the_same_day() -> None:
    hasher = CallerHasher()
    day = 86400.0
    first = caller_context(invite(), hasher, 10 * day + 60, "udp")
    again = caller_context(invite(), hasher, 10 * day + 3600, "udp")
    next_day = caller_context(invite(), hasher, 11 * day + 60, "udp")
    assert (first.repeat_today, again.repeat_today, next_day.repeat_today) == (False, True, False)


def test_the_record_builder_notes_the_call_and_writes_once() -> None:
    plan = load_dialplan(DEFAULT_PLAN, prompts=PROMPTS)
    ops: list[DataOp] = []
    ticks = itertools.count(0.0, 5.0)
    records = CallRecords(submit=ops.append, clock=lambda: datetime(2026, 11, 24, 12, tzinfo=UTC),
                          monotonic=lambda: next(ticks))  # fmt: skip
    caller = CallerContext("ref1", "0881234500", "key", "udp", repeat_today=True)
    records.started("ref1", caller, plan)
    records.ivr("ref1", ("partner_welcome", "dutch"), "nl")
    records.queued("ref1", "dutch")  # t=0
    records.offered("ref1")
    records.missed("ref1")
    records.offered("ref1")
    records.answered("ref1", "vera", 42.0)  # t=5
    records.talk_ended("ref1", time_limit=3)  # t=10: 5 s of talk, over the limit
    records.transferred("ref1", "backline_113", answered=False)
    record = records.finished("ref1", "answered")
    assert records.finished("ref1", "answered") is None  # written once, then forgotten
    assert record is not None and len(ops) == 1 and records.open_count == 0
    row = record.row()
    assert {k: row[k] for k in ("entry_kind", "partner", "partner_via", "ivr_path", "offered",
                                "ring_no_answer", "answered_by", "wait_seconds", "talk_seconds",
                                "time_limit_reached", "transfer_result", "returning_today")} == {
        "entry_kind": "partner", "partner": "Wijkteam Utrecht", "partner_via": "number",
        "ivr_path": ["partner_welcome", "dutch"], "offered": 2, "ring_no_answer": 1,
        "answered_by": "vera", "wait_seconds": 42.0, "talk_seconds": 5.0,
        "time_limit_reached": True, "transfer_result": "failed", "returning_today": True,
    }  # fmt: skip
    sql, _ = op_sql(ops[0])
    assert 'ON CONFLICT ("id")' in sql
    assert "key" not in row.values()  # the caller's daily key is never in the record


def row(at: datetime, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": str(at.timestamp()) + str(kw), "started_at": at, "entry_kind": "national",
        "entry_line": "09000767", "region": None, "partner": None, "partner_via": None,
        "ivr_path": ["welcome"], "language": "nl", "queue": "dutch", "wait_seconds": None,
        "offered": 0, "ring_no_answer": 0, "answered_by": None, "talk_seconds": None,
        "time_limit_reached": False, "transfer_to": None, "transfer_result": None,
        "overflowed": False, "outcome": "abandoned", "returning_today": False,
    }  # fmt: skip
    return {**base, **kw}


def answered(at: datetime, wait: float, talk: float, **kw: Any) -> dict[str, Any]:
    return row(at, wait_seconds=wait, answered_by="v", talk_seconds=talk, outcome="answered", **kw)


def test_report_figures_on_a_faked_week() -> None:
    mon = datetime(2026, 11, 23, 0, 30, tzinfo=AMS)  # 23:30 UTC on Sunday: local Monday
    rows = [
        answered(mon, 5, 100),
        answered(mon + timedelta(hours=1), 59, 200, partner="Gemeente Zwolle"),
        answered(mon + timedelta(days=1), 61, 300, language="tr", queue="turkish"),
        answered(mon + timedelta(days=1), 200, 400, returning_today=True),
        row(mon + timedelta(days=2), wait_seconds=9.0),
        row(mon + timedelta(days=2), wait_seconds=45.0, partner="Gemeente Zwolle"),
        row(mon + timedelta(days=3), wait_seconds=900.0, overflowed=True, outcome="voicemail"),
        row(mon + timedelta(days=6), queue=None, outcome="ivr_hangup"),
    ]
    f = figures(rows)
    assert (f.calls, f.offered, f.answered, f.abandoned, f.overflowed, f.voicemail) == (
        8,
        7,
        4,
        2,
        1,
        1,
    )
    assert f.answered_60 == 2
    assert f.service_level_answered == 0.5 and f.service_level_offered == 2 / 6
    assert f.abandoned_by_wait["0-10s"] == 1 and f.abandoned_by_wait["30-60s"] == 1
    assert f.average_wait == (5 + 59 + 61 + 200 + 9 + 45) / 6
    assert f.p90_wait == 200 and percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9
    assert f.talk_seconds == 1000 and f.average_talk == 250 and f.repeat_callers == 1
    report = build_report(rows, date(2026, 11, 23), date(2026, 11, 29), AMS)
    assert report.by_weekday == [2, 2, 2, 1, 0, 0, 1]  # local days, not UTC ones
    assert report.load[0][0] == 1 and report.load[0][1] == 1
    assert set(report.by["language"]) == {"nl", "tr"} and report.by["language"]["tr"].calls == 1
    assert report.by["partner"]["Gemeente Zwolle"].abandoned == 1
    lines = partner_statement(rows)
    assert [(p.partner, p.calls, p.answered, p.talk_seconds) for p in lines] == [
        ("Gemeente Zwolle", 2, 1, 200.0)
    ]
    assert "total,,service_level_offered,0.333\n" in render_csv(report)


async def test_retention_folds_old_records_into_daily_counts(pg_url: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate(conn)
        await conn.execute("TRUNCATE call_records, call_daily_counts")
        records = CallRecords(submit=lambda op: None)
        old = datetime(2024, 3, 10, 12, tzinfo=UTC)
        recent = datetime(2026, 10, 2, 12, tzinfo=UTC)
        plan = load_dialplan(DEFAULT_PLAN, prompts=PROMPTS)
        for i, at in enumerate([old, old, old + timedelta(days=1), recent]):
            records.clock = lambda at=at: at
            records.started(f"r{i}", CallerContext(f"r{i}", "09000767", None, "udp"), plan)
            records.queued(f"r{i}", "dutch")
            records.answered(f"r{i}", "v", 30.0 * (i + 1))
            records.talk_ended(f"r{i}", None)
            record = records.finished(f"r{i}", "answered")
            assert record is not None
            sql, args = op_sql(record_op(record))
            await conn.execute(sql, *args)
            await conn.execute(sql, *args)  # a replayed write changes nothing
        assert await conn.fetchval("SELECT count(*) FROM call_records") == 4
        now = datetime(2026, 11, 26, tzinfo=UTC)
        cutoff = months_before(now, 24)
        assert cutoff == datetime(2024, 11, 1, tzinfo=UTC)
        assert await fold_old_records(conn, cutoff) == 3
        assert await fold_old_records(conn, cutoff) == 0  # nothing counted twice
        counts = await conn.fetch(
            "SELECT day, calls, answered_60 FROM call_daily_counts ORDER BY day"
        )
        assert [(r["day"], r["calls"], r["answered_60"]) for r in counts] == [
            (date(2024, 3, 10), 2, 2), (date(2024, 3, 11), 1, 0)
        ]  # fmt: skip
        left = await fetch_records(conn, datetime(2020, 1, 1, tzinfo=UTC), now)
        assert [r["started_at"] for r in left] == [recent]
        # a report over the folded days still counts their calls
        cli = [sys.executable, "-c", "from pbx.cli import main; main()", "report"]
        period = ["--from", "2024-03-01", "--to", "2024-03-31", "--database-url", pg_url]
        done = await asyncio.to_thread(
            subprocess.run, [*cli, *period, "--csv", "-"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "folded,2024-03-10,calls,2\nfolded,2024-03-10,answered,2\n" in done.stdout
        assert "total,,calls,0\n" in done.stdout
    finally:
        await conn.execute("TRUNCATE call_records, call_daily_counts")
        await conn.close()


async def test_the_service_folds_records_past_retention(pg_url: str, tmp_path: Path) -> None:
    """At start (then daily) the service folds records older than its retention setting."""
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate(conn)
        await conn.execute("TRUNCATE call_records, call_daily_counts")
        records = CallRecords(
            submit=lambda op: None, clock=lambda: datetime(2025, 1, 5, tzinfo=UTC)
        )
        records.started(
            "old",
            CallerContext("old", "09000767", None, "udp"),
            load_dialplan(DEFAULT_PLAN, prompts=PROMPTS),
        )
        record = records.finished("old", "ivr_hangup")
        assert record is not None
        sql, args = op_sql(record_op(record))
        await conn.execute(sql, *args)
        async with running_service(tmp_path / "state", pg_url, call_records_retention_months=6):
            for _ in range(200):
                if await conn.fetchval("SELECT count(*) FROM call_records") == 0:
                    break
                await asyncio.sleep(0.05)
        assert await conn.fetchval("SELECT count(*) FROM call_records") == 0
        assert await conn.fetchval("SELECT sum(calls) FROM call_daily_counts") == 1
    finally:
        await conn.execute("TRUNCATE call_records, call_daily_counts")
        await conn.close()


async def test_records_survive_a_restart_in_the_journal_and_land_once(
    pg_url: str, tmp_path: Path
) -> None:
    """The database is unreachable while calls end and the service stops: the records wait in
    the journal; the next run writes each once, even when the journal is replayed twice."""
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate(conn)
        await conn.execute("TRUNCATE call_records")
        down = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens there
        first = WriteBehind(down, tmp_path, backoff_initial=0.05, backoff_max=0.1)
        first.start()
        plan = load_dialplan(DEFAULT_PLAN, prompts=PROMPTS)
        records = CallRecords(submit=first.submit)
        for i in range(3):
            records.started(f"c{i}", CallerContext(f"c{i}", "09000767", None, "udp"), plan)
            records.finished(f"c{i}", "ivr_hangup")
        assert not await first.close(timeout=0.3)  # still down: journaled
        journal = list((tmp_path / "writebehind").glob("*.jsonl"))
        assert journal and DIGITS not in journal[0].read_text()
        copy = journal[0].read_bytes()
        for _ in range(2):  # the second run replays a journal the first already wrote
            (tmp_path / "writebehind" / journal[0].name).write_bytes(copy)
            again = WriteBehind(pg_url, tmp_path)
            again.start()
            assert await again.flush(30)
            await again.close()
        assert await conn.fetchval("SELECT count(*) FROM call_records") == 3
    finally:
        await conn.execute("TRUNCATE call_records")
        await conn.close()


def test_staffing_metrics_per_language_skill_and_queue() -> None:
    """Labels come from the plan only: a volunteer's language the plan does not know adds none."""
    plan = load_dialplan(DEFAULT_PLAN, prompts=PROMPTS)
    roster = Roster(3, 120.0)
    metrics = Metrics()
    tuesday_evening = datetime(2026, 11, 24, 21, 0, tzinfo=AMS)  # the evening queues are open
    watch_staffing(metrics, roster, lambda: plan, lambda: 0, now=lambda: tuesday_evening)
    roster.login(Volunteer("anna", frozenset({"nl", "tr", "xx"}), frozenset({"113"})), 1.0)
    roster.login(Volunteer("bram", frozenset({"nl"})), 1.0)
    roster.login(Volunteer("cem", frozenset({"tr"})), 1.0)
    roster.pause("cem", 2.0)
    roster.offer("bram", 3.0)
    r = metrics.registry

    def value(name: str, **labels: str) -> float | None:
        return r.get_sample_value(name, labels)

    on_shift = "helpline_volunteers_on_shift_by_language"
    assert [value(on_shift, language=lang) for lang in ("nl", "ar", "fa", "tr")] == [2, 0, 0, 1]
    assert value(on_shift, language="xx") is None  # not a language of the plan: no new label
    assert value("helpline_volunteers_available_by_language", language="nl") == 1  # bram rings
    assert value("helpline_volunteers_on_shift_by_skill", skill="113") == 1
    staffed = "helpline_queue_volunteers_on_shift"
    assert [value(staffed, queue=q) for q in ("dutch", "turkish", "arabic", "night_113")] == [
        2, 1, 0, 1
    ]  # fmt: skip
    assert value("helpline_queue_open", queue="arabic") == 1  # open, nobody speaks it: alert
    assert value("helpline_queue_open", queue="night_113") == 0  # 113's night hours: 00-12
