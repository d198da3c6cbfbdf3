"""Dialog state (RFC 3261 section 12), sans-IO: identifiers, CSeq spaces, route set, remote target.

For the caller's leg this holds the caller's From address, because in-dialog requests (a BYE) must
repeat it. It is protocol state only: nothing above the SIP layer reads it, and it is never logged.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field

from pbx.sip.address import Address
from pbx.sip.errors import SipParseError
from pbx.sip.headers import Headers
from pbx.sip.message import Request, Response
from pbx.sip.peer import Peer
from pbx.sip.uri import SipUri, Uri


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass
class Dialog:
    call_id: str
    local: Address  # with our tag
    remote: Address  # with their tag (None until a UAC dialog has seen a tagged response)
    remote_target: Uri
    peer: Peer  # where in-dialog requests go (the address the other side really uses)
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    state: DialogState = DialogState.EARLY

    @property
    def local_tag(self) -> str:
        return self.local.tag or ""

    @property
    def id(self) -> tuple[str, str]:
        """The key the core looks dialogs up by: (Call-ID, our tag)."""
        return self.call_id, self.local_tag

    @classmethod
    def as_uas(cls, invite: Request, local_tag: str, peer: Peer) -> Dialog:
        contacts = invite.contacts
        target = contacts[0].uri if contacts else invite.from_.uri
        return cls(
            call_id=invite.call_id,
            local=invite.to.with_tag(local_tag),
            remote=invite.from_,
            remote_target=target,
            peer=peer,
            route_set=[str(a) for a in invite.record_routes],
            local_seq=0,
            remote_seq=invite.cseq.number,
        )

    @classmethod
    def as_uac(cls, invite: Request, response: Response, peer: Peer) -> Dialog:
        contacts = response.contacts
        if not contacts:
            raise SipParseError("Bad Response - 2xx to INVITE without Contact")
        return cls(
            call_id=invite.call_id,
            local=invite.from_,
            remote=response.to,
            remote_target=contacts[0].uri,
            peer=peer,
            route_set=[str(a) for a in reversed(response.record_routes)],
            local_seq=invite.cseq.number,
            state=DialogState.CONFIRMED if response.status < 300 else DialogState.EARLY,
        )

    def accept_remote(self, request: Request) -> bool:
        """Track the remote CSeq; False for an out-of-order request (answer it with 500)."""
        number = request.cseq.number
        if request.method == "ACK" or request.method == "CANCEL":
            return True
        if self.remote_seq is not None and number <= self.remote_seq:
            return False
        self.remote_seq = number
        return True

    def update_target(self, message: Request | Response) -> None:
        """A re-INVITE or its 2xx may carry a new Contact (target refresh)."""
        contacts = message.contacts
        if contacts:
            self.remote_target = contacts[0].uri

    def request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> Request:
        """A new in-dialog request (the transport layer adds the Via)."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        headers = Headers()
        for route in self.route_set:
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", str(self.local))
        headers.add("To", str(self.remote))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if content_type:
            headers.add("Content-Type", content_type)
        return Request(method, self.remote_target, headers, body)

    def ack(self, invite_cseq: int, body: bytes = b"") -> Request:
        """The ACK for a 2xx (RFC 3261 section 13.2.2.4): same CSeq number as the INVITE."""
        return self.request("ACK", body=body, cseq=invite_cseq)


def contact_uri(user: str, host: str, port: int, transport: str) -> SipUri:
    params: dict[str, str | None] = {} if transport == "udp" else {"transport": transport}
    return SipUri(host=host, user=user, port=port, params=params)
