"""Warm (consultative) handover as a state machine: pure transitions, no IO.

The volunteer pressed the hand-over keys: the caller is on hold (a short message, then music),
the destination (113, the info line, ...) is rung and, once it answers, the volunteer talks to
the professional first. Then the volunteer completes (a key, or hanging up: caller and
professional are bridged) or cancels (back to the caller). A destination that is busy,
unreachable, does not answer or refuses sends the volunteer back to the caller with the reason
spoken. `consultation.py` drives it: it feeds events in and carries the actions out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.Enum):
    DIALLING = "dialling"  # the caller on hold, the destination ringing, the volunteer waiting
    DIALLING_ALONE = "dialling_alone"  # ... and the volunteer has hung up: a blind handover now
    TRANSFERRING = "transferring"  # a handset's REFER: no consultation, connected on answer
    CONSULTING = "consulting"  # volunteer and professional talk, the caller on hold
    # final states
    COMPLETED = "completed"  # caller and professional bridged, the volunteer gone
    RETURNED = "returned"  # the volunteer is back with the caller
    FAILED = "failed"  # nobody took the caller: the volunteer had left, the destination failed
    CALLER_LEFT = "caller_left"  # the caller hung up on hold: everything ends
    QUEUED = "queued"  # a blind transfer to a colleague's queue: the caller waits there


FINAL = frozenset({State.COMPLETED, State.RETURNED, State.FAILED, State.CALLER_LEFT, State.QUEUED})


class Event(enum.Enum):
    ANSWERED = "answered"
    BUSY = "busy"
    UNREACHABLE = "unreachable"
    NO_ANSWER = "no_answer"
    REFUSED = "refused"
    COMPLETE_KEY = "complete_key"
    CANCEL_KEY = "cancel_key"
    VOLUNTEER_HUNG_UP = "volunteer_hung_up"
    PROFESSIONAL_HUNG_UP = "professional_hung_up"
    CALLER_HUNG_UP = "caller_hung_up"


FAILURES = frozenset({Event.BUSY, Event.UNREACHABLE, Event.NO_ANSWER, Event.REFUSED})


class Action(enum.Enum):
    """What the driver does on a transition, in the order given."""

    STOP_RINGING = "stop_ringing"  # CANCEL the destination (a late answer is BYEd)
    CONNECT_VOLUNTEER = "connect_volunteer"  # volunteer <-> professional
    TELL_REASON = "tell_reason"  # the volunteer hears why the destination failed
    HANG_UP_VOLUNTEER = "hang_up_volunteer"
    HANG_UP_PROFESSIONAL = "hang_up_professional"
    HANG_UP_ALL = "hang_up_all"  # the caller left: the other legs end too
    CONNECT_CALLER = "connect_caller"  # caller <-> professional, for the rest of the call
    TELL_CALLER_FAILED = "tell_caller_failed"  # nobody to return to: "the transfer failed"


@dataclass(frozen=True)
class Transition:
    state: State
    actions: tuple[Action, ...] = ()


def status_event(status: int) -> Event:
    """The event for a destination's final status (0: no answer before the ring timeout)."""
    if status == 200:
        return Event.ANSWERED
    if status == 0 or status == 487:
        return Event.NO_ANSWER
    if status in (486, 600):
        return Event.BUSY
    if status in (404, 408, 410, 480, 502, 503, 504):
        return Event.UNREACHABLE
    return Event.REFUSED


def step(state: State, event: Event) -> Transition:
    """The next state and what to do; an event that does not apply leaves the state as is."""
    if state in FINAL:
        return Transition(state)
    if event is Event.CALLER_HUNG_UP:
        return Transition(State.CALLER_LEFT, (Action.STOP_RINGING, Action.HANG_UP_ALL))
    match state, event:
        case State.DIALLING, Event.ANSWERED:
            return Transition(State.CONSULTING, (Action.CONNECT_VOLUNTEER,))
        case State.DIALLING, e if e in FAILURES:
            return Transition(State.RETURNED, (Action.TELL_REASON,))
        case State.DIALLING, Event.CANCEL_KEY:
            return Transition(State.RETURNED, (Action.STOP_RINGING,))
        case State.DIALLING, Event.VOLUNTEER_HUNG_UP:
            return Transition(State.DIALLING_ALONE)
        case State.TRANSFERRING, Event.ANSWERED:
            return Transition(State.COMPLETED, (Action.HANG_UP_VOLUNTEER, Action.CONNECT_CALLER))
        case State.TRANSFERRING, e if e in FAILURES:
            return Transition(State.RETURNED, (Action.TELL_REASON,))
        case State.TRANSFERRING, Event.VOLUNTEER_HUNG_UP:
            return Transition(State.DIALLING_ALONE)
        case State.DIALLING_ALONE, Event.ANSWERED:
            return Transition(State.COMPLETED, (Action.CONNECT_CALLER,))
        case State.DIALLING_ALONE, e if e in FAILURES:
            return Transition(State.FAILED, (Action.TELL_CALLER_FAILED,))
        case State.CONSULTING, Event.COMPLETE_KEY | Event.VOLUNTEER_HUNG_UP:
            return Transition(State.COMPLETED, (Action.HANG_UP_VOLUNTEER, Action.CONNECT_CALLER))
        case State.CONSULTING, Event.CANCEL_KEY:
            return Transition(State.RETURNED, (Action.HANG_UP_PROFESSIONAL,))
        case State.CONSULTING, Event.PROFESSIONAL_HUNG_UP:
            return Transition(State.RETURNED)
    return Transition(state)
