"""SDP (RFC 4566): parsing and serialisation of session descriptions.

Input comes from untrusted peers: every malformed line raises SdpError (never any
other exception), with a message naming the line. Lines we do not interpret are
kept and written back out, so a parsed description round-trips. What the descriptions
mean for a call (offer/answer for G.711 audio) is in `pbx.media.offer_answer`.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from dataclasses import dataclass, field

__all__ = [
    "Direction",
    "MediaDescription",
    "NoCommonCodec",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "UnusableAddress",
    "check_media_address",
]

MAX_SDP_SIZE = 65536  # far above any real audio SDP; bounds work done on hostile input

_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_PTIME = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.?"
)
_RTPMAP = re.compile(r"([0-9]{1,3}) +([^/ ]+)/([0-9]{1,9})(?:/([0-9]{1,3}))? *")

# RFC 4566 section 5 line order; letters not listed (extensions) go just before a=.
_SESSION_ORDER = {k: i for i, k in enumerate("iuepcbtrzk")}
_MEDIA_ORDER = {k: i for i, k in enumerate("icbk")}
_UNKNOWN_RANK = 100


class SdpError(ValueError):
    """Malformed or unusable session description."""


class UnusableAddress(SdpError):
    """A c= address we must not send media to or expect it from: answer with 488."""


class NoCommonCodec(SdpError):
    """No audio stream offers a codec we support: answer the INVITE with 488."""


class Direction(enum.Enum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reverse(self) -> Direction:
        """The same stream seen from the other end."""
        return Direction.of(sends=self.receives, receives=self.sends)


_DIRECTIONS = {d.value: d for d in Direction}


@dataclass(frozen=True)
class RtpMap:
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1


@dataclass
class Origin:
    username: str = "-"
    session_id: int = 0
    session_version: int = 0
    address: str = "0.0.0.0"


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    port_count: int | None = None  # "m=audio 49170/2 ..."
    other: list[tuple[str, str]] = field(default_factory=list)  # i=, b=, k=, unknown lines

    def attribute(self, name: str) -> str | None:
        """Value of the first a=name[:value] line ("" for a flag), or None if absent."""
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None

    def has_attribute(self, name: str) -> bool:
        return any(key == name for key, _ in self.attributes)

    def rtpmaps(self) -> dict[int, RtpMap]:
        maps: dict[int, RtpMap] = {}
        for key, value in self.attributes:
            if key == "rtpmap" and value is not None:
                rtpmap = _parse_rtpmap(value)
                maps.setdefault(rtpmap.payload_type, rtpmap)
        return maps

    def direction(self) -> Direction | None:
        """The direction attribute given at media level, if any."""
        for key, _ in self.attributes:
            if key in _DIRECTIONS:
                return _DIRECTIONS[key]
        return None

    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        return None if value is None else _parse_ptime(value)


@dataclass
class SessionDescription:
    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)  # t=, b=, i=, unknown lines

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        return _Parser(data).run()

    def to_bytes(self) -> bytes:
        o = self.origin
        lines = [
            "v=0",
            f"o={o.username} {o.session_id} {o.session_version} IN "
            f"{_addrtype(o.address)} {o.address}",
            f"s={self.session_name}",
        ]
        other = list(self.other)
        if not any(kind == "t" for kind, _ in other):
            other.append(("t", "0 0"))
        if self.connection is not None:
            other.append(("c", f"IN {_addrtype(self.connection)} {self.connection}"))
        other.sort(key=lambda kv: _SESSION_ORDER.get(kv[0], _UNKNOWN_RANK))
        lines += [f"{kind}={value}" for kind, value in other]
        lines += [_attribute_line(name, value) for name, value in self.attributes]
        for m in self.media:
            port = str(m.port) if m.port_count is None else f"{m.port}/{m.port_count}"
            lines.append(f"m={m.media} {port} {m.proto} {' '.join(m.formats)}".rstrip())
            mother = list(m.other)
            if m.connection is not None:
                mother.append(("c", f"IN {_addrtype(m.connection)} {m.connection}"))
            mother.sort(key=lambda kv: _MEDIA_ORDER.get(kv[0], _UNKNOWN_RANK))
            lines += [f"{kind}={value}" for kind, value in mother]
            lines += [_attribute_line(name, value) for name, value in m.attributes]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def direction(self) -> Direction | None:
        """The direction attribute given at session level, if any."""
        for key, _ in self.attributes:
            if key in _DIRECTIONS:
                return _DIRECTIONS[key]
        return None

    def media_connection(self, media: MediaDescription) -> str | None:
        """The connection address for a stream: media level, else session level."""
        return media.connection if media.connection is not None else self.connection

    def media_direction(self, media: MediaDescription) -> Direction:
        return media.direction() or self.direction() or Direction.SENDRECV


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _attribute_line(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def _parse_int(text: str, what: str, maximum: int) -> int:
    if not (0 < len(text) <= 20 and text.isascii() and text.isdigit()):  # 1*20 of 0-9
        raise SdpError(f"invalid {what}: {text!r}")
    value = int(text)
    if value > maximum:
        raise SdpError(f"{what} out of range: {value}")
    return value


def _parse_ptime(value: str) -> int:
    if not _PTIME.fullmatch(value):
        raise SdpError(f"invalid ptime: {value!r}")
    ms = round(float(value))
    if ms <= 0:
        raise SdpError(f"invalid ptime: {value!r}")
    return ms


@functools.lru_cache(maxsize=256)  # a few distinct maps, each read at parse and at negotiation
def _parse_rtpmap(value: str) -> RtpMap:
    match = _RTPMAP.fullmatch(value)
    if match is None:
        raise SdpError(f"invalid rtpmap: {value!r}")
    pt, encoding, rate, channels = match.groups()
    payload_type = _parse_int(pt, "rtpmap payload type", 127)
    clock_rate = _parse_int(rate, "rtpmap clock rate", 10_000_000)
    n = 1 if channels is None else _parse_int(channels, "rtpmap channels", 255)
    if clock_rate == 0 or n == 0:
        raise SdpError(f"invalid rtpmap: {value!r}")
    return RtpMap(payload_type, encoding, clock_rate, n)


def _parse_address(addrtype: str, address: str, line: str, names: bool = True) -> str:
    """The address of an o= or c= line; ``names=False`` (c=) accepts IP literals only."""
    if not names:
        return _parse_ip_literal(addrtype, address, line)
    if addrtype == "IP4":
        host = address.split("/", 1)[0]  # multicast "224.2.1.1/127" carries a TTL
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if not _HOSTNAME.fullmatch(host) or host.replace(".", "").isdigit():
                raise SdpError(f"invalid IPv4 address in {line!r}") from None
        return host
    if addrtype == "IP6":
        host = address.split("/", 1)[0]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            if not _HOSTNAME.fullmatch(host):
                raise SdpError(f"invalid IPv6 address in {line!r}") from None
        return host
    raise SdpError(f"unsupported address type {addrtype!r} in {line!r}")


def _parse_ip_literal(addrtype: str, address: str, line: str) -> str:
    # Media goes to an IP address only: a name would cost a DNS lookup per packet sent (on
    # the event loop that paces every call) and lets the peer point our media anywhere.
    host = address.split("/", 1)[0]  # multicast "224.2.1.1/127" carries a TTL
    if addrtype not in _IP_KINDS:
        raise SdpError(f"unsupported address type {addrtype!r} in {line[:80]!r}")
    ip = _ip_literal(addrtype, host)
    if ip is None:
        raise UnusableAddress(
            f"c= address {host[:40]!r} is not an IPv{addrtype[2]} literal: host names are refused"
        )
    return ip


_IP_KINDS: dict[str, type[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {
    "IP4": ipaddress.IPv4Address,
    "IP6": ipaddress.IPv6Address,
}


# Address checks cached (bounded: texts from any peer can only evict entries, at the cost of
# a parse): every offer and answer carries one, ``ipaddress`` costs microseconds per text,
# and a service talks to the same few trunks and handsets all day.
@functools.lru_cache(maxsize=1024)
def _ip_literal(addrtype: str, host: str) -> str | None:
    """The normal text of an IP literal of ``addrtype``, or None if ``host`` is not one."""
    try:
        return str(_IP_KINDS[addrtype](host))
    except ValueError:
        return None


def _parse_connection(value: str, line: str) -> str:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"c= needs 3 fields: {line!r}")
    nettype, addrtype, address = parts
    if nettype != "IN":
        raise SdpError(f"unsupported network type {nettype!r} in {line!r}")
    return _parse_address(addrtype, address, line, names=False)


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def check_media_address(host: str) -> None:
    """Refuse (UnusableAddress) a connection address of no usable unicast scope.

    The unspecified address passes: it is the RFC 2543 way to hold, and means "send nothing".
    """
    problem = _media_address_problem(host)
    if problem is not None:
        raise UnusableAddress(problem)


@functools.lru_cache(maxsize=1024)  # see _ip_literal
def _media_address_problem(host: str) -> str | None:
    ip = ipaddress.ip_address(host)  # c= parsing already made it an IP literal
    if ip.is_unspecified:
        return None
    if ip.is_multicast:
        return f"c= address {host} is multicast, only unicast media is supported"
    if isinstance(ip, ipaddress.IPv4Address):
        if ip == ipaddress.IPv4Address("255.255.255.255") or ip in _THIS_NETWORK:
            return f'c= address {host} is a broadcast or "this network" address'
        if ip.is_reserved:
            return f"c= address {host} is in a reserved range"
    elif ip.is_link_local or ip.ipv4_mapped is not None:
        return f"c= address {host} has no usable scope (link-local or mapped)"
    return None


class _Parser:
    def __init__(self, data: bytes | str) -> None:
        if isinstance(data, bytes | bytearray | memoryview):
            if len(data) > MAX_SDP_SIZE:
                raise SdpError(f"SDP larger than {MAX_SDP_SIZE} bytes")
            try:
                text = bytes(data).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SdpError(f"SDP is not valid UTF-8: {exc}") from None
        elif isinstance(data, str):
            text = data
            try:
                text.encode("utf-8")  # lone surrogates would only fail later, in to_bytes
            except UnicodeEncodeError as exc:
                raise SdpError(f"SDP text is not encodable as UTF-8: {exc}") from None
        else:
            raise SdpError(f"SDP must be bytes or str, not {type(data).__name__}")
        if len(text) > MAX_SDP_SIZE:
            raise SdpError(f"SDP larger than {MAX_SDP_SIZE} characters")
        self.text = text

    def run(self) -> SessionDescription:
        session = SessionDescription()
        seen: set[str] = set()
        media: MediaDescription | None = None
        first = True
        for raw in self.text.split("\n"):
            line = raw[:-1] if raw.endswith("\r") else raw
            if not line:
                continue  # tolerate blank lines and a missing final CRLF
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise SdpError(f"malformed SDP line: {line[:80]!r}")
            if "\r" in line or "\x00" in line:
                raise SdpError(f"control character in SDP line: {line[:80]!r}")
            kind, value = line[0], line[2:]
            if first:
                if kind != "v":
                    raise SdpError(f"SDP must start with v=, got {line[:80]!r}")
                first = False
            if kind == "m":
                media = self._media(value, line)
                session.media.append(media)
            elif kind in "vos" and media is None:
                if kind in seen:
                    raise SdpError(f"duplicate {kind}= line")
                seen.add(kind)
                if kind == "v":
                    if value != "0":
                        raise SdpError(f"unsupported SDP version {value!r}")
                elif kind == "o":
                    session.origin = self._origin(value, line)
                else:
                    session.session_name = value
            elif kind in "vos":
                raise SdpError(f"{kind}= line not allowed at media level: {line[:80]!r}")
            elif kind == "c":
                connection = _parse_connection(value, line)
                if media is None:
                    if session.connection is not None:
                        raise SdpError("duplicate session-level c= line")
                    session.connection = connection
                else:
                    if media.connection is not None:
                        raise SdpError("duplicate media-level c= line")
                    media.connection = connection
            elif kind == "a":
                name, value_or_none = self._attribute(value, line)
                (session.attributes if media is None else media.attributes).append(
                    (name, value_or_none)
                )
            else:
                (session.other if media is None else media.other).append((kind, value))
        if first:
            raise SdpError("empty SDP")
        if "o" not in seen:
            raise SdpError("SDP has no o= line")
        return session

    @staticmethod
    def _origin(value: str, line: str) -> Origin:
        parts = value.split()
        if len(parts) != 6:
            raise SdpError(f"o= needs 6 fields: {line[:80]!r}")
        username, sess_id, sess_version, nettype, addrtype, address = parts
        if not username:
            raise SdpError(f"empty o= username: {line[:80]!r}")
        if nettype != "IN":
            raise SdpError(f"unsupported network type {nettype!r} in {line[:80]!r}")
        return Origin(
            username=username,
            session_id=_parse_int(sess_id, "o= session id", 2**64 - 1),
            session_version=_parse_int(sess_version, "o= session version", 2**64 - 1),
            address=_parse_address(addrtype, address, line[:80]),
        )

    @staticmethod
    def _media(value: str, line: str) -> MediaDescription:
        parts = value.split()
        if len(parts) < 4:
            raise SdpError(f"m= needs media, port, proto and formats: {line[:80]!r}")
        media, port_text, proto, *formats = parts
        if not _TOKEN.fullmatch(media) or not re.fullmatch(r"[A-Za-z0-9/._\-]+", proto):
            raise SdpError(f"invalid m= line: {line[:80]!r}")
        port_text, slash, count_text = port_text.partition("/")
        port = _parse_int(port_text, "m= port", 65535)
        port_count = _parse_int(count_text, "m= port count", 65535) if slash else None
        if proto.upper().startswith("RTP/"):
            for fmt in formats:
                _parse_int(fmt, "RTP payload type", 127)
        elif not all(_TOKEN.fullmatch(fmt) for fmt in formats):
            raise SdpError(f"invalid m= format: {line[:80]!r}")
        return MediaDescription(
            media=media, port=port, proto=proto, formats=formats, port_count=port_count
        )

    @staticmethod
    def _attribute(value: str, line: str) -> tuple[str, str | None]:
        name, colon, attr_value = value.partition(":")
        if not colon:
            name = name.rstrip(" \t")  # tolerate "a=sendrecv " from sloppy peers
        if not _TOKEN.fullmatch(name):
            raise SdpError(f"invalid attribute name: {line[:80]!r}")
        if not colon:
            return name, None
        # Check the attributes negotiation relies on now, so errors surface at parse time.
        if name == "rtpmap":
            _parse_rtpmap(attr_value)
        elif name == "ptime":
            _parse_ptime(attr_value)
        return name, attr_value
