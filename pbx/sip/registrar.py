"""Registrar for volunteers' handsets (RFC 3261 section 10.3), sans-IO.

Bindings live in memory (calls never wait on the database); every change is reported through
`on_change` so it can be written behind and reloaded after a restart. A binding remembers the
address its REGISTER really came from (`source`): calls are sent there, which is what makes a
handset behind a home NAT reachable.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from pbx.sip.address import Address, parse_address
from pbx.sip.digest import (
    Algorithm,
    AuthResult,
    Credential,
    DigestError,
    NonceManager,
    challenge_headers,
    parse_authorization,
    verify,
)
from pbx.sip.errors import SipParseError
from pbx.sip.grammar import parse_uint
from pbx.sip.message import Request, Response, make_response
from pbx.sip.peer import Peer
from pbx.sip.uri import SipUri

MAX_CONTACTS_PER_USER = 10
MAX_EXPIRES = 2**32 - 1  # RFC 3261 delta-seconds


@dataclass
class Binding:
    username: str
    contact: SipUri  # Request-URI for calls to this handset
    source: Peer  # where its REGISTER came from: calls go there (NAT)
    expires_at: float  # wall-clock seconds
    call_id: str
    cseq: int
    instance: str | None = (
        None  # +sip.instance (RFC 5626), so a re-registering phone replaces itself
    )
    user_agent: str | None = None

    @property
    def key(self) -> str:
        return self.instance or str(self.contact)


class Change(enum.Enum):
    ADDED = "added"
    REFRESHED = "refreshed"
    REMOVED = "removed"
    EXPIRED = "expired"


@dataclass
class RegistrarConfig:
    realm: str = "helpline"
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 600
    algorithms: tuple[Algorithm, ...] = (Algorithm.SHA256, Algorithm.MD5)


@dataclass
class Registrar:
    config: RegistrarConfig
    credentials: dict[str, Credential]
    nonces: NonceManager
    on_change: Callable[[Change, Binding], None] = lambda change, binding: None
    bindings: dict[str, dict[str, Binding]] = field(default_factory=dict)
    # how many bindings were registered from each address: a handset's address is never a trunk
    _sources: Counter[Peer] = field(default_factory=Counter)

    # --- lookups -------------------------------------------------------------------------------
    def contacts(self, username: str, now: float) -> list[Binding]:
        """Live bindings of a user, most recently registered first."""
        live = [b for b in self.bindings.get(username, {}).values() if b.expires_at > now]
        return sorted(live, key=lambda b: b.expires_at, reverse=True)

    def registered_users(self, now: float) -> set[str]:
        return {
            u for u, bs in self.bindings.items() if any(b.expires_at > now for b in bs.values())
        }

    def is_handset_address(self, peer: Peer) -> bool:
        return self._sources[peer.without_connection()] > 0

    def restore(self, binding: Binding) -> None:
        """Reload a persisted binding at start-up."""
        self._store(binding)

    def _store(self, binding: Binding) -> None:
        bucket = self.bindings.setdefault(binding.username, {})
        old = bucket.get(binding.key)
        if old is not None:
            self._sources[old.source.without_connection()] -= 1
        bucket[binding.key] = binding
        self._sources[binding.source.without_connection()] += 1

    def _drop(self, binding: Binding) -> None:
        bucket = self.bindings.get(binding.username, {})
        if bucket.pop(binding.key, None) is not None:
            self._sources[binding.source.without_connection()] -= 1
        if not bucket:
            self.bindings.pop(binding.username, None)

    def expire(self, now: float) -> list[Binding]:
        gone: list[Binding] = []
        for username in list(self.bindings):
            for b in list(self.bindings[username].values()):
                if b.expires_at <= now:
                    self._drop(b)
                    gone.append(b)
                    self.on_change(Change.EXPIRED, b)
        return gone

    # --- REGISTER --------------------------------------------------------------------------------
    def authenticate(self, request: Request, now: float) -> tuple[str | None, Response | None]:
        """(username, None) when the request carries valid credentials, else (None, a 401/403)."""
        value = request.headers.get("Authorization")
        if value is None or (value.split(None, 1) or [""])[0].lower() != "digest":
            # no credentials, or a scheme we do not speak (RFC 4475 3.3.7): challenge for Digest
            return None, self._challenge(request, now, stale=False)
        try:
            resp = parse_authorization(value)
        except DigestError as exc:
            return None, make_response(request, 400, f"Bad Request - {exc}"[:120])
        cred = self.credentials.get(resp.username)
        result = verify(resp, request.method, cred, self.nonces, now)
        if result.ok:
            return resp.username, None
        if result.rechallenge_stale or result is AuthResult.BAD_NONCE:
            return None, self._challenge(request, now, stale=result.rechallenge_stale)
        return None, make_response(request, 403, f"Forbidden - {result.reason}")

    def _challenge(self, request: Request, now: float, stale: bool) -> Response:
        response = make_response(request, 401)
        nonce = self.nonces.issue(now)
        for value in challenge_headers(self.config.realm, nonce, stale, self.config.algorithms):
            response.headers.add("WWW-Authenticate", value)
        return response

    def handle(self, request: Request, source: Peer, now: float) -> Response:
        """Process one REGISTER; `now` is wall-clock seconds (bindings are persisted)."""
        if request.headers.get("Require"):
            response = make_response(request, 420)
            response.headers.add("Unsupported", request.headers.get("Require") or "")
            return response
        username, refusal = self.authenticate(request, now)
        if refusal is not None:
            return refusal
        assert username is not None
        try:
            to = request.to
            contacts = request.contacts
        except SipParseError as exc:
            return make_response(request, 400, exc.reason)
        if not isinstance(to.uri, SipUri) or to.uri.user is None:
            return make_response(request, 400, "Bad Request - To must be a SIP address of record")
        if to.uri.user_unescaped != username:
            return make_response(request, 403, "Forbidden - Credentials do not match To")
        expires_header = request.headers.get("Expires")
        header_expires = None
        if expires_header is not None:
            header_expires = parse_uint(expires_header.strip(), MAX_EXPIRES)
            if header_expires is None:
                return make_response(request, 400, "Bad Request - Invalid Expires")
        cseq = request.cseq.number
        if any(c.wildcard for c in contacts):
            if len(contacts) != 1 or header_expires != 0:
                return make_response(
                    request, 400, "Bad Request - Wildcard Contact needs Expires: 0"
                )
            for b in list(self.bindings.get(username, {}).values()):
                self._remove(b, Change.REMOVED)
            return self._ok(request, username, now)
        planned: list[tuple[Address, int]] = []
        for contact in contacts:
            if not isinstance(contact.uri, SipUri):
                return make_response(request, 400, "Bad Request - Contact must be a SIP URI")
            raw = contact.params.get("expires")
            param = None if raw is None else parse_uint(raw.strip(), MAX_EXPIRES)
            if raw is not None and param is None:
                return make_response(request, 400, "Bad Request - Invalid expires parameter")
            chosen = param if param is not None else header_expires
            expires = self.config.default_expires if chosen is None else chosen
            if 0 < expires < self.config.min_expires:
                response = make_response(request, 423)
                response.headers.add("Min-Expires", str(self.config.min_expires))
                return response
            planned.append((contact, min(expires, self.config.max_expires)))
        existing = self.bindings.get(username, {})
        for contact, _ in planned:
            assert isinstance(contact.uri, SipUri)
            old = existing.get(_key(contact))
            if old is not None and old.call_id == request.call_id and cseq <= old.cseq:
                return make_response(request, 400, "Bad Request - Out-of-order REGISTER")
        adding = sum(1 for c, e in planned if e > 0 and _key(c) not in existing)
        if len(existing) + adding > MAX_CONTACTS_PER_USER:
            return make_response(request, 403, "Forbidden - Too many registered devices")
        for contact, expires in planned:
            assert isinstance(contact.uri, SipUri)
            key = _key(contact)
            if expires == 0:
                if key in existing:
                    self._remove(existing[key], Change.REMOVED)
                continue
            binding = Binding(
                username=username,
                contact=contact.uri,
                source=source,
                expires_at=now + expires,
                call_id=request.call_id,
                cseq=cseq,
                instance=_instance(contact),
                user_agent=request.headers.get("User-Agent"),
            )
            change = Change.REFRESHED if key in existing else Change.ADDED
            self._store(binding)
            self.on_change(change, binding)
        return self._ok(request, username, now)

    def _remove(self, binding: Binding, change: Change) -> None:
        self._drop(binding)
        self.on_change(change, binding)

    def _ok(self, request: Request, username: str, now: float) -> Response:
        response = make_response(request, 200)
        for b in self.contacts(username, now):
            response.headers.add("Contact", f"<{b.contact}>;expires={int(b.expires_at - now)}")
        return response


def _instance(contact: Address) -> str | None:
    value = contact.params.get("+sip.instance")
    return value.strip('<>"') if value else None


def _key(contact: Address) -> str:
    return _instance(contact) or str(contact.uri)


def parse_contact(value: str) -> Address:
    return parse_address(value)
