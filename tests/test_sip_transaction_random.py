"""Random interleavings of network input, TU actions and time: no exceptions, nothing left over.

Whatever order retransmissions, ACKs, CANCELs, responses and timers come in, every transaction
must end once the TU has answered and enough time has passed, and ids must never be reused.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.sip.headers import Headers
from pbx.sip.message import Request, Response, make_response
from pbx.sip.parser import parse_message
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.transactions import (
    ClientState,
    Deliver,
    Effect,
    Send,
    Terminated,
    TransactionId,
    TransactionLayer,
)
from pbx.sip.uri import parse_uri

UDP = Peer(TransportKind.UDP, "127.0.0.2", 5070)
TCP = Peer(TransportKind.TCP, "127.0.0.2", 40001, connection_id=3)
METHODS = ["INVITE", "OPTIONS", "BYE", "CANCEL", "ACK"]


def incoming(method: str, call: int, branch: str | None, to_tag: str | None) -> Request:
    via = "SIP/2.0/UDP 127.0.0.2:5070" + (f";branch={branch}" if branch else "")
    to = "<sip:0900@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:0900@127.0.0.1 SIP/2.0\r\nVia: {via}\r\n"
        "From: <sip:anonymous@anonymous.invalid>;tag=f\r\n"
        f"To: {to}\r\nCall-ID: r{call}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def outgoing(method: str) -> Request:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 127.0.0.1:5060"),
            ("From", "<sip:helpline@127.0.0.1>;tag=o"),
            ("To", "<sip:volunteer@127.0.0.2>"),
            ("Call-ID", "out"),
            ("CSeq", f"1 {method}"),
        ]
    )
    return Request(method, parse_uri("sip:volunteer@127.0.0.2"), headers)


@dataclass(frozen=True)
class In:  # a request from the network
    method: str
    call: int
    branch: str | None  # None: RFC 2543 matching
    to_tag: str | None
    peer: Peer


@dataclass(frozen=True)
class Answer:  # the TU answers one of the server transactions seen so far
    index: int
    status: int


@dataclass(frozen=True)
class SendRequest:  # the TU starts a client transaction
    method: str
    reliable: bool


@dataclass(frozen=True)
class Reply:  # the far end answers one of our requests
    index: int
    status: int


@dataclass(frozen=True)
class Cancel:
    index: int


@dataclass(frozen=True)
class Tick:
    seconds: float


Step = In | Answer | SendRequest | Reply | Cancel | Tick

steps = st.lists(
    st.one_of(
        st.builds(
            In,
            st.sampled_from(METHODS),
            st.integers(0, 2),
            st.sampled_from(["z9hG4bKa", "z9hG4bKb", None]),
            st.sampled_from([None, "t"]),
            st.sampled_from([UDP, TCP]),
        ),
        st.builds(Answer, st.integers(0, 30), st.sampled_from([100, 180, 200, 486])),
        st.builds(SendRequest, st.sampled_from(["INVITE", "OPTIONS"]), st.booleans()),
        st.builds(Reply, st.integers(0, 30), st.sampled_from([100, 180, 200, 487])),
        st.builds(Cancel, st.integers(0, 30)),
        st.builds(Tick, st.floats(0.0, 40.0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_random_interleavings_never_raise_and_always_drain(script: list[Step]) -> None:
    layer = TransactionLayer()
    now = 0.0
    server: list[tuple[TransactionId, Request]] = []
    client: list[tuple[TransactionId, Request, Peer]] = []
    ended: set[TransactionId] = set()
    seen: set[TransactionId] = set()

    def check(effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Deliver) and effect.transaction is not None:
                assert effect.transaction not in ended
                if isinstance(effect.message, Request) and effect.transaction not in seen:
                    server.append((effect.transaction, effect.message))
                seen.add(effect.transaction)
            elif isinstance(effect, Terminated):
                assert effect.transaction not in ended
                ended.add(effect.transaction)
            elif isinstance(effect, Send):
                assert effect.peer.host == "127.0.0.2"

    for step in script:
        match step:
            case In(method, call, branch, to_tag, peer):
                check(layer.receive(incoming(method, call, branch, to_tag), peer, now))
            case Answer(index, status) if server:
                tid, request = server[index % len(server)]
                check(layer.send_response(tid, make_response(request, status, to_tag="t"), now))
            case SendRequest(method, reliable):
                peer = TCP if reliable else UDP
                tid, effects = layer.send_request(outgoing(method), peer, now)
                sent = effects[0]
                assert isinstance(sent, Send) and isinstance(sent.message, Request)
                client.append((tid, sent.message, peer))
                check(effects)
            case Reply(index, status) if client:
                tid, request, peer = client[index % len(client)]
                reparsed = parse_message(make_response(request, status, to_tag="r").to_bytes())
                assert isinstance(reparsed, Response)
                check(layer.receive(reparsed, peer, now))
            case Cancel(index) if client:
                tid, _, _ = client[index % len(client)]
                if tid.method == "INVITE":
                    check(layer.cancel(tid, now))
            case Tick(seconds):
                now += seconds
                check(layer.on_timer(now))

    # The TU finishes its work: every server transaction gets a final response, every pending
    # client INVITE is cancelled; then time passes. Nothing may be left.
    for tid, request in server:
        check(layer.send_response(tid, make_response(request, 500, to_tag="t"), now))
    for tid, _, _ in client:
        if tid.method == "INVITE" and layer.client_transaction_state(tid) is ClientState.PROCEEDING:
            check(layer.cancel(tid, now))
    for _ in range(5):
        now += 100.0
        check(layer.on_timer(now))
    assert len(layer) == 0
    assert layer.next_deadline() is None
