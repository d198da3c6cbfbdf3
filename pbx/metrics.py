"""Prometheus metrics. Labels are closed sets (method names, status classes, outcomes, queue and
language names from the dialplan): never a number, a username of a caller or a Call-ID."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sized
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pbx.sip.admission import DROP_REASONS
from pbx.sip.message import Message, Request, Response
from pbx.sip.parser import KNOWN_METHODS

if TYPE_CHECKING:
    from pbx.sip.admission import Admission
    from pbx.sip.registrar import Registrar
    from pbx.sip.stack import SipStack
    from queues.dispatcher import Dispatcher
    from queues.roster import Roster


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
    """The service's Prometheus registry; also the call-events observer (`CallEvents`) and the
    transports' message observer."""

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
        self.volunteer_transfers = Counter(
            "helpline_volunteer_transfers",
            "Volunteers' transfers of a caller, by destination kind (backline, destination, "
            "queue: a colleague's) and how they ended (completed, returned, failed, "
            "caller_left, queued: waits in the colleague's queue)",
            ["kind", "result"],
            registry=r,
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
        self.voicemail_messages = Counter(
            "helpline_voicemail_messages",
            "Voicemail messages received (kept encrypted), by line (the dialplan's mailbox)",
            ["line"],
            registry=r,
        )
        self.build = Gauge("helpline_build_info", "Build information", ["version"], registry=r)
        self.build.labels(version="0.1.0").set(1)
        self._live: dict[str, _Source] = {}
        self._by_method: dict[str, Counter] = {}  # series of sip_requests per known method
        self._by_class: dict[int, Counter] = {}  # series of sip_responses per status class
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

    # --- CallEvents (pbx.call_events) --------------------------------------------------------
    def call_ended(self, outcome: str) -> None:
        self.calls.labels(outcome=outcome).inc()

    def invite_refused(self, reason: str) -> None:
        self.invites_refused.labels(reason=reason).inc()

    def queue_overflowed(self, queue: str) -> None:
        self.queue_overflows.labels(queue=queue).inc()

    def volunteer_transfer(self, kind: str, result: str) -> None:
        self.volunteer_transfers.labels(kind=kind, result=result).inc()

    def caller_answered(self, queue: str, waited: float) -> None:
        self.answered_wait.labels(queue=queue).observe(waited)

    def caller_abandoned(self, queue: str, waited: float) -> None:
        self.abandoned_wait.labels(queue=queue).observe(waited)

    def voicemail_received(self, line: str) -> None:
        self.voicemail_messages.labels(line=line).inc()

    # --- SIP traffic (the transports' observer) ------------------------------------------------
    def sip_message(self, direction: str, message: Message) -> None:
        # Runs for every message: each series is looked up once (labels() takes a lock and
        # validates the labels each time); both label sets are closed, so the caches are bounded.
        if direction == "in" and isinstance(message, Request):
            method = message.method
            counter = self._by_method.get(method)
            if counter is None:
                label = method_label(method)
                counter = self.sip_requests.labels(method=label)
                if label != "other":  # an invented method is not a key: the cache stays bounded
                    self._by_method[method] = counter
            counter.inc()
        elif direction == "out" and isinstance(message, Response):
            cls = message.status // 100
            counter = self._by_class.get(cls)
            if counter is None:
                counter = self._by_class[cls] = self.sip_responses.labels(cls=f"{cls}xx")
            counter.inc()


def watch_service(
    m: Metrics,
    *,
    stack: SipStack,
    registrar: Registrar,
    roster: Roster,
    dispatcher: Dispatcher,
    legs: Sized,
    admission: Admission,
    writes_pending: Callable[[], int],
    rtp_strays: Callable[[], int],
) -> None:
    """The gauges and counters read from the running service's parts at scrape time."""
    m.live("helpline_sip_transactions", "Live SIP transactions", lambda: len(stack.layer))
    m.live(
        "helpline_volunteers_on_shift",
        "Volunteers logged in and reachable (available, busy or in wrap-up)",
        lambda: sum(1 for v in roster.volunteers() if v.on_shift),
    )
    m.live(
        "helpline_volunteers_available",
        "Volunteers waiting for a call",
        lambda: sum(1 for v in roster.volunteers() if v.offerable),
    )
    m.live_by(
        "helpline_queue_waiting", "Callers waiting in each queue", "queue",
        lambda: {q: dispatcher.waiting(q) for q in dispatcher.queues},
    )  # fmt: skip
    m.live_by(
        "helpline_queue_longest_wait_seconds", "How long each queue's first caller has waited",
        "queue", lambda: {q: dispatcher.longest_wait(q, time.time()) for q in dispatcher.queues},
    )  # fmt: skip
    m.live("helpline_sip_dialog_legs", "Live call legs", lambda: len(legs))
    m.live(
        "helpline_sip_connections",
        "Open TCP/TLS connections",
        lambda: stack.transports.connection_count,
    )
    m.live(
        "helpline_registered_handsets",
        "Live registrar bindings",
        lambda: sum(len(b) for b in registrar.bindings.values()),
    )
    m.live(
        "helpline_sip_malformed_messages",
        "Malformed SIP messages received",
        lambda: stack.transports.stats.malformed,
        counter=True,
    )
    # the event loop's clock (monotonic), read from the scraping thread
    m.live(
        "helpline_sip_banned_sources",
        "Source addresses banned now for flooding",
        lambda: admission.banned_count(time.monotonic()),
    )
    m.live(
        "helpline_sip_bans", "Bans imposed on flooding sources", lambda: admission.stats.bans,
        counter=True,
    )  # fmt: skip
    m.live_by(
        "helpline_sip_dropped", "Packets, chunks and connections dropped before parsing",
        "reason", lambda: {r: admission.stats.dropped[r] for r in DROP_REASONS}, counter=True,
    )  # fmt: skip
    m.live(
        "helpline_sip_request_failures",
        "Requests whose handling raised (answered 500/400 by the stack, logged)",
        lambda: stack.request_failures,
        counter=True,
    )
    m.live(
        "helpline_sip_requests_malformed_late",
        "Requests answered 400 because a header read after parsing was not valid SIP",
        lambda: stack.requests_malformed,
        counter=True,
    )
    m.live(
        "helpline_sip_failure_answers",
        "Requests answered 500/400 because the code handling them failed before answering",
        lambda: stack.unanswered_failures,
        counter=True,
    )
    m.live(
        "helpline_sip_transactions_abandoned",
        "Server transactions never answered in time, answered 500 by the transaction layer",
        lambda: stack.layer.stats.abandoned,
        counter=True,
    )
    m.live(
        "helpline_db_writes_pending",
        "Records waiting to be written to the database",
        writes_pending,
    )
    m.live(
        "helpline_rtp_stray_packets", "RTP packets dropped: not from the call's signalled peer",
        rtp_strays, counter=True,
    )  # fmt: skip


def watch_media_protection(
    m: Metrics,
    legs_by_protection: Callable[[], Mapping[str, float]],
    auth_failures: Callable[[], int],
) -> None:
    """Media legs by protection (plain RTP or SRTP) and SRTP packets failing authentication."""
    m.live_by(
        "helpline_media_legs", "Live media legs by protection", "protection", legs_by_protection
    )
    m.live(
        "helpline_srtp_auth_failures",
        "SRTP/SRTCP packets dropped for failing authentication (tampered or forged)",
        auth_failures,
        counter=True,
    )
