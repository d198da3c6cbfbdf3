"""SIP syntax layer beyond RFC 4475: header forms, lists, quoting, IPv6, framing, round trips."""

from __future__ import annotations

import itertools
import re

import pytest

from pbx.sip.address import Address, parse_address
from pbx.sip.errors import SipParseError
from pbx.sip.grammar import quote
from pbx.sip.headers import Headers
from pbx.sip.message import CSeq, Request, Response, make_response
from pbx.sip.parser import (
    MAX_MESSAGE_SIZE,
    ParseFailure,
    StreamFramer,
    _head_end,
    is_keepalive,
    parse_message,
)
from pbx.sip.uri import SipUri, parse_uri
from pbx.sip.via import Via, parse_via


def invite(
    extra: str = "", body: bytes = b"", *, call_id: str = "abc@pbx", length: bool = True
) -> bytes:
    head = (
        "INVITE sip:helpline@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-1;rport\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Anon" <sip:anonymous@anonymous.invalid>;tag=f1\r\n'
        "To: <sip:helpline@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:phone@127.0.0.2:5062>\r\n"
        f"{extra}"
    )
    if length:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def ok_response(body: bytes = b"") -> bytes:
    return (
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-2\r\n"
        "From: <sip:helpline@127.0.0.1>;tag=a\r\n"
        "To: <sip:volunteer@127.0.0.2>;tag=b\r\n"
        "Call-ID: xyz@pbx\r\n"
        "CSeq: 2 INVITE\r\n"
        "Contact: <sip:volunteer@127.0.0.2:5070>\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def req(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def refused(data: bytes, *, datagram: bool = True) -> ParseFailure:
    with pytest.raises(ParseFailure) as info:
        parse_message(data, datagram=datagram)
    return info.value


# --- header names and forms ---------------------------------------------------------------------


def test_compact_and_long_forms_are_the_same_header() -> None:
    long_form = req(invite("Subject: hi\r\nSupported: timer\r\n"))
    compact = req(
        b"INVITE sip:helpline@127.0.0.1 SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-1;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b'f: "Anon" <sip:anonymous@anonymous.invalid>;tag=f1\r\n'
        b"t: <sip:helpline@127.0.0.1>\r\n"
        b"i: abc@pbx\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"m: <sip:phone@127.0.0.2:5062>\r\n"
        b"s: hi\r\nk: timer\r\n"
        b"l: 0\r\n\r\n"
    )
    assert compact == long_form
    assert [n for n, _ in compact.headers] == [n for n, _ in long_form.headers]


def test_header_names_are_case_insensitive() -> None:
    m = req(invite("x-CUSTOM-thing: 1\r\n").replace(b"Call-ID:", b"cAlL-iD:"))
    assert m.call_id == "abc@pbx"
    assert m.headers.get("CALL-ID") == m.headers.get("i") == "abc@pbx"
    assert m.headers.get("X-Custom-Thing") == "1"
    assert ("x-CUSTOM-thing", "1") in list(m.headers)  # unknown names kept as received


def test_whitespace_before_colon_and_folding() -> None:
    m = req(invite("Subject   :\r\n\tfirst\r\n   second\r\n"))
    assert m.headers.get("Subject") == "first second"


def test_comma_separated_and_repeated_list_headers_keep_order() -> None:
    m = req(
        invite(
            "Route: <sip:p1@127.0.0.1;lr>, <sip:p2@127.0.0.1;lr>\r\n"
            "Route: <sip:p3@127.0.0.1;lr>\r\n"
            "Record-Route: <sip:r1@127.0.0.1;lr>,<sip:r2@127.0.0.1;lr>\r\n"
        ).replace(
            b"Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-1;rport\r\n",
            b"Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-1,"
            b" SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK-b\r\n"
            b"v: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-c\r\n",
        )
    )
    assert [v.branch for v in m.vias] == ["z9hG4bK-1", "z9hG4bK-b", "z9hG4bK-c"]
    assert [v.transport for v in m.vias] == ["UDP", "TCP", "TLS"]
    assert m.top_via.port == 5062
    assert [str(a.uri) for a in m.routes] == [
        "sip:p1@127.0.0.1;lr",
        "sip:p2@127.0.0.1;lr",
        "sip:p3@127.0.0.1;lr",
    ]
    assert [str(a.uri) for a in m.record_routes] == ["sip:r1@127.0.0.1;lr", "sip:r2@127.0.0.1;lr"]


def test_quoted_commas_and_escapes_in_contact_display_names() -> None:
    m = req(
        invite(
            'Contact: "Doe, John" <sip:j@127.0.0.2>;q=0.5, '
            '"a \\"quoted\\", \\\\ name" <sip:k@127.0.0.2;transport=tcp>;expires=60\r\n'
        ).replace(b"Contact: <sip:phone@127.0.0.2:5062>\r\n", b"")
    )
    first, second = m.contacts
    assert first.display == "Doe, John" and first.params == {"q": "0.5"}
    assert second.display == 'a "quoted", \\ name'
    assert isinstance(second.uri, SipUri) and second.uri.transport == "tcp"
    assert second.params == {"expires": "60"}


def test_contact_star_only_alone() -> None:
    m = req(invite().replace(b"Contact: <sip:phone@127.0.0.2:5062>", b"Contact: *"))
    assert m.contacts[0].wildcard
    bad = refused(invite("Contact: *\r\n"))
    assert bad.reason == "Bad Request - Malformed Contact"
    assert refused(invite().replace(b"To: <sip", b"To: *, <sip")).status == 400


# --- URIs, addresses, IPv6 ----------------------------------------------------------------------


def test_uri_parameters_versus_header_parameters() -> None:
    in_uri = parse_address("<sip:a@127.0.0.1;transport=tcp;lr>;tag=x;q=1")
    assert isinstance(in_uri.uri, SipUri)
    assert in_uri.uri.params == {"transport": "tcp", "lr": None}
    assert in_uri.params == {"tag": "x", "q": "1"}
    addr_spec = parse_address("sip:a@127.0.0.1;transport=tcp;tag=x")
    assert isinstance(addr_spec.uri, SipUri) and addr_spec.uri.params == {}
    assert addr_spec.params == {"transport": "tcp", "tag": "x"}


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]", "[2001:db8::10]", None),
        ("sip:user@[2001:db8::10]:5070;transport=tcp", "[2001:db8::10]", 5070),
        ("sips:[::ffff:192.0.2.1]:5061", "[::ffff:192.0.2.1]", 5061),
        ("sip:[2001:DB8::A]", "[2001:db8::a]", None),
        # RFC 5118 4.4: the port is inside the brackets, so it is part of the address
        ("sip:[2001:db8::10:5070]", "[2001:db8::10:5070]", None),
    ],
)
def test_ipv6_references_in_uris(text: str, host: str, port: int | None) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri) and uri.host == host and uri.port == port
    assert uri.host_bare == host[1:-1]


