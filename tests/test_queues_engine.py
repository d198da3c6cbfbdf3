"""The queue engine: who is offered which caller, when, and what a waiting caller is told."""

from __future__ import annotations

import pytest

from ivr.model import Queue, RegionalPreference
from pbx.calls.queue_settings import queue_config
from queues.engine import DEFAULT_HANDLE_TIME, Offer, QueueConfig, QueueEngine, QueueError
from queues.roster import AUTO_PAUSED, REGISTRATION_LAPSED, Roster, Volunteer, VolunteerState

S = VolunteerState

QUEUES = {
    "dutch": QueueConfig(name="dutch", language="nl", max_wait=600.0, wrap_up=30.0),
    "arabic": QueueConfig(name="arabic", language="ar", wrap_up=30.0),
    "night113": QueueConfig(name="night113", language="nl", skill="113", priority=10, wrap_up=0.0),
}


def make(*volunteers: Volunteer, max_misses: int = 3, grace: float = 120.0) -> QueueEngine:
    roster = Roster(max_misses=max_misses, registration_grace=grace)
    for i, v in enumerate(volunteers):
        roster.login(v, float(i))  # the first volunteer given has been idle longest
    return QueueEngine(QUEUES, roster)


def vol(
    name: str, *langs: str, skills: tuple[str, ...] = (), region: str | None = None
) -> Volunteer:
    return Volunteer(name, frozenset(langs or ("nl",)), frozenset(skills), region)


def pairs(offers: list[Offer]) -> set[tuple[str, str]]:
    return {(o.call_ref, o.username) for o in offers}


def test_language_must_match() -> None:
    e = make(vol("piet", "nl"), vol("fatima", "nl", "ar"))
    e.enqueue("c1", "arabic", None, 10.0)
    assert pairs(e.dispatch(10.0)) == {("c1", "fatima")}


def test_nobody_speaking_the_language_means_no_offer() -> None:
    e = make(vol("piet", "nl"))
    e.enqueue("c1", "arabic", None, 10.0)
    assert e.dispatch(10.0) == []
    assert e.estimated_wait("c1", 10.0) is None


def test_113_calls_go_only_to_volunteers_with_the_skill() -> None:
    e = make(vol("piet"), vol("kees", skills=("113",)))
    e.enqueue("c1", "night113", None, 10.0)
    (offer,) = e.dispatch(10.0)
    assert (offer.username, offer.queue) == ("kees", "night113")


def test_longest_idle_volunteer_gets_the_call() -> None:
    e = make(vol("a"), vol("b"), vol("c"))
    r = e.roster
    # a and b take calls; b's wrap-up ends last, so c (idle since login) then a are idlest
    for ref in ("x", "y"):
        e.enqueue(ref, "dutch", None, 5.0)
    assert pairs(e.dispatch(5.0)) == {("x", "a"), ("y", "b")}
    e.connected("x", "a", 6.0)
    e.connected("y", "b", 6.0)
    e.call_ended("x", 100.0)
    e.call_ended("y", 200.0)
    e.dispatch(1000.0)  # both wrap-ups are over
    assert r.get("a").idle_since == 130.0 and r.get("b").idle_since == 230.0
    e.enqueue("z1", "dutch", None, 1000.0)
    assert pairs(e.dispatch(1000.0)) == {("z1", "c")}
    e.enqueue("z2", "dutch", None, 1001.0)
    assert pairs(e.dispatch(1001.0)) == {("z2", "a")}


def test_no_second_offer_while_ringing_in_call_wrap_up_or_paused() -> None:
    e = make(vol("a"))
    e.enqueue("c1", "dutch", None, 0.0)
    e.enqueue("c2", "dutch", None, 1.0)
    assert pairs(e.dispatch(1.0)) == {("c1", "a")}
    assert e.dispatch(2.0) == []  # ringing
    e.connected("c1", "a", 3.0)
    assert e.dispatch(4.0) == []  # in call
    e.call_ended("c1", 100.0)
    assert e.dispatch(129.9) == []  # wrap-up (30 s) delays availability
    e.roster.pause("a", 129.9)
    assert e.dispatch(500.0) == []  # paused
    e.roster.resume("a", 501.0)
    assert pairs(e.dispatch(501.0)) == {("c2", "a")}


