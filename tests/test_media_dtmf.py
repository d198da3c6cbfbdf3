"""DTMF: RFC 4733 events (build/parse, detection dedup, sending) and SIP INFO bodies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.media.dtmf import (
    DIGITS,
    DtmfDetector,
    DtmfEvent,
    build_event,
    dtmf_packets,
    parse_event,
    parse_info_body,
)
from pbx.media.rtp import RtpPacket, RtpSender

PT = 101


def event_packet(
    digit: str,
    timestamp: int,
    *,
    seq: int,
    duration: int = 160,
    end: bool = False,
    marker: bool = False,
    ssrc: int = 0x1234,
) -> RtpPacket:
    payload = build_event(DtmfEvent(DIGITS.index(digit), end, 10, duration))
    return RtpPacket(PT, seq, timestamp, ssrc, payload, marker)


def press(digit: str, timestamp: int, seq: int) -> list[RtpPacket]:
    """A typical 100 ms key press: start, 3 updates, 3 redundant ends."""
    return [
        event_packet(digit, timestamp, seq=seq, marker=True),
        *(event_packet(digit, timestamp, seq=seq + i, duration=160 * (i + 1)) for i in (1, 2, 3)),
        *(event_packet(digit, timestamp, seq=seq + i, duration=800, end=True) for i in (4, 5, 6)),
    ]


def digits_from(packets: list[RtpPacket], detector: DtmfDetector | None = None) -> str:
    detector = detector or DtmfDetector()
    return "".join(d for p in packets if (d := detector.feed(p)) is not None)


def test_event_payload_rfc4733_layout() -> None:
    # event 5, E=1, volume 10, duration 800
    assert build_event(DtmfEvent(5, True, 10, 800)) == bytes([5, 0x80 | 10, 0x03, 0x20])
    assert parse_event(bytes([11, 0x0A, 0x00, 0xA0])) == DtmfEvent(11, False, 10, 160)


def test_event_reserved_bit_is_ignored() -> None:
    assert parse_event(bytes([1, 0xC0 | 7, 0, 1])) == DtmfEvent(1, True, 7, 1)


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x02\x03"])
def test_short_event_payload_raises(payload: bytes) -> None:
    with pytest.raises(ValueError, match="short"):
        parse_event(payload)


@pytest.mark.parametrize(
    "ev",
    [DtmfEvent(256, False, 0, 0), DtmfEvent(1, False, 64, 0), DtmfEvent(1, False, 0, 65536)],
)
def test_build_rejects_out_of_range_fields(ev: DtmfEvent) -> None:
    with pytest.raises(ValueError):
        build_event(ev)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12))
def test_parse_event_fuzz_only_value_error(payload: bytes) -> None:
    try:
        ev = parse_event(payload)
    except ValueError:
        assert len(payload) < 4
        return
    assert build_event(ev) == payload[:1] + bytes([payload[1] & 0xBF]) + payload[2:4]


def test_digits_map_to_event_codes() -> None:
    assert DIGITS == "0123456789*#ABCD"


def test_one_press_gives_one_digit() -> None:
    assert digits_from(press("5", 1000, seq=1)) == "5"


def test_digit_is_reported_on_the_first_packet() -> None:
    detector = DtmfDetector()
    packets = press("9", 1000, seq=1)
    assert detector.feed(packets[0]) == "9"
    assert [detector.feed(p) for p in packets[1:]] == [None] * 6


def test_lost_start_still_yields_exactly_one_digit() -> None:
    packets = press("7", 1000, seq=1)
    assert digits_from(packets[4:]) == "7"  # only the three end packets arrive
    assert digits_from(packets[2:]) == "7"  # start and first update lost


def test_duplicated_and_retransmitted_packets_do_not_repeat_the_digit() -> None:
    packets = press("3", 1000, seq=1)
    assert digits_from(packets + packets + packets[::-1]) == "3"


def test_same_digit_twice_with_different_timestamps_counts_twice() -> None:
    packets = press("1", 1000, seq=1) + press("1", 2600, seq=8)
    assert digits_from(packets) == "11"


def test_sequence_of_digits_with_loss_and_duplicates() -> None:
    a, b, c = press("1", 1000, 1), press("2", 2600, 8), press("#", 4200, 15)
    arriving = a[1:] + a[4:] + b[5:] + c + c[6:]
    assert digits_from(arriving) == "12#"


def test_late_packet_of_an_earlier_event_is_ignored() -> None:
    a, b = press("4", 1000, 1), press("6", 2600, 8)
    assert digits_from(a[:4] + b[:2] + a[4:] + b[2:]) == "46"


def test_timestamp_wraparound_is_a_new_event() -> None:
    a = press("8", 0xFFFFFF00, 1)
    b = press("8", 0x00000300, 8)
    assert digits_from(a + b) == "88"


def test_new_ssrc_is_a_new_event_even_with_the_same_timestamp() -> None:
    a = press("2", 5000, 1)
    b = [event_packet("2", 5000, seq=1, marker=True, ssrc=0x9999)]
    assert digits_from(a + b) == "22"


def test_long_press_split_into_segments_is_one_digit() -> None:
    # RFC 4733 2.5.1.3: after 0xFFFF samples the sender starts a new segment (new
    # timestamp, no marker) for the same key press.
    first = [
        event_packet("0", 1000, seq=1, marker=True),
        event_packet("0", 1000, seq=2, duration=0xFFFF),
    ]
    second = [
        event_packet("0", 1000 + 0xFFFF, seq=3, duration=160),
        event_packet("0", 1000 + 0xFFFF, seq=4, duration=320, end=True),
    ]
    assert digits_from(first + second) == "0"


def test_non_digit_events_and_garbage_payloads_yield_nothing() -> None:
    detector = DtmfDetector()
    flash = RtpPacket(PT, 1, 100, 1, build_event(DtmfEvent(16, False, 10, 160)), True)
    assert detector.feed(flash) is None
    assert detector.feed(RtpPacket(PT, 2, 200, 1, b"\x01")) is None
    assert detector.feed(event_packet("5", 300, seq=3, ssrc=1)) == "5"


def test_dtmf_packets_shape() -> None:
    sender = RtpSender(ssrc=42, sequence=500, timestamp=8000)
    packets = dtmf_packets("#", sender, PT, duration_ms=100)
    events = [parse_event(p.payload) for p in packets]
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp for p in packets} == {8000}
    assert [p.sequence for p in packets] == list(range(500, 507))
    assert {p.payload_type for p in packets} == {PT}
    assert {e.event for e in events} == {11}
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    # audio sent afterwards continues after the event instead of overlapping it
    after = sender.packet(b"\xff" * 160, 0, 160)
    assert (after.sequence, after.timestamp) == (507, 8800)


def test_short_press_has_marker_on_first_end_packet() -> None:
    packets = dtmf_packets("1", RtpSender(1, 1, 1), PT, duration_ms=20)
    assert [p.marker for p in packets] == [True, False, False]
    assert all(parse_event(p.payload).end for p in packets)


@pytest.mark.parametrize("digit", list(DIGITS) + ["a", "d"])
def test_generated_packets_detected_once(digit: str) -> None:
    sender = RtpSender()
    packets = dtmf_packets(digit, sender, PT) + dtmf_packets(digit, sender, PT)
    wire = [RtpPacket.parse(p.to_bytes()) for p in packets]
    assert digits_from(wire) == digit.upper() * 2


@pytest.mark.parametrize("digit", ["", "12", "x", "E"])
def test_dtmf_packets_rejects_non_digits(digit: str) -> None:
    with pytest.raises(ValueError):
        dtmf_packets(digit, RtpSender(), PT)


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("application/dtmf-relay", b"Signal=*\r\nDuration=160", "*"),
        ("application/dtmf-relay", b"Signal=#\r\nDuration=160", "#"),
        ("application/dtmf-relay", b"Signal=10\r\nDuration=160", "*"),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=160", "#"),
        ("application/dtmf-relay", b"Signal=a\nDuration=100", "A"),
        ("Application/DTMF-Relay; charset=utf-8", b"signal = D\r\n", "D"),
        ("application/dtmf-relay", b"Duration=160\r\nSignal=0\r\n", "0"),
        ("application/dtmf", b"5", "5"),
        ("application/dtmf", b"#\r\n", "#"),
        ("application/dtmf", b"11", "#"),
        ("application/dtmf-relay", b"Signal=!\r\n", None),
        ("application/dtmf-relay", b"Signal=16\r\n", None),
        ("application/dtmf-relay", b"Duration=160\r\n", None),
        ("application/dtmf-relay", b"", None),
        ("application/dtmf-relay", b"Signal=\xff", None),
        ("application/dtmf", b"", None),
        ("application/sdp", b"Signal=5", None),
        ("text/plain", b"5", None),
    ],
)
def test_info_bodies(content_type: str, body: bytes, digit: str | None) -> None:
    assert parse_info_body(content_type, body) == digit
