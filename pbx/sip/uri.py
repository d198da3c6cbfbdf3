"""SIP and other URIs (RFC 3261 section 19.1)."""

from __future__ import annotations

import ipaddress
import re
import string
from dataclasses import dataclass, field, replace
from functools import lru_cache
from urllib.parse import unquote

from pbx.sip.errors import SipParseError
from pbx.sip.grammar import parse_uint

_SCHEME_FIRST = frozenset(string.ascii_letters)
_SCHEME_CHARS = frozenset(string.ascii_letters + string.digits + "+-.")
# Never part of a URI as written on the wire (RFC 3986 excluded characters and delimiters of the
# surrounding SIP syntax). Everything else in user/password/params/headers is accepted as sent:
# real phones put unescaped '#' or '*' in the user part, and rejecting them helps nobody.
_NEVER_IN_URI = re.compile(r'[\x00-\x20<>"\x7f]')
_HOSTNAME = re.compile(r"[A-Za-z0-9\-._]+")
# paramchar = param-unreserved / unreserved / escaped (RFC 3261 section 25.1); others are escaped
# when a parameter is written out, so a decoded '%' or ';' survives a round trip.
_PARAM_SAFE = frozenset(string.ascii_letters + string.digits + "-_.!~*'()[]/:&+$")
_PARAM_SAFE_RUN = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]*")  # only _PARAM_SAFE characters
_HEX = frozenset(string.hexdigits)


@dataclass(frozen=True)
class SipUri:
    """sip: / sips: URI. `user` is kept as written (escaped); `user_unescaped` decodes %HH.

    URI parameter names and values are stored unescaped (so "transport=%74cp" reads "tcp") and
    re-escaped by __str__.
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unquote(self.user, errors="replace")

    @property
    def transport(self) -> str:
        default = "tls" if self.scheme == "sips" else "udp"
        return (self.params.get("transport") or default).lower()

    @property
    def host_bare(self) -> str:
        """Host without IPv6 brackets, for socket calls."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def with_(self, **changes: object) -> SipUri:
        return replace(self, **changes)  # type: ignore[arg-type]

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        for name, value in self.params.items():
            out.append(";" + _escape_param(name))
            if value is not None:
                out.append("=" + _escape_param(value))
        if self.headers:
            out.append("?" + self.headers)
        return "".join(out)


@dataclass(frozen=True)
class OtherUri:
    """Any absolute URI we do not interpret (tel:, urn:, an unknown scheme): kept verbatim."""

    scheme: str
    text: str

    def __str__(self) -> str:
        return self.text


Uri = SipUri | OtherUri


def parse_uri(text: str) -> Uri:
    """Parse an absolute URI exactly as written (no surrounding whitespace or brackets)."""
    if not text or _NEVER_IN_URI.search(text):
        raise SipParseError("Bad Request - Malformed URI")
    scheme, sep, rest = text.partition(":")
    if (
        not sep
        or not rest
        or not scheme
        or scheme[0] not in _SCHEME_FIRST
        or not _SCHEME_CHARS.issuperset(scheme)
    ):
        raise SipParseError("Bad Request - Malformed URI")
    low = scheme.lower()
    if low not in ("sip", "sips"):
        return OtherUri(low, text)
    return _parse_sip(low, rest)


def parse_sip_uri(text: str) -> SipUri:
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise SipParseError("Bad Request - Unsupported URI scheme", status=416)
    return uri


def _parse_sip(scheme: str, rest: str) -> SipUri:
    # userinfo may itself contain ';', '?', ':' and ',' (RFC 3261 user-unreserved, see RFC 4475
    # 3.1.1.2 and 3.1.1.9) but never an unescaped '@', which therefore ends it.
    user: str | None = None
    password: str | None = None
    if "@" in rest:
        userinfo, _, rest = rest.partition("@")
        if "@" in rest:
            raise SipParseError("Bad Request - Malformed URI user part")
        user, colon, pw = userinfo.partition(":")
        password = pw if colon else None
        if not user:
            raise SipParseError("Bad Request - Malformed URI user part")
    rest, qmark, headers = rest.partition("?")
    if qmark and not headers:
        raise SipParseError("Bad Request - Malformed URI headers")
    hostport, semi, param_text = rest.partition(";")
    host, port = parse_hostport(hostport)
    params = _parse_uri_params(param_text) if semi else {}
    return SipUri(
        host=host,
        user=user,
        password=password,
        port=port,
        scheme=scheme,
        params=params,
        headers=headers or None,
    )


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name:
            raise SipParseError("Bad Request - Malformed URI parameter")
        params[_unescape(name).lower()] = _unescape(value) if eq else None
    return params


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    # only well-formed %HH are escapes; a stray '%' stays itself, as urllib.parse.unquote does
    return unquote(text, errors="surrogateescape")


def _escape_param(text: str) -> str:
    if _PARAM_SAFE_RUN.fullmatch(text):  # the usual case, checked in C (every request's URI)
        return text
    out = []
    for ch in text:
        if ch in _PARAM_SAFE:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Parse host[:port]; IPv6 references must be bracketed. Host is lowercased."""
    return _parse_hostport_cached(text)


@lru_cache(maxsize=1024)
def _parse_hostport_cached(text: str) -> tuple[str, int | None]:
    if not text:
        raise SipParseError("Bad Request - Missing host")
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("Bad Request - Malformed IPv6 reference")
        host = text[: end + 1]
        address = host[1:-1]
        if not all(c in _HEX or c in ":." for c in address):
            raise SipParseError("Bad Request - Malformed IPv6 reference")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise SipParseError("Bad Request - Malformed IPv6 reference") from None
        tail = text[end + 1 :]
        if tail and not tail.startswith(":"):
            raise SipParseError("Bad Request - Malformed host")
        port_text = tail[1:] if tail else None
    else:
        host, colon, port_raw = text.partition(":")
        port_text = port_raw if colon else None
        if _HOSTNAME.fullmatch(host) is None:
            raise SipParseError("Bad Request - Malformed host")
    port: int | None = None
    if port_text is not None:
        port = parse_uint(port_text, 65535)
        if port is None or port == 0 or len(port_text) > 5:
            raise SipParseError("Bad Request - Invalid port")
    return host.lower(), port
