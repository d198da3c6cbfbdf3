"""Opening hours that contradict themselves: two ranges of one day that overlap."""

from __future__ import annotations

from ivr.model import MINUTES_PER_DAY, TimeRange

__all__ = ["overlap"]


def overlap(today: list[TimeRange], yesterday: list[TimeRange]) -> str | None:
    """ "A overlaps B" for the first two ranges that overlap on a day (counting the part of
    yesterday's ranges after midnight), else None."""
    spans = [
        (r.start, r.end + MINUTES_PER_DAY if r.crosses_midnight else r.end, str(r)) for r in today
    ]
    spans += [(0, r.end, f"{r} (from the day before)") for r in yesterday if r.crosses_midnight]
    spans.sort()
    for (_s1, e1, t1), (s2, _e2, t2) in zip(spans, spans[1:], strict=False):
        if s2 < e1:
            return f"{t1} overlaps {t2}"
    return None
