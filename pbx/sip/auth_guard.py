"""One authentication guard for every request that must carry digest credentials.

The registrar (REGISTER, 401), the switchboard (a volunteer's INVITE, 407) and the trunk policy
(a carrier authenticating by credentials, 407) all ask this guard, so challenge, verification,
stale nonces and lockout behave the same everywhere. Sans-IO: `now` is passed in; the guard
returns a verdict and the caller sends the response.

Rules, and why:
- One reason phrase, "Forbidden", for every failure: an unknown user, a wrong password, a
  disabled account and a locked-out source look the same from outside (no user enumeration).
- Nonces are bound to the source address (host, not port: a NAT may move the port), so a nonce
  (or a captured exchange) is useless from elsewhere; it earns a fresh challenge instead.
- Failures are counted per source address and per known user; past a threshold the key is
  locked for a back-off that doubles each time it locks again, up to a cap. Both tables are
  bounded: users by the accounts that exist, sources by an LRU that forgets the oldest.
- Every refusal (challenge or 403) is to be sent once, statelessly (RFC 3261 section 26.3.2.4):
  the caller ends the server transaction instead of retransmitting towards an unverified source.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from pbx.sip.digest import (
    Algorithm,
    Credential,
    DigestError,
    NonceManager,
    NonceState,
    challenge_headers,
    parse_authorization,
    verify,
)
from pbx.sip.message import Request, Response, make_response

FORBIDDEN = "Forbidden"  # the one reason phrase of every authentication failure


class Scheme(enum.Enum):
    """Which challenge: a registrar's (401) or a proxy's/UAS's for calls (407)."""

    WWW = (401, "WWW-Authenticate", "Authorization")
    PROXY = (407, "Proxy-Authenticate", "Proxy-Authorization")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def challenge_header(self) -> str:
        return self.value[1]

    @property
    def credentials_header(self) -> str:
        return self.value[2]


@dataclass(frozen=True)
class Authenticated:
    username: str
    algorithm: Algorithm


class Why(enum.Enum):
    """Why a request was refused: for logs and metrics only, never sent to the peer."""

    CHALLENGED = "challenged"  # no credentials (or a nonce not ours / not for this address)
    STALE = "stale"  # right password, old nonce: challenged again with stale=true
    FAILED = "failed"  # wrong password, unknown or disabled user, bad header, wrong algorithm
    LOCKED = "locked"  # too many failures from this source or for this user: not even checked


@dataclass(frozen=True)
class Refused:
    response: Response  # a 401/407 challenge or a 403; send it once, statelessly
    why: Why
    locked_now: str | None = None  # "source" or "user" when this failure started a lockout


Verdict = Authenticated | Refused


@dataclass(frozen=True)
class LockoutPolicy:
    source_failures: int = 5  # failures from one address before it is locked out
    user_failures: int = 10  # failures for one account (from any address) before it is locked
    backoff: float = 30.0  # first lockout; doubles with each further lockout
    max_backoff: float = 900.0
    forget_after: float = 3600.0  # a key without failures this long starts afresh
    max_sources: int = 10_000  # bounded table: the least recently failing source is forgotten


@dataclass
class _Record:
    failures: int = 0
    lockouts: int = 0
    locked_until: float = 0.0
    last: float = 0.0


@dataclass
class Lockout:
    """Failure counts with growing back-off for a bounded set of keys (LRU beyond `max_keys`)."""

    threshold: int
    backoff: float
    max_backoff: float
    forget_after: float
    max_keys: int
    _records: OrderedDict[str, _Record] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._records)

    def _current(self, key: str, now: float) -> _Record | None:
        record = self._records.get(key)
        if (
            record is not None
            and now >= record.locked_until
            and now - record.last > (self.forget_after)
        ):
            del self._records[key]
            return None
        return record

    def locked_for(self, key: str, now: float) -> float:
        """Seconds `key` stays locked out (0: not locked)."""
        record = self._current(key, now)
        return max(0.0, record.locked_until - now) if record is not None else 0.0

    def failed(self, key: str, now: float) -> bool:
        """Count a failure; True when it locks `key` out now."""
        record = self._current(key, now) or _Record()
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)
        record.failures += 1
        record.last = now
        if record.failures < self.threshold:
            return False
        record.failures = 0
        record.locked_until = now + min(self.backoff * 2**record.lockouts, self.max_backoff)
        record.lockouts += 1
        return True

    def succeeded(self, key: str, now: float) -> None:
        """Forget `key`'s failures, unless it is locked out (a lockout runs its course)."""
        if self.locked_for(key, now) == 0:
            self._records.pop(key, None)


