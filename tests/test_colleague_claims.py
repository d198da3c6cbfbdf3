"""The colleague rung for a volunteer's transfer to their queue, as the dispatcher keeps them:
claimed (ringing: no queue offers them a call), then answered and done (with the queue's
wrap-up only if the caller became theirs), missed (counted, as a queue's offer is) or
withdrawn (not counted). Pure: the dispatcher's verbs on a roster, no IO."""

from __future__ import annotations

from queues.dispatcher import Dispatcher
from queues.engine import QueueConfig
from queues.roster import Roster, Volunteer, VolunteerState

S = VolunteerState


def dispatcher(*, offering: bool = True) -> tuple[Dispatcher, Roster, list[float]]:
    clock = [100.0]
    roster = Roster(max_misses=2)
    roster.login(Volunteer("vera", frozenset({"nl"})), 0.0)
    roster.login(Volunteer("amal", frozenset({"ar"})), 1.0)
    d = Dispatcher(roster, now=lambda: clock[0], offering=lambda: offering)
    d.configure({"arabic": QueueConfig(name="arabic", language="ar", wrap_up=30.0)})
    return d, roster, clock


def state(roster: Roster, user: str) -> VolunteerState:
    return roster.get(user).state


def test_a_colleague_who_takes_the_caller_wraps_up_by_their_queue() -> None:
    d, r, clock = dispatcher()
    assert d.claim_colleague("arabic", "vera", lambda u: True) == "amal"
    assert state(r, "amal") is S.RINGING
    d.colleague_answered("amal")
    assert state(r, "amal") is S.IN_CALL
    d.colleague_done("amal", "arabic")
    assert state(r, "amal") is S.WRAP_UP
    clock[0] += 30
    d.step()
    assert state(r, "amal") is S.AVAILABLE


def test_only_consulted_a_colleague_is_free_at_once() -> None:
    d, r, _ = dispatcher()
    d.claim_colleague("arabic", "vera", lambda u: True)
    d.colleague_answered("amal")
    d.colleague_done("amal", None)
    assert state(r, "amal") is S.AVAILABLE


def test_a_missed_transfer_counts_as_a_miss_a_withdrawn_one_does_not() -> None:
    d, r, _ = dispatcher()
    d.claim_colleague("arabic", "vera", lambda u: True)
    d.colleague_withdrawn("amal")
    d.claim_colleague("arabic", "vera", lambda u: True)
    d.colleague_missed("amal")
    assert state(r, "amal") is S.AVAILABLE  # one miss of two allowed
    d.claim_colleague("arabic", "vera", lambda u: True)
    d.colleague_missed("amal")
    assert state(r, "amal") is S.PAUSED  # the second in a row: paused, as for queue offers


def test_nobody_is_claimed_on_a_standby_node_or_without_a_live_handset() -> None:
    d, r, _ = dispatcher(offering=False)
    assert d.claim_colleague("arabic", "vera", lambda u: True) is None
    d, r, _ = dispatcher()
    assert d.claim_colleague("arabic", "vera", lambda u: False) is None
    assert state(r, "amal") is S.AVAILABLE
    assert d.staffed("arabic") and not d.staffed("arabic", exclude="amal")


def test_an_unexpected_state_is_logged_not_raised() -> None:
    d, r, _ = dispatcher()
    d.colleague_answered("amal")  # never claimed: nothing to do, the dispatcher goes on
    assert state(r, "amal") is S.AVAILABLE
