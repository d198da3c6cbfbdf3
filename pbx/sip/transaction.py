"""The SIP transaction layer's public face: `from pbx.sip.transaction import TransactionLayer`.

The implementation lives in pbx.sip.transactions (one module per concern); timer values in
pbx.sip.timers; received/rport stamping and response routing in pbx.sip.response_routing.
"""

from pbx.sip.response_routing import response_peer, stamp_via
from pbx.sip.timers import Timers
from pbx.sip.transactions import (
    ClientState,
    Deliver,
    Effect,
    NoAck,
    Send,
    ServerState,
    Side,
    Terminated,
    TimedOut,
    TransactionId,
    TransactionLayer,
    TransactionStats,
    Uas2xxRetransmitter,
    build_ack_for_non2xx,
    build_cancel,
    new_branch,
)

__all__ = [
    "ClientState",
    "Deliver",
    "Effect",
    "NoAck",
    "Send",
    "ServerState",
    "Side",
    "Terminated",
    "TimedOut",
    "Timers",
    "TransactionId",
    "TransactionLayer",
    "TransactionStats",
    "Uas2xxRetransmitter",
    "build_ack_for_non2xx",
    "build_cancel",
    "new_branch",
    "response_peer",
    "stamp_via",
]