CredentialLookup = Callable[[str], Credential | None]


@dataclass
class AuthGuard:
    realm: str
    nonces: NonceManager
    algorithms: tuple[Algorithm, ...] = (Algorithm.MD5,)  # offered unless an account says else
    policy: LockoutPolicy = field(default_factory=LockoutPolicy)

    def __post_init__(self) -> None:
        p = self.policy
        self.sources = Lockout(
            p.source_failures, p.backoff, p.max_backoff, p.forget_after, p.max_sources
        )
        # keyed by existing accounts only, so the table is bounded by the accounts there are
        self.users = Lockout(
            p.user_failures, p.backoff, p.max_backoff, p.forget_after, p.max_sources
        )

    def offered(self, cred: Credential | None) -> tuple[Algorithm, ...]:
        """The challenge(s) for an account: its own algorithm if one is set, else the default."""
        if cred is not None and cred.algorithm is not None:
            return (Algorithm.parse(cred.algorithm),)
        return self.algorithms

    def check(
        self,
        request: Request,
        source: str,
        scheme: Scheme,
        lookup: CredentialLookup,
        now: float,
        claimed: str | None = None,
        known_source: Callable[[str, str], bool] = lambda user, source: False,
    ) -> Verdict:
        """Authenticate `request` from address `source` (a host, no port).

        `claimed` is the account the request says it is for (To of a REGISTER, From of an
        INVITE): only used to pick the algorithm of the first challenge. `known_source(user,
        source)`: whether that account has a live registration from there; a locked account
        is still served there, so guessing from elsewhere cannot cut a volunteer's handset off.
        """
        if self.sources.locked_for(source, now) > 0:
            return self._forbid(request, Why.LOCKED)
        value = request.headers.get(scheme.credentials_header)
        if value is None or (value.split(None, 1) or [""])[0].lower() != "digest":
            # no credentials, or a scheme we do not speak (RFC 4475 3.3.7): challenge for Digest
            cred = lookup(claimed) if claimed else None
            return self._challenge(request, source, scheme, now, self.offered(cred), stale=False)
        try:
            resp = parse_authorization(value)
        except DigestError:
            return self._failed(request, source, None, now)
        if self.nonces.check(resp.nonce, now, source) is NonceState.INVALID:
            # not ours, or issued to another address: a fresh challenge, whoever the user is
            # (checked before the account, so the answer does not tell whether it exists)
            cred = lookup(claimed) if claimed else None
            return self._challenge(request, source, scheme, now, self.offered(cred), stale=False)
        cred = lookup(resp.username)
        locked = cred is not None and self.users.locked_for(resp.username, now) > 0
        if locked and not known_source(resp.username, source):
            return self._forbid(request, Why.LOCKED)
        offered = self.offered(cred)
        if resp.algorithm not in offered:  # no downgrade to an algorithm we did not offer
            return self._failed(request, source, cred, now)
        result = verify(resp, request.method, cred, self.nonces, now, bound_to=source)
        if result.ok:
            self.sources.succeeded(source, now)
            self.users.succeeded(resp.username, now)
            return Authenticated(resp.username, resp.algorithm)
        if result.rechallenge_stale:
            return self._challenge(request, source, scheme, now, offered, stale=True)
        return self._failed(request, source, cred, now)

    def _failed(
        self, request: Request, source: str, cred: Credential | None, now: float
    ) -> Refused:
        locked = None
        if self.sources.failed(source, now):
            locked = "source"
        if cred is not None and self.users.failed(cred.username, now):
            locked = "user"
        return self._forbid(request, Why.FAILED, locked)

    def _forbid(self, request: Request, why: Why, locked: str | None = None) -> Refused:
        return Refused(make_response(request, 403, FORBIDDEN), why, locked)

    def _challenge(
        self,
        request: Request,
        source: str,
        scheme: Scheme,
        now: float,
        algorithms: tuple[Algorithm, ...],
        stale: bool,
    ) -> Refused:
        response = make_response(request, scheme.status)
        nonce = self.nonces.issue(now, bound_to=source)
        for value in challenge_headers(self.realm, nonce, stale, algorithms):
            response.headers.add(scheme.challenge_header, value)
        return Refused(response, Why.STALE if stale else Why.CHALLENGED)