@pytest.mark.parametrize(
    "text",
    [
        "sip:user@2001:db8::10",  # unbracketed
        "sip:[2001:db8:::192.0.2.1]",  # RFC 5118 4.3: bad IPv6 reference
        "sip:[2001:db8::10",
        "sip:[2001:db8::10]x",
        "sip:[zz::1]",
        "sip:host:0",
        "sip:host:65536",
        "sip:host:5o60",
        "sip:ho st",
        "sip:",
        "sip:user@",
        "sip:a@b@c",
        "1sip:x",
        "nocolon",
    ],
)
def test_malformed_uris_are_refused(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_ipv6_in_via_and_contact() -> None:
    m = req(
        invite()
        .replace(
            b"Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-1;rport",
            b"Via: SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bK-6;received=[2001:db8::9:255]"
            b", SIP/2.0/UDP [::1];branch=z9hG4bK-7;received=2001:db8::9:255",
        )
        .replace(b"<sip:phone@127.0.0.2:5062>", b"<sip:phone@[2001:db8::20]:5062>")
    )
    first, second = m.vias
    assert first.host == "[2001:db8::9:1]" and first.port == 5070
    assert first.params["received"] == "[2001:db8::9:255]"
    assert second.host == "[::1]" and second.port is None
    assert second.params["received"] == "2001:db8::9:255"
    contact = m.contacts[0].uri
    assert isinstance(contact, SipUri) and contact.host_bare == "2001:db8::20"


def test_via_with_lws_everywhere() -> None:
    via = parse_via("SIP / 2.0 / udp  host.example.com : 5060 ; branch = z9hG4bKx ; rport")
    assert via == Via("UDP", "host.example.com", 5060, {"branch": "z9hG4bKx", "rport": None})


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP",
        "SIP/2.0 host",
        "SIP/2.0/UDP host1 host2",
        "SIP/2.0/UDP host;",
        "SIP/2.0/UDP host;received=",
        "SIP/2.0/UDP host;rport=x",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP ho,st",
    ],
)
def test_malformed_vias_are_refused(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_via(text)
    assert info.value.status == 400


def test_via_of_another_version_is_505() -> None:
    with pytest.raises(SipParseError) as info:
        parse_via("SIP/3.0/UDP host")
    assert info.value.status == 505


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@b>',
        "a, b <sip:a@b>",
        "<sip:a@b",
        "< sip:a@b>",
        "<sip:a@b> junk",
        "<sip:a@b>;",
        "<sip:a@b>;=x",
        "<sip:a@b>;tag=a b",
        "sip:a@b?x=y",
        "",
    ],
)
def test_malformed_addresses_are_refused(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_address(text)


# --- round trips of the value types -------------------------------------------------------------

URIS = [
    "sip:helpline@127.0.0.1",
    "sips:user:secret@example.com:5061;transport=tcp;lr;maddr=239.0.0.1?Subject=hi&Priority=urgent",
    "sip:[2001:db8::1]:5070;transport=udp",
    "sip:user;par=u%40example.net@example.com",
    "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
    "sip:a@b;x=%3B%3D%25",
    "tel:+31-800-0113",
    "urn:service:sos",
]


@pytest.mark.parametrize("text", URIS)
def test_uri_str_round_trips(text: str) -> None:
    uri = parse_uri(text)
    assert parse_uri(str(uri)) == uri
    assert str(parse_uri(str(uri))) == str(uri)


def test_escaped_uri_params_are_decoded_once_and_reencoded() -> None:
    uri = parse_uri("sip:a@b;x=%3B%3D%25")
    assert isinstance(uri, SipUri) and uri.params == {"x": ";=%"}
    assert str(uri) == "sip:a@b;x=%3B%3D%25"


ADDRESSES = [
    '"Doe, John \\"JJ\\"" <sip:j@127.0.0.1;lr>;tag=x;q=0.5',
    '<sip:a@b>;+sip.instance="<urn:uuid:0000>";expires=0',
    "sip:a@b;tag=1",
    "Anonymous <sip:anonymous@anonymous.invalid>",
    '"" <sip:a@b>',
    "<tel:+318000113>",
    "*",
]


@pytest.mark.parametrize("text", ADDRESSES)
def test_address_str_round_trips(text: str) -> None:
    address = parse_address(text)
    assert parse_address(str(address)) == address


VIAS = [
    "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1;rport=5062;received=127.0.0.2",
    "SIP/2.0/TCP [2001:db8::1];branch=z9hG4bKx;received=[2001:db8::2]",
    'SIP/2.0/WSS abc.invalid;branch=z9hG4bKy;x="quoted value"',
]


@pytest.mark.parametrize("text", VIAS)
def test_via_str_round_trips(text: str) -> None:
    via = parse_via(text)
    assert parse_via(str(via)) == via


def test_quote_cannot_inject_a_header_line() -> None:
    address = Address(uri=SipUri("b", "a"), display='evil"\r\nVia: SIP/2.0/UDP x')
    text = str(address)
    assert "\r" not in text and "\n" not in text
    assert parse_address(text).display == 'evil"  Via: SIP/2.0/UDP x'
    assert quote("a\\b") == '"a\\\\b"'


def test_headers_refuse_cr_lf() -> None:
    headers = Headers()
    with pytest.raises(ValueError):
        headers.add("Subject", "hi\r\nVia: x")
    with pytest.raises(ValueError):
        headers.set("X-A\nB", "v")


def test_message_round_trip() -> None:
    m = req(invite("Subject: folded\r\n value\r\n", b"v=0\r\n"))
    again = parse_message(m.to_bytes(), datagram=False)
    assert again == m and again.body == b"v=0\r\n"
    r = parse_message(ok_response(b"hello"))
    assert parse_message(r.to_bytes()) == r


# --- message-level rules ------------------------------------------------------------------------


def test_bare_lf_line_endings_are_tolerated() -> None:
    data = invite(body=b"v=0\n").replace(b"\r\n", b"\n")
    m = req(data)
    assert m.body == b"v=0\n" and m.call_id == "abc@pbx"
    out = StreamFramer().feed(data + data)
    assert len(out) == 2 and all(isinstance(x, Request) for x in out)


def test_bare_cr_inside_a_header_is_refused() -> None:
    failure = refused(invite("Subject: a\rb\r\n"))
    assert failure.reason == "Bad Request - Bare CR in header field"
    assert failure.headers is not None and failure.headers.get("Call-ID") == "abc@pbx"


def test_leading_crlf_before_a_datagram_is_ignored() -> None:
    assert req(b"\r\n\r\n" + invite()).call_id == "abc@pbx"
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n")
    assert not is_keepalive(invite())


def test_missing_content_length_on_a_datagram_takes_the_rest() -> None:
    m = req(invite(body=b"v=0\r\n", length=False))
    assert m.body == b"v=0\r\n"
    failure = refused(invite(length=False), datagram=False)
    assert failure.reason == "Bad Request - Missing Content-Length"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("CSeq: 2 INVITE\r\n", "Bad Request - Multiple CSeq headers"),
        ("Max-Forwards: 1\r\n", "Bad Request - Multiple Max-Forwards headers"),
        ("Content-Length: 5\r\n", "Bad Request - Conflicting Content-Length"),
        ("Bad Header: x\r\n", "Bad Request - Malformed header field"),
        ("NoColon\r\n", "Bad Request - Malformed header field"),
    ],
)
def test_header_level_errors_keep_the_other_headers(extra: str, reason: str) -> None:
    failure = refused(invite(extra))
    assert failure.reason == reason and failure.status == 400 and failure.is_request
    assert failure.headers is not None
    assert all(name in failure.headers for name in ("Via", "From", "To", "Call-ID", "CSeq"))


