"""Via header values (RFC 3261 section 20.42, RFC 3581 rport)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pbx.sip.errors import SipParseError
from pbx.sip.grammar import WS, format_params, is_token, parse_params
from pbx.sip.uri import parse_hostport

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 branch prefix


@dataclass(frozen=True)
class Via:
    transport: str  # upper case: UDP, TCP, TLS, or anything a peer sent
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def with_params(self, **params: str | None) -> Via:
        return replace(self, params={**self.params, **params})

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    text = value.strip(WS)
    proto_part, sep, rest = _split_sent_protocol(text)
    if not sep:
        raise SipParseError("Bad Request - Malformed Via")
    pieces = [p.strip(WS) for p in proto_part.split("/")]
    if len(pieces) != 3 or not all(is_token(p) for p in pieces):
        raise SipParseError("Bad Request - Malformed Via protocol")
    name, version, transport = pieces
    if name.upper() != "SIP" or version != "2.0":
        raise SipParseError("SIP Version Not Supported", status=505)
    rest = rest.strip(WS)
    hostport, semi, param_text = rest.partition(";")
    hostport = "".join(hostport.split())  # LWS is allowed around the colon
    host, port = parse_hostport(hostport)
    params = parse_params(param_text, "Via") if semi else {}
    if "received" in params and not params["received"]:
        raise SipParseError("Bad Request - Malformed Via received")
    return Via(transport=transport.upper(), host=host, port=port, params=params)


def _split_sent_protocol(text: str) -> tuple[str, str, str]:
    """Split 'SIP / 2.0 / UDP host...' into protocol and the rest; LWS may surround the slashes."""
    slashes = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "/":
            slashes += 1
        elif ch in WS and slashes == 2:
            # after the transport token: the first whitespace not followed by '/' ends it
            j = i
            while j < len(text) and text[j] in WS:
                j += 1
            if j < len(text) and text[j] != "/" and text[i - 1] != "/":
                return text[:i], " ", text[j:]
        i += 1
    return text, "", ""
