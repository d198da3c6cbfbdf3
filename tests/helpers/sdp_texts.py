"""SDP texts for the SDP and offer/answer tests: CRLF-joined lines, an audio offer to vary, and
RFC 3264's first example offer."""

from __future__ import annotations

from pbx.media.sdp import SessionDescription


def sdp(text: str) -> str:
    """Test SDP written one line per source line, sent with CRLF like real peers do."""
    return "".join(line.strip() + "\r\n" for line in text.strip().splitlines())


def audio_offer(
    formats: str = "0 8 97",
    extra: str = "",
    *,
    host: str = "IN IP4 192.0.2.10",
    session_extra: str = "",
) -> SessionDescription:
    return SessionDescription.parse(
        sdp(
            f"""
            v=0
            o=alice 2890844526 2890844526 IN IP4 192.0.2.10
            s=-
            c={host}
            t=0 0
            {session_extra}
            m=audio 49170 RTP/AVP {formats}
            a=rtpmap:0 PCMU/8000
            a=rtpmap:8 PCMA/8000
            a=rtpmap:97 telephone-event/8000
            a=fmtp:97 0-16
            {extra}
            """
        )
    )


# RFC 3264 section 10.1, first offer (audio + video)
RFC3264_OFFER = sdp(
    """
    v=0
    o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
    s=
    c=IN IP4 192.0.2.10
    t=0 0
    m=audio 49170 RTP/AVP 0 8 97
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:97 iLBC/8000
    m=video 51372 RTP/AVP 31 32
    a=rtpmap:31 H261/90000
    a=rtpmap:32 MPV/90000
    """
)
