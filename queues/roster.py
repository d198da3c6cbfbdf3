"""Who is on shift and what each volunteer is doing: a sans-IO state machine.

Time is passed in (`now`, seconds on any monotonic scale); nothing here reads a clock,
touches a socket or knows about callers. Every transition appends a `RosterEvent` (for the
DB and metrics) that `take_events()` hands over; the method that caused it also returns it.
Events name volunteers and states only, never a call or a caller.

States::

    LOGGED_OUT --login--> AVAILABLE --offer--> RINGING --answered--> IN_CALL
    RINGING --missed--> AVAILABLE (or PAUSED "auto_paused" after `max_misses` in a row)
    RINGING --withdrawn--> AVAILABLE (the caller hung up or left the queue; no miss)
    IN_CALL --call_ended--> WRAP_UP --tick, at wrap_up_until--> AVAILABLE
    AVAILABLE / WRAP_UP --pause--> PAUSED --resume--> AVAILABLE
    AVAILABLE / WRAP_UP / PAUSED --logout--> LOGGED_OUT

A lapsed handset registration is a flag beside the state (`registered`): such a volunteer is
not offered calls, and `tick` logs them out once `registration_grace` seconds have passed
without the registration coming back (unless they are still ringing or in a call: that ends
through the call's own events first). Logging out clears the flag: off shift, a lapse means
nothing, and a registration coming back then has nothing to restore.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "AUTO_PAUSED",
    "REGISTRATION_LAPSED",
    "EventKind",
    "Roster",
    "RosterError",
    "RosterEvent",
    "Volunteer",
    "VolunteerState",
]

AUTO_PAUSED = "auto_paused"  # reason on the PAUSED event after too many missed offers
REGISTRATION_LAPSED = "registration_lapsed"  # reason on the logout after the grace period


class VolunteerState(enum.StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    IN_CALL = "in_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class EventKind(enum.StrEnum):
    LOGIN = "login"
    LOGOUT = "logout"
    PAUSE = "pause"
    RESUME = "resume"
    OFFER = "offer"
    WITHDRAWN = "withdrawn"
    ANSWERED = "answered"
    MISSED = "missed"
    AUTO_PAUSED = "auto_paused"
    CALL_ENDED = "call_ended"
    WRAP_UP_ENDED = "wrap_up_ended"
    REGISTRATION_LAPSED = "registration_lapsed"
    REGISTRATION_RESTORED = "registration_restored"


class RosterError(Exception):
    """An action that the volunteer's current state does not allow (or an unknown name)."""


@dataclass(frozen=True)
class RosterEvent:
    kind: EventKind
    username: str
    from_state: VolunteerState
    to_state: VolunteerState
    at: float
    reason: str | None = None


# States a volunteer may act from; everything else raises RosterError.
_CAN_PAUSE = frozenset({VolunteerState.AVAILABLE, VolunteerState.WRAP_UP})
_CAN_LOGOUT = frozenset({VolunteerState.AVAILABLE, VolunteerState.WRAP_UP, VolunteerState.PAUSED})


@dataclass
class Volunteer:
    username: str
    languages: frozenset[str]
    skills: frozenset[str] = frozenset()
    region: str | None = None
    # runtime, owned by Roster
    state: VolunteerState = VolunteerState.LOGGED_OUT
    state_since: float = 0.0
    idle_since: float = 0.0  # last time they became free for a call; longest idle goes first
    consecutive_misses: int = 0
    wrap_up_until: float | None = None
    pause_reason: str | None = None
    registered: bool = True
    lapsed_since: float | None = None

    def serves(self, language: str, skill: str | None) -> bool:
        return language in self.languages and (skill is None or skill in self.skills)

    @property
    def on_shift(self) -> bool:
        """Logged in and reachable: counts as capacity for a queue (even if busy now)."""
        return self.registered and self.state not in (
            VolunteerState.LOGGED_OUT,
            VolunteerState.PAUSED,
        )

    @property
    def offerable(self) -> bool:
        return self.registered and self.state is VolunteerState.AVAILABLE