def test_wrap_up_ends_by_itself_and_then_the_next_caller_is_offered() -> None:
    e = make(vol("a"))
    e.enqueue("c1", "dutch", None, 0.0)
    e.enqueue("c2", "dutch", None, 0.0)
    e.dispatch(0.0)
    e.connected("c1", "a", 1.0)
    e.call_ended("c1", 61.0)
    assert e.roster.get("a").state is S.WRAP_UP
    assert pairs(e.dispatch(91.0)) == {("c2", "a")}


def test_one_offer_per_caller_even_with_many_free_volunteers() -> None:
    e = make(vol("a"), vol("b"), vol("c"))
    e.enqueue("c1", "dutch", None, 0.0)
    offers = e.dispatch(0.0)
    assert pairs(offers) == {("c1", "a")}
    assert e.dispatch(1.0) == []
    assert [v.state for v in e.roster.volunteers()] == [S.RINGING, S.AVAILABLE, S.AVAILABLE]


def test_ring_no_answer_keeps_the_callers_place_and_tries_someone_else() -> None:
    e = make(vol("a"), vol("b"))
    e.enqueue("c1", "dutch", None, 0.0)
    (offer,) = e.dispatch(0.0)
    assert (offer.username, offer.ring_until) == ("a", 20.0)
    e.enqueue("c2", "dutch", None, 5.0)
    e.enqueue("c3", "dutch", None, 6.0)
    e.ring_no_answer("c1", "a", 20.0)
    assert [e.position(c) for c in ("c1", "c2", "c3")] == [1, 2, 3]
    assert e.roster.get("a").consecutive_misses == 1
    # c1 is still first in line; b is now the longest idle, so c1 rings there
    assert pairs(e.dispatch(20.0)) == {("c1", "b"), ("c2", "a")}


def test_auto_pause_after_repeated_misses_is_reported() -> None:
    e = make(vol("a"), max_misses=2)
    e.enqueue("c1", "dutch", None, 0.0)
    e.roster.take_events()
    for t in (0.0, 30.0):
        (offer,) = e.dispatch(t)
        e.ring_no_answer(offer.call_ref, "a", t + 20.0)
    assert e.roster.get("a").state is S.PAUSED
    events = e.roster.take_events()
    assert events[-1].reason == AUTO_PAUSED and events[-1].to_state is S.PAUSED
    assert e.dispatch(100.0) == []
    assert e.position("c1") == 1


def test_regional_preference_then_national_after_local_wait() -> None:
    e = make(vol("national"), vol("utrecht1", region="utrecht"), vol("utrecht2", region="utrecht"))
    # the utrecht volunteers are busy
    for ref in ("u1", "u2", "n1"):
        e.enqueue(ref, "dutch", None, 0.0)
    e.dispatch(0.0)
    for ref, who in (("u1", "national"), ("u2", "utrecht1"), ("n1", "utrecht2")):
        e.connected(ref, who, 0.0)
    e.call_ended("u1", 50.0)
    e.dispatch(80.0)  # national free again after wrap-up
    e.enqueue("local", "dutch", "utrecht", 100.0)
    assert e.dispatch(100.0) == []  # held for utrecht while it has volunteers on shift
    assert e.dispatch(129.9) == []
    assert pairs(e.dispatch(130.0)) == {("local", "national")}  # local_wait (30 s) is over


def test_local_caller_goes_to_own_region_first_even_if_others_are_idler() -> None:
    e = make(vol("national"), vol("utrecht1", region="utrecht"))
    e.enqueue("local", "dutch", "utrecht", 10.0)
    e.enqueue("plain", "dutch", None, 11.0)
    assert pairs(e.dispatch(11.0)) == {("local", "utrecht1"), ("plain", "national")}