def test_request_line_errors_still_carry_headers() -> None:
    failure = refused(invite().replace(b"INVITE sip", b"INVITE  sip", 1))
    assert failure.reason == "Bad Request - Malformed Request-Line"
    assert failure.headers is not None and failure.headers.get("Call-ID") == "abc@pbx"


def test_same_content_length_twice_is_accepted() -> None:
    assert req(invite("Content-Length: 000\r\n")).body == b""


def test_unknown_method_with_matching_cseq_parses() -> None:
    m = req(invite().replace(b"INVITE", b"FROBNICATE"))
    assert m.method == "FROBNICATE" and m.cseq == CSeq(1, "FROBNICATE")


def test_cseq_limits() -> None:
    top = req(invite().replace(b"CSeq: 1 INVITE", b"CSeq: 4294967295 INVITE"))
    assert top.cseq.number == 2**32 - 1
    failure = refused(invite().replace(b"CSeq: 1 INVITE", b"CSeq: 4294967296 INVITE"))
    assert failure.reason == "Bad Request - CSeq out of range"


@pytest.mark.parametrize(
    "old,new",
    [
        (b"CSeq: 1 INVITE", b"CSeq: " + b"9" * 5000 + b" INVITE"),
        (b"CSeq: 1 INVITE", "CSeq: ²  INVITE".encode()),
        (b"CSeq: 1 INVITE", "CSeq: １ INVITE".encode()),
        (b"Max-Forwards: 70", "Max-Forwards: ٧".encode()),
        (b"Content-Length: 0", b"Content-Length: " + b"1" * 5000),
        (b"Content-Length: 0", "Content-Length: ０".encode()),
        (b"127.0.0.2:5062;branch", b"127.0.0.2:" + b"5" * 5000 + b";branch"),
        (b"SIP/2.0\r\n", b"SIP/2.0 \r\n"),
        (b"Call-ID: abc@pbx", b"Call-ID: abc def"),
        (b"Call-ID: abc@pbx", b"Call-ID:"),
        (b"From: ", b"From: *"),
        (b"INVITE sip:helpline@127.0.0.1", b"INVITE sip:helpline@127.0.0.1?Route=x"),
    ],
)
def test_hostile_values_raise_parse_failure_only(old: bytes, new: bytes) -> None:
    data = invite()
    assert old in data
    failure = refused(data.replace(old, new, 1))
    assert failure.status in (400, 505)


