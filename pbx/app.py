"""The composition root: builds every part of the service, bottom-up, with constructor arguments.

Order: observers (metrics) and in-memory state (directory, roster, restart state, persistence),
then the SIP stack, the registrar and the bookkeeping, the dispatcher and the plan in force, the
leg table, media and prompts, the call application, the switchboard (given that application),
and last the service that runs them all. Nothing is set on a part after it is built. Where two
parts need each other, the cycle is broken at one place and the comment there says why:
- stack and switchboard: the stack is built first and given its transaction user by `start`;
- registrar and bookkeeping: the registrar's change report names the bookkeeping built next;
- waiting room and IVR calls: the hand-over names the calls built next.
The call application and the switchboard need no such edge: both use the leg table below them.
"""

from __future__ import annotations

import secrets
import time

from pbx.anonymity import CallerHasher
from pbx.bookkeeping import Bookkeeping
from pbx.call_events import CallEvents
from pbx.call_records import CallRecords
from pbx.calls.direct import DirectRouter
from pbx.calls.handsets import Handsets
from pbx.calls.inbound import HelplineCalls
from pbx.calls.leg_table import LegTable
from pbx.calls.legs import InboundLeg
from pbx.calls.media_session import AnchoredMedia, MediaFactory, SrtpPolicy
from pbx.calls.ringing import Ringer, Whisper
from pbx.calls.shift import ShiftDesk, pin_lockout
from pbx.calls.waiting import WaitingRoom
from pbx.config import Settings
from pbx.db.persistence import Persistence
from pbx.directory import Directory
from pbx.drain import Drain
from pbx.media.filler import LineFiller
from pbx.media.ports import PortPool
from pbx.media.prompts import PromptLibrary
from pbx.media.srtp import SrtpMode, Suite
from pbx.metrics import Metrics, watch_media_protection, watch_service
from pbx.plan_in_force import PlanInForce
from pbx.restart_state import RestartState
from pbx.service import HelplineService
from pbx.sip.admission import Admission, AdmissionConfig
from pbx.sip.auth_guard import AuthGuard, LockoutPolicy
from pbx.sip.digest import Algorithm, NonceManager
from pbx.sip.keepalive import Keepalive
from pbx.sip.registrar import Binding, Change, Registrar, RegistrarConfig
from pbx.sip.stack import SipStack, Transports
from pbx.sip.timers import Timers
from pbx.sip.tls import client_context
from pbx.sip.transport import SipTransports, TransportLimits
from pbx.sip.trunk import TrunkPolicy
from pbx.staffing_metrics import RecordMetrics, partner_numbers, watch_staffing
from pbx.switchboard import CallApplication, Switchboard
from pbx.voicemail.desk import VoicemailDesk
from pbx.voicemail.notify import Notifier
from pbx.voicemail.store import VoicemailStore, parse_recipients
from queues.dispatcher import Dispatcher
from queues.roster import Roster


