"""A generated hold melody: what a caller on hold hears while the volunteer consults.

Generated, so it is free to ship: a slow, soft arpeggio (C major, 400 ms a note with a short
fade), looped by `pbx.media.moh.MusicOnHold`. An admin's own track can replace it.
"""

from __future__ import annotations

from array import array

from pbx.media.tones import sine

__all__ = ["HOLD_NOTES", "hold_melody"]

HOLD_NOTES = (523.25, 659.25, 783.99, 659.25)  # C5 E5 G5 E5
NOTE_MS = 400
FADE_SAMPLES = 160  # 20 ms in and out: no clicks between notes


def hold_melody(amplitude: float = 0.2) -> bytes:
    """The melody as 16-bit 8 kHz mono PCM (one round of the notes)."""
    notes = []
    for freq in HOLD_NOTES:
        samples = array("h", sine(freq, NOTE_MS, amplitude))
        n = len(samples)
        for i in range(min(FADE_SAMPLES, n // 2)):
            samples[i] = samples[i] * i // FADE_SAMPLES
            samples[n - 1 - i] = samples[n - 1 - i] * i // FADE_SAMPLES
        notes.append(samples.tobytes())
    return b"".join(notes)
