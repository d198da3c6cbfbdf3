"""name-addr / addr-spec values of From, To, Contact, Route, Record-Route (RFC 3261 section 20)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from pbx.sip.errors import SipParseError
from pbx.sip.grammar import WS, format_params, is_token, parse_params, quote, read_quoted
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
        # the constructor, not dataclasses.replace: twice a call (our From, the dialog's To)
        return Address(self.uri, self.display, {**self.params, "tag": tag}, self.wildcard)

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        display = f"{quote(self.display)} " if self.display is not None else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"


def parse_address(value: str) -> Address:
    """Parsed once per distinct header text (bounded cache): the parser checks every
    message's headers and the stack, dialogs and legs read them again, for each message
    of a call. The result is frozen and shared, its params never changed in place; a
    flood of distinct texts only evicts, and errors are not cached."""
    return _parse_address(value)


# From/To carry a tag per dialog and Contact a port per phone: most texts belong to one call, so
# hits come from the rereads of recent messages. At 4096 entries (5 MiB filled) the cache held
# mostly texts of calls long over (bench/memory_trace.py, SOAK.md).
@lru_cache(maxsize=512)
def _parse_address(value: str) -> Address:
    text = value.strip(WS)
    if text == "*":
        return _wildcard()
    if not text:
        raise SipParseError("Bad Request - Empty address")
    display: str | None = None
    if text.startswith('"'):
        display, end = read_quoted(text, 0)
        text = text[end:].lstrip(WS)
        if not text.startswith("<"):
            raise SipParseError("Bad Request - Malformed name-addr")
        lt = 0
    else:
        lt = text.find("<")
        if lt > 0:
            # display-name = *(token LWS): RFC 4475 3.1.2.15 (an unquoted comma) must not pass
            words = text[:lt].replace("\t", " ").split(" ")
            words = [w for w in words if w]
            if not all(is_token(w) for w in words):
                raise SipParseError("Bad Request - Non-token characters in display name")
            display = " ".join(words) if words else None
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError("Bad Request - Unterminated <URI>")
        inner = text[lt + 1 : gt]
        if not inner or inner[0] in WS or inner[-1] in WS:
            # RFC 4475 3.1.2.14: LAQUOT/RAQUOT allow no whitespace inside the brackets
            raise SipParseError("Bad Request - Whitespace inside <URI>")
        uri = parse_uri(inner)
        tail = text[gt + 1 :].lstrip(WS)
    else:
        # addr-spec: parameters after the URI belong to the header, not to the URI (RFC 3261
        # section 20.10), so a URI with its own ';', '?' or ',' must be in <> (RFC 4475 3.1.2.13).
        spec, semi, tail = text.partition(";")
        spec = spec.rstrip(WS)
        if " " in spec or "\t" in spec:
            raise SipParseError("Bad Request - Malformed addr-spec")
        if "?" in spec or "," in spec:
            raise SipParseError("Bad Request - URI with headers must be enclosed in <>")
        uri = parse_uri(spec)
        tail = semi + tail
    if tail and not tail.startswith(";"):
        raise SipParseError("Bad Request - Malformed name-addr parameters")
    params = parse_params(tail[1:], "address") if tail else {}
    return Address(uri=uri, display=display, params=params)


def _wildcard() -> Address:
    return Address(uri=OtherUri("*", "*"), wildcard=True)
