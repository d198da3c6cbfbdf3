"""The one authentication guard (pbx/sip/auth_guard.py), sans-IO, path by path: challenge,
verify, stale, nonce bound to the source address, one reason phrase, lockout and release."""

from __future__ import annotations

import pytest

from pbx.sip.auth_guard import (
    FORBIDDEN,
    Authenticated,
    AuthGuard,
    Lockout,
    LockoutPolicy,
    Refused,
    Scheme,
    Why,
)
from pbx.sip.digest import Algorithm, Credential, NonceManager, parse_authorization
from pbx.sip.message import Request
from pbx.sip.parser import parse_message
from tests.helpers.digest import sip_authorization

SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0
PASSWORD = "correct horse battery"
HOME, ELSEWHERE = "127.0.0.2", "127.0.0.3"
POLICY = LockoutPolicy(source_failures=3, user_failures=5, backoff=10.0, max_backoff=25.0)


def request(
    method: str = "REGISTER", auth: str | None = None, scheme: Scheme = Scheme.WWW
) -> Request:
    lines = [
        f"{method} sip:helpline SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK-1",
        "From: <sip:anna@helpline>;tag=1",
        "To: <sip:anna@helpline>",
        "Call-ID: c1",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    if auth is not None:
        lines.insert(2, f"{scheme.credentials_header}: {auth}")
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def answer(
    refused: Refused,
    scheme: Scheme = Scheme.WWW,
    password: str = PASSWORD,
    user: str = "anna",
    method: str = "REGISTER",
    nc: str = "00000001",
) -> Request:
    """The request again, with the credentials a client computes for this challenge."""
    challenge = refused.response.headers.get(scheme.challenge_header)
    assert challenge is not None
    params = parse_challenge(challenge)
    alg = Algorithm.parse(params["algorithm"])
    header = sip_authorization(
        alg, user, "helpline", password, method, "sip:helpline", params["nonce"], nc=nc
    )
    return request(method, header, scheme)


def parse_challenge(value: str) -> dict[str, str]:
    # the challenge has the same name=value syntax as a response: reuse the parser's params
    return dict(
        (k.strip(), v.strip().strip('"'))
        for k, v in (p.split("=", 1) for p in value.removeprefix("Digest ").split(", "))
    )


@pytest.fixture
def guard() -> AuthGuard:
    return AuthGuard("helpline", NonceManager(SECRET), (Algorithm.MD5,), POLICY)


CREDS = {"anna": Credential.from_password("anna", "helpline", PASSWORD)}


def check(guard: AuthGuard, req: Request, source: str = HOME, now: float = NOW) -> object:
    return guard.check(req, source, Scheme.WWW, CREDS.get, now, claimed="anna")


def challenge(guard: AuthGuard, source: str = HOME, now: float = NOW) -> Refused:
    verdict = check(guard, request(), source, now)
    assert isinstance(verdict, Refused) and verdict.why is Why.CHALLENGED
    return verdict


def test_no_credentials_earn_one_md5_challenge_and_the_right_answer_passes(
    guard: AuthGuard,
) -> None:
    refused = challenge(guard)
    assert refused.response.status == 401
    assert refused.response.headers.values("WWW-Authenticate") == [
        refused.response.headers.get("WWW-Authenticate")
    ]  # exactly one challenge
    assert "algorithm=MD5" in (refused.response.headers.get("WWW-Authenticate") or "")
    assert check(guard, answer(refused), now=NOW + 1) == Authenticated("anna", Algorithm.MD5)


def test_calls_are_challenged_with_407_and_proxy_headers(guard: AuthGuard) -> None:
    verdict = guard.check(request("INVITE"), HOME, Scheme.PROXY, CREDS.get, NOW, "anna")
    assert isinstance(verdict, Refused) and verdict.response.status == 407
    again = answer(verdict, Scheme.PROXY, method="INVITE")
    assert guard.check(again, HOME, Scheme.PROXY, CREDS.get, NOW, "anna") == Authenticated(
        "anna", Algorithm.MD5
    )


def test_an_account_set_to_sha256_gets_only_that_and_md5_is_refused(guard: AuthGuard) -> None:
    creds = {"anna": Credential.from_password("anna", "helpline", PASSWORD)}
    creds["anna"].algorithm = "SHA-256"
    refused = guard.check(request(), HOME, Scheme.WWW, creds.get, NOW, "anna")
    assert isinstance(refused, Refused)
    assert refused.response.headers.values("WWW-Authenticate")[0].count("algorithm=SHA-256") == 1
    assert len(refused.response.headers.values("WWW-Authenticate")) == 1
    ok = guard.check(answer(refused), HOME, Scheme.WWW, creds.get, NOW, "anna")
    assert ok == Authenticated("anna", Algorithm.SHA256)
    # a downgrade to MD5 (not offered) is a failure, even with the right password
    md5 = sip_authorization(
        Algorithm.MD5, "anna", "helpline", PASSWORD, "REGISTER", "sip:helpline",
        parse_challenge(refused.response.headers.get("WWW-Authenticate") or "")["nonce"],
        nc="00000002",
    )  # fmt: skip
    verdict = guard.check(request(auth=md5), HOME, Scheme.WWW, creds.get, NOW, "anna")
    assert isinstance(verdict, Refused) and verdict.why is Why.FAILED


def test_a_nonce_issued_to_one_address_is_not_accepted_from_another(guard: AuthGuard) -> None:
    refused = challenge(guard, HOME)
    verdict = check(guard, answer(refused), ELSEWHERE)
    # not authenticated: a fresh challenge (bound to the new address), no failure counted
    assert isinstance(verdict, Refused) and verdict.why is Why.CHALLENGED
    assert verdict.response.status == 401
    assert len(guard.sources) == 0
    # the fresh challenge works from there; the first one still works from home
    assert isinstance(check(guard, answer(verdict), ELSEWHERE), Authenticated)
    assert isinstance(check(guard, answer(refused), HOME), Authenticated)


def test_a_foreign_nonce_gets_the_same_answer_for_known_and_unknown_users(
    guard: AuthGuard,
) -> None:
    foreign = answer(challenge(guard, ELSEWHERE))
    unknown = answer(challenge(guard, ELSEWHERE), user="nobody")
    for req in (foreign, unknown):
        verdict = check(guard, req, HOME)
        assert isinstance(verdict, Refused) and verdict.response.status == 401


def test_stale_nonce_rechallenges_with_stale_true(guard: AuthGuard) -> None:
    refused = challenge(guard)
    verdict = check(guard, answer(refused), now=NOW + guard.nonces.lifetime + 1)
    assert isinstance(verdict, Refused) and verdict.why is Why.STALE
    assert "stale=true" in (verdict.response.headers.get("WWW-Authenticate") or "")


def test_every_failure_has_the_same_status_and_reason_phrase(guard: AuthGuard) -> None:
    a, b, c, d = (f"127.0.0.{n}" for n in (10, 11, 12, 13))  # none reaches its lockout
    wrong_password = answer(challenge(guard, a), password="not the password")
    unknown_user = answer(challenge(guard, b), user="nobody")
    garbage = request(auth='Digest username="anna", realm=')
    disabled_creds = {"anna": Credential.from_password("anna", "helpline", PASSWORD)}
    disabled_creds["anna"].disabled = True
    verdicts = [
        check(guard, wrong_password, a),
        check(guard, unknown_user, b),
        check(guard, garbage, c),
        guard.check(answer(challenge(guard, d)), d, Scheme.WWW, disabled_creds.get, NOW),
    ]
    for verdict in verdicts:
        assert isinstance(verdict, Refused) and verdict.why is Why.FAILED
        assert (verdict.response.status, verdict.response.reason) == (403, FORBIDDEN)


def test_source_lockout_after_failures_then_release_after_backoff(guard: AuthGuard) -> None:
    refused = challenge(guard)
    for i in range(POLICY.source_failures):
        verdict = check(guard, answer(refused, password=f"wrong {i}"))
        assert isinstance(verdict, Refused) and verdict.why is Why.FAILED
    assert isinstance(verdict, Refused) and verdict.locked_now == "source"
    # locked: even the right password is refused, with the same answer, and nothing is checked
    locked = check(guard, answer(refused, nc="00000009"), now=NOW + 1)
    assert isinstance(locked, Refused) and locked.why is Why.LOCKED
    assert (locked.response.status, locked.response.reason) == (403, FORBIDDEN)
    assert isinstance(check(guard, request(), now=NOW + 1), Refused)  # not even challenged
    # another address is not affected
    assert isinstance(check(guard, answer(challenge(guard, ELSEWHERE)), ELSEWHERE), Authenticated)
    # released after the back-off
    later = NOW + POLICY.backoff + 0.1
    fresh = challenge(guard, now=later)
    assert isinstance(check(guard, answer(fresh), now=later), Authenticated)


def test_backoff_doubles_with_each_lockout_up_to_the_cap() -> None:
    table = Lockout(threshold=2, backoff=10.0, max_backoff=25.0, forget_after=3600, max_keys=10)
    t = 0.0
    expected = [10.0, 20.0, 25.0, 25.0]
    for wait in expected:
        assert not table.failed("k", t)
        assert table.failed("k", t)
        assert table.locked_for("k", t) == pytest.approx(wait)
        t += wait + 0.001
        assert table.locked_for("k", t) == 0
    table.succeeded("k", t)
    assert len(table) == 0


def test_user_lockout_counts_failures_from_many_addresses(guard: AuthGuard) -> None:
    for i in range(POLICY.user_failures):
        source = f"127.0.1.{i}"
        verdict = check(guard, answer(challenge(guard, source), password="bad"), source)
    assert isinstance(verdict, Refused) and verdict.locked_now == "user"
    # the account is locked from everywhere, for the back-off
    source = "127.0.2.1"
    verdict = check(guard, answer(challenge(guard, source)), source)
    assert isinstance(verdict, Refused) and verdict.why is Why.LOCKED
    later = NOW + POLICY.backoff + 0.1
    verdict = check(guard, answer(challenge(guard, source, later)), source, later)
    assert isinstance(verdict, Authenticated)


def test_a_locked_account_is_still_served_where_its_handset_is_registered(
    guard: AuthGuard,
) -> None:
    for i in range(POLICY.user_failures):
        source = f"127.0.1.{i}"
        check(guard, answer(challenge(guard, source), password="bad"), source)
    home = "127.0.2.2"

    def registered_at_home(user: str, source: str) -> bool:
        return (user, source) == ("anna", home)

    for source, expected in ((home, Authenticated), ("127.0.2.3", Refused)):
        req = answer(challenge(guard, source))
        verdict = guard.check(
            req, source, Scheme.WWW, CREDS.get, NOW, "anna", known_source=registered_at_home
        )
        assert isinstance(verdict, expected), (source, verdict)


def test_lockout_tables_are_bounded(guard: AuthGuard) -> None:
    small = AuthGuard(
        "helpline", NonceManager(SECRET), policy=LockoutPolicy(source_failures=3, max_sources=50)
    )
    for i in range(500):
        source = f"10.0.{i // 250}.{i % 250}"
        refused = small.check(request(), source, Scheme.WWW, CREDS.get, NOW)
        assert isinstance(refused, Refused)
        small.check(answer(refused, user=f"u{i}"), source, Scheme.WWW, CREDS.get, NOW)
    assert len(small.sources) == 50
    assert len(small.users) == 0  # unknown user names are never keys


def test_replayed_nonce_count_is_rechallenged_as_stale(guard: AuthGuard) -> None:
    refused = challenge(guard)
    first = answer(refused)
    assert isinstance(check(guard, first), Authenticated)
    again = check(guard, first)
    assert isinstance(again, Refused) and again.why is Why.STALE


def test_sanity_parse_helper() -> None:
    header = sip_authorization(
        Algorithm.MD5, "anna", "helpline", PASSWORD, "REGISTER", "sip:helpline", "n"
    )
    assert parse_authorization(header).username == "anna"
