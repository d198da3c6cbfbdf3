"""Client transactions (RFC 3261 17.1, with RFC 6026's Accepted state for INVITE)."""

from __future__ import annotations

import enum

from pbx.sip.headers import Headers
from pbx.sip.message import Request, Response
from pbx.sip.peer import Peer
from pbx.sip.timers import Timers
from pbx.sip.transactions.effects import (
    Deliver,
    Effect,
    Send,
    Terminated,
    TimedOut,
    TransactionId,
)
from pbx.sip.transactions.matching import ClientKey
from pbx.sip.transactions.timer_queue import TimerQueue


class ClientState(enum.Enum):
    CALLING = "calling"  # INVITE only
    TRYING = "trying"  # non-INVITE only
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    ACCEPTED = "accepted"  # INVITE only, RFC 6026
    TERMINATED = "terminated"


def _top_via_value(request: Request) -> str:
    values = request.headers.values("Via")
    if not values:
        raise ValueError("request has no Via")
    return values[0]


def _copy_core(request: Request, method: str, to_value: str) -> Headers:
    """Via (top only), Route, Max-Forwards, From, To, Call-ID and CSeq as ACK/CANCEL need them."""
    headers = Headers()
    headers.add("Via", _top_via_value(request))
    for route in request.headers.fields("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", to_value)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.number} {method}")
    return headers


