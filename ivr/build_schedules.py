"""Opening hours read from the plan: `schedules:` with weekly hours and exceptions: on a date
(YYYY-MM-DD), on a day every year ("24 December", month in English or Dutch), or on a public
holiday by name (English or Dutch).

Each range is checked as it is read (a time of day, not empty); ranges of one day that overlap
are reported once per line of the file (`ivr.check_hours`).
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ivr import model
from ivr.check_hours import overlap
from ivr.holiday_calendar import HolidayCalendar, KnownNames
from ivr.model import MINUTES_PER_DAY, DayHours, TimeRange
from ivr.yaml_reader import Pos, Reader, suggest, type_name

__all__ = ["DAY_GROUPS", "DAY_NAMES", "read_schedules"]

DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_GROUPS: dict[str, tuple[int, ...]] = {
    **{name: (i,) for i, name in enumerate(DAY_NAMES)},
    "weekdays": (0, 1, 2, 3, 4),
    "weekend": (5, 6),
    "every day": tuple(range(7)),
    "daily": tuple(range(7)),
}


def read_schedules(
    r: Reader, doc: CommentedMap, zone: ZoneInfo | None, calendar: HolidayCalendar | None
) -> dict[str, model.Schedule]:
    """The schedules; `calendar` names the public holidays exceptions may use (None: the
    plan's country is wrong, already reported)."""
    out: dict[str, model.Schedule] = {}
    known: KnownNames | None = None  # the calendar's names, read once when first needed
    for name, body, where in r.entries(
        doc, "schedules", "schedule", "a section with `weekly:` (and optionally `exceptions:`)",
        ("weekly", "exceptions", "note"), ("weekly",),
    ):  # fmt: skip
        week = _weekly(r, body, where)
        if known is None and calendar is not None and _names_holidays(body):
            known = calendar.names()
        read = _exceptions(r, body, where, known)
        if week is not None and read is not None and zone is not None:
            dated, yearly, by_name = read
            out[name] = model.Schedule(
                name, zone, week, dated, by_name, calendar if by_name else None, yearly
            )
    return out


def _names_holidays(body: CommentedMap) -> bool:
    section = body.get("exceptions")
    return isinstance(section, CommentedMap) and any(
        not isinstance(k, date) and not _DATE_LIKE.match(str(k)) and not _YEARLY.match(str(k))
        for k in section
    )


_DATE_LIKE = re.compile(r"\s*\d{4}-\d{1,2}-\d{1,2}\s*$")
_YEARLY = re.compile(r"\s*(\d{1,2})\s+([^\W\d_]+)\s*$")  # "24 December", "24 december"
_DAY_MONTH_DIGITS = re.compile(r"\s*\d{1,2}\s*[-/.]\s*\d{1,2}\s*$")  # "12-24": which is the month?
_DUTCH_MONTHS = ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus",
                 "september", "oktober", "november", "december")  # fmt: skip
_MONTHS = {
    **{name.casefold(): i for i, name in enumerate(model.MONTH_NAMES, 1)},
    **{name: i for i, name in enumerate(_DUTCH_MONTHS, 1)},
}
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # 29 February: leap years


