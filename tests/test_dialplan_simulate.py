"""Opening hours across DST and holidays, and calls walked through the default dialplan."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from ivr.loader import DEFAULT_PLAN, DialplanError, load_dialplan, load_dialplan_text
from ivr.model import DayHours, Dialplan, Schedule, TimeRange
from ivr.schedule import is_open
from ivr.simulate import Ending, Heard, simulate
from pbx.media.prompts import PromptLibrary

AMS = ZoneInfo("Europe/Amsterdam")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def daily(*ranges: TimeRange, exceptions: dict[date, DayHours] | None = None) -> Schedule:
    return Schedule("s", AMS, tuple(DayHours(ranges) for _ in range(7)), exceptions or {})


@pytest.fixture(scope="module")
def plan() -> Dialplan:
    return load_dialplan(DEFAULT_PLAN, prompts=PromptLibrary())


# --- schedules -------------------------------------------------------------------------


def test_spring_forward_night_line_closes_at_noon_summer_time() -> None:
    night = daily(TimeRange(0, 12 * 60))
    # 29 March 2026: clocks go from 02:00 CET to 03:00 CEST; noon is now 10:00 UTC.
    assert is_open(night, utc("2026-03-29 09:59"))
    assert not is_open(night, utc("2026-03-29 10:30"))  # 12:30 CEST (11:30 in winter time)
    assert is_open(night, utc("2026-03-28 10:30"))  # the day before: 11:30 CET


def test_spring_forward_boundary_in_the_missing_hour() -> None:
    late = daily(TimeRange(22 * 60, 2 * 60 + 30))  # 22:00-02:30
    early = daily(TimeRange(2 * 60 + 30, 5 * 60))  # 02:30-05:00
    assert is_open(late, utc("2026-03-29 00:59"))  # 01:59 CET
    assert not is_open(late, utc("2026-03-29 01:00"))  # 03:00 CEST: 02:30 never came
    assert not is_open(early, utc("2026-03-29 00:59"))
    assert is_open(early, utc("2026-03-29 01:00"))


def test_fall_back_hour_happens_twice_and_is_judged_by_the_wall_clock() -> None:
    late = daily(TimeRange(22 * 60, 2 * 60 + 30))
    # 25 October 2026: 03:00 CEST becomes 02:00 CET at 01:00 UTC.
    assert is_open(late, utc("2026-10-25 00:20"))  # 02:20 CEST
    assert not is_open(late, utc("2026-10-25 00:40"))  # 02:40 CEST
    assert is_open(late, utc("2026-10-25 01:20"))  # 02:20 CET, the second time round
    assert not is_open(late, utc("2026-10-25 01:40"))  # 02:40 CET
    evenings = daily(TimeRange(18 * 60, 22 * 60))
    assert is_open(evenings, utc("2026-10-25 17:30"))  # 18:30 CET
    assert not is_open(evenings, utc("2026-10-24 20:30"))  # 22:30 CEST


def test_exception_replaces_the_day_and_its_run_past_midnight() -> None:
    new_year = date(2026, 12, 31)
    late = daily(TimeRange(22 * 60, 2 * 60), exceptions={new_year: DayHours()})
    assert is_open(late, datetime(2026, 12, 31, 1, 0, tzinfo=AMS))  # from the 30th
    assert not is_open(late, datetime(2026, 12, 31, 23, 0, tzinfo=AMS))
    assert not is_open(late, datetime(2027, 1, 1, 1, 0, tzinfo=AMS))
    assert is_open(late, datetime(2027, 1, 1, 23, 0, tzinfo=AMS))


def test_naive_time_is_wall_time_in_the_schedule_zone() -> None:
    assert is_open(daily(TimeRange(600, 840)), datetime(2026, 7, 1, 13, 59))
    assert not is_open(daily(TimeRange(600, 840)), datetime(2026, 7, 1, 14, 0))


def test_yaml_hours_crossing_midnight_and_other_hours_on_a_date() -> None:
    text = DEFAULT_PLAN.read_text()
    plan = load_dialplan_text(text, str(DEFAULT_PLAN), prompts=PromptLibrary())
    evenings = plan.schedules["evenings"]
    assert is_open(evenings, datetime(2026, 12, 23, 21, 0, tzinfo=AMS))
    assert not is_open(evenings, datetime(2026, 12, 24, 21, 0, tzinfo=AMS))  # 18:00-20:00
    assert is_open(evenings, datetime(2026, 12, 24, 19, 0, tzinfo=AMS))
    assert not is_open(evenings, datetime(2026, 12, 31, 19, 0, tzinfo=AMS))  # closed


# --- simulated calls through the default plan -----------------------------------------


def ends(steps: list, kind: Ending, target: str | None) -> bool:  # type: ignore[type-arg]
    return steps[-1].ending is kind and steps[-1].target == target


def test_pressing_nothing_reaches_the_dutch_queue(plan: Dialplan) -> None:
    steps = simulate(plan, "09000767", datetime(2026, 3, 29, 3, 0), "")
    assert [s.node for s in steps] == ["welcome", "language_menu", "dutch"]
    assert steps[0].heard == (Heard("welcome", "nl"),)
    assert steps[1].keys == ""
    assert "no_input" in [h.prompt for h in steps[1].heard]
    assert ends(steps, Ending.QUEUE, "dutch")


def test_arabic_evening_and_closed_language_offers_dutch(plan: Dialplan) -> None:
    open_call = simulate(plan, "0900-0767", datetime(2026, 3, 29, 18, 0), "2")
    assert ends(open_call, Ending.QUEUE, "arabic")
    assert open_call[-1].language == "ar"
    closed_call = simulate(plan, "0900-0767", datetime(2026, 3, 29, 17, 59), "2")
    assert [s.node for s in closed_call][-2:] == ["closed_offer_dutch", "dutch"]
    assert closed_call[-2].heard == (Heard("closed", "ar"),)
    assert ends(closed_call, Ending.QUEUE, "dutch")
    assert closed_call[-1].language == "nl"
    pressed_one = simulate(plan, "0900-0767", datetime(2026, 3, 29, 12, 0), "41")
    assert pressed_one[-2].keys == "1" and pressed_one[-2].heard == (Heard("closed", "tr"),)
    assert ends(pressed_one, Ending.QUEUE, "dutch")


def test_timeout_then_key_and_invalid_keys(plan: Dialplan) -> None:
    steps = simulate(plan, "09000767", datetime(2026, 6, 1, 20, 0), "-3")
    assert steps[1].keys == "-3"
    assert [h.prompt for h in steps[1].heard] == ["language_menu", "no_input", "language_menu"]
    assert ends(steps, Ending.QUEUE, "farsi")
    wrong = simulate(plan, "09000767", datetime(2026, 6, 1, 20, 0), "99")
    assert [h.prompt for h in wrong[1].heard] == [
        "language_menu",
        "invalid_key",
        "language_menu",
        "invalid_key",
    ]
    assert ends(wrong, Ending.QUEUE, "dutch")


def test_night_line_113_around_both_dst_changes(plan: Dialplan) -> None:
    spring = simulate(plan, "0800-0113001", utc("2026-03-29 09:59"))
    assert ends(spring, Ending.QUEUE, "night_113")
    assert spring[-1].heard == (Heard("night_line_113", "nl"),)
    assert ends(simulate(plan, "0800-0113001", utc("2026-03-29 10:00")), Ending.QUEUE, "dutch")
    autumn = "08000113001"
    assert ends(simulate(plan, autumn, utc("2026-10-25 10:59")), Ending.QUEUE, "night_113")
    assert ends(simulate(plan, autumn, utc("2026-10-25 11:00")), Ending.QUEUE, "dutch")


def test_info_line_open_closed_and_holiday(plan: Dialplan) -> None:
    number = "0900-1234567"
    thursday = simulate(plan, number, datetime(2026, 4, 2, 10, 0))
    assert ends(thursday, Ending.TRANSFER, "info_line")
    assert thursday[-1].heard == (Heard("info_line_open", "nl"),)
    good_friday = simulate(plan, number, datetime(2026, 4, 3, 11, 0))
    assert ends(good_friday, Ending.VOICEMAIL, "info_line")
    assert [h.prompt for h in good_friday[-1].heard][:2] == [
        "info_line_closed",
        "voicemail_instructions",
    ]
    assert ends(simulate(plan, number, datetime(2026, 4, 2, 14, 0)), Ending.VOICEMAIL, "info_line")


def test_partner_local_and_unknown_numbers(plan: Dialplan) -> None:
    partner = simulate(plan, "088-1234500", datetime(2026, 5, 1, 19, 0))
    assert partner[0].heard == (Heard("partner_greeting", "nl"),)
    assert "counted for partner Wijkteam Utrecht" in partner[-1].note
    assert ends(partner, Ending.QUEUE, "dutch")
    local = simulate(plan, "0206250000", datetime(2026, 5, 1, 19, 0), "1")
    assert "region Amsterdam first" in local[-1].note
    unknown = simulate(plan, "0612345678", datetime(2026, 5, 1, 19, 0))
    assert unknown[0].node == "welcome" and "unknown number" in unknown[0].note


# --- public holidays by name (the `holidays` library) ----------------------------------


@pytest.mark.parametrize(
    ("at", "holiday"),
    [
        (datetime(2027, 12, 25, 11, 0), "Christmas Day"),  # a Saturday
        (datetime(2027, 4, 27, 11, 0), "King's Day"),  # a Tuesday: open on other Tuesdays
        (datetime(2030, 4, 19, 11, 0), "Good Friday"),  # Easter moves: no date in the plan
    ],
)
def test_holidays_of_any_year_take_the_holiday_path_unedited(
    plan: Dialplan, at: datetime, holiday: str
) -> None:
    steps = simulate(plan, "0900-1234567", at)
    assert ends(steps, Ending.VOICEMAIL, "info_line")
    assert steps[0].note.endswith(f"closed at {at:%a} 11:00 {'CET' if at.month == 12 else 'CEST'} "
                                  f"({holiday})")  # fmt: skip
    # the same weekday a week later is an ordinary day: open on weekdays, closed on Saturday
    later = simulate(plan, "0900-1234567", at.replace(day=at.day - 7))
    assert ends(later, Ending.VOICEMAIL if at.weekday() == 5 else Ending.TRANSFER, "info_line")
    assert "(" not in later[0].note


HOLIDAY_PLAN = """\
public_holidays: NL
schedules:
  office:
    weekly:
      weekdays: "09:00-17:00"
    exceptions:
      king's day: "09:00-12:00"     # case does not matter
      Public Holidays: closed
      2027-12-27: "10:00-11:00"     # a literal date still works, and wins
