"""SIP transaction layer (RFC 3261 section 17, RFC 6026), sans-IO; see layer.TransactionLayer."""

from pbx.sip.transactions.client import ClientState, build_ack_for_non2xx, build_cancel
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
from pbx.sip.transactions.layer import TransactionLayer, TransactionStats, new_branch
from pbx.sip.transactions.server import ServerState
from pbx.sip.transactions.uas_2xx import NoAck, Uas2xxRetransmitter

__all__ = [
    "Abandoned",
    "ClientState",
    "Deliver",
    "Effect",
    "NoAck",
    "Send",
    "ServerState",
    "Side",
    "Terminated",
    "TimedOut",
    "TransactionId",
    "TransactionLayer",
    "TransactionStats",
    "Uas2xxRetransmitter",
    "build_ack_for_non2xx",
    "build_cancel",
    "new_branch",
]