def _weekly(r: Reader, body: CommentedMap, where: str) -> tuple[DayHours, ...] | None:
    weekly = r.mapping(body, "weekly", f"`weekly` of {where}")
    if weekly is None:
        return None
    days: list[list[TimeRange]] = [[] for _ in range(7)]
    given: dict[int, tuple[str, Pos]] = {}
    ok = True
    for key in weekly:
        key_text = str(key).strip().lower()
        pos = r.key_pos(weekly, key)
        group = DAY_GROUPS.get(key_text)
        if group is None:
            r.error(
                pos,
                f"{str(key)!r} in {where} is not a day{suggest(key_text, DAY_GROUPS)}; use "
                "monday..sunday, weekdays, weekend or every day",
            )
            ok = False
            continue
        ranges = _day_ranges(r, weekly, key, where)
        if ranges is None:
            ok = False
            continue
        for day in group:
            if day in given:
                first, first_pos = given[day]
                r.error(
                    pos,
                    f"{DAY_NAMES[day]} in {where} is already given by {first!r} on line "
                    f"{first_pos[0]}; give each day its hours only once",
                )
                ok = False
                continue
            given[day] = (str(key), pos)
            days[day] = list(ranges)
    # Overlaps within a day, and with the part of yesterday's range after midnight.
    # One message per line of the file, naming every day it affects.
    clashes: dict[tuple[Pos, str], list[str]] = {}
    for day in range(7):
        clash = overlap(days[day], days[(day - 1) % 7])
        if clash is not None:
            pos = given[day][1] if day in given else r.pos_of(weekly)
            clashes.setdefault((pos, clash), []).append(DAY_NAMES[day])
    for (pos, clash), names in clashes.items():
        r.error(pos, f"on {', '.join(names)} in {where}, {clash}; join them into one range")
        ok = False
    return tuple(DayHours(tuple(d)) for d in days) if ok else None


def _exceptions(
    r: Reader, body: CommentedMap, where: str, known: KnownNames | None
) -> tuple[dict[date, DayHours], dict[tuple[int, int], DayHours], dict[str, DayHours]] | None:
    """Dated exceptions, yearly ones ((month, day) -> hours) and exceptions by public holiday
    name (`known`: the calendar's names; None when no calendar could be read)."""
    section = r.mapping(body, "exceptions", f"`exceptions` of {where}")
    dated: dict[date, DayHours] = {}
    yearly: dict[tuple[int, int], DayHours] = {}
    by_name: dict[str, DayHours] = {}
    if section is None:
        empty = "exceptions" not in body or body["exceptions"] is None
        return (dated, yearly, by_name) if empty else None
    ok = True
    seen: dict[object, tuple[str, Pos]] = {}  # (month, day) or a holiday -> where given first
    for key, _value in section.items():
        pos = r.key_pos(section, key)
        day: date | None = None
        every: tuple[int, int] | None = None
        holiday: str | None = None
        if isinstance(key, date):
            day = key
        elif _DATE_LIKE.match(str(key)):
            try:
                day = date.fromisoformat(str(key).strip())
            except ValueError:
                r.error(
                    pos,
                    f"{str(key)!r} in the exceptions of {where} is not a date; "
                    "write it as YYYY-MM-DD, e.g. 2026-12-25",
                )
                ok = False
                continue
        elif _YEARLY.match(str(key)) or _DAY_MONTH_DIGITS.match(str(key)):
            every = _yearly(r, str(key), pos, where)
            if every is None or not _first(r, seen, every, str(key), pos, where):
                ok = False
                continue
        else:
            holiday = _holiday(r, str(key), pos, where, known)
            if holiday is None or not _first(r, seen, holiday, str(key), pos, where):
                ok = False
                continue
        ranges = _day_ranges(r, section, key, where)
        clash = None if ranges is None else overlap(ranges, [])
        if clash is not None:
            r.error(pos, f"on {day or key} in {where}, {clash}; join them into one range")
        if ranges is None or clash is not None:
            ok = False
            continue
        if holiday is not None:
            by_name[holiday] = DayHours(tuple(ranges))
        elif every is not None:
            yearly[every] = DayHours(tuple(ranges))
        else:
            assert day is not None
            dated[day] = DayHours(tuple(ranges))
    return (dated, yearly, by_name) if ok else None


def _first(
    r: Reader, seen: dict[object, tuple[str, Pos]], day: object, key: str, pos: Pos, where: str
) -> bool:
    """False (reported) when another key already gave this day ("Koningsdag" after "King's
    Day", "24 december" after "24 December")."""
    if day in seen:
        first, first_pos = seen[day]
        r.error(pos, f"{key!r} in the exceptions of {where} is the same day as {first!r} on "
                     f"line {first_pos[0]}; give each day its hours only once")  # fmt: skip
        return False
    seen[day] = (key, pos)
    return True


