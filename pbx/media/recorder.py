"""Record what a leg receives, in memory (8 kHz mono 16-bit PCM), e.g. a message left
for the info line. Nothing is written here: whoever keeps a recording decides how (a caller's
message is encrypted before it touches the disk, `pbx.voicemail`). Memory is bounded by
the maximum length.

Ends on: the maximum length, trailing silence (configurable level and duration; the
silent tail is not kept), a stop digit ('#' by default), the leg closing, or stop().
Silence is judged per packet by its RMS level; a watchdog also ends the recording when
no packets arrive at all (a phone that sends nothing while the caller says nothing).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Generator
from dataclasses import dataclass

from pbx.media import g711, tones
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg

__all__ = ["Recorder", "RecordingEnd", "RecordingResult", "record"]

RATE = 8000
_WATCHDOG_SECONDS = 0.25
_MAX_GAP_SAMPLES = RATE  # fill at most 1 s of lost packets with silence


class RecordingEnd(enum.Enum):
    MAX_LENGTH = "max-length"
    SILENCE = "silence"
    STOP_DIGIT = "stop-digit"
    LEG_CLOSED = "leg-closed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class RecordingResult:
    reason: RecordingEnd
    duration: float  # seconds of audio recorded
    pcm: bytes  # 8 kHz mono 16-bit little-endian
    digit: str | None = None


class Recorder:
    """Records ``leg``'s received audio; await it for the result."""

    def __init__(
        self,
        leg: MediaLeg,
        *,
        max_seconds: float = 120.0,
        silence_threshold: float = 200.0,
        silence_seconds: float | None = 5.0,
        stop_digits: str = "#",
    ) -> None:
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.leg = leg
        self.max_samples = int(max_seconds * RATE)
        self.silence_threshold = silence_threshold  # RMS on the 0..32768 scale
        self.silence_samples = None if silence_seconds is None else int(silence_seconds * RATE)
        self.stop_digits = stop_digits
        self.loop = leg.ticker.loop
        self.done: asyncio.Future[RecordingResult] = self.loop.create_future()
        self._audio = bytearray()
        self._written = 0  # samples recorded
        self._pending: list[bytes] = []  # current silent stretch, kept only if speech follows
        self._pending_samples = 0
        self._last_audio = 0.0  # loop time of the last packet
        self._watchdog: asyncio.TimerHandle | None = None
        self._started = False

    def start(self) -> Recorder:
        if self._started:
            return self
        self._started = True
        if self.leg.closed:
            self._finish(RecordingEnd.LEG_CLOSED)
            return self
        self._last_audio = self.loop.time()
        self.leg.add_audio_listener(self._on_audio)
        self.leg.add_dtmf_listener(self._on_digit)
        self.leg.add_close_listener(self._on_leg_closed)
        self._watchdog = self.loop.call_later(_WATCHDOG_SECONDS, self._check)
        return self

    def stop(self) -> None:
        self._finish(RecordingEnd.STOPPED)

    def __await__(self) -> Generator[object, None, RecordingResult]:
        if not self._started:
            self.start()
        return asyncio.shield(self.done).__await__()

    @property
    def duration(self) -> float:
        return self._written / RATE

    # ------------------------------------------------------------------- input
    def _on_audio(self, payload: bytes, codec: Codec) -> None:
        self._last_audio = self.loop.time()
        pcm = g711.decode(codec, payload)
        gap = min(self.leg.rx_samples - len(payload), _MAX_GAP_SAMPLES)
        if gap > 0:  # lost packets: keep the timing with silence
            self._add(bytes(2 * gap), silent=True)
        if not self.done.done():
            self._add(pcm, silent=tones.rms(pcm) < self.silence_threshold)

    def _add(self, pcm: bytes, *, silent: bool) -> None:
        room = self.max_samples - self._written - self._pending_samples
        if len(pcm) // 2 >= room:
            pcm = pcm[: 2 * room]
            silent = False  # the cut-off at max length keeps what was said up to it
        if silent:
            self._pending.append(pcm)
            self._pending_samples += len(pcm) // 2
            if self.silence_samples is not None and self._pending_samples >= self.silence_samples:
                self._finish(RecordingEnd.SILENCE)
            return
        self._flush_pending()
        self._write(pcm)
        if self._written >= self.max_samples:
            self._finish(RecordingEnd.MAX_LENGTH)

    def _flush_pending(self) -> None:
        for chunk in self._pending:
            self._write(chunk)
        self._pending.clear()
        self._pending_samples = 0

    def _write(self, pcm: bytes) -> None:
        if pcm:
            self._audio += pcm
            self._written += len(pcm) // 2

    def _on_digit(self, digit: str) -> None:
        if digit in self.stop_digits:
            self._finish(RecordingEnd.STOP_DIGIT, digit)

    def _on_leg_closed(self, leg: MediaLeg) -> None:
        self._finish(RecordingEnd.LEG_CLOSED)

    def _check(self) -> None:
        # No packets at all (peer sends nothing): count the quiet time as silence.
        self._watchdog = None
        if self.done.done():
            return
        quiet = self.loop.time() - self._last_audio
        if (
            self.silence_samples is not None
            and quiet >= 2 * _WATCHDOG_SECONDS
            and self._pending_samples + quiet * RATE >= self.silence_samples
        ):
            self._finish(RecordingEnd.SILENCE)
            return
        self._watchdog = self.loop.call_later(_WATCHDOG_SECONDS, self._check)

    # ------------------------------------------------------------------ finish
    def _finish(self, reason: RecordingEnd, digit: str | None = None) -> None:
        if self.done.done():
            return
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        leg = self.leg
        leg.remove_audio_listener(self._on_audio)
        leg.remove_dtmf_listener(self._on_digit)
        leg.remove_close_listener(self._on_leg_closed)
        if reason is not RecordingEnd.SILENCE:
            self._flush_pending()  # the trailing silence is only dropped when it ended us
        self.done.set_result(RecordingResult(reason, self.duration, bytes(self._audio), digit))
        self._audio = bytearray()


async def record(
    leg: MediaLeg,
    *,
    max_seconds: float = 120.0,
    silence_threshold: float = 200.0,
    silence_seconds: float | None = 5.0,
    stop_digits: str = "#",
) -> RecordingResult:
    """Record and wait; cancelling the awaiting task stops the recording."""
    recorder = Recorder(
        leg,
        max_seconds=max_seconds,
        silence_threshold=silence_threshold,
        silence_seconds=silence_seconds,
        stop_digits=stop_digits,
    ).start()
    try:
        return await recorder
    except asyncio.CancelledError:
        recorder.stop()
        raise
