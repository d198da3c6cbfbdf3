"""Server transactions (RFC 3261 17.2, with RFC 6026's Accepted state for INVITE)."""

from __future__ import annotations

import enum
import secrets

from pbx.sip.errors import SipParseError
from pbx.sip.message import Request, Response, make_response
from pbx.sip.peer import Peer
from pbx.sip.timers import Timers
from pbx.sip.transactions.effects import (
    Abandoned,
    Deliver,
    Effect,
    Send,
    Terminated,
    TimedOut,
    TransactionId,
)
from pbx.sip.transactions.matching import ServerKey
from pbx.sip.transactions.timer_queue import TimerQueue


class ServerState(enum.Enum):
    TRYING = "trying"  # non-INVITE only
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"  # INVITE only
    ACCEPTED = "accepted"  # INVITE only, RFC 6026
    TERMINATED = "terminated"


SAFETY = "S"  # the answer limit (Timers.answer_limit): not an RFC timer, our own safety net
ABANDONED_REASON = "Server Internal Error - No answer in time"


class ServerTransaction:
    """Shared plumbing; subclasses implement the state machine of their kind.

    Once a final response is sent, a transaction lingers (up to 64*T1, 32 s) only to absorb
    retransmissions. It then keeps no more than that needs: the request goes (``request`` is
    None), and so does the response unless a retransmitted request must get it again. At a few
    hundred calls a second, the lingering transactions are most of the live objects."""

    state: ServerState
    invite = False

    def __init__(
        self,
        tid: TransactionId,
        key: ServerKey,
        request: Request,
        peer: Peer,
        timers: Timers,
        queue: TimerQueue[TransactionId],
    ) -> None:
        self.id = tid
        self.key = key
        self.ack_key: ServerKey | None = None  # RFC 2543 INVITEs are also found by their ACK
        self.request: Request | None = request  # None once a final response was sent
        self.peer = peer  # where responses go (response_peer of the latest copy of the request)
        self.timers = timers
        self.queue = queue
        self.reliable = peer.reliable
        self.last_response: Response | None = None  # what a retransmitted request gets again
        self.answered = False  # a final response has been sent (by the TU, or the answer limit)

    def _arm(self, name: str, delay: float, now: float) -> None:
        self.queue.arm(self.id, name, now + delay)

    def _terminate(self) -> list[Effect]:
        self.state = ServerState.TERMINATED
        self.queue.cancel_all(self.id)
        return [Terminated(self.id)]

    def _send(self, response: Response) -> Send:
        self.last_response = response
        if response.status >= 200:
            self.answered = True
            self.queue.cancel(self.id, SAFETY)
        return Send(response, self.peer)

    def _linger(self, *, keep_response: bool) -> None:
        """Final response sent: drop what absorbing retransmissions does not need."""
        self.request = None
        if not keep_response:
            self.last_response = None

    def start(self, now: float) -> list[Effect]:
        self._arm(SAFETY, self.timers.answer_limit(self.invite), now)
        return []

    def send_once(self, response: Response) -> list[Effect]:
        """A final non-2xx sent once, the transaction ending at once: how a server refuses or
        challenges an unverified source (RFC 3261 section 26.3.2.4), so a spoofed source earns
        no retransmissions and holds no entry in the table. A retransmitted request is then a
        new transaction and is answered anew (one response per request received)."""
        if self.state not in (ServerState.TRYING, ServerState.PROCEEDING):
            return []
        if response.status < 300:
            raise ValueError("only a final non-2xx response can be sent statelessly")
        return [self._send(response), *self._terminate()]

    def _abandon(self, now: float) -> list[Effect]:
        """The TU never answered: answer 500 ourselves, then end as any answered transaction."""
        request = self.request
        if self.answered or self.state is ServerState.TERMINATED or request is None:
            return []
        response = make_response(request, 500, ABANDONED_REASON, to_tag=secrets.token_hex(6))
        return [Abandoned(self.id, request), *self.send_response(response, now)]

    def on_retransmission(self, peer: Peer, now: float) -> list[Effect]:
        raise NotImplementedError

    def send_response(self, response: Response, now: float) -> list[Effect]:
        raise NotImplementedError

    def on_timer(self, name: str, now: float) -> list[Effect]:
        raise NotImplementedError


