"""Today's counts behind the wallboard: passed on to the metrics, service level, a new day."""

from __future__ import annotations

from datetime import date

from pbx.metrics import Metrics
from pbx.web.tally import DayTally


def test_counts_pass_through_and_start_again_each_day() -> None:
    metrics = Metrics()
    day = [date(2026, 11, 26)]
    tally = DayTally(metrics, threshold=30, today=lambda: day[0])
    tally.call_entered("national")
    tally.caller_answered("dutch", 12.0)  # in time
    tally.caller_answered("dutch", 45.0)  # late
    tally.caller_abandoned("dutch", 70.0)
    tally.call_ended("answered")
    tally.transferred("backline_113")
    counts = tally.current()
    assert counts.queues["dutch"].service_level == 1 / 3
    assert counts.entries["national"] == 1 and counts.transfers["backline_113"] == 1
    registry = metrics.registry
    assert registry.get_sample_value("helpline_calls_total", {"outcome": "answered"}) == 1
    assert registry.get_sample_value(
        "helpline_queue_answered_wait_seconds_count", {"queue": "dutch"}
    ) == 2  # fmt: skip
    day[0] = date(2026, 11, 27)
    assert tally.current().outcomes == {} and tally.current().queues == {}
    assert registry.get_sample_value("helpline_calls_total", {"outcome": "answered"}) == 1
