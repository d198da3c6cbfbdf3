"""Call legs of the B2BUA: the caller's side (we are the UAS) and the volunteer's (we are the UAC).

Each leg owns one dialog. The legs know SIP only; the application (IVR, queues) drives them and
decides what is said to whom. Neither leg ever copies anything from the other.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from pbx.calls.signal import Signal
from pbx.sip.address import Address
from pbx.sip.client_auth import ClientCredentials, authorize
from pbx.sip.dialog import Dialog, DialogState, new_call_id, new_tag
from pbx.sip.headers import Headers
from pbx.sip.message import Request, Response
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.stack import IncomingRequest, SipStack, failure_site
from pbx.sip.transactions import NoAck, TransactionId, Uas2xxRetransmitter
from pbx.sip.uri import SipUri

log = structlog.get_logger("pbx.calls")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, REFER"
SDP = "application/sdp"
INVITE_CSEQ = 1  # of the one INVITE an outbound leg sends (its ACK carries the same number)


class LegState(enum.Enum):
    NEW = "new"
    RINGING = "ringing"  # early dialog
    ANSWERED = "answered"  # 2xx sent or received, waiting for/sending ACK
    CONFIRMED = "confirmed"
    ENDED = "ended"


_background: set[asyncio.Task[Response]] = set()  # BYE transactions still running
_reinvites: set[asyncio.Task[None]] = set()  # re-INVITEs being answered

OfferHandler = Callable[[bytes], Awaitable[bytes | None]]  # re-INVITE offer -> answer (None: 488)


@dataclass
class Leg:
    stack: SipStack
    ref: str  # our call reference, for logs
    contact: SipUri  # our Contact for this leg
    state: LegState = LegState.NEW
    dialog: Dialog | None = None
    end_reason: str = ""
    ended: Signal = field(default_factory=Signal)
    on_reinvite: OfferHandler | None = None
    on_info: Callable[[Request], None] | None = None
    on_end: Callable[[Leg], None] | None = None
    on_refer: Callable[[IncomingRequest], None] | None = None  # a transfer request, while allowed
    remote_sdp: bytes = b""

    @property
    def is_ended(self) -> bool:
        return self.state is LegState.ENDED

    async def wait_ended(self) -> None:
        await self.ended.wait()

    @property
    def dialog_id(self) -> tuple[str, str]:
        """(Call-ID, our tag): how in-dialog requests find the leg."""
        assert self.dialog is not None
        return self.dialog.id

    def _finish(self, reason: str) -> None:
        if self.state is LegState.ENDED:
            return
        self.state = LegState.ENDED
        self.end_reason = reason
        if self.dialog is not None:
            self.dialog.state = DialogState.TERMINATED
        self.ended.set()
        log.info("leg_ended", call=self.ref, reason=reason)
        if self.on_end is not None:
            self.on_end(self)

    async def hangup(self, reason: str = "hangup") -> None:
        """End the leg now: BYE a confirmed dialog; its transaction completes in the background,
        so tearing down the other leg never waits for an unresponsive peer."""
        if self.state is LegState.ENDED or self.dialog is None:
            self._finish(reason)
            return
        bye = self.dialog.request("BYE")
        self._finish(reason)
        task = asyncio.create_task(self.stack.request(bye, self.dialog.peer))
        _background.add(task)
        task.add_done_callback(_background.discard)

    # --- in-dialog requests from the other side (dispatched by the core) -------------------------
    def handle_in_dialog(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        assert self.dialog is not None
        if not self.dialog.accept_remote(request):
            incoming.respond(500, "Server Internal Error - CSeq out of order")
            return
        method = request.method
        if method == "BYE":
            incoming.respond(200)
            self._finish("remote_bye")
        elif method == "INVITE":
            task = asyncio.create_task(self._reinvite(incoming))
            _reinvites.add(task)
            task.add_done_callback(lambda t: _request_task_done(t, incoming, self.ref))
        elif method == "INFO":
            incoming.respond(200)
            if self.on_info is not None:
                self.on_info(request)
        elif method == "OPTIONS":
            incoming.respond(200, headers=[("Allow", ALLOW), ("Accept", SDP)])
        elif method == "ACK":
            self.on_ack(request)
        elif method == "REFER":
            if self.on_refer is None:  # no transfer from here, now (e.g. before the bridge)
                incoming.respond(403, "Forbidden - No transfer from this call")
            else:
                self.on_refer(incoming)
        else:
            incoming.respond(405, headers=[("Allow", ALLOW)])

    def notify_refer(self, sipfrag: str, final: bool) -> None:
        """Tell the handset that sent a REFER how the transfer goes (RFC 3515 section 2.4.4):
        a NOTIFY with the destination's status line as message/sipfrag; the implicit
        subscription ends with the final one. Sent in the background, never waited for."""
        if self.dialog is None or self.state is LegState.ENDED:
            return
        notify = self.dialog.request(
            "NOTIFY", body=f"{sipfrag}\r\n".encode(), content_type="message/sipfrag;version=2.0"
        )
        notify.headers.add("Event", "refer")
        state = "terminated;reason=noresource" if final else "active;expires=60"
        notify.headers.add("Subscription-State", state)
        notify.headers.add("Contact", f"<{self.contact}>")
        task = asyncio.create_task(self.stack.request(notify, self.dialog.peer))
        _background.add(task)
        task.add_done_callback(_background.discard)

    def on_ack(self, request: Request) -> None:
        if self.state is LegState.ANSWERED:
            self.state = LegState.CONFIRMED

    async def _reinvite(self, incoming: IncomingRequest) -> None:
        assert self.dialog is not None
        request = incoming.request
        self.dialog.update_target(request)
        # An offer gets an answer; an offer-less re-INVITE gets our offer (RFC 3264 section 8),
        # which the media side produces from an empty body.
        answer = None if self.on_reinvite is None else await self.on_reinvite(request.body)
        if answer is None:
            incoming.respond(488, "Not Acceptable Here - Cannot use the offered media")
            return
        self.remote_sdp = request.body or self.remote_sdp
        incoming.respond(
            200,
            to_tag=self.dialog.local_tag,
            headers=[("Contact", f"<{self.contact}>"), ("Allow", ALLOW)],
            body=answer,
            content_type=SDP if answer else None,
        )


@dataclass
class InboundLeg(Leg):
    """The caller's side: an INVITE that reached us from a trunk (we are the UAS)."""

    incoming: IncomingRequest | None = None
    _acked: Signal = field(default_factory=Signal)

    @classmethod
    def accept(cls, incoming: IncomingRequest, ref: str, contact: SipUri) -> InboundLeg:
        leg = cls(stack=incoming.stack, ref=ref, contact=contact, incoming=incoming)
        leg.dialog = Dialog.as_uas(incoming.request, new_tag(), incoming.source)
        leg.remote_sdp = incoming.request.body
        return leg

    @property
    def transport(self) -> TransportKind | None:
        """The transport the INVITE came over (TLS: SRTP keys may be exchanged)."""
        return None if self.incoming is None else self.incoming.source.transport

    @property
    def caller_host(self) -> str | None:
        """The address the caller's INVITE came from (where their media is expected from),
        behind an edge proxy the real sender's (pbx/sip/edge.py)."""
        return None if self.incoming is None else self.incoming.real_source.host

    def _respond(self, status: int, reason: str | None = None, body: bytes = b"") -> Response:
        assert self.incoming is not None and self.dialog is not None
        return self.incoming.respond(
            status,
            reason,
            to_tag=self.dialog.local_tag,
            headers=[("Contact", f"<{self.contact}>"), ("Allow", ALLOW)],
            body=body,
            content_type=SDP if body else None,
        )

    def ring(self) -> None:
        if self.state is LegState.NEW:
            self.state = LegState.RINGING
            self._respond(180)

    def reject(self, status: int, reason: str | None = None) -> None:
        if self.state in (LegState.NEW, LegState.RINGING):
            self._respond(status, reason)
            self._finish(f"rejected_{status}")

    def given_up(self) -> None:
        """The transaction layer answered the INVITE itself (we took too long): the leg ends."""
        if self.state in (LegState.NEW, LegState.RINGING):
            self._finish("not_answered_in_time")

    def fail(self) -> bool:
        """The code serving this call failed before answering: 500, never silence. True if the
        caller was still waiting for a final response."""
        if self.state not in (LegState.NEW, LegState.RINGING):
            return False
        self.stack.unanswered_failures += 1
        self._respond(500, "Server Internal Error")
        self._finish("internal_error")
        return True

    async def answer(self, sdp: bytes) -> bool:
        """Send 200 OK, retransmitted until the ACK (RFC 3261 13.3.1.4). False: no ACK, BYE sent."""
        if self.state not in (LegState.NEW, LegState.RINGING):
            return False
        assert self.dialog is not None and self.incoming is not None
        self.state = LegState.ANSWERED
        self.dialog.state = DialogState.CONFIRMED
        response = self._respond(200, body=sdp)
        # The transaction layer sent the 2xx once; keeping it alive until the ACK is ours.
        caller = self.incoming.source
        retransmitter = Uas2xxRetransmitter(response, caller, self.stack.now, self.stack.timers)
        while (deadline := retransmitter.next_deadline()) is not None:
            if await self._acked.wait_for(max(0.0, deadline - self.stack.now)):
                retransmitter.ack_received()
                return True
            if self.state is LegState.ENDED:
                return False
            for effect in retransmitter.on_timer(self.stack.now):
                if isinstance(effect, NoAck):
                    log.warning("no_ack", call=self.ref)
                    await self.hangup("no_ack")
                    return False
                if not caller.reliable:  # TCP/TLS deliver it: nothing to repeat
                    self.stack.send_stateless(effect.message, caller, new_via=False)
        return False

    def on_ack(self, request: Request) -> None:
        super().on_ack(request)
        self._acked.set()

    async def hangup(self, reason: str = "hangup") -> None:
        """An unanswered caller gets a final response; an answered one a BYE."""
        if self.state in (LegState.NEW, LegState.RINGING):
            self._respond(480, "Temporarily Unavailable - Call ended")
            self._finish(reason)
            return
        await super().hangup(reason)

    def cancelled(self) -> None:
        """The caller hung up before we answered (CANCEL): 487 to the INVITE."""
        if self.state in (LegState.NEW, LegState.RINGING):
            self._respond(487)
            self._finish("caller_cancel")


