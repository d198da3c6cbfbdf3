"""Retransmitting a 2xx to INVITE until the ACK arrives (RFC 3261 13.3.1.4), sans-IO.

The INVITE server transaction sends a 2xx once; keeping it alive end to end is the UAS core's job.
The TU creates one of these after send_response() returned the 2xx's Send effect (its peer is
where retransmissions go), calls on_timer() at next_deadline(), and ack_received() when the ACK
for the dialog arrives. After 64*T1 without an ACK it reports NoAck: the TU should send BYE.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbx.sip.message import Response
from pbx.sip.peer import Peer
from pbx.sip.timers import Timers
from pbx.sip.transactions.effects import Send

_DEFAULT_TIMERS = Timers()


@dataclass(frozen=True, slots=True)
class NoAck:
    """64*T1 passed without an ACK for this 2xx: the dialog is confirmed but the session dead."""

    response: Response


class Uas2xxRetransmitter:
    def __init__(
        self, response: Response, peer: Peer, now: float, timers: Timers = _DEFAULT_TIMERS
    ) -> None:
        if not 200 <= response.status < 300:
            raise ValueError("only a 2xx is retransmitted by the UAS core")
        self.response = response
        self.peer = peer
        self._t2 = timers.t2
        self._interval = timers.t1
        self._next: float | None = now + timers.t1
        self._give_up = now + timers.transaction_timeout
        self.retransmissions = 0
        self.acked = False

    @property
    def finished(self) -> bool:
        return self._next is None

    def next_deadline(self) -> float | None:
        return None if self._next is None else min(self._next, self._give_up)

    def ack_received(self) -> None:
        self.acked = True
        self._next = None

    def on_timer(self, now: float) -> list[Send | NoAck]:
        if self._next is None:
            return []
        if now >= self._give_up:
            self._next = None
            return [NoAck(self.response)]
        if now < self._next:
            return []
        self._interval = min(2 * self._interval, self._t2)
        self._next = now + self._interval
        self.retransmissions += 1
        return [Send(self.response, self.peer)]
