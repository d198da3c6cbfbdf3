"""The switchboard: the transaction user that routes every incoming SIP request.

REGISTER goes to the registrar, OPTIONS is answered here (trunks and load balancers probe it), a new
INVITE is admitted only from a configured trunk (or an authenticated volunteer dialling a feature
code) and handed to the call application with nothing but an anonymous CallerContext, and requests
inside a dialog go to the leg that owns it. Only registered volunteers and configured destinations
are ever called out to: the switchboard has no code path that dials a number a caller supplies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from pbx.anonymity import CallerContext, CallerHasher, caller_context, dialed_number
from pbx.calls.legs import ALLOW, SDP, InboundLeg, Leg, OutboundLeg
from pbx.sip.dialog import contact_uri, new_call_id, new_tag
from pbx.sip.digest import DigestError, challenge_headers, parse_authorization, verify
from pbx.sip.errors import SipParseError
from pbx.sip.message import Response, make_response
from pbx.sip.parser import KNOWN_METHODS
from pbx.sip.peer import Peer
from pbx.sip.registrar import Binding, Registrar
from pbx.sip.stack import IncomingRequest, SipStack
from pbx.sip.transactions import TransactionId
from pbx.sip.trunk import TrunkPolicy, TrunkVerdict
from pbx.sip.uri import SipUri

log = structlog.get_logger("pbx.switchboard")

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()


class CallApplication(Protocol):
    """What the switchboard hands calls to (the IVR and queues; a direct router in the core)."""

    def inbound_call(self, leg: InboundLeg, caller: CallerContext) -> None: ...

    def volunteer_call(self, leg: InboundLeg, username: str, dialed: str) -> None: ...


@dataclass
class Switchboard:
    stack: SipStack
    registrar: Registrar
    trunk: TrunkPolicy
    app: CallApplication | None = None
    hasher: CallerHasher = field(default_factory=CallerHasher)
    max_dialogs: int = 5000
    wall_clock: Callable[[], float] = time.time
    on_refused: Callable[[str], None] = lambda reason: None  # metrics: why an INVITE was refused
    # Retry-After seconds while the service takes no new calls (draining); None: take them
    refusing: Callable[[], int | None] = lambda: None
    legs: dict[tuple[str, str], Leg] = field(default_factory=dict)
    _by_invite: dict[TransactionId, InboundLeg] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stack.on_request = self.on_request
        self.stack.on_stray_response = self.on_stray_response

    # --- dispatch --------------------------------------------------------------------------------
    def on_request(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        method = request.method
        try:
            to_tag = request.to.tag
        except SipParseError as exc:
            incoming.respond(400, exc.reason)
            return
        if method not in ("ACK", "CANCEL"):
            if not isinstance(request.request_uri, SipUri):
                incoming.respond(416, "Unsupported URI Scheme")
                return
            unsupported = [
                ext for ext in request.headers.values("Require") if ext not in SUPPORTED_EXTENSIONS
            ]
            if unsupported:
                incoming.respond(420, headers=[("Unsupported", ", ".join(unsupported))])
                return
        if to_tag and method != "CANCEL":
            self._in_dialog(incoming, to_tag)
            return
        if method == "OPTIONS":
            self._options(incoming)
        elif method == "REGISTER":
            incoming.stack.respond(
                incoming, self.registrar.handle(request, incoming.source, self.wall_clock())
            )
        elif method == "INVITE":
            self._invite(incoming)
        elif method == "CANCEL":
            self._cancel(incoming)
        elif method == "ACK":
            return  # an ACK outside any dialog we know: nothing to do (RFC 3261 17.2.3)
        elif method in ("BYE", "INFO", "UPDATE", "PRACK"):
            incoming.respond(481)
        elif method in KNOWN_METHODS:
            incoming.respond(405, headers=[("Allow", ALLOW)])
        else:
            incoming.respond(501, headers=[("Allow", ALLOW)])

    def _options(self, incoming: IncomingRequest) -> None:
        incoming.respond(
            200,
            headers=[
                ("Allow", ALLOW),
                ("Accept", SDP),
                ("Accept-Encoding", "identity"),
                ("Accept-Language", "nl, en"),
            ],
        )

    def _in_dialog(self, incoming: IncomingRequest, to_tag: str) -> None:
        leg = self.legs.get((incoming.request.call_id, to_tag))
        if leg is None:
            if incoming.request.method != "ACK":
                incoming.respond(481)
            return
        leg.handle_in_dialog(incoming)

    def _cancel(self, incoming: IncomingRequest) -> None:
        target = incoming.cancelled_invite
        leg = self._by_invite.get(target) if target is not None else None
        if leg is None:
            incoming.respond(481)
            return
        incoming.respond(200)
        leg.cancelled()

    def on_stray_response(self, response: Response, peer: Peer) -> None:
        """A 2xx retransmission to an INVITE we sent: the ACK was lost, send it again."""
        try:
            key = (response.call_id, response.from_.tag or "")
        except SipParseError:
            return
        leg = self.legs.get(key)
        if isinstance(leg, OutboundLeg) and response.status < 300:
            leg.on_retransmitted_2xx()

    # --- new calls -------------------------------------------------------------------------------
    def _invite(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        if len(self.legs) >= self.max_dialogs:
            incoming.respond(
                503, "Service Unavailable - Call limit", headers=[("Retry-After", "5")]
            )
            return
        retry_after = self.refusing()
        if retry_after is not None:  # a planned stop: the carrier or proxy tries elsewhere
            incoming.respond(
                503, "Service Unavailable - Draining", headers=[("Retry-After", str(retry_after))]
            )
            self.on_refused("draining")
            return
        now = self.wall_clock()
        volunteer = self._volunteer_identity(incoming)
        if volunteer is None:
            return  # answered (challenge or refusal)
        if volunteer == "":
            verdict, refusal = self.trunk.check(request, incoming.source, now)
            if verdict is not TrunkVerdict.TRUSTED:
                assert refusal is not None
                log.info("invite_refused", source=incoming.source.host, status=refusal.status)
                self.on_refused(verdict.value)
                incoming.stack.respond(incoming, refusal)
                return
        if request.body and request.content_type != SDP:
            incoming.respond(415, headers=[("Accept", SDP)])
            return
        accept = [a.split(";")[0].strip().lower() for a in request.headers.values("Accept")]
        if accept and SDP not in accept and "application/*" not in accept and "*/*" not in accept:
            incoming.respond(406, "Not Acceptable - We answer with application/sdp")
            return
        if self.app is None:
            incoming.respond(480, "Temporarily Unavailable - Not accepting calls")
            return
        leg = self._accept_leg(incoming)
        if volunteer:
            self.app.volunteer_call(leg, volunteer, dialed_number(request))
        else:
            ctx = caller_context(request, self.hasher, now, trunk=incoming.source.transport.value)
            leg.ref = ctx.call_ref
            log.info("inbound_call", call=ctx.call_ref, dialed=ctx.dialed)
            self.app.inbound_call(leg, ctx)

    def _volunteer_identity(self, incoming: IncomingRequest) -> str | None:
        """'' for a trunk call, a username for an authenticated volunteer, None if answered."""
        request = incoming.request
        from_handset = self.registrar.is_handset_address(incoming.source)
        if not from_handset and self.trunk.from_trusted_address(incoming.source):
            return ""
        from_uri = request.from_.uri
        claimed = from_uri.user_unescaped if isinstance(from_uri, SipUri) else None
        auth = request.headers.get("Proxy-Authorization")
        if auth is None:
            if from_handset or claimed in self.registrar.credentials:
                response = self._proxy_challenge(incoming, stale=False)
                incoming.stack.respond(incoming, response)
                return None
            return ""  # let the trunk policy decide (credentials or 403)
        try:
            digest = parse_authorization(auth)
        except DigestError:
            incoming.respond(403, "Forbidden - Bad credentials")
            return None
        if digest.username in self.trunk.credentials:
            return ""
        cred = self.registrar.credentials.get(digest.username)
        result = verify(digest, "INVITE", cred, self.registrar.nonces, self.wall_clock())
        if result.ok:
            return digest.username
        if result.rechallenge_stale:
            incoming.stack.respond(incoming, self._proxy_challenge(incoming, stale=True))
            return None
        incoming.respond(403, f"Forbidden - {result.reason}")
        return None

    def _proxy_challenge(self, incoming: IncomingRequest, stale: bool) -> Response:
        response = make_response(incoming.request, 407)
        nonce = self.registrar.nonces.issue(self.wall_clock())
        config = self.registrar.config
        for value in challenge_headers(config.realm, nonce, stale, config.algorithms):
            response.headers.add("Proxy-Authenticate", value)
        return response

    def _accept_leg(self, incoming: IncomingRequest) -> InboundLeg:
        transport = incoming.source.transport
        contact = contact_uri(
            "helpline", self.stack.public_host, self.stack.port(transport), transport.value
        )
        leg = InboundLeg.accept(incoming, ref=new_tag(), contact=contact)
        assert leg.dialog is not None and incoming.transaction is not None
        key = leg.dialog.id
        self.legs[key] = leg
        txn = incoming.transaction
        self._by_invite[txn] = leg

        def forget(_: Leg) -> None:
            self.legs.pop(key, None)
            self._by_invite.pop(txn, None)

        leg.on_end = forget
        return leg

    # --- outbound: only to registered handsets ----------------------------------------------
    def volunteer_bindings(self, username: str) -> list[Binding]:
        return self.registrar.contacts(username, self.wall_clock())

    def new_outbound_leg(self, peer: Peer, ref: str) -> tuple[OutboundLeg, str, str]:
        """An outbound leg towards a registered handset's address or a configured destination,
        tracked for in-dialog requests. Returns (leg, call_id, local_tag) for leg.call()."""
        transport = peer.transport
        contact = contact_uri(
            "helpline", self.stack.public_host, self.stack.port(transport), transport.value
        )
        leg = OutboundLeg(stack=self.stack, ref=ref, contact=contact)
        call_id, tag = new_call_id(self.stack.public_host), new_tag()
        key = (call_id, tag)
        self.legs[key] = leg

        def forget(_: Leg) -> None:
            self.legs.pop(key, None)

        leg.on_end = forget
        return leg, call_id, tag