def build_ack_for_non2xx(invite: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 3xx-6xx (RFC 3261 17.1.1.3)."""
    headers = _copy_core(invite, "ACK", response.headers.get("To") or "")
    return Request("ACK", invite.request_uri, headers)


def build_cancel(invite: Request) -> Request:
    """CANCEL for a pending INVITE (RFC 3261 9.1): same Request-URI, Call-ID, From, To, CSeq
    number, Route and top Via (so the same branch) as the INVITE."""
    headers = _copy_core(invite, "CANCEL", invite.headers.get("To") or "")
    return Request("CANCEL", invite.request_uri, headers)


class ClientTransaction:
    """Shared plumbing; subclasses implement the state machine of their kind.

    Once a final response arrived, a transaction lingers only to absorb retransmitted finals
    (up to 64*T1 for an INVITE): the request is dropped then (``request`` is None)."""

    state: ClientState

    def __init__(
        self,
        tid: TransactionId,
        key: ClientKey,
        request: Request,
        peer: Peer,
        timers: Timers,
        queue: TimerQueue[TransactionId],
    ) -> None:
        self.id = tid
        self.key = key
        self.request: Request | None = request  # None once a final response arrived
        self.peer = peer
        self.timers = timers
        self.queue = queue
        self.reliable = peer.reliable
        self.retransmit_interval = 0.0

    def _arm(self, name: str, delay: float, now: float) -> None:
        self.queue.arm(self.id, name, now + delay)

    def _terminate(self) -> list[Effect]:
        self.state = ClientState.TERMINATED
        self.queue.cancel_all(self.id)
        return [Terminated(self.id)]

    def _time_out(self) -> list[Effect]:
        assert self.request is not None  # only before a final response
        return [TimedOut(self.id, self.request), *self._terminate()]

    def start(self, now: float) -> list[Effect]:
        raise NotImplementedError

    def on_response(self, response: Response, source: Peer, now: float) -> list[Effect]:
        raise NotImplementedError

    def on_timer(self, name: str, now: float) -> list[Effect]:
        raise NotImplementedError


class ClientInviteTransaction(ClientTransaction):
    def __init__(
        self,
        tid: TransactionId,
        key: ClientKey,
        request: Request,
        peer: Peer,
        timers: Timers,
        queue: TimerQueue[TransactionId],
    ) -> None:
        super().__init__(tid, key, request, peer, timers, queue)
        self.state = ClientState.CALLING
        self.ack: Request | None = None
        self.cancel_requested = False
        self.cancel_sent = False

    def start(self, now: float) -> list[Effect]:
        assert self.request is not None
        interval = self.timers.a(self.reliable)
        if interval is not None:
            self.retransmit_interval = interval
            self._arm("A", interval, now)
        self._arm("B", self.timers.b, now)
        return [Send(self.request, self.peer)]

    def on_response(self, response: Response, source: Peer, now: float) -> list[Effect]:
        status = response.status
        state = self.state
        if state in (ClientState.CALLING, ClientState.PROCEEDING):
            if status < 200:
                if state is ClientState.CALLING:
                    self.state = ClientState.PROCEEDING
                    self.queue.cancel(self.id, "A")
                    self.queue.cancel(self.id, "B")  # B only runs in Calling (17.1.1.2)
                return [Deliver(response, self.id, source)]
            self.queue.cancel_all(self.id)
            request, self.request = self.request, None
            assert request is not None
            if status < 300:
                self.state = ClientState.ACCEPTED
                self._arm("M", self.timers.m, now)
                return [Deliver(response, self.id, source)]
            self.state = ClientState.COMPLETED
            self.ack = build_ack_for_non2xx(request, response)
            effects: list[Effect] = [Send(self.ack, self.peer), Deliver(response, self.id, source)]
            linger = self.timers.d(self.reliable)
            if linger <= 0:
                return effects + self._terminate()
            self._arm("D", linger, now)
            return effects
        if state is ClientState.COMPLETED:
            if status >= 300 and self.ack is not None:
                return [Send(self.ack, self.peer)]  # retransmitted final: ACK again, TU not told
            if 200 <= status < 300:
                return [Deliver(response, self.id, source)]  # a fork answered: TU must ACK+BYE
            return []
        if state is ClientState.ACCEPTED and 200 <= status < 300:
            return [Deliver(response, self.id, source)]  # TU re-sends its ACK (RFC 6026 8.4)
        return []

    def mark_cancel_sent(self, now: float) -> None:
        """Start the 64*T1 guard of RFC 3261 9.1: give up on the INVITE if no final comes."""
        self.cancel_sent = True
        self._arm("B", self.timers.b, now)

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == "A" and self.state is ClientState.CALLING:
            assert self.request is not None  # only before a final response
            self.retransmit_interval *= 2  # INVITE retransmissions double without a cap
            self._arm("A", self.retransmit_interval, now)
            return [Send(self.request, self.peer)]
        if name == "B" and self.state in (ClientState.CALLING, ClientState.PROCEEDING):
            return self._time_out()
        if name in ("D", "M"):
            return self._terminate()
        return []


class ClientNonInviteTransaction(ClientTransaction):
    def __init__(
        self,
        tid: TransactionId,
        key: ClientKey,
        request: Request,
        peer: Peer,
        timers: Timers,
        queue: TimerQueue[TransactionId],
    ) -> None:
        super().__init__(tid, key, request, peer, timers, queue)
        self.state = ClientState.TRYING

    def start(self, now: float) -> list[Effect]:
        assert self.request is not None
        interval = self.timers.e(self.reliable)
        if interval is not None:
            self.retransmit_interval = interval
            self._arm("E", interval, now)
        self._arm("F", self.timers.f, now)
        return [Send(self.request, self.peer)]

    def on_response(self, response: Response, source: Peer, now: float) -> list[Effect]:
        if self.state not in (ClientState.TRYING, ClientState.PROCEEDING):
            return []  # Completed absorbs retransmitted finals
        if response.status < 200:
            self.state = ClientState.PROCEEDING
            return [Deliver(response, self.id, source)]
        self.queue.cancel_all(self.id)
        self.state = ClientState.COMPLETED
        self.request = None  # Completed only absorbs retransmitted finals
        effects: list[Effect] = [Deliver(response, self.id, source)]
        linger = self.timers.k(self.reliable)
        if linger <= 0:
            return effects + self._terminate()
        self._arm("K", linger, now)
        return effects

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == "E" and self.state in (ClientState.TRYING, ClientState.PROCEEDING):
            assert self.request is not None  # only before a final response
            if self.state is ClientState.TRYING:
                self.retransmit_interval = min(2 * self.retransmit_interval, self.timers.t2)
            else:
                self.retransmit_interval = self.timers.t2
            self._arm("E", self.retransmit_interval, now)
            return [Send(self.request, self.peer)]
        if name == "F" and self.state in (ClientState.TRYING, ClientState.PROCEEDING):
            return self._time_out()
        if name == "K":
            return self._terminate()
        return []
