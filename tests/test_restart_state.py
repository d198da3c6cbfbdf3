"""What a restart puts back: each volunteer's shift as it was, except that no call survives
(ringing comes back available, in a call comes back in wrap-up), the newer of the database's
and the local snapshot's copy wins, and the snapshot is readable by the owner only."""

from __future__ import annotations

import stat
from pathlib import Path

from pbx.db.shifts import StoredShift
from pbx.db.volunteers import Profile
from pbx.restart_state import RestartState, shift_of
from queues.roster import Roster, Volunteer, VolunteerState

NOW = 1_800_000_000.0


def profile(user: str) -> Profile:
    return Profile(user, ("nl",), (), None, None)


def stored(user: str, state: str, updated_at: float = NOW - 10, **kw: object) -> StoredShift:
    base: dict[str, object] = dict(
        username=user, state=state, state_since=NOW - 100, idle_since=NOW - 100,
        consecutive_misses=0, wrap_up_until=None, pause_reason=None, lapsed_since=None,
        updated_at=updated_at,
    )  # fmt: skip
    base.update(kw)
    return StoredShift(**base)  # type: ignore[arg-type]


def restore(shifts: dict[str, StoredShift], registered: set[str], wrap_up: float = 60.0) -> Roster:
    roster = Roster(max_misses=3, registration_grace=120)
    profiles = {u: profile(u) for u in shifts if u != "gone"}
    RestartState.restore(
        roster, shifts, profiles, registered=lambda u: u in registered,
        wrap_up_for=lambda v: wrap_up, now=NOW,
    )  # fmt: skip
    return roster


def test_each_volunteer_comes_back_as_they_were_but_no_call_survives() -> None:
    shifts = {
        "avail": stored("avail", "available", consecutive_misses=2),
        "paused": stored("paused", "paused", pause_reason="auto_paused", consecutive_misses=3),
        "wrap": stored("wrap", "wrap_up", wrap_up_until=NOW + 20),
        "ringing": stored("ringing", "ringing"),
        "talking": stored("talking", "in_call"),
        "out": stored("out", "logged_out"),
        "gone": stored("gone", "available"),  # disabled or removed since
        "lapsed": stored("lapsed", "available"),  # no handset binding survived
    }
    roster = restore(shifts, registered=set(shifts) - {"lapsed"})
    assert roster.take_events() == []  # a restore is no state change of anyone's
    assert "out" not in roster and "gone" not in roster
    avail = roster.get("avail")
    assert avail.state is VolunteerState.AVAILABLE and avail.consecutive_misses == 2
    assert avail.offerable and avail.idle_since == NOW - 100  # keeps their place in line
    paused = roster.get("paused")
    assert paused.state is VolunteerState.PAUSED and paused.pause_reason == "auto_paused"
    assert roster.get("wrap").wrap_up_until == NOW + 20
    assert roster.get("ringing").state is VolunteerState.AVAILABLE
    talking = roster.get("talking")
    assert talking.state is VolunteerState.WRAP_UP and talking.wrap_up_until == NOW + 60
    roster.tick(NOW + 60)
    assert talking.state is VolunteerState.AVAILABLE  # after the wrap-up they would have had
    lapsed = roster.get("lapsed")
    assert not lapsed.offerable and lapsed.lapsed_since == NOW  # the grace period runs again


def test_without_wrap_up_a_volunteer_in_a_call_comes_back_available() -> None:
    roster = restore({"t": stored("t", "in_call")}, registered={"t"}, wrap_up=0)
    assert roster.get("t").state is VolunteerState.AVAILABLE and roster.get("t").offerable


def test_the_newer_copy_wins_and_the_snapshot_is_private(tmp_path: Path) -> None:
    keeper = RestartState(tmp_path)
    v = Volunteer("anna", frozenset({"nl"}), state=VolunteerState.PAUSED, state_since=NOW)
    keeper.shifts_changed([v], NOW)
    mode = stat.S_IMODE(keeper.shifts_path.stat().st_mode)
    assert mode == 0o600
    older = stored("anna", "available", updated_at=NOW - 5)
    newer = stored("bram", "available", updated_at=NOW + 5)
    merged = RestartState(tmp_path).load_shifts([older, newer])
    assert merged["anna"].state == "paused"  # the snapshot is newer than the database row
    assert merged["bram"] == newer  # not in the snapshot: the database's
    assert shift_of(v, NOW).state == "paused"


def test_an_unreadable_snapshot_falls_back_to_the_database(tmp_path: Path) -> None:
    keeper = RestartState(tmp_path)
    keeper.shifts_path.write_text("{not json")
    keeper.bindings_path.write_text('[{"aor": 1}]')
    row = stored("anna", "available")
    assert keeper.load_shifts([row]) == {"anna": row}
    assert keeper.load_bindings() == []
