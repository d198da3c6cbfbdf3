"""The running service: wires settings, persistence, the SIP stack, the switchboard and metrics.

Start-up order matters for the "live calls never depend on the database" rule: credentials and
registrations are loaded into memory once (from the database, or from the last snapshot when the
database is unreachable); from then on the database is only written behind and re-read.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import structlog

from ivr.loader import DialplanError, load_dialplan
from ivr.model import Dialplan
from pbx.calls.dispatcher import Dispatcher
from pbx.config import Settings
from pbx.db.database import Database, open_database
from pbx.db.events import event_op
from pbx.db.lease import draining_nodes
from pbx.db.registrations import RegistrationRepository, StoredBinding, delete_op, save_op
from pbx.db.shifts import ShiftRepository, StoredShift
from pbx.db.shifts import save_op as shift_save_op
from pbx.db.volunteers import Profile, VolunteerRepository
from pbx.db.writebehind import WriteBehind
from pbx.drain import Drain, Readiness
from pbx.ha import HighAvailability, node_name
from pbx.health import start_health_server
from pbx.leadership import LeaseTiming
from pbx.metrics import Metrics, method_label
from pbx.private_files import private_dir, write_private
from pbx.restart_state import RestartState
from pbx.sip.admission import DROP_REASONS, Admission, AdmissionConfig
from pbx.sip.auth_guard import AuthGuard, LockoutPolicy
from pbx.sip.digest import Algorithm, Credential, NonceManager
from pbx.sip.keepalive import Keepalive
from pbx.sip.message import Message, Request, Response
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.registrar import Binding, Change, Registrar, RegistrarConfig
from pbx.sip.stack import SipStack
from pbx.sip.timers import Timers
from pbx.sip.tls import client_context, ensure_self_signed, server_context
from pbx.sip.transport import TransportLimits
from pbx.sip.trunk import TrunkPolicy
from pbx.sip.uri import parse_sip_uri
from pbx.switchboard import CallApplication, Switchboard
from pbx.takeover import IN_A_CALL, adopt, settle
from queues.roster import Roster, Volunteer, VolunteerState

log = structlog.get_logger("pbx.service")

CREDENTIALS_SNAPSHOT = "credentials.snapshot.json"
LOGOUT_NOW = (VolunteerState.AVAILABLE, VolunteerState.WRAP_UP, VolunteerState.PAUSED)
PROFILES_SNAPSHOT = "profiles.snapshot.json"  # languages, skills, region, PIN hash
REFRESH_SECONDS = 15.0
GONE = (Change.EXPIRED, Change.REMOVED, Change.LOST, Change.UNREACHABLE)  # a handset went
BACK = (Change.ADDED, Change.REFRESHED, Change.REACHABLE)  # a handset is there (again)
EXPIRY_SWEEP_SECONDS = 2.0


@dataclass
class HelplineService:
    settings: Settings
    app: CallApplication | None = None
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        self.plan: Dialplan | None = None  # the live dialplan; a call keeps the one it began with
        self.roster = Roster(  # volunteers' shift states, in memory
            self.settings.max_missed_offers, self.settings.registration_grace
        )
        self._leader_tasks: list[asyncio.Task[None]] = []  # expiry sweep, keepalive
        # the shared database's shifts and registrations as last read (None: not yet)
        self._shared_state: tuple[list[StoredShift], list[StoredBinding]] | None = None
        self._elsewhere: set[str] = set()  # in a call on a node that drains (pbx/takeover.py)
        self._carried: set[str] = set()  # in a call here when this node stood down
        self.ha = self._high_availability()  # None: one node, it always leads
        self.dispatcher = Dispatcher(
            self.roster, on_change=self.drain_roster_events, offering=self._leading
        )
        self.profiles: dict[str, Profile] = {}  # languages, skills, region, PIN hash
        self.db: Database | None = None
        self.writer: WriteBehind | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_server: WSGIServer | None = None
        self.stopped = asyncio.Event()
        s = self.settings
        self.restart_state = RestartState(s.state_dir)  # shifts and bindings across a restart
        self._bindings_dirty = False
        self._bindings_write: asyncio.Task[None] | None = None  # snapshot being written
        algorithms = tuple(Algorithm.parse(a) for a in s.digest_algorithms)
        self.nonces = NonceManager(secrets.token_bytes(32), lifetime=s.nonce_lifetime)
        self.registrar = Registrar(
            RegistrarConfig(
                realm=s.realm,
                min_expires=s.registration_min_expires,
                max_expires=s.registration_max_expires,
                default_expires=s.registration_default_expires,
                keepalive_max_misses=s.keepalive_max_misses,
            ),
            credentials={},
            guard=AuthGuard(s.realm, self.nonces, algorithms, _lockout_policy(s)),
            on_change=self._binding_changed,
        )
        self.trunk = TrunkPolicy.build(s.trunk_sources, s.realm, s.trunk_credentials)
        self.admission = admission_for(s)
        self.stack = SipStack(
            on_request=lambda incoming: None,
            limits=TransportLimits(
                s.max_message_size, s.max_connections, s.connection_idle_timeout,
                s.unregistered_connection_timeout, s.tls_handshake_timeout,
            ),
            max_transactions=s.max_transactions,
            public_host=s.public_host,
            timers=Timers(
                t1=s.sip_t1, t2=s.sip_t2, invite_answer_limit=s.sip_invite_answer_limit
            ),
            admission=self.admission,
            trunk_reserved_transactions=s.trunk_reserved_transactions,
        )  # fmt: skip
        self.stack.transports.observe = self._observe
        self.keepalive = Keepalive(self.stack, self.registrar, s.keepalive_interval)
        self.switchboard = Switchboard(
            self.stack, self.registrar, self.trunk, self.app, max_dialogs=s.max_dialogs,
            trunk_reserved_dialogs=s.trunk_reserved_dialogs,
            refusing=lambda: self.drain.refusing(),
            standby=lambda: None if self.ha is None else self.ha.refusing(),
        )  # fmt: skip
        self.drain = Drain(
            self.switchboard.legs, self.dispatcher, s.drain_timeout,
            # with a lease, callers waiting here go to the overflow: the standby leads now
            overflow_waiting=s.drain_waiting == "overflow" or s.ha_lease,
            retry_after=s.drain_retry_after, on_start=self._draining,
        )  # fmt: skip

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start serving; raises DialplanError (with every problem) for an invalid plan."""
        s = self.settings
        self.plan = load_dialplan(s.dialplan)  # before anything else: refuse a bad plan
        raise_open_files_limit()
        self.dispatcher.configure(self.plan.queues)
        private_dir(s.state_dir)
        write_private(self.pid_file, str(os.getpid()))
        if s.metrics_port is not None:  # early, so that /ready says "starting" meanwhile
            self._metrics_server = start_health_server(
                s.metrics_port, s.metrics_host, self.metrics.registry, self.readiness
            )
        await self._open_database()
        tls_ctx = None
        if s.tls_port is not None:
            cert, key = (s.tls_cert, s.tls_key)
            if cert is None or key is None:
                cert, key = ensure_self_signed(s.state_dir / "tls", s.public_host)
            tls_ctx = server_context(cert, key)
            self.stack.transports.client_ssl = client_context()
        await self.stack.start(s.sip_host, s.sip_port, s.tls_port, tls_ctx)
        self._register_gauges()
        self._tasks = [
            asyncio.create_task(self._refresh_credentials()),
            asyncio.create_task(self.dispatcher.run()),
        ]
        if self.ha is None:
            self._start_leader_tasks()
        else:  # standby until the lease is ours (pbx/ha.py)
            self._tasks.append(asyncio.create_task(self.ha.run()))
        log.info(
            "service_started",
            sip=f"{s.sip_host}:{self.stack.port(TransportKind.UDP)}",
            tls_port=s.tls_port,
            metrics_port=s.metrics_port,
            database="embedded" if s.database_url is None else "external",
            volunteers=len(self.registrar.credentials),
            bindings=sum(len(b) for b in self.registrar.bindings.values()),
        )
        self.drain.state = Readiness.SERVING

    async def stop(self) -> None:
        if self.ha is not None:
            if self.writer is not None:  # the ends of calls carried here, before the lease goes
                await self.writer.flush(2.0)
            self.ha.stop()  # give the lease up first: the standby takes over at once
        for task in self._tasks + self._leader_tasks:
            task.cancel()
        await self.stack.close()
        if self._bindings_write is not None:
            await asyncio.gather(self._bindings_write, return_exceptions=True)
        if self.writer is not None:
            await self.writer.close(timeout=5.0)
        if self.db is not None:
            await self.db.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        self.pid_file.unlink(missing_ok=True)
        self.stopped.set()
        log.info("service_stopped")

    def readiness(self) -> tuple[bool, str]:
        """For /ready: take new calls here?"""
        if self.drain.state is Readiness.SERVING and not self._leading():
            return False, "standby"
        return self.drain.state is Readiness.SERVING, self.drain.state.value

    # --- active/standby (pbx/ha.py) ---------------------------------------------------------
    def _high_availability(self) -> HighAvailability | None:
        s = self.settings
        if not s.ha_lease or s.database_url is None:
            return None
        timing = LeaseTiming(s.ha_retry_interval, s.ha_check_interval, s.ha_check_timeout)
        return HighAvailability(
            s.database_url, node_name(s.node_name), timing, s.ha_refresh_interval,
            take_over=self._take_over, stand_down=self._stand_down,
            refresh=self._refresh_shared_state, metrics=self.metrics,
        )  # fmt: skip

    def _leading(self) -> bool:
        """This node distributes calls: the only node, or the lease holder that took over."""
        return self.ha is None or self.ha.serving

    def _start_leader_tasks(self) -> None:
        """What only the leading node does to the shared registrations: expire and probe them."""
        self._leader_tasks = [
            asyncio.create_task(self._sweep_expired()),
            asyncio.create_task(self.keepalive.run()),
        ]

    def _draining(self) -> None:
        """A planned stop: the standby takes new calls at once while this node finishes its
        own (its volunteers stay busy there until their calls end here)."""
        if self.ha is not None:
            self.ha.retire()

    def _stand_down(self, reason: str) -> None:
        self._carried = {v.username for v in self.roster.volunteers() if v.state in IN_A_CALL}
        for task in self._leader_tasks:
            task.cancel()
        self._leader_tasks = []

    def _shifts_to_write(self, volunteers: list[Volunteer]) -> list[Volunteer]:
        """The leader writes the shifts, except of volunteers busy on a draining node (that
        node writes their call's end); a node not leading writes only the ends of the calls
        it still carries (a standby's roster is a copy)."""
        if self.ha is not None and self.ha.lease.leading:
            return [v for v in volunteers if v.username not in self._elsewhere]
        carried = [v for v in volunteers if v.username in self._carried]
        self._carried -= {v.username for v in carried if v.state not in IN_A_CALL}
        return carried

    async def _read_shared_state(self) -> tuple[list[StoredShift], list[StoredBinding]]:
        if self.db is None:
            await self.reload_credentials()  # opens the database
        assert self.db is not None
        bindings = await RegistrationRepository(self.db.pool).load_active(datetime.now(UTC))
        return await ShiftRepository(self.db.pool).load_all(), bindings

    async def _refresh_shared_state(self, leading: bool) -> None:
        """A standby's picture, kept fresh so that a takeover has one even if a read fails;
        the leader's look at what other nodes wrote (pbx/ha.py)."""
        if not leading:
            self._shared_state = await asyncio.wait_for(self._read_shared_state(), 5.0)
            return
        if self.db is None or self.ha is None:
            return
        if self._elsewhere:  # volunteers in a call on a draining node: over there yet?
            shifts = await asyncio.wait_for(ShiftRepository(self.db.pool).load_all(), 5.0)
            draining = await draining_nodes(self.db.pool, 5.0)
            settled = settle(
                self.roster, self.registrar, shifts, self._elsewhere, self.profiles,
                wrap_up_for=self._wrap_up_for, now=time.time(), calls_elsewhere=bool(draining),
            )  # fmt: skip
            self._elsewhere = settled.elsewhere
            self.ha.calls_lost += settled.lost_calls
            for v in settled.restored:
                log.info("shift_settled", user=v.username, state=v.state.value,
                         calls_lost=settled.lost_calls)  # fmt: skip
            self._save_shifts(settled.restored)
            self.dispatcher.kick()
        await self._take_newer_bindings()

    async def _take_newer_bindings(self) -> None:
        """REGISTERs another node took (a proxy may send one there while this node leads):
        a binding stored with a later expiry than ours is taken, so that our expiry sweep
        never deletes a handset that refreshed there. Our own changes are written first."""
        if self.db is None or (self.writer is not None and not await self.writer.flush(1.0)):
            return
        repo = RegistrationRepository(self.db.pool)
        rows = await asyncio.wait_for(repo.load_active(datetime.now(UTC)), 5.0)
        newer = []
        for row in rows:
            known = self.registrar.bindings.get(row.aor, {}).get(row.contact_uri)
            if known is None or row.expires_at.timestamp() > known.expires_at + 1.0:
                newer.append(row)
        for binding in self._usable_bindings(newer):
            self.registrar.restore(binding)
            log.info("registration_taken", user=binding.username)
            self._registration_seen_by_roster(Change.REFRESHED, binding)
            self._bindings_dirty = True

    async def _take_over(self) -> None:
        """The lease is ours: the shared database's registrations and shifts replace this
        node's picture (pbx/takeover.py), then this node expires and probes handsets."""
        assert self.ha is not None
        if self.writer is not None:  # REGISTERs this node took while standing by, stored
            await self.writer.flush(1.0)
        try:
            await asyncio.wait_for(self.reload_credentials(), 3.0)
            self._shared_state = await asyncio.wait_for(self._read_shared_state(), 3.0)
        except Exception as exc:  # the last picture read while standing by
            log.error("takeover_read_failed", error=type(exc).__name__)
        try:  # a node that handed the lease over to drain still carries its calls
            draining = await draining_nodes(self.db.pool, 2.0) if self.db is not None else []
        except Exception as exc:
            draining = []
            log.error("takeover_read_failed", error=type(exc).__name__)
        if not self.ha.lease.leading:
            return  # lost again meanwhile: this node stands by as it did
        if self._shared_state is None:  # never read: the picture this node started with stays
            log.error("takeover_without_shared_state", node=self.ha.node)
            self._start_leader_tasks()
            return
        shifts, rows = self._shared_state
        adopted = adopt(
            self.roster, self.registrar, shifts, self._usable_bindings(rows), self.profiles,
            wrap_up_for=self._wrap_up_for, now=time.time(), calls_elsewhere=bool(draining),
        )  # fmt: skip
        self._elsewhere, self._carried = adopted.elsewhere, set()
        for v in adopted.restored:
            log.info("shift_restored", user=v.username, state=v.state.value,
                     registered=v.registered)  # fmt: skip
        self._save_shifts(adopted.restored)
        self._bindings_dirty = True
        self.ha.calls_lost += adopted.lost_calls
        log.info(
            "takeover", node=self.ha.node, on_shift=len(adopted.restored),
            handsets=sum(len(b) for b in self.registrar.bindings.values()),
            calls_lost=adopted.lost_calls, calls_kept=adopted.kept,
            calls_elsewhere=len(adopted.elsewhere), draining=draining,
        )  # fmt: skip
        self._start_leader_tasks()
        self.dispatcher.kick()

    @property
    def pid_file(self) -> Path:
        return self.settings.state_dir / "helpline.pid"

    def reload_dialplan(self) -> bool:
        """Validate the dialplan file and swap it in atomically; a bad one is refused and the
        running plan stays. Calls in progress finish on the plan they started with."""
        try:
            plan = load_dialplan(self.settings.dialplan)
        except DialplanError as exc:
            self.metrics.dialplan_reloads.labels(result="rejected").inc()
            log.error(
                "dialplan_rejected",
                file=str(self.settings.dialplan),
                problems=len(exc.problems),
                first=[str(p) for p in exc.problems[:5]],
            )
            return False
        self.plan = plan
        self.dispatcher.configure(plan.queues)
        self.metrics.dialplan_reloads.labels(result="loaded").inc()
        log.info("dialplan_loaded", file=str(self.settings.dialplan), nodes=len(plan.nodes))
        return True

    # --- persistence ------------------------------------------------------------------------------
    async def _open_database(self) -> None:
        s = self.settings
        try:
            self.db = await asyncio.wait_for(open_database(s.database_url, s.state_dir), 60)
        except Exception as exc:  # the service runs on without it
            log.error("database_unavailable", error=str(exc)[:200])
            self._restore_snapshots()
            if s.database_url is not None:
                # records are journaled and written once the database is back
                self.writer = WriteBehind(s.database_url, s.state_dir)
                self.writer.start()
            self._restore_restart_state([], [])
            return
        self.writer = WriteBehind(self.db.url, s.state_dir)
        self.writer.start()
        await self.reload_credentials()
        stored = await RegistrationRepository(self.db.pool).load_active(datetime.now(UTC))
        shifts = await ShiftRepository(self.db.pool).load_all()
        self._restore_restart_state(shifts, stored)

    def _restore_restart_state(
        self, shifts: list[StoredShift], bindings: list[StoredBinding]
    ) -> None:
        """Handsets' bindings (the later of the database's and the snapshot's), then the
        shifts of volunteers: as they were before the restart, with no action on a handset."""
        now = time.time()
        rows = {(b.aor, b.contact_uri): b for b in bindings}
        for b in self.restart_state.load_bindings():
            known = rows.get((b.aor, b.contact_uri))
            if known is None or b.expires_at > known.expires_at:
                rows[(b.aor, b.contact_uri)] = b
        for binding in self._usable_bindings(list(rows.values())):
            self.registrar.restore(binding)
        restored = self.restart_state.restore(
            self.roster, self.restart_state.load_shifts(shifts), self.profiles,
            registered=lambda user: bool(self.registrar.contacts(user, now)),
            wrap_up_for=self._wrap_up_for, now=now,
        )  # fmt: skip
        for v in restored:
            log.info("shift_restored", user=v.username, state=v.state.value,
                     registered=v.registered)  # fmt: skip
        self._save_shifts(restored)  # a ringing or talking volunteer's state changed

    def _usable_bindings(self, rows: list[StoredBinding]) -> list[Binding]:
        now, usable = time.time(), []
        for row in rows:
            if row.expires_at.timestamp() <= now:
                continue
            try:
                binding = _binding_from_row(row)
            except ValueError:
                log.warning("stored_binding_unusable", aor=row.aor)
                continue
            if self.trunk.from_trusted_address(binding.source):
                # stored before trunk_sources covered that address: ringing it would call the
                # carrier, so it is dropped (a live handset there could not register now either)
                log.warning("stored_binding_on_trunk_dropped", user=binding.username)
                continue
            usable.append(binding)
        return usable

    def _wrap_up_for(self, v: Volunteer) -> float:
        """The wrap-up a call of this volunteer's would have ended in (the longest of the
        queues they serve: their call's queue died with the process)."""
        queues = self.dispatcher.engine.queues.values()
        return max((q.wrap_up for q in queues if v.serves(q.language, q.skill)), default=0.0)

    def _save_shifts(self, volunteers: list[Volunteer]) -> None:
        if self.ha is not None:
            volunteers = self._shifts_to_write(volunteers)
        for row in self.restart_state.shifts_changed(volunteers, time.time()):
            if self.writer is not None:
                self.writer.submit(shift_save_op(row))

    async def reload_credentials(self) -> None:
        if self.db is None:
            url = self.settings.database_url
            if url is None:
                return
            self.db = await asyncio.wait_for(open_database(url, self.settings.state_dir), 10)
            log.info("database_reconnected")
        repo = VolunteerRepository(self.db.pool)
        creds = await repo.load_credentials()
        self.profiles = await repo.load_profiles()
        self.registrar.credentials = creds
        self._end_shifts_of_disabled()
        self._write_snapshot(CREDENTIALS_SNAPSHOT, creds)
        self._write_snapshot(PROFILES_SNAPSHOT, self.profiles)

    def _end_shifts_of_disabled(self) -> None:
        """A volunteer an admin disabled (or removed) is logged out; one ringing or in a call
        finishes it first and is logged out at the next refresh."""
        for v in list(self.roster.volunteers()):
            if v.username not in self.profiles and v.state in LOGOUT_NOW:
                self.roster.logout(v.username, time.time(), reason="disabled")

    def _write_snapshot(self, name: str, records: Mapping[str, Any]) -> None:
        """What volunteers need to log in and be rung, for a start while the DB is away."""
        doc = json.dumps({u: asdict(r) for u, r in records.items()})
        write_private(self.settings.state_dir / name, doc)  # created 0600: holds digest hashes

    def _restore_snapshots(self) -> None:
        creds = self._read_snapshot(CREDENTIALS_SNAPSHOT)
        profiles = self._read_snapshot(PROFILES_SNAPSHOT)
        try:
            self.registrar.credentials = {u: Credential(**c) for u, c in creds.items()}
            self.profiles = {
                u: Profile(
                    **{**p, "languages": tuple(p["languages"]), "skills": tuple(p["skills"])}
                )
                for u, p in profiles.items()
            }
        except (TypeError, KeyError) as exc:  # written by another version: start without
            log.error("snapshot_unreadable", error=str(exc)[:200])

    def _read_snapshot(self, name: str) -> dict[str, dict[str, Any]]:
        path = self.settings.state_dir / name
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def record_event(self, kind: str, **data: object) -> None:
        """An anonymous event (no caller data) written behind to the events table."""
        if self.writer is not None:
            self.writer.submit(event_op(kind, data, datetime.now(UTC)))

    def _binding_changed(self, change: Change, binding: Binding) -> None:
        self.metrics.registrations_changes.labels(change=change.value).inc()
        log.info(
            "registration",
            change=change.value,
            user=binding.username,
            transport=binding.source.transport.value,
        )
        try:  # whatever the roster makes of it, the REGISTER is answered and stored
            self._registration_seen_by_roster(change, binding)
        except Exception:
            log.exception("registration_not_applied", user=binding.username)
        self._bindings_dirty = True  # snapshotted with the next roster drain
        if self.writer is None:
            return
        # reachability lives in memory only: after a restart every binding is probed anew
        if change in (Change.ADDED, Change.REFRESHED):
            self.writer.submit(save_op(_binding_to_row(binding)))
        elif change in (Change.REMOVED, Change.EXPIRED, Change.LOST):
            self.writer.submit(delete_op(binding.username, _db_text(binding.key)))
        self.record_event(f"registration.{change.value}", user=binding.username)

    def _registration_seen_by_roster(self, change: Change, binding: Binding) -> None:
        """A volunteer on shift whose last ringable handset goes (expired, unregistered, or
        unreachable) is offered no calls, and is logged out after the roster's grace period;
        a handset registering or answering again restores them. Off shift, nothing to do:
        their next `*1` logs them in."""
        user, now = binding.username, time.time()
        if user not in self.roster:
            return
        volunteer = self.roster.get(user)
        if volunteer.state is VolunteerState.LOGGED_OUT:
            return
        ringable = self.registrar.ringable(user, now)
        if change in GONE and not ringable and volunteer.registered:
            self.roster.registration_lapsed(user, now)
        elif change in BACK and ringable and not volunteer.registered:
            self.roster.registration_restored(user, now)

    def drain_roster_events(self) -> None:
        events = self.roster.take_events()
        changed = {e.username for e in events}
        self._save_shifts([self.roster.get(u) for u in sorted(changed) if u in self.roster])
        if self._bindings_dirty and (self._bindings_write is None or self._bindings_write.done()):
            # Off the event loop: with a thousand handsets one snapshot takes tens of ms, which
            # would stall the media clock. One write at a time; changes meanwhile stay dirty
            # and go out with the next drain.
            self._bindings_dirty = False
            bindings = [b for bs in self.registrar.bindings.values() for b in bs.values()]
            self._bindings_write = asyncio.create_task(
                asyncio.to_thread(self._snapshot_bindings, bindings)
            )
        for event in events:
            self.metrics.volunteer_events.labels(kind=event.kind.value).inc()
            log.info(
                "volunteer_state",
                user=event.username,
                kind=event.kind.value,
                state=event.to_state.value,
                reason=event.reason,
            )
            self.record_event(
                f"volunteer.{event.kind.value}",
                user=event.username,
                state=event.to_state.value,
                reason=event.reason,
            )

    # --- background work --------------------------------------------------------------------------
    def _snapshot_bindings(self, bindings: list[Binding]) -> None:
        self.restart_state.bindings_changed(_binding_to_row(b) for b in bindings)

    async def _sweep_expired(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_SECONDS)
            self.registrar.expire(time.time())

    async def _refresh_credentials(self) -> None:
        """Pick up `helpline volunteers add/disable` without a restart."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.reload_credentials()
            except Exception as exc:
                log.warning("credentials_refresh_failed", error=str(exc)[:200])

    # --- metrics ----------------------------------------------------------------------------------
    def _observe(self, direction: str, message: Message) -> None:
        if direction == "in" and isinstance(message, Request):
            self.metrics.sip_requests.labels(method=method_label(message.method)).inc()
        elif direction == "out" and isinstance(message, Response):
            self.metrics.sip_responses.labels(cls=f"{message.status // 100}xx").inc()

    def _register_gauges(self) -> None:
        m = self.metrics
        m.live("helpline_sip_transactions", "Live SIP transactions", lambda: len(self.stack.layer))
        m.live(
            "helpline_volunteers_on_shift",
            "Volunteers logged in and reachable (available, busy or in wrap-up)",
            lambda: sum(1 for v in self.roster.volunteers() if v.on_shift),
        )
        m.live(
            "helpline_volunteers_available",
            "Volunteers waiting for a call",
            lambda: sum(1 for v in self.roster.volunteers() if v.offerable),
        )
        engine = self.dispatcher.engine
        m.live_by(
            "helpline_queue_waiting", "Callers waiting in each queue", "queue",
            lambda: {q: engine.waiting(q) for q in engine.queues},
        )  # fmt: skip
        m.live_by(
            "helpline_queue_longest_wait_seconds", "How long each queue's first caller has waited",
            "queue", lambda: {q: engine.longest_wait(q, time.time()) for q in engine.queues},
        )  # fmt: skip
        m.live("helpline_sip_dialog_legs", "Live call legs", lambda: len(self.switchboard.legs))
        m.live(
            "helpline_sip_connections",
            "Open TCP/TLS connections",
            lambda: self.stack.transports.connection_count,
        )
        m.live(
            "helpline_registered_handsets",
            "Live registrar bindings",
            lambda: sum(len(b) for b in self.registrar.bindings.values()),
        )
        m.live(
            "helpline_sip_malformed_messages",
            "Malformed SIP messages received",
            lambda: self.stack.transports.stats.malformed,
            counter=True,
        )
        admission, loop_time = self.admission, asyncio.get_running_loop().time
        m.live(
            "helpline_sip_banned_sources",
            "Source addresses banned now for flooding",
            lambda: admission.banned_count(loop_time()),
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
            lambda: self.stack.request_failures,
            counter=True,
        )
        m.live(
            "helpline_sip_requests_malformed_late",
            "Requests answered 400 because a header read after parsing was not valid SIP",
            lambda: self.stack.requests_malformed,
            counter=True,
        )
        m.live(
            "helpline_sip_failure_answers",
            "Requests answered 500/400 because the code handling them failed before answering",
            lambda: self.stack.unanswered_failures,
            counter=True,
        )
        m.live(
            "helpline_sip_transactions_abandoned",
            "Server transactions never answered in time, answered 500 by the transaction layer",
            lambda: self.stack.layer.stats.abandoned,
            counter=True,
        )
        m.live(
            "helpline_db_writes_pending",
            "Records waiting to be written to the database",
            lambda: self.writer.pending if self.writer is not None else 0,
        )


def _lockout_policy(s: Settings) -> LockoutPolicy:
    return LockoutPolicy(
        source_failures=s.auth_source_failures,
        user_failures=s.auth_user_failures,
        backoff=s.auth_lockout,
        max_backoff=s.auth_lockout_max,
    )


def _db_text(text: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates, which a handset may have sent."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _binding_to_row(b: Binding) -> StoredBinding:
    return StoredBinding(
        aor=b.username,
        contact_uri=_db_text(b.key),
        received_host=b.source.host,
        received_port=b.source.port,
        transport=b.source.transport.value,
        expires_at=datetime.fromtimestamp(b.expires_at, UTC),
        call_id=_db_text(b.call_id),
        cseq=b.cseq,
        instance_id=_db_text(str(b.contact)),  # the contact URI itself (key may be the instance id)
        user_agent=None if b.user_agent is None else _db_text(b.user_agent),
        auth_algorithm=b.algorithm,
    )


def _binding_from_row(row: StoredBinding) -> Binding:
    contact = parse_sip_uri(row.instance_id or row.contact_uri)
    instance = row.contact_uri if row.instance_id and row.contact_uri != row.instance_id else None
    return Binding(
        username=row.aor,
        contact=contact,
        source=Peer(TransportKind(row.transport), row.received_host, row.received_port),
        expires_at=row.expires_at.timestamp(),
        call_id=row.call_id,
        cseq=row.cseq,
        instance=instance if instance and not instance.startswith("sip") else None,
        user_agent=row.user_agent,
        algorithm=row.auth_algorithm,
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


def raise_open_files_limit() -> None:
    """Every TCP/TLS connection and RTP port is a descriptor: the soft limit (often 1024) is
    raised to the hard one, so the service's own caps are what refuses work, not EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("open_files_limit_unchanged", soft=soft, hard=hard, error=str(exc))
            return
        soft = target
    log.info("open_files_limit", soft=soft)


def default_state_dir() -> Path:
    return Path(os.environ.get("HELPLINE_STATE_DIR", "var"))
