"""DTMF as RFC 4733 telephone-events and as SIP INFO bodies, sans-IO."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pbx.media.rtp import RtpPacket, RtpSender

__all__ = [
    "DIGITS",
    "DtmfDetector",
    "DtmfEvent",
    "build_event",
    "dtmf_packets",
    "parse_event",
    "parse_info_body",
]

DIGITS = "0123456789*#ABCD"  # RFC 4733 event codes 0-15

_EVENT = struct.Struct("!BBH")
_MAX_DURATION = 0xFFFF
_PACKET_INTERVAL_MS = 20
_RETRANSMIT_END = 3


@dataclass(frozen=True)
class DtmfEvent:
    event: int  # 0-255; 0-15 are DIGITS
    end: bool
    volume: int  # 0-63, in -dBm0 (10 means -10 dBm0)
    duration: int  # in RTP timestamp units since the event's timestamp

    @property
    def digit(self) -> str | None:
        return DIGITS[self.event] if self.event < len(DIGITS) else None


def parse_event(payload: bytes) -> DtmfEvent:
    """Parse an RFC 4733 event payload; ValueError if it is shorter than 4 bytes."""
    if len(payload) < _EVENT.size:
        raise ValueError(f"telephone-event payload too short: {len(payload)} bytes")
    event, flags, duration = _EVENT.unpack_from(payload)
    return DtmfEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


def build_event(ev: DtmfEvent) -> bytes:
    if not 0 <= ev.event <= 255:
        raise ValueError(f"event code out of range: {ev.event}")
    if not 0 <= ev.volume <= 63:
        raise ValueError(f"volume out of range: {ev.volume}")
    if not 0 <= ev.duration <= _MAX_DURATION:
        raise ValueError(f"duration out of range: {ev.duration}")
    return _EVENT.pack(ev.event, (0x80 if ev.end else 0) | ev.volume, ev.duration)


class DtmfDetector:
    """Turns a stream of telephone-event packets into digits, each exactly once.

    An event is identified by (SSRC, RTP timestamp). The digit is reported on the
    first packet seen for a new event, whatever kind it is, so a lost start packet
    still yields the digit from an update or end packet; duplicates, redundant end
    packets and late packets of an earlier event are ignored. A long key press that
    the sender splits into 0xFFFF-sample segments (RFC 4733 2.5.1.3) is one digit.
    """

    __slots__ = ("_ssrc", "_timestamp", "_event", "_ended", "_duration")

    def __init__(self) -> None:
        self._ssrc: int | None = None
        self._timestamp = 0
        self._event = -1
        self._ended = True
        self._duration = 0

    def feed(self, packet: RtpPacket) -> str | None:
        try:
            ev = parse_event(packet.payload)
        except ValueError:
            return None
        if packet.ssrc == self._ssrc:
            age = (packet.timestamp - self._timestamp) & 0xFFFFFFFF
            if age == 0 or age >= 0x80000000:  # same event, or an older one arriving late
                if age == 0:
                    self._ended = self._ended or ev.end
                    self._duration = max(self._duration, ev.duration)
                return None
            continuation = (
                age == _MAX_DURATION
                and not packet.marker
                and ev.event == self._event
                and not self._ended
                and self._duration == _MAX_DURATION
            )
        else:
            continuation = False
        self._ssrc = packet.ssrc
        self._timestamp = packet.timestamp
        self._event = ev.event
        self._ended = ev.end
        self._duration = ev.duration
        return None if continuation else ev.digit


def dtmf_packets(
    digit: str,
    sender: RtpSender,
    payload_type: int,
    duration_ms: int = 100,
    rate: int = 8000,
    volume: int = 10,
) -> list[RtpPacket]:
    """RFC 4733 packets for one key press, to be sent one every 20 ms in list order.

    A start packet with the marker bit, updates with growing duration, then three
    end packets; all share the event timestamp (the sender's next timestamp). The
    sender's timestamp is then advanced past the event, so audio sent after these
    packets continues with the correct timestamp (send them instead of audio).
    """
    code = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    total = rate * duration_ms // 1000
    if not 0 < total <= _MAX_DURATION:
        raise ValueError(f"DTMF duration out of range: {duration_ms} ms")
    step = rate * _PACKET_INTERVAL_MS // 1000
    timestamp = sender.next_timestamp
    durations = [(d, False) for d in range(step, total, step)]
    durations += [(total, True)] * _RETRANSMIT_END
    packets = [
        sender.event_packet(
            build_event(DtmfEvent(code, end, volume, duration)),
            payload_type,
            marker=index == 0,
            timestamp=timestamp,
        )
        for index, (duration, end) in enumerate(durations)
    ]
    sender.skip(total)
    return packets


def _signal_to_digit(value: str) -> str | None:
    value = value.strip().upper()
    if len(value) == 1 and value in DIGITS:
        return value
    if value.isdigit() and int(value) < len(DIGITS):  # "10" -> "*", "11" -> "#", ...
        return DIGITS[int(value)]
    return None


def parse_info_body(content_type: str, body: bytes) -> str | None:
    """The digit carried by a SIP INFO body, or None if there is none we understand.

    application/dtmf-relay: "Signal=5\\r\\nDuration=160"; application/dtmf: "5".
    """
    mime = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if mime == "application/dtmf-relay":
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().lower() == "signal":
                return _signal_to_digit(value)
        return None
    if mime == "application/dtmf":
        return _signal_to_digit(text)
    return None
