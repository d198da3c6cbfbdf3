"""Writes down what changes in the registrar and the roster, and what one means for the other.

A binding change is counted, logged, written behind (reachability stays in memory) and marks the
bindings' restart snapshot stale; a volunteer on shift whose last ringable handset goes is
offered no calls, and gets them again when a handset is back. Roster events (drained whenever the
dispatcher has run) are counted, logged, recorded as anonymous events, and their shifts written
to the database and the restart snapshot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from pbx.db.events import event_op
from pbx.db.persistence import Persistence
from pbx.db.registrations import binding_to_row, delete_op, save_op
from pbx.db.shifts import save_op as shift_save_op
from pbx.metrics import Metrics
from pbx.restart_state import RestartState
from pbx.sip.registrar import Binding, Change, Registrar
from queues.roster import Roster, Volunteer, VolunteerState

log = structlog.get_logger("pbx.bookkeeping")

GONE = (Change.EXPIRED, Change.REMOVED, Change.LOST, Change.UNREACHABLE)  # a handset went
BACK = (Change.ADDED, Change.REFRESHED, Change.REACHABLE)  # a handset is there (again)


class Bookkeeping:
    def __init__(
        self,
        registrar: Registrar,
        roster: Roster,
        persistence: Persistence,
        restart_state: RestartState,
        metrics: Metrics,
        # the shifts this node writes (pbx.takeover.ShiftWriters: with active/standby, not all)
        writes: Callable[[list[Volunteer]], list[Volunteer]] = lambda volunteers: volunteers,
    ) -> None:
        self.writes = writes
        self.registrar = registrar
        self.roster = roster
        self.persistence = persistence
        self.restart_state = restart_state
        self.metrics = metrics
        self._bindings_dirty = False
        self._bindings_write: asyncio.Task[None] | None = None  # snapshot being written

    def record_event(self, kind: str, **data: object) -> None:
        """An anonymous event (no caller data) written behind to the events table."""
        self.persistence.submit(event_op(kind, data, datetime.now(UTC)))

    def save_shifts(self, volunteers: list[Volunteer]) -> None:
        for row in self.restart_state.shifts_changed(self.writes(volunteers), time.time()):
            self.persistence.submit(shift_save_op(row))

    # --- the registrar's changes ------------------------------------------------------------
    def binding_changed(self, change: Change, binding: Binding) -> None:
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
        if self.persistence.writer is None:
            return
        # reachability lives in memory only: after a restart every binding is probed anew
        if change in (Change.ADDED, Change.REFRESHED):
            self.persistence.submit(save_op(binding_to_row(binding)))
        elif change in (Change.REMOVED, Change.EXPIRED, Change.LOST):
            self.persistence.submit(delete_op(binding.username, binding.key))
        self.record_event(f"registration.{change.value}", user=binding.username)

    def binding_taken(self, change: Change, binding: Binding) -> None:
        """A binding another node stored, taken into the registrar (pbx.takeover): the
        roster sees it; it is already in the database."""
        self._registration_seen_by_roster(change, binding)
        self._bindings_dirty = True

    def bindings_replaced(self) -> None:
        """The registrar's bindings were replaced wholesale (a takeover): snapshot them."""
        self._bindings_dirty = True

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

    # --- the roster's changes ---------------------------------------------------------------
    def roster_changed(self) -> None:
        events = self.roster.take_events()
        changed = {e.username for e in events}
        self.save_shifts([self.roster.get(u) for u in sorted(changed) if u in self.roster])
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

    def _snapshot_bindings(self, bindings: list[Binding]) -> None:
        self.restart_state.bindings_changed(binding_to_row(b) for b in bindings)

    async def close(self) -> None:
        """Let the snapshot being written finish."""
        if self._bindings_write is not None:
            await asyncio.gather(self._bindings_write, return_exceptions=True)
