"""Via header values (RFC 3261 section 20.42, RFC 3581 rport)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from pbx.sip.errors import SipParseError
from pbx.sip.grammar import WS, format_params, is_digits, is_token, parse_params
from pbx.sip.uri import parse_hostport

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 branch prefix

# sent-protocol LWS sent-by: LWS is allowed around the slashes and the colon (RFC 3261 25.1,
# exercised by RFC 4475 3.1.1.1). Each part is a run of non-separator characters, so the
# pattern cannot backtrack badly on long input.
_VIA = re.compile(
    r"([^/ \t]+)[ \t]*/[ \t]*([^/ \t]+)[ \t]*/[ \t]*([^/ \t;:]+)[ \t]+"
    r"(\[[^\]]*\]|[^ \t;:\[]+)(?:[ \t]*:[ \t]*([^ \t;]*))?[ \t]*(;.*)?"
)


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
        # the constructor, not dataclasses.replace: this runs for most requests received
        merged = {**self.params, **params}
        return Via(self.transport, self.host, self.port, merged, self.protocol)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    """Parsed once per distinct header text (bounded cache): the parser checks every
    message's headers and the stack, dialogs and legs read them again, for each message
    of a call. The result is frozen and shared, its params never changed in place; a
    flood of distinct texts only evicts, and errors are not cached."""
    return _parse_via(value)


# Small on purpose: every transaction has a Via text of its own (a new branch), so the hits are
# the rereads of one message and of its transaction's responses, moments apart. At 4096 the
# cache only filled (4.2 MiB of texts never asked again: bench/memory_trace.py, SOAK.md).
@lru_cache(maxsize=256)
def _parse_via(value: str) -> Via:
    text = value.strip(WS)
    fields = _plain_via(text)
    if fields is None:  # whitespace inside, an IPv6 reference, or malformed: the full grammar
        match = _VIA.fullmatch(text)
        if match is None:
            raise SipParseError("Bad Request - Malformed Via")
        name, version, transport, host_text, port_text, param_text = match.groups()
        hostport = host_text if port_text is None else f"{host_text}:{port_text}"
    else:
        name, version, transport, hostport, param_text = fields
    if not (is_token(name) and is_token(version) and is_token(transport)):
        raise SipParseError("Bad Request - Malformed Via protocol")
    if name.upper() != "SIP" or version != "2.0":
        raise SipParseError("Version Not Supported", status=505)
    host, port = parse_hostport(hostport)
    params = parse_params(param_text[1:], "Via") if param_text else {}
    if "received" in params and not params["received"]:
        raise SipParseError("Bad Request - Malformed Via received")
    rport = params.get("rport")
    if rport is not None and not is_digits(rport):
        raise SipParseError("Bad Request - Malformed Via rport")
    return Via(transport=transport.upper(), host=host, port=port, params=params)


def _plain_via(text: str) -> tuple[str, str, str, str, str | None] | None:
    """The parts ``_VIA`` would find in a Via written the usual way, ``SIP/2.0/UDP host:port;
    params`` (one space; no tab, line feed or IPv6 reference), without the regex: string splits
    are a fraction of its cost. None for anything else, which the regex then reads or refuses
    (tests/test_sip_parser.py checks the two agree)."""
    protocol, _, rest = text.partition(" ")
    if not rest or " " in rest or "\t" in text or "\n" in rest:
        return None
    parts = protocol.split("/")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
        return None
    transport = parts[2]
    if ";" in transport or ":" in transport:
        return None
    sent_by, semicolon, params = rest.partition(";")
    if not sent_by or sent_by[0] == ":" or "[" in sent_by or "]" in sent_by:
        return None
    return parts[0], parts[1], transport, sent_by, (";" + params) if semicolon else None
