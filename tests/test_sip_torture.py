"""RFC 4475 torture messages against the SIP syntax layer.

The messages are vendored byte-exact in tests/data/sip-torture (see PROVENANCE.txt there). Each one
must end as RFC 4475 says at this layer: valid ones parse with the right content, invalid ones raise
ParseFailure with the RFC's status and, for requests, with enough headers to answer; responses
that are invalid raise so the transport drops them. Statuses decided above the parser (416, 420,
415, 483...) are not this layer's business: those messages must simply parse.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pbx.sip.headers import Headers, canonical_name
from pbx.sip.message import CSeq, Request, Response
from pbx.sip.parser import MANDATORY_REQUEST_HEADERS, ParseFailure, StreamFramer, parse_message
from pbx.sip.uri import OtherUri, SipUri

DATA = Path(__file__).parent / "data" / "sip-torture"


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def parse(name: str) -> Request | Response:
    return parse_message(load(name), datagram=True)


def req(name: str) -> Request:
    message = parse(name)
    assert isinstance(message, Request)
    return message


def manifest() -> dict[str, dict[str, str]]:
    lines = (DATA / "MANIFEST.tsv").read_text("utf-8").splitlines()
    columns = lines[0].split("\t")
    return {
        row.split("\t")[0]: dict(zip(columns, row.split("\t"), strict=True))
        for row in lines[1:]
        if row
    }


# --- the vendored copy -------------------------------------------------------------------------


def test_vendored_files_match_their_checksums() -> None:
    sums = {}
    for line in (DATA / "SHA256SUMS").read_text("ascii").splitlines():
        digest, name = line.split()
        sums[name.lstrip("*")] = digest
    on_disk = {p.name for p in DATA.glob("*.dat")}
    assert on_disk == set(sums)
    assert len(on_disk) == 50  # 49 RFC 4475 messages + test.dat
    for name, digest in sums.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name


def test_manifest_lists_every_message() -> None:
    rows = manifest()
    assert set(rows) == {p.name for p in DATA.glob("*.dat")}
    assert sum(1 for r in rows.values() if r["rfc4475_section"] != "-") == 49


# --- what each message must do at the syntax layer ---------------------------------------------

# Messages that parse here. Those classified "parses (app layer)" get their final status from the
# layers above (see the module docstring); the syntax layer only has to hand them over intact.
PARSES = [
    # 3.1.1 valid
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    # 3.1.2.12: "may reject; a liberal element may ignore Date". We never read Date, so a caller
    # whose phone has a wrong time zone still reaches the helpline.
    "baddate",
    # 3.2.1 transaction layer
    "badbranch",
    # 3.3 application layer
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    # 3.4.1 backward compatibility
    "inv2543",
]

# name -> (status, words the reason must contain). Requests must carry their headers.
REFUSED: dict[str, tuple[int, str]] = {
    "badinv01": (400, "Empty parameter in Via"),
    "clerr": (400, "Content-Length larger than message"),
    "ncl": (400, "Invalid Content-Length"),
    "scalar02": (400, "CSeq out of range"),
    "quotbal": (400, "Unterminated quoted string"),
    "ltgtruri": (400, "Request-URI enclosed in <>"),
    "lwsruri": (400, "Malformed Request-Line"),
    "lwsstart": (400, "Malformed Request-Line"),
    "trws": (400, "Malformed Request-Line"),
    "escruri": (400, "Headers in Request-URI"),
    "regbadct": (400, "must be enclosed in <>"),
    "badaspec": (400, "Whitespace inside <URI>"),
    "baddn": (400, "Non-token characters in display name"),
    "badvers": (505, "Version Not Supported"),
    "mismatch01": (400, "CSeq method does not match"),
    "mismatch02": (501, "Not Implemented"),  # RFC 4475 3.1.2.18 prefers 501
    # 3.3.x whose RFC outcome is a 400 the syntax layer can give itself, with a specific reason:
    "insuf": (400, "Missing From, To, Call-ID"),
    "multi01": (400, "Multiple From headers"),
    "mcl01": (400, "Conflicting Content-Length"),
    # not from RFC 4475: no SIP-Version in the Request-Line
    "test": (400, "Malformed Request-Line"),
}

# Invalid responses: raising makes the transport drop them (RFC 4475 3.1.2.5, 3.1.2.19).
DROPPED_RESPONSES = {
    "scalarlg": "CSeq out of range",
    "bigcode": "Invalid status code",
}


def test_every_message_has_an_expectation() -> None:
    names = set(PARSES) | set(REFUSED) | set(DROPPED_RESPONSES)
    assert len(names) == len(PARSES) + len(REFUSED) + len(DROPPED_RESPONSES)
    assert {f"{n}.dat" for n in names} == set(manifest()) and len(names) == 50
    accepted_invalid = [n for n in PARSES if manifest()[f"{n}.dat"]["class"] == "invalid"]
    assert accepted_invalid == ["baddate"]  # the one "may reject" we choose to accept


@pytest.mark.parametrize("name", PARSES)
def test_message_parses(name: str) -> None:
    message = parse(name)
    assert isinstance(message, Response) == load(name).startswith(b"SIP/")


def _raw_header_names(data: bytes) -> set[str]:
    """Header names as a naive line scan sees them (independent of the parser's reader)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    names = set()
    for line in head.split("\r\n")[1:]:
        if line[:1] not in (" ", "\t") and ":" in line:
            names.add(canonical_name(line.split(":", 1)[0].strip()))
    return names


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_invalid_request_is_refused_with_the_rfc_status(name: str) -> None:
    status, words = REFUSED[name]
    with pytest.raises(ParseFailure) as info:
        parse(name)
    failure = info.value
    assert failure.status == status
    assert words in failure.reason
    assert failure.is_request
    assert failure.headers is not None
    present = _raw_header_names(load(name)) & set(MANDATORY_REQUEST_HEADERS)
    for header in present:
        assert failure.headers.fields(header), header
    if present == set(MANDATORY_REQUEST_HEADERS):
        # the transport can answer it statelessly: build that answer and check its start line
        answer = Headers()
        for header in MANDATORY_REQUEST_HEADERS:
            for value in failure.headers.fields(header):
                answer.add(header, value)
        reason = failure.reason if status == 400 else None
        wire = Response(status, reason, answer).to_bytes()
        assert wire.startswith(f"SIP/2.0 {status} ".encode())
        if status == 400:
            assert wire.split(b"\r\n", 1)[0] == f"SIP/2.0 400 {failure.reason}".encode()


def test_insuf_names_every_missing_header() -> None:
    with pytest.raises(ParseFailure) as info:
        parse("insuf")
    assert info.value.reason == "Bad Request - Missing From, To, Call-ID"


@pytest.mark.parametrize("name", sorted(DROPPED_RESPONSES))
def test_invalid_response_raises_so_it_is_dropped(name: str) -> None:
    with pytest.raises(ParseFailure) as info:
        parse(name)
    assert not info.value.is_request
    assert DROPPED_RESPONSES[name] in info.value.reason


@pytest.mark.parametrize("name", ["clerr", "ncl", "mcl01"])
def test_framing_errors_on_a_stream(name: str) -> None:
    framer = StreamFramer()
    out = framer.feed(load(name))
    if name == "clerr":
        # RFC 4475 3.1.2.2: on TCP, wait for the rest (the idle timeout closes the connection)
        assert out == [] and not framer.broken
    else:
        # 3.1.2.3 / 3.3.9: the framing is unrecoverable, the connection must close
        assert framer.broken and len(out) == 1 and isinstance(out[0], ParseFailure)
        assert out[0].status == 400 and "Content-Length" in out[0].reason
        assert out[0].is_request and out[0].headers is not None and "Via" in out[0].headers
        assert framer.feed(b"OPTIONS sip:x SIP/2.0\r\n\r\n") == []


@pytest.mark.parametrize("name", [n for n in PARSES if n not in ("inv2543",)])
def test_stream_framing_gives_the_same_message(name: str) -> None:
    data = load(name)
    one_shot = parse_message(data, datagram=True)
    out = StreamFramer().feed(data)
    assert out and out[0] == one_shot


def test_dblreq_on_a_stream_is_two_requests() -> None:
    out = StreamFramer().feed(load("dblreq"))
    assert [m.method for m in out if isinstance(m, Request)] == ["REGISTER", "INVITE"]


def test_inv2543_without_content_length_breaks_a_stream() -> None:
    framer = StreamFramer()
    out = framer.feed(load("inv2543"))
    assert framer.broken and isinstance(out[0], ParseFailure)
    assert out[0].reason == "Bad Request - Missing Content-Length"
    assert out[0].headers is not None and out[0].headers.get("Call-ID")


# --- content of the valid messages --------------------------------------------------------------


def test_wsinv_short_tortuous_invite() -> None:
    m = req("wsinv")
    assert m.method == "INVITE"
    assert isinstance(m.uri, SipUri)
    assert m.uri.user == "vivekg" and m.uri.params == {"unknownparam": None}
    assert m.to.uri == SipUri(host="chair-dnrc.example.com", user="vivekg")
    assert m.to.tag == "1918181833n"
    assert m.from_.display == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert m.max_forwards == 68  # "0068"
    assert m.cseq == CSeq(9, "INVITE")  # "0009\r\n  INVITE", folded
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    # compact forms mapped, case-insensitive names canonical, unknown headers preserved
    names = [n for n, _ in m.headers]
    for expected in ("To", "From", "Max-Forwards", "CSeq", "Via", "Subject", "Contact", "Route"):
        assert expected in names
    assert m.headers.get("s") == "" and m.headers.get("SUBJECT") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("unknownheaderwithunusualvalue") == ";;,,;;,;"
    (contact,) = m.contacts
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    (route,) = m.routes
    assert isinstance(route.uri, SipUri)
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert m.content_type == "application/sdp" and len(m.body) == 150


def test_intmeth_wide_range_of_valid_characters() -> None:
    m = req("intmeth")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert isinstance(m.uri, SipUri)
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.uri.host == "example.com" and m.uri.params == {} and m.uri.headers is None
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert isinstance(m.to.uri, SipUri) and m.to.uri.user == m.uri.user
    assert m.from_.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_.params["fromparam''~+*_!.-%"] == "работающий"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.cseq == CSeq(139122385, m.method)
    assert m.max_forwards == 255
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01_escapes_in_uris() -> None:
    m = req("esc01")
    assert isinstance(m.uri, SipUri)
    assert m.uri.user == "sips%3Auser%40example.com"
    assert m.uri.user_unescaped == "sips:user@example.com"
    assert m.uri.host == "example.net"
    assert isinstance(m.to.uri, SipUri) and m.to.uri.user_unescaped == "user"
    assert isinstance(m.from_.uri, SipUri) and m.from_.uri.user_unescaped == "I have spaces"
    (contact,) = m.contacts
    assert isinstance(contact.uri, SipUri) and contact.uri.user_unescaped == "caller"
    # unescaping is not recursive: value%41 is not valueA (RFC 4475 3.1.1.3)
    assert contact.uri.params == {"lr": None, "name": "value%41"}
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert m.content_type == "application/sdp"


def test_escnull_escaped_nulls() -> None:
    m = req("escnull")
    for address in (m.from_, m.to):
        assert isinstance(address.uri, SipUri)
        assert address.uri.user_unescaped == "null-\x00-null"
    users = [c.uri.user_unescaped for c in m.contacts if isinstance(c.uri, SipUri)]
    assert users == ["\x00", "\x00\x00"]


def test_esc02_percent_that_is_not_an_escape() -> None:
    m = req("esc02")
    assert m.method == "RE%47IST%45R"  # not REGISTER
    assert m.to.display == "%Z%45" and m.from_.display == "%Z%45"
    assert len(m.contacts) == 2  # C%6Fntact is another header
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"


def test_lwsdisp_no_space_before_angle() -> None:
    assert req("lwsdisp").from_.display == "caller"


def test_longreq_long_values() -> None:
    m = req("longreq")
    assert m.to.display is not None and m.to.display.startswith("I have a user name of extreme")
    assert isinstance(m.to.uri, SipUri) and m.to.uri.port == 6000 and len(m.to.uri.params) == 3
    assert m.from_.tag is not None and len(m.from_.tag) > 100
    assert len(m.vias) == 34
    assert len(m.body) == 150


def test_dblreq_trailing_octets_ignored() -> None:
    m = req("dblreq")
    assert m.method == "REGISTER" and m.body == b""
    assert str(m.contacts[0].uri) == "sip:j.user@host.example.com"


def test_semiuri_user_with_semicolon() -> None:
    m = req("semiuri")
    assert isinstance(m.uri, SipUri)
    assert m.uri.user == "user;par=u%40example.net" and m.uri.host == "example.com"
    assert m.uri.params == {}
    assert len(m.headers.values("Accept")) == 6


def test_transports_unknown_transports() -> None:
    m = req("transports")
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_multipart_body_intact() -> None:
    data = load("mpart01")
    m = req("mpart01")
    assert m.content_type == "multipart/mixed"
    assert len(m.body) == 553 and m.body == data[-553:]
    assert m.body.startswith(b"--7a9cbec02ceef655\r\n")
    assert m.body.endswith(b"--7a9cbec02ceef655--\r\n")


def test_unreason_and_noreason() -> None:
    r = parse("unreason")
    assert isinstance(r, Response) and r.status == 200
    assert r.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    r = parse("noreason")
    assert isinstance(r, Response) and r.status == 100 and r.reason == ""


def test_badbranch_bare_magic_cookie() -> None:
    assert req("badbranch").top_via.branch == "z9hG4bK"


def test_unknown_schemes_kept_verbatim() -> None:
    assert req("unkscm").uri == OtherUri(
        "nobodyknowsthisscheme", "nobodyKnowsThisScheme:totallyopaquecontent"
    )
    assert req("novelsc").uri == OtherUri("soap.beep", "soap.beep://192.0.2.103:3002")
    m = req("unksm2")
    assert m.to.uri == OtherUri("isbn", "isbn:2983792873")
    assert m.from_.uri == OtherUri("http", "http://www.example.com")
    assert m.contacts[0].uri == OtherUri("name", "name:John_Smith")


def test_app_layer_material_is_intact() -> None:
    m = req("bext01")
    assert m.headers.values("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert m.headers.values("Proxy-Require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]
    m = req("invut")
    assert m.content_type == "application/unknownformat" and len(m.body) == 40
    assert req("regaut01").headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    bcast = parse("bcast")
    assert isinstance(bcast, Response) and bcast.vias[1].host == "255.255.255.255"
    assert req("zeromf").max_forwards == 0
    assert req("sdp01").headers.values("Accept") == ["text/nobodyKnowsThis"]
    assert req("baddate").headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_cparam_contact_params_versus_uri_params() -> None:
    (c1,) = req("cparam01").contacts  # addr-spec: ;unknownparam belongs to the header
    assert c1.params == {"unknownparam": None}
    assert isinstance(c1.uri, SipUri) and c1.uri.params == {}
    (c2,) = req("cparam02").contacts  # name-addr: ;unknownparam is inside the URI
    assert c2.params == {}
    assert isinstance(c2.uri, SipUri) and c2.uri.params == {"unknownparam": None}


def test_regescrt_escaped_header_kept_in_contact() -> None:
    (contact,) = req("regescrt").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.headers == "Route=%3Csip:sip.example.com%3E"
    assert str(contact) == "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"


def test_inv2543_rfc2543_syntax() -> None:
    m = req("inv2543")
    assert m.top_via.branch is None and m.from_.tag is None
    assert "Content-Length" not in m.headers and "Max-Forwards" not in m.headers
    assert m.max_forwards == 70
    assert m.body.startswith(b"v=0\r\n")
    (rr,) = m.record_routes
    assert isinstance(rr.uri, SipUri) and rr.uri.params == {"maddr": "ss1.example.com"}


@pytest.mark.parametrize("name", PARSES)
def test_round_trip_reparses_to_the_same_structure(name: str) -> None:
    message = parse(name)
    again = parse_message(message.to_bytes(), datagram=False)
    assert again == message
    assert list(again.headers) == list(message.headers)
