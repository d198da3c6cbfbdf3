"""G.711 (and RTP packet) throughput, in "streams' worth": 160-byte (20 ms) frames per second / 50.

Run: .venv/bin/python bench/bench_g711.py [--seconds 1.0]
One stream needs 50 frames/s in each direction; a relay that transcodes needs one
transcode per frame, a mixer/player needs decode and/or encode.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from pbx.media import g711
from pbx.media.g711 import Codec
from pbx.media.rtp import RtpPacket, RtpSender
from pbx.media.tones import dual_tone

FRAME_SAMPLES = 160
FRAMES_PER_STREAM = 50  # per second, 20 ms ptime


def measure(fn: Callable[[bytes], bytes], frame: bytes, seconds: float) -> float:
    """Frames per second of ``fn`` on one core."""
    count = 0
    batch = 1000
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn(frame)
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()

    pcm = dual_tone(697, 1209, 20, amplitude=0.5)  # one 20 ms frame of speech-like level
    assert len(pcm) == 2 * FRAME_SAMPLES
    ulaw = g711.ulaw_encode(pcm)
    alaw = g711.alaw_encode(pcm)
    cases: list[tuple[str, Callable[[bytes], bytes], bytes]] = [
        ("ulaw_encode", g711.ulaw_encode, pcm),
        ("alaw_encode", g711.alaw_encode, pcm),
        ("ulaw_decode", g711.ulaw_decode, ulaw),
        ("alaw_decode", g711.alaw_decode, alaw),
        ("transcode PCMA->PCMU", lambda d: g711.transcode(d, Codec.PCMA, Codec.PCMU), alaw),
        ("transcode PCMU->PCMA", lambda d: g711.transcode(d, Codec.PCMU, Codec.PCMA), ulaw),
    ]
    sender = RtpSender()
    wire = sender.packet(alaw, Codec.PCMA, FRAME_SAMPLES).to_bytes()
    cases += [
        ("RtpPacket.parse", lambda d: RtpPacket.parse(d).payload, wire),
        ("RtpSender.packet_bytes", lambda d: sender.packet_bytes(d, 8, FRAME_SAMPLES, False), alaw),
    ]
    print(f"{'operation':<22} {'frames/s':>12} {'us/frame':>9} {'streams':>9}  (one core)")
    for name, fn, frame in cases:
        fps = measure(fn, frame, args.seconds)
        print(f"{name:<22} {fps:12.0f} {1e6 / fps:9.2f} {fps / FRAMES_PER_STREAM:9.0f}")


if __name__ == "__main__":
    main()
