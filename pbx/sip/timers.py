"""SIP transaction timer values (RFC 3261 section 17 and table 4, RFC 6026 timers L and M).

Only the three base values are configurable; every other timer derives from them as the RFCs say.
Timers that exist only to cover an unreliable transport (A, E, G retransmissions; D, I, J, K
linger times) are None or zero on TCP/TLS, so the state machines can ask without branching.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timers:
    t1: float = 0.5  # RTT estimate
    t2: float = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
    t4: float = 5.0  # maximum time a message remains in the network
    d_unreliable: float = 32.0  # Timer D over UDP: "> 32 s", independent of T1
    # How long the TU may leave a new INVITE without a final response before the layer answers
    # 500 itself (the 3 minutes of a proxy's Timer C: long enough for any ringing).
    invite_answer_limit: float = 180.0

    @property
    def transaction_timeout(self) -> float:
        """64*T1: Timers B, F, H, J (UDP), L and M."""
        return 64 * self.t1

    # --- client INVITE ---
    def a(self, reliable: bool) -> float | None:
        """First INVITE retransmission interval (doubles without limit)."""
        return None if reliable else self.t1

    @property
    def b(self) -> float:
        return self.transaction_timeout

    def d(self, reliable: bool) -> float:
        """How long a completed client INVITE transaction absorbs final response retransmissions."""
        return 0.0 if reliable else self.d_unreliable

    @property
    def m(self) -> float:
        """RFC 6026: how long an Accepted client INVITE transaction passes 2xx responses up."""
        return self.transaction_timeout

    # --- client non-INVITE ---
    def e(self, reliable: bool) -> float | None:
        """First non-INVITE retransmission interval (doubles up to T2)."""
        return None if reliable else self.t1

    @property
    def f(self) -> float:
        return self.transaction_timeout

    def k(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    # --- server INVITE ---
    def g(self, reliable: bool) -> float | None:
        """First retransmission interval of a non-2xx final response (doubles up to T2)."""
        return None if reliable else self.t1

    @property
    def h(self) -> float:
        return self.transaction_timeout

    def i(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    @property
    def l(self) -> float:  # noqa: E743 - the RFC's name for it
        """RFC 6026: how long an Accepted server INVITE transaction absorbs INVITE copies."""
        return self.transaction_timeout

    # --- server: the safety net against a TU that never answers ---
    def answer_limit(self, invite: bool) -> float:
        """How long a server transaction may wait for the TU's final response: 64*T1 for a
        non-INVITE (its client has given up by then, Timer F), invite_answer_limit for INVITE."""
        return self.invite_answer_limit if invite else self.transaction_timeout

    # --- server non-INVITE ---
    def j(self, reliable: bool) -> float:
        return 0.0 if reliable else self.transaction_timeout
