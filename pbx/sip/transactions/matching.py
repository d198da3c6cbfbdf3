"""Transaction matching keys (RFC 3261 17.1.3 and 17.2.3, with the RFC 2543 fallback).

A server key is a tuple whose first element says which rule built it, so both kinds can share
one dictionary without ever comparing equal to each other.
"""

from __future__ import annotations

from pbx.sip.message import CSeq, Request
from pbx.sip.response_routing import sent_by_key
from pbx.sip.via import MAGIC_COOKIE, Via

ServerKey = tuple[object, ...]
ClientKey = tuple[str, str]


def is_rfc3261_branch(branch: str | None) -> bool:
    """A branch that starts with the magic cookie and has something after it (RFC 4475 3.2.1)."""
    return (
        branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE)
    )


def server_key(request: Request, via: Via, cseq: CSeq, method: str) -> ServerKey:
    """The key of the server transaction `request` belongs to, `method` standing for its own.

    ACK passes "INVITE"; a CANCEL looking for its target passes "INVITE" too (RFC 3261 9.2).
    Raises SipParseError for unreadable From/To (only needed by the 2543 rule).
    """
    branch = via.branch
    if is_rfc3261_branch(branch):
        host, port = sent_by_key(via)
        return ("3261", branch, host, port, method)
    return (
        "2543",
        str(request.uri),
        request.to.tag,
        request.from_.tag,
        request.call_id,
        cseq.number,
        method,
        str(via),
    )


def ack_2543_key(request: Request, via: Via, cseq: CSeq) -> ServerKey:
    """RFC 2543 ACK matching: like the INVITE's key but without the To tag (the response added
    one), which the caller compares against the tag of the response the transaction sent."""
    return ("2543-ack", str(request.uri), request.from_.tag, request.call_id, cseq.number, str(via))


def client_key(branch: str, method: str) -> ClientKey:
    """RFC 3261 17.1.3: our branch and the CSeq method (CANCEL shares the INVITE's branch)."""
    return (branch, method)