@dataclass
class OutboundLeg(Leg):
    """The volunteer's side: a call we place to a registered handset (we are the UAC)."""

    transaction: TransactionId | None = None
    auth: ClientCredentials | None = None  # answers a carrier's digest challenge (once)
    _cancel_requested: bool = False
    _invite_cseq: int = INVITE_CSEQ

    async def call(
        self,
        target: SipUri,
        peer: Peer,
        *,
        from_user: str,
        from_display: str,
        to: str,
        sdp: bytes,
        call_id: str | None = None,
        local_tag: str | None = None,
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        """Place the INVITE; returns the final response (a 2xx is ACKed here)."""
        local_tag = local_tag or new_tag()
        call_id = call_id or new_call_id(self.stack.public_host)
        from_addr = Address(
            uri=SipUri(host=self.stack.public_host, user=from_user), display=from_display
        ).with_tag(local_tag)
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", str(from_addr))
        headers.add("To", to)
        headers.add("Call-ID", call_id)
        headers.add("CSeq", f"{INVITE_CSEQ} INVITE")  # the answer to a challenge: the next one
        headers.add("Contact", f"<{self.contact}>")
        headers.add("Allow", ALLOW)
        headers.add("Content-Type", SDP)
        for name, value in extra_headers or []:
            headers.add(name, value)
        invite = Request("INVITE", target, headers, sdp)
        self.state = LegState.RINGING

        def got_txn(txn: TransactionId) -> None:
            self.transaction = txn

        response = await self.stack.request(invite, peer, on_transaction=got_txn)
        answer = None
        if response.status in (401, 407) and self.auth is not None and not self._cancel_requested:
            answer = authorize(response, "INVITE", str(target), self.auth)
        if answer is not None:  # RFC 3261 22.2: the same call, CSeq + 1, with credentials
            self._invite_cseq = INVITE_CSEQ + 1
            invite.headers.remove("Via")  # the stack stamps a fresh one (a new transaction)
            invite.headers.set("CSeq", f"{self._invite_cseq} INVITE")
            invite.headers.add(*answer)
            log.info("outbound_challenged", call=self.ref, status=response.status)
            response = await self.stack.request(invite, peer, on_transaction=got_txn)
        if 200 <= response.status < 300:
            self.dialog = Dialog.as_uac(invite, response, peer)
            self.remote_sdp = response.body
            self.send_ack()
            self.state = LegState.CONFIRMED
            if self._cancel_requested:  # CANCEL lost the race with the 200
                await self.hangup("cancelled_after_answer")
        else:
            self._finish(f"final_{response.status}")
        return response

    def send_ack(self) -> None:
        assert self.dialog is not None
        ack = self.dialog.ack(self._invite_cseq)
        self.stack.send_stateless(ack, self.dialog.peer)

    def cancel(self) -> None:
        """Stop ringing the handset (the caller left, or ring-no-answer)."""
        self._cancel_requested = True
        if self.transaction is not None and self.state is LegState.RINGING:
            self.stack.cancel(self.transaction)

    async def hangup(self, reason: str = "hangup") -> None:
        """A handset still ringing is CANCELled (the 487 ends the leg); an answered one BYEd."""
        if self.state is LegState.RINGING and self.dialog is None:
            self.cancel()
            return
        await super().hangup(reason)

    def on_retransmitted_2xx(self) -> None:
        if self.dialog is not None and self.state is not LegState.ENDED:
            self.send_ack()


def _request_task_done(task: asyncio.Task[None], incoming: IncomingRequest, ref: str) -> None:
    _reinvites.discard(task)
    _log_task_failure(task, ref)
    incoming.fail()


def _log_task_failure(task: asyncio.Task[Any], ref: str) -> None:
    """Log a failed task by kind and place only (its message might carry what a peer sent)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("call_task_failed", call=ref, error=type(exc).__name__, at=failure_site(exc))


def watch_call_task(
    task: asyncio.Task[Any], leg: InboundLeg, tasks: set[asyncio.Task[Any]]
) -> None:
    """Keep a task serving `leg` in `tasks` until it ends; however it ends (returns, raises or
    is cancelled), a caller still without a final response then gets 500."""
    tasks.add(task)

    def done(t: asyncio.Task[Any]) -> None:
        tasks.discard(t)
        _log_task_failure(t, leg.ref)
        if leg.fail():
            log.warning("call_task_left_invite_unanswered", call=leg.ref)

    task.add_done_callback(done)
