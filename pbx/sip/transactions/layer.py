"""The SIP transaction layer (RFC 3261 section 17, RFC 6026), sans-IO.

Messages and the current time go in; lists of effects (Send, Deliver, TimedOut, Terminated,
Abandoned) come out, for an adapter to carry out in order. Nothing here reads a clock or touches a
socket. Input from the network never raises: whatever cannot be matched or read is dropped and
counted. Every server transaction ends with exactly one final response: the TU's, or a 500 of the
layer's own once the answer limit passes (Abandoned), so none can occupy the table for ever.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pbx.sip.errors import SipParseError
from pbx.sip.message import CSeq, Request, Response, make_response
from pbx.sip.peer import Peer
from pbx.sip.response_routing import (
    normalize_host,
    replace_top_via,
    response_peer,
    sent_by_key,
    stamp_via,
)
from pbx.sip.timers import Timers
from pbx.sip.transactions.client import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientState,
    ClientTransaction,
    build_cancel,
)
from pbx.sip.transactions.effects import (
    Abandoned,
    Deliver,
    Effect,
    Send,
    Side,
    Terminated,
    TimedOut,
    TransactionId,
)
from pbx.sip.transactions.matching import (
    ClientKey,
    ServerKey,
    ack_2543_key,
    client_key,
    is_rfc3261_branch,
    server_key,
)
from pbx.sip.transactions.server import (
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerState,
    ServerTransaction,
)
from pbx.sip.transactions.timer_queue import TimerQueue
from pbx.sip.via import MAGIC_COOKIE, Via

DEFAULT_TIMERS = Timers()


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie and 64 random bits."""
    return MAGIC_COOKIE + secrets.token_hex(8)


@dataclass
class TransactionStats:
    """Counters for monitoring; never labelled with anything from a message."""

    server_created: int = 0
    client_created: int = 0
    retransmissions_absorbed: int = 0  # requests/responses a transaction kept from the TU
    retransmissions_sent: int = 0  # timer A/E/G resends
    rejected_overload: int = 0  # stateless 503 because the table was full
    timeouts: int = 0  # timers B, F, H
    dropped_malformed: int = 0
    dropped_not_ours: int = 0  # responses whose top Via is not one of our sent-by values
    dropped_stray: int = 0  # responses matching no client transaction (other than 2xx to INVITE)
    dropped_tu_responses: int = 0  # TU responses for ended transactions or in the wrong state
    server_answered: int = 0  # server transactions that got their final response
    abandoned: int = 0  # ... of which the layer sent itself (500: the TU never answered)


@dataclass(frozen=True, slots=True)
class _Read:
    via: Via  # the top Via as received (before stamping)
    cseq: CSeq
    key: ServerKey | None  # None for an ACK
    cancel_key: ServerKey | None = None  # CANCEL: the key of the INVITE it targets
    ack_key: ServerKey | None = None  # RFC 2543 INVITE: the key its ACK will be found by
    ack_target: ServerInviteTransaction | None = None  # ACK: the transaction it belongs to


