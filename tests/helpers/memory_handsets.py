"""Phones with SDP on the in-memory network, for the call layer: a trunk caller and a volunteer's
handset, each with a real RTP socket on loopback.

`Handset` is a `Caller` (REGISTER with digest, INVITE, BYE) that also dials with digest (the
service challenges a volunteer's INVITE with 407) and takes calls: it rings (180) on an
INVITE, answers with `answer()` (a 2xx kept alive until the ACK), and answers CANCEL (200, and
487 for the INVITE), BYE and OPTIONS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pbx.sip.dialog import Dialog, DialogState, new_call_id, new_tag
from pbx.sip.digest import Algorithm
from pbx.sip.message import Request, Response, make_response
from pbx.sip.peer import Peer
from pbx.sip.transactions import Uas2xxRetransmitter
from tests.helpers.digest import sip_authorization
from tests.helpers.memory_network import ServerRequest
from tests.helpers.memory_phones import Caller, new_request


def sdp_offer(host: str, port: int) -> bytes:
    """PCMU and RFC 4733 events at `host:port` (a phone's RTP socket)."""
    return (
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    ).encode()


def media_address(sdp: bytes) -> tuple[str, int]:
    """Where an SDP body asks for RTP (its c= host and first m=audio port)."""
    text = sdp.decode()
    host = re.search(r"^c=IN IP4 (\S+)", text, re.M)
    port = re.search(r"^m=audio (\d+)", text, re.M)
    assert host is not None and port is not None, "no audio in the SDP"
    return host.group(1), int(port.group(1))


@dataclass
class Handset(Caller):
    """A volunteer's handset: `user` is the volunteer's name, `sdp` its answer to offers."""

    sdp: bytes = b""
    offers: list[ServerRequest] = field(default_factory=list)  # INVITEs rung with, in order
    incoming: Dialog | None = None  # the call taken with answer()
    incoming_acks: int = 0
    cancelled: bool = False  # the ringing INVITE was CANCELled (and answered 487)
    byes_received: int = 0  # BYEs that ended the call taken
    _tag: str = field(default_factory=new_tag)
    _retransmitter: Uas2xxRetransmitter | None = None

    # --- dialling with digest ----------------------------------------------------------------
    def dial(self, target: Peer, number: str, password: str) -> None:
        """INVITE `number` with our SDP; a 401/407 is answered once with credentials."""
        uri = f"sip:{number}@{target.host}:{target.port}"
        from_, call_id = f"<sip:{self.user}@{target.host}>;tag={new_tag()}", new_call_id(self.host)

        def send(cseq: int, authorization: tuple[str, str] | None) -> None:
            invite = new_request("INVITE", uri, from_, f"<{uri}>", call_id, cseq)
            invite.headers.add("Contact", self.contact)
            invite.headers.add("Content-Type", "application/sdp")
            invite.body = self.sdp
            if authorization is not None:
                invite.headers.add(*authorization)
            self._invite, self._target = invite, target
            self._invite_transaction = self.node.request(
                invite, target, lambda r: on_response(r, invite, authorization is not None)
            )

        def on_response(response: Response, invite: Request, authorized: bool) -> None:
            challenge = response.headers.get("Proxy-Authenticate") or response.headers.get(
                "WWW-Authenticate"
            )
            if response.status in (401, 407) and challenge and not authorized:
                params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
                credentials = sip_authorization(
                    Algorithm.parse(params.get("algorithm")), self.user, params["realm"],
                    password, "INVITE", uri, params["nonce"],
                )  # fmt: skip
                name = "Proxy-Authorization" if response.status == 407 else "Authorization"
                send(invite.cseq.number + 1, (name, credentials))
                return
            self._on_invite_response(response)

        send(1, None)

    # --- taking calls ------------------------------------------------------------------------
    def _on_request(self, incoming: ServerRequest) -> None:
        request, transaction = incoming.request, incoming.transaction
        method = request.method
        if method == "INVITE" and transaction is not None:
            self.offers.append(incoming)
            self.node.respond(transaction, make_response(request, 180, to_tag=self._tag))
        elif method == "ACK":
            if self.incoming is not None and request.call_id == self.incoming.call_id:
                self.incoming_acks += 1
                if self._retransmitter is not None:
                    self._retransmitter.ack_received()
        elif method == "CANCEL" and transaction is not None:
            self.node.respond(transaction, make_response(request, 200))
            ringing = self.offers[-1] if self.offers else None
            if ringing is not None and incoming.cancels == ringing.transaction:
                self.cancelled = True
                assert ringing.transaction is not None
                terminated = make_response(ringing.request, 487, to_tag=self._tag)
                self.node.respond(ringing.transaction, terminated)
        elif (
            method == "BYE"
            and self.incoming is not None
            and transaction is not None
            and (request.call_id == self.incoming.call_id)
        ):
            self.byes_received += 1
            self.incoming.state = DialogState.TERMINATED
            self.node.respond(transaction, make_response(request, 200))
        elif method == "OPTIONS" and transaction is not None:
            self.node.respond(transaction, make_response(request, 200))
        else:
            super()._on_request(incoming)  # a BYE in the call we dialled, or 481

    def answer(self) -> None:
        """Answer the last INVITE rung with: 200 with our SDP, kept alive until the ACK."""
        offer = self.offers[-1]
        assert offer.transaction is not None
        ok = make_response(
            offer.request, 200, to_tag=self._tag, body=self.sdp, content_type="application/sdp"
        )
        ok.headers.add("Contact", self.contact)
        self._retransmitter = self.node.answer_2xx(offer.transaction, ok)
        self.incoming = Dialog.as_uas(offer.request, self._tag, self._retransmitter.peer)