def build_service(settings: Settings, transports: Transports | None = None) -> HelplineService:
    """The service on `settings`; `transports`: what SIP goes over (default: the sockets)."""
    s = settings
    # --- observers and in-memory state -----------------------------------------------------------
    metrics = Metrics()
    events: CallEvents = metrics
    directory = Directory(s.state_dir)  # credentials and profiles (+ snapshots)
    roster = Roster(s.max_missed_offers, s.registration_grace)
    restart_state = RestartState(s.state_dir)
    persistence = Persistence(s.database_url, s.state_dir)  # opened by the service at start

    # --- SIP: transport and transactions, registrar ----------------------------------------------
    trunk = TrunkPolicy.build(s.trunk_sources, s.realm, s.trunk_credentials)
    admission = admission_for(s)
    if transports is None:
        transports = SipTransports(
            limits=TransportLimits(
                s.max_message_size, s.max_connections, s.connection_idle_timeout,
                s.unregistered_connection_timeout, s.tls_handshake_timeout,
            ),
            client_ssl=client_context(s.tls_ca_file) if s.tls_port is not None else None,
            observe=metrics.sip_message, admission=admission,
        )  # fmt: skip
    stack = SipStack(
        transports,
        max_transactions=s.max_transactions,
        public_host=s.public_host,
        timers=Timers(t1=s.sip_t1, t2=s.sip_t2, invite_answer_limit=s.sip_invite_answer_limit),
        admission=admission,
        trunk_reserved_transactions=s.trunk_reserved_transactions,
    )  # fmt: skip
    algorithms = tuple(Algorithm.parse(a) for a in s.digest_algorithms)
    nonces = NonceManager(secrets.token_bytes(32), lifetime=s.nonce_lifetime)

    # Cycle: the bookkeeping asks the registrar whether a volunteer still has a ringable
    # handset when the registrar reports a change. The registrar's report is the edge bound
    # late: it names `bookkeeping`, built just below, before any REGISTER can arrive.
    def binding_changed(change: Change, binding: Binding) -> None:
        bookkeeping.binding_changed(change, binding)

    registrar = Registrar(
        RegistrarConfig(
            realm=s.realm,
            min_expires=s.registration_min_expires,
            max_expires=s.registration_max_expires,
            default_expires=s.registration_default_expires,
            keepalive_max_misses=s.keepalive_max_misses,
        ),
        credentials=directory.credentials,  # the directory keeps this dict current
        guard=AuthGuard(s.realm, nonces, algorithms, _lockout_policy(s)),
        on_change=binding_changed,
    )
    bookkeeping = Bookkeeping(registrar, roster, persistence, restart_state, metrics)
    keepalive = Keepalive(stack, registrar, s.keepalive_interval)
    dispatcher = Dispatcher(roster, on_change=bookkeeping.roster_changed)
    prompts = PromptLibrary(s.recordings)
    plans = PlanInForce(s, prompts, dispatcher, metrics)  # checks the plan's prompts against them
    voicemail = VoicemailDesk(
        VoicemailStore(s.state_dir / "voicemail", parse_recipients(s.voicemail_recipients)),
        s.voicemail_retention, notifier=Notifier(s.voicemail_notify),
        on_received=metrics.voicemail_received,
    )  # fmt: skip

    # --- calls -----------------------------------------------------------------------------------
    record_metrics = RecordMetrics(metrics, plans.current)
    records = CallRecords(submit=persistence.submit, on_started=record_metrics.started)
    legs = LegTable(stack)  # the live call legs: the switchboard's and the call flows'
    drain = Drain(
        legs.live, dispatcher, s.drain_timeout,
        overflow_waiting=s.drain_waiting == "overflow", retry_after=s.drain_retry_after,
    )  # fmt: skip
    rtp_host = s.sip_host if s.sip_host not in ("", "::") else "0.0.0.0"
    media = MediaFactory(
        PortPool(rtp_host, s.rtp_port_min, s.rtp_port_max), s.public_host, s.media_timeout,
        LineFiller(), srtp_policy(s),
    )  # fmt: skip
    whisper = Whisper(prompts.get("nl", s.volunteer_whisper) if s.volunteer_whisper else b"")
    handsets = Handsets(registrar, s.public_host)
    ringer = Ringer(legs)
    router = DirectRouter(
        handsets, ringer, media, whisper, on_outcome=events.call_ended, records=records,
        plan=lambda: plans.plan,
    )  # fmt: skip
    app: CallApplication = router
    if s.call_flow == "ivr":
        # with the IVR, volunteers take calls only while logged in to a shift from the handset
        shift_desk = ShiftDesk(
            roster, media, prompts, directory.current_profiles, time.time,
            on_change=dispatcher.kick,
            pins=pin_lockout(s.pin_failures, s.pin_lockout, s.pin_lockout_max),
        )  # fmt: skip

        # Cycle: the waiting room hands a caller over (*9) through the IVR calls, which send
        # callers to the waiting room; the hand-over is the edge bound late, naming `calls`.
        async def hand_over(leg: InboundLeg, media: AnchoredMedia, language: str) -> bool:
            return await calls.hand_over(leg, media, language)

        waiting = WaitingRoom(
            dispatcher, handsets, media, ringer, prompts, whisper,
            comfort_interval=s.comfort_interval,
            ringback=s.ringback_while_ringing, on_abandon=events.caller_abandoned,
            on_answer=events.caller_answered, handover_keys=s.backline_keys, hand_over=hand_over,
            records=records,
        )  # fmt: skip
        calls = HelplineCalls(
            ringer, waiting, media, prompts, plans.current, voicemail,
            on_outcome=events.call_ended, on_overflow=events.queue_overflowed,
            shift_desk=shift_desk, backline=s.backline_destination, records=records,
        )  # fmt: skip
        app = calls
    switchboard = Switchboard(
        stack, registrar, trunk, app, max_dialogs=s.max_dialogs,
        trunk_reserved_dialogs=s.trunk_reserved_dialogs, refusing=drain.refusing,
        on_refused=events.invite_refused, table=legs,
        on_refused_call=lambda dialed: records.refused(dialed, plans.plan),
        hasher=CallerHasher(forwarders=lambda: partner_numbers(plans.current())),
    )  # fmt: skip

    watch_service(
        metrics, stack=stack, registrar=registrar, roster=roster, dispatcher=dispatcher,
        legs=legs.live, admission=admission, writes_pending=lambda: persistence.pending,
        rtp_strays=lambda: media.strays,
    )  # fmt: skip
    watch_staffing(metrics, roster, plans.current, lambda: records.open_count)
    watch_media_protection(metrics, media.legs_by_protection, lambda: media.srtp_auth_failures)
    return HelplineService(
        settings=s, metrics=metrics, plans=plans, directory=directory, persistence=persistence,
        restart_state=restart_state, bookkeeping=bookkeeping, roster=roster,
        dispatcher=dispatcher, registrar=registrar, trunk=trunk, admission=admission,
        stack=stack, switchboard=switchboard, keepalive=keepalive, drain=drain,
        voicemail=voicemail, records=records,
    )  # fmt: skip


def srtp_policy(s: Settings) -> SrtpPolicy:
    per_volunteer = {name: SrtpMode(mode) for name, mode in s.srtp_volunteers.items()}
    return SrtpPolicy(
        SrtpMode(s.srtp), tuple(Suite.parse(n) for n in s.srtp_suites), per_volunteer.get
    )


def _lockout_policy(s: Settings) -> LockoutPolicy:
    return LockoutPolicy(
        source_failures=s.auth_source_failures,
        user_failures=s.auth_user_failures,
        backoff=s.auth_lockout,
        max_backoff=s.auth_lockout_max,
    )


def admission_for(s: Settings) -> Admission:
    return Admission(
        AdmissionConfig(
            requests_per_second=s.admission_requests_per_second,
            request_burst=s.admission_request_burst,
            bytes_per_second=s.admission_bytes_per_second,
            byte_burst=s.admission_byte_burst,
            ban_seconds=s.ban_seconds,
            ban_max_seconds=s.ban_max_seconds,
            max_connections_per_source=s.max_connections_per_source,
        ),
        exempt=s.trunk_sources,
    )
