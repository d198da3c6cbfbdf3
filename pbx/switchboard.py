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
from pbx.calls.leg_table import DialogKey, LegTable
from pbx.calls.legs import ALLOW, SDP, InboundLeg, Leg, OutboundLeg
from pbx.sip.auth_guard import FORBIDDEN, Authenticated, Refused, Scheme, Why
from pbx.sip.digest import Credential
from pbx.sip.edge import EdgeProxies
from pbx.sip.errors import SipParseError
from pbx.sip.message import Request, Response, make_response
from pbx.sip.parser import KNOWN_METHODS
from pbx.sip.peer import Peer
from pbx.sip.registrar import Registrar
from pbx.sip.stack import IncomingRequest, SipStack
from pbx.sip.transactions import TransactionId
from pbx.sip.trunk import TrunkPolicy
from pbx.sip.uri import SipUri

log = structlog.get_logger("pbx.switchboard")

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()


class CallApplication(Protocol):
    """What the switchboard hands calls to (the IVR and queues; a direct router in the core)."""

    def inbound_call(self, leg: InboundLeg, caller: CallerContext) -> None: ...

    def volunteer_call(self, leg: InboundLeg, username: str, dialed: str) -> None: ...


@dataclass
class Switchboard:
    """The stack's transaction user (`pbx.sip.stack.TransactionUser`): the stack delivers to
    it once started with it."""

    stack: SipStack
    registrar: Registrar
    trunk: TrunkPolicy
    app: CallApplication | None = None
    hasher: CallerHasher = field(default_factory=CallerHasher)
    max_dialogs: int = 5000
    trunk_reserved_dialogs: int = 0  # of max_dialogs: only calls from trunk addresses get these
    wall_clock: Callable[[], float] = time.time
    on_refused: Callable[[str], None] = lambda reason: None  # CallEvents.invite_refused
    # Retry-After seconds while the service takes no new calls (draining); None: take them
    refusing: Callable[[], int | None] = lambda: None
    # Retry-After seconds while another node holds the leadership lease (pbx.ha); None: leading
    standby: Callable[[], int | None] = lambda: None
    edge: EdgeProxies | None = None  # trusted edge proxies: requests' real sources (edge.py)
    # a trunk call refused (draining, call limit, ...): its record, by the number dialled (ours)
    on_refused_call: Callable[[str], None] = lambda dialed: None
    table: LegTable = field(kw_only=True)  # the live call legs, shared with the call flows

    @property
    def legs(self) -> dict[DialogKey, Leg]:
        """The live call legs by dialog id (read: drain, gauges)."""
        return self.table.live

    # --- dispatch --------------------------------------------------------------------------------
    def on_request(self, incoming: IncomingRequest) -> None:
        if self.edge is not None and not self.edge.resolve(incoming):
            return  # answered: its real source is over the admission limits
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
            self._register(incoming)
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
        if self._standing_by(incoming, "OPTIONS"):  # a proxy's probe: send calls elsewhere
            return
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
        leg = self.table.get((incoming.request.call_id, to_tag))
        if leg is None:
            if incoming.request.method != "ACK":
                incoming.respond(481)
            return
        leg.handle_in_dialog(incoming)

    def _cancel(self, incoming: IncomingRequest) -> None:
        target = incoming.cancelled_invite
        leg = self.table.by_invite(target) if target is not None else None
        if leg is None:
            incoming.respond(481)
            return
        incoming.respond(200)
        leg.cancelled()

    def on_server_timeout(self, transaction: TransactionId, request: Request) -> None:
        """An INVITE the transaction layer ended without our answer (its answer limit passed):
        the call is over for the caller, so it ends here too (volunteers stop ringing)."""
        leg = self.table.by_invite(transaction)
        if leg is not None:
            leg.given_up()

    def on_stray_response(self, response: Response, peer: Peer) -> None:
        """A 2xx retransmission to an INVITE we sent: the ACK was lost, send it again."""
        try:
            key = (response.call_id, response.from_.tag or "")
        except SipParseError:
            return
        leg = self.table.get(key)
        if isinstance(leg, OutboundLeg) and response.status < 300:
            leg.on_retransmitted_2xx()

    # --- new calls -------------------------------------------------------------------------------
    def _invite(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        limit = self.max_dialogs
        if not self.trunk.from_trusted_address(incoming.real_source):
            limit -= self.trunk_reserved_dialogs
        if len(self.table) >= limit:
            incoming.respond(
                503, "Service Unavailable - Call limit", headers=[("Retry-After", "5")]
            )
            self._refused_call(incoming, trunk=None)
            return
        retry_after = self.refusing()
        if retry_after is not None:  # a planned stop: the carrier or proxy tries elsewhere
            incoming.respond(
                503, "Service Unavailable - Draining", headers=[("Retry-After", str(retry_after))]
            )
            self.on_refused("draining")
            self._refused_call(incoming, trunk=None)
            return
        if self._standing_by(incoming, "INVITE"):
            return
        now = self.wall_clock()
        volunteer = self._volunteer_identity(incoming)
        if volunteer is None:
            return  # answered (challenge or refusal): no call yet, no record
        if request.body and request.content_type != SDP:
            incoming.respond(415, headers=[("Accept", SDP)])
            self._refused_call(incoming, trunk=volunteer == "")
            return
        accept = [a.split(";")[0].strip().lower() for a in request.headers.values("Accept")]
        if accept and SDP not in accept and "application/*" not in accept and "*/*" not in accept:
            incoming.respond(406, "Not Acceptable - We answer with application/sdp")
            self._refused_call(incoming, trunk=volunteer == "")
            return
        if self.app is None:
            incoming.respond(480, "Temporarily Unavailable - Not accepting calls")
            self._refused_call(incoming, trunk=volunteer == "")
            return
        leg = self.table.accept_inbound(incoming)
        if volunteer:
            self.app.volunteer_call(leg, volunteer, dialed_number(request))
        else:
            ctx = caller_context(
                request, self.hasher, now, trunk=incoming.real_source.transport.value
            )
            leg.ref = ctx.call_ref
            if ctx.dialed.replace("%2A", "*").startswith("*") or request.headers.get(
                "Proxy-Authorization"
            ):
                # a feature code or credentials from a trunk address: a handset sharing it
                log.warning(
                    "trunk_call_looks_like_handset", call=ctx.call_ref,
                    source=incoming.real_source.host, dialed=ctx.dialed,
                    hint="a handset cannot register from trunk_sources: give it another address",
                )  # fmt: skip
            log.info("inbound_call", call=ctx.call_ref, dialed=ctx.dialed)
            self.app.inbound_call(leg, ctx)

    def _standing_by(self, incoming: IncomingRequest, method: str) -> bool:
        """503 while another node leads (its proxy or carrier tries that one); True if so."""
        retry_after = self.standby()
        if retry_after is None:
            return False
        incoming.respond(
            503, "Service Unavailable - Standby", headers=[("Retry-After", str(retry_after))]
        )
        if method == "INVITE":
            self.on_refused("standby")
        return True

    def _refused_call(self, incoming: IncomingRequest, trunk: bool | None) -> None:
        """A caller's call refused: recorded (entry line only). `trunk` None: known only by the
        source address (before authentication); volunteers' own calls are not recorded."""
        if trunk is None:
            trunk = self.trunk.from_trusted_address(incoming.real_source)
        if trunk:
            self.on_refused_call(dialed_number(incoming.request))

    def _volunteer_identity(self, incoming: IncomingRequest) -> str | None:
        """'' for a trunk call, a username for an authenticated volunteer, None if answered.

        The trunk is recognised by its address before anything else: no handset can live
        there (its REGISTER is refused), so credentials never turn a carrier call into a
        challenged one."""
        request = incoming.request
        if self.trunk.from_trusted_address(incoming.real_source):
            return ""
        from_uri = request.from_.uri
        claimed = from_uri.user_unescaped if isinstance(from_uri, SipUri) else None
        now = self.wall_clock()
        verdict = self.registrar.guard.check(
            request, incoming.real_source.host, Scheme.PROXY, self._account, now, claimed,
            known_source=lambda user, host: self.registrar.has_binding_from(user, host, now),
        )  # fmt: skip
        if isinstance(verdict, Refused):
            self._refuse(incoming, verdict)
            return None
        return "" if verdict.username in self.trunk.credentials else verdict.username

    def _account(self, username: str) -> Credential | None:
        """Carrier accounts first (as before), then volunteers'."""
        return self.trunk.credentials.get(username) or self.registrar.credentials.get(username)

    def _register(self, incoming: IncomingRequest) -> None:
        request, source = incoming.request, incoming.real_source
        if self.trunk.from_trusted_address(source):
            # a handset bound on the carrier's address would capture the carrier's calls
            log.warning("register_from_trunk_refused", source=source.host)
            incoming.stack.respond_once(incoming, make_response(request, 403, FORBIDDEN))
            return
        now = self.wall_clock()
        verdict = self.registrar.authenticate(request, source, now)
        if isinstance(verdict, Refused):
            self._refuse(incoming, verdict)
            return
        assert isinstance(verdict, Authenticated)
        incoming.stack.respond(incoming, self.registrar.handle(request, source, now, verdict))

    def _refuse(self, incoming: IncomingRequest, refused: Refused) -> None:
        """Challenges and authentication failures go out once, statelessly."""
        if refused.locked_now is not None:
            log.warning("auth_locked_out", key=refused.locked_now, source=incoming.real_source.host)
        if refused.why is Why.FAILED:  # a locked-out source is logged once, when it locks
            log.info(
                "auth_refused", method=incoming.request.method, source=incoming.real_source.host,
                why=refused.why.value,
            )  # fmt: skip
        if incoming.request.method == "INVITE":
            self.on_refused(refused.why.value)
        incoming.stack.respond_once(incoming, refused.response)
