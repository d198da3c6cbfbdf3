"""SDP (RFC 4566) parsing/serialisation and RFC 3264 offer/answer for G.711 audio.

Input comes from untrusted peers: every malformed line raises SdpError (never any
other exception), with a message naming the line. Lines we do not interpret are
kept and written back out, so a parsed description round-trips.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pbx.media.g711 import Codec

__all__ = [
    "Direction",
    "MediaDescription",
    "NegotiatedMedia",
    "NoCommonCodec",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "UnusableAddress",
    "answer_offer",
    "check_media_address",
    "build_offer",
    "parse_answer",
]

MAX_SDP_SIZE = 65536  # far above any real audio SDP; bounds work done on hostile input
DEFAULT_PTIME = 20
TELEPHONE_EVENT = "telephone-event"
_AUDIO_PROTOS = frozenset({"RTP/AVP"})
_LEGACY_HOLD = frozenset({"0.0.0.0", "::"})

_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_DIGITS = re.compile(r"[0-9]{1,20}")
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
    if not _DIGITS.fullmatch(text):
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
    kinds: dict[str, type[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {
        "IP4": ipaddress.IPv4Address,
        "IP6": ipaddress.IPv6Address,
    }
    if addrtype not in kinds:
        raise SdpError(f"unsupported address type {addrtype!r} in {line[:80]!r}")
    try:
        return str(kinds[addrtype](host))
    except ValueError:
        raise UnusableAddress(
            f"c= address {host[:40]!r} is not an IPv{addrtype[2]} literal: host names are refused"
        ) from None


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
    ip = ipaddress.ip_address(host)  # c= parsing already made it an IP literal
    if ip.is_unspecified:
        return
    if ip.is_multicast:
        raise UnusableAddress(f"c= address {host} is multicast, only unicast media is supported")
    if isinstance(ip, ipaddress.IPv4Address):
        if ip == ipaddress.IPv4Address("255.255.255.255") or ip in _THIS_NETWORK:
            raise UnusableAddress(f'c= address {host} is a broadcast or "this network" address')
        if ip.is_reserved:
            raise UnusableAddress(f"c= address {host} is in a reserved range")
    elif ip.is_link_local or ip.ipv4_mapped is not None:
        raise UnusableAddress(f"c= address {host} has no usable scope (link-local or mapped)")


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
            if any(ch in line for ch in "\r\x00"):
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


# ---------------------------------------------------------------------------
# Offer / answer (RFC 3264)


@dataclass(frozen=True)
class NegotiatedMedia:
    remote_host: str
    remote_port: int
    codec: Codec
    telephone_event_pt: int | None
    ptime: int
    direction: Direction  # the remote side's direction (legacy c=0.0.0.0 hold -> SENDONLY)
    rtcp_mux: bool = False

    @property
    def on_hold(self) -> bool:
        """The remote put us on hold: it will not receive our media."""
        return self.direction in (Direction.SENDONLY, Direction.INACTIVE)


_CODEC_NAMES = {Codec.PCMU: "PCMU", Codec.PCMA: "PCMA"}


def _origin_for(host: str, session_id: int, version: int) -> Origin:
    return Origin(username="-", session_id=session_id, session_version=version, address=host)


def _codec_of(fmt: str, rtpmaps: dict[int, RtpMap]) -> Codec | None:
    """The G.711 codec a format stands for: static PT 0/8, unless an rtpmap says otherwise."""
    pt = int(fmt)
    if pt not in (Codec.PCMU, Codec.PCMA):
        return None
    codec = Codec(pt)
    rtpmap = rtpmaps.get(pt)
    if rtpmap is not None and (
        rtpmap.encoding.upper() != _CODEC_NAMES[codec]
        or rtpmap.clock_rate != 8000
        or rtpmap.channels != 1
    ):
        return None
    return codec


def _telephone_event_pt(media: MediaDescription, rtpmaps: dict[int, RtpMap]) -> int | None:
    for fmt in media.formats:
        rtpmap = rtpmaps.get(int(fmt))
        if (
            rtpmap is not None
            and rtpmap.encoding.lower() == TELEPHONE_EVENT
            and rtpmap.clock_rate == 8000
        ):
            return rtpmap.payload_type
    return None


def _remote_direction(session: SessionDescription, media: MediaDescription, host: str) -> Direction:
    direction = session.media_direction(media)
    if host in _LEGACY_HOLD:
        # RFC 2543 hold: the remote cannot receive anything we send.
        direction = Direction.of(sends=direction.sends, receives=False)
    return direction


def _usable_audio(media: MediaDescription) -> bool:
    return media.media == "audio" and media.proto.upper() in _AUDIO_PROTOS and media.port != 0


def _audio_media(
    host: str,
    port: int,
    codecs: Sequence[Codec],
    telephone_event_pt: int | None,
    direction: Direction,
    ptime: int,
    rtcp_mux: bool,
) -> MediaDescription:
    formats = [str(int(c)) for c in codecs]
    attributes: list[tuple[str, str | None]] = [
        ("rtpmap", f"{int(c)} {_CODEC_NAMES[c]}/8000") for c in codecs
    ]
    if telephone_event_pt is not None:
        formats.append(str(telephone_event_pt))
        attributes.append(("rtpmap", f"{telephone_event_pt} {TELEPHONE_EVENT}/8000"))
        attributes.append(("fmtp", f"{telephone_event_pt} 0-15"))
    attributes.append(("ptime", str(ptime)))
    if rtcp_mux:
        attributes.append(("rtcp-mux", None))
    attributes.append((direction.value, None))
    return MediaDescription(
        media="audio", port=port, proto="RTP/AVP", formats=formats, attributes=attributes
    )


def build_offer(
    local_host: str,
    local_port: int,
    codecs: Sequence[Codec] = (Codec.PCMA, Codec.PCMU),
    telephone_event_pt: int | None = 101,
    direction: Direction = Direction.SENDRECV,
    session_id: int = 0,
    version: int = 0,
    ptime: int = 20,
    rtcp_mux: bool = False,
) -> SessionDescription:
    """An SDP offer for one G.711 audio stream (pass telephone_event_pt=None to omit DTMF)."""
    if not codecs:
        raise ValueError("an offer needs at least one codec")
    if telephone_event_pt is not None and not 96 <= telephone_event_pt <= 127:
        raise ValueError(f"telephone-event needs a dynamic payload type, got {telephone_event_pt}")
    codecs = [Codec(c) for c in codecs]
    return SessionDescription(
        origin=_origin_for(local_host, session_id, version),
        session_name="-",
        connection=local_host,
        other=[("t", "0 0")],
        media=[
            _audio_media(
                local_host, local_port, codecs, telephone_event_pt, direction, ptime, rtcp_mux
            )
        ],
    )


def _rejected(media: MediaDescription) -> MediaDescription:
    # RFC 3264 6: a rejected stream keeps its m= line with port 0 and at least one format.
    return MediaDescription(
        media=media.media, port=0, proto=media.proto, formats=media.formats[:1] or ["0"]
    )


def answer_offer(
    offer: SessionDescription,
    local_host: str,
    local_port: int,
    supported: Sequence[Codec] = (Codec.PCMA, Codec.PCMU),
    session_id: int = 0,
    version: int = 0,
    direction: Direction | None = None,
    rtcp_mux: bool = False,
    ptime: int = DEFAULT_PTIME,
) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer an offer: accept the first audio stream with a codec we support.

    The codec is the first one in the offer's order that is in ``supported``; a
    telephone-event format is echoed with the offerer's payload type. ``direction``
    is what we want locally (None = sendrecv); the answer direction is that
    restricted by the offer (RFC 3264 6.1: sendonly -> recvonly, inactive -> inactive).
    Every other stream is rejected with port 0. Raises NoCommonCodec (-> SIP 488)
    when no audio stream has a common codec, SdpError when the offer is unusable.
    """
    wanted = set(supported)
    local = direction or Direction.SENDRECV
    answer = SessionDescription(
        origin=_origin_for(local_host, session_id, version),
        connection=local_host,
        other=[("t", "0 0")],
    )
    negotiated: NegotiatedMedia | None = None
    for media in offer.media:
        if negotiated is not None or not _usable_audio(media):
            answer.media.append(_rejected(media))
            continue
        rtpmaps = media.rtpmaps()
        codec = next(
            (c for c in (_codec_of(f, rtpmaps) for f in media.formats) if c in wanted), None
        )
        if codec is None:
            answer.media.append(_rejected(media))
            continue
        host = offer.media_connection(media)
        if host is None:
            raise SdpError("offered audio stream has no c= line at media or session level")
        check_media_address(host)
        remote_dir = _remote_direction(offer, media, host)
        event_pt = _telephone_event_pt(media, rtpmaps)
        mux = rtcp_mux and media.has_attribute("rtcp-mux")
        ours = Direction.of(
            sends=local.sends and remote_dir.receives, receives=local.receives and remote_dir.sends
        )
        answer.media.append(
            _audio_media(local_host, local_port, [codec], event_pt, ours, ptime, mux)
        )
        negotiated = NegotiatedMedia(
            remote_host=host,
            remote_port=media.port,
            codec=codec,
            telephone_event_pt=event_pt,
            ptime=_sane_ptime(media.ptime()),
            direction=remote_dir,
            rtcp_mux=mux,
        )
    if negotiated is None:
        raise NoCommonCodec("no offered audio stream has a codec in common with us")
    return answer, negotiated


