"""RFC 3264 offer/answer for G.711 audio: what a peer's session description means for a call
(address, codec, DTMF events, packet time, direction), and the descriptions we send.
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

DEFAULT_PTIME = 20
TELEPHONE_EVENT = "telephone-event"
_AUDIO_PROTOS = frozenset({"RTP/AVP"})
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
