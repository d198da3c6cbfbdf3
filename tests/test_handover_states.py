"""The warm handover's state machine (pbx/calls/handover.py) and the client side of digest
(pbx/sip/client_auth.py): pure, no IO."""

from __future__ import annotations

import pytest

from pbx.calls.handover import Action, Event, State, status_event, step
from pbx.sip.client_auth import ClientCredentials, authorize
from pbx.sip.digest import Credential, NonceManager, parse_authorization, verify
from pbx.sip.headers import Headers
from pbx.sip.message import Response


@pytest.mark.parametrize(
    ("status", "event"),
    [(200, Event.ANSWERED), (486, Event.BUSY), (600, Event.BUSY), (408, Event.UNREACHABLE),
     (503, Event.UNREACHABLE), (0, Event.NO_ANSWER), (487, Event.NO_ANSWER),
     (403, Event.REFUSED), (488, Event.REFUSED)],
)  # fmt: skip
def test_final_status_is_the_event(status: int, event: Event) -> None:
    assert status_event(status) is event


def test_a_failed_destination_returns_the_volunteer_with_the_reason() -> None:
    for failure in (Event.BUSY, Event.UNREACHABLE, Event.NO_ANSWER, Event.REFUSED):
        assert step(State.DIALLING, failure).state is State.RETURNED
        assert step(State.DIALLING, failure).actions == (Action.TELL_REASON,)


def test_completing_hangs_up_the_volunteer_then_connects_the_caller() -> None:
    for how in (Event.COMPLETE_KEY, Event.VOLUNTEER_HUNG_UP):
        t = step(State.CONSULTING, how)
        assert (t.state, t.actions) == (
            State.COMPLETED, (Action.HANG_UP_VOLUNTEER, Action.CONNECT_CALLER)
        )  # fmt: skip


def test_cancelling_returns_to_the_caller() -> None:
    assert step(State.CONSULTING, Event.CANCEL_KEY).actions == (Action.HANG_UP_PROFESSIONAL,)
    assert step(State.DIALLING, Event.CANCEL_KEY).actions == (Action.STOP_RINGING,)
    assert step(State.CONSULTING, Event.PROFESSIONAL_HUNG_UP).state is State.RETURNED


def test_a_volunteer_hanging_up_while_it_rings_makes_it_blind() -> None:
    assert step(State.DIALLING, Event.VOLUNTEER_HUNG_UP).state is State.DIALLING_ALONE
    assert step(State.DIALLING_ALONE, Event.ANSWERED).state is State.COMPLETED
    failed = step(State.DIALLING_ALONE, Event.BUSY)
    assert (failed.state, failed.actions) == (State.FAILED, (Action.TELL_CALLER_FAILED,))


def test_the_caller_leaving_ends_everything_and_final_states_stay() -> None:
    for state in (State.DIALLING, State.DIALLING_ALONE, State.CONSULTING):
        assert step(state, Event.CALLER_HUNG_UP).state is State.CALLER_LEFT
    for final in (State.COMPLETED, State.RETURNED, State.FAILED, State.CALLER_LEFT):
        assert step(final, Event.ANSWERED) == step(final, Event.CALLER_HUNG_UP)
        assert step(final, Event.ANSWERED).actions == ()
    assert step(State.DIALLING, Event.COMPLETE_KEY).state is State.DIALLING  # not yet


@pytest.mark.parametrize("status", [401, 407])
def test_our_answer_to_a_challenge_verifies_at_the_challenger(status: int) -> None:
    nonces = NonceManager(b"k" * 32)
    nonce = nonces.issue(0.0)
    headers = Headers()
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    headers.add(name, f'Digest realm="carrier", nonce="{nonce}", algorithm=MD5, qop="auth"')
    answer = authorize(Response(status, "", headers), "INVITE", "sip:113@carrier",
                       ClientCredentials("helpline", "s3cret-pass"))  # fmt: skip
    assert answer is not None
    assert answer[0] == ("Authorization" if status == 401 else "Proxy-Authorization")
    cred = Credential.from_password("helpline", "carrier", "s3cret-pass")
    assert verify(parse_authorization(answer[1]), "INVITE", cred, nonces, 1.0).ok
    wrong = Credential.from_password("helpline", "carrier", "another-pass")
    assert not verify(parse_authorization(answer[1]), "INVITE", wrong, nonces, 1.0).ok


def test_no_usable_challenge_no_answer() -> None:
    headers = Headers()
    headers.add("WWW-Authenticate", 'Basic realm="x"')
    creds = ClientCredentials("a", "b")
    assert authorize(Response(401, "", headers), "INVITE", "sip:x", creds) is None
    assert authorize(Response(403, "", Headers()), "INVITE", "sip:x", creds) is None
