"""SIP and other URIs (RFC 3261 section 19.1)."""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass, field, replace
from urllib.parse import unquote

from pbx.sip.errors import SipParseError
from pbx.sip.grammar import format_params

_HOST_CHARS = frozenset(string.ascii_letters + string.digits + "-._")
_SCHEME_CHARS = frozenset(string.ascii_letters + string.digits + "+-.")


@dataclass(frozen=True)
class SipUri:
    """sip: / sips: URI. `user` is kept as written (escaped); `user_unescaped` decodes %HH."""

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
        out.append(format_params(self.params))
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
    text = text.strip()
    scheme, sep, rest = text.partition(":")
    if (
        not sep
        or not scheme
        or not all(c in _SCHEME_CHARS for c in scheme)
        or not scheme[0].isalpha()
    ):
        raise SipParseError("Bad Request - Malformed URI")
    if any(c in text for c in " \t\r\n<>"):
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
    rest, _, headers = rest.partition("?")
    user: str | None = None
    password: str | None = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        if ":" in userinfo:
            user, _, password = userinfo.partition(":")
        else:
            user = userinfo
        if not user:
            raise SipParseError("Bad Request - Malformed URI user part")
    hostport, _, param_text = rest.partition(";")
    host, port = parse_hostport(hostport)
    params = _parse_uri_params(param_text) if param_text or rest.endswith(";") else {}
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
        if not item:
            raise SipParseError("Bad Request - Empty URI parameter")
        name, eq, value = item.partition("=")
        if not name:
            raise SipParseError("Bad Request - Malformed URI parameter")
        params[unquote(name).lower()] = unquote(value) if eq else None
    return params


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Parse host[:port]; IPv6 references must be bracketed. Host is lowercased."""
    if not text:
        raise SipParseError("Bad Request - Missing host")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("Bad Request - Malformed IPv6 reference")
        host = text[: end + 1]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise SipParseError("Bad Request - Malformed IPv6 reference") from None
        tail = text[end + 1 :]
        if tail and not tail.startswith(":"):
            raise SipParseError("Bad Request - Malformed host")
        port_text = tail[1:] if tail else None
    else:
        host, colon, port_text_raw = text.partition(":")
        port_text = port_text_raw if colon else None
        if not host or not all(c in _HOST_CHARS for c in host):
            raise SipParseError("Bad Request - Malformed host")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            raise SipParseError("Bad Request - Invalid port")
        port = int(port_text)
    return host.lower(), port
