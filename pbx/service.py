"""The running service's lifecycle: start (in the order below), reload, stop.

Start-up order matters for the "live calls never depend on the database" rule: credentials and
registrations are loaded into memory once (from the database, or from the last snapshot when the
database is unreachable); from then on the database is only written behind and re-read. Every
part is built by the composition root (`pbx/app.py`) and handed in; this class only runs them.
With active/standby (`ha`) the node starts standby and the lease decides when the leader's work
runs (`pbx/takeover.py`); at stop the lease is given up first, so the standby takes over at once.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import structlog

from ivr.model import Dialplan
from pbx import native
from pbx.bookkeeping import Bookkeeping
from pbx.call_records import CallRecords
from pbx.config import Settings
from pbx.db.call_records import fold_every_day
from pbx.db.database import Database
from pbx.db.persistence import Persistence
from pbx.db.registrations import RegistrationRepository, StoredBinding
from pbx.db.shifts import ShiftRepository, StoredShift
from pbx.db.writebehind import WriteBehind
from pbx.directory import Directory, refresh_directory
from pbx.drain import Drain, Readiness
from pbx.ha import HighAvailability
from pbx.health import start_health_server
from pbx.metrics import Metrics
from pbx.plan_in_force import PlanInForce
from pbx.private_files import private_dir, write_private
from pbx.profile import Profile
from pbx.restart_state import RestartState
from pbx.sip.admission import Admission
from pbx.sip.peer import TransportKind
from pbx.sip.registrar import Registrar
from pbx.sip.stack import SipStack
from pbx.sip.tls import CertificateFiles, ensure_self_signed
from pbx.sip.trunk import TrunkPolicy
from pbx.switchboard import Switchboard
from pbx.takeover import LeaderWork, usable_bindings, wrap_up_for
from pbx.voicemail.desk import VoicemailDesk
from pbx.web.server import WebServer
from queues.dispatcher import Dispatcher
from queues.roster import Roster, Volunteer

log = structlog.get_logger("pbx.service")

REFRESH_SECONDS = 15.0


@dataclass(kw_only=True)
class HelplineService:
    settings: Settings
    metrics: Metrics
    plans: PlanInForce  # the dialplan in force
    directory: Directory  # volunteers' credentials and profiles, in memory
    persistence: Persistence  # the database and its write-behind
    restart_state: RestartState  # shifts and bindings across a restart
    bookkeeping: Bookkeeping  # registrar and roster changes written down
    roster: Roster  # volunteers' shift states, in memory
    dispatcher: Dispatcher
    registrar: Registrar
    trunk: TrunkPolicy
    admission: Admission
    stack: SipStack
    switchboard: Switchboard  # the stack's transaction user
    drain: Drain
    voicemail: VoicemailDesk  # messages kept encrypted, deleted after the retention period
    web: WebServer | None = None  # wallboard and console (pbx/web)
    leader_work: LeaderWork  # expiry sweep and keepalives: only while this node leads
    ha: HighAvailability | None = None  # the active/standby lease; None: one node, it leads
    records: CallRecords = field(default_factory=CallRecords)  # live calls' records
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_server: WSGIServer | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start serving; raises DialplanError (with every problem) for an invalid plan."""
        s = self.settings
        self.plans.load()  # before anything else: refuse a bad plan
        raise_open_files_limit()
        private_dir(s.state_dir)
        write_private(self.pid_file, str(os.getpid()))
        if s.metrics_port is not None:  # early, so that /ready says "starting" meanwhile
            self._metrics_server = start_health_server(
                s.metrics_port, s.metrics_host, self.metrics.registry, self.readiness
            )
        await self._open_database()
        self.voicemail.sweep()  # messages past their retention are gone before any call
        if not self.voicemail.accepting:
            log.warning(
                "voicemail_no_recipient",
                detail="voicemail_recipients is empty: callers are told no message can be left",
            )
        tls_files = None
        if s.tls_port is not None:
            cert, key = (s.tls_cert, s.tls_key)
            if cert is None or key is None:
                cert, key = ensure_self_signed(s.state_dir / "tls", s.public_host)
            tls_files = CertificateFiles(cert, key)  # reloaded when renewed, calls kept
        tls_ctx = None if tls_files is None else tls_files.context
        await self.stack.start(self.switchboard, s.sip_host, s.sip_port, s.tls_port, tls_ctx)
        if self.web is not None:
            await self.web.start()
        self._tasks = [
            asyncio.create_task(self._refresh_credentials()),
            asyncio.create_task(self.dispatcher.run()),
            asyncio.create_task(self.voicemail.keep_retention()),
            asyncio.create_task(
                fold_every_day(self.persistence.submit, s.call_records_retention_months)
            ),
        ]
        if tls_files is not None:
            self._tasks.append(asyncio.create_task(tls_files.watch(s.tls_reload_interval)))
        if self.ha is None:
            self.leader_work.start()
        else:  # standby until the lease is ours (pbx/ha.py, pbx/takeover.py)
            self._tasks.append(asyncio.create_task(self.ha.run()))
        log.info(
            "service_started",
            sip=f"{s.sip_host}:{self.stack.port(TransportKind.UDP)}",
            tls_port=s.tls_port,
            metrics_port=s.metrics_port,
            database="embedded" if s.database_url is None else "external",
            volunteers=len(self.directory.credentials),
            bindings=sum(len(b) for b in self.registrar.bindings.values()),
            native=native.STATUS.active,  # the compiled modules (pbx/native.py)
        )
        if native.asked_for() and not native.STATUS.active:
            log.warning("native_modules_unused", reason=native.STATUS.reason)
        self.drain.state = Readiness.SERVING

    async def stop(self) -> None:
        if self.ha is not None:
            writer = self.persistence.writer
            if writer is not None:  # the ends of calls carried here, before the lease goes
                await writer.flush(2.0)
            self.ha.stop()  # give the lease up first: the standby takes over at once
        for task in self._tasks:
            task.cancel()
        if self.web is not None:
            await self.web.stop()
        self.leader_work.stop()
        await self.stack.close()
        # calls still running when we stop: their records go out before the write-behind closes
        self.records.finish_all("shutdown")
        await self.bookkeeping.close()
        await self.persistence.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        self.pid_file.unlink(missing_ok=True)
        self.stopped.set()
        log.info("service_stopped")

    def readiness(self) -> tuple[bool, str]:
        """For /ready: take new calls here?"""
        if self.drain.state is Readiness.SERVING and not self.leading():
            return False, "standby"
        return self.drain.state is Readiness.SERVING, self.drain.state.value

    def leading(self) -> bool:
        """This node distributes calls: the only node, or the lease holder that took over."""
        return self.ha is None or self.ha.serving

    @property
    def pid_file(self) -> Path:
        return self.settings.state_dir / "helpline.pid"

    def reload_dialplan(self) -> bool:
        """Validate the dialplan file and swap it in atomically; a bad one is refused and the
        running plan stays. Calls in progress finish on the plan they started with."""
        return self.plans.reload()

    # --- what other parts (and the tests) read ----------------------------------------------------
    @property
    def plan(self) -> Dialplan | None:
        return self.plans.plan

    @property
    def db(self) -> Database | None:
        return self.persistence.db

    @property
    def writer(self) -> WriteBehind | None:
        return self.persistence.writer

    @property
    def profiles(self) -> dict[str, Profile]:
        return self.directory.profiles

    def drain_roster_events(self) -> None:
        self.bookkeeping.roster_changed()

    # --- persistence ------------------------------------------------------------------------------
    async def _open_database(self) -> None:
        if not await self.persistence.open():  # the service runs on without it
            self.directory.restore()
            self._restore_restart_state([], [])
            return
        await self.reload_credentials()
        db = self.persistence.db
        assert db is not None
        stored = await RegistrationRepository(db.pool).load_active(datetime.now(UTC))
        shifts = await ShiftRepository(db.pool).load_all()
        self._restore_restart_state(shifts, stored)

    def _restore_restart_state(
        self, shifts: list[StoredShift], bindings: list[StoredBinding]
    ) -> None:
        """Handsets' bindings (the later of the database's and the snapshot's), then the
        shifts of volunteers: as they were before the restart, with no action on a handset."""
        now = time.time()
        rows = {(b.aor, b.binding_key): b for b in bindings}
        for b in self.restart_state.load_bindings():
            known = rows.get((b.aor, b.binding_key))
            if known is None or b.expires_at > known.expires_at:
                rows[(b.aor, b.binding_key)] = b
        for binding in usable_bindings(rows.values(), self.trunk, now):
            self.registrar.restore(binding)
        restored = self.restart_state.restore(
            self.roster, self.restart_state.load_shifts(shifts), self.directory.profiles,
            registered=lambda user: bool(self.registrar.contacts(user, now)),
            wrap_up_for=self._wrap_up_for, now=now,
        )  # fmt: skip
        for v in restored:
            log.info("shift_restored", user=v.username, state=v.state.value,
                     registered=v.registered)  # fmt: skip
        self.bookkeeping.save_shifts(restored)  # a ringing or talking volunteer's state changed

    def _wrap_up_for(self, v: Volunteer) -> float:
        return wrap_up_for(self.dispatcher, v)

    async def reload_credentials(self) -> None:
        await refresh_directory(self.directory, self.persistence, self.roster)

    # --- background work --------------------------------------------------------------------------
    async def _refresh_credentials(self) -> None:
        """Pick up `helpline volunteers add/disable` without a restart."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.reload_credentials()
            except Exception as exc:
                log.warning("credentials_refresh_failed", error=str(exc)[:200])


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
