"""Taking the lead from another node: the shared database's picture replaces this node's.

The node that led before kept registrations and shifts in the shared database (written
behind as they changed). The node taking over puts that picture in place of its own, as a
restart does (`pbx.restart_state`): who is on shift, paused, in wrap-up, their missed offers,
every handset's binding. A volunteer the picture shows ringing or in a call was so on the
node that died: that call is lost (counted), and the volunteer comes back available after
the wrap-up the call's end would have given them. A volunteer in a call on *this* node (it
led before, lost the lease, and leads again) keeps their call and their state.

Only the database's copy counts here, not this node's local snapshots: while standing by it
wrote none, and another machine's clock decided the database's timestamps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pbx.db.shifts import StoredShift
from pbx.db.volunteers import Profile
from pbx.restart_state import RestartState
from pbx.sip.registrar import Binding, Registrar
from queues.roster import Roster, Volunteer, VolunteerState

IN_A_CALL = (VolunteerState.RINGING, VolunteerState.IN_CALL)


@dataclass(frozen=True)
class Adopted:
    restored: list[Volunteer]  # on shift now, as the shared state says
    lost_calls: int  # calls in progress on the node that died (its volunteers ringing/talking)
    kept: int  # volunteers in a call on this node, left as they are


def adopt(
    roster: Roster,
    registrar: Registrar,
    shifts: Iterable[StoredShift],
    bindings: Iterable[Binding],
    profiles: Mapping[str, Profile],
    *,
    wrap_up_for: Callable[[Volunteer], float],
    now: float,
) -> Adopted:
    here = {v.username for v in roster.volunteers() if v.state in IN_A_CALL}
    for v in list(roster.volunteers()):
        if v.username not in here:
            roster.forget(v.username)
    registrar.bindings.clear()
    for binding in bindings:
        registrar.restore(binding)
    rows = {s.username: s for s in shifts if s.username not in here}
    lost = sum(1 for s in rows.values() if s.state in IN_A_CALL and s.username in profiles)
    restored = RestartState.restore(
        roster, rows, profiles,
        registered=lambda user: bool(registrar.contacts(user, now)),
        wrap_up_for=wrap_up_for, now=now,
    )  # fmt: skip
    return Adopted(restored=restored, lost_calls=lost, kept=len(here))
