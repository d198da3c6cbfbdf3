"""What survives a restart of the service: volunteers' shift states and handsets' bindings.

A restart (an upgrade, a crash, a reboot) must cost no volunteer their shift: their handsets
stay registered and nobody would notice being logged out. So every roster change is kept in
two places: written behind to the `shifts` table, and in a local snapshot file (written
atomically, owner-only) that is current even when the database is away or the process is
killed before the write-behind got to it. At start the newer copy of each volunteer wins.
Registrar bindings are snapshotted the same way (the database copy is `registrations`), so a
handset is known again at start without re-registering, with its remaining expiry.

A call does not survive a restart: a volunteer who was ringing comes back available; one who
was in a call comes back in the wrap-up the call's end would have given them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from pbx.db.registrations import StoredBinding
from pbx.db.shifts import StoredShift
from pbx.private_files import write_private
from pbx.profile import Profile
from queues.roster import Roster, RosterError, Volunteer, VolunteerState

log = structlog.get_logger("pbx.restart_state")

SHIFTS_SNAPSHOT = "shifts.snapshot.json"
BINDINGS_SNAPSHOT = "registrations.snapshot.json"


# a snapshot written before schema version 4 named the binding's columns after the old ones
_RENAMED = {"contact_uri": "binding_key", "instance_id": "contact"}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def shift_of(v: Volunteer, now: float) -> StoredShift:
    return StoredShift(
        username=v.username,
        state=v.state.value,
        state_since=v.state_since,
        idle_since=v.idle_since,
        consecutive_misses=v.consecutive_misses,
        wrap_up_until=v.wrap_up_until,
        pause_reason=v.pause_reason,
        lapsed_since=v.lapsed_since,
        updated_at=now,
    )


class RestartState:
    def __init__(self, state_dir: Path) -> None:
        self.shifts_path = state_dir / SHIFTS_SNAPSHOT
        self.bindings_path = state_dir / BINDINGS_SNAPSHOT
        self._shifts: dict[str, StoredShift] = {}  # the snapshot's content, by username

    # --- keeping -----------------------------------------------------------------------------
    def shifts_changed(self, volunteers: Iterable[Volunteer], now: float) -> list[StoredShift]:
        """Record these volunteers' current states in the snapshot file; the rows to write
        behind to the database."""
        rows = [shift_of(v, now) for v in volunteers]
        if not rows:
            return rows
        for row in rows:
            self._shifts[row.username] = row
        doc = {u: s.as_json() for u, s in self._shifts.items()}
        try:
            write_private(self.shifts_path, json.dumps(doc))
        except OSError as exc:  # a full disk must not take a call down: the DB copy remains
            log.error("shift_snapshot_failed", error=type(exc).__name__)
        return rows

    def bindings_changed(self, bindings: Iterable[StoredBinding]) -> None:
        doc = [{**asdict(b), "expires_at": b.expires_at.isoformat()} for b in bindings]
        try:
            write_private(self.bindings_path, json.dumps(doc))
        except OSError as exc:
            log.error("registration_snapshot_failed", error=type(exc).__name__)

    # --- loading -----------------------------------------------------------------------------
    def load_shifts(self, from_database: Iterable[StoredShift]) -> dict[str, StoredShift]:
        """The newer of the database's and the snapshot's record of each volunteer."""
        merged: dict[str, StoredShift] = {s.username: s for s in from_database}
        doc = _read_json(self.shifts_path)
        for username, raw in doc.items() if isinstance(doc, dict) else []:
            try:
                local = StoredShift.from_json(raw)
            except TypeError:  # written by another version: the database copy stands
                log.warning("shift_snapshot_unreadable", user=username)
                continue
            known = merged.get(username)
            if known is None or local.updated_at >= known.updated_at:
                merged[username] = local
        self._shifts = dict(merged)
        return merged

    def load_bindings(self) -> list[StoredBinding]:
        doc = _read_json(self.bindings_path)
        out: list[StoredBinding] = []
        for raw in doc if isinstance(doc, list) else []:
            try:
                expires_at = datetime.fromisoformat(raw["expires_at"])
                row = {_RENAMED.get(k, k): v for k, v in raw.items()}
                out.append(StoredBinding(**{**row, "expires_at": expires_at}))
            except (TypeError, KeyError, ValueError):
                log.warning("registration_snapshot_unreadable")
        return out

    # --- restoring ---------------------------------------------------------------------------
    @staticmethod
    def restore(
        roster: Roster,
        shifts: Mapping[str, StoredShift],
        profiles: Mapping[str, Profile],
        *,
        registered: Callable[[str], bool],
        wrap_up_for: Callable[[Volunteer], float],
        now: float,
    ) -> list[Volunteer]:
        """Put every volunteer who was on shift back in the roster; those restored."""
        restored: list[Volunteer] = []
        for username, s in sorted(shifts.items()):
            profile = profiles.get(username)
            if profile is None or s.state == VolunteerState.LOGGED_OUT.value:
                continue  # logged out, or disabled/removed since
            try:
                state = VolunteerState(s.state)
            except ValueError:
                continue
            v = Volunteer(
                username,
                frozenset(profile.languages),
                frozenset(profile.skills),
                profile.region,
                state=state,
                state_since=s.state_since,
                idle_since=s.idle_since,
                consecutive_misses=s.consecutive_misses,
                wrap_up_until=s.wrap_up_until,
                pause_reason=s.pause_reason,
            )
            if state is VolunteerState.RINGING:  # the offer died with the process
                v.state = VolunteerState.AVAILABLE
            elif state is VolunteerState.IN_CALL:  # so did the call: wrap-up as after any call
                wrap_up = wrap_up_for(v)
                v.state = VolunteerState.WRAP_UP if wrap_up > 0 else VolunteerState.AVAILABLE
                v.wrap_up_until = now + wrap_up if wrap_up > 0 else None
                v.idle_since = now
            if state in (VolunteerState.RINGING, VolunteerState.IN_CALL):
                v.state_since = now
            if not registered(username):  # no handset known: the grace period runs again
                v.registered = False
                v.lapsed_since = s.lapsed_since if s.lapsed_since is not None else now
            try:
                roster.restore(v)
            except RosterError as exc:
                log.warning("shift_not_restored", user=username, why=str(exc))
                continue
            restored.append(v)
        return restored
