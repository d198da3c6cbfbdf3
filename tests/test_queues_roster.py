"""The volunteer roster: every legal transition does what a volunteer expects, every illegal
one is refused without changing anything, and each leaves an event (names and states only)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from queues.roster import (
    AUTO_PAUSED,
    REGISTRATION_LAPSED,
    EventKind,
    Roster,
    RosterError,
    RosterEvent,
    Volunteer,
    VolunteerState,
)

S = VolunteerState


def anna() -> Volunteer:
    return Volunteer("anna", frozenset({"nl"}), frozenset({"113"}), "utrecht")


def roster_in(state: VolunteerState, now: float = 0.0) -> Roster:
    """A roster with volunteer 'anna' brought to `state` through legal transitions."""
    r = Roster(max_misses=3, registration_grace=60.0)
    if state is S.LOGGED_OUT:
        r.login(anna(), now)
        r.logout("anna", now)
        r.take_events()
        return r
    r.login(anna(), now)
    if state is S.PAUSED:
        r.pause("anna", now)
    if state in (S.RINGING, S.IN_CALL, S.WRAP_UP):
        r.offer("anna", now)
    if state in (S.IN_CALL, S.WRAP_UP):
        r.answered("anna", now)
    if state is S.WRAP_UP:
        r.call_ended("anna", now, 30.0)
    assert r.get("anna").state is state
    r.take_events()
    return r


ACTIONS: dict[str, Callable[[Roster], object]] = {
    "login": lambda r: r.login(anna(), 1.0),
    "logout": lambda r: r.logout("anna", 1.0),
    "pause": lambda r: r.pause("anna", 1.0),
    "resume": lambda r: r.resume("anna", 1.0),
    "offer": lambda r: r.offer("anna", 1.0),
    "withdraw": lambda r: r.withdraw("anna", 1.0),
    "answered": lambda r: r.answered("anna", 1.0),
    "missed": lambda r: r.missed("anna", 1.0),
    "call_ended": lambda r: r.call_ended("anna", 1.0, 30.0),
}

# state -> (action -> state it leads to); every pair not listed must be refused
LEGAL: dict[VolunteerState, dict[str, VolunteerState]] = {
    S.LOGGED_OUT: {"login": S.AVAILABLE},
    S.AVAILABLE: {"logout": S.LOGGED_OUT, "pause": S.PAUSED, "offer": S.RINGING},
    S.RINGING: {"withdraw": S.AVAILABLE, "answered": S.IN_CALL, "missed": S.AVAILABLE},
    S.IN_CALL: {"call_ended": S.WRAP_UP},
    S.WRAP_UP: {"logout": S.LOGGED_OUT, "pause": S.PAUSED},
    S.PAUSED: {"logout": S.LOGGED_OUT, "resume": S.AVAILABLE},
}


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_transition_is_legal_or_refused(state: VolunteerState, action: str) -> None:
    r = roster_in(state)
    expected = LEGAL[state].get(action)
    if expected is None:
        with pytest.raises(RosterError):
            ACTIONS[action](r)
        assert r.get("anna").state is state
        assert r.take_events() == []
    else:
        event = ACTIONS[action](r)
        assert r.get("anna").state is expected
        assert isinstance(event, RosterEvent)
        assert (event.username, event.from_state, event.to_state, event.at) == (
            "anna",
            state,
            expected,
            1.0,
        )
        assert r.take_events() == [event]
        assert r.get("anna").state_since == 1.0


def test_events_hold_only_volunteer_facts() -> None:
    names = {f.name for f in dataclasses.fields(RosterEvent)}
    assert names == {"kind", "username", "from_state", "to_state", "at", "reason"}


def test_unknown_volunteer_is_refused() -> None:
    with pytest.raises(RosterError, match="unknown volunteer"):
        Roster().offer("nobody", 0.0)


def test_a_shift_in_order() -> None:
    r = Roster()
    r.login(anna(), 10.0)
    r.offer("anna", 20.0)
    r.answered("anna", 25.0)
    r.call_ended("anna", 325.0, 60.0)
    assert r.get("anna").wrap_up_until == 385.0
    assert r.tick(384.9) == []
    assert r.get("anna").state is S.WRAP_UP
    (done,) = r.tick(385.0)
    assert done.kind is EventKind.WRAP_UP_ENDED and done.to_state is S.AVAILABLE
    assert r.get("anna").idle_since == 385.0
    r.logout("anna", 400.0)
    kinds = [e.kind for e in r.take_events()]
    assert kinds == [
        EventKind.LOGIN,
        EventKind.OFFER,
        EventKind.ANSWERED,
        EventKind.CALL_ENDED,
        EventKind.WRAP_UP_ENDED,
        EventKind.LOGOUT,
    ]
    assert r.take_events() == []


def test_no_wrap_up_means_available_at_once() -> None:
    r = roster_in(S.IN_CALL)
    event = r.call_ended("anna", 5.0, 0.0)
    assert event.to_state is S.AVAILABLE and r.get("anna").idle_since == 5.0


def test_auto_pause_after_max_misses_in_a_row() -> None:
    r = roster_in(S.AVAILABLE)
    for t in (1.0, 2.0):
        r.offer("anna", t)
        assert r.missed("anna", t).kind is EventKind.MISSED
    assert r.get("anna").consecutive_misses == 2
    r.offer("anna", 3.0)
    event = r.missed("anna", 3.0)
    assert (event.kind, event.to_state, event.reason) == (
        EventKind.AUTO_PAUSED,
        S.PAUSED,
        AUTO_PAUSED,
    )
    assert r.get("anna").pause_reason == AUTO_PAUSED
    r.resume("anna", 10.0)
    assert r.get("anna").consecutive_misses == 0


def test_answering_resets_the_miss_count() -> None:
    r = roster_in(S.AVAILABLE)
    for t in (1.0, 2.0):
        r.offer("anna", t)
        r.missed("anna", t)
    r.offer("anna", 3.0)
    r.answered("anna", 3.0)
    assert r.get("anna").consecutive_misses == 0


def test_a_miss_sends_the_volunteer_to_the_back_of_the_idle_order() -> None:
    r = roster_in(S.AVAILABLE, now=0.0)
    r.offer("anna", 50.0)
    r.missed("anna", 70.0)
    assert r.get("anna").idle_since == 70.0


def test_withdrawn_offer_is_not_a_miss() -> None:
    r = roster_in(S.RINGING)
    r.withdraw("anna", 1.0)
    assert r.get("anna").consecutive_misses == 0
    assert r.get("anna").idle_since == 0.0


def test_pausing_during_wrap_up_cancels_it() -> None:
    r = roster_in(S.WRAP_UP)
    r.pause("anna", 1.0, "coffee")
    assert r.tick(1000.0) == []
    assert r.get("anna").state is S.PAUSED and r.get("anna").pause_reason == "coffee"


def test_registration_lapse_then_logout_after_grace() -> None:
    r = roster_in(S.AVAILABLE)
    event = r.registration_lapsed("anna", 100.0)
    assert event.kind is EventKind.REGISTRATION_LAPSED and event.to_state is S.AVAILABLE
    assert not r.get("anna").offerable
    with pytest.raises(RosterError, match="no registered handset"):
        r.offer("anna", 101.0)
    assert r.tick(159.9) == []
    (out,) = r.tick(160.0)
    assert (out.kind, out.to_state, out.reason) == (
        EventKind.LOGOUT,
        S.LOGGED_OUT,
        REGISTRATION_LAPSED,
    )


def test_registration_restored_within_grace_keeps_the_shift() -> None:
    r = roster_in(S.AVAILABLE)
    r.registration_lapsed("anna", 100.0)
    r.registration_restored("anna", 130.0)
    assert r.tick(1000.0) == []
    assert r.get("anna").offerable


def test_lapse_during_a_call_waits_for_the_call_to_end() -> None:
    r = roster_in(S.IN_CALL)
    r.registration_lapsed("anna", 10.0)
    assert r.tick(500.0) == []
    assert r.get("anna").state is S.IN_CALL
    r.call_ended("anna", 600.0, 0.0)
    (out,) = r.tick(600.0)
    assert out.reason == REGISTRATION_LAPSED


def test_lapse_and_restore_are_refused_when_they_make_no_sense() -> None:
    r = roster_in(S.LOGGED_OUT)
    with pytest.raises(RosterError):
        r.registration_lapsed("anna", 1.0)
    r = roster_in(S.AVAILABLE)
    with pytest.raises(RosterError):
        r.registration_restored("anna", 1.0)
    r.registration_lapsed("anna", 1.0)
    with pytest.raises(RosterError):
        r.registration_lapsed("anna", 2.0)


def test_login_again_takes_the_new_profile_and_a_fresh_registration() -> None:
    r = roster_in(S.AVAILABLE)
    r.registration_lapsed("anna", 1.0)
    r.pause("anna", 2.0)
    r.logout("anna", 3.0)
    newer = Volunteer("anna", frozenset({"nl", "tr"}), region=None)
    r.login(newer, 4.0)
    v = r.get("anna")
    assert v is newer and v.registered and v.offerable and v.idle_since == 4.0


def test_a_logout_after_the_grace_clears_the_lapse() -> None:
    """Off shift a lapse means nothing: the volunteer is not 'unregistered' any more, so a
    registration coming back has nothing to restore and the next login starts afresh."""
    r = roster_in(S.AVAILABLE)
    r.registration_lapsed("anna", 100.0)
    r.tick(160.0)
    v = r.get("anna")
    assert v.state is S.LOGGED_OUT and v.registered and v.lapsed_since is None
    r.login(anna(), 200.0)
    assert r.get("anna").offerable
