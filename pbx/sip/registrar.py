"""Registrar for volunteers' handsets (RFC 3261 section 10.3), sans-IO.

Bindings live in memory (calls never wait on the database); every change is reported through
`on_change` so it can be written behind and reloaded after a restart. A binding remembers the
address its REGISTER really came from (`source`): calls are sent there, which is what makes a
handset behind a home NAT reachable.

Reachability is kept per binding as well: the keepalive (`pbx/sip/keepalive.py`, the asyncio
side) reports each OPTIONS answered or missed. A binding whose keepalive went unanswered is
unreachable (not rung) until a keepalive or a REGISTER refresh proves it alive again, and after
`keepalive_max_misses` misses in a row it is removed, as if it had expired.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from pbx.sip.address import Address
from pbx.sip.auth_guard import Authenticated, AuthGuard, Refused, Scheme, Verdict
from pbx.sip.digest import Credential
from pbx.sip.errors import SipParseError
from pbx.sip.grammar import parse_uint
from pbx.sip.message import Request, Response, make_response
from pbx.sip.path import first_hop, request_path
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
    misses: int = 0  # keepalives unanswered in a row; any answer (or a refresh) resets it
    unreachable_since: float | None = None  # wall clock of the first of those misses
    algorithm: str | None = None  # the digest algorithm its REGISTER authenticated with
    path: tuple[str, ...] = ()  # RFC 3327 Path of its REGISTER: the edge proxy that reaches it

    @property
    def next_hop(self) -> Peer:
        """Where requests to this handset are sent: the proxy of its Path, else its source."""
        return first_hop(self.path) if self.path else self.source

    @property
    def routes(self) -> list[tuple[str, str]]:
        """The Route headers every request to this handset carries (its Path)."""
        return [("Route", entry) for entry in self.path]

    @property
    def reachable(self) -> bool:
        return self.misses == 0

    @property
    def key(self) -> str:
        return self.instance or str(self.contact)


class Change(enum.Enum):
    ADDED = "added"
    REFRESHED = "refreshed"
    REMOVED = "removed"
    EXPIRED = "expired"
    UNREACHABLE = "unreachable"  # a keepalive went unanswered: not rung until it answers
    REACHABLE = "reachable"  # an unreachable binding answered a keepalive again
    LOST = "lost"  # removed after `keepalive_max_misses` unanswered keepalives


@dataclass
class RegistrarConfig:
    realm: str = "helpline"
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 600
    keepalive_max_misses: int = 3  # unanswered keepalives in a row before a binding is removed


@dataclass
class Registrar:
    config: RegistrarConfig
    credentials: dict[str, Credential]
    guard: AuthGuard  # challenge, verification and lockout, shared with calls
    on_change: Callable[[Change, Binding], None] = lambda change, binding: None
    bindings: dict[str, dict[str, Binding]] = field(default_factory=dict)
    # Counts changes to the set of users with bindings (one added or gone), so routing can
    # keep what it derives from that set until it changes instead of rederiving it per call.
    users_version: int = 0

    # --- lookups -------------------------------------------------------------------------------
    def contacts(self, username: str, now: float) -> list[Binding]:
        """Live bindings of a user, most recently registered first."""
        live = [b for b in self.bindings.get(username, {}).values() if b.expires_at > now]
        return sorted(live, key=lambda b: b.expires_at, reverse=True)

    def ringable(self, username: str, now: float) -> list[Binding]:
        """Live bindings that answered their last keepalive: the handsets worth ringing."""
        return [b for b in self.contacts(username, now) if b.reachable]

    def registered_users(self, now: float) -> set[str]:
        """Users with at least one live binding that is reachable."""
        return {
            u
            for u, bs in self.bindings.items()
            if any(b.expires_at > now and b.reachable for b in bs.values())
        }

    # --- keepalive results -----------------------------------------------------------------------
    def keepalive_targets(self, now: float) -> list[Binding]:
        """Every live binding: each is probed, reachable or not (a probe may restore it)."""
        return [b for bs in self.bindings.values() for b in bs.values() if b.expires_at > now]

    def keepalive_answered(self, binding: Binding, now: float) -> Change | None:
        """Any response to the keepalive: the handset is there (REACHABLE if it was not)."""
        if not self._current(binding):
            return None
        was_reachable = binding.reachable
        binding.misses = 0
        binding.unreachable_since = None
        if was_reachable:
            return None
        self.on_change(Change.REACHABLE, binding)
        return Change.REACHABLE

    def keepalive_missed(self, binding: Binding, now: float) -> Change | None:
        """No response: UNREACHABLE at the first miss, LOST (removed) at the configured last.
        A result for a binding replaced or removed meanwhile (a refresh) counts for nothing."""
        if not self._current(binding):
            return None
        binding.misses += 1
        if binding.unreachable_since is None:
            binding.unreachable_since = now
        if binding.misses >= self.config.keepalive_max_misses:
            self._remove(binding, Change.LOST)
            return Change.LOST
        if binding.misses == 1:
            self.on_change(Change.UNREACHABLE, binding)
            return Change.UNREACHABLE
        return None

    def _current(self, binding: Binding) -> bool:
        return self.bindings.get(binding.username, {}).get(binding.key) is binding

    def clear(self) -> None:
        """Forget every binding (before reloading all of them, as a takeover does)."""
        self.bindings.clear()
        self.users_version += 1

    def restore(self, binding: Binding) -> None:
        """Reload a persisted binding at start-up."""
        self._store(binding)

    def _store(self, binding: Binding) -> None:
        bucket = self.bindings.get(binding.username)
        if bucket is None:
            bucket = self.bindings[binding.username] = {}
            self.users_version += 1
        bucket[binding.key] = binding

    def _drop(self, binding: Binding) -> None:
        bucket = self.bindings.get(binding.username, {})
        bucket.pop(binding.key, None)
        if not bucket and self.bindings.pop(binding.username, None) is not None:
            self.users_version += 1

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
    def authenticate(self, request: Request, source: Peer, now: float) -> Verdict:
        """Who sent this REGISTER, or the 401/403 to send once (statelessly) instead."""
        try:
            to = request.to.uri
        except SipParseError:
            to = None
        claimed = to.user_unescaped if isinstance(to, SipUri) else None
        return self.guard.check(
            request, source.host, Scheme.WWW, self.credentials.get, now, claimed,
            known_source=lambda user, host: self.has_binding_from(user, host, now),
        )  # fmt: skip

    def has_binding_from(self, username: str, host: str, now: float) -> bool:
        """Whether `username` has a live registration from address `host`."""
        return any(b.source.host == host for b in self.contacts(username, now))

    def handle(
        self, request: Request, source: Peer, now: float, auth: Authenticated | None = None
    ) -> Response:
        """Process one REGISTER; `now` is wall-clock seconds (bindings are persisted). `auth`:
        the caller already authenticated it (to send a refusal statelessly)."""
        if request.headers.get("Require"):
            response = make_response(request, 420)
            response.headers.add("Unsupported", request.headers.get("Require") or "")
            return response
        verdict = auth or self.authenticate(request, source, now)
        if isinstance(verdict, Refused):
            return verdict.response
        username = verdict.username
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
        path = request_path(request)
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
                algorithm=verdict.algorithm.value,
                path=path,
            )
            change = Change.REFRESHED if key in existing else Change.ADDED
            self._store(binding)
            self.on_change(change, binding)
        response = self._ok(request, username, now)
        for entry in path:  # RFC 3327 5.3: the stored Path is returned to the handset
            response.headers.add("Path", entry)
        return response

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