class TransactionLayer:
    def __init__(
        self,
        timers: Timers = DEFAULT_TIMERS,
        max_transactions: int = 20000,
        *,
        sent_by: Iterable[tuple[str, int]] = (),
        retry_after: int = 5,
        reserved: int = 0,
        privileged: Callable[[Peer], bool] = lambda peer: False,
    ) -> None:
        """sent_by: the (host, port) values our own Vias carry; responses whose top Via names
        another are dropped (RFC 3261 18.1.2). Empty means "not configured": accept any.
        reserved: server transactions kept for `privileged` sources (the trunks): others are
        refused from max_transactions - reserved on, so a flood cannot push a carrier out."""
        self.timers = timers
        self.max_transactions = max_transactions
        self.reserved = reserved
        self.privileged = privileged
        self.retry_after = retry_after
        self.stats = TransactionStats()
        self._sent_by: set[tuple[str, int]] = set()
        self.set_sent_by(sent_by)
        self._serial = itertools.count(1)
        self._queue: TimerQueue[TransactionId] = TimerQueue()
        self._by_id: dict[TransactionId, ServerTransaction | ClientTransaction] = {}
        self._server: dict[ServerKey, ServerTransaction] = {}
        self._server_acks: dict[ServerKey, ServerInviteTransaction] = {}  # RFC 2543 ACK lookup
        self._client: dict[ClientKey, ClientTransaction] = {}

    def set_sent_by(self, sent_by: Iterable[tuple[str, int]]) -> None:
        """Replace our sent-by list (the adapter knows it once its sockets are bound)."""
        self._sent_by = {(normalize_host(host), port) for host, port in sent_by}

    def __len__(self) -> int:
        return len(self._by_id)

    def server_count(self) -> int:
        """Live server transactions (for tests and monitoring)."""
        return len(self._server)

    # --- from the network -------------------------------------------------------------------
    def receive(self, message: Request | Response, source: Peer, now: float) -> list[Effect]:
        if isinstance(message, Request):
            return self._settle(self._receive_request(message, source, now))
        return self._settle(self._receive_response(message, source, now))

    def _read(self, request: Request) -> _Read:
        """Everything matching needs from a request, read before any state changes, so that a
        malformed request is dropped cleanly. Raises ValueError (SipParseError included)."""
        via = request.top_via
        cseq = request.cseq
        if cseq.method != request.method or request.uri is None:
            raise SipParseError("CSeq method differs from the request method")
        if request.method == "ACK":
            return _Read(via, cseq, None, ack_target=self._ack_target(request, via, cseq))
        key = server_key(request, via, cseq, request.method)
        if request.method == "CANCEL":
            return _Read(via, cseq, key, cancel_key=server_key(request, via, cseq, "INVITE"))
        if request.method == "INVITE" and key[0] == "2543":
            return _Read(via, cseq, key, ack_key=ack_2543_key(request, via, cseq))
        return _Read(via, cseq, key)

    def _receive_request(self, request: Request, source: Peer, now: float) -> list[Effect]:
        try:
            read = self._read(request)
        except ValueError:
            self.stats.dropped_malformed += 1
            return []
        via, key = read.via, read.key
        if key is None:
            return self._receive_ack(request, via, read.ack_target, source, now)
        txn = self._server.get(key)
        if txn is not None:
            self.stats.retransmissions_absorbed += 1
            return txn.on_retransmission(response_peer(source, stamp_via(via, source)), now)
        stamped = stamp_via(via, source)
        if stamped is not via:
            replace_top_via(request, stamped)
        peer = response_peer(source, stamped)
        if len(self._by_id) >= self.max_transactions or (
            len(self._by_id) >= self.max_transactions - self.reserved
            and not self.privileged(source)
        ):
            return self._reject_overloaded(request, via, peer)
        tid = TransactionId(Side.SERVER, request.method, next(self._serial))
        txn = self._new_server_transaction(tid, key, request, peer)
        if read.ack_key is not None and isinstance(txn, ServerInviteTransaction):
            txn.ack_key = read.ack_key
            self._server_acks[read.ack_key] = txn
        cancels = None
        if read.cancel_key is not None:
            target_invite = self._server.get(read.cancel_key)
            if isinstance(target_invite, ServerInviteTransaction):
                cancels = target_invite.id
        return [*txn.start(now), Deliver(request, tid, source, cancels)]

    def _new_server_transaction(
        self, tid: TransactionId, key: ServerKey, request: Request, peer: Peer
    ) -> ServerTransaction:
        txn: ServerTransaction
        if request.method == "INVITE":
            txn = ServerInviteTransaction(tid, key, request, peer, self.timers, self._queue)
        else:
            txn = ServerNonInviteTransaction(tid, key, request, peer, self.timers, self._queue)
        self._by_id[tid] = txn
        self._server[key] = txn
        self.stats.server_created += 1
        return txn

    def _reject_overloaded(self, request: Request, via: Via, peer: Peer) -> list[Effect]:
        """Stateless 503 (RFC 3261 21.5.4); the To tag is derived from the request so that a
        retransmission gets the same answer."""
        self.stats.rejected_overload += 1
        seed = f"{request.call_id}|{request.headers.get('From')}|{via}".encode(
            "utf-8", "surrogateescape"
        )
        tag = hashlib.blake2s(seed, digest_size=6).hexdigest()
        response = make_response(request, 503, to_tag=tag)
        response.headers.add("Retry-After", str(self.retry_after))
        return [Send(response, peer)]

    def _ack_target(self, ack: Request, via: Via, cseq: CSeq) -> ServerInviteTransaction | None:
        """The INVITE server transaction an ACK belongs to (17.2.3, or the RFC 2543 rule)."""
        txn = self._server.get(server_key(ack, via, cseq, "INVITE"))
        if txn is None and not is_rfc3261_branch(via.branch):
            candidate = self._server_acks.get(ack_2543_key(ack, via, cseq))
            if candidate is not None and candidate.final_to_tag == ack.to.tag:
                txn = candidate
        return txn if isinstance(txn, ServerInviteTransaction) else None

    def _receive_ack(
        self,
        ack: Request,
        via: Via,
        txn: ServerInviteTransaction | None,
        source: Peer,
        now: float,
    ) -> list[Effect]:
        if txn is not None and txn.state is not ServerState.ACCEPTED:
            self.stats.retransmissions_absorbed += 1
            return txn.on_ack(ack, source, now)  # ACK for a non-2xx: the transaction's own
        stamped = stamp_via(via, source)
        if stamped is not via:
            replace_top_via(ack, stamped)
        if txn is not None:
            return txn.on_ack(ack, source, now)  # Accepted: delivered with the transaction
        return [Deliver(ack, None, source)]  # ACK for a 2xx: its own transaction, the TU's

    def _receive_response(self, response: Response, source: Peer, now: float) -> list[Effect]:
        try:
            via = response.top_via
            cseq = response.cseq
            if self._sent_by and sent_by_key(via) not in self._sent_by:
                self.stats.dropped_not_ours += 1
                return []
        except ValueError:
            self.stats.dropped_malformed += 1
            return []
        txn = self._client.get(client_key(via.branch or "", cseq.method))
        if txn is None:
            if 200 <= response.status < 300 and cseq.method == "INVITE":
                return [Deliver(response, None, source)]  # the TU ACKs it (and may BYE it)
            self.stats.dropped_stray += 1
            return []
        effects = txn.on_response(response, source, now)
        if not any(isinstance(e, Deliver) for e in effects):
            self.stats.retransmissions_absorbed += 1
        if (
            isinstance(txn, ClientInviteTransaction)
            and txn.cancel_requested
            and not txn.cancel_sent
            and txn.state is ClientState.PROCEEDING
        ):
            effects += self._send_cancel(txn, now)  # the deferred CANCEL of RFC 3261 9.1
        return effects

    # --- from the TU ------------------------------------------------------------------------
    def send_request(
        self, request: Request, peer: Peer, now: float
    ) -> tuple[TransactionId, list[Effect]]:
        """Start a client transaction. The request is copied; its top Via gets a fresh branch
        unless it already carries an RFC 3261 one. The Send effect holds the copy."""
        if request.method == "ACK":
            raise ValueError("ACK has no client transaction; send it directly")
        request = Request(
            request.method,
            request.request_uri,
            request.headers.copy(),
            request.body,
            request.version,
            request.raw_uri,
        )
        via = request.top_via
        branch = via.branch
        if branch is None or not is_rfc3261_branch(branch):
            branch = new_branch()
            replace_top_via(request, via.with_params(branch=branch))
        key = client_key(branch, request.method)
        if key in self._client:
            raise ValueError("branch already used by a live client transaction")
        tid = TransactionId(Side.CLIENT, request.method, next(self._serial))
        txn: ClientTransaction
        if request.method == "INVITE":
            txn = ClientInviteTransaction(tid, key, request, peer, self.timers, self._queue)
        else:
            txn = ClientNonInviteTransaction(tid, key, request, peer, self.timers, self._queue)
        self._by_id[tid] = txn
        self._client[key] = txn
        self.stats.client_created += 1
        return tid, self._settle(txn.start(now))

    def send_response(
        self, transaction: TransactionId, response: Response, now: float
    ) -> list[Effect]:
        """Answer through a server transaction. Responses for a transaction that has ended, or
        that its state does not allow (a second final), are dropped and counted."""
        if transaction.side is not Side.SERVER:
            raise ValueError("responses are sent through server transactions")
        if not 100 <= response.status <= 699:
            raise ValueError(f"invalid status {response.status}")
        txn = self._by_id.get(transaction)
        if not isinstance(txn, ServerTransaction):
            self.stats.dropped_tu_responses += 1
            return []
        answered = txn.answered
        effects = txn.send_response(response, now)
        if not effects:
            self.stats.dropped_tu_responses += 1
        elif not answered and txn.answered:
            self.stats.server_answered += 1
        return self._settle(effects)

    def send_response_once(self, transaction: TransactionId, response: Response) -> list[Effect]:
        """A final non-2xx sent once, ending the server transaction without retransmissions
        or lingering (RFC 3261 section 26.3.2.4: challenges and refusals of unverified
        sources)."""
        txn = self._by_id.get(transaction)
        effects = txn.send_once(response) if isinstance(txn, ServerTransaction) else []
        if not effects:
            self.stats.dropped_tu_responses += 1
        else:
            self.stats.server_answered += 1
        return self._settle(effects)

    def cancel(self, transaction: TransactionId, now: float) -> list[Effect]:
        """CANCEL a client INVITE (RFC 3261 9.1): sent now if a provisional arrived, else as
        soon as one does; nothing once a final response arrived or the transaction ended."""
        txn = self._by_id.get(transaction)
        if txn is None:
            return []
        if not isinstance(txn, ClientInviteTransaction):
            raise ValueError("only a client INVITE transaction can be cancelled")
        if txn.cancel_requested:
            return []
        txn.cancel_requested = True
        if txn.state is ClientState.PROCEEDING:
            return self._settle(self._send_cancel(txn, now))
        return []

    def _send_cancel(self, invite: ClientInviteTransaction, now: float) -> list[Effect]:
        if invite.request is None:  # a final response arrived: nothing left to cancel
            return []
        cancel = build_cancel(invite.request)
        key = client_key(invite.key[0], "CANCEL")
        if key in self._client:
            return []
        tid = TransactionId(Side.CLIENT, "CANCEL", next(self._serial))
        txn = ClientNonInviteTransaction(tid, key, cancel, invite.peer, self.timers, self._queue)
        self._by_id[tid] = txn
        self._client[key] = txn
        self.stats.client_created += 1
        invite.mark_cancel_sent(now)
        return txn.start(now)

    # --- time -------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self._queue.next_deadline()

    def on_timer(self, now: float) -> list[Effect]:
        """Fire every timer due at `now` (A-M); call it at next_deadline() or later."""
        effects: list[Effect] = []
        for tid, name in self._queue.pop_due(now):
            txn = self._by_id.get(tid)
            if txn is None:
                continue
            answered = isinstance(txn, ServerTransaction) and txn.answered
            fired = txn.on_timer(name, now)
            if isinstance(txn, ServerTransaction) and not answered and txn.answered:
                self.stats.server_answered += 1  # by the answer limit
            else:
                self.stats.retransmissions_sent += sum(isinstance(e, Send) for e in fired)
            effects.extend(self._settle(fired))
        return effects

    # --- helpers for the TU and tests -------------------------------------------------------
    def response_peer(self, request_source: Peer, via: Via) -> Peer:
        return response_peer(request_source, via)

    def server_transaction_state(self, transaction: TransactionId) -> ServerState:
        """The state of a server transaction; TERMINATED once it is gone."""
        if transaction.side is not Side.SERVER:
            raise ValueError("not a server transaction")
        txn = self._by_id.get(transaction)
        return txn.state if isinstance(txn, ServerTransaction) else ServerState.TERMINATED

    def client_transaction_state(self, transaction: TransactionId) -> ClientState:
        """The state of a client transaction; TERMINATED once it is gone."""
        if transaction.side is not Side.CLIENT:
            raise ValueError("not a client transaction")
        txn = self._by_id.get(transaction)
        return txn.state if isinstance(txn, ClientTransaction) else ClientState.TERMINATED

    def request_of(self, transaction: TransactionId) -> Request | None:
        """The request a transaction was created for (server side: as stamped), while it waits
        for its final response; None after that (a lingering transaction drops it)."""
        txn = self._by_id.get(transaction)
        return None if txn is None else txn.request

    # --- bookkeeping ------------------------------------------------------------------------
    def _settle(self, effects: list[Effect]) -> list[Effect]:
        for effect in effects:
            if isinstance(effect, Terminated):
                self._forget(effect.transaction)
            elif isinstance(effect, TimedOut):
                self.stats.timeouts += 1
            elif isinstance(effect, Abandoned):
                self.stats.abandoned += 1
        return effects

    def _forget(self, tid: TransactionId) -> None:
        txn = self._by_id.pop(tid, None)
        self._queue.cancel_all(tid)
        if isinstance(txn, ServerTransaction):
            ack_key = txn.ack_key
            if self._server.get(txn.key) is txn:
                del self._server[txn.key]
            if ack_key is not None and self._server_acks.get(ack_key) is txn:
                del self._server_acks[ack_key]
        elif isinstance(txn, ClientTransaction) and self._client.get(txn.key) is txn:
            del self._client[txn.key]
