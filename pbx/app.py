"""The composition root: builds every part of the service, bottom-up, with constructor arguments.

Order: observers (metrics) and in-memory state (directory, roster, restart state, persistence),
then the SIP stack, the registrar and the bookkeeping, the dispatcher and the plan in force, the
leg table, media and prompts, the call application, the switchboard (given that application),
and last the service that runs them all. Nothing is set on a part after it is built. Where two
parts need each other, the cycle is broken at one place and the comment there says why:
- stack and switchboard: the stack is built first and given its transaction user by `start`;
- registrar and bookkeeping: the registrar's change report names the bookkeeping built next;
- waiting room and IVR calls: the hand-over names the calls built next;
- dispatcher and active/standby: the dispatcher offers calls only while this node leads, and
  the takeover re-reads the queues' wrap-ups from it: its `offering` names `ha`, built later.
The call application and the switchboard need no such edge: both use the leg table below them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from pbx.anonymity import CallerHasher
from pbx.bookkeeping import Bookkeeping
from pbx.call_events import CallEvents
from pbx.call_records import CallRecords
from pbx.calls.bridging import HandoverRequest
from pbx.calls.colleagues import ColleagueQueues
from pbx.calls.consult_calls import ConsultCalls
from pbx.calls.consultation import Consultation, InCall
from pbx.calls.direct import DirectRouter
from pbx.calls.handover import State
from pbx.calls.handsets import Handsets
from pbx.calls.inbound import HelplineCalls, resolve_destination
from pbx.calls.leg_table import LegTable
from pbx.calls.media_session import MediaFactory, SrtpPolicy
from pbx.calls.ringing import Ringer, Whisper
from pbx.calls.shift import ShiftDesk, pin_lockout
from pbx.calls.transfers import VolunteerTransfers
from pbx.calls.waiting import WaitingRoom
from pbx.config import Settings
from pbx.db.persistence import Persistence
from pbx.directory import Directory
from pbx.drain import Drain
from pbx.ha import HighAvailability, node_name
from pbx.leadership import Lease, LeaseTiming
from pbx.media.filler import LineFiller
from pbx.media.moh import MusicOnHold
from pbx.media.ports import PortPool
from pbx.media.prompts import PromptLibrary, read_telephony_wav
from pbx.media.srtp import SrtpMode, Suite
from pbx.metrics import Metrics, watch_media_protection, watch_service
from pbx.plan_in_force import PlanInForce
from pbx.restart_state import RestartState
from pbx.service import HelplineService
from pbx.sip.admission import Admission, AdmissionConfig
from pbx.sip.auth_guard import AuthGuard, LockoutPolicy
from pbx.sip.client_auth import ClientCredentials
from pbx.sip.digest import Algorithm, NonceManager
from pbx.sip.edge import EdgeProxies
from pbx.sip.keepalive import Keepalive
from pbx.sip.registrar import Binding, Change, Registrar, RegistrarConfig
from pbx.sip.stack import SipStack, Transports
from pbx.sip.timers import Timers
from pbx.sip.tls import client_context
from pbx.sip.transport import SipTransports, TransportLimits
from pbx.sip.trunk import TrunkPolicy
from pbx.staffing_metrics import RecordMetrics, partner_numbers, watch_staffing
from pbx.switchboard import CallApplication, Switchboard
from pbx.takeover import LeaderWork, ShiftWriters, Takeover
from pbx.voicemail.desk import VoicemailDesk
from pbx.voicemail.notify import Notifier
from pbx.voicemail.store import VoicemailStore, parse_recipients
from pbx.web.build import build_web
from pbx.web.tally import DayTally
from queues.dispatcher import Dispatcher
from queues.roster import Roster


def build_service(settings: Settings, transports: Transports | None = None) -> HelplineService:
    """The service on `settings`; `transports`: what SIP goes over (default: the sockets)."""
    s = settings
    # --- observers and in-memory state -----------------------------------------------------------
    metrics = Metrics()
    tally = DayTally(metrics, s.service_level_seconds)  # today's counts for the wallboard
    events: CallEvents = tally
    directory = Directory(s.state_dir)  # credentials and profiles (+ snapshots)
    roster = Roster(s.max_missed_offers, s.registration_grace)
    restart_state = RestartState(s.state_dir)
    persistence = Persistence(s.database_url, s.state_dir)  # opened by the service at start
    # active/standby (pbx/ha.py): nodes sharing one external database take a lease in it
    lease = (
        Lease(LeaseTiming(s.ha_retry_interval, s.ha_check_interval, s.ha_check_timeout),
              time.monotonic())
        if s.ha_lease and s.database_url is not None else None
    )  # fmt: skip
    writers = ShiftWriters(lease)  # which shifts this node writes (with a lease: not all)

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
    bookkeeping = Bookkeeping(
        registrar, roster, persistence, restart_state, metrics, writes=writers.to_write
    )
    keepalive = Keepalive(stack, registrar, s.keepalive_interval)
    leader_work = LeaderWork(registrar, keepalive)  # run by the service, or by the takeover
    dispatcher = Dispatcher(
        roster, on_change=bookkeeping.roster_changed,
        offering=lambda: ha is None or ha.serving,  # the cycle's late edge: `ha` is built below
    )  # fmt: skip
    prompts = PromptLibrary(s.recordings)
    plans = PlanInForce(s, prompts, dispatcher, metrics)  # checks the plan's prompts against them
    voicemail = VoicemailDesk(
        VoicemailStore(s.state_dir / "voicemail", parse_recipients(s.voicemail_recipients)),
        s.voicemail_retention, notifier=Notifier(s.voicemail_notify),
        on_received=metrics.voicemail_received,
    )  # fmt: skip
    ha: HighAvailability | None = None
    if lease is not None:
        assert s.database_url is not None
        node = node_name(s.node_name)
        takeover = Takeover(
            node=node, lease=lease, writers=writers, roster=roster, registrar=registrar,
            directory=directory, persistence=persistence, bookkeeping=bookkeeping,
            dispatcher=dispatcher, trunk=trunk, leader_work=leader_work, metrics=metrics,
        )  # fmt: skip
        ha = HighAvailability(
            s.database_url, node, lease, s.ha_refresh_interval, take_over=takeover.take_over,
            stand_down=takeover.stand_down, refresh=takeover.refresh, metrics=metrics,
        )  # fmt: skip

    # --- calls -----------------------------------------------------------------------------------
    record_metrics = RecordMetrics(metrics, plans.current)
    records = CallRecords(submit=persistence.submit, on_started=record_metrics.started)
    legs = LegTable(stack)  # the live call legs: the switchboard's and the call flows'
    drain = Drain(
        legs.live, dispatcher, s.drain_timeout,
        # with a lease, callers waiting here go to the overflow: the standby leads now
        overflow_waiting=s.drain_waiting == "overflow" or ha is not None,
        retry_after=s.drain_retry_after,
        # a planned stop hands the lease over: the standby takes new calls while this node
        # finishes its own (its volunteers stay busy there until their calls end here)
        on_start=ha.retire if ha is not None else lambda: None,
    )  # fmt: skip
    rtp_host = s.sip_host if s.sip_host not in ("", "::") else "0.0.0.0"
    media = MediaFactory(
        PortPool(rtp_host, s.rtp_port_min, s.rtp_port_max), s.public_host, s.media_timeout,
        LineFiller(), srtp_policy(s),
    )  # fmt: skip
    whisper = Whisper(prompts.get("nl", s.volunteer_whisper) if s.volunteer_whisper else b"")
    music = hold_music(s)  # one shared stream for every caller on hold (waiting, hand-over)
    handsets = Handsets(registrar, s.public_host)
    outbound_auth = None
    if s.outbound_auth_user:
        outbound_auth = ClientCredentials(s.outbound_auth_user, s.outbound_auth_password)
    ringer = Ringer(legs, auth=outbound_auth)
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
        async def hand_over(
            call: InCall, asked: HandoverRequest, language: str, free: Callable[[], None]
        ) -> State:
            return await calls.hand_over(call, asked, language, free)

        transfers = VolunteerTransfers(plans.current, s.backline_destination, s.backline_keys)
        consult_calls = ConsultCalls(
            ringer, media, transfers, resolve_destination, s.handover_ring_timeout
        )

        waiting = WaitingRoom(
            dispatcher, handsets, media, ringer, prompts, whisper,
            comfort_interval=s.comfort_interval,
            ringback=s.ringback_while_ringing, on_abandon=events.caller_abandoned,
            on_answer=events.caller_answered, hand_over=hand_over, transfers=transfers,
            replaced=consult_calls.replaced, records=records, music=music,
        )  # fmt: skip
        consultation = None if s.handover_mode == "blind" else Consultation(
            ringer, media, prompts, music,  # the same track as waiting callers
            s.handover_complete_keys, s.handover_cancel_keys, s.handover_ring_timeout,
        )  # fmt: skip
        colleagues = ColleagueQueues(
            dispatcher, handsets, media, prompts, consultation, directory.current_profiles
        )
        calls = HelplineCalls(
            ringer, waiting, media, prompts, plans.current, voicemail,
            on_outcome=events.call_ended, on_overflow=events.queue_overflowed,
            on_entry=tally.call_entered, on_transfer=tally.transferred,
            shift_desk=shift_desk, backline=s.backline_destination, records=records,
            consultation=consultation, consult_calls=consult_calls, colleagues=colleagues,
            on_volunteer_transfer=metrics.volunteer_transfer,
        )  # fmt: skip
        app = calls
    switchboard = Switchboard(
        stack, registrar, trunk, app, max_dialogs=s.max_dialogs,
        trunk_reserved_dialogs=s.trunk_reserved_dialogs, refusing=drain.refusing,
        on_refused=events.invite_refused, table=legs,
        on_refused_call=lambda dialed: records.refused(dialed, plans.plan),
        hasher=CallerHasher(forwarders=lambda: partner_numbers(plans.current())),
        standby=ha.refusing if ha is not None else lambda: None,
        edge=EdgeProxies.build(s.edge_proxies, admission),  # none: strips their headers
    )  # fmt: skip

    watch_service(
        metrics, stack=stack, registrar=registrar, roster=roster, dispatcher=dispatcher,
        legs=legs.live, admission=admission, writes_pending=lambda: persistence.pending,
        rtp_strays=lambda: media.strays,
    )  # fmt: skip
    watch_staffing(metrics, roster, plans.current, lambda: records.open_count)
    watch_media_protection(metrics, media.legs_by_protection, lambda: media.srtp_auth_failures)
    web = build_web(
        s, roster=roster, dispatcher=dispatcher, registrar=registrar, directory=directory,
        persistence=persistence, plans=plans, tally=tally,
    )  # fmt: skip
    return HelplineService(
        settings=s, metrics=metrics, plans=plans, directory=directory, persistence=persistence,
        restart_state=restart_state, bookkeeping=bookkeeping, roster=roster,
        dispatcher=dispatcher, registrar=registrar, trunk=trunk, admission=admission,
        stack=stack, switchboard=switchboard, drain=drain, leader_work=leader_work, ha=ha,
        voicemail=voicemail, web=web, records=records,
    )  # fmt: skip


def srtp_policy(s: Settings) -> SrtpPolicy:
    per_volunteer = {name: SrtpMode(mode) for name, mode in s.srtp_volunteers.items()}
    return SrtpPolicy(
        SrtpMode(s.srtp), tuple(Suite.parse(n) for n in s.srtp_suites), per_volunteer.get
    )


def hold_music(s: Settings) -> MusicOnHold | None:
    """The music callers on hold hear (`hold_music`): waiting callers between messages, and a
    caller on hold while the volunteer consults; None for none (comfort noise)."""
    if not s.hold_music:
        return None
    path = s.recordings / s.hold_music  # an absolute `hold_music` stays as it is
    try:
        return MusicOnHold("hold", read_telephony_wav(path))
    except FileNotFoundError as exc:
        raise ValueError(f'hold_music: {path} not found (set hold_music = "" for none)') from exc


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
        exempt=[*s.trunk_sources, *s.edge_proxies],  # an edge's senders are limited in edge.py
    )
