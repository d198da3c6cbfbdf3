"""Console sessions, CSRF tokens and login throttling, all in memory and all bounded.

A session is a random id in an HttpOnly, SameSite=Strict cookie (Secure over TLS) naming the
account and its role; each carries its own CSRF token, which every form posts back. Failed logins
are counted per source address and per username: after `free_failures` the next attempt is
refused unread until a back-off that doubles with each further failure has passed.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

from pbx.web.accounts import Account

SESSION_IDLE = 30 * 60.0  # seconds without a request before a session ends
SESSION_MAX = 12 * 3600.0  # and at most this long after the login
MAX_SESSIONS = 1000
MAX_TRACKED = 10_000  # failure counters kept (the oldest go first)


@dataclass
class Session:
    id: str
    account: Account
    csrf: str
    started: float
    seen: float

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf)


@dataclass
class Sessions:
    idle: float = SESSION_IDLE
    lifetime: float = SESSION_MAX
    _by_id: OrderedDict[str, Session] = field(default_factory=OrderedDict)

    def start(self, account: Account, now: float) -> Session:
        while len(self._by_id) >= MAX_SESSIONS:
            self._by_id.popitem(last=False)
        s = Session(secrets.token_urlsafe(32), account, secrets.token_urlsafe(32), now, now)
        self._by_id[s.id] = s
        return s

    def get(self, session_id: str | None, now: float) -> Session | None:
        s = self._by_id.get(session_id or "")
        if s is None:
            return None
        if now - s.seen > self.idle or now - s.started > self.lifetime:
            del self._by_id[s.id]
            return None
        s.seen = now
        self._by_id.move_to_end(s.id)
        return s

    def end(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)


@dataclass
class _Failures:
    count: int = 0
    blocked_until: float = 0.0


@dataclass
class LoginThrottle:
    free_failures: int = 3
    backoff: float = 2.0  # seconds after the first failure past the free ones, then doubling
    max_backoff: float = 300.0
    _failures: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)

    def wait(self, source: str, username: str, now: float) -> float:
        """Seconds until this source may try this username again (0: now)."""
        keys = (f"ip:{source}", f"user:{username.lower()}")
        return max(
            (self._failures[k].blocked_until - now for k in keys if k in self._failures),
            default=0.0,
        )

    def failed(self, source: str, username: str, now: float) -> None:
        for key in (f"ip:{source}", f"user:{username.lower()}"):
            f = self._failures.pop(key, None) or _Failures()
            f.count += 1
            over = f.count - self.free_failures + 1  # the last free one already blocks a while
            if over > 0:
                f.blocked_until = now + min(self.max_backoff, self.backoff * 2 ** (over - 1))
            self._failures[key] = f
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)

    def succeeded(self, source: str, username: str) -> None:
        self._failures.pop(f"ip:{source}", None)
        self._failures.pop(f"user:{username.lower()}", None)
