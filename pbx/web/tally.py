"""Today's call counts for the wallboard: a `CallEvents` observer in front of the metrics.

Prometheus counters run from the process start; a wallboard shows today. This observer passes
every event on to the metrics unchanged and keeps its own counts, which start again at the first
event of a new day. Only closed sets (outcomes, queue names) and durations are kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from pbx.call_events import CallEvents


@dataclass
class QueueDay:
    answered: int = 0
    answered_in_time: int = 0  # within the service-level threshold
    abandoned: int = 0
    overflowed: int = 0

    @property
    def service_level(self) -> float | None:
        """Share of callers answered in time among those answered or abandoned (None: none)."""
        offered = self.answered + self.abandoned
        return None if offered == 0 else self.answered_in_time / offered


@dataclass
class DayCounts:
    day: date
    outcomes: Counter[str] = field(default_factory=Counter)
    entries: Counter[str] = field(default_factory=Counter)  # by the kind of number dialled
    transfers: Counter[str] = field(default_factory=Counter)  # by destination (backline_113...)
    queues: dict[str, QueueDay] = field(default_factory=dict)
    refused: int = 0

    def queue(self, name: str) -> QueueDay:
        return self.queues.setdefault(name, QueueDay())


class DayTally:
    def __init__(
        self, forward: CallEvents, threshold: float, today: Callable[[], date] = date.today
    ) -> None:
        self.forward = forward
        self.threshold = threshold
        self.today = today
        self.counts = DayCounts(today())

    def current(self) -> DayCounts:
        day = self.today()
        if day != self.counts.day:
            self.counts = DayCounts(day)
        return self.counts

    def call_ended(self, outcome: str) -> None:
        self.forward.call_ended(outcome)
        self.current().outcomes[outcome] += 1

    def call_entered(self, kind: str) -> None:
        """A call came in on a number of this kind (national, local, partner, ...)."""
        self.current().entries[kind] += 1

    def transferred(self, destination: str) -> None:
        """A configured destination answered a transfer or a volunteer's hand-over."""
        self.current().transfers[destination] += 1

    def invite_refused(self, reason: str) -> None:
        self.forward.invite_refused(reason)
        self.current().refused += 1

    def queue_overflowed(self, queue: str) -> None:
        self.forward.queue_overflowed(queue)
        self.current().queue(queue).overflowed += 1

    def caller_answered(self, queue: str, waited: float) -> None:
        self.forward.caller_answered(queue, waited)
        q = self.current().queue(queue)
        q.answered += 1
        q.answered_in_time += waited <= self.threshold

    def caller_abandoned(self, queue: str, waited: float) -> None:
        self.forward.caller_abandoned(queue, waited)
        self.current().queue(queue).abandoned += 1
