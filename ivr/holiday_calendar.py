"""Public holidays by name, from the maintained `holidays` library (no dates typed by hand).

A schedule's `exceptions:` may name a holiday ("Christmas Day", "King's Day") instead of a
date, so the plan stays right every year without anyone editing it. Names are the library's
English ones for the plan's country (`public_holidays:`, default NL), or its Dutch ones
("Eerste kerstdag", "Koningsdag") where the library has them, compared case-insensitively; a
Dutch name stands for its English one. Each year's holidays are computed once, when first
asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import holidays

__all__ = ["DEFAULT_COUNTRY", "HolidayCalendar", "KnownNames", "UnknownCountry"]

DEFAULT_COUNTRY = "NL"
NAME_LANGUAGE = "en_US"  # the names a plan uses: "Christmas Day", "King's Day"
OTHER_LANGUAGE = "nl"  # ... or these, where the library has them: "Eerste kerstdag"
# Public holidays and the optional ones (in NL: Liberation Day every year, not only every fifth).
CATEGORIES = ("public", "optional")
_SAMPLE_YEARS = 8  # years looked at for the list of names (some, like Liberation Day, skip years)
_MAX_CACHED_YEARS = 64  # bounded: simulate may ask for any year


class UnknownCountry(ValueError):
    """The `holidays` library has no calendar for this country code."""


@dataclass(frozen=True)
class KnownNames:
    """The holiday names a plan may use, in English and (where the library has them) Dutch."""

    english: dict[str, str]  # any name, case-folded -> its English name as the library writes it
    written: dict[str, str]  # any name, case-folded -> as the library writes it
    pairs: tuple[tuple[str, str | None], ...]  # (English, Dutch or None), by date

    def listing(self) -> str:
        """Every name, English with the Dutch in brackets, alphabetically by English name."""
        return ", ".join(en if nl is None else f"{en} ({nl})" for en, nl in sorted(self.pairs))


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

    def _holidays(self, *years: int, language: str = NAME_LANGUAGE) -> holidays.HolidayBase:
        supported = holidays.country_holidays(self.country).supported_categories
        return holidays.country_holidays(
            self.country,
            years=years,
            language=language,
            categories=tuple(c for c in CATEGORIES if c in supported),
        )

    def names_on(self, day: date) -> tuple[str, ...]:
        """The names of the holidays on `day` (as the library writes them); () on other days."""
        return self._year(day.year).get(day, ())

    def names(self, around: int | None = None) -> KnownNames:
        """Every holiday name of the country, in English and Dutch, over a few years from
        `around` (default: this year)."""
        start = date.today().year if around is None else around
        years = range(start, start + _SAMPLE_YEARS)
        found = self._holidays(*years)
        supported = holidays.country_holidays(self.country).supported_languages
        other = self._holidays(*years, language=OTHER_LANGUAGE) if (
            OTHER_LANGUAGE in supported) else None  # fmt: skip
        english: dict[str, str] = {}
        written: dict[str, str] = {}
        pairs: dict[str, str | None] = {}
        for day in sorted(found):
            names = found.get_list(day)
            translated = other.get_list(day) if other is not None else []
            if len(translated) != len(names):  # cannot tell which is which: English only
                translated = []
            for i, name in enumerate(names):
                local = translated[i] if translated else None
                pairs.setdefault(name, local)
                for given in (name, local):
                    if given is not None:
                        english.setdefault(given.casefold(), name)
                        written.setdefault(given.casefold(), given)
        return KnownNames(english, written, tuple(pairs.items()))