def test_regions_match_whatever_their_case() -> None:
    """A volunteer set up as "utrecht" takes the calls of the plan's "Utrecht" number first."""
    e = make(vol("national"), vol("u", region="utrecht"))
    e.enqueue("local", "dutch", "Utrecht", 10.0)
    assert pairs(e.dispatch(10.0)) == {("local", "u")}
    e2 = make(vol("national"), vol("u", region=" UTRECHT "))
    e2.enqueue("local", "dutch", "utrecht", 10.0)
    e2.enqueue("other", "dutch", None, 11.0)
    assert pairs(e2.dispatch(11.0)) == {("local", "u"), ("other", "national")}


def test_no_volunteer_of_that_region_on_shift_means_national_at_once() -> None:
    e = make(vol("national"), vol("zwolle", region="zwolle"))
    e.roster.pause("zwolle", 1.0)  # paused volunteers do not hold calls for their region
    e.enqueue("local", "dutch", "zwolle", 10.0)
    e.enqueue("other", "dutch", "groningen", 10.0)
    assert pairs(e.dispatch(10.0)) == {("local", "national")}
    e.roster.resume("zwolle", 11.0)
    assert pairs(e.dispatch(11.0)) == {("other", "zwolle")}


def test_multi_queue_fairness_neither_queue_starves() -> None:
    """Four simulated hours of overload: two volunteers speak Dutch and Turkish; Dutch
    callers (priority 5) arrive every minute, Turkish (priority 0) every two minutes, calls
    take 150 s + 30 s wrap-up. Both queues keep being served to the end, Dutch callers wait
    less, and the longest waits stand in the ratio of the priority weights (1.5)."""
    queues = {
        "nl": QueueConfig(name="nl", language="nl", priority=5, wrap_up=30.0),
        "tr": QueueConfig(name="tr", language="tr", priority=0, wrap_up=30.0),
    }
    roster = Roster()
    for name in ("a", "b"):
        roster.login(Volunteer(name, frozenset({"nl", "tr"})), 0.0)
    e = QueueEngine(queues, roster)
    joined: dict[str, float] = {}
    waits: dict[str, list[tuple[float, float]]] = {"nl": [], "tr": []}
    ends: dict[str, float] = {}
    end_of_run = 4 * 3600
    for t in range(0, end_of_run, 5):
        now = float(t)
        for q, every in (("nl", 60), ("tr", 120)):
            if t % every == 0:
                ref = f"{q}{t}"
                e.enqueue(ref, q, None, now)
                joined[ref] = now
        for ref, end in list(ends.items()):
            if end <= now:
                e.call_ended(ref, now)
                del ends[ref]
        for offer in e.dispatch(now):
            e.connected(offer.call_ref, offer.username, now)
            waits[offer.queue].append((now, now - joined[offer.call_ref]))
            ends[offer.call_ref] = now + 150.0
    last_hour = end_of_run - 3600
    for q in ("nl", "tr"):
        assert sum(1 for at, _ in waits[q] if at >= last_hour) >= 5, q
    assert len(waits["nl"]) > len(waits["tr"]) >= 20
    longest = {q: max(w for _, w in waits[q]) for q in waits}
    assert 1.3 < longest["tr"] / longest["nl"] < 1.7


def test_higher_priority_wins_when_waits_are_equal() -> None:
    e = make(vol("kees", skills=("113",)))
    e.enqueue("dutch_caller", "dutch", None, 0.0)
    e.enqueue("crisis_caller", "night113", None, 0.0)
    assert pairs(e.dispatch(0.0)) == {("crisis_caller", "kees")}


def test_requeue_at_front_when_the_handset_vanishes_mid_call() -> None:
    e = make(vol("a"), vol("b"), grace=60.0)
    e.enqueue("c1", "dutch", "utrecht", 0.0)
    (offer,) = e.dispatch(0.0)
    e.connected("c1", offer.username, 2.0)
    e.roster.pause("b", 3.0)
    e.enqueue("c2", "dutch", None, 5.0)
    e.enqueue("c3", "dutch", None, 6.0)
    e.handset_lost("c1", 100.0)
    assert [e.position(c) for c in ("c1", "c2", "c3")] == [1, 2, 3]
    a = e.roster.get("a")
    assert a.state is S.AVAILABLE and not a.registered
    assert e.dispatch(101.0) == []  # a's handset is gone: no offer to it
    e.roster.resume("b", 102.0)
    assert pairs(e.dispatch(102.0)) == {("c1", "b")}
    e.dispatch(160.0)
    assert e.roster.get("a").state is S.LOGGED_OUT
    assert e.roster.take_events()[-1].reason == REGISTRATION_LAPSED


