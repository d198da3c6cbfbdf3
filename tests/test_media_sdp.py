"""SDP parsing (RFC 4566) and offer/answer (RFC 3264) for G.711 audio."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.media.g711 import Codec
from pbx.media.offer_answer import NegotiatedMedia, answer_offer, build_offer, parse_answer
from pbx.media.sdp import (
    Direction,
    MediaDescription,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    UnusableAddress,
)


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


# ---------------------------------------------------------------- offer / answer


def test_rfc3264_example_answer() -> None:
    offer = SessionDescription.parse(RFC3264_OFFER)
    answer, media = answer_offer(offer, "192.0.2.20", 49174, session_id=7, version=1)
    # one answer m= line per offered one, same order; video rejected with port 0
    assert [(m.media, m.port) for m in answer.media] == [("audio", 49174), ("video", 0)]
    assert answer.media[0].formats == ["0"]  # PCMU is first in the offer's order
    assert answer.media[0].rtpmaps()[0].encoding == "PCMU"
    assert answer.media[1].formats == ["31"]
    assert (answer.origin.session_id, answer.origin.session_version) == (7, 1)
    assert answer.connection == "192.0.2.20"
    assert media == NegotiatedMedia(
        remote_host="192.0.2.10",
        remote_port=49170,
        codec=Codec.PCMU,
        telephone_event_pt=None,
        ptime=20,
        direction=Direction.SENDRECV,
    )
    assert not media.on_hold


@pytest.mark.parametrize(
    ("formats", "supported", "codec"),
    [
        ("0 8 97", (Codec.PCMA, Codec.PCMU), Codec.PCMU),
        ("8 0 97", (Codec.PCMA, Codec.PCMU), Codec.PCMA),
        ("8 0 97", (Codec.PCMU, Codec.PCMA), Codec.PCMA),
        ("0 8 97", (Codec.PCMA,), Codec.PCMA),
        ("18 3 8", (Codec.PCMA, Codec.PCMU), Codec.PCMA),
    ],
)
def test_codec_is_first_supported_in_offer_order(
    formats: str, supported: tuple[Codec, ...], codec: Codec
) -> None:
    answer, media = answer_offer(audio_offer(formats), "192.0.2.20", 4000, supported=supported)
    assert media.codec is codec
    assert answer.media[0].formats[0] == str(int(codec))


def test_telephone_event_is_echoed_with_offerers_dynamic_pt() -> None:
    offer = audio_offer(
        "8 96",
        "a=rtpmap:96 telephone-event/8000",
    )
    answer, media = answer_offer(offer, "192.0.2.20", 4000)
    assert media.telephone_event_pt == 96
    assert answer.media[0].formats == ["8", "96"]
    assert answer.media[0].rtpmaps()[96].encoding == "telephone-event"
    assert answer.media[0].attribute("fmtp") == "96 0-15"


def test_telephone_event_requires_being_offered_at_8000hz() -> None:
    _, media = answer_offer(audio_offer("0 97"), "192.0.2.20", 4000)
    assert media.telephone_event_pt == 97
    _, media = answer_offer(audio_offer("0"), "192.0.2.20", 4000)  # rtpmap but not in m=
    assert media.telephone_event_pt is None
    wideband = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0 100\r\n"
    offer = SessionDescription.parse(wideband + "a=rtpmap:100 telephone-event/48000\r\n")
    answer, media = answer_offer(offer, "192.0.2.20", 4000)
    assert media.telephone_event_pt is None and answer.media[0].formats == ["0"]


@pytest.mark.parametrize(
    "offer",
    [
        audio_offer("18 97", "a=rtpmap:18 G729/8000"),  # only G.729 + events
        SessionDescription.parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP 0 8\r\n"
            "a=rtpmap:0 G722/8000\r\na=rtpmap:8 PCMA/16000\r\n"
        ),
        SessionDescription.parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 RTP/AVP 31\r\n"
        ),
        SessionDescription.parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 5000 RTP/SAVP 0\r\n"
        ),
        SessionDescription.parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n"
        ),
        SessionDescription.parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n"),
    ],
    ids=["g729-only", "rtpmap-redefines-static", "video-only", "srtp", "port-0", "no-media"],
)
def test_no_common_codec_means_488(offer: SessionDescription) -> None:
    with pytest.raises(NoCommonCodec):
        answer_offer(offer, "192.0.2.20", 4000)
    assert issubclass(NoCommonCodec, SdpError)


def test_only_first_usable_audio_stream_is_accepted() -> None:
    offer = SessionDescription.parse(
        sdp(
            """
            v=0
            o=- 1 1 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=audio 5000 RTP/AVP 18
            m=audio 5002 RTP/AVP 8
            c=IN IP4 192.0.2.2
            m=audio 5004 RTP/AVP 0
            """
        )
    )
    answer, media = answer_offer(offer, "192.0.2.20", 4000)
    assert [m.port for m in answer.media] == [0, 4000, 0]
    assert (media.remote_host, media.remote_port, media.codec) == ("192.0.2.2", 5002, Codec.PCMA)


def test_missing_connection_for_accepted_stream_is_an_error() -> None:
    offer = SessionDescription.parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP 0\r\n")
    with pytest.raises(SdpError, match="c= line"):
        answer_offer(offer, "192.0.2.20", 4000)


@pytest.mark.parametrize(
    ("connection", "reason"),
    [
        ("IN IP4 pbx.example.com", "host names are refused"),
        ("IN IP4 localhost", "host names are refused"),
        ("IN IP6 pbx.example.com", "host names are refused"),
        ("IN IP4 224.2.1.1/127", "multicast"),
        ("IN IP4 239.255.255.250", "multicast"),
        ("IN IP6 ff02::1", "multicast"),
        ("IN IP4 255.255.255.255", "broadcast"),
        ("IN IP4 0.1.2.3", "this network"),
        ("IN IP4 240.0.0.1", "reserved"),
        ("IN IP6 fe80::1", "link-local"),
        ("IN IP6 ::ffff:192.0.2.1", "mapped"),
    ],
)
def test_connection_address_of_no_usable_scope_is_refused(connection: str, reason: str) -> None:
    with pytest.raises(UnusableAddress, match=reason):
        answer_offer(audio_offer(host=connection), "192.0.2.20", 4000)
    ours = build_offer("192.0.2.20", 4000)
    with pytest.raises(UnusableAddress, match=reason):  # a handset's answer, likewise
        parse_answer(audio_offer("0", host=connection), ours)


@pytest.mark.parametrize("connection", ["IN IP4 127.0.0.1", "IN IP4 10.1.2.3", "IN IP6 ::1"])
def test_unicast_connection_addresses_are_accepted(connection: str) -> None:
    _, media = answer_offer(audio_offer(host=connection), "192.0.2.20", 4000)
    assert media.remote_host == connection.split()[-1]


@pytest.mark.parametrize(
    ("extra", "ptime"), [("", 20), ("a=ptime:30", 30), ("a=ptime:10", 10), ("a=ptime:25", 20)]
)
def test_remote_ptime(extra: str, ptime: int) -> None:
    _, media = answer_offer(audio_offer("8", extra), "192.0.2.20", 4000)
    assert media.ptime == ptime


def test_rtcp_mux_only_echoed_when_we_support_it() -> None:
    offer = audio_offer("8", "a=rtcp-mux")
    answer, media = answer_offer(offer, "192.0.2.20", 4000)
    assert not media.rtcp_mux and not answer.media[0].has_attribute("rtcp-mux")
    answer, media = answer_offer(offer, "192.0.2.20", 4000, rtcp_mux=True)
    assert media.rtcp_mux and answer.media[0].has_attribute("rtcp-mux")
    _, media = answer_offer(audio_offer("8"), "192.0.2.20", 4000, rtcp_mux=True)
    assert not media.rtcp_mux


# ---------------------------------------------------------------- hold / resume


@pytest.mark.parametrize(
    ("offer_kwargs", "remote", "answered", "on_hold"),
    [
        ({"extra": "a=sendrecv"}, Direction.SENDRECV, Direction.SENDRECV, False),
        ({}, Direction.SENDRECV, Direction.SENDRECV, False),
        ({"extra": "a=sendonly"}, Direction.SENDONLY, Direction.RECVONLY, True),
        ({"extra": "a=inactive"}, Direction.INACTIVE, Direction.INACTIVE, True),
        ({"extra": "a=recvonly"}, Direction.RECVONLY, Direction.SENDONLY, False),
        ({"session_extra": "a=sendonly"}, Direction.SENDONLY, Direction.RECVONLY, True),
        # RFC 2543 legacy hold: c=0.0.0.0 means "do not send to me"
        ({"host": "IN IP4 0.0.0.0"}, Direction.SENDONLY, Direction.RECVONLY, True),
        (
            {"host": "IN IP4 0.0.0.0", "extra": "a=recvonly"},
            Direction.INACTIVE,
            Direction.INACTIVE,
            True,
        ),
    ],
)
def test_hold_offers_get_complementary_answers(
    offer_kwargs: dict[str, str], remote: Direction, answered: Direction, on_hold: bool
) -> None:
    answer, media = answer_offer(audio_offer("8", **offer_kwargs), "192.0.2.20", 4000)
    assert media.direction is remote
    assert media.on_hold is on_hold
    assert answer.media[0].direction() is answered


def test_hold_then_resume() -> None:
    _, held = answer_offer(audio_offer("8", "a=sendonly"), "192.0.2.20", 4000, version=1)
    answer, resumed = answer_offer(audio_offer("8", "a=sendrecv"), "192.0.2.20", 4000, version=2)
    assert held.on_hold and not resumed.on_hold
    assert answer.media[0].direction() is Direction.SENDRECV


@pytest.mark.parametrize(
    ("offered", "local", "answered"),
    [
        ("a=sendrecv", Direction.SENDONLY, Direction.SENDONLY),  # we hold the caller
        ("a=sendrecv", Direction.INACTIVE, Direction.INACTIVE),
        ("a=sendonly", Direction.SENDONLY, Direction.INACTIVE),
        ("a=recvonly", Direction.RECVONLY, Direction.INACTIVE),
        ("a=sendonly", Direction.SENDRECV, Direction.RECVONLY),
    ],
)
def test_local_direction_is_limited_by_the_offer(
    offered: str, local: Direction, answered: Direction
) -> None:
    answer, _ = answer_offer(audio_offer("8", offered), "192.0.2.20", 4000, direction=local)
    assert answer.media[0].direction() is answered


# ---------------------------------------------------------------- our offers, their answers


def test_build_offer_contents() -> None:
    offer = build_offer("127.0.0.1", 30000, session_id=42, version=3)
    text = offer.to_bytes().decode()
    assert text.startswith(
        "v=0\r\no=- 42 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    )
    assert "m=audio 30000 RTP/AVP 8 0 101\r\n" in text
    for line in (
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    ):
        assert line + "\r\n" in text
    assert SessionDescription.parse(text) == offer


def test_build_offer_options() -> None:
    offer = build_offer(
        "::1",
        30000,
        codecs=[Codec.PCMU],
        telephone_event_pt=None,
        direction=Direction.SENDONLY,
        ptime=30,
    )
    media = offer.media[0]
    assert media.formats == ["0"]
    assert media.direction() is Direction.SENDONLY
    assert media.ptime() == 30
    assert b"c=IN IP6 ::1\r\n" in offer.to_bytes()
    with pytest.raises(ValueError):
        build_offer("127.0.0.1", 1, codecs=[])
    with pytest.raises(ValueError):
        build_offer("127.0.0.1", 1, telephone_event_pt=8)


@pytest.mark.parametrize("supported", [(Codec.PCMA, Codec.PCMU), (Codec.PCMU,)])
def test_offer_answer_round_trip(supported: tuple[Codec, ...]) -> None:
    offer = build_offer("127.0.0.1", 30000)
    answer, theirs = answer_offer(
        SessionDescription.parse(offer.to_bytes()), "127.0.0.2", 40000, supported=supported
    )
    ours = parse_answer(SessionDescription.parse(answer.to_bytes()), offer)
    assert ours.codec is theirs.codec is supported[0]
    assert (ours.remote_host, ours.remote_port) == ("127.0.0.2", 40000)
    assert (theirs.remote_host, theirs.remote_port) == ("127.0.0.1", 30000)
    assert ours.telephone_event_pt == theirs.telephone_event_pt == 101
    assert ours.direction is theirs.direction is Direction.SENDRECV


def test_parse_answer_hold_and_rejection() -> None:
    offer = build_offer("127.0.0.1", 30000)
    answer, _ = answer_offer(
        SessionDescription.parse(offer.to_bytes()), "127.0.0.2", 40000, direction=Direction.SENDONLY
    )
    assert parse_answer(answer, offer).on_hold
    rejected = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\nc=IN IP4 127.0.0.2\r\nm=audio 0 RTP/AVP 8\r\n"
    )
    with pytest.raises(NoCommonCodec):
        parse_answer(rejected, offer)
    unoffered = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\nc=IN IP4 127.0.0.2\r\nm=audio 5 RTP/AVP 18\r\n"
    )
    with pytest.raises(NoCommonCodec):
        parse_answer(unoffered, offer)
    two_lines = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\nc=IN IP4 127.0.0.2\r\n"
        "m=audio 5 RTP/AVP 8\r\nm=audio 7 RTP/AVP 8\r\n"
    )
    with pytest.raises(SdpError, match="m= lines"):
        parse_answer(two_lines, offer)


def test_parse_answer_ignores_unoffered_telephone_event() -> None:
    offer = build_offer("127.0.0.1", 30000, telephone_event_pt=None)
    answer = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\nc=IN IP4 127.0.0.2\r\nm=audio 5 RTP/AVP 8 101\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
    )
    assert parse_answer(answer, offer).telephone_event_pt is None


# ---------------------------------------------------------------- real peers' SDP


def test_answers_pyvoip_offer_and_pyvoip_understands_our_sdp() -> None:
    import pyVoIP.VoIP  # noqa: F401  (pyVoIP.SIP has a circular import; load the package first)
    from pyVoIP import RTP
    from pyVoIP.SIP import SIPClient, SIPMessage

    client = SIPClient(  # builds messages only; no socket until start()
        "127.0.0.1",
        5060,
        "volunteer",
        "pw",
        phone=None,  # type: ignore[arg-type]
        myIP="127.0.0.1",
        myPort=5062,
    )
    formats = {0: RTP.PayloadType.PCMU, 8: RTP.PayloadType.PCMA, 101: RTP.PayloadType.EVENT}
    invite = client.gen_invite(
        "0900",
        "1234",
        {40000: formats},  # type: ignore[dict-item]
        RTP.TransmitType.SENDRECV,
        "z9hG4bKtest",
        "call-1",
    )
    offer = SessionDescription.parse(invite.split("\r\n\r\n", 1)[1])
    answer, media = answer_offer(offer, "127.0.0.2", 30000)
    assert (media.remote_host, media.remote_port, media.codec) == ("127.0.0.1", 40000, Codec.PCMU)
    assert media.telephone_event_pt == 101

    body = answer.to_bytes()
    message = SIPMessage(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKtest\r\n"
        b"From: <sip:volunteer@127.0.0.1>;tag=1\r\nTo: <sip:0900@127.0.0.1>;tag=2\r\n"
        b"Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    (stream,) = message.body["m"]
    assert stream["port"] == 30000
    assert stream["methods"] == ["0", "101"]
    assert stream["attributes"]["0"]["rtpmap"]["name"] == "PCMU"
    assert message.body["c"][0]["address"] == "127.0.0.2"
    assert str(message.body["a"]["transmit_type"]) == "sendrecv"


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
def test_answers_sipp_builtin_uac_offer() -> None:
    dump = subprocess.run(["sipp", "-sd", "uac"], capture_output=True, text=True, timeout=10)
    match = re.search(r"(v=0.*?)\]\]>", dump.stdout, re.S)
    assert match is not None
    template = "".join(
        line.strip() + "\r\n" for line in match.group(1).splitlines() if line.strip()
    )
    text = (
        template.replace("[local_ip_type]", "4")
        .replace("[media_ip_type]", "4")
        .replace("[local_ip]", "127.0.0.1")
        .replace("[media_ip]", "127.0.0.1")
        .replace("[media_port]", "6000")
    )
    _, media = answer_offer(SessionDescription.parse(text), "127.0.0.2", 30000)
    assert (media.remote_host, media.remote_port, media.codec) == ("127.0.0.1", 6000, Codec.PCMU)
    assert media.telephone_event_pt is None


def test_media_description_is_constructible_directly() -> None:
    media = MediaDescription("audio", 4000, "RTP/AVP", ["8"], "192.0.2.9", [("sendonly", None)])
    session = SessionDescription(media=[media])
    parsed = SessionDescription.parse(session.to_bytes())
    assert parsed.media[0].connection == "192.0.2.9"
    assert parsed.media_direction(parsed.media[0]) is Direction.SENDONLY
