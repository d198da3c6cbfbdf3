"""Turn any audio file an admin supplies into a telephony prompt (8 kHz, mono, 16-bit PCM WAV).

pydub decodes whatever ffmpeg can read (WAV of any width/rate, MP3, OGG, ...). Resampling is
left to ffmpeg because pydub's own `set_frame_rate` has no anti-aliasing filter: a 44.1 kHz
recording folded down to 8 kHz that way would carry hiss from everything above 4 kHz.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from pydub import AudioSegment
from pydub.exceptions import CouldntDecodeError
from pydub.silence import detect_leading_silence

TELEPHONY_RATE = 8000
TELEPHONY_CHANNELS = 1
TELEPHONY_SAMPLE_WIDTH = 2  # bytes: 16-bit signed little-endian

# Peak level of a converted prompt: loud enough over a phone line, with headroom for the
# G.711 encoder and the small overshoot a resampler can add.
TARGET_PEAK_DBFS = -3.0
# Input whose peak is below this is treated as silence, not as a very quiet recording.
SILENT_PEAK_DBFS = -60.0
# After normalising, leading/trailing audio quieter than this (RMS per ms) counts as silence.
TRIM_THRESHOLD_DBFS = -48.0
# Silence kept at either end after trimming, so a prompt does not start mid-breath.
EDGE_PADDING_MS = 80


class AudioConvertError(ValueError):
    """The input could not be turned into a telephony prompt."""


def convert_to_telephony(src: Path, dst: Path, *, trim_silence: bool = True) -> None:
    """Write `src` (any format ffmpeg reads) to `dst` as an 8 kHz mono 16-bit PCM WAV.

    The result is peak-normalised to TARGET_PEAK_DBFS; with `trim_silence` leading and
    trailing silence is cut down to EDGE_PADDING_MS. Raises AudioConvertError naming `src`
    when it is missing, undecodable, or holds no audible sound.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise AudioConvertError(f"{src}: no such audio file")
    try:
        decoded = AudioSegment.from_file(str(src))
    except (CouldntDecodeError, OSError, EOFError, IndexError, KeyError) as exc:
        raise AudioConvertError(f"{src}: not a readable audio file ({_reason(exc)})") from exc
    if len(decoded) == 0:
        raise AudioConvertError(f"{src}: contains no audio")

    segment = _resample_for_telephony(decoded, src)
    peak = segment.max_dBFS
    if peak == -math.inf or peak < SILENT_PEAK_DBFS:
        raise AudioConvertError(f"{src}: is silent (peak {peak:.1f} dBFS)")
    segment = segment.apply_gain(TARGET_PEAK_DBFS - peak)
    if trim_silence:
        segment = _trim(segment)

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    # Plain WAV export (no ffmpeg parameters) writes a canonical PCM header via `wave`.
    segment.export(str(tmp), format="wav").close()
    tmp.replace(dst)  # a half-written prompt must never be picked up by a running PBX


def _resample_for_telephony(segment: AudioSegment, src: Path) -> AudioSegment:
    # Down-mix in pydub (a plain average) but let ffmpeg's filtered resampler do the rate.
    if segment.channels != 1:
        segment = segment.set_channels(1)
    buffer = io.BytesIO()
    try:
        segment.export(
            buffer,
            format="wav",
            parameters=[
                "-ar",
                str(TELEPHONY_RATE),
                "-ac",
                str(TELEPHONY_CHANNELS),
                "-acodec",
                "pcm_s16le",
            ],
        )
    except CouldntDecodeError as exc:  # pragma: no cover - ffmpeg failing on its own PCM
        raise AudioConvertError(f"{src}: resampling failed ({_reason(exc)})") from exc
    buffer.seek(0)
    resampled = AudioSegment.from_wav(buffer)
    if resampled.sample_width != TELEPHONY_SAMPLE_WIDTH:
        resampled = resampled.set_sample_width(TELEPHONY_SAMPLE_WIDTH)
    return resampled


def _trim(segment: AudioSegment) -> AudioSegment:
    start = detect_leading_silence(segment, silence_threshold=TRIM_THRESHOLD_DBFS)
    end = len(segment) - detect_leading_silence(
        segment.reverse(), silence_threshold=TRIM_THRESHOLD_DBFS
    )
    if end <= start:  # only short clicks above the threshold: keep everything
        return segment
    return segment[max(0, start - EDGE_PADDING_MS) : min(len(segment), end + EDGE_PADDING_MS)]


def _reason(exc: BaseException) -> str:
    # ffmpeg prints its banner first and the reason last.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(exc).__name__