def test_handset_back_within_grace_gets_calls_again() -> None:
    e = make(vol("a"))
    e.enqueue("c1", "dutch", None, 0.0)
    e.dispatch(0.0)
    e.connected("c1", "a", 1.0)
    e.handset_lost("c1", 10.0)
    e.roster.registration_restored("a", 20.0)
    assert pairs(e.dispatch(20.0)) == {("c1", "a")}


def test_abandon_reports_the_wait_and_frees_a_ringing_volunteer_without_a_miss() -> None:
    e = make(vol("a"))
    e.enqueue("c1", "dutch", None, 100.0)
    e.enqueue("c2", "dutch", None, 110.0)
    e.dispatch(110.0)  # c1 rings at a
    assert e.abandon("c2", 155.0) == 45.0
    assert e.abandon("c1", 156.0) == 56.0
    a = e.roster.get("a")
    assert a.state is S.AVAILABLE and a.consecutive_misses == 0
    with pytest.raises(QueueError):
        e.abandon("c1", 157.0)


def test_remove_takes_a_caller_out_quietly() -> None:
    e = make(vol("a"))
    e.enqueue("c1", "dutch", None, 0.0)
    e.enqueue("c2", "dutch", None, 1.0)
    e.remove("c1", 2.0)
    assert e.position("c2") == 1 and e.waiting("dutch") == 1


def test_overflow_after_max_wait() -> None:
    e = make(vol("a"))
    e.roster.pause("a", 0.0)
    e.enqueue("c1", "dutch", None, 0.0)
    e.enqueue("c2", "dutch", None, 10.0)
    e.enqueue("c3", "arabic", None, 0.0)  # no max_wait: waits on
    assert e.overflowed(599.9) == []
    assert e.overflowed(600.0) == [("c1", "dutch")]
    assert e.overflowed(600.0) == []
    assert e.overflowed(10_000.0) == [("c2", "dutch")]
    assert e.waiting("dutch") == 0 and e.waiting("arabic") == 1


def test_with_nobody_trained_on_shift_a_caller_overflows_after_unstaffed_wait() -> None:
    """The 113 night line at 03:00: an untrained volunteer on shift does not count; once
    someone trained is on shift, the caller waits the full max_wait for them."""
    night = QueueConfig(name="night113", language="nl", skill="113", max_wait=120.0,
                        unstaffed_wait=20.0)  # fmt: skip
    e = QueueEngine({"night113": night}, Roster())
    e.roster.login(vol("untrained"), 0.0)
    e.enqueue("c1", "night113", None, 0.0)
    assert e.overflowed(19.9) == []
    assert e.overflowed(20.0) == [("c1", "night113")]
    e.roster.login(vol("trained", skills=("113",)), 30.0)
    e.enqueue("c2", "night113", None, 30.0)
    e.dispatch(30.0)  # offered to the trained volunteer, who lets it ring out
    e.ring_no_answer("c2", "trained", 50.0)
    assert e.overflowed(60.0) == []  # someone trained is on shift: max_wait holds
    assert e.overflowed(150.0) == [("c2", "night113")]


def test_a_ringing_caller_overflows_only_after_the_ring_ends() -> None:
    e = make(vol("a"))
    e.enqueue("c1", "dutch", None, 0.0)
    e.dispatch(590.0)
    assert e.overflowed(600.0) == []
    e.ring_no_answer("c1", "a", 610.0)
    assert e.overflowed(610.0) == [("c1", "dutch")]


