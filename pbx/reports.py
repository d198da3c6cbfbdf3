"""Figures from call records for a period: what funders, partners and shift planners ask for.

Pure functions over record rows (`pbx.db.call_records.fetch_records`), so the figures are tested
on records with any dates. Definitions:

- calls: every record; offered: calls that reached a queue; answered: a volunteer answered;
  abandoned: hung up while waiting in a queue; overflowed: waited a queue's maximum.
- service level within 60 s: answered within 60 s of joining the queue, over answered calls
  (`service_level_answered`), and over answered plus abandoned calls (`service_level_offered`:
  a caller who gave up counts against it).
- waits are the time in the queue of answered and abandoned calls.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

SERVICE_LEVEL_SECONDS = 60.0
# upper bounds (seconds) of the abandoned-wait buckets; the last one is open
WAIT_BUCKETS = (10, 30, 60, 120, 300)
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

Row = Mapping[str, Any]


def bucket_name(wait: float) -> str:
    low = 0
    for high in WAIT_BUCKETS:
        if wait < high:
            return f"{low}-{high}s"
        low = high
    return f"{low}s+"


BUCKET_NAMES = tuple(bucket_name(b - 0.5) for b in WAIT_BUCKETS) + (f"{WAIT_BUCKETS[-1]}s+",)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100): a wait some caller really had."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Figures:
    calls: int = 0
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    overflowed: int = 0
    voicemail: int = 0
    closed: int = 0  # the IVR said the line is closed (outside its hours) and ended the call
    refused: int = 0  # the service refused the call (draining, call limit)
    answered_60: int = 0
    abandoned_by_wait: dict[str, int] = field(default_factory=dict)
    average_wait: float | None = None
    p90_wait: float | None = None
    talk_seconds: float = 0.0
    average_talk: float | None = None
    repeat_callers: int = 0

    @property
    def service_level_answered(self) -> float | None:
        return self.answered_60 / self.answered if self.answered else None

    @property
    def service_level_offered(self) -> float | None:
        handled = self.answered + self.abandoned
        return self.answered_60 / handled if handled else None

    @property
    def repeat_share(self) -> float | None:
        return self.repeat_callers / self.calls if self.calls else None

    def as_dict(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {
            "calls": self.calls, "offered": self.offered, "answered": self.answered,
            "abandoned": self.abandoned, "overflowed": self.overflowed,
            "voicemail": self.voicemail, "closed": self.closed, "refused": self.refused,
            "answered_within_60s": self.answered_60,
            "service_level_answered": _round(self.service_level_answered),
            "service_level_offered": _round(self.service_level_offered),
            "average_wait_s": _round(self.average_wait), "p90_wait_s": _round(self.p90_wait),
            "talk_time_s": _round(self.talk_seconds), "average_talk_s": _round(self.average_talk),
            "repeat_callers": self.repeat_callers, "repeat_share": _round(self.repeat_share),
        }  # fmt: skip
        for name in BUCKET_NAMES:
            out[f"abandoned_{name}"] = self.abandoned_by_wait.get(name, 0)
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def figures(rows: Iterable[Row]) -> Figures:
    f = Figures(abandoned_by_wait={name: 0 for name in BUCKET_NAMES})
    waits: list[float] = []
    talks: list[float] = []
    for r in rows:
        f.calls += 1
        f.repeat_callers += bool(r["returning_today"])
        f.voicemail += r["outcome"] == "voicemail"
        f.closed += r["outcome"] == "closed"
        f.refused += r["outcome"] == "refused"
        f.overflowed += bool(r["overflowed"])
        if r["queue"] is None:
            continue
        f.offered += 1
        wait = r["wait_seconds"]
        if r["answered_by"] is not None:
            f.answered += 1
            if wait is not None:
                waits.append(wait)
                f.answered_60 += wait <= SERVICE_LEVEL_SECONDS
            if r["talk_seconds"] is not None:
                talks.append(r["talk_seconds"])
        elif r["outcome"] == "abandoned" and not r["overflowed"]:
            f.abandoned += 1
            if wait is not None:
                waits.append(wait)
                f.abandoned_by_wait[bucket_name(wait)] += 1
    if waits:
        f.average_wait = sum(waits) / len(waits)
        f.p90_wait = percentile(waits, 90)
    f.talk_seconds = sum(talks)
    f.average_talk = f.talk_seconds / len(talks) if talks else None
    return f


@dataclass
class Report:
    first: date
    last: date
    total: Figures
    by: dict[str, dict[str, Figures]]  # dimension -> value -> figures
    load: list[list[int]]  # [weekday][hour] calls, local time
    transfers: dict[tuple[str, str], int]  # (destination, result) -> calls

    @property
    def by_hour(self) -> list[int]:
        return [sum(day[h] for day in self.load) for h in range(24)]

    @property
    def by_weekday(self) -> list[int]:
        return [sum(day) for day in self.load]


DIMENSIONS: dict[str, Callable[[Row], str | None]] = {
    "language": lambda r: r["language"],
    "queue": lambda r: r["queue"],
    "entry": lambda r: r["entry_kind"] + (f" {r['entry_line']}" if r["entry_line"] else ""),
    "region": lambda r: r["region"],
    "partner": lambda r: r["partner"],
}


def build_report(rows: Sequence[Row], first: date, last: date, tz: ZoneInfo) -> Report:
    by: dict[str, dict[str, Figures]] = {}
    for dim, key in DIMENSIONS.items():
        groups: dict[str, list[Row]] = {}
        for r in rows:
            value = key(r)
            if value is not None:
                groups.setdefault(value, []).append(r)
        by[dim] = {value: figures(g) for value, g in sorted(groups.items())}
    load = [[0] * 24 for _ in range(7)]
    for r in rows:
        local = _local(r["started_at"], tz)
        load[local.weekday()][local.hour] += 1
    transfers = Counter(
        (r["transfer_to"], r["transfer_result"] or "") for r in rows if r["transfer_to"]
    )
    return Report(first, last, figures(rows), by, load, dict(sorted(transfers.items())))


def _local(at: datetime, tz: ZoneInfo) -> datetime:
    return at.astimezone(tz)


@dataclass(frozen=True)
class PartnerLine:
    partner: str
    calls: int  # forwarded to (or dialled on the line of) the helpline
    answered: int
    talk_seconds: float


def partner_statement(rows: Iterable[Row], counts: Iterable[Row] = ()) -> list[PartnerLine]:
    """Per partner: calls, answered, talk time; from records and, for days past retention, from
    the daily counts they were folded into (a day is in one or the other, never both)."""
    acc: dict[str, list[float]] = {}
    for c in counts:
        if c["partner"]:
            a = acc.setdefault(c["partner"], [0, 0, 0.0])
            a[0] += c["calls"]
            a[1] += c["answered"]
            a[2] += c["talk_seconds"]
    for r in rows:
        if r["partner"] is None:
            continue
        a = acc.setdefault(r["partner"], [0, 0, 0.0])
        a[0] += 1
        if r["answered_by"] is not None:
            a[1] += 1
            a[2] += r["talk_seconds"] or 0.0
    return [PartnerLine(p, int(a[0]), int(a[1]), round(a[2], 3)) for p, a in sorted(acc.items())]


def daily_service_level(rows: Iterable[Row], tz: ZoneInfo) -> dict[date, Figures]:
    days: dict[date, list[Row]] = {}
    for r in rows:
        days.setdefault(_local(r["started_at"], tz).date(), []).append(r)
    return {d: figures(g) for d, g in sorted(days.items())}


# --- output -------------------------------------------------------------------------------------

_MAIN = ("calls", "offered", "answered", "abandoned", "overflowed", "closed",
         "service_level_offered", "service_level_answered", "average_wait_s", "p90_wait_s",
         "talk_time_s")  # fmt: skip


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(header)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def render_text(report: Report) -> str:
    t = report.total.as_dict()
    out = [f"Calls {report.first} .. {report.last}", ""]
    out.append(_table(("figure", "value"), list(t.items())))
    for dim, groups in report.by.items():
        if not groups:
            continue
        out += ["", f"By {dim}"]
        rows = [[value, *(g.as_dict()[k] for k in _MAIN)] for value, g in groups.items()]
        out.append(_table((dim, *_MAIN), rows))
    out += ["", "Load by hour of day"]
    out.append(_table(("hour", "calls"), [(f"{h:02d}", n) for h, n in enumerate(report.by_hour)]))
    out += ["", "Load by day of week"]
    out.append(_table(("day", "calls"), list(zip(DAYS, report.by_weekday, strict=True))))
    out += ["", "Transfers"]
    out.append(_table(("destination", "result", "calls"),
                      [(d, r, n) for (d, r), n in report.transfers.items()]))  # fmt: skip
    return "\n".join(out) + "\n"


def render_csv(report: Report) -> str:
    """Long form: section, key, figure, value (one figure per line: easy to pivot)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("section", "key", "figure", "value"))
    for name, value in report.total.as_dict().items():
        w.writerow(("total", "", name, _cell(value)))
    for dim, groups in report.by.items():
        for key, g in groups.items():
            for name, value in g.as_dict().items():
                w.writerow((dim, key, name, _cell(value)))
    for day, hours in zip(DAYS, report.load, strict=True):
        for hour, n in enumerate(hours):
            w.writerow(("load", f"{day} {hour:02d}", "calls", n))
    for (dest, result), n in report.transfers.items():
        w.writerow(("transfer", dest, result, n))
    return buf.getvalue()