@dataclass
class Roster:
    max_misses: int = 3
    registration_grace: float = 120.0
    _volunteers: dict[str, Volunteer] = field(default_factory=dict, init=False, repr=False)
    _events: list[RosterEvent] = field(default_factory=list, init=False, repr=False)

    # --- queries -------------------------------------------------------------------

    def get(self, username: str) -> Volunteer:
        try:
            return self._volunteers[username]
        except KeyError:
            raise RosterError(f"unknown volunteer {username!r}") from None

    def __contains__(self, username: object) -> bool:
        return username in self._volunteers

    def volunteers(self) -> Iterable[Volunteer]:
        return self._volunteers.values()

    def take_events(self) -> list[RosterEvent]:
        """Events since the last call, oldest first (for the DB and metrics)."""
        events, self._events = self._events, []
        return events

    # --- transitions ---------------------------------------------------------------

    def login(self, volunteer: Volunteer, now: float) -> RosterEvent:
        """Start a shift with this profile (languages, skills, region may have changed)."""
        known = self._volunteers.get(volunteer.username)
        if known is not None and known.state is not VolunteerState.LOGGED_OUT:
            raise RosterError(f"{volunteer.username!r} is already logged in ({known.state})")
        volunteer.state = VolunteerState.LOGGED_OUT
        volunteer.consecutive_misses = 0
        volunteer.wrap_up_until = None
        volunteer.pause_reason = None
        volunteer.registered = True
        volunteer.lapsed_since = None
        self._volunteers[volunteer.username] = volunteer
        volunteer.idle_since = now
        return self._move(volunteer, VolunteerState.AVAILABLE, EventKind.LOGIN, now)

    def restore(self, volunteer: Volunteer) -> None:
        """Put back a volunteer as they were before a restart (no event: nothing changed for
        them). A call does not survive a restart, so RINGING and IN_CALL are not restorable:
        the caller turns those into AVAILABLE or WRAP_UP first."""
        if volunteer.state in (VolunteerState.RINGING, VolunteerState.IN_CALL):
            raise RosterError(f"{volunteer.username!r} cannot be restored {volunteer.state}")
        known = self._volunteers.get(volunteer.username)
        if known is not None and known.state is not VolunteerState.LOGGED_OUT:
            raise RosterError(f"{volunteer.username!r} is already on shift ({known.state})")
        self._volunteers[volunteer.username] = volunteer

    def forget(self, username: str) -> None:
        """Drop a volunteer without an event (a standby node taking over reads everyone's
        shift afresh from the shared database). One ringing or in a call here is kept."""
        v = self._volunteers.get(username)
        if v is not None and v.state in (VolunteerState.RINGING, VolunteerState.IN_CALL):
            raise RosterError(f"{username!r} cannot be forgotten {v.state}")
        self._volunteers.pop(username, None)

    def logout(self, username: str, now: float, reason: str | None = None) -> RosterEvent:
        v = self._require(username, _CAN_LOGOUT, "log out")
        v.wrap_up_until = None
        v.pause_reason = None
        v.registered = True  # a lapse matters only on shift: the next login starts afresh
        v.lapsed_since = None
        return self._move(v, VolunteerState.LOGGED_OUT, EventKind.LOGOUT, now, reason)

    def pause(self, username: str, now: float, reason: str | None = None) -> RosterEvent:
        v = self._require(username, _CAN_PAUSE, "pause")
        v.wrap_up_until = None
        v.pause_reason = reason
        return self._move(v, VolunteerState.PAUSED, EventKind.PAUSE, now, reason)

    def resume(self, username: str, now: float) -> RosterEvent:
        v = self._require(username, {VolunteerState.PAUSED}, "resume")
        v.pause_reason = None
        v.consecutive_misses = 0
        v.idle_since = now
        return self._move(v, VolunteerState.AVAILABLE, EventKind.RESUME, now)

    def offer(self, username: str, now: float) -> RosterEvent:
        v = self._require(username, {VolunteerState.AVAILABLE}, "be offered a call")
        if not v.registered:
            raise RosterError(f"{username!r} has no registered handset")
        return self._move(v, VolunteerState.RINGING, EventKind.OFFER, now)

    def withdraw(self, username: str, now: float) -> RosterEvent:
        """The offer ended through no fault of the volunteer (caller gone): no miss counted,
        and they keep their place in the idle order."""
        v = self._require(username, {VolunteerState.RINGING}, "have an offer withdrawn")
        return self._move(v, VolunteerState.AVAILABLE, EventKind.WITHDRAWN, now)

    def answered(self, username: str, now: float) -> RosterEvent:
        v = self._require(username, {VolunteerState.RINGING}, "answer")
        v.consecutive_misses = 0
        return self._move(v, VolunteerState.IN_CALL, EventKind.ANSWERED, now)

    def missed(self, username: str, now: float) -> RosterEvent:
        """Ring-no-answer. The volunteer goes to the back of the idle order (so the caller is
        offered to someone else next); after `max_misses` in a row they are paused."""
        v = self._require(username, {VolunteerState.RINGING}, "miss a call")
        v.consecutive_misses += 1
        v.idle_since = now
        if v.consecutive_misses >= self.max_misses:
            v.pause_reason = AUTO_PAUSED
            return self._move(v, VolunteerState.PAUSED, EventKind.AUTO_PAUSED, now, AUTO_PAUSED)
        return self._move(v, VolunteerState.AVAILABLE, EventKind.MISSED, now)

    def call_ended(self, username: str, now: float, wrap_up: float) -> RosterEvent:
        """Start `wrap_up` seconds of wrap-up (0 or less: available at once)."""
        v = self._require(username, {VolunteerState.IN_CALL}, "end a call")
        if wrap_up > 0:
            v.wrap_up_until = now + wrap_up
            return self._move(v, VolunteerState.WRAP_UP, EventKind.CALL_ENDED, now)
        v.idle_since = now
        return self._move(v, VolunteerState.AVAILABLE, EventKind.CALL_ENDED, now)

    def registration_lapsed(self, username: str, now: float) -> RosterEvent:
        v = self.get(username)
        if v.state is VolunteerState.LOGGED_OUT:
            raise RosterError(f"{username!r} cannot lapse while logged out")
        if not v.registered:
            raise RosterError(f"{username!r}'s registration has already lapsed")
        v.registered = False
        v.lapsed_since = now
        return self._record(EventKind.REGISTRATION_LAPSED, v, v.state, now)

    def registration_restored(self, username: str, now: float) -> RosterEvent:
        v = self.get(username)
        if v.registered or v.state is VolunteerState.LOGGED_OUT:
            raise RosterError(f"{username!r} has no lapsed registration to restore")
        v.registered = True
        v.lapsed_since = None
        return self._record(EventKind.REGISTRATION_RESTORED, v, v.state, now)

    def tick(self, now: float) -> list[RosterEvent]:
        """Apply what time alone decides: wrap-ups that are over, lapses past their grace."""
        events: list[RosterEvent] = []
        for v in list(self._volunteers.values()):
            if (
                v.state is VolunteerState.WRAP_UP
                and v.wrap_up_until is not None
                and now >= v.wrap_up_until
            ):
                v.idle_since = v.wrap_up_until
                v.wrap_up_until = None
                events.append(self._move(v, VolunteerState.AVAILABLE, EventKind.WRAP_UP_ENDED, now))
            if (
                not v.registered
                and v.lapsed_since is not None
                and now - v.lapsed_since >= self.registration_grace
                and v.state in _CAN_LOGOUT
            ):
                events.append(self.logout(v.username, now, REGISTRATION_LAPSED))
        return events

    # --- internals -----------------------------------------------------------------

    def _require(self, username: str, allowed: Iterable[VolunteerState], what: str) -> Volunteer:
        v = self.get(username)
        if v.state not in allowed:
            raise RosterError(f"{username!r} cannot {what} while {v.state}")
        return v

    def _move(
        self,
        v: Volunteer,
        to: VolunteerState,
        kind: EventKind,
        now: float,
        reason: str | None = None,
    ) -> RosterEvent:
        before = v.state
        v.state = to
        v.state_since = now
        return self._record(kind, v, before, now, reason)

    def _record(
        self,
        kind: EventKind,
        v: Volunteer,
        before: VolunteerState,
        now: float,
        reason: str | None = None,
    ) -> RosterEvent:
        event = RosterEvent(kind, v.username, before, v.state, now, reason)
        self._events.append(event)
        return event