queues:
  q: {language: nl, schedule: office, max_wait: 60, overflow: bye}
numbers:
  - {number: "0900-0767", type: national, start: hours}
unknown_number: hours
flow:
  hours: {type: hours, schedule: office, open: wait, closed: bye}
  wait: {type: queue, queue: q}
  bye: {type: hangup, prompts: goodbye}
"""


def test_named_holidays_any_holiday_and_dates_in_one_schedule() -> None:
    office = load_dialplan_text(HOLIDAY_PLAN, "plan.yaml", prompts=PromptLibrary()).schedules[
        "office"
    ]
    assert is_open(office, datetime(2027, 4, 27, 11, 0, tzinfo=AMS))  # King's Day: mornings
    assert not is_open(office, datetime(2027, 4, 27, 13, 0, tzinfo=AMS))
    assert not is_open(office, datetime(2027, 5, 6, 11, 0, tzinfo=AMS))  # Ascension: any holiday
    assert is_open(office, datetime(2027, 5, 7, 11, 0, tzinfo=AMS))  # the Friday after
    assert is_open(office, datetime(2027, 12, 27, 10, 30, tzinfo=AMS))  # the dated exception
    assert not is_open(office, datetime(2027, 12, 27, 11, 30, tzinfo=AMS))
    assert office.holiday_on(date(2027, 4, 27)) == "King's Day"


def test_a_misspelt_holiday_is_named_with_its_line_and_the_right_name() -> None:
    text = HOLIDAY_PLAN.replace("king's day:", "Kings Day:")
    with pytest.raises(DialplanError) as info:
        load_dialplan_text(text, "plan.yaml", prompts=PromptLibrary())
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (7, 7)
    assert problem.message.startswith(
        "'Kings Day' in the exceptions of schedule 'office' is neither a date (YYYY-MM-DD, or "
        '24 December for every year) nor a public holiday (did you mean "King\'s Day"?)'
    )
    assert "Christmas Day (Eerste kerstdag)" in problem.message  # both languages listed


def test_holidays_named_in_dutch_are_the_same_holidays() -> None:
    text = HOLIDAY_PLAN.replace("king's day:", "Koningsdag:").replace(
        "Public Holidays: closed", "EERSTE KERSTDAG: closed\n      Hemelvaartsdag: closed"
    )  # fmt: skip
    office = load_dialplan_text(text, "plan.yaml", prompts=PromptLibrary()).schedules["office"]
    assert is_open(office, datetime(2027, 4, 27, 11, 0, tzinfo=AMS))  # King's Day: mornings
    assert not is_open(office, datetime(2027, 4, 27, 13, 0, tzinfo=AMS))
    assert office.holiday_on(date(2027, 4, 27)) == "King's Day"
    assert not is_open(office, datetime(2027, 5, 6, 11, 0, tzinfo=AMS))  # Ascension Day
    assert not is_open(office, datetime(2030, 12, 25, 11, 0, tzinfo=AMS))  # a Wednesday
    assert is_open(office, datetime(2030, 12, 24, 11, 0, tzinfo=AMS))
    assert is_open(office, datetime(2027, 3, 29, 11, 0, tzinfo=AMS))  # Easter Monday: not named


def test_an_unknown_dutch_holiday_is_named_with_its_line_and_both_languages() -> None:
    text = HOLIDAY_PLAN.replace("king's day:", "Koningdag:")
    with pytest.raises(DialplanError) as info:
        load_dialplan_text(text, "plan.yaml", prompts=PromptLibrary())
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (7, 7)
    assert "'Koningdag' in the exceptions of schedule 'office'" in problem.message
    assert "(did you mean 'Koningsdag'?)" in problem.message
    assert "King's Day (Koningsdag)" in problem.message
    assert "Second Day of Christmas (Tweede kerstdag)" in problem.message


def test_one_holiday_named_in_both_languages_is_an_error() -> None:
    text = HOLIDAY_PLAN.replace("      Public Holidays: closed", "      koningsdag: closed")
    with pytest.raises(DialplanError) as info:
        load_dialplan_text(text, "plan.yaml", prompts=PromptLibrary())
    (problem,) = info.value.problems
    assert problem.line == 8
    assert problem.message.startswith(
        "'koningsdag' in the exceptions of schedule 'office' is the same day as \"king's day\" "
        "on line 7"
    )


# --- exceptions on a day every year (not public holidays: Christmas Eve) ----------------


@pytest.mark.parametrize("year", [2026, 2027, 2031])
def test_christmas_eve_and_new_years_eve_every_year(plan: Dialplan, year: int) -> None:
    """The default plan's evening exceptions carry no year: right in any year, unedited."""
    farsi = "3"

    def when(day: int, hhmm: str) -> datetime:
        return datetime.fromisoformat(f"{year}-12-{day:02d} {hhmm}")

    def at(day: int, hhmm: str) -> list:  # type: ignore[type-arg]
        return simulate(plan, "0900-0767", when(day, hhmm), keys=farsi)

    eve_early, eve_late, before = at(24, "19:30"), at(24, "20:30"), at(23, "20:30")
    assert ends(eve_early, Ending.QUEUE, "farsi")  # Christmas Eve: 18:00-20:00
    assert eve_early[2].note.endswith(f"open at {when(24, '19:30'):%a} 19:30 CET (24 December)")
    assert "closed" in eve_late[2].note and "(24 December)" in eve_late[2].note
    assert not ends(eve_late, Ending.QUEUE, "farsi")  # offered the Dutch queue instead
    assert ends(before, Ending.QUEUE, "farsi") and "(" not in before[2].note  # an evening
    new_years_eve = at(31, "19:00")
    assert "closed" in new_years_eve[2].note and "(31 December)" in new_years_eve[2].note
    assert not ends(new_years_eve, Ending.QUEUE, "farsi")
    assert ends(at(30, "19:00"), Ending.QUEUE, "farsi")