class ServerInviteTransaction(ServerTransaction):
    invite = True

    def __init__(
        self,
        tid: TransactionId,
        key: ServerKey,
        request: Request,
        peer: Peer,
        timers: Timers,
        queue: TimerQueue[TransactionId],
    ) -> None:
        super().__init__(tid, key, request, peer, timers, queue)
        self.state = ServerState.PROCEEDING
        self.final_to_tag: str | None = None
        self.retransmit_interval = 0.0

    def start(self, now: float) -> list[Effect]:
        # 17.2.1 asks for 100 Trying only if the TU will take over 200 ms; sending it at once
        # always stops the caller's INVITE retransmissions without guessing about the TU.
        assert self.request is not None
        return [*super().start(now), self._send(make_response(self.request, 100))]

    def on_retransmission(self, peer: Peer, now: float) -> list[Effect]:
        self.peer = peer
        if self.state in (ServerState.PROCEEDING, ServerState.COMPLETED):
            assert self.last_response is not None
            return [Send(self.last_response, peer)]
        return []  # Confirmed, and Accepted per RFC 6026 8.7: absorbed, never to the TU

    def send_response(self, response: Response, now: float) -> list[Effect]:
        status = response.status
        if self.state is ServerState.ACCEPTED:
            # retransmissions of the 2xx (or further 2xx) from the TU go out (RFC 6026 8.7);
            # the TU keeps its 2xx (Uas2xxRetransmitter), so the transaction need not
            return [Send(response, self.peer)] if 200 <= status < 300 else []
        if self.state is not ServerState.PROCEEDING:
            return []
        if status < 200:
            return [self._send(response)]
        try:
            self.final_to_tag = response.to.tag  # what an RFC 2543 ACK will carry
        except SipParseError:
            self.final_to_tag = None
        if status < 300:
            self.state = ServerState.ACCEPTED
            self._arm("L", self.timers.l, now)
            send = self._send(response)
            self._linger(keep_response=False)  # Accepted absorbs the INVITE, sends nothing
            return [send]
        self.state = ServerState.COMPLETED
        interval = self.timers.g(self.reliable)
        if interval is not None:
            self.retransmit_interval = interval
            self._arm("G", interval, now)
        self._arm("H", self.timers.h, now)
        return [self._send(response)]

    def on_ack(self, ack: Request, source: Peer, now: float) -> list[Effect]:
        if self.state is ServerState.COMPLETED:
            self.queue.cancel_all(self.id)
            self.state = ServerState.CONFIRMED
            self._linger(keep_response=False)  # Confirmed absorbs ACKs, sends nothing
            linger = self.timers.i(self.reliable)
            if linger <= 0:
                return self._terminate()
            self._arm("I", linger, now)
            return []
        if self.state is ServerState.ACCEPTED:
            return [Deliver(ack, self.id, source)]  # RFC 6026 8.7: the ACK is the TU's business
        return []  # Confirmed: retransmitted ACK; Proceeding: an ACK before any final is bogus

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == "G" and self.state is ServerState.COMPLETED:
            assert self.last_response is not None
            self.retransmit_interval = min(2 * self.retransmit_interval, self.timers.t2)
            self._arm("G", self.retransmit_interval, now)
            return [Send(self.last_response, self.peer)]
        if name == "H" and self.state is ServerState.COMPLETED:
            assert self.request is not None  # Completed keeps it for this
            return [TimedOut(self.id, self.request), *self._terminate()]
        if name in ("I", "L"):
            return self._terminate()
        if name == SAFETY and self.state is ServerState.PROCEEDING:
            return self._abandon(now)
        return []


class ServerNonInviteTransaction(ServerTransaction):
    def __init__(
        self,
        tid: TransactionId,
        key: ServerKey,
        request: Request,
        peer: Peer,
        timers: Timers,
        queue: TimerQueue[TransactionId],
    ) -> None:
        super().__init__(tid, key, request, peer, timers, queue)
        self.state = ServerState.TRYING

    def on_retransmission(self, peer: Peer, now: float) -> list[Effect]:
        self.peer = peer
        if self.state is ServerState.TRYING or self.last_response is None:
            return []  # nothing to repeat yet
        return [Send(self.last_response, peer)]

    def send_response(self, response: Response, now: float) -> list[Effect]:
        if self.state not in (ServerState.TRYING, ServerState.PROCEEDING):
            return []
        if response.status < 200:
            self.state = ServerState.PROCEEDING
            return [self._send(response)]
        self.state = ServerState.COMPLETED
        effects: list[Effect] = [self._send(response)]
        self._linger(keep_response=True)  # a retransmitted request gets the final again
        linger = self.timers.j(self.reliable)
        if linger <= 0:
            return effects + self._terminate()
        self._arm("J", linger, now)
        return effects

    def on_timer(self, name: str, now: float) -> list[Effect]:
        if name == "J":
            return self._terminate()
        if name == SAFETY:
            return self._abandon(now)
        return []
