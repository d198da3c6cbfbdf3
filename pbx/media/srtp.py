"""SRTP (RFC 3711) with SDES keys (RFC 4568 ``a=crypto``): protect and unprotect sessions.

Volunteers' handsets sit on home broadband and Wi-Fi; their media is encrypted and
authenticated with keys exchanged in SDP, which is why keys are only ever offered or accepted
over TLS signalling (the caller of this module decides that). The cipher work is libsrtp's,
through ``pylibsrtp``.

A session holds one outbound context (our key, any SSRC we send) and one inbound context (the
peer's key, any SSRC it sends). A packet that fails authentication (tampered, or not SRTP at
all) is dropped and counted, and so is a replayed one; neither ever reaches the call.
"""

from __future__ import annotations

import base64
import binascii
import enum
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pylibsrtp

__all__ = [
    "CryptoAttribute",
    "LocalKeys",
    "SrtpKeys",
    "SrtpMode",
    "SrtpSession",
    "Suite",
]


class SrtpMode(enum.StrEnum):
    """Media protection policy for a leg."""

    OFF = "off"  # plain RTP; crypto lines in offers are ignored
    OFFER = "offer"  # SRTP when the peer takes it (over TLS), plain RTP otherwise
    REQUIRE = "require"  # SRTP over TLS or no call (488)


class Suite(enum.Enum):
    """Crypto suites (RFC 4568 6.2, RFC 7714 14.2): (libsrtp profile, master key+salt bytes)."""

    AES_CM_128_HMAC_SHA1_80 = (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30)
    AES_CM_128_HMAC_SHA1_32 = (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30)
    AEAD_AES_128_GCM = (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28)
    AEAD_AES_256_GCM = (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44)

    @property
    def profile(self) -> int:
        return int(self.value[0])

    @property
    def key_length(self) -> int:
        return int(self.value[1])

    @classmethod
    def parse(cls, name: str) -> Suite:
        """A suite by its SDP name (ValueError for one we do not support)."""
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unsupported SRTP crypto suite {name!r}") from None


DEFAULT_SUITES = (Suite.AES_CM_128_HMAC_SHA1_80, Suite.AEAD_AES_128_GCM)

# "inline:<base64 key||salt>[|<lifetime>][|<MKI>:<length>]" (RFC 4568 9.2)
_KEY_PARAM = re.compile(
    r"inline:([A-Za-z0-9+/=]{1,100})(?:\|([0-9^]{1,12}))?(?:\|([0-9]{1,3}:[0-9]{1,3}))?"
)
_TAG = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class CryptoAttribute:
    """One ``a=crypto`` line we can use: tag, suite and its inline master key + salt."""

    tag: int
    suite: Suite
    key: bytes

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute | None:
        """The line's meaning, or None when we cannot use it (unknown suite, several keys, an
        MKI, session parameters, a bad key): RFC 4568 says to skip such a line, not fail."""
        parts = value.split()
        if len(parts) != 3 or not _TAG.fullmatch(parts[0]):
            return None  # session parameters (KDR, UNENCRYPTED_SRTP, ...) are not supported
        tag, suite_name, key_params = parts
        try:
            suite = Suite.parse(suite_name)
        except ValueError:
            return None
        match = _KEY_PARAM.fullmatch(key_params)  # one key only: no ';' lists
        if match is None:
            return None
        key_b64, _lifetime, mki = match.groups()
        if mki is not None:
            return None  # MKIs are not supported: a key without one is what phones send
        try:
            key = base64.b64decode(key_b64 + "=" * (-len(key_b64) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(key) != suite.key_length:
            return None
        return cls(int(tag), suite, key)

    def to_value(self) -> str:
        return f"{self.tag} {self.suite.name} inline:{base64.b64encode(self.key).decode()}"


class LocalKeys:
    """Our master keys for one media leg, one per suite, made once: a re-offer or a re-answer
    keeps the key (and so the outbound context), never restarting a keystream."""

    def __init__(self, suites: Iterable[Suite] = DEFAULT_SUITES) -> None:
        self.suites = tuple(suites)
        self._keys: dict[Suite, bytes] = {}

    def key(self, suite: Suite) -> bytes:
        if suite not in self._keys:
            self._keys[suite] = os.urandom(suite.key_length)
        return self._keys[suite]

    def offer(self) -> list[CryptoAttribute]:
        """The crypto lines of an offer, in our order of preference (tags 1, 2, ...)."""
        return [CryptoAttribute(i, s, self.key(s)) for i, s in enumerate(self.suites, 1)]


@dataclass(frozen=True)
class SrtpKeys:
    """What offer/answer agreed: the suite, our (sending) key and the peer's (receiving) key."""

    suite: Suite
    tx_key: bytes
    rx_key: bytes

    def __repr__(self) -> str:  # keys never end up in a log line
        return f"SrtpKeys({self.suite.name})"


@dataclass(slots=True)
class SrtpStats:
    protected: int = 0
    unprotected: int = 0
    auth_failures: int = 0  # tampered, forged, or plain RTP where SRTP was agreed: dropped
    replays: int = 0  # a packet index seen before (or too old): dropped
    rtcp_auth_failures: int = 0


def _context(suite: Suite, key: bytes, outbound: bool) -> pylibsrtp.Session:
    ssrc = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    policy = pylibsrtp.Policy(key=key, ssrc_type=ssrc, srtp_profile=suite.profile)
    if outbound:
        policy.allow_repeat_tx = True  # our 2xx-style resends of a DTMF end packet
    return pylibsrtp.Session(policy)


class SrtpSession:
    """Protect what we send and unprotect what we receive on one leg, for (SRTP and SRTCP)."""

    def __init__(self, keys: SrtpKeys, on_auth_failure: Callable[[], None] | None = None) -> None:
        self.keys = keys
        self.stats = SrtpStats()
        self.on_auth_failure = on_auth_failure
        self._tx = _context(keys.suite, keys.tx_key, outbound=True)
        self._rx = _context(keys.suite, keys.rx_key, outbound=False)

    def rekey(self, keys: SrtpKeys) -> None:
        """Apply a renegotiation: a context is replaced only if its suite or key changed."""
        if keys.suite != self.keys.suite or keys.tx_key != self.keys.tx_key:
            self._tx = _context(keys.suite, keys.tx_key, outbound=True)
        if keys.suite != self.keys.suite or keys.rx_key != self.keys.rx_key:
            self._rx = _context(keys.suite, keys.rx_key, outbound=False)
        self.keys = keys

    # ---------------------------------------------------------------------------- SRTP
    def protect(self, packet: bytes) -> bytes:
        self.stats.protected += 1
        return self._tx.protect(packet)

    def unprotect(self, packet: bytes) -> bytes | None:
        """The RTP packet, or None (dropped and counted) when it fails authentication."""
        try:
            plain = self._rx.unprotect(packet)
        except pylibsrtp.Error as exc:
            self._failed(exc, rtcp=False)
            return None
        self.stats.unprotected += 1
        return plain

    # --------------------------------------------------------------------------- SRTCP
    def protect_rtcp(self, packet: bytes) -> bytes:
        return self._tx.protect_rtcp(packet)

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        try:
            return self._rx.unprotect_rtcp(packet)
        except pylibsrtp.Error as exc:
            self._failed(exc, rtcp=True)
            return None

    def _failed(self, exc: pylibsrtp.Error, *, rtcp: bool) -> None:
        if "replay" in str(exc):
            self.stats.replays += 1
            return
        if rtcp:
            self.stats.rtcp_auth_failures += 1
        else:
            self.stats.auth_failures += 1
        if self.on_auth_failure is not None:
            self.on_auth_failure()
