"""Tone generation and simple spectral measurement on 16-bit LE mono PCM.

Used for call-progress tones and, in tests, to prove what audio a stream carries.
"""

from __future__ import annotations

import math
import operator
import sys
from array import array
from collections.abc import Sequence

__all__ = ["dominant_frequency", "dual_tone", "goertzel_power", "rms", "silence", "sine"]

_FULL_SCALE = 32767
_BIG_ENDIAN = sys.byteorder == "big"


def _samples(duration_ms: int, rate: int) -> int:
    if duration_ms < 0:
        raise ValueError(f"duration must be >= 0 ms, got {duration_ms}")
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    return rate * duration_ms // 1000


def _to_pcm(values: array[int]) -> bytes:
    if _BIG_ENDIAN:  # pragma: no cover - big-endian hosts only
        values.byteswap()
    return values.tobytes()


def _from_pcm(pcm: bytes) -> array[int]:
    if len(pcm) % 2:
        raise ValueError(f"PCM length must be even (16-bit samples), got {len(pcm)} bytes")
    values = array("h", pcm)
    if _BIG_ENDIAN:  # pragma: no cover - big-endian hosts only
        values.byteswap()
    return values


def _check_amplitude(amplitude: float) -> None:
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"amplitude must be within 0..1 of full scale, got {amplitude}")


def sine(freq_hz: float, duration_ms: int, amplitude: float = 0.3, rate: int = 8000) -> bytes:
    """A sine of ``amplitude`` (fraction of full scale, 0..1) as PCM."""
    _check_amplitude(amplitude)
    n = _samples(duration_ms, rate)
    step = 2.0 * math.pi * freq_hz / rate
    peak = amplitude * _FULL_SCALE
    return _to_pcm(array("h", (round(peak * math.sin(step * i)) for i in range(n))))


def dual_tone(
    f1: float, f2: float, duration_ms: int, amplitude: float = 0.3, rate: int = 8000
) -> bytes:
    """Sum of two sines (e.g. a DTMF digit); ``amplitude`` is the peak of the sum,
    each component gets half of it."""
    _check_amplitude(amplitude)
    n = _samples(duration_ms, rate)
    s1 = 2.0 * math.pi * f1 / rate
    s2 = 2.0 * math.pi * f2 / rate
    half = amplitude * _FULL_SCALE / 2.0
    return _to_pcm(
        array("h", (round(half * (math.sin(s1 * i) + math.sin(s2 * i))) for i in range(n)))
    )


def silence(duration_ms: int, rate: int = 8000) -> bytes:
    return bytes(2 * _samples(duration_ms, rate))


def rms(pcm: bytes) -> float:
    """Root mean square of the samples, 0..32768 (a full-scale sine gives ~23170)."""
    values = _from_pcm(pcm)
    if not values:
        return 0.0
    # Integer sum of squares: exact, and map/mul/sum all run in C (called per 20 ms frame).
    return math.sqrt(sum(map(operator.mul, values, values)) / len(values))


def goertzel_power(pcm: bytes, freq_hz: float, rate: int = 8000) -> float:
    """Mean power of the component at ``freq_hz`` relative to full scale.

    A sine of amplitude ``a`` (0..1) at that frequency gives about ``a**2 / 2``, so
    the value is comparable with ``(rms(pcm) / 32768) ** 2``. Silence gives 0.
    """
    values = _from_pcm(pcm)
    n = len(values)
    if n == 0:
        return 0.0
    coeff = 2.0 * math.cos(2.0 * math.pi * freq_hz / rate)
    s1 = s2 = 0.0
    scale = 1.0 / 32768.0
    for v in values:
        s1, s2 = v * scale + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2  # |X(f)|^2
    return max(0.0, 2.0 * power / (n * n))


def dominant_frequency(pcm: bytes, candidates: Sequence[float], rate: int = 8000) -> float:
    """The candidate frequency with the most energy in ``pcm``."""
    if not candidates:
        raise ValueError("no candidate frequencies given")
    return max(candidates, key=lambda f: goertzel_power(pcm, f, rate))