YEARLY_PLAN = HOLIDAY_PLAN.replace(
    '      2027-12-27: "10:00-11:00"     # a literal date still works, and wins',
    '      24 december: "09:00-12:00"    # every year, month in Dutch or English\n'
    "      2027-12-24: closed            # a literal date wins over a day every year\n"
    '      1 May: "09:00-10:00"',
)


def test_a_day_every_year_wins_over_a_holiday_and_a_date_over_it() -> None:
    text = YEARLY_PLAN.replace('1 May: "09:00-10:00"', '27 April: "14:00-15:00"')
    office = load_dialplan_text(text, "plan.yaml", prompts=PromptLibrary()).schedules["office"]
    assert is_open(office, datetime(2026, 12, 24, 11, 0, tzinfo=AMS))  # a Thursday
    assert not is_open(office, datetime(2026, 12, 24, 13, 0, tzinfo=AMS))
    assert not is_open(office, datetime(2027, 12, 24, 11, 0, tzinfo=AMS))  # the dated one
    assert office.exception_on(date(2027, 12, 24)) == "2027-12-24"
    assert office.exception_on(date(2026, 12, 24)) == "24 December"
    # King's Day (27 April) has its own hours, but the day every year wins
    assert is_open(office, datetime(2027, 4, 27, 14, 30, tzinfo=AMS))
    assert not is_open(office, datetime(2027, 4, 27, 11, 0, tzinfo=AMS))
    assert office.exception_on(date(2027, 4, 27)) == "27 April"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("12-24", "'12-24' in the exceptions of schedule 'office' is not a date; write a day "
                  "every year as 24 December (the month in English or Dutch), or one date as "
                  "YYYY-MM-DD"),
        ("31 November", "'31 November' in the exceptions of schedule 'office' is not a day of "
                        "the year: November has 30 days"),
        ("24 Decembre", "'24 Decembre' in the exceptions of schedule 'office': 'Decembre' is "
                        "not a month (did you mean 'december'?); write a day every year as 24 "
                        "December (the month in English or Dutch)"),
        ("24 December", "'24 December' in the exceptions of schedule 'office' is the same day "
                        "as '24 december' on line 9; give each day its hours only once"),
    ],
)  # fmt: skip
def test_a_wrong_day_every_year_is_named_at_its_line(key: str, message: str) -> None:
    text = YEARLY_PLAN.replace("1 May:", f"{key}:")
    with pytest.raises(DialplanError) as info:
        load_dialplan_text(text, "plan.yaml", prompts=PromptLibrary())
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (11, 7)
    assert problem.message == message


def test_an_unknown_holiday_country_is_an_error() -> None:
    with pytest.raises(DialplanError) as info:
        load_dialplan_text(
            HOLIDAY_PLAN.replace("public_holidays: NL", "public_holidays: XX"),
            "plan.yaml",
            prompts=PromptLibrary(),
        )
    assert [p.message for p in info.value.problems] == [
        "no public holidays known for 'XX'; use a country code like NL"
    ]


def test_a_queue_step_says_its_way_out(plan: Dialplan) -> None:
    farsi = simulate(plan, "0900-0767", datetime(2026, 11, 24, 19, 0), keys="3")
    assert ends(farsi, Ending.QUEUE, "farsi")
    assert farsi[-1].note.endswith("after 600 s: to_dutch")
    night = simulate(plan, "0800-0113001", datetime(2026, 11, 25, 3, 0))
    assert night[-1].note.endswith("after 120 s (20 s with nobody on shift): night_113_backline")
