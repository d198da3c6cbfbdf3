"""name-addr / addr-spec values of From, To, Contact, Route, Record-Route (RFC 3261 section 20)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pbx.sip.errors import SipParseError
from pbx.sip.grammar import WS, format_params, parse_params, quote, read_quoted
from pbx.sip.uri import OtherUri, Uri, parse_uri


@dataclass(frozen=True)
class Address:
    uri: Uri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False  # Contact: *

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> Address:
        return replace(self, params={**self.params, "tag": tag})

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        display = f"{quote(self.display)} " if self.display else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"


def parse_address(value: str) -> Address:
    text = value.strip(WS)
    if text == "*":
        return _wildcard()
    display: str | None = None
    i = 0
    if text.startswith('"'):
        display, i = read_quoted(text, 0)
        rest = text[i:].lstrip(WS)
        if not rest.startswith("<"):
            raise SipParseError("Bad Request - Malformed name-addr")
        text = rest
        i = 0
    lt = text.find("<")
    if lt >= 0:
        before = text[:lt].strip(WS)
        if before:
            if '"' in before:
                raise SipParseError("Bad Request - Malformed display name")
            display = " ".join(before.split())
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError("Bad Request - Unterminated <URI>")
        uri = parse_uri(text[lt + 1 : gt])
        tail = text[gt + 1 :].strip(WS)
    else:
        # addr-spec: parameters after the URI belong to the header, not to the URI.
        spec, semi, tail = text.partition(";")
        if any(c in spec.strip(WS) for c in WS):
            raise SipParseError("Bad Request - Malformed addr-spec")
        uri = parse_uri(spec)
        tail = semi + tail
    if tail and not tail.startswith(";"):
        raise SipParseError("Bad Request - Malformed name-addr parameters")
    params = parse_params(tail[1:], "address") if tail else {}
    return Address(uri=uri, display=display, params=params)


def _wildcard() -> Address:
    return Address(uri=OtherUri("*", "*"), wildcard=True)
