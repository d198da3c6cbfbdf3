"""RTP packet codec (RFC 3550), RTCP demux (RFC 5761) and sender state."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.media.rtp import RtpError, RtpPacket, RtpSender, is_rtcp


def header(
    *,
    version: int = 2,
    padding: bool = False,
    extension: bool = False,
    cc: int = 0,
    marker: bool = False,
    pt: int = 0,
    seq: int = 1,
    ts: int = 160,
    ssrc: int = 0x11223344,
) -> bytes:
    b0 = (version << 6) | (0x20 if padding else 0) | (0x10 if extension else 0) | cc
    b1 = (0x80 if marker else 0) | pt
    return struct.pack("!BBHII", b0, b1, seq, ts, ssrc)


def test_parse_plain_packet() -> None:
    data = header(pt=8, seq=0xBEEF, ts=0xDEADBEEF, marker=True) + b"\xd5" * 160
    pkt = RtpPacket.parse(data)
    assert pkt == RtpPacket(8, 0xBEEF, 0xDEADBEEF, 0x11223344, b"\xd5" * 160, marker=True)
    assert pkt.to_bytes() == data


def test_parse_csrcs_extension_and_padding() -> None:
    csrcs = struct.pack("!II", 1, 2)
    ext = struct.pack("!HH", 0xBEDE, 2) + b"\x10\xff\x00\x00" + b"\x00" * 4
    data = header(cc=2, extension=True, padding=True) + csrcs + ext + b"abc" + b"\x00\x00\x03"
    pkt = RtpPacket.parse(data)
    assert pkt.csrcs == (1, 2)
    assert pkt.extension == (0xBEDE, b"\x10\xff\x00\x00" + b"\x00" * 4)
    assert pkt.payload == b"abc"
    # serialising drops the padding but keeps everything else
    assert RtpPacket.parse(pkt.to_bytes()) == pkt


def test_payload_may_be_empty() -> None:
    assert RtpPacket.parse(header()).payload == b""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (header()[:11], "too short"),
        (header(version=1), "version"),
        (header(version=3), "version"),
        (header(cc=3) + b"\x00" * 8, "CSRC"),
        (header(extension=True) + b"\xbe\xde", "extension"),
        (header(extension=True) + b"\xbe\xde\x00\x02" + b"\x00" * 4, "extension"),
        (header(padding=True) + b"ab\x00", "padding"),
        (header(padding=True) + b"ab\x04", "padding"),
    ],
)
def test_malformed_packets_raise_rtp_error(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        RtpPacket.parse(data)


def test_rtp_error_is_a_value_error() -> None:
    assert issubclass(RtpError, ValueError)


@pytest.mark.parametrize(
    "pkt",
    [
        RtpPacket(128, 0, 0, 0, b""),
        RtpPacket(0, 70000, 0, 0, b""),
        RtpPacket(0, 0, 2**32, 0, b""),
        RtpPacket(0, 0, 0, -1, b""),
        RtpPacket(0, 0, 0, 0, b"", csrcs=tuple(range(16))),
        RtpPacket(0, 0, 0, 0, b"", extension=(1, b"abc")),
    ],
)
def test_unserialisable_packets_raise_rtp_error(pkt: RtpPacket) -> None:
    with pytest.raises(RtpError):
        pkt.to_bytes()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_parse_arbitrary_bytes_only_raises_rtp_error(data: bytes) -> None:
    try:
        pkt = RtpPacket.parse(data)
    except RtpError:
        return
    assert RtpPacket.parse(pkt.to_bytes()) == pkt


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=12, max_size=80).map(lambda b: bytes([0x80 | (b[0] & 0x3F)]) + b[1:]))
def test_parse_version2_garbage_only_raises_rtp_error(data: bytes) -> None:
    # Version-2 headers with random flags, counts and lengths reach the deeper checks.
    with contextlib.suppress(RtpError):
        RtpPacket.parse(data)


@settings(max_examples=200, deadline=None)
@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
)
def test_round_trip(
    pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool, csrcs: tuple[int, ...]
) -> None:
    pkt = RtpPacket(pt, seq, ts, ssrc, payload, marker, csrcs)
    assert RtpPacket.parse(pkt.to_bytes()) == pkt


@pytest.mark.parametrize(
    ("second_byte", "rtcp"),
    [
        (200, True),
        (201, True),
        (192, True),
        (223, True),
        (0, False),
        (8, False),
        (0x80 | 101, False),
        (191, False),
        (224, False),
    ],
)
def test_rtcp_demux_by_second_byte(second_byte: int, rtcp: bool) -> None:
    assert is_rtcp(bytes([0x80, second_byte]) + b"\x00" * 10) is rtcp


def test_rtcp_demux_on_real_packets() -> None:
    # RTCP receiver report header: V=2, RC=0, PT=201, length=1, SSRC
    assert is_rtcp(struct.pack("!BBHI", 0x80, 201, 1, 42))
    assert not is_rtcp(RtpPacket(0, 1, 2, 3, b"x", marker=True).to_bytes())
    assert not is_rtcp(b"\x80")


def test_sender_stamps_then_advances() -> None:
    sender = RtpSender(ssrc=7, sequence=100, timestamp=1000)
    first = sender.packet(b"a" * 160, 8, 160, marker=True)
    second = sender.packet(b"b" * 160, 8, 160)
    assert (first.sequence, first.timestamp, first.marker, first.ssrc) == (100, 1000, True, 7)
    assert (second.sequence, second.timestamp, second.marker) == (101, 1160, False)
    assert sender.next_timestamp == 1320


def test_sender_wraps_sequence_and_timestamp() -> None:
    sender = RtpSender(ssrc=1, sequence=0xFFFF, timestamp=0xFFFFFF00)
    a = sender.packet(b"", 0, 0x100)
    b = sender.packet(b"", 0, 0x100)
    assert (a.sequence, a.timestamp) == (0xFFFF, 0xFFFFFF00)
    assert (b.sequence, b.timestamp) == (0, 0)


def test_event_packets_advance_sequence_but_not_timestamp() -> None:
    sender = RtpSender(ssrc=1, sequence=10, timestamp=500)
    e1 = sender.event_packet(b"\x01\x0a\x00\xa0", 101, True, 480)
    e2 = sender.event_packet(b"\x01\x8a\x01\x40", 101, False, 480)
    assert (e1.sequence, e1.timestamp, e1.marker) == (10, 480, True)
    assert (e2.sequence, e2.timestamp, e2.marker) == (11, 480, False)
    assert sender.next_timestamp == 500
    assert sender.packet(b"", 0, 160).sequence == 12


def test_sender_initial_values_are_random_when_not_given() -> None:
    senders = [RtpSender() for _ in range(8)]
    assert len({s.ssrc for s in senders}) > 1
    assert len({s.next_timestamp for s in senders}) > 1
    assert len({s.packet(b"", 0, 160).sequence for s in senders}) > 1
    assert all(0 <= s.ssrc <= 0xFFFFFFFF for s in senders)


def test_packet_bytes_matches_packet_to_bytes_and_advances_the_same() -> None:
    fast, slow = RtpSender(9, 0xFFFF, 0xFFFFFF60), RtpSender(9, 0xFFFF, 0xFFFFFF60)
    for marker in (True, False, False):
        assert fast.packet_bytes(b"\xd5" * 160, 8, 160, marker) == (
            slow.packet(b"\xd5" * 160, 8, 160, marker).to_bytes()
        )
    assert fast.next_timestamp == slow.next_timestamp == 0x140
    assert fast.next_sequence == slow.next_sequence == 2
