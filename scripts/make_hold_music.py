#!/usr/bin/env python3
"""Synthesise the helpline's music on hold: recordings/hold_music.wav, the same every run.

A calm 32-second loop in C major (C, A minor, F, G, each bar twice): a soft plucked
arpeggio over a sustained pad, in telephony format (8 kHz, mono, 16-bit PCM, peak -3 dBFS,
everything below 2 kHz so G.711 carries it cleanly). Pure arithmetic, stdlib only: no samples
from anywhere. The project made it, and dedicates it to the public domain (CC0 1.0): anyone may
use, change and share it.

Replace it with your own (a freely licensed track) with:
    .venv/bin/helpline prompts convert my-music.mp3 recordings/hold_music.wav --keep-silence

Usage: scripts/make_hold_music.py [OUT]   (default: recordings/hold_music.wav)
"""

from __future__ import annotations

import math
import sys
import wave
from array import array
from pathlib import Path

RATE = 8000
BAR_SECONDS = 2.0
NOTE_SECONDS = BAR_SECONDS / 8  # eighth notes
PEAK = 0.708  # -3 dBFS, as the prompts
# (root of the pad, arpeggio notes) per bar, as MIDI note numbers
CHORDS = [
    (48, (60, 64, 67, 72, 67, 64, 60, 64)),  # C
    (45, (57, 60, 64, 69, 64, 60, 57, 60)),  # A minor
    (41, (53, 57, 60, 65, 60, 57, 53, 57)),  # F
    (43, (55, 59, 62, 67, 62, 59, 55, 59)),  # G
]
BARS = [*CHORDS, *CHORDS, *CHORDS, *CHORDS]  # 16 bars, 32 seconds


def hz(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def pluck(out: list[float], start: int, freq: float, level: float) -> None:
    """A soft plucked note: fundamental and a quieter octave, quick attack, slow decay."""
    length = int(RATE * NOTE_SECONDS * 3)  # rings on under the next notes
    attack = int(RATE * 0.01)
    for i in range(min(length, len(out) - start)):
        t = i / RATE
        env = (i / attack if i < attack else 1.0) * math.exp(-3.0 * t)
        wave_ = math.sin(2 * math.pi * freq * t) + 0.25 * math.sin(4 * math.pi * freq * t)
        out[start + i] += level * env * wave_


def pad(out: list[float], start: int, root: float, level: float) -> None:
    """A sustained root and fifth, faded in and out over the bar."""
    length = int(RATE * BAR_SECONDS)
    for i in range(min(length, len(out) - start)):
        t = i / RATE
        env = math.sin(math.pi * i / length) ** 2
        tone = math.sin(2 * math.pi * root * t) + 0.5 * math.sin(2 * math.pi * root * 1.5 * t)
        out[start + i] += level * env * tone


def render() -> bytes:
    total = int(RATE * BAR_SECONDS * len(BARS))
    out = [0.0] * (total + int(RATE * NOTE_SECONDS * 3))  # room for the last notes to ring
    for bar, (root, notes) in enumerate(BARS):
        bar_start = int(RATE * BAR_SECONDS * bar)
        pad(out, bar_start, hz(root), 0.35)
        for n, note in enumerate(notes):
            pluck(out, bar_start + int(RATE * NOTE_SECONDS * n), hz(note), 0.5)
    # the last notes ring on into the start of the loop: it has no seam
    for i in range(total, len(out)):
        out[i - total] += out[i]
    out = out[:total]
    peak = max(abs(v) for v in out)
    scale = PEAK * 32767 / peak
    samples = array("h", (round(v * scale) for v in out))
    if sys.byteorder == "big":  # pragma: no cover - WAV is little-endian
        samples.byteswap()
    return samples.tobytes()


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).parents[1] / "recordings" / (
        "hold_music.wav"
    )  # fmt: skip
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
