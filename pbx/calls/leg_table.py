"""The live call legs: every dialog the service is part of, found again by its id.

The switchboard looks legs up here (in-dialog requests, CANCEL, a retransmitted 2xx, an INVITE
the transaction layer gave up on); the call flows add them here when they accept a caller or
ring a handset. A leg leaves the table when it ends, so the table holds live calls only and the
switchboard's dialog limit bounds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pbx.calls.legs import InboundLeg, Leg, OutboundLeg
from pbx.sip.dialog import contact_uri, new_call_id, new_tag
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.stack import IncomingRequest, SipStack
from pbx.sip.transactions import TransactionId
from pbx.sip.uri import SipUri

DialogKey = tuple[str, str]  # (Call-ID, our tag)


@dataclass
class LegTable:
    stack: SipStack
    live: dict[DialogKey, Leg] = field(default_factory=dict)
    _by_invite: dict[TransactionId, InboundLeg] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.live)

    def get(self, key: DialogKey) -> Leg | None:
        return self.live.get(key)

    def by_invite(self, transaction: TransactionId) -> InboundLeg | None:
        """The caller's leg an INVITE server transaction belongs to (for CANCEL, timeouts)."""
        return self._by_invite.get(transaction)

    def accept_inbound(self, incoming: IncomingRequest) -> InboundLeg:
        """A leg for a new INVITE, tracked until it ends."""
        leg = InboundLeg.accept(incoming, ref=new_tag(), contact=self._contact(incoming.source))
        assert incoming.transaction is not None
        key = leg.dialog_id
        txn = incoming.transaction
        self.live[key] = leg
        self._by_invite[txn] = leg

        def forget(_: Leg) -> None:
            self.live.pop(key, None)
            self._by_invite.pop(txn, None)

        leg.on_end = forget
        return leg

    def new_outbound(self, peer: Peer, ref: str) -> tuple[OutboundLeg, str, str]:
        """An outbound leg towards a registered handset's address or a configured destination,
        tracked for in-dialog requests. Returns (leg, call_id, local_tag) for leg.call()."""
        leg = OutboundLeg(stack=self.stack, ref=ref, contact=self._contact(peer))
        call_id, tag = new_call_id(self.stack.public_host), new_tag()
        key = (call_id, tag)
        self.live[key] = leg

        def forget(_: Leg) -> None:
            self.live.pop(key, None)

        leg.on_end = forget
        return leg, call_id, tag

    def _contact(self, peer: Peer) -> SipUri:
        transport: TransportKind = peer.transport
        return contact_uri(
            "helpline", self.stack.public_host, self.stack.port(transport), transport.value
        )
