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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from pbx.db.shifts import StoredShift
from pbx.db.volunteers import Profile
from pbx.restart_state import RestartState
from pbx.sip.registrar import Binding, Registrar
from queues.roster import Roster, Volunteer, VolunteerState

IN_A_CALL = (VolunteerState.RINGING, VolunteerState.IN_CALL)
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
    registrar.bindings.clear()
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
