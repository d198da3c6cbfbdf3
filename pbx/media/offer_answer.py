"""RFC 3264 offer/answer for G.711 audio: what a peer's session description means for a call
(address, codec, DTMF events, packet time, direction, SRTP keys), and the descriptions we send.

SRTP with SDES (RFC 4568): ``RTP/SAVP`` streams carry ``a=crypto`` lines; an ``RTP/AVP`` stream
with crypto lines is "best effort" SRTP (what most handsets offer when SRTP is optional), and is
answered the same way. Whether keys may be exchanged at all (only over TLS) is the caller's call:
it passes ``SrtpMode.OFF`` when they may not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pbx.media.g711 import Codec
from pbx.media.sdp import (
    Direction,
    MediaDescription,
    NoCommonCodec,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    check_media_address,
)
from pbx.media.srtp import CryptoAttribute, LocalKeys, SrtpKeys, SrtpMode, Suite

DEFAULT_PTIME = 20
TELEPHONE_EVENT = "telephone-event"
AVP, SAVP = "RTP/AVP", "RTP/SAVP"
_AUDIO_PROTOS = frozenset({AVP, SAVP})
_LEGACY_HOLD = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True)
class NegotiatedMedia:
    remote_host: str
    remote_port: int
    codec: Codec
    telephone_event_pt: int | None
    ptime: int
    direction: Direction  # the remote side's direction (legacy c=0.0.0.0 hold -> SENDONLY)
    rtcp_mux: bool = False
    srtp: SrtpKeys | None = None  # SRTP agreed (SDES), or plain RTP

    @property
    def on_hold(self) -> bool:
        """The remote put us on hold: it will not receive our media."""
        return self.direction in (Direction.SENDONLY, Direction.INACTIVE)


_CODEC_NAMES = {Codec.PCMU: "PCMU", Codec.PCMA: "PCMA"}


class SrtpRequired(NoCommonCodec):
    """SRTP is required and the offer or answer has no usable crypto: answer the INVITE 488."""


def _crypto_lines(media: MediaDescription, suites: Sequence[Suite]) -> list[CryptoAttribute]:
    """The usable crypto lines of a stream whose suite we allow, in the peer's order."""
    found: list[CryptoAttribute] = []
    for name, value in media.attributes:
        if name == "crypto" and value is not None:
            crypto = CryptoAttribute.parse(value)
            if crypto is not None and crypto.suite in suites:
                found.append(crypto)
    return found


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
    proto: str = AVP,
    crypto: Sequence[CryptoAttribute] = (),
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
    attributes.extend(("crypto", c.to_value()) for c in crypto)
    attributes.append((direction.value, None))
    return MediaDescription(
        media="audio", port=port, proto=proto, formats=formats, attributes=attributes
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
    crypto: Sequence[CryptoAttribute] = (),
    savp: bool = False,
) -> SessionDescription:
    """An SDP offer for one G.711 audio stream (pass telephone_event_pt=None to omit DTMF).

    ``crypto`` lines offer SRTP keys: on ``RTP/SAVP`` when ``savp`` (SRTP or nothing), else on
    ``RTP/AVP`` (best effort: a handset without SRTP ignores them and answers plain RTP)."""
    if savp and not crypto:
        raise ValueError("an RTP/SAVP offer needs crypto lines")
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
                local_host,
                local_port,
                codecs,
                telephone_event_pt,
                direction,
                ptime,
                rtcp_mux,
                SAVP if savp else AVP,
                crypto,
            )  # fmt: skip
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
    srtp: SrtpMode = SrtpMode.OFF,
    keys: LocalKeys | None = None,
) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer an offer: accept the first audio stream with a codec we support.

    The codec is the first one in the offer's order that is in ``supported``; a
    telephone-event format is echoed with the offerer's payload type. ``direction``
    is what we want locally (None = sendrecv); the answer direction is that
    restricted by the offer (RFC 3264 6.1: sendonly -> recvonly, inactive -> inactive).
    Every other stream is rejected with port 0. Raises NoCommonCodec (-> SIP 488)
    when no audio stream has a common codec, SdpError when the offer is unusable.

    SRTP: with ``srtp`` OFF an ``RTP/SAVP`` stream is rejected and crypto lines are ignored;
    otherwise the offerer's first crypto line with a suite of ``keys`` is answered with our key
    for that suite. With REQUIRE a stream without usable crypto is rejected, and SrtpRequired
    raised when that leaves nothing.
    """
    if srtp is not SrtpMode.OFF and keys is None:
        raise ValueError("SRTP needs our local keys")
    wanted = set(supported)
    refused_plain = False
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
        offered = [] if keys is None or srtp is SrtpMode.OFF else _crypto_lines(media, keys.suites)
        proto = media.proto.upper()
        if not offered and (proto == SAVP or srtp is SrtpMode.REQUIRE):
            refused_plain = refused_plain or proto == AVP or srtp is SrtpMode.REQUIRE
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
        keys_agreed = None
        ours_crypto: list[CryptoAttribute] = []
        if offered and keys is not None:
            theirs = offered[0]
            ours_crypto = [CryptoAttribute(theirs.tag, theirs.suite, keys.key(theirs.suite))]
            keys_agreed = SrtpKeys(theirs.suite, keys.key(theirs.suite), theirs.key)
        answer.media.append(
            _audio_media(
                local_host, local_port, [codec], event_pt, ours, ptime, mux, proto, ours_crypto
            )
        )
        negotiated = NegotiatedMedia(
            remote_host=host,
            remote_port=media.port,
            codec=codec,
            telephone_event_pt=event_pt,
            ptime=_sane_ptime(media.ptime()),
            direction=remote_dir,
            rtcp_mux=mux,
            srtp=keys_agreed,
        )
    if negotiated is None:
        if refused_plain:
            raise SrtpRequired("SRTP required: the offer has no usable crypto line")
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
        keys = _answered_keys(offered, media)
        return NegotiatedMedia(
            remote_host=host,
            remote_port=media.port,
            codec=codec,
            telephone_event_pt=event_pt,
            ptime=_sane_ptime(media.ptime()),
            direction=_remote_direction(answer, media, host),
            rtcp_mux=offered.has_attribute("rtcp-mux") and media.has_attribute("rtcp-mux"),
            srtp=keys,
        )
    raise NoCommonCodec("answer rejected every audio stream")


def _answered_keys(offered: MediaDescription, media: MediaDescription) -> SrtpKeys | None:
    """The SRTP keys an answer agreed to: its crypto line naming one of our offered tags with
    the same suite. None for plain RTP; SrtpRequired when we offered RTP/SAVP and got none."""
    ours = {c.tag: c for c in _crypto_lines(offered, tuple(Suite))}
    for name, value in media.attributes:
        if name != "crypto" or value is None:
            continue
        theirs = CryptoAttribute.parse(value)
        mine = None if theirs is None else ours.get(theirs.tag)
        if theirs is not None and mine is not None and mine.suite is theirs.suite:
            return SrtpKeys(mine.suite, mine.key, theirs.key)
    if offered.proto.upper() == SAVP:
        raise SrtpRequired("answer to our RTP/SAVP offer has no usable crypto line")
    return None
