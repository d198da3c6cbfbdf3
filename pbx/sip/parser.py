"""Turning bytes into SIP messages: datagrams (UDP) and Content-Length framing on streams (TCP/TLS).

parse_message() validates everything a transaction or the core relies on, so that later layers can
use the typed accessors without re-checking. Errors are ParseFailure with a reason phrase fit for a
400 response; `error.headers` carries what could be read so the transport can still answer.
Whatever the bytes, nothing but ParseFailure leaves parse_message() or StreamFramer.feed().
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pbx.sip.address import parse_address
from pbx.sip.errors import SipParseError
from pbx.sip.grammar import WS, is_digits, is_token, parse_uint
from pbx.sip.headers import Headers, split_list
from pbx.sip.message import CSeq, Message, Request, Response, parse_cseq
from pbx.sip.uri import SipUri, parse_uri
from pbx.sip.via import parse_via

MAX_MESSAGE_SIZE = 64 * 1024  # bytes; larger UDP datagrams or stream messages are refused (513)
MAX_HEADERS = 200
MANDATORY_REQUEST_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")
_MAX_CONTENT_LENGTH = 2**31 - 1
_MANDATORY_KEYS = tuple((name, name.lower()) for name in MANDATORY_REQUEST_HEADERS)
_FIELD_NAMES: set[str] = set()  # header field names known to be tokens (_is_field_name)
_MAX_FIELD_NAMES = 1024
# Headers whose values the core reads through typed accessors, so they are checked here once.
_ADDRESS_LIST_HEADERS = ("Contact", "Route", "Record-Route")

KNOWN_METHODS = frozenset(
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


class ParseFailure(SipParseError):
    """A SipParseError that knows whether the bytes were a request and which headers were read."""

    def __init__(self, reason: str, status: int, is_request: bool, headers: Headers | None) -> None:
        super().__init__(reason, status)
        self.is_request = is_request
        self.headers = headers


def is_keepalive(data: bytes) -> bool:
    """A CRLF keepalive (RFC 5626 section 3.5.1) rather than a message: only CR/LF octets."""
    return not data.strip(b"\r\n")


def _head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
    """Where the empty line that ends the header section starts and ends: the leftmost match of
    CR? LF CR? LF from ``start`` (bare LF is tolerated wherever CRLF is expected). Two
    bytes.find calls instead of a regex search, which costs ten times as much on a message."""
    crlf = data.find(b"\n\r\n", start)
    lf = data.find(b"\n\n", start)
    if crlf < 0 and lf < 0:
        return None
    at, end = (crlf, crlf + 3) if lf < 0 or 0 <= crlf < lf else (lf, lf + 2)
    return (at - 1 if at > start and data[at - 1] == 13 else at), end  # 13: CR


def parse_message(data: bytes, *, datagram: bool = True) -> Message:
    """Parse one complete message. With datagram=True a missing Content-Length means 'the rest'."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise ParseFailure("Message Too Large", 513, not data.startswith(b"SIP/"), None)
    data = data.lstrip(b"\r\n")
    is_request = not data.startswith(b"SIP/")
    headers: Headers | None = None
    try:
        end = _head_end(data)
        if end is not None:
            head, rest = data[: end[0]], data[end[1] :]
        elif datagram and data.endswith(b"\n"):
            # the datagram's end also ends the header section (tolerated: RFC 4475 3.1.2.15's
            # archived copy lacks the final empty line, and nothing else could follow anyway)
            head, rest = data[:-2] if data.endswith(b"\r\n") else data[:-1], b""
        else:
            raise SipParseError("Bad Request - Incomplete header section")
        text = head.decode("utf-8", "surrogateescape")
        if text.count("\n") == text.count("\r\n") and not text.endswith("\r"):
            lines = text.split("\r\n")  # CRLF throughout: the same lines, in one C call
        else:
            lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
        # headers first, so that a 400 for a bad start line can still be answered
        headers, header_error = _parse_headers(lines[1:], "\n " in text or "\n\t" in text)
        if is_request:
            method, raw_uri, version = _request_line(lines[0])
        else:
            version, code, reason = _status_line(lines[0])
        if header_error is not None:
            raise header_error
        body = _body(headers, rest, datagram)
        if is_request:
            return _request(method, raw_uri, version, headers, body)
        return _response(version, code, reason, headers, body)
    except SipParseError as exc:
        raise ParseFailure(exc.reason, exc.status, is_request, headers) from None


