"""`helpline report`: call figures for a period, the partners' monthly statement, retention.

    helpline report [day|week|month|year] [--date D] [--from D --to D] [--csv F] [--charts DIR]
    helpline report partners --month YYYY-MM [--csv F]
    helpline report fold [--months N]     # records older than N months -> daily counts

Dates are the plan's local calendar (--timezone, default Europe/Amsterdam). The database is
--database-url / $HELPLINE_DATABASE_URL, else the embedded server under --state-dir.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pbx import event_loop
from pbx.config import Settings
from pbx.db.call_records import daily_counts, fetch_records, fold_old_records, months_before
from pbx.db.database import open_database
from pbx.reports import (
    build_report,
    daily_service_level,
    partner_statement,
    render_csv,
    render_folded,
    render_partners_csv,
    render_partners_text,
    render_text,
)

PERIODS = ("day", "week", "month", "year")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="call figures, partner statements, record retention")
    p.add_argument("what", nargs="?", default="day", choices=(*PERIODS, "partners", "fold"))
    p.add_argument("--date", type=date.fromisoformat, help="a day in the period (default today)")
    p.add_argument("--from", dest="first", type=date.fromisoformat, help="first day")
    p.add_argument("--to", dest="last", type=date.fromisoformat, help="last day (inclusive)")
    p.add_argument("--month", help="partners: the month, YYYY-MM")
    p.add_argument("--months", type=int, help="fold: keep records of the last N months")
    p.add_argument("--csv", help="write CSV to this file ('-': standard output)")
    p.add_argument("--charts", type=Path, help="write PNG charts into this directory")
    p.add_argument("--timezone", default="Europe/Amsterdam")
    p.add_argument("--database-url")
    p.add_argument("--state-dir", type=Path)
    p.set_defaults(func=run)


def period(what: str, day: date) -> tuple[date, date]:
    if what == "day":
        return day, day
    if what == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=6)
    if what == "month":
        first = day.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        return first, nxt - timedelta(days=1)
    return date(day.year, 1, 1), date(day.year, 12, 31)


def bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Local midnight of `first` to local midnight after `last`."""
    return (
        datetime.combine(first, time(0), tz),
        datetime.combine(last + timedelta(days=1), time(0), tz),
    )


def _write(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).write_text(text, encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    try:
        return event_loop.run(_run(args))
    except ValueError as exc:
        print(f"helpline report: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace) -> int:
    tz = ZoneInfo(args.timezone)
    url = args.database_url or os.environ.get("HELPLINE_DATABASE_URL") or None
    state_dir = args.state_dir or Path(os.environ.get("HELPLINE_STATE_DIR") or "var")
    if args.what == "partners" and not args.month:
        raise ValueError("partners needs --month YYYY-MM")
    try:
        db = await open_database(url, state_dir)
    except Exception as exc:
        print(f"helpline report: database unavailable ({type(exc).__name__})", file=sys.stderr)
        return 6
    try:
        if args.what == "fold":
            months = args.months if args.months is not None else _retention_months()
            async with db.pool.acquire() as conn:
                folded = await fold_old_records(conn, months_before(datetime.now(UTC), months))
            print(f"folded {folded} call records older than {months} months into daily counts")
            return 0
        if args.what == "partners":
            first = datetime.strptime(args.month, "%Y-%m").date()
            first, last = period("month", first)
            lines = partner_statement(
                await fetch_records(db.pool, *bounds(first, last, tz)),
                await daily_counts(db.pool, first, last),  # days past retention
            )
            if args.csv:
                _write(args.csv, render_partners_csv(args.month, lines))
            if args.csv != "-":
                sys.stdout.write(render_partners_text(args.month, lines))
            return 0
        first, last = period(args.what, args.date or datetime.now(tz).date())
        first, last = args.first or first, args.last or last
        if last < first:
            raise ValueError("--to is before --from")
        rows = await fetch_records(db.pool, *bounds(first, last, tz))
        report = build_report(rows, first, last, tz)
        folded_text, folded_csv = render_folded(await daily_counts(db.pool, first, last))
        if args.csv:
            extra = "".join(f"{s},{k},{n},{v}\n" for s, k, n, v in folded_csv)
            _write(args.csv, render_csv(report) + extra)
        if args.charts:
            # matplotlib takes a second to import: only the command that draws pays for it,
            # never `helpline serve` starting (or restarting) the line.
            from pbx.report_charts import draw_charts

            for path in draw_charts(report, daily_service_level(rows, tz), args.charts):
                print(f"chart: {path}", file=sys.stderr)
        if args.csv != "-":
            sys.stdout.write(render_text(report) + (folded_text if folded_csv else ""))
        return 0
    finally:
        await db.close()


def _retention_months() -> int:
    env = os.environ.get("HELPLINE_CALL_RECORDS_RETENTION_MONTHS")
    return int(env) if env else Settings().call_records_retention_months
