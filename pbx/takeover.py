"""Taking the lead from another node: the shared database's picture replaces this node's.

The node that led before kept registrations and shifts in the shared database (written
behind as they changed). The node taking over puts that picture in place of its own, as a
restart does (`pbx.restart_state`): who is on shift, paused, in wrap-up, their missed offers,
every handset's binding. A volunteer the picture shows ringing or in a call was so on the
node that died: that call is lost (counted), and the volunteer comes back available after
the wrap-up the call's end would have given them. A volunteer in a call on *this* node (it
led before, lost the lease, and leads again) keeps their call and their state.

A node that hands the lease over to drain (a planned stop) is still alive and carries its
calls to their end. Its volunteers ringing or talking are then busy elsewhere, not lost: they
stay paused here (`CALL_ELSEWHERE`) until the draining node writes their call's end, which
`settle` picks up, or until that node is gone (then their calls are counted lost after all).

Only the database's copy counts here, not this node's local snapshots: while standing by it
wrote none, and another machine's clock decided the database's timestamps.

`Takeover` is the service's side of it, run by `pbx.ha`: the picture a standby keeps fresh,
the takeover itself, standing down, and the leader's look at what other nodes wrote.
`ShiftWriters` says which node writes whose shift; `LeaderWork` is what only the leader runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import structlog

from pbx.bookkeeping import Bookkeeping
from pbx.db.lease import draining_nodes
from pbx.db.persistence import Persistence
from pbx.db.registrations import RegistrationRepository, StoredBinding, binding_from_row
from pbx.db.shifts import ShiftRepository, StoredShift
from pbx.directory import Directory, refresh_directory
from pbx.leadership import Lease
from pbx.metrics import Metrics
from pbx.profile import Profile
from pbx.restart_state import RestartState
from pbx.sip.keepalive import Keepalive
from pbx.sip.registrar import Binding, Change, Registrar
from pbx.sip.trunk import TrunkPolicy
from queues.dispatcher import Dispatcher
from queues.roster import Roster, Volunteer, VolunteerState

log = structlog.get_logger("pbx.takeover")

IN_A_CALL = (VolunteerState.RINGING, VolunteerState.IN_CALL)
EXPIRY_SWEEP_SECONDS = 2.0
CALL_ELSEWHERE = "call_on_other_node"  # pause reason: in a call on a node that drains


@dataclass(frozen=True)
class Adopted:
    restored: list[Volunteer]  # placed as the shared state says (to write back)
    lost_calls: int  # calls in progress on the node that died (its volunteers ringing/talking)
    kept: int = 0  # volunteers in a call on this node, left as they are
    elsewhere: set[str] = field(default_factory=set)  # in a call on a draining node: paused


def adopt(
    roster: Roster,
    registrar: Registrar,
    shifts: Iterable[StoredShift],
    bindings: Iterable[Binding],
    profiles: Mapping[str, Profile],
    *,
    wrap_up_for: Callable[[Volunteer], float],
    now: float,
    calls_elsewhere: bool,
) -> Adopted:
    """Take the shared picture over; `calls_elsewhere`: a node still drains its calls."""
    here = {v.username for v in roster.volunteers() if v.state in IN_A_CALL}
    for v in list(roster.volunteers()):
        if v.username not in here:
            roster.forget(v.username)
    registrar.clear()
    for binding in bindings:
        registrar.restore(binding)
    rows = {s.username: s for s in shifts if s.username not in here}
    placed = _place(roster, registrar, rows, profiles, wrap_up_for, now, calls_elsewhere)
    return Adopted(placed.restored, placed.lost_calls, len(here), placed.elsewhere)


def settle(
    roster: Roster,
    registrar: Registrar,
    shifts: Iterable[StoredShift],
    waiting: set[str],
    profiles: Mapping[str, Profile],
    *,
    wrap_up_for: Callable[[Volunteer], float],
    now: float,
    calls_elsewhere: bool,
) -> Adopted:
    """Volunteers paused for a call on a draining node (`waiting`): those whose call ended
    there (their row changed) or whose node is gone (`calls_elsewhere` false) are placed as
    the shared state says; `elsewhere` holds those still waiting."""
    rows = {s.username: s for s in shifts if s.username in waiting}
    done = {u: s for u, s in rows.items() if s.state not in IN_A_CALL or not calls_elsewhere}
    for username in waiting:
        if username in rows and username not in done:
            continue
        if username in roster and roster.get(username).state not in IN_A_CALL:
            roster.forget(username)
    placed = _place(roster, registrar, done, profiles, wrap_up_for, now, calls_elsewhere)
    still = {u for u in waiting if u in rows and u not in done}
    return Adopted(placed.restored, placed.lost_calls, 0, still)


def _place(
    roster: Roster,
    registrar: Registrar,
    rows: Mapping[str, StoredShift],
    profiles: Mapping[str, Profile],
    wrap_up_for: Callable[[Volunteer], float],
    now: float,
    calls_elsewhere: bool,
) -> Adopted:
    ordinary: dict[str, StoredShift] = {}
    busy: dict[str, StoredShift] = {}
    lost = 0
    for username, row in rows.items():
        if row.state in IN_A_CALL and username in profiles:
            if calls_elsewhere:
                busy[username] = replace(row, state=VolunteerState.PAUSED.value,
                                         pause_reason=CALL_ELSEWHERE)  # fmt: skip
                continue
            lost += 1
        ordinary[username] = row
    restored = RestartState.restore(
        roster, ordinary, profiles,
        registered=lambda user: bool(registrar.contacts(user, now)),
        wrap_up_for=wrap_up_for, now=now,
    )  # fmt: skip
    paused = RestartState.restore(
        roster, busy, profiles,
        registered=lambda user: bool(registrar.contacts(user, now)),
        wrap_up_for=wrap_up_for, now=now,
    )  # fmt: skip
    return Adopted(restored, lost, 0, {v.username for v in paused})


def usable_bindings(rows: Iterable[StoredBinding], trunk: TrunkPolicy, now: float) -> list[Binding]:
    """Stored bindings still valid and usable (at a restart and at a takeover)."""
    usable = []
    for row in rows:
        if row.expires_at.timestamp() <= now:
            continue
        try:
            binding = binding_from_row(row)
        except ValueError:
            log.warning("stored_binding_unusable", aor=row.aor)
            continue
        if trunk.from_trusted_address(binding.source):
            # stored before trunk_sources covered that address: ringing it would call the
            # carrier, so it is dropped (a live handset there could not register now either)
            log.warning("stored_binding_on_trunk_dropped", user=binding.username)
            continue
        usable.append(binding)
    return usable


def wrap_up_for(dispatcher: Dispatcher, v: Volunteer) -> float:
    """The wrap-up a call of this volunteer's would have ended in (the longest of the queues
    they serve: their call's queue died with the process, or with the node)."""
    queues = dispatcher.queues.values()
    return max((q.wrap_up for q in queues if v.serves(q.language, q.skill)), default=0.0)


