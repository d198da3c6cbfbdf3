"""Small UAC and UAS cores (RFC 3261 sections 12-13) over `SipNode`s on an in-memory network.

`Caller` sends INVITE, ACKs every 2xx (retransmissions included) outside the transaction, can
CANCEL while it rings and hangs up with BYE, and registers with digest credentials. `Callee`
rings (180), answers after a while with a 2xx kept alive by the UAS core's retransmitter until
the ACK, answers BYE and CANCEL (200, and 487 for the INVITE), and sends BYE when no ACK ever
comes. `RegistrarServer` answers REGISTER with the service's own sans-IO `Registrar` and
`AuthGuard` (challenges sent once, statelessly, as the switchboard does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pbx.sip.auth_guard import AuthGuard, Refused
from pbx.sip.dialog import Dialog, DialogState, new_call_id, new_tag
from pbx.sip.digest import Algorithm, Credential, NonceManager
from pbx.sip.headers import Headers
from pbx.sip.message import Request, Response, make_response
from pbx.sip.peer import Peer
from pbx.sip.registrar import Registrar, RegistrarConfig
from pbx.sip.timers import Timers
from pbx.sip.transactions import TransactionId, Uas2xxRetransmitter
from pbx.sip.uri import parse_uri
from tests.helpers.digest import sip_authorization
from tests.helpers.memory_network import Network, ServerRequest, SipNode

EPOCH = 1_700_000_000.0  # the registrar's wall clock at virtual time 0


def new_request(method: str, uri: str, from_: str, to: str, call_id: str, cseq: int) -> Request:
    headers = Headers()
    headers.add("Max-Forwards", "70")
    headers.add("From", from_)
    headers.add("To", to)
    headers.add("Call-ID", call_id)
    headers.add("CSeq", f"{cseq} {method}")
    return Request(method, parse_uri(uri), headers)


@dataclass
class Caller:
    """A UAC on `host:port` of `network`."""

    network: Network
    host: str
    port: int
    user: str = "caller"
    timers: Timers = field(default_factory=Timers)

    def __post_init__(self) -> None:
        self.node = SipNode(
            self.network, self.host, self.port, self._on_request,
            on_stray_response=self._on_stray, timers=self.timers,
        )  # fmt: skip
        self.responses: list[Response] = []  # to the INVITE, as the TU saw them
        self.dialog: Dialog | None = None
        self.acks_sent = 0
        self.bye_status: int | None = None  # the final response to our BYE
        self.register_statuses: list[int] = []
        self._invite: Request | None = None
        self._invite_transaction: TransactionId | None = None
        self._target: Peer | None = None

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{self.host}:{self.port}>"

    @property
    def final(self) -> int | None:
        finals = [r.status for r in self.responses if r.status >= 200]
        return finals[0] if finals else None

    # --- INVITE, ACK, CANCEL, BYE ------------------------------------------------------------
    def invite(self, target: Peer, number: str = "0900", sdp: bytes = b"") -> None:
        """INVITE `number` at `target`, with `sdp` as the offer if given."""
        uri = f"sip:{number}@{target.host}:{target.port}"
        invite = new_request(
            "INVITE", uri, f"<sip:{self.user}@{self.host}>;tag={new_tag()}", f"<{uri}>",
            new_call_id(self.host), 1,
        )  # fmt: skip
        invite.headers.add("Contact", self.contact)
        if sdp:
            invite.headers.add("Content-Type", "application/sdp")
            invite.body = sdp
        self._invite, self._target = invite, target
        self._invite_transaction = self.node.request(invite, target, self._on_invite_response)

    def _on_invite_response(self, response: Response) -> None:
        self.responses.append(response)
        if 200 <= response.status < 300:
            self._ack(response)

    def _on_stray(self, response: Response) -> None:
        """A 2xx retransmission after the INVITE transaction ended: ACKed again."""
        invite = self._invite
        if invite is None or response.call_id != invite.call_id:
            return
        if 200 <= response.status < 300 and response.cseq.method == "INVITE":
            self.responses.append(response)
            self._ack(response)

    def _ack(self, response: Response) -> None:
        assert self._invite is not None and self._target is not None
        if self.dialog is None:
            self.dialog = Dialog.as_uac(self._invite, response, self._target)
        self.node.send_stateless(self.dialog.ack(self._invite.cseq.number), self.dialog.peer)
        self.acks_sent += 1

    def cancel(self) -> None:
        assert self._invite_transaction is not None
        self.node.cancel(self._invite_transaction)

    def hang_up(self) -> None:
        assert self.dialog is not None
        bye = self.dialog.request("BYE")
        self.node.request(bye, self.dialog.peer, self._on_bye_response)

    def _on_bye_response(self, response: Response) -> None:
        if response.status >= 200:
            self.bye_status = response.status
            assert self.dialog is not None
            self.dialog.state = DialogState.TERMINATED

    def _on_request(self, incoming: ServerRequest) -> None:
        request, transaction = incoming.request, incoming.transaction
        if transaction is None:
            return
        dialog = self.dialog
        if request.method == "BYE" and dialog is not None and request.call_id == dialog.call_id:
            dialog.state = DialogState.TERMINATED
            self.node.respond(transaction, make_response(request, 200))
        else:
            self.node.respond(transaction, make_response(request, 481))

    # --- REGISTER with digest ----------------------------------------------------------------
    def register(self, registrar: Peer, password: str, expires: int = 600) -> None:
        """REGISTER; a 401 is answered once with credentials computed from `password`."""
        aor = f"sip:{self.user}@{registrar.host}"
        call_id, tag = new_call_id(self.host), new_tag()

        def send(cseq: int, authorization: str | None) -> None:
            request = new_request(
                "REGISTER", f"sip:{registrar.host}:{registrar.port}",
                f"<{aor}>;tag={tag}", f"<{aor}>", call_id, cseq,
            )  # fmt: skip
            request.headers.add("Contact", self.contact)
            request.headers.add("Expires", str(expires))
            if authorization is not None:
                request.headers.add("Authorization", authorization)
            self.node.request(request, registrar, lambda r: on_response(r, request))

        def on_response(response: Response, request: Request) -> None:
            if response.status < 200:
                return
            self.register_statuses.append(response.status)
            challenge = response.headers.get("WWW-Authenticate")
            if response.status == 401 and challenge and "Authorization" not in request.headers:
                params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
                credentials = sip_authorization(
                    Algorithm.parse(params.get("algorithm")), self.user, params["realm"],
                    password, "REGISTER", str(request.request_uri), params["nonce"],
                )  # fmt: skip
                send(request.cseq.number + 1, credentials)

        send(1, None)


@dataclass
class Callee:
    """A UAS on `host:port` that rings for `ring_for` virtual seconds, then answers 200 (or
    never answers, with `ring_for=None`)."""

    network: Network
    host: str
    port: int
    ring_for: float | None = 1.0
    user: str = "callee"
    timers: Timers = field(default_factory=Timers)

    def __post_init__(self) -> None:
        self.node = SipNode(
            self.network, self.host, self.port, self._on_request,
            on_no_ack=self._on_no_ack, timers=self.timers,
        )  # fmt: skip
        self.dialog: Dialog | None = None
        self.invites = 0  # INVITEs the TU saw (retransmissions are absorbed below it)
        self.acks = 0
        self.cancelled = False
        self.no_ack = False
        self.bye_status: int | None = None  # the final response to our own BYE
        self._invite: ServerRequest | None = None
        self._tag = new_tag()
        self._retransmitter: Uas2xxRetransmitter | None = None

    def _on_request(self, incoming: ServerRequest) -> None:
        method = incoming.request.method
        if method == "INVITE":
            self._on_invite(incoming)
        elif method == "ACK":
            self._on_ack(incoming)
        elif method == "CANCEL":
            self._on_cancel(incoming)
        elif method == "BYE":
            self._on_bye(incoming)

    def _on_invite(self, incoming: ServerRequest) -> None:
        assert incoming.transaction is not None
        self.invites += 1
        self._invite = incoming
        ringing = make_response(incoming.request, 180, to_tag=self._tag)
        self.node.respond(incoming.transaction, ringing)
        if self.ring_for is not None:
            self.network.call_at(self.network.now + self.ring_for, self._answer)

    def _answer(self) -> None:
        invite = self._invite
        if invite is None or self.cancelled:
            return
        assert invite.transaction is not None
        ok = make_response(invite.request, 200, to_tag=self._tag)
        ok.headers.add("Contact", f"<sip:{self.user}@{self.host}:{self.port}>")
        self._retransmitter = self.node.answer_2xx(invite.transaction, ok)
        self.dialog = Dialog.as_uas(invite.request, self._tag, self._retransmitter.peer)

    def _on_ack(self, incoming: ServerRequest) -> None:
        if self.dialog is None or incoming.request.call_id != self.dialog.call_id:
            return
        self.acks += 1
        if self._retransmitter is not None:
            self._retransmitter.ack_received()
        if self.dialog.state is DialogState.EARLY:
            self.dialog.state = DialogState.CONFIRMED

    def _on_cancel(self, incoming: ServerRequest) -> None:
        assert incoming.transaction is not None
        self.node.respond(incoming.transaction, make_response(incoming.request, 200))
        invite = self._invite
        if incoming.cancels is not None and invite is not None and self.dialog is None:
            assert invite.transaction == incoming.cancels
            self.cancelled = True
            terminated = make_response(invite.request, 487, to_tag=self._tag)
            self.node.respond(incoming.cancels, terminated)

    def _on_bye(self, incoming: ServerRequest) -> None:
        assert incoming.transaction is not None
        dialog = self.dialog
        if dialog is None or not dialog.accept_remote(incoming.request):
            self.node.respond(incoming.transaction, make_response(incoming.request, 481))
            return
        dialog.state = DialogState.TERMINATED
        self.node.respond(incoming.transaction, make_response(incoming.request, 200))

    def _on_no_ack(self, response: Response) -> None:
        """64*T1 without an ACK: the session is dead; BYE ends the dialog (RFC 3261 13.3.1.4)."""
        self.no_ack = True
        assert self.dialog is not None
        self.node.request(self.dialog.request("BYE"), self.dialog.peer, self._on_bye_response)

    def _on_bye_response(self, response: Response) -> None:
        if response.status >= 200 and self.dialog is not None:
            self.bye_status = response.status
            self.dialog.state = DialogState.TERMINATED


@dataclass
class RegistrarServer:
    """REGISTER answered by the service's sans-IO registrar, for `users` (name -> password)."""

    network: Network
    host: str
    port: int
    users: dict[str, str]
    realm: str = "helpline"

    def __post_init__(self) -> None:
        self.node = SipNode(self.network, self.host, self.port, self._on_request)
        credentials = {u: Credential.from_password(u, self.realm, p) for u, p in self.users.items()}
        guard = AuthGuard(self.realm, NonceManager(b"in-memory-nonce-secret-32-bytes!"))
        self.registrar = Registrar(RegistrarConfig(realm=self.realm), credentials, guard)

    @property
    def wall_clock(self) -> float:
        return EPOCH + self.network.now

    def _on_request(self, incoming: ServerRequest) -> None:
        request, transaction = incoming.request, incoming.transaction
        if transaction is None:
            return
        if request.method != "REGISTER":
            self.node.respond(transaction, make_response(request, 405))
            return
        verdict = self.registrar.authenticate(request, incoming.source, self.wall_clock)
        if isinstance(verdict, Refused):
            self.node.respond_once(transaction, verdict.response)
            return
        answer = self.registrar.handle(request, incoming.source, self.wall_clock, verdict)
        self.node.respond(transaction, answer)

    def contacts(self, user: str) -> list[str]:
        return [str(b.contact) for b in self.registrar.contacts(user, self.wall_clock)]
