"""Metrics for ops: who is on shift per language and skill, each queue's opening hours and
staffing, and the calls recorded per entry kind and partner.

Every label comes from the dialplan in force (its languages, skills, queues, partners) or a
closed set (entry kinds): a volunteer's profile with a language the plan does not know is not
counted under a new label, so no one can grow the label set.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Counter

from ivr.model import Dialplan, NumberKind
from ivr.schedule import is_open
from pbx.call_records import CallRecord
from pbx.metrics import Metrics
from queues.roster import Roster, Volunteer

ENTRY_KINDS = frozenset(k.value for k in NumberKind) | {"unknown"}


def partner_numbers(plan: Dialplan) -> frozenset[str]:
    """The partners' own numbers, which a forwarding header may name."""
    return frozenset(n.number for n in plan.numbers.values() if n.kind is NumberKind.PARTNER)


class RecordMetrics:
    """Counts each arriving call by entry kind and partner (the call records' observer)."""

    def __init__(self, metrics: Metrics, plan: Callable[[], Dialplan]) -> None:
        r = metrics.registry
        self.plan = plan
        self.by_entry = Counter(
            "helpline_calls_by_entry", "Inbound calls that arrived, by the kind of number dialled",
            ["kind"], registry=r,
        )  # fmt: skip
        self.arrived = Counter(
            "helpline_calls_arrived", "Inbound calls that arrived (any number)", registry=r
        )
        self.partner_calls = Counter(
            "helpline_partner_calls", "Inbound calls counted for a partner (dialled or forwarded)",
            ["partner"], registry=r,
        )  # fmt: skip

    def started(self, record: CallRecord) -> None:
        self.arrived.inc()
        kind = record.entry_kind if record.entry_kind in ENTRY_KINDS else "unknown"
        self.by_entry.labels(kind=kind).inc()
        partners = {n.partner for n in self.plan().numbers.values() if n.partner}
        if record.partner is not None and record.partner in partners:
            self.partner_calls.labels(partner=record.partner).inc()


def watch_staffing(
    m: Metrics,
    roster: Roster,
    plan: Callable[[], Dialplan],
    records_open: Callable[[], int],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    def languages() -> tuple[str, ...]:
        return plan().languages

    def skills() -> set[str]:
        return {q.skill for q in plan().queues.values() if q.skill}

    m.live_by(
        "helpline_volunteers_on_shift_by_language", "Volunteers on shift who speak a language",
        "language",
        lambda: {lang: sum(1 for v in roster.volunteers() if v.on_shift and lang in v.languages)
                 for lang in languages()},
    )  # fmt: skip
    m.live_by(
        "helpline_volunteers_available_by_language", "Volunteers free for a call, by language",
        "language",
        lambda: {lang: sum(1 for v in roster.volunteers() if v.offerable and lang in v.languages)
                 for lang in languages()},
    )  # fmt: skip
    m.live_by(
        "helpline_volunteers_on_shift_by_skill", "Volunteers on shift with a skill the plan asks",
        "skill",
        lambda: {s: sum(1 for v in roster.volunteers() if v.on_shift and s in v.skills)
                 for s in skills()},
    )  # fmt: skip
    m.live_by(
        "helpline_volunteers_available_by_skill", "Volunteers free for a call, by skill",
        "skill",
        lambda: {s: sum(1 for v in roster.volunteers() if v.offerable and s in v.skills)
                 for s in skills()},
    )  # fmt: skip

    def queue_open() -> dict[str, float]:
        p, at = plan(), now()
        return {q.name: float(is_open(p.schedules[q.schedule], at)) for q in p.queues.values()}

    def on_shift() -> list[Volunteer]:
        return [v for v in roster.volunteers() if v.on_shift]

    def queue_staffed() -> dict[str, float]:
        p = plan()
        return {
            q.name: sum(1 for v in on_shift() if v.serves(q.language, q.skill))
            for q in p.queues.values()
        }

    m.live_by("helpline_queue_open", "1 while a queue's schedule is open", "queue", queue_open)
    m.live_by(
        "helpline_queue_volunteers_on_shift",
        "Volunteers on shift who speak the queue's language (and have its skill)",
        "queue", queue_staffed,
    )  # fmt: skip
    m.live("helpline_call_records_open", "Live calls whose record is being gathered", records_open)
