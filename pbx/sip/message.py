"""SIP requests and responses (RFC 3261 section 7) with typed accessors for the core headers."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from pbx.sip.address import Address, parse_address
from pbx.sip.errors import SipParseError
from pbx.sip.grammar import WS, is_digits, is_token, parse_uint
from pbx.sip.headers import Headers
from pbx.sip.uri import Uri
from pbx.sip.via import Via, parse_via

# RFC 3261 section 8.1.1.5: the number must fit in 32 bits unsigned (a UAC *starts* below 2**31,
# but a long dialog may go past it); RFC 4475 3.1.2.4 refuses anything larger.
MAX_CSEQ = 2**32 - 1

REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    603: "Decline",
}


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@lru_cache(maxsize=1024)  # read for every message, often more than once; CSeq is immutable
def parse_cseq(value: str) -> CSeq:
    parts = value.replace("\t", " ").split(" ")
    parts = [p for p in parts if p]
    if len(parts) != 2 or not is_digits(parts[0]) or not is_token(parts[1]):
        raise SipParseError("Bad Request - Invalid CSeq")
    number = parse_uint(parts[0], MAX_CSEQ)
    if number is None:
        raise SipParseError("Bad Request - CSeq out of range")
    return CSeq(number, parts[1])


@dataclass
class _Message:
    headers: Headers
    body: bytes

    # --- typed views of the core headers (parsed on access; the parser validated them) ---
    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.values("Via")]

    @property
    def top_via(self) -> Via:
        first = self.headers.values("Via")
        if not first:
            raise SipParseError("Bad Request - Missing Via")
        return parse_via(first[0])

    @property
    def from_(self) -> Address:
        return parse_address(self.headers.get("From") or "")

    @property
    def to(self) -> Address:
        return parse_address(self.headers.get("To") or "")

    @property
    def contacts(self) -> list[Address]:
        return [parse_address(v) for v in self.headers.values("Contact")]

    @property
    def record_routes(self) -> list[Address]:
        return [parse_address(v) for v in self.headers.values("Record-Route")]

    @property
    def routes(self) -> list[Address]:
        return [parse_address(v) for v in self.headers.values("Route")]

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _serialize(self, start_line: str) -> bytes:
        self.headers.set("Content-Length", str(len(self.body)))
        head = "\r\n".join([start_line, *self.headers.to_lines()]) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


@dataclass
class Request(_Message):
    method: str = ""
    uri: Uri | None = None
    version: str = "SIP/2.0"
    # The request URI exactly as received, so a proxy/B2BUA can log or echo it.
    raw_uri: str = field(default="", compare=False)

    def __init__(
        self,
        method: str,
        uri: Uri,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
        raw_uri: str = "",
    ) -> None:
        super().__init__(headers if headers is not None else Headers(), body)
        self.method = method
        self.uri = uri
        self.version = version
        self.raw_uri = raw_uri or str(uri)

    @property
    def request_uri(self) -> Uri:
        assert self.uri is not None
        return self.uri

    @property
    def max_forwards(self) -> int:
        raw = self.headers.get("Max-Forwards")
        if raw is None:
            return 70
        # Leading zeros are legal ("0068"); values over 255 are clamped rather than refused
        # (RFC 4475 3.1.2.4 allows ignoring an overlarge Max-Forwards).
        value = parse_uint(raw.strip(WS), 2**64)
        return 255 if value is None else min(value, 255)

    def to_bytes(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {self.version}")

    def __repr__(self) -> str:
        return f"<Request {self.method} cseq={self.headers.get('CSeq')!r}>"


@dataclass
class Response(_Message):
    status: int = 0
    reason: str = ""
    version: str = "SIP/2.0"

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers if headers is not None else Headers(), body)
        self.status = status
        self.reason = REASONS.get(status, "") if reason is None else reason
        self.version = version

    def to_bytes(self) -> bytes:
        return self._serialize(f"{self.version} {self.status} {self.reason}")

    def __repr__(self) -> str:
        return f"<Response {self.status} cseq={self.headers.get('CSeq')!r}>"


Message = Request | Response


_COPIED_TO_RESPONSES = ("Via", "From", "To", "Call-ID", "CSeq")


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """A response to `request` per RFC 3261 section 8.2.6: Via, From, To, Call-ID, CSeq copied."""
    headers = request.headers.subset(_COPIED_TO_RESPONSES)
    if to_tag is not None and status != 100:
        to = request.headers.get("To") or ""
        if ";tag=" not in to.replace(" ", "").lower():
            headers.set("To", f"{to};tag={to_tag}")
    if request.method == "INVITE" and 100 < status < 300:
        # a dialog-creating response carries the Record-Route set (RFC 3261 12.1.1), so the
        # caller's in-dialog requests pass the proxies that asked to stay in the path
        for value in request.headers.fields("Record-Route"):
            headers.add("Record-Route", value)
    if status == 100 and "Timestamp" in request.headers:
        headers.add("Timestamp", request.headers.get("Timestamp") or "")
    if content_type:
        headers.add("Content-Type", content_type)
    return Response(status, reason, headers, body)
