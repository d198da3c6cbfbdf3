"""Anonymity at ingress: what the rest of the service may know about a caller.

The caller's number is read exactly once, here, to derive a keyed hash that lets the service
recognise a repeat caller within one day (abuse blocking, "regular caller" statistics) without
being able to recover the number. The key lives only in memory and rotates daily, so hashes from
different days cannot be linked and nothing stored can be reversed. The number itself is not kept.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from pbx.sip.address import parse_address
from pbx.sip.headers import split_list
from pbx.sip.message import Request
from pbx.sip.uri import SipUri

ROTATION_SECONDS = 24 * 3600


@dataclass(frozen=True)
class CallerContext:
    """Everything above the SIP layer knows about an inbound call."""

    call_ref: str  # our own id for logs and metrics (never the carrier's Call-ID)
    dialed: str  # the helpline number that was dialled (ours, not the caller's)
    caller_key: str | None  # rotating keyed hash of the caller's number; None if withheld
    trunk: str  # which trunk or network it came in on
    # the caller called before today (same daily key): a yes/no for statistics, never the key
    repeat_today: bool = False
    # a partner's number (ours to know, from the plan) that forwarded the call, named by a
    # Diversion or History-Info header; never the caller's number
    forwarded_by: str | None = None


MAX_SEEN_TODAY = 50_000  # keys remembered per day for "called before today" (bounded)


def _no_forwarders() -> Collection[str]:
    return ()


@dataclass
class CallerHasher:
    rotation_seconds: float = ROTATION_SECONDS
    # the partners' numbers (digits, national form) a forwarding header may name
    forwarders: Callable[[], Collection[str]] = _no_forwarders
    _keys: dict[int, bytes] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)

    def key_for(self, now: float) -> bytes:
        epoch = int(now // self.rotation_seconds)
        if epoch not in self._keys:
            self._keys = {epoch: secrets.token_bytes(32)}  # forget yesterday's key
            self._seen = set()  # and who called yesterday
        return self._keys[epoch]

    def seen_before(self, key: str) -> bool:
        """Whether this key (of today: keys rotate with the seen set) called before; notes it."""
        if key in self._seen:
            return True
        if len(self._seen) < MAX_SEEN_TODAY:
            self._seen.add(key)
        return False

    def hash(self, number: str, now: float) -> str:
        normalized = "".join(c for c in number if c in "0123456789")
        mac = hmac.new(self.key_for(now), normalized.encode(), hashlib.sha256)
        return mac.hexdigest()[:20]


def dialed_number(invite: Request) -> str:
    uri = invite.request_uri
    user = uri.user_unescaped if isinstance(uri, SipUri) else None
    if not user:
        to_uri = invite.to.uri
        user = to_uri.user_unescaped if isinstance(to_uri, SipUri) else None
    return (user or "").split(";")[0]


def caller_context(invite: Request, hasher: CallerHasher, now: float, trunk: str) -> CallerContext:
    number: str | None = None
    try:
        pai = invite.headers.get("P-Asserted-Identity")
        source = pai if pai else invite.headers.get("From")
        if source is not None:
            uri = parse_address(source.split(",")[0]).uri
            if isinstance(uri, SipUri) and uri.user:
                number = uri.user_unescaped
            elif uri.scheme == "tel":
                number = str(uri)[4:]
    except ValueError:
        number = None
    withheld = not number or number.lower() in ("anonymous", "unknown", "restricted")
    digits = "".join(c for c in number or "" if c in "0123456789")
    key = None if withheld or not digits else hasher.hash(digits, now)
    return CallerContext(
        call_ref=uuid.uuid4().hex[:16], dialed=dialed_number(invite), caller_key=key, trunk=trunk,
        repeat_today=key is not None and hasher.seen_before(key),
        forwarded_by=_forwarding_partner(invite, hasher.forwarders()),
    )  # fmt: skip


def _national(text: str) -> str:
    digits = "".join(c for c in text if c.isdigit() or c == "+")
    if digits.startswith("+31"):
        digits = "0" + digits[3:]
    elif digits.startswith("0031"):
        digits = "0" + digits[4:]
    return digits.replace("+", "")


def _forwarding_partner(invite: Request, partners: Collection[str]) -> str | None:
    """The partner number a Diversion or History-Info header names. Only numbers in the plan's
    partner list are taken: a header naming anything else (the caller, some other forward) is
    ignored, so no caller's number can leave this function."""
    if not partners:
        return None
    for name in ("Diversion", "History-Info"):
        for part in split_list(invite.headers.fields(name)):
            try:
                uri = parse_address(part.strip()).uri
            except ValueError:
                continue
            if isinstance(uri, SipUri) and uri.user:
                user = (uri.user_unescaped or "").split(";")[0]
            elif uri.scheme == "tel":
                user = str(uri)[4:].split(";")[0]
            else:
                continue
            number = _national(user)
            if number in partners:
                return number
    return None
