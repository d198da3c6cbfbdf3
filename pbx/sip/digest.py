"""HTTP Digest authentication for SIP (RFC 3261 section 22, RFC 7616, RFC 8760).

Sans-IO: no sockets, no database, no clock reads; `now` (seconds, any monotonic-enough epoch the
caller picks consistently) is passed in. The registrar keeps `Credential`s in memory and calls
`verify` for each REGISTER/INVITE that carries an Authorization header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum


class Algorithm(Enum):
    MD5 = "MD5"
    SHA256 = "SHA-256"

    @classmethod
    def parse(cls, value: str | None) -> Algorithm:
        """The algorithm named in a header; absent means MD5 (RFC 7616 section 3.3)."""
        if value is None:
            return cls.MD5
        for alg in cls:
            if alg.value.lower() == value.lower():
                return alg
        raise DigestError(f"unsupported digest algorithm {value[:32]!r}")


class DigestError(ValueError):
    """An Authorization header that cannot be used; the message says which part is wrong."""


def _hash(algorithm: Algorithm, data: str) -> str:
    name = "md5" if algorithm is Algorithm.MD5 else "sha256"
    # bytes that were not UTF-8 on the wire arrive as surrogates: hash them as sent
    return hashlib.new(name, data.encode("utf-8", "surrogateescape")).hexdigest()


def ha1(algorithm: Algorithm, username: str, realm: str, password: str) -> str:
    """H(username ":" realm ":" password), what the server stores instead of the password."""
    return _hash(algorithm, f"{username}:{realm}:{password}")


@dataclass
class Credential:
    username: str
    realm: str
    ha1_md5: str
    ha1_sha256: str
    disabled: bool = False
    # the one algorithm to challenge this account with (a handset proven to do SHA-256);
    # None: the service's default (`digest_algorithms`)
    algorithm: str | None = None

    @classmethod
    def from_password(cls, username: str, realm: str, password: str) -> Credential:
        return cls(
            username=username,
            realm=realm,
            ha1_md5=ha1(Algorithm.MD5, username, realm, password),
            ha1_sha256=ha1(Algorithm.SHA256, username, realm, password),
        )

    def ha1_for(self, algorithm: Algorithm) -> str:
        return self.ha1_md5 if algorithm is Algorithm.MD5 else self.ha1_sha256


# --- nonces -------------------------------------------------------------------------------------


class NonceState(Enum):
    VALID = "valid"
    STALE = "stale"  # ours, untampered, but too old: re-challenge with stale=true
    INVALID = "invalid"  # not issued by us (or by a previous secret)


_NONCE_STAMP = struct.Struct(">d8s")  # issue time, 8 random bytes
_NONCE_MAC_LEN = 16
# A nonce "from the future" beyond this is rejected; allows small clock steps between workers.
_FUTURE_SKEW = 5.0


class NonceManager:
    """Stateless nonces: base64url(issue-time | random | HMAC(secret, both)).

    Expiry is checkable without storing issued nonces, and a restart with the same secret keeps
    outstanding nonces valid. Nonce-count replay protection needs memory, bounded by an LRU of
    the most recently used nonces.
    """

    def __init__(self, secret: bytes, lifetime: float = 300, max_tracked: int = 10_000) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        self._secret = secret
        self.lifetime = lifetime
        self._max_tracked = max_tracked
        self._counts: OrderedDict[str, int] = OrderedDict()

    def _mac(self, stamp: bytes, bound_to: str) -> bytes:
        mac = hmac.new(self._secret, stamp + bound_to.encode("utf-8"), hashlib.sha256)
        return mac.digest()[:_NONCE_MAC_LEN]

    def issue(self, now: float, bound_to: str = "") -> str:
        """A nonce valid only when presented from `bound_to` (the requester's address)."""
        stamp = _NONCE_STAMP.pack(now, os.urandom(8))
        mac = self._mac(stamp, bound_to)
        return base64.urlsafe_b64encode(stamp + mac).decode("ascii").rstrip("=")

    def check(self, nonce: str, now: float, bound_to: str = "") -> NonceState:
        raw_len = _NONCE_STAMP.size + _NONCE_MAC_LEN
        if len(nonce) > 2 * raw_len:
            return NonceState.INVALID
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return NonceState.INVALID
        if len(raw) != raw_len:
            return NonceState.INVALID
        stamp, mac = raw[: _NONCE_STAMP.size], raw[_NONCE_STAMP.size :]
        if not hmac.compare_digest(mac, self._mac(stamp, bound_to)):
            return NonceState.INVALID
        issued, _ = _NONCE_STAMP.unpack(stamp)
        if issued > now + _FUTURE_SKEW:
            return NonceState.INVALID
        if now - issued > self.lifetime:
            return NonceState.STALE
        return NonceState.VALID

    def use_count(self, nonce: str, nc: int) -> bool:
        """Record nonce-count `nc` for `nonce`; False when it does not exceed the last one seen.

        A nonce evicted from the LRU accepts any count again; its lifetime still bounds replay.
        """
        last = self._counts.get(nonce)
        if last is not None and nc <= last:
            self._counts.move_to_end(nonce)
            return False
        self._counts[nonce] = nc
        self._counts.move_to_end(nonce)
        while len(self._counts) > self._max_tracked:
            self._counts.popitem(last=False)
        return True


# --- challenge ----------------------------------------------------------------------------------


def quote(value: str) -> str:
    """A quoted-string (RFC 3261 section 25.1) holding `value`."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge_headers(
    realm: str,
    nonce: str,
    stale: bool = False,
    algorithms: Iterable[Algorithm] = (Algorithm.MD5,),
) -> list[str]:
    """Values for WWW-Authenticate / Proxy-Authenticate, one per algorithm in preference order.

    RFC 8760 section 2.4 lets a server offer several, preferred first; but some clients (baresip
    1.0) reject the whole response when one algorithm is unknown, hence one challenge by default.
    """
    values = []
    for alg in algorithms:
        parts = [f"realm={quote(realm)}", f"nonce={quote(nonce)}", f"algorithm={alg.value}"]
        parts.append('qop="auth"')
        if stale:
            parts.append("stale=true")
        values.append("Digest " + ", ".join(parts))
    return values


# --- Authorization header -----------------------------------------------------------------------

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_WS = " \t\r\n"
_REQUIRED = ("username", "realm", "nonce", "uri", "response")
_MAX_HEADER = 8192


@dataclass(frozen=True)
class DigestResponse:
    """The Digest credentials of one request (Authorization / Proxy-Authorization value)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: Algorithm = Algorithm.MD5
    qop: str | None = None
    nc: str | None = None  # kept as sent: it is hashed verbatim
    cnonce: str | None = None
    opaque: str | None = None
    params: dict[str, str] = field(default_factory=dict, compare=False)


def _parse_params(text: str) -> dict[str, str]:
    """Parse `name=value, name="quoted", ...` into a dict with lower-cased names."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and (text[i] in _WS or text[i] == ","):
            i += 1  # empty list elements are allowed (RFC 7230 #rule)
        if i >= n:
            return params
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        name = text[start:i].lower()
        if not name:
            raise DigestError(f"expected a parameter name at offset {start}")
        while i < n and text[i] in _WS:
            i += 1
        if i >= n or text[i] != "=":
            raise DigestError(f"parameter {name!r} has no value")
        i += 1
        while i < n and text[i] in _WS:
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise DigestError(f"unterminated quoted string in parameter {name!r}")
                ch = text[i]
                if ch == "\\":
                    if i + 1 >= n:
                        raise DigestError(f"dangling escape in parameter {name!r}")
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if ch == '"':
                    i += 1
                    break
                chars.append(ch)
                i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] in _TOKEN_CHARS:
                i += 1
            value = text[start:i]
            if not value:
                raise DigestError(f"parameter {name!r} has an empty or malformed value")
        if name in params:
            raise DigestError(f"duplicate parameter {name!r}")
        params[name] = value
        while i < n and text[i] in _WS:
            i += 1
        if i < n and text[i] != ",":
            raise DigestError(f"expected ',' after parameter {name!r}")


def parse_authorization(value: str) -> DigestResponse:
    """Parse an Authorization/Proxy-Authorization header value using the Digest scheme."""
    if len(value) > _MAX_HEADER:
        raise DigestError("authorization header too long")
    text = value.strip(_WS)
    cut = next((i for i, ch in enumerate(text) if ch in _WS), len(text))
    scheme, rest = text[:cut], text[cut:]
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported authentication scheme {scheme[:32]!r}")
    params = _parse_params(rest)
    for name in _REQUIRED:
        if name not in params:
            raise DigestError(f"missing parameter {name!r}")
    algorithm = Algorithm.parse(params.get("algorithm"))
    if params.get("userhash", "false").lower() == "true":
        raise DigestError("userhash is not supported")
    response = params["response"].lower()
    want = 32 if algorithm is Algorithm.MD5 else 64
    if len(response) != want or any(c not in "0123456789abcdef" for c in response):
        raise DigestError(f"response must be {want} hex digits for {algorithm.value}")
    qop = params.get("qop")
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        qop = qop.lower()
        if nc is None:
            raise DigestError("qop given without nc")
        if cnonce is None:
            raise DigestError("qop given without cnonce")
        if len(nc) != 8 or any(c not in "0123456789abcdefABCDEF" for c in nc):
            raise DigestError("nc must be 8 hex digits")
    return DigestResponse(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=response,
        algorithm=algorithm,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=params.get("opaque"),
        params=params,
    )


# --- verification -------------------------------------------------------------------------------


class AuthResult(Enum):
    """Outcome of `verify`; `.reason` is a short log-safe explanation (no secrets)."""

    OK = "authenticated"
    STALE = "correct credentials but the nonce has expired"
    REPLAY = "nonce-count was already used"
    BAD_PASSWORD = "response does not match the stored credentials"
    UNKNOWN_USER = "no such user"
    DISABLED = "user is disabled"
    BAD_REALM = "realm does not match"
    BAD_NONCE = "nonce was not issued by this server"
    BAD_QOP = "unsupported qop"

    @property
    def ok(self) -> bool:
        return self is AuthResult.OK

    @property
    def reason(self) -> str:
        return self.value

    @property
    def rechallenge_stale(self) -> bool:
        """Whether the next challenge should carry stale=true (the password was right)."""
        return self in (AuthResult.STALE, AuthResult.REPLAY)


def expected_response(resp: DigestResponse, method: str, ha1_value: str) -> str:
    """The response value a client knowing `ha1_value` computes (RFC 7616 section 3.4.1)."""
    alg = resp.algorithm
    ha2 = _hash(alg, f"{method}:{resp.uri}")
    if resp.qop is None:  # RFC 2069 compatibility
        return _hash(alg, f"{ha1_value}:{resp.nonce}:{ha2}")
    return _hash(alg, f"{ha1_value}:{resp.nonce}:{resp.nc}:{resp.cnonce}:{resp.qop}:{ha2}")


def verify(
    resp: DigestResponse,
    method: str,
    cred: Credential | None,
    nonces: NonceManager,
    now: float,
    bound_to: str = "",
) -> AuthResult:
    """Check one request's digest credentials against the stored `cred` (None: unknown user);
    the nonce must have been issued to `bound_to`."""
    if cred is None or resp.username != cred.username:
        return AuthResult.UNKNOWN_USER
    if cred.disabled:
        return AuthResult.DISABLED
    if resp.realm != cred.realm:
        return AuthResult.BAD_REALM
    if resp.qop not in (None, "auth"):
        return AuthResult.BAD_QOP
    state = nonces.check(resp.nonce, now, bound_to)
    if state is NonceState.INVALID:
        return AuthResult.BAD_NONCE
    expected = expected_response(resp, method, cred.ha1_for(resp.algorithm))
    if not hmac.compare_digest(expected, resp.response):
        return AuthResult.BAD_PASSWORD
    if state is NonceState.STALE:
        return AuthResult.STALE
    if resp.nc is not None and not nonces.use_count(resp.nonce, int(resp.nc, 16)):
        return AuthResult.REPLAY
    return AuthResult.OK