def test_huge_max_forwards_is_clamped_not_refused() -> None:
    assert req(invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 0300")).max_forwards == 255
    huge = b"Max-Forwards: " + b"7" * 5000  # more digits than int() accepts
    assert req(invite().replace(b"Max-Forwards: 70", huge)).max_forwards == 255


@pytest.mark.parametrize(
    ("start", "ok"),
    [
        (b"SIP/2.0 200 OK", True),
        (b"SIP/2.0 180 ", True),
        (b"SIP/2.0 699 Whatever you like", True),
        (b"SIP/2.0 099 Low", False),
        (b"SIP/2.0 700 High", False),
        (b"SIP/2.0 2000 Long", False),
        ("SIP/2.0 ２00 Wide".encode(), False),
        (b"SIP/2.1 200 OK", False),
    ],
)
def test_status_lines(start: bytes, ok: bool) -> None:
    data = ok_response().replace(b"SIP/2.0 200 OK", start, 1)
    if ok:
        assert isinstance(parse_message(data), Response)
    else:
        failure = refused(data)
        assert not failure.is_request


def test_too_large_datagram_is_513() -> None:
    failure = refused(invite("X-Pad: " + "a" * MAX_MESSAGE_SIZE + "\r\n"))
    assert failure.status == 513


def test_sixty_kilobyte_header_parses() -> None:
    value = ",".join(f"tag{i}" for i in range(10_000))[: 60 * 1024]
    m = req(invite(f"Supported: {value}\r\n"))
    assert len(m.headers.values("Supported")) > 5_000


def test_make_response_copies_and_tags() -> None:
    m = req(invite("Timestamp: 54\r\n"))
    trying = make_response(m, 100, to_tag="t1")
    assert trying.headers.get("To") == "<sip:helpline@127.0.0.1>"
    assert trying.headers.get("Timestamp") == "54"
    ringing = make_response(m, 180, to_tag="t1")
    assert ringing.to.tag == "t1" and ringing.reason == "Ringing"
    again = parse_message(ringing.to_bytes())
    assert isinstance(again, Response) and again.status == 180 and again.from_.tag == "f1"


def test_a_response_copies_via_from_to_call_id_cseq_in_that_order_whatever_the_request_s() -> None:
    m = req(
        b"BYE sip:helpline@127.0.0.1 SIP/2.0\r\n"
        b"i: abc@127.0.0.2\r\n"  # compact forms, and an order of its own
        b"CSeq: 2 BYE\r\n"
        b"v: SIP/2.0/UDP 127.0.0.3;branch=z9hG4bKproxy\r\n"
        b"t: <sip:helpline@127.0.0.1>;tag=t9\r\n"
        b"Subject: kept out\r\n"
        b"VIA: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKphone\r\n"
        b"f: <sip:caller@127.0.0.2>;tag=f1\r\n"
        b"Max-Forwards: 69\r\nContent-Length: 0\r\n\r\n"
    )
    ok = make_response(m, 200)
    assert list(ok.headers) == [
        ("Via", "SIP/2.0/UDP 127.0.0.3;branch=z9hG4bKproxy"),
        ("Via", "SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKphone"),
        ("From", "<sip:caller@127.0.0.2>;tag=f1"),
        ("To", "<sip:helpline@127.0.0.1>;tag=t9"),
        ("Call-ID", "abc@127.0.0.2"),
        ("CSeq", "2 BYE"),
    ]
    ok.headers.add("Subject", "its own")  # a copy: the request's fields are untouched
    assert m.headers.fields("Subject") == ["kept out"] and len(list(m.headers)) == 9


# --- stream framing -----------------------------------------------------------------------------


def test_framer_split_at_every_byte_offset() -> None:
    data = invite(body=b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\n")
    expected = parse_message(data, datagram=False)
    for cut in range(1, len(data)):
        framer = StreamFramer()
        out = framer.feed(data[:cut]) + framer.feed(data[cut:])
        assert out == [expected], cut


def test_framer_byte_by_byte() -> None:
    data = invite(body=b"abc") + ok_response(b"de")
    framer = StreamFramer()
    out: list[object] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert out == [parse_message(invite(body=b"abc")), parse_message(ok_response(b"de"))]


def test_two_pipelined_messages_with_bodies_in_one_chunk() -> None:
    first, second = invite(body=b"one", call_id="1@x"), invite(body=b"twotwo", call_id="2@x")
    out = StreamFramer().feed(first + second)
    assert [m.body for m in out if isinstance(m, Request)] == [b"one", b"twotwo"]
    assert [m.call_id for m in out if isinstance(m, Request)] == ["1@x", "2@x"]


def test_a_bad_message_with_good_framing_does_not_break_the_stream() -> None:
    framer = StreamFramer()
    bad = invite().replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE")
    out = framer.feed(bad + invite(call_id="next@x"))
    assert isinstance(out[0], ParseFailure) and out[0].reason == "Bad Request - Invalid CSeq"
    assert isinstance(out[1], Request) and out[1].call_id == "next@x"
    assert not framer.broken


def test_missing_content_length_on_a_stream_breaks_it() -> None:
    framer = StreamFramer()
    out = framer.feed(invite(length=False) + invite())
    assert framer.broken and len(out) == 1
    failure = out[0]
    assert isinstance(failure, ParseFailure)
    assert failure.reason == "Bad Request - Missing Content-Length" and failure.is_request
    assert failure.headers is not None and failure.headers.get("Call-ID") == "abc@pbx"
    assert framer.feed(invite()) == []


def test_oversize_header_section_breaks_the_stream() -> None:
    framer = StreamFramer(max_size=1000)
    out = framer.feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"a" * 600)
    assert out == [] and not framer.broken
    out = framer.feed(b"a" * 600)
    assert framer.broken and isinstance(out[0], ParseFailure) and out[0].status == 513


def test_oversize_declared_body_breaks_the_stream() -> None:
    framer = StreamFramer(max_size=1000)
    out = framer.feed(invite().replace(b"Content-Length: 0", b"Content-Length: 5000"))
    assert framer.broken and isinstance(out[0], ParseFailure) and out[0].status == 513
    assert out[0].headers is not None and "Via" in out[0].headers


def test_crlf_keepalives_between_messages() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [] and framer.keepalive_pending()
    assert not framer.keepalive_pending()  # reported once
    out = framer.feed(b"\r\n" + invite() + b"\r\n")
    assert len(out) == 1 and not framer.keepalive_pending()
    assert framer.feed(b"\r\n") == [] and framer.keepalive_pending()  # split ping
    assert framer.feed(invite()) and not framer.broken


def test_the_end_of_the_header_section_is_the_first_empty_line_whatever_the_line_ends() -> None:
    """CRLF, bare LF (tolerated) and mixtures: every string of CR, LF and "a" up to 8 bytes, from
    every start, agrees with the grammar's CR? LF CR? LF as a regex finds it leftmost."""
    oracle = re.compile(rb"\r?\n\r?\n")
    for size in range(9):
        for chars in itertools.product(b"\r\na", repeat=size):
            data = bytes(chars)
            for start in range(size + 1):
                found = oracle.search(data, start)
                expected = None if found is None else (found.start(), found.end())
                assert _head_end(data, start) == expected, (data, start)
                assert _head_end(bytearray(data), start) == expected  # the stream framer's


def test_invented_header_names_leave_the_name_caches_bounded() -> None:
    """A source sending a new header name in every message (a flood, a fuzzer) cannot grow
    what the parser remembers about names; past the bound names are still read right."""
    from pbx.sip import headers as headers_module
    from pbx.sip import parser as parser_module

    for i in range(3000):
        message = parse_message(invite(f"X-Invented-{i} : value {i}\r\nx-INVENTED-{i}: again\r\n"))
        assert message.headers.fields(f"X-Invented-{i}") == [f"value {i}", "again"]
    assert len(headers_module._NAMES) <= headers_module._MAX_NAMES
    assert len(parser_module._FIELD_NAMES) <= parser_module._MAX_FIELD_NAMES
    # still checked past the bound: a name that is no token is refused, a token one is read
    with pytest.raises(ParseFailure, match="Malformed header field"):
        parse_message(invite("X Spaced-Name: value\r\n"))
    assert parse_message(invite("l: 0\r\n")).headers.get("Content-Length") == "0"


def test_the_usual_via_form_is_read_as_the_full_grammar_reads_it() -> None:
    """`_plain_via` skips the Via regex for the usual form; wherever it answers, it must find
    exactly the parts the regex finds (and where the regex finds none, must leave it to it)."""
    import random

    from pbx.sip.via import _VIA, _plain_via

    rng = random.Random(4475)
    pieces = ["SIP", "2.0", "UDP", "TLS", "/", " ", "\t", ";", ":", "[", "]", "=", '"', "\n",
              "host", "127.0.0.1", "5060", "branch", "z9hG4bK1", "rport", "[::1]", "a", "1",
              ]  # fmt: skip
    usual = ["SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport", "SIP/2.0/TCP host",
             "SIP/2.0/UDP h:;x", "SIP/2.0/UDP h:1:2", "sip/2.0/udp h", "SIP/2.0/UDP ho]st",
             ]  # fmt: skip

    def some(most: int) -> str:
        return "".join(rng.choices(pieces, k=rng.randint(0, most)))

    # Via-shaped texts (protocol, a space, sent-by, parameters) built from awkward pieces
    texts = usual + [f"{some(2)}/{some(2)}/{some(2)} {some(3)}{some(4)}" for _ in range(40000)]
    answered = 0
    for text in texts:
        fields = _plain_via(text)
        if fields is None:
            continue
        answered += 1
        match = _VIA.fullmatch(text)
        assert match is not None, text
        name, version, transport, host, port, params = match.groups()
        assert fields == (name, version, transport, host if port is None else f"{host}:{port}",
                          params), text  # fmt: skip
    assert answered > 1000  # the shortcut was exercised, not only the fallback