def render_partners_text(month: str, lines: Sequence[PartnerLine]) -> str:
    rows = [(p.partner, p.calls, p.answered, round(p.talk_seconds / 60, 1)) for p in lines]
    return f"Partner statement {month}\n\n" + _table(
        ("partner", "calls", "answered", "talk_minutes"), rows
    ) + "\n"  # fmt: skip


def render_partners_csv(month: str, lines: Sequence[PartnerLine]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("month", "partner", "calls", "answered", "talk_seconds"))
    for p in lines:
        w.writerow((month, p.partner, p.calls, p.answered, _cell(p.talk_seconds)))
    return buf.getvalue()


def render_folded(counts: Sequence[Row]) -> tuple[str, list[tuple[str, str, str, object]]]:
    """Days past retention, kept only as daily counts: a table and CSV rows (section "folded")."""
    days: dict[str, list[float]] = {}
    for c in counts:
        d = days.setdefault(str(c["day"]), [0, 0, 0, 0, 0])
        d[0] += c["calls"]
        d[1] += c["answered"]
        d[2] += c["answered_60"]
        d[3] += c["returning_today"]
        d[4] += c["calls"] if c["outcome"] == "closed" else 0
    names = ("calls", "answered", "answered_within_60s", "repeat_callers", "closed")
    rows = [(day, *map(int, v)) for day, v in sorted(days.items())]
    text = "\nDays kept as daily counts only (past retention)\n" + _table(("day", *names), rows)
    flat = [("folded", str(r[0]), n, r[i + 1]) for r in rows for i, n in enumerate(names)]
    return text + "\n", flat
