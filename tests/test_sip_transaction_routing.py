"""received/rport stamping (RFC 3261 18.2.1, RFC 3581) and response routing (18.2.2)."""

from __future__ import annotations

import pytest

from pbx.sip.message import Request, Response
from pbx.sip.parser import parse_message
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.response_routing import response_peer, stamp_via
from pbx.sip.transactions import Deliver, Send, TransactionLayer
from pbx.sip.via import parse_via

NAT = Peer(TransportKind.UDP, "127.0.0.2", 40001)  # what the socket saw
NAT6 = Peer(TransportKind.UDP, "::1", 40001)


def invite(via: str, method: str = "INVITE") -> Request:
    text = (
        f"{method} sip:0900@127.0.0.1 SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKproxy\r\n"
        "From: <sip:anonymous@anonymous.invalid>;tag=f\r\n"
        "To: <sip:0900@127.0.0.1>\r\n"
        "Call-ID: route-1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def receive(via: str, source: Peer = NAT) -> tuple[Request, Send]:
    layer = TransactionLayer()
    effects = layer.receive(invite(via), source, 0.0)
    trying, deliver = effects
    assert isinstance(trying, Send) and isinstance(deliver, Deliver)
    assert isinstance(deliver.message, Request)
    return deliver.message, trying


# --- stamping of incoming requests ----------------------------------------------------------------


def test_rport_without_value_gets_source_port_and_received_even_if_host_matches() -> None:
    request, trying = receive("SIP/2.0/UDP 127.0.0.2:5060;rport;branch=z9hG4bK1")
    top = request.top_via
    assert top.params["received"] == "127.0.0.2"
    assert top.params["rport"] == "40001"
    assert top.branch == "z9hG4bK1"
    # the 100 Trying carries the stamped Via and goes to the address the request came from
    assert isinstance(trying.message, Response)
    assert trying.message.top_via.params["rport"] == "40001"
    assert trying.peer == NAT
    # the second Via is untouched, and on the wire the Via lines stay where they were
    assert request.vias[1] == parse_via("SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKproxy")
    lines = request.to_bytes().decode().split("\r\n")
    assert lines[1].startswith("Via: SIP/2.0/UDP 127.0.0.2:5060;rport=40001;")
    assert lines[2] == "Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKproxy"


def test_no_rport_and_same_host_leaves_the_via_alone() -> None:
    via = "SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK1"
    request, trying = receive(via)
    assert str(request.top_via) == via
    # 18.2.2: without rport, responses go to sent-by host and port, not the source port
    assert trying.peer == Peer(TransportKind.UDP, "127.0.0.2", 5070)


def test_a_received_param_sent_by_the_client_is_replaced_by_the_real_source() -> None:
    # a forged received= would otherwise aim our responses at any address (reflection)
    request, trying = receive("SIP/2.0/UDP 127.0.0.2:5060;received=127.0.0.77;branch=z9hG4bK9")
    assert request.top_via.params["received"] == "127.0.0.2"
    assert trying.peer == Peer(TransportKind.UDP, "127.0.0.2", 5060)


def test_host_name_in_sent_by_gets_received_and_default_port() -> None:
    request, trying = receive("SIP/2.0/UDP phone.invalid;branch=z9hG4bK1")
    assert request.top_via.params["received"] == "127.0.0.2"
    assert "rport" not in request.top_via.params
    assert trying.peer == Peer(TransportKind.UDP, "127.0.0.2", 5060)


def test_different_address_in_sent_by_gets_received() -> None:
    request, trying = receive("SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK1")
    assert request.top_via.params["received"] == "127.0.0.2"
    assert trying.peer == Peer(TransportKind.UDP, "127.0.0.2", 5080)


def test_ipv6_source_and_sent_by() -> None:
    request, trying = receive("SIP/2.0/UDP [::1]:5070;branch=z9hG4bK1", NAT6)
    assert "received" not in request.top_via.params  # same address
    assert trying.peer == Peer(TransportKind.UDP, "::1", 5070)  # socket form, no brackets
    request, trying = receive("SIP/2.0/UDP [0:0::1]:5070;rport;branch=z9hG4bK1", NAT6)
    assert request.top_via.params == {"rport": "40001", "branch": "z9hG4bK1", "received": "::1"}
    assert trying.peer == NAT6
    # the stamped Via survives a trip over the wire (RFC 5118: received holds a bare IPv6)
    reparsed = parse_message(request.to_bytes())
    assert isinstance(reparsed, Request)
    assert reparsed.top_via.params["received"] == "::1"


def test_ipv6_sent_by_differs_from_ipv4_source() -> None:
    request, trying = receive("SIP/2.0/UDP [::1]:5070;branch=z9hG4bK1")
    assert request.top_via.params["received"] == "127.0.0.2"
    assert trying.peer == Peer(TransportKind.UDP, "127.0.0.2", 5070)


def test_stamped_ack_for_2xx_is_delivered_with_received() -> None:
    layer = TransactionLayer()
    ack = invite("SIP/2.0/UDP 127.0.0.2:5060;rport;branch=z9hG4bKack", method="ACK")
    (deliver,) = layer.receive(ack, NAT, 0.0)
    assert isinstance(deliver, Deliver)
    assert deliver.message.top_via.params["rport"] == "40001"


def test_stamp_via_function() -> None:
    via = parse_via("SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1")
    assert stamp_via(via, NAT) is via
    assert stamp_via(via, Peer(TransportKind.UDP, "127.0.0.5", 5060)).params["received"] == (
        "127.0.0.5"
    )


# --- response_peer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("via", "expected"),
    [
        # rport asked for and stamped, or still without value: the source address and port
        ("SIP/2.0/UDP 127.0.0.3:5080;rport=40001;received=127.0.0.2", NAT),
        ("SIP/2.0/UDP 127.0.0.3:5080;rport", NAT),
        # no rport: received (or sent-by host) and sent-by port (default 5060)
        (
            "SIP/2.0/UDP 127.0.0.3:5080;received=127.0.0.2",
            Peer(TransportKind.UDP, "127.0.0.2", 5080),
        ),
        ("SIP/2.0/UDP 127.0.0.3:5080", Peer(TransportKind.UDP, "127.0.0.3", 5080)),
        ("SIP/2.0/UDP 127.0.0.3", Peer(TransportKind.UDP, "127.0.0.3", 5060)),
        ("SIP/2.0/UDP [::1]:5070", Peer(TransportKind.UDP, "::1", 5070)),
        ("SIP/2.0/UDP [::2];received=::1", Peer(TransportKind.UDP, "::1", 5060)),
        ("SIP/2.0/UDP [::2];rport=1;received=::1", NAT),
        # maddr is ignored: it would let a forged request aim responses anywhere
        ("SIP/2.0/UDP 127.0.0.3:5080;maddr=127.0.0.9", Peer(TransportKind.UDP, "127.0.0.3", 5080)),
        # an unknown transport in the Via does not matter: we answer on the one used
        ("SIP/2.0/SCTP 127.0.0.3:5080", Peer(TransportKind.UDP, "127.0.0.3", 5080)),
    ],
)
def test_response_peer_over_udp(via: str, expected: Peer) -> None:
    assert response_peer(NAT, parse_via(via)) == expected
    assert TransactionLayer().response_peer(NAT, parse_via(via)) == expected


@pytest.mark.parametrize("kind", [TransportKind.TCP, TransportKind.TLS])
@pytest.mark.parametrize(
    "via",
    [
        "SIP/2.0/TCP 127.0.0.3:5080;rport",
        "SIP/2.0/TLS 127.0.0.3;received=127.0.0.2",
        "SIP/2.0/TCP [::1]:5070",
    ],
)
def test_response_peer_over_reliable_transports_is_the_same_connection(
    kind: TransportKind, via: str
) -> None:
    source = Peer(kind, "127.0.0.2", 40001, connection_id=42)
    assert response_peer(source, parse_via(via)) == source
