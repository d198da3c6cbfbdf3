"""SDP offer/answer (RFC 3264) for G.711 audio: answers, hold and resume, our offers and their
answers, and real peers' SDP."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

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
from tests.helpers.sdp_texts import RFC3264_OFFER, audio_offer, sdp

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
