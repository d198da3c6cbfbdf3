"""SDP parsing (RFC 4566) for G.711 audio; offer/answer is in test_media_offer_answer.py."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.media.offer_answer import answer_offer, parse_answer
from pbx.media.sdp import (
    Direction,
    SdpError,
    SessionDescription,
)
from tests.helpers.sdp_texts import RFC3264_OFFER, sdp

# ---------------------------------------------------------------- parsing


def test_rfc3264_offer_parses_and_round_trips_exactly() -> None:
    offer = SessionDescription.parse(RFC3264_OFFER)
    assert offer.origin.username == "alice"
    assert offer.origin.session_version == 2890844526
    assert offer.connection == "192.0.2.10"  # a name is fine in o=, never in c=
    audio, video = offer.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        49170,
        "RTP/AVP",
        ["0", "8", "97"],
    )
    assert audio.rtpmaps()[97].encoding == "iLBC"
    assert video.media == "video" and video.formats == ["31", "32"]
    assert offer.to_bytes() == RFC3264_OFFER.encode()
    assert SessionDescription.parse(offer.to_bytes().decode()) == offer


def test_attributes_with_and_without_values_and_unknown_lines_are_kept() -> None:
    text = sdp(
        """
        v=0
        o=- 1 2 IN IP4 192.0.2.1
        s=call
        i=session info
        c=IN IP4 192.0.2.1
        b=AS:64
        t=0 0
        a=tool:helpline
        a=recvonly
        m=audio 4000 RTP/AVP 8 101
        i=audio stream
        c=IN IP4 192.0.2.2
        b=TIAS:64000
        y=an extension line
        a=rtpmap:101 telephone-event/8000
        a=rtcp-mux
        a=rtcp:4001 IN IP4 192.0.2.2
        a=empty:
        a=ptime:20
        """
    )
    parsed = SessionDescription.parse(text)
    media = parsed.media[0]
    assert parsed.attributes == [("tool", "helpline"), ("recvonly", None)]
    assert parsed.direction() is Direction.RECVONLY
    assert media.attribute("rtcp-mux") == "" and media.has_attribute("rtcp-mux")
    assert media.attribute("rtcp") == "4001 IN IP4 192.0.2.2"
    assert media.attribute("empty") == ""
    assert media.attribute("missing") is None
    assert media.connection == "192.0.2.2"
    assert ("y", "an extension line") in media.other
    assert ("b", "AS:64") in parsed.other
    assert parsed.to_bytes() == text.encode()


def test_ipv6_connection_and_origin() -> None:
    text = sdp(
        """
        v=0
        o=- 5 5 IN IP6 2001:db8::1
        s=-
        c=IN IP6 2001:db8::1
        t=0 0
        m=audio 6000 RTP/AVP 0
        """
    )
    parsed = SessionDescription.parse(text)
    assert parsed.connection == "2001:db8::1"
    assert parsed.to_bytes() == text.encode()
    _, media = answer_offer(parsed, "::1", 7000)
    assert media.remote_host == "2001:db8::1"


def test_lf_only_line_endings_and_blank_lines_are_accepted() -> None:
    text = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n\nm=audio 5 RTP/AVP 0"
    assert SessionDescription.parse(text.encode()).media[0].port == 5


def test_multiple_media_and_port_count() -> None:
    parsed = SessionDescription.parse(
        sdp(
            """
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            t=0 0
            m=audio 5000/2 RTP/AVP 0
            c=IN IP4 192.0.2.1
            m=video 0 RTP/AVP 31
            m=application 9 TCP/BFCP *
            """
        )
    )
    assert [m.media for m in parsed.media] == ["audio", "video", "application"]
    assert parsed.media[0].port_count == 2
    assert parsed.media[2].formats == ["*"]
    assert parsed.connection is None and parsed.media[0].connection == "192.0.2.1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("\r\n\r\n", "empty"),
        ("o=- 1 1 IN IP4 1.2.3.4\r\n", "start with v="),
        ("v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n", "version"),
        ("v=0\r\ns=-\r\n", "no o= line"),
        ("v=0\r\nv=0\r\n", "duplicate"),
        ("v=0\r\nhello\r\n", "malformed"),
        ("v=0\r\nA=b\r\n", "malformed"),
        ("v=0\r\n a=b\r\n", "malformed"),
        ("v=0\r\no=- 1 1 IN IP4\r\n", "6 fields"),
        ("v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n", "session id"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n", "3 fields"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=ATM IP4 1.2.3.4\r\n", "network type"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IPX 1.2.3.4\r\n", "address type"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 300.1.2.3\r\n", "IPv4"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 ::1\r\n", "IPv4"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP6 1::2::3\r\n", "IPv6"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\n", "duplicate"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP\r\n", "m= needs"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n", "port out of range"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio -1 RTP/AVP 0\r\n", "port"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio ² RTP/AVP 0\r\n", "port"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio \u0663 RTP/AVP 0\r\n", "port"),  # Arabic 3
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 128\r\n", "payload type"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP x\r\n", "payload type"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\ns=-\r\n", "media level"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=\r\n", "attribute name"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=:x\r\n", "attribute name"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=rtpmap:abc\r\n", "rtpmap"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=rtpmap:101 telephone-event\r\n", "rtpmap"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=rtpmap:200 x/8000\r\n", "payload type"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=ptime:abc\r\n", "ptime"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=ptime:1e400\r\n", "ptime"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=ptime:0\r\n", "ptime"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=a\x00b\r\n", "control character"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=a\rb\r\n", "control character"),
        ("v=0\r\no=- " + "9" * 5000 + " 1 IN IP4 1.2.3.4\r\n", "session id"),
    ],
)
def test_malformed_sdp_raises_sdp_error(text: str, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        SessionDescription.parse(text)


def test_non_utf8_and_oversized_input_raise_sdp_error() -> None:
    with pytest.raises(SdpError, match="UTF-8"):
        SessionDescription.parse(b"v=0\r\ns=\xff\r\n")
    with pytest.raises(SdpError, match="UTF-8"):
        SessionDescription.parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\ud800\r\n")
    with pytest.raises(SdpError, match="larger"):
        SessionDescription.parse(b"v=0\r\n" + b"a=x\r\n" * 20000)


SDP_LINES = [
    "v=0",
    "o=- 1 1 IN IP4 192.0.2.1",
    "o=- 1 1 IN IP6 ::1",
    "s=-",
    "c=IN IP4 192.0.2.1",
    "c=IN IP6 2001:db8::5",
    "c=IN IP4 0.0.0.0",
    "t=0 0",
    "m=audio 4000 RTP/AVP 0 8 101",
    "m=video 0 RTP/AVP 31",
    "m=audio 4002 RTP/SAVP 0",
    "a=rtpmap:101 telephone-event/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 G729/8000",
    "a=fmtp:101 0-15",
    "a=ptime:30",
    "a=sendonly",
    "a=inactive",
    "a=rtcp-mux",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_fuzz_bytes_or_text_only_sdp_error(data: bytes | str) -> None:
    with contextlib.suppress(SdpError):
        SessionDescription.parse(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(SDP_LINES),
            # a valid line with some characters replaced, dropped or added
            st.tuples(
                st.sampled_from(SDP_LINES),
                st.integers(0, 40),
                st.text(alphabet="0123456789 :/=.-abcIPN*\t\x00é", max_size=4),
                st.integers(0, 3),
            ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + t[3] :]),
        ),
        max_size=14,
    )
)
def test_fuzz_structured_only_sdp_error_and_round_trip(lines: list[str]) -> None:
    text = "\r\n".join(["v=0", "o=- 1 1 IN IP4 192.0.2.1", *lines]) + "\r\n"
    try:
        parsed = SessionDescription.parse(text)
    except SdpError:
        return
    # serialising is stable (to_bytes only adds a missing mandatory t= line)
    assert SessionDescription.parse(parsed.to_bytes()).to_bytes() == parsed.to_bytes()
    try:
        answer, media = answer_offer(parsed, "127.0.0.1", 20000)
    except SdpError:  # includes NoCommonCodec
        return
    assert len(answer.media) == len(parsed.media)
    assert SessionDescription.parse(answer.to_bytes()) == answer
    assert parse_answer(SessionDescription.parse(answer.to_bytes()), parsed).codec is media.codec