def _request_line(start: str) -> tuple[str, str, str]:
    # Request-Line = Method SP Request-URI SP SIP-Version: exactly single spaces, no trailing
    # whitespace (RFC 4475 3.1.2.8-3.1.2.10 may be rejected; we do, so nothing is forwarded).
    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("Bad Request - Malformed Request-Line")
    method, raw_uri, version = parts
    if not is_token(method):
        raise SipParseError("Bad Request - Malformed method")
    _check_version(version)
    return method, raw_uri, version


def _status_line(start: str) -> tuple[str, int, str]:
    version, _, rest = start.partition(" ")
    code, _, reason = rest.partition(" ")
    _check_version(version)
    if len(code) != 3 or not is_digits(code) or not 100 <= int(code) <= 699:
        raise SipParseError("Bad Response - Invalid status code")
    if "\r" in reason:
        raise SipParseError("Bad Response - Malformed reason phrase")
    return version, int(code), reason


def _check_version(version: str) -> None:
    if version.upper() != "SIP/2.0":
        raise SipParseError("Version Not Supported", status=505)


def _parse_headers(lines: list[str], folded: bool) -> tuple[Headers, SipParseError | None]:
    """All well-formed header fields, and the first problem met (reading goes on past it, so a
    400 can still be built from the fields that were fine). ``folded``: some line continues
    the one before (starts with SP or HTAB)."""
    headers = Headers()
    error: SipParseError | None = None
    if folded or "" in lines:
        error, lines = _unfold(lines)
    if len(lines) > MAX_HEADERS:
        return headers, SipParseError("Bad Request - Too many header fields")
    for line in lines:
        # field-name HCOLON value (RFC 3261 section 25.1): a token, optional SP/HTAB, the colon;
        # the name ends at the first colon, which no token has
        name, colon, value = line.partition(":")
        name = name.rstrip(WS)
        if not colon or not _is_field_name(name):
            error = error or SipParseError("Bad Request - Malformed header field")
            continue
        if "\r" in value:
            error = error or SipParseError("Bad Request - Bare CR in header field")
            continue
        headers._add_parsed(name, value.strip(WS))
    return headers, error


def _is_field_name(name: str) -> bool:
    """A token (RFC 3261 section 25.1). The names seen are remembered, up to a bound: a call's
    messages carry the same dozen, and a regex match per header line cost more than the rest
    of reading it."""
    if name in _FIELD_NAMES:
        return True
    if not is_token(name):
        return False
    if len(_FIELD_NAMES) < _MAX_FIELD_NAMES:  # a source inventing names cannot grow it further
        _FIELD_NAMES.add(name)
    return True


