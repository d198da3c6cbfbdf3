"""Turning bytes into SIP messages: datagrams (UDP) and Content-Length framing on streams (TCP/TLS).

parse_message() validates everything a transaction or the core relies on, so that later layers can
use the typed accessors without re-checking. Errors are SipParseError with a reason phrase fit for a
400 response; `error.headers` carries what could be read so the transport can still answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pbx.sip.address import parse_address
from pbx.sip.errors import SipParseError
from pbx.sip.grammar import WS, is_token
from pbx.sip.headers import Headers
from pbx.sip.message import Message, Request, Response, parse_cseq
from pbx.sip.uri import parse_uri
from pbx.sip.via import parse_via

MAX_MESSAGE_SIZE = 64 * 1024  # bytes; larger UDP datagrams or stream messages are refused (513)
MAX_HEADERS = 200
MANDATORY_REQUEST_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")


class ParseFailure(SipParseError):
    """A SipParseError that knows whether the bytes were a request and which headers were read."""

    def __init__(self, reason: str, status: int, is_request: bool, headers: Headers | None) -> None:
        super().__init__(reason, status)
        self.is_request = is_request
        self.headers = headers


def parse_message(data: bytes, *, datagram: bool = True) -> Message:
    """Parse one complete message. With datagram=True a missing Content-Length means 'the rest'."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise ParseFailure("Message Too Large", 513, not data.startswith(b"SIP/"), None)
    data = data.lstrip(b"\r\n")
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, rest = data.partition(b"\n\n")  # tolerate bare-LF peers
    text = head.decode("utf-8", "surrogateescape")
    lines = text.replace("\r\n", "\n").split("\n")
    is_request = not lines[0].startswith("SIP/")
    headers: Headers | None = None
    try:
        if not sep:
            raise SipParseError("Bad Request - Incomplete header section")
        headers = _parse_headers(lines[1:])
        body = _body(headers, rest, datagram)
        if is_request:
            return _request(lines[0], headers, body)
        return _response(lines[0], headers, body)
    except ParseFailure:
        raise
    except SipParseError as exc:
        raise ParseFailure(exc.reason, exc.status, is_request, headers) from None


def _parse_headers(lines: list[str]) -> Headers:
    unfolded: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not unfolded:
                raise SipParseError("Bad Request - Continuation line without header")
            unfolded[-1] += " " + line.strip(WS)
        elif line:
            unfolded.append(line)
    if len(unfolded) > MAX_HEADERS:
        raise SipParseError("Bad Request - Too many header fields")
    headers = Headers()
    for line in unfolded:
        name, colon, value = line.partition(":")
        name = name.rstrip(WS)
        if not colon or not is_token(name):
            raise SipParseError("Bad Request - Malformed header field")
        headers.add(name, value.strip(WS))
    return headers


def _body(headers: Headers, rest: bytes, datagram: bool) -> bytes:
    lengths = headers.fields("Content-Length")
    if not lengths:
        if datagram:
            return rest
        raise SipParseError("Bad Request - Missing Content-Length")
    if len(set(lengths)) > 1:
        raise SipParseError("Bad Request - Conflicting Content-Length")
    raw = lengths[0].strip(WS)
    if not raw.isdigit() or len(raw) > 9:
        raise SipParseError("Bad Request - Invalid Content-Length")
    length = int(raw)
    if length > len(rest):
        raise SipParseError("Bad Request - Content-Length larger than message")
    return rest[:length]  # trailing bytes of a datagram are ignored (RFC 3261 section 18.3)


def _check_version(version: str) -> None:
    if version.upper() != "SIP/2.0":
        raise SipParseError("Version Not Supported", status=505)


