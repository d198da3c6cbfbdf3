"""Does a volunteer's profile fit the dialplan? Languages, skills and region checked by name.

A region the plan does not know, a language no queue speaks or a skill no queue asks for would
leave the volunteer silently without calls: `helpline volunteers add/set` refuses them, naming
what the plan has. Regions are compared case-insensitively and stored as the plan spells them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from ivr.model import Dialplan

__all__ = ["PlanVocabulary", "ProfileMismatch"]


class ProfileMismatch(ValueError):
    """A language, skill or region the plan does not have; the message says which it has."""


def _fold(text: str) -> str:
    """How regions compare: case and extra spaces do not matter."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class PlanVocabulary:
    languages: tuple[str, ...]  # the plan's languages
    skills: frozenset[str]  # skills some queue asks for
    regions: tuple[str, ...]  # as the plan writes them (local numbers' regions)

    @classmethod
    def of(cls, plan: Dialplan) -> PlanVocabulary:
        regions = sorted({n.region for n in plan.numbers.values() if n.region}, key=str.casefold)
        return cls(
            languages=plan.languages,
            skills=frozenset(q.skill for q in plan.queues.values() if q.skill),
            regions=tuple(dict.fromkeys(regions)),
        )

    def region(self, value: str) -> str:
        """The plan's spelling of region `value` (any case); ProfileMismatch if unknown."""
        by_key = {_fold(r): r for r in self.regions}
        found = by_key.get(_fold(value))
        if found is not None:
            return found
        close = difflib.get_close_matches(_fold(value), list(by_key), n=1)
        hint = f" (did you mean {by_key[close[0]]!r}?)" if close else ""
        known = ", ".join(self.regions) or "none: the plan has no local numbers"
        raise ProfileMismatch(
            f"region {value!r} is not a region of the dialplan{hint}; its regions: {known}"
        )

    def check_languages(self, values: Iterable[str]) -> None:
        unknown = [v for v in values if v not in self.languages]
        if unknown:
            raise ProfileMismatch(
                f"language {', '.join(unknown)} is not spoken in any queue of the dialplan; "
                f"its languages: {', '.join(self.languages)}"
            )

    def check_skills(self, values: Iterable[str]) -> None:
        unknown = [v for v in values if v not in self.skills]
        if unknown:
            known = ", ".join(sorted(self.skills)) or "none"
            raise ProfileMismatch(
                f"skill {', '.join(unknown)} is asked for by no queue of the dialplan; "
                f"skills its queues ask for: {known}"
            )