class ShiftWriters:
    """Which node writes whose shift (the bookkeeping's filter). One node: it writes all. With
    a lease, the leader writes them, except of volunteers busy on a draining node (that node
    writes their call's end); a node not leading writes only the ends of the calls it still
    carries (a standby's roster is a copy)."""

    def __init__(self, lease: Lease | None) -> None:
        self.lease = lease
        self.elsewhere: set[str] = set()  # in a call on a node that drains
        self.carried: set[str] = set()  # in a call here when this node stood down

    def to_write(self, volunteers: list[Volunteer]) -> list[Volunteer]:
        if self.lease is None:
            return volunteers
        if self.lease.leading:
            return [v for v in volunteers if v.username not in self.elsewhere]
        carried = [v for v in volunteers if v.username in self.carried]
        self.carried -= {v.username for v in carried if v.state not in IN_A_CALL}
        return carried


class LeaderWork:
    """What only the leading node does to the shared registrations: expire and probe them."""

    def __init__(
        self,
        registrar: Registrar,
        keepalive: Keepalive,
        sweep_interval: float = EXPIRY_SWEEP_SECONDS,
    ) -> None:
        self.registrar = registrar
        self.keepalive = keepalive
        self.sweep_interval = sweep_interval
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.stop()
        self._tasks = [
            asyncio.create_task(self._sweep_expired()),
            asyncio.create_task(self.keepalive.run()),
        ]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def _sweep_expired(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            self.registrar.expire(time.time())


class Takeover:
    """The service's side of active/standby, called by `pbx.ha.HighAvailability`."""

    def __init__(
        self,
        *,
        node: str,
        lease: Lease,
        writers: ShiftWriters,
        roster: Roster,
        registrar: Registrar,
        directory: Directory,
        persistence: Persistence,
        bookkeeping: Bookkeeping,
        dispatcher: Dispatcher,
        trunk: TrunkPolicy,
        leader_work: LeaderWork,
        metrics: Metrics,
    ) -> None:
        self.node = node
        self.lease = lease
        self.writers = writers
        self.roster = roster
        self.registrar = registrar
        self.directory = directory
        self.persistence = persistence
        self.bookkeeping = bookkeeping
        self.dispatcher = dispatcher
        self.trunk = trunk
        self.leader_work = leader_work
        self.calls_lost = 0  # calls in progress on a dead leader, counted at our takeover
        # the shared database's shifts and registrations as last read (None: not yet)
        self._shared_state: tuple[list[StoredShift], list[StoredBinding]] | None = None
        metrics.live("helpline_ha_calls_lost", "Calls in progress on a node that died, counted "
                     "by the node taking over", lambda: self.calls_lost, counter=True)  # fmt: skip

    def _wrap_up_for(self, v: Volunteer) -> float:
        return wrap_up_for(self.dispatcher, v)

    def stand_down(self, reason: str) -> None:
        """Stop what only the leader does, now; the calls carried here write their ends."""
        self.writers.carried = {
            v.username for v in self.roster.volunteers() if v.state in IN_A_CALL
        }
        self.leader_work.stop()

    async def _reload_credentials(self) -> None:
        await refresh_directory(self.directory, self.persistence, self.roster)

    async def _read_shared_state(self) -> tuple[list[StoredShift], list[StoredBinding]]:
        if self.persistence.db is None:
            await self._reload_credentials()  # opens the database
        db = self.persistence.db
        assert db is not None
        bindings = await RegistrationRepository(db.pool).load_active(datetime.now(UTC))
        return await ShiftRepository(db.pool).load_all(), bindings

    async def refresh(self, leading: bool) -> None:
        """A standby's picture, kept fresh so that a takeover has one even if a read fails;
        the leader's look at what other nodes wrote (pbx/ha.py)."""
        if not leading:
            self._shared_state = await asyncio.wait_for(self._read_shared_state(), 5.0)
            return
        db = self.persistence.db
        if db is None:
            return
        if self.writers.elsewhere:  # volunteers in a call on a draining node: over there yet?
            shifts = await asyncio.wait_for(ShiftRepository(db.pool).load_all(), 5.0)
            draining = await draining_nodes(db.pool, 5.0)
            settled = settle(
                self.roster, self.registrar, shifts, self.writers.elsewhere,
                self.directory.profiles, wrap_up_for=self._wrap_up_for, now=time.time(),
                calls_elsewhere=bool(draining),
            )  # fmt: skip
            self.writers.elsewhere = settled.elsewhere
            self.calls_lost += settled.lost_calls
            for v in settled.restored:
                log.info("shift_settled", user=v.username, state=v.state.value,
                         calls_lost=settled.lost_calls)  # fmt: skip
            self.bookkeeping.save_shifts(settled.restored)
            self.dispatcher.kick()
        await self._take_newer_bindings()

    async def _take_newer_bindings(self) -> None:
        """REGISTERs another node took (a proxy may send one there while this node leads):
        a binding stored with a later expiry than ours is taken, so that our expiry sweep
        never deletes a handset that refreshed there. Our own changes are written first."""
        db, writer = self.persistence.db, self.persistence.writer
        if db is None or (writer is not None and not await writer.flush(1.0)):
            return
        repo = RegistrationRepository(db.pool)
        rows = await asyncio.wait_for(repo.load_active(datetime.now(UTC)), 5.0)
        newer = []
        for row in rows:
            known = self.registrar.bindings.get(row.aor, {}).get(row.binding_key)
            if known is None or row.expires_at.timestamp() > known.expires_at + 1.0:
                newer.append(row)
        for binding in usable_bindings(newer, self.trunk, time.time()):
            self.registrar.restore(binding)
            log.info("registration_taken", user=binding.username)
            self.bookkeeping.binding_taken(Change.REFRESHED, binding)

    async def take_over(self) -> None:
        """The lease is ours: the shared database's registrations and shifts replace this
        node's picture, then this node expires and probes handsets."""
        writer = self.persistence.writer
        if writer is not None:  # REGISTERs this node took while standing by, stored
            await writer.flush(1.0)
        try:
            await asyncio.wait_for(self._reload_credentials(), 3.0)
            self._shared_state = await asyncio.wait_for(self._read_shared_state(), 3.0)
        except Exception as exc:  # the last picture read while standing by
            log.error("takeover_read_failed", error=type(exc).__name__)
        db = self.persistence.db
        try:  # a node that handed the lease over to drain still carries its calls
            draining = await draining_nodes(db.pool, 2.0) if db is not None else []
        except Exception as exc:
            draining = []
            log.error("takeover_read_failed", error=type(exc).__name__)
        if not self.lease.leading:
            return  # lost again meanwhile: this node stands by as it did
        if self._shared_state is None:  # never read: the picture this node started with stays
            log.error("takeover_without_shared_state", node=self.node)
            self.leader_work.start()
            return
        shifts, rows = self._shared_state
        adopted = adopt(
            self.roster, self.registrar, shifts, usable_bindings(rows, self.trunk, time.time()),
            self.directory.profiles, wrap_up_for=self._wrap_up_for, now=time.time(),
            calls_elsewhere=bool(draining),
        )  # fmt: skip
        self.writers.elsewhere, self.writers.carried = adopted.elsewhere, set()
        for v in adopted.restored:
            log.info("shift_restored", user=v.username, state=v.state.value,
                     registered=v.registered)  # fmt: skip
        self.bookkeeping.save_shifts(adopted.restored)
        self.bookkeeping.bindings_replaced()
        self.calls_lost += adopted.lost_calls
        log.info(
            "takeover", node=self.node, on_shift=len(adopted.restored),
            handsets=sum(len(b) for b in self.registrar.bindings.values()),
            calls_lost=adopted.lost_calls, calls_kept=adopted.kept,
            calls_elsewhere=len(adopted.elsewhere), draining=draining,
        )  # fmt: skip
        self.leader_work.start()
        self.dispatcher.kick()
