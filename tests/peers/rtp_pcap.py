"""Builds pcap files of RTP for sipp's ``play_pcap_audio``: G.711 tones and RFC 4733 digits.

sipp 3.6.1 replays the UDP payloads of a pcap to the media address/port of the peer's SDP,
from its own ``-mi``/``-mp`` address, keeping the recorded timing and the RTP headers as they
are. So the payload type in the file must be the one the peer negotiated (0 for PCMU, 8 for
PCMA, 101 for telephone-event in our scenarios). The IP/UDP addresses inside the file do not
matter (127.0.0.1 here). Replaying uses a raw socket: sipp needs root or CAP_NET_RAW.

Deliberately independent of pbx.media (own G.711 encoder, own RTP packing) so a bug in the
code under test cannot cancel itself out in the stimulus.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PT_PCMU = 0
PT_PCMA = 8
PT_TELEPHONE_EVENT = 101
DTMF_CODES = {d: i for i, d in enumerate("0123456789*#ABCD")}
_FRAME = 160  # samples per 20 ms packet at 8 kHz


@dataclass(frozen=True)
class RtpOut:
    at_ms: float  # send time relative to the start of the file
    payload_type: int
    seq: int
    timestamp: int
    marker: bool
    payload: bytes
    ssrc: int = 0x48454C50  # "HELP"

    def encode(self) -> bytes:
        b1 = (0x80 if self.marker else 0) | self.payload_type
        return (
            struct.pack(
                "!BBHII", 0x80, b1, self.seq & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc
            )
            + self.payload
        )


def linear_to_ulaw(sample: int) -> int:
    """One 16-bit sample to mu-law (ITU-T G.711, the classic bias-and-segment method)."""
    sign = 0x80 if sample < 0 else 0
    mag = min(abs(sample), 32635) + 0x84
    exp = 7
    while exp > 0 and not mag & (0x4000 >> (7 - exp)):
        exp -= 1
    mant = (mag >> (exp + 3)) & 0x0F
    return ~(sign | (exp << 4) | mant) & 0xFF


def linear_to_alaw(sample: int) -> int:
    sign = 0x00 if sample < 0 else 0x80
    mag = min(abs(sample), 32767) >> 3
    if mag < 32:
        code = mag >> 1
    else:
        exp = mag.bit_length() - 5
        code = (exp << 4) | ((mag >> exp) & 0x0F)
    return (sign | code) ^ 0x55


def tone_samples(
    freq_hz: float, duration_ms: int, amplitude: float = 0.3, freq2_hz: float | None = None
) -> list[int]:
    n = 8 * duration_ms
    peak = amplitude * 32767 / (2 if freq2_hz else 1)
    out = []
    for i in range(n):
        v = math.sin(2 * math.pi * freq_hz * i / 8000)
        if freq2_hz:
            v += math.sin(2 * math.pi * freq2_hz * i / 8000)
        out.append(round(peak * v))
    return out


def g711_packets(
    samples: Sequence[int],
    *,
    payload_type: int = PT_PCMU,
    start_ms: float = 0,
    seq: int = 1000,
    timestamp: int = 0,
) -> list[RtpOut]:
    enc = linear_to_ulaw if payload_type == PT_PCMU else linear_to_alaw
    pkts = []
    for k in range(0, len(samples) - _FRAME + 1, _FRAME):
        body = bytes(enc(s) for s in samples[k : k + _FRAME])
        pkts.append(
            RtpOut(
                start_ms + 20 * (k // _FRAME),
                payload_type,
                seq + k // _FRAME,
                timestamp + k,
                k == 0,
                body,
            )
        )
    return pkts


def dtmf_packets(
    digits: str,
    *,
    payload_type: int = PT_TELEPHONE_EVENT,
    start_ms: float = 0,
    seq: int = 5000,
    timestamp: int = 80000,
    tone_ms: int = 160,
    gap_ms: int = 200,
    volume: int = 10,
) -> list[RtpOut]:
    """RFC 4733 events: per digit a marker packet, updates every 20 ms, three end packets."""
    pkts: list[RtpOut] = []
    at = start_ms
    for d in digits:
        code = DTMF_CODES[d.upper()]
        steps = max(1, tone_ms // 20)
        for i in range(1, steps + 1):
            body = struct.pack("!BBH", code, volume & 0x3F, i * _FRAME)
            pkts.append(RtpOut(at, payload_type, seq, timestamp, i == 1, body))
            seq += 1
            at += 20
        end = struct.pack("!BBH", code, 0x80 | (volume & 0x3F), steps * _FRAME)
        for _ in range(3):  # the end packet is sent three times (RFC 4733 2.5.1.4)
            pkts.append(RtpOut(at, payload_type, seq, timestamp, False, end))
            seq += 1
        at += gap_ms
        timestamp += 8 * (steps * 20 + gap_ms)
    return pkts


def write_pcap(
    path: Path | str, packets: Iterable[RtpOut], *, src_port: int = 6000, dst_port: int = 7000
) -> Path:
    """Ethernet/IPv4/UDP pcap (libpcap classic format) of the RTP packets, 127.0.0.1 both ways."""
    path = Path(path)
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    base = 1_700_000_000.0
    for p in sorted(packets, key=lambda p: p.at_ms):
        rtp = p.encode()
        udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(rtp), 0) + rtp
        ip_hdr = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            0,
            0x4000,
            64,
            17,
            0,
            bytes([127, 0, 0, 1]),
            bytes([127, 0, 0, 1]),
        )
        csum = _ip_checksum(ip_hdr)
        ip_hdr = ip_hdr[:10] + struct.pack("!H", csum) + ip_hdr[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + ip_hdr + udp
        t = base + p.at_ms / 1000
        sec = int(t)
        usec = int(round((t - sec) * 1_000_000))
        out += struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))
    return path


def _ip_checksum(hdr: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def media_pcap(
    path: Path | str,
    *,
    tone_hz: float | None = 1000,
    tone_ms: int = 1000,
    digits: str = "",
    payload_type: int = PT_PCMU,
    event_payload_type: int = PT_TELEPHONE_EVENT,
    lead_ms: int = 0,
    digits_first: bool = False,
) -> Path:
    """One pcap with an optional G.711 tone followed by RFC 4733 digits: what a caller does
    in an IVR (speaks/plays, then presses keys). With ``digits_first`` the keys come first and
    the tone after them (a caller who picks a menu option, then talks to the volunteer).
    Total length: ``pcap_duration_ms``."""
    pkts: list[RtpOut] = []
    at = float(lead_ms)
    ts = 0
    if digits_first and digits and tone_hz:
        keys = dtmf_packets(digits, payload_type=event_payload_type, start_ms=at, timestamp=0)
        after = keys[-1].at_ms + 200
        tone = g711_packets(
            tone_samples(tone_hz, tone_ms), payload_type=payload_type, start_ms=after,
            seq=keys[-1].seq + 1, timestamp=keys[-1].timestamp + 8 * int(after - at),
        )  # fmt: skip
        return write_pcap(path, keys + tone)
    if tone_hz:
        pkts += g711_packets(tone_samples(tone_hz, tone_ms), payload_type=payload_type, start_ms=at)
        at += tone_ms
        ts += 8 * tone_ms
    if digits:
        pkts += dtmf_packets(
            digits, payload_type=event_payload_type, start_ms=at + 100, timestamp=ts + 800
        )
    if not pkts:
        raise ValueError("nothing to play: no tone and no digits")
    return write_pcap(path, pkts)


def pcap_duration_ms(path: Path | str) -> float:
    """Time from the first to the last packet of a pcap written by write_pcap."""
    data = Path(path).read_bytes()
    off, first, last = 24, None, 0.0
    while off + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[off : off + 16])
        t = sec * 1000 + usec / 1000
        first = t if first is None else first
        last = t
        off += 16 + incl
    return 0.0 if first is None else last - first


def write_ulaw(path: Path | str, samples: Sequence[int]) -> Path:
    """Raw G.711 mu-law file (no header) for sipp's rtp_stream (uac_call_rtpstream.xml)."""
    path = Path(path)
    path.write_bytes(bytes(linear_to_ulaw(s) for s in samples))
    return path
