"""Driving the sans-IO transaction layer in tests: requests, effect filters, punctual timers."""

from __future__ import annotations

from pbx.sip.headers import Headers
from pbx.sip.message import Request, Response, make_response
from pbx.sip.parser import parse_message
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.transactions import (
    Deliver,
    Effect,
    Send,
    TransactionId,
    TransactionLayer,
)
from pbx.sip.uri import parse_uri

UDP = Peer(TransportKind.UDP, "127.0.0.2", 5070)
TCP = Peer(TransportKind.TCP, "127.0.0.2", 40001, connection_id=7)


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bKabc1",
    via: str | None = None,
    cseq: int = 1,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    from_tag: str | None = "f1",
    call_id: str = "call-1@127.0.0.2",
    uri: str = "sip:0900@127.0.0.1",
    transport: str = "UDP",
) -> Request:
    if via is None:
        via = f"SIP/2.0/{transport} 127.0.0.2:5070"
        if branch is not None:
            via += f";branch={branch}"
    to = "<sip:0900@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    from_ = "<sip:anonymous@anonymous.invalid>" + (f";tag={from_tag}" if from_tag else "")
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {from_}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def ack_for(
    response: Request | Response, branch: str | None = "z9hG4bKabc1", transport: str = "UDP"
) -> Request:
    """The ACK a client transaction sends for a non-2xx: same branch, To tag of the response."""
    return request("ACK", branch=branch, to_tag=response.to.tag, transport=transport)


def sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def delivered(effects: list[Effect]) -> list[Deliver]:
    return [e for e in effects if isinstance(e, Deliver)]


def statuses(effects: list[Effect]) -> list[int]:
    return [e.message.status for e in sends(effects) if isinstance(e.message, Response)]


def new_server(layer: TransactionLayer, req: Request, source: Peer = UDP) -> TransactionId:
    effects = layer.receive(req, source, 0.0)
    (deliver,) = delivered(effects)
    assert deliver.transaction is not None
    return deliver.transaction


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, Effect]]:
    """Fire timers exactly at their deadlines up to `end`, as a punctual adapter would."""
    out: list[tuple[float, Effect]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= end:
        out.extend((deadline, e) for e in layer.on_timer(deadline))
    return out


# --- the client side: what the TU sends, and what the phone answers -----------------------


def outgoing(method: str = "INVITE", transport: str = "UDP", cseq: int = 1) -> Request:
    """A request as the TU builds it: our Via without a branch (the layer adds one)."""
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{transport} 127.0.0.1:5060;rport"),
            ("Route", "<sip:127.0.0.2:5070;lr>"),
            ("Max-Forwards", "70"),
            ("From", "<sip:helpline@127.0.0.1>;tag=ours"),
            ("To", "<sip:volunteer@127.0.0.2>"),
            ("Call-ID", "out-1@127.0.0.1"),
            ("CSeq", f"{cseq} {method}"),
        ]
    )
    return Request(method, parse_uri("sip:volunteer@127.0.0.2:5070"), headers)


def answer(sent: Request, status: int, to_tag: str | None = "theirs") -> Response:
    """The response the phone would send, re-parsed from bytes as the transport would."""
    response = make_response(sent, status, to_tag=to_tag)
    parsed = parse_message(response.to_bytes())
    assert isinstance(parsed, Response)
    return parsed