def _unfold(lines: list[str]) -> tuple[SipParseError | None, list[str]]:
    """The header fields with their continuation lines joined (the line break becomes one
    space), and the first problem met: a continuation with nothing before it, an empty line."""
    error: SipParseError | None = None
    fields: list[list[str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not fields:
                error = error or SipParseError("Bad Request - Continuation line without header")
                continue
            fields[-1].append(line.strip(WS))
        elif line:
            fields.append([line])
        else:
            error = error or SipParseError("Bad Request - Empty line in header section")
    return error, [" ".join(parts) for parts in fields]


def _body(headers: Headers, rest: bytes, datagram: bool) -> bytes:
    lengths = headers.fields("Content-Length")
    if not lengths:
        if datagram:
            return rest
        raise SipParseError("Bad Request - Missing Content-Length")
    if len({v.lstrip("0") for v in lengths}) > 1:
        raise SipParseError("Bad Request - Conflicting Content-Length")  # RFC 4475 3.3.9
    length = parse_uint(lengths[0], _MAX_CONTENT_LENGTH)
    if length is None:
        raise SipParseError("Bad Request - Invalid Content-Length")  # e.g. negative, 4475 3.1.2.3
    if length > len(rest):
        raise SipParseError("Bad Request - Content-Length larger than message")
    return rest[:length]  # trailing bytes of a datagram are ignored (RFC 3261 section 18.3)


def _request(method: str, raw_uri: str, version: str, headers: Headers, body: bytes) -> Request:
    if raw_uri.startswith("<"):
        raise SipParseError("Bad Request - Request-URI enclosed in <>")  # RFC 4475 3.1.2.7
    uri = parse_uri(raw_uri)
    if isinstance(uri, SipUri) and uri.headers is not None:
        # RFC 3261 section 19.1.1: headers are not allowed in a Request-URI (RFC 4475 3.1.2.11)
        raise SipParseError("Bad Request - Headers in Request-URI")
    index = headers._index()
    cseq = _check_common(index, "Bad Request")
    if cseq.method != method:
        # RFC 4475 3.1.2.17/3.1.2.18: 400, but 501 when the method itself is unknown
        if method in KNOWN_METHODS:
            raise SipParseError("Bad Request - CSeq method does not match Request-Line")
        raise SipParseError("Not Implemented", 501)
    max_forwards = index.get("max-forwards", ())
    if len(max_forwards) > 1:
        raise SipParseError("Bad Request - Multiple Max-Forwards headers")
    if max_forwards and not is_digits(max_forwards[0]):
        raise SipParseError("Bad Request - Invalid Max-Forwards")
    return Request(method, uri, headers, body, version=version, raw_uri=raw_uri)


def _response(version: str, code: int, reason: str, headers: Headers, body: bytes) -> Response:
    _check_common(headers._index(), "Bad Response")
    return Response(code, reason, headers, body, version=version)


def _check_common(index: dict[str, list[str]], kind: str) -> CSeq:
    """Checks of what every request and response must have; returns the CSeq."""
    missing = [name for name, key in _MANDATORY_KEYS if key not in index]
    if missing:
        raise SipParseError(f"{kind} - Missing {', '.join(missing)}")
    for name in ("From", "To", "Call-ID", "CSeq"):
        if len(index[name.lower()]) != 1:
            raise SipParseError(f"{kind} - Multiple {name} headers")  # RFC 4475 3.3.8
    vias = split_list(index["via"])
    if not vias:
        raise SipParseError(f"{kind} - Missing Via")
    for v in vias:
        parse_via(v)
    for name in ("From", "To"):
        if parse_address(index[name.lower()][0]).wildcard:
            raise SipParseError(f"{kind} - Malformed {name}")
    call_id = index["call-id"][0]
    if not call_id or " " in call_id or "\t" in call_id:
        raise SipParseError(f"{kind} - Invalid Call-ID")
    for name in _ADDRESS_LIST_HEADERS:
        values = split_list(index.get(name.lower(), ()))
        for value in values:
            address = parse_address(value)
            if address.wildcard and (name != "Contact" or len(values) > 1):
                raise SipParseError(f"{kind} - Malformed {name}")
    return parse_cseq(index["cseq"][0])


@dataclass
class StreamFramer:
    """Splits a TCP/TLS byte stream into messages by Content-Length (RFC 3261 section 18.3).

    feed() returns parsed messages and parse failures in order. After a framing error the stream
    can no longer be trusted: `broken` is set and the connection must be closed. Work per byte
    fed is bounded: the search for the end of a header section resumes where it stopped.
    """

    max_size: int = MAX_MESSAGE_SIZE
    _buffer: bytearray = field(default_factory=bytearray)
    broken: bool = False
    # Set by __post_init__, not by field defaults: mypyc's dataclasses (pbx/native.py) leave
    # a default of an init=False field unset.
    _scan_from: int = field(init=False, repr=False)  # empty-line search resumes here
    _newlines: int = field(init=False, repr=False)  # LFs between messages (pings)
    _pings: int = field(init=False, repr=False)
    _frame_end: int | None = field(init=False, repr=False)  # of the awaited message

    def __post_init__(self) -> None:
        self._scan_from = self._newlines = self._pings = 0
        self._frame_end = None

    def feed(self, data: bytes) -> list[Message | ParseFailure]:
        if self.broken:
            return []
        buf = self._buffer
        buf += data
        out: list[Message | ParseFailure] = []
        pos = 0  # start of the first unconsumed message in buf
        try:
            while pos < len(buf):
                total = self._frame_end
                if total is None:
                    if pos == self._scan_from:
                        pos = self._scan_from = self._skip_keepalives(pos)
                        if pos >= len(buf):
                            break
                    end = _head_end(buf, self._scan_from)
                    if end is None:
                        self._scan_from = max(pos, len(buf) - 3)
                        if len(buf) - pos > self.max_size:
                            is_request = buf[pos : pos + 4] != b"SIP/"
                            out.append(ParseFailure("Message Too Large", 513, is_request, None))
                            self.broken = True
                        break
                    head = bytes(buf[pos : end[0]])
                    length, problem = _stream_content_length(head)
                    if length is None or end[1] + length - pos > self.max_size:
                        out.append(self._framing_failure(head, length, problem))
                        self.broken = True
                        break
                    # remembered, so a body arriving in small pieces costs no re-parsing
                    total = self._frame_end = end[1] + length
                if len(buf) < total:
                    break
                chunk = bytes(buf[pos:total])
                pos = self._scan_from = total
                self._frame_end = None
                self._newlines = 0
                try:
                    out.append(parse_message(chunk, datagram=False))
                except ParseFailure as exc:
                    out.append(exc)
        finally:
            if self.broken:
                buf.clear()
                self._scan_from, self._frame_end = 0, None
            elif pos:
                del buf[:pos]
                self._scan_from = max(0, self._scan_from - pos)
                if self._frame_end is not None:
                    self._frame_end -= pos
        return out

    def keepalive_pending(self) -> bool:
        """True once after each RFC 5626 double-CRLF ping: answer it with a single CRLF."""
        pending = self._pings > 0
        self._pings = 0
        return pending

    def _skip_keepalives(self, pos: int) -> int:
        buf = self._buffer
        while pos < len(buf) and buf[pos] in (0x0D, 0x0A):
            if buf[pos] == 0x0A:
                self._newlines += 1
                if self._newlines == 2:
                    self._pings += 1
                    self._newlines = 0
            pos += 1
        return pos

    def _framing_failure(self, head: bytes, length: int | None, problem: str) -> ParseFailure:
        if length is not None:
            reason, status = "Message Too Large", 513
        else:
            reason, status = problem, 400
        # Parse the header section alone to learn what it was and which headers can be answered.
        try:
            message = parse_message(head + b"\r\n\r\n", datagram=True)
        except ParseFailure as exc:
            return ParseFailure(reason, status, exc.is_request, exc.headers)
        return ParseFailure(reason, status, isinstance(message, Request), message.headers)


def _stream_content_length(head: bytes) -> tuple[int | None, str]:
    """The Content-Length of a header section, or None and why framing is impossible."""
    found: list[bytes] = []
    lines = head.split(b"\n")
    for i, line in enumerate(lines[1:], start=1):
        if line[:1] in (b" ", b"\t"):
            continue
        name, colon, value = line.partition(b":")
        if colon and name.strip(b" \t").lower() in (b"content-length", b"l"):
            parts = [value]
            for cont in lines[i + 1 :]:
                if cont[:1] not in (b" ", b"\t"):
                    break
                parts.append(cont)
            found.append(b" ".join(parts).strip(b" \t\r"))
    if not found:
        return None, "Bad Request - Missing Content-Length"
    if len({v.lstrip(b"0") for v in found}) > 1:
        return None, "Bad Request - Conflicting Content-Length"
    raw = found[0]
    length = parse_uint(raw.decode("ascii", "replace"), _MAX_CONTENT_LENGTH)
    if length is None:
        return None, "Bad Request - Invalid Content-Length"
    return length, ""