def _sane_ptime(ptime: int | None) -> int:
    """The packetisation the remote asked for, if it is one we can produce."""
    if ptime is None or not 10 <= ptime <= 120 or ptime % 10:
        return DEFAULT_PTIME
    return ptime


def parse_answer(answer: SessionDescription, offer: SessionDescription) -> NegotiatedMedia:
    """What an answer to our ``offer`` means for the media we send and receive."""
    if len(answer.media) != len(offer.media):
        raise SdpError(f"answer has {len(answer.media)} m= lines, offer had {len(offer.media)}")
    for offered, media in zip(offer.media, answer.media, strict=True):
        if not _usable_audio(offered) or not _usable_audio(media):
            continue
        offered_maps = offered.rtpmaps()
        ours = {_codec_of(f, offered_maps) for f in offered.formats} - {None}
        rtpmaps = media.rtpmaps()
        codec = next((c for c in (_codec_of(f, rtpmaps) for f in media.formats) if c in ours), None)
        if codec is None:
            raise NoCommonCodec("answer accepted audio without any codec we offered")
        host = answer.media_connection(media)
        if host is None:
            raise SdpError("answered audio stream has no c= line at media or session level")
        check_media_address(host)
        event_pt = _telephone_event_pt(media, rtpmaps)
        if event_pt is not None and _telephone_event_pt(offered, offered_maps) is None:
            event_pt = None  # answered something we never offered; ignore it
        return NegotiatedMedia(
            remote_host=host,
            remote_port=media.port,
            codec=codec,
            telephone_event_pt=event_pt,
            ptime=_sane_ptime(media.ptime()),
            direction=_remote_direction(answer, media, host),
            rtcp_mux=offered.has_attribute("rtcp-mux") and media.has_attribute("rtcp-mux"),
        )
    raise NoCommonCodec("answer rejected every audio stream")
