"""Property tests of the SIP syntax layer against hostile and generated input.

Derandomized and bounded so CI sees the same few hundred examples per property every run.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.sip.address import Address, parse_address
from pbx.sip.headers import Headers
from pbx.sip.message import Message, Request, Response
from pbx.sip.parser import ParseFailure, StreamFramer, parse_message
from pbx.sip.uri import SipUri, parse_uri
from pbx.sip.via import Via, parse_via

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=150)

TORTURE = sorted((Path(__file__).parent / "data" / "sip-torture").glob("*.dat"))
SEEDS = [p.read_bytes() for p in TORTURE]


def parse_or_fail(data: bytes, datagram: bool) -> Message | ParseFailure:
    """parse_message, where anything raised other than ParseFailure fails the test."""
    try:
        return parse_message(data, datagram=datagram)
    except ParseFailure as failure:
        assert failure.status in (400, 501, 505, 513)
        assert failure.reason and "\r" not in failure.reason and "\n" not in failure.reason
        return failure


# --- hostile bytes ------------------------------------------------------------------------------

SIPPY = st.sampled_from(
    [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"=", b'"', b"\\", b"<", b">", b"["]
    + [b"]", b"@", b"%", b"%0", b"%00", b"/", b"?", b"*", b"\x00", b"\xff", b"\xc3", b"0" * 50]
    + [b"9" * 5000, b"SIP/2.0", b"sip:", b"Via: ", b"l: ", b"Content-Length: 99", b"\r\n\r\n"]
    + [b"\r\n ", b"[::1]", b"<sip:a@b>", b"Contact: *\r\n", "１".encode(), "²".encode()]
)


@pytest.mark.timeout(60)
@FUZZ
@given(data=st.binary(max_size=600), datagram=st.booleans())
def test_arbitrary_bytes_raise_only_parse_failure(data: bytes, datagram: bool) -> None:
    parse_or_fail(data, datagram)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "flip", "duplicate"]))
        if kind == "insert":
            data[at:at] = draw(SIPPY)
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        elif kind == "replace":
            data[at : at + draw(st.integers(1, 8))] = draw(SIPPY)
        elif kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 80))]
    return bytes(data)


@pytest.mark.timeout(60)
@FUZZ
@given(data=mutated(), datagram=st.booleans())
def test_mutated_torture_messages_raise_only_parse_failure(data: bytes, datagram: bool) -> None:
    result = parse_or_fail(data, datagram)
    if not isinstance(result, ParseFailure):
        # whatever parsed must be usable through the typed accessors without surprises
        result.vias, result.from_, result.to, result.cseq, result.contacts  # noqa: B018
        result.routes, result.record_routes  # noqa: B018
        if isinstance(result, Request):
            assert 0 <= result.max_forwards <= 255
        parse_message(result.to_bytes(), datagram=False)


@pytest.mark.timeout(60)
@FEW
@given(data=mutated(), cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_framer_never_raises_on_mutated_streams(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer()
    points = sorted({c % (len(data) + 1) for c in cuts})
    for start, end in zip([0, *points], [*points, len(data)], strict=True):
        for item in framer.feed(data[start:end]):
            assert isinstance(item, Request | Response | ParseFailure)


# --- generated values round-trip ----------------------------------------------------------------

TOKEN = st.text(string.ascii_letters + string.digits + "-.!%*_+`'~", min_size=1, max_size=12)
LOWER_TOKEN = TOKEN.map(str.lower)
LABEL = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
HOSTNAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
HOST = st.one_of(HOSTNAME, IPV4, IPV6)
PORT = st.none() | st.integers(1, 65535)
ESCAPED = st.integers(0, 255).map(lambda b: f"%{b:02X}")
USER = st.lists(
    st.sampled_from(list(string.ascii_letters + string.digits + "-_.!~*'()&=+$,;?/")) | ESCAPED,
    min_size=1,
    max_size=15,
).map("".join)
# decoded parameter text: anything printable (escaped on the wire by SipUri.__str__)
PARAM_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=12)
URI_PARAM_NAME = st.text(string.ascii_lowercase + "-", min_size=1, max_size=8)
URI_PARAMS = st.dictionaries(URI_PARAM_NAME, st.none() | PARAM_TEXT, max_size=4)
HEADERS_PART = st.none() | st.lists(
    st.tuples(TOKEN, st.text(string.ascii_letters + string.digits, max_size=6)),
    min_size=1,
    max_size=3,
).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    user = draw(st.none() | USER)
    return SipUri(
        host=draw(HOST),
        user=user,
        password=draw(st.none() | st.text(string.ascii_letters + "&=+$,", max_size=6))
        if user
        else None,
        port=draw(PORT),
        scheme=draw(st.sampled_from(["sip", "sips"])),
        params=draw(URI_PARAMS),
        headers=draw(HEADERS_PART),
    )


@FUZZ
@given(uri=sip_uris())
def test_generated_uris_round_trip(uri: SipUri) -> None:
    assert parse_uri(str(uri)) == uri


NO_CRLF = st.characters(codec="utf-8", exclude_characters="\r\n")  # CR/LF cannot be quoted
DISPLAY = st.none() | st.text(NO_CRLF, max_size=20)
QUOTABLE = st.text(NO_CRLF)
HEADER_PARAMS = st.dictionaries(LOWER_TOKEN, st.none() | TOKEN | QUOTABLE, max_size=4)


@FUZZ
@given(uri=sip_uris(), display=DISPLAY, params=HEADER_PARAMS)
def test_generated_addresses_round_trip(
    uri: SipUri, display: str | None, params: dict[str, str | None]
) -> None:
    address = Address(uri=uri, display=display, params=params)
    assert parse_address(str(address)) == address


@FUZZ
@given(
    transport=TOKEN.map(str.upper),
    host=HOST,
    port=PORT,
    params=HEADER_PARAMS,
    received=st.none() | IPV4 | st.ip_addresses(v=6).map(str),
    rport=st.none() | st.integers(1, 65535).map(str),
)
def test_generated_vias_round_trip(
    transport: str,
    host: str,
    port: int | None,
    params: dict[str, str | None],
    received: str | None,
    rport: str | None,
) -> None:
    params = {k: v for k, v in params.items() if k not in ("received", "rport")}
    if received is not None:
        params["received"] = received
    if rport is not None:
        params["rport"] = rport
    via = Via(transport=transport, host=host, port=port, params=params)
    assert parse_via(str(via)) == via


# --- generated messages: framing equals one-shot parsing ----------------------------------------

_RESERVED = {
    "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "contact", "m", "route",
    "record-route", "max-forwards", "content-length", "l",
}  # fmt: skip
HEADER_VALUE = st.text(
    st.characters(codec="utf-8", min_codepoint=0x20, max_codepoint=0x2FF), max_size=30
).map(lambda v: v.strip(" \t"))
EXTRA_HEADERS = st.lists(
    st.tuples(TOKEN.filter(lambda t: t.lower() not in _RESERVED), HEADER_VALUE), max_size=4
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    headers = Headers()
    headers.add("Via", f"SIP/2.0/TCP 127.0.0.2:{draw(PORT) or 5060};branch=z9hG4bK{draw(TOKEN)}")
    headers.add("From", str(Address(draw(sip_uris()), draw(DISPLAY), {"tag": draw(TOKEN)})))
    headers.add("To", str(Address(draw(sip_uris()))))
    headers.add("Call-ID", draw(TOKEN) + "@" + draw(HOSTNAME))
    method = draw(st.sampled_from(["INVITE", "BYE", "OPTIONS", "REGISTER", "FOO"]))
    headers.add("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}")
    for name, value in draw(EXTRA_HEADERS):
        headers.add(name, value)
    body = draw(st.binary(max_size=200))
    message: Message
    if draw(st.booleans()):
        headers.add("Max-Forwards", str(draw(st.integers(0, 255))))
        message = Request(method, draw(sip_uris()).with_(headers=None), headers, body)
    else:
        message = Response(draw(st.integers(100, 699)), draw(HEADER_VALUE), headers, body)
    return message


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=100)
@given(batch=st.lists(messages(), min_size=1, max_size=4), data=st.data())
def test_framer_on_random_chunkings_equals_one_shot(
    batch: list[Message], data: st.DataObject
) -> None:
    wires = [m.to_bytes() for m in batch]
    expected = [parse_message(w, datagram=False) for w in wires]
    assert expected == batch  # generated messages survive serialization
    stream = b"".join(wires)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=12))))
    framer = StreamFramer()
    out: list[object] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += framer.feed(stream[start:end])
    assert out == expected and not framer.broken