def test_position_follows_the_line() -> None:
    e = make()
    for i, ref in enumerate(("c1", "c2", "c3")):
        e.enqueue(ref, "dutch", None, float(i))
    e.enqueue("other", "arabic", None, 0.5)
    assert [e.position(c) for c in ("c1", "c2", "c3", "other")] == [1, 2, 3, 1]
    e.abandon("c1", 5.0)
    assert [e.position(c) for c in ("c2", "c3")] == [1, 2]


def test_estimated_wait_is_honest() -> None:
    e = make(vol("a"), vol("b"))
    e.enqueue("c1", "dutch", None, 0.0)
    assert e.estimated_wait("c1", 0.0) == 0.0  # a volunteer is free
    e.enqueue("c2", "dutch", None, 0.0)
    offers = e.dispatch(0.0)
    for offer in offers:
        e.connected(offer.call_ref, offer.username, 0.0)
    e.call_ended("c1", 270.0)  # handle time 270 + 30 wrap-up = 300
    e.call_ended("c2", 270.0)
    for i in range(4):
        e.enqueue(f"w{i}", "dutch", None, 271.0)
    e.roster.pause("b", 280.0)
    e.dispatch(300.0)  # a offered w0; b paused: 1 volunteer serves
    assert e.estimated_wait("w0", 300.0) == 0.0  # ringing
    assert e.estimated_wait("w1", 300.0) == 300.0
    assert e.estimated_wait("w3", 300.0) == 900.0
    e.roster.resume("b", 301.0)
    assert e.estimated_wait("w3", 301.0) == 300.0  # 2 ahead, 1 free, 2 serving: 2 * 300 / 2


def test_estimated_wait_before_any_call_uses_the_default_handle_time() -> None:
    e = make(vol("a"))
    e.enqueue("c1", "dutch", None, 0.0)
    e.enqueue("c2", "dutch", None, 0.0)
    e.dispatch(0.0)
    assert e.estimated_wait("c2", 0.0) == DEFAULT_HANDLE_TIME


def test_unknown_queue_duplicates_and_wrong_volunteer_are_refused() -> None:
    e = make(vol("a"), vol("b"))
    with pytest.raises(QueueError):
        e.enqueue("c1", "nope", None, 0.0)
    e.enqueue("c1", "dutch", None, 0.0)
    with pytest.raises(QueueError):
        e.enqueue("c1", "dutch", None, 0.0)
    e.dispatch(0.0)
    with pytest.raises(QueueError):
        e.connected("c1", "b", 1.0)
    with pytest.raises(QueueError):
        e.call_ended("c1", 1.0)


def test_config_from_the_dialplan_queue() -> None:
    q = Queue(
        name="turkish",
        language="tr",
        schedule="evenings",
        priority=2,
        skill=None,
        max_wait=300,
        overflow="dutch_queue",
        regional=RegionalPreference(prefer_local=False, local_wait=15),
        ring_timeout=25,
        wrap_up=60,
    )
    c = queue_config(q)
    assert (c.name, c.language, c.priority, c.max_wait, c.prefer_local, c.local_wait) == (
        "turkish",
        "tr",
        2,
        300,
        False,
        15,
    )
    assert (c.ring_timeout, c.wrap_up) == (25.0, 60.0)


def test_reload_keeps_statistics_and_queues_callers_still_wait_in() -> None:
    e = make(vol("piet", "nl"))
    e.enqueue("c1", "arabic", None, 0.0)
    e.enqueue("c2", "dutch", None, 4.0)
    assert e.joined_at("c2") == 4.0
    assert e.longest_wait("arabic", 10.0) == 10.0 and e.longest_wait("night113", 10.0) == 0.0
    # a reloaded plan without the Arabic queue and a longer Dutch maximum
    e.configure({"dutch": QueueConfig(name="dutch", language="nl", max_wait=1200.0)})
    assert e.queues["dutch"].max_wait == 1200.0
    assert e.position("c1") == 1 and e.waiting("arabic") == 1  # still waits, old settings
    assert e.overflowed(700.0) == []  # the Dutch caller is now within the new maximum
