"""Random interleavings of network input, TU actions and time: no exceptions, nothing left over.

Whatever order retransmissions, ACKs, CANCELs, responses and timers come in, every transaction
must end once the TU has answered and enough time has passed, and ids must never be reused.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.sip.message import Request, Response, make_response
from pbx.sip.parser import parse_message
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.transaction import (
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
    from pbx.sip.headers import Headers

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


network_request = st.tuples(
    st.just("in"),
    st.sampled_from(METHODS),
    st.integers(0, 2),  # call
    st.sampled_from(["z9hG4bKa", "z9hG4bKb", None]),  # None: RFC 2543 matching
    st.sampled_from([None, "t"]),  # To tag
    st.sampled_from([UDP, TCP]),
)
tu_response = st.tuples(
    st.just("answer"), st.integers(0, 30), st.sampled_from([100, 180, 200, 486])
)
tu_request = st.tuples(st.just("send"), st.sampled_from(["INVITE", "OPTIONS"]), st.booleans())
network_response = st.tuples(
    st.just("reply"), st.integers(0, 30), st.sampled_from([100, 180, 200, 487])
)
tu_cancel = st.tuples(st.just("cancel"), st.integers(0, 30))
tick = st.tuples(st.just("tick"), st.floats(0.0, 40.0))
steps = st.lists(
    st.one_of(network_request, tu_response, tu_request, network_response, tu_cancel, tick),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_random_interleavings_never_raise_and_always_drain(
    script: list[tuple[object, ...]],
) -> None:
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
                assert effect.peer in (UDP, TCP) or effect.peer.host == "127.0.0.2"

    for step in script:
        kind = step[0]
        if kind == "in":
            _, method, call, branch, to_tag, peer = step
            message = incoming(str(method), int(call), branch, to_tag)  # type: ignore[arg-type]
            check(layer.receive(message, peer, now))  # type: ignore[arg-type]
        elif kind == "answer" and server:
            tid, request = server[int(step[1]) % len(server)]  # type: ignore[call-overload]
            check(layer.send_response(tid, make_response(request, int(step[2]), to_tag="t"), now))  # type: ignore[call-overload]
        elif kind == "send":
            peer = TCP if step[2] else UDP
            tid, effects = layer.send_request(outgoing(str(step[1])), peer, now)
            request = effects[0].message
            assert isinstance(request, Request)
            client.append((tid, request, peer))
            check(effects)
        elif kind == "reply" and client:
            tid, request, peer = client[int(step[1]) % len(client)]  # type: ignore[call-overload]
            response = make_response(request, int(step[2]), to_tag="r")  # type: ignore[call-overload]
            reparsed = parse_message(response.to_bytes())
            assert isinstance(reparsed, Response)
            check(layer.receive(reparsed, peer, now))
        elif kind == "cancel" and client:
            tid, _, _ = client[int(step[1]) % len(client)]  # type: ignore[call-overload]
            if tid.method == "INVITE":
                check(layer.cancel(tid, now))
        elif kind == "tick":
            now += float(step[1])  # type: ignore[arg-type]
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
