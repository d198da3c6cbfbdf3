"""What the wallboard shows, read from the in-memory state: a plain dict, sent as JSON.

Callers are counts and durations only: nothing here can name a call, a Call-ID or a number
(the dispatcher is asked for counts and the longest wait, never for its call references).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from pbx.web.tally import DayTally
from queues.dispatcher import Dispatcher
from queues.roster import Roster, VolunteerState

SHOWN_STATES = (
    VolunteerState.AVAILABLE,
    VolunteerState.RINGING,
    VolunteerState.IN_CALL,
    VolunteerState.WRAP_UP,
    VolunteerState.PAUSED,
)
NO_REGION = "-"


def snapshot(roster: Roster, dispatcher: Dispatcher, tally: DayTally) -> dict[str, Any]:
    now = time.time()
    day = tally.current()
    queues = []
    for name, config in sorted(dispatcher.queues.items()):
        q = day.queues.get(name)
        level = None if q is None else q.service_level
        queues.append(
            {
                "name": name,
                "language": config.language,
                "waiting": dispatcher.waiting(name),
                "longest_wait": round(dispatcher.longest_wait(name, now)),
                "answered": 0 if q is None else q.answered,
                "abandoned": 0 if q is None else q.abandoned,
                "service_level": None if level is None else round(100 * level),
            }
        )
    by_language: dict[str, Counter[str]] = {}
    by_region: dict[str, Counter[str]] = {}
    for v in roster.volunteers():
        if v.state not in SHOWN_STATES:
            continue
        for language in sorted(v.languages):
            by_language.setdefault(language, Counter())[v.state.value] += 1
        by_region.setdefault(v.region or NO_REGION, Counter())[v.state.value] += 1
    outcomes = dict(sorted(day.outcomes.items()))
    return {
        "day": day.day.isoformat(),
        "threshold": round(tally.threshold),
        "queues": queues,
        "languages": _rows(by_language),
        "regions": _rows(by_region),
        "outcomes": outcomes,
        "calls_today": sum(outcomes.values()),
        "entries": dict(sorted(day.entries.items())),
        "transfers": dict(sorted(day.transfers.items())),
        "transfers_total": sum(day.transfers.values()),
        "states": [s.value for s in SHOWN_STATES],
    }


def _rows(counts: dict[str, Counter[str]]) -> list[dict[str, Any]]:
    return [
        {"name": key, **{s.value: counts[key][s.value] for s in SHOWN_STATES}}
        for key in sorted(counts)
    ]
