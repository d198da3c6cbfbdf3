"""What the transaction layer asks its adapter to do, and how transactions are named."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pbx.sip.message import Request, Response
from pbx.sip.peer import Peer


class Side(enum.StrEnum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class TransactionId:
    """Opaque handle of one transaction; never reused within a TransactionLayer."""

    side: Side
    method: str
    serial: int

    def __hash__(self) -> int:
        # The serial alone tells transactions apart; this skips the generated hash of all
        # three fields (Python code, some 60 lookups per call through the layer's tables).
        return hash(self.serial)

    def __str__(self) -> str:
        return f"{self.side.value}:{self.method}:{self.serial}"


@dataclass(frozen=True, slots=True)
class Send:
    """Put this message on the wire to this peer."""

    message: Request | Response
    peer: Peer


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand a message to the TU.

    transaction: the server transaction a new request created, the client transaction a response
    belongs to, or None for strays the TU must still see (an ACK for a 2xx, a retransmitted 2xx
    after the client INVITE transaction ended). cancels: for a CANCEL, the INVITE server
    transaction it targets, or None when there is none (the TU answers the CANCEL with 481).
    """

    message: Request | Response
    transaction: TransactionId | None
    source: Peer
    cancels: TransactionId | None = None


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer B/F (client: act as if a 408 arrived) or H (server: the non-2xx was never ACKed)."""

    transaction: TransactionId
    request: Request


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction is gone; its id will not appear again."""

    transaction: TransactionId


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The TU never answered this server transaction within its bound (Timers.answer_limit):
    the layer has answered it with 500 itself, so no request waits forever for an answer."""

    transaction: TransactionId
    request: Request


Effect = Send | Deliver | TimedOut | Terminated | Abandoned
