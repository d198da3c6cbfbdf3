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
from dataclasses import dataclass, field

from pbx.sip.address import parse_address
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


@dataclass
class CallerHasher:
    rotation_seconds: float = ROTATION_SECONDS
    _keys: dict[int, bytes] = field(default_factory=dict)

    def key_for(self, now: float) -> bytes:
        epoch = int(now // self.rotation_seconds)
        if epoch not in self._keys:
            self._keys = {epoch: secrets.token_bytes(32)}  # forget yesterday's key
        return self._keys[epoch]

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
        call_ref=uuid.uuid4().hex[:16], dialed=dialed_number(invite), caller_key=key, trunk=trunk
    )