def _yearly(r: Reader, key: str, pos: Pos, where: str) -> tuple[int, int] | None:
    """(month, day) of an exception every year ("24 December"), or None (reported)."""
    example = "write a day every year as 24 December (the month in English or Dutch)"
    match = _YEARLY.match(key)
    if match is None:  # "12-24" or "24-12": day first or month first cannot be told apart
        r.error(pos, f"{key!r} in the exceptions of {where} is not a date; {example}, or one "
                     "date as YYYY-MM-DD")  # fmt: skip
        return None
    day, month_name = int(match.group(1)), match.group(2).casefold()
    month = _MONTHS.get(month_name)
    if month is None:
        r.error(pos, f"{key!r} in the exceptions of {where}: {match.group(2)!r} is not a month"
                     f"{suggest(month_name, _MONTHS)}; {example}")  # fmt: skip
        return None
    if not 1 <= day <= _DAYS_IN_MONTH[month - 1]:
        r.error(
            pos,
            f"{key!r} in the exceptions of {where} is not a day of the year: "
            f"{model.MONTH_NAMES[month - 1]} has {_DAYS_IN_MONTH[month - 1]} days",
        )
        return None
    return month, day


def _holiday(r: Reader, name: str, pos: Pos, where: str, known: KnownNames | None) -> str | None:
    """The holiday's English name case-folded (a Dutch name stands for its English one), or
    None (reported) when the calendar has no such name."""
    folded = " ".join(name.split()).casefold()
    if folded == model.ANY_HOLIDAY:
        return folded
    if known is None:
        return None  # the plan's country is wrong: said once, where it is set
    if folded in known.english:
        return known.english[folded].casefold()
    close = difflib.get_close_matches(folded, list(known.written), n=1, cutoff=0.6)
    hint = f" (did you mean {known.written[close[0]]!r}?)" if close else ""
    r.error(
        pos,
        f"{name!r} in the exceptions of {where} is neither a date (YYYY-MM-DD, or 24 December "
        f"for every year) nor a public holiday{hint}; "
        f"holidays (English, Dutch): {known.listing()}, or {model.ANY_HOLIDAY!r} for all of "
        "them",
    )
    return None


def _day_ranges(r: Reader, m: CommentedMap, key: Any, where: str) -> list[TimeRange] | None:
    """`closed`, `HH:MM-HH:MM`, or a list of ranges."""
    value = m.get(key)
    pos = r.value_pos(m, key)
    items: list[tuple[Any, Pos]]
    if isinstance(value, CommentedSeq):
        items = [(v, r.item_pos(value, i)) for i, v in enumerate(value)]
    else:
        items = [(value, pos)]
    ranges: list[TimeRange] = []
    ok = True
    for item, item_pos in items:
        if isinstance(item, str) and item.strip().lower() == "closed" and len(items) == 1:
            return []
        parsed = _time_range(r, item, item_pos, where)
        if parsed is None:
            ok = False
        else:
            ranges.append(parsed)
    return ranges if ok else None


def _time_range(r: Reader, value: Any, pos: Pos, where: str) -> TimeRange | None:
    if not isinstance(value, str):
        r.error(
            pos,
            f'hours in {where} must be written like "18:00-22:00" or closed, '
            f"not {type_name(value)}",
        )
        return None
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", value)
    if match is None:
        r.error(
            pos,
            f'{value!r} in {where} is not a time range; write it like "18:00-22:00" (or closed)',
        )
        return None
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    for h, mi, is_end in ((h1, m1, False), (h2, m2, True)):
        too_late = h > 24 or (h == 24 and (mi != 0 or not is_end))
        if too_late or mi > 59:
            r.error(
                pos,
                f"{h:02d}:{mi:02d} in {where} is not a time of day (00:00 to 23:59; "
                "24:00 only as the end of a range)",
            )
            return None
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end or (start == 0 and end == 0):
        r.error(
            pos,
            f"{value.strip()!r} in {where} starts and ends at the same time; "
            "for a whole day write 00:00-24:00, for none write closed",
        )
        return None
    if end == 0:
        end = MINUTES_PER_DAY  # "22:00-00:00" ends at midnight
    return TimeRange(start, end)
