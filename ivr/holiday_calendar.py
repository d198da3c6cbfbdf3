"""Public holidays by name, from the maintained `holidays` library (no dates typed by hand).

A schedule's `exceptions:` may name a holiday ("Christmas Day", "King's Day") instead of a
date, so the plan stays right every year without anyone editing it. Names are the library's
English ones for the plan's country (`public_holidays:`, default NL), compared
case-insensitively. Each year's holidays are computed once, when first asked for.
"""

from __future__ import annotations

from datetime import date

import holidays

__all__ = ["DEFAULT_COUNTRY", "HolidayCalendar", "UnknownCountry"]

DEFAULT_COUNTRY = "NL"
NAME_LANGUAGE = "en_US"  # the names a plan uses: "Christmas Day", "King's Day"
# Public holidays and the optional ones (in NL: Liberation Day every year, not only every fifth).
CATEGORIES = ("public", "optional")
_SAMPLE_YEARS = 8  # years looked at for the list of names (some, like Liberation Day, skip years)
_MAX_CACHED_YEARS = 64  # bounded: simulate may ask for any year


class UnknownCountry(ValueError):
    """The `holidays` library has no calendar for this country code."""


class HolidayCalendar:
    """The public holidays of one country: which fall on a day, and which names exist."""

    def __init__(self, country: str = DEFAULT_COUNTRY) -> None:
        self.country = country.upper()
        if self.country not in holidays.list_supported_countries():
            raise UnknownCountry(f"no public holiday calendar for country {country!r}")
        self._years: dict[int, dict[date, tuple[str, ...]]] = {}

    def _year(self, year: int) -> dict[date, tuple[str, ...]]:
        days = self._years.get(year)
        if days is None:
            found = self._holidays(year)
            days = {d: tuple(found.get_list(d)) for d in found}
            if len(self._years) >= _MAX_CACHED_YEARS:
                self._years.pop(next(iter(self._years)))
            self._years[year] = days
        return days

    def _holidays(self, *years: int) -> holidays.HolidayBase:
        supported = holidays.country_holidays(self.country).supported_categories
        return holidays.country_holidays(
            self.country,
            years=years,
            language=NAME_LANGUAGE,
            categories=tuple(c for c in CATEGORIES if c in supported),
        )

    def names_on(self, day: date) -> tuple[str, ...]:
        """The names of the holidays on `day` (as the library writes them); () on other days."""
        return self._year(day.year).get(day, ())

    def names(self, around: int | None = None) -> dict[str, str]:
        """Every holiday name of the country (case-folded -> as the library writes it), over
        a few years from `around` (default: this year)."""
        start = date.today().year if around is None else around
        found = self._holidays(*range(start, start + _SAMPLE_YEARS))
        out: dict[str, str] = {}
        for day in sorted(found):
            for name in found.get_list(day):
                out.setdefault(name.casefold(), name)
        return out
