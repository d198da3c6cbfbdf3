"""Prometheus metrics. Labels are closed sets (method names, status classes, outcomes, queue and
language names from the dialplan): never a number, a username of a caller or a Call-ID."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pbx.sip.parser import KNOWN_METHODS


def method_label(method: str) -> str:
    """A closed label set: any method a peer invents is counted as "other"."""
    return method if method in KNOWN_METHODS else "other"


# doc, read (one value, or one per label value), counter?, label name
_Source = tuple[str, Callable[[], "float | Mapping[str, float]"], bool, str | None]


class _LiveReadings(Collector):
    """Gauges and counters read from live state at scrape time (no bookkeeping on the hot path)."""

    def __init__(self, sources: dict[str, _Source]) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        for name, (doc, read, is_counter, label) in self.sources.items():
            labels = [] if label is None else [label]
            family: GaugeMetricFamily | CounterMetricFamily = (
                CounterMetricFamily(name, doc, labels=labels)
                if is_counter
                else GaugeMetricFamily(name, doc, labels=labels)
            )
            try:
                value = read()
                if isinstance(value, Mapping):
                    for key, v in value.items():
                        family.add_metric([key], float(v))
                else:
                    family.add_metric([], float(value))
            except Exception:  # a scrape must never fail because one reading did
                continue
            yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sip_requests = Counter(
            "helpline_sip_requests_received", "SIP requests received", ["method"], registry=r
        )
        self.sip_responses = Counter(
            "helpline_sip_responses_sent", "SIP responses sent by status class", ["cls"], registry=r
        )
        self.invites_refused = Counter(
            "helpline_sip_invites_refused",
            "INVITEs refused before a call was placed",
            ["reason"],
            registry=r,
        )
        self.calls = Counter(
            "helpline_calls", "Inbound calls that ended, by outcome", ["outcome"], registry=r
        )
        self.registrations_changes = Counter(
            "helpline_registration_changes", "Registrar binding changes", ["change"], registry=r
        )
        self.queue_overflows = Counter(
            "helpline_queue_overflows",
            "Callers who waited a queue's maximum and went to its overflow",
            ["queue"],
            registry=r,
        )
        # waits in seconds, from 10 s to an hour (helplines measure service level at 30-60 s)
        waits = (10, 30, 60, 120, 300, 600, 900, 1800, 3600)
        self.answered_wait = Histogram(
            "helpline_queue_answered_wait_seconds",
            "How long callers waited in a queue before a volunteer answered",
            ["queue"],
            buckets=waits,
            registry=r,
        )
        self.abandoned_wait = Histogram(
            "helpline_queue_abandoned_wait_seconds",
            "How long callers waited in a queue before hanging up (abandoned calls)",
            ["queue"],
            buckets=waits,
            registry=r,
        )
        self.volunteer_events = Counter(
            "helpline_volunteer_events",
            "Volunteer shift state changes (login, pause, offer, missed, auto_paused, ...)",
            ["kind"],
            registry=r,
        )
        self.dialplan_reloads = Counter(
            "helpline_dialplan_reloads", "Dialplan reloads by result", ["result"], registry=r
        )
        self.build = Gauge("helpline_build_info", "Build information", ["version"], registry=r)
        self.build.labels(version="0.1.0").set(1)
        self._live: dict[str, _Source] = {}
        r.register(_LiveReadings(self._live))

    def live(self, name: str, doc: str, read: Callable[[], float], counter: bool = False) -> None:
        self._live[name] = (doc, read, counter, None)

    def live_by(
        self,
        name: str,
        doc: str,
        label: str,
        read: Callable[[], Mapping[str, float]],
        counter: bool = False,
    ) -> None:
        """A gauge (or counter) with one series per `label` value, read at scrape time."""
        self._live[name] = (doc, read, counter, label)
