"""Small audio helpers for tests: read/write WAV, measure tones in what a peer recorded.

The measurements themselves (Goertzel power, dominant frequency, rms) are pbx.media.tones,
re-exported here so tests import one module.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

from pbx.media.tones import dominant_frequency, goertzel_power, rms, sine

__all__ = [
    "active_part",
    "dominant_frequency",
    "goertzel_power",
    "loud_part",
    "read_wav",
    "rms",
    "sine",
    "tone_share",
    "write_tone_wav",
    "write_wav",
]


def read_wav(path: Path | str) -> tuple[bytes, int]:
    """(16-bit LE mono PCM, sample rate) of a WAV file; stereo is mixed down to mono."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit WAV, want 16-bit")
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = w.readframes(w.getnframes())
    if channels == 1:
        return pcm, rate
    frame = 2 * channels
    out = bytearray()
    for i in range(0, len(pcm) - frame + 1, frame):
        total = sum(
            int.from_bytes(pcm[i + 2 * c : i + 2 * c + 2], "little", signed=True)
            for c in range(channels)
        )
        out += int(total / channels).to_bytes(2, "little", signed=True)
    return bytes(out), rate


def write_wav(path: Path | str, pcm: bytes, rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return Path(path)


def write_tone_wav(
    path: Path | str, freq_hz: float, duration_ms: int, amplitude: float = 0.3
) -> Path:
    """An 8 kHz mono WAV of a sine, e.g. for PjsuaPhone.play_wav."""
    return write_wav(path, sine(freq_hz, duration_ms, amplitude))


def active_part(
    pcm: bytes, threshold: float = 300.0, frame_ms: int = 20, rate: int = 8000
) -> bytes:
    """The PCM from the first to the last 20 ms frame louder than ``threshold`` rms: drops
    the silence a recording has before media starts and after it stops."""
    step = 2 * rate * frame_ms // 1000
    frames = [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]
    loud = [i for i, f in enumerate(frames) if rms(f) >= threshold]
    if not loud:
        return b""
    return b"".join(frames[loud[0] : loud[-1] + 1])


def loud_part(pcm: bytes, threshold: float = 300.0, frame_ms: int = 20, rate: int = 8000) -> bytes:
    """Only the 20 ms frames louder than ``threshold`` rms, joined: what was heard of someone
    talking, without the comfort noise a line filler plays while they are silent (a tone's
    share of a recording with pauses is otherwise only the share of the time it sounded)."""
    step = 2 * rate * frame_ms // 1000
    frames = [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]
    return b"".join(f for f in frames if rms(f) >= threshold)


def tone_share(pcm: bytes, freq_hz: float, rate: int = 8000) -> float:
    """Share (0..1) of the signal's power that sits at ``freq_hz``: ~1 for a clean tone,
    ~0 for silence or other frequencies. Independent of the level."""
    total = (rms(pcm) / 32768.0) ** 2
    if total == 0 or math.isnan(total):
        return 0.0
    return min(1.0, goertzel_power(pcm, freq_hz, rate) / total)