def _request(start: str, headers: Headers, body: bytes) -> Request:
    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("Bad Request - Malformed Request-Line")
    method, raw_uri, version = parts
    if not is_token(method):
        raise SipParseError("Bad Request - Malformed method")
    _check_version(version)
    uri = parse_uri(raw_uri)
    for name in MANDATORY_REQUEST_HEADERS:
        if name not in headers:
            raise SipParseError(f"Bad Request - Missing {name}")
    _check_common(headers)
    cseq = parse_cseq(headers.get("CSeq") or "")
    if cseq.method != method:
        status = 400 if is_token(cseq.method) and method in _KNOWN else 501
        raise SipParseError("Bad Request - CSeq method does not match Request-Line", status)
    mf = headers.get("Max-Forwards")
    if mf is not None and (not mf.strip().isdigit() or len(mf.strip()) > 10):
        raise SipParseError("Bad Request - Invalid Max-Forwards")
    return Request(method, uri, headers, body, version=version, raw_uri=raw_uri)


_KNOWN = frozenset(
    (
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "UPDATE",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    )
)


def _response(start: str, headers: Headers, body: bytes) -> Response:
    version, _, rest = start.partition(" ")
    code, _, reason = rest.partition(" ")
    _check_version(version)
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
        raise SipParseError("Bad Response - Invalid status code")
    for name in MANDATORY_REQUEST_HEADERS:
        if name not in headers:
            raise SipParseError(f"Bad Response - Missing {name}")
    _check_common(headers)
    parse_cseq(headers.get("CSeq") or "")
    return Response(int(code), reason, headers, body, version=version)


def _check_common(headers: Headers) -> None:
    vias = headers.values("Via")
    if not vias:
        raise SipParseError("Bad Request - Missing Via")
    for v in vias:
        parse_via(v)
    for name in ("From", "To"):
        fields = headers.fields(name)
        if len(fields) != 1:
            raise SipParseError(f"Bad Request - Multiple {name} headers")
        parse_address(fields[0])
    if len(headers.fields("Call-ID")) != 1 or not (headers.get("Call-ID") or "").strip():
        raise SipParseError("Bad Request - Invalid Call-ID")
    if len(headers.fields("CSeq")) != 1:
        raise SipParseError("Bad Request - Multiple CSeq headers")
    for value in headers.values("Contact"):
        parse_address(value)


@dataclass
class StreamFramer:
    """Splits a TCP/TLS byte stream into messages by Content-Length (RFC 3261 section 18.3).

    feed() returns parsed messages and parse failures in order. After a framing error the stream
    can no longer be trusted: `broken` is set and the connection must be closed.
    """

    max_size: int = MAX_MESSAGE_SIZE
    _buffer: bytearray = field(default_factory=bytearray)
    broken: bool = False

    def feed(self, data: bytes) -> list[Message | ParseFailure]:
        if self.broken:
            return []
        self._buffer += data
        out: list[Message | ParseFailure] = []
        while True:
            # CRLF keepalives (RFC 5626 section 3.5.1) between messages
            while self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self.max_size:
                    out.append(ParseFailure("Message Too Large", 513, True, None))
                    self.broken = True
                return out
            head = bytes(self._buffer[:end])
            length = _stream_content_length(head)
            if length is None or end + 4 + length > self.max_size:
                reason = "Bad Request - Missing or invalid Content-Length"
                status = 400
                if length is not None:
                    reason, status = "Message Too Large", 513
                try:
                    parse_message(head + b"\r\n\r\n", datagram=False)
                except ParseFailure as exc:
                    out.append(ParseFailure(reason, status, exc.is_request, exc.headers))
                else:
                    out.append(ParseFailure(reason, status, True, None))
                self.broken = True
                return out
            total = end + 4 + length
            if len(self._buffer) < total:
                return out
            chunk = bytes(self._buffer[:total])
            del self._buffer[:total]
            try:
                out.append(parse_message(chunk, datagram=False))
            except ParseFailure as exc:
                out.append(exc)

    def keepalive_pending(self) -> bool:
        return False


def _stream_content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            raw = value.strip()
            if raw.isdigit() and len(raw) <= 9:
                return int(raw)
            return None
    return None
