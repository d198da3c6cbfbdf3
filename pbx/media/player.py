"""Prompt playback into a MediaLeg, paced by the shared 20 ms ticker.

A playlist is one talk-spurt: the first packet carries the marker bit, then one
160-sample frame per tick with contiguous timestamps. Prompts are encoded once per
(prompt, codec) and cached, since every caller hears the same welcome prompt.
"""

from __future__ import annotations

import asyncio
import enum
import functools
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from pbx.media import g711
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg
from pbx.media.ticker import FRAME_SAMPLES, Ticker

__all__ = ["PlaybackEnd", "PlaybackResult", "Player", "encode_cached", "play"]


class PlaybackEnd(enum.Enum):
    FINISHED = "finished"
    BARGE_IN = "barge-in"  # a DTMF digit interrupted it; the digit is in the result
    CANCELLED = "cancelled"  # cancel(), or another prompt took over the leg
    LEG_CLOSED = "leg-closed"


@dataclass(frozen=True)
class PlaybackResult:
    reason: PlaybackEnd
    digit: str | None = None
    frames_sent: int = 0  # frames clocked out (whether or not the leg could send them)

    @property
    def played_ms(self) -> int:
        return self.frames_sent * FRAME_SAMPLES // 8


@functools.lru_cache(maxsize=64)
def encode_cached(pcm: bytes, codec: Codec) -> bytes:
    """G.711-encode a prompt once; bytes cache their hash, so repeat lookups are cheap."""
    return g711.encode(codec, pcm)


class Player:
    """Plays ``prompts`` (16-bit 8 kHz mono PCM each) on ``leg``; await it for the result."""

    def __init__(
        self,
        leg: MediaLeg,
        prompts: Sequence[bytes],
        *,
        barge_in: bool = True,
        ticker: Ticker | None = None,
    ) -> None:
        self.leg = leg
        self.prompts = list(prompts)
        self.barge_in = barge_in
        self.ticker = ticker or leg.ticker
        self.done: asyncio.Future[PlaybackResult] = self.ticker.loop.create_future()
        self._codec: Codec | None = None
        self._audio = b""
        self._position = 0  # in samples (= bytes of G.711)
        self._total = sum(len(p) for p in self.prompts) // 2
        self._frames = 0
        self._started = False

    def start(self) -> Player:
        """Take over the leg (stopping a prompt already playing on it) and start playing."""
        if self._started:
            return self
        self._started = True
        leg = self.leg
        if leg.closed:
            self._finish(PlaybackEnd.LEG_CLOSED)
            return self
        previous = leg.claim(self)
        if isinstance(previous, Player):
            previous._finish(PlaybackEnd.CANCELLED)
        if self._total == 0:
            self._finish(PlaybackEnd.FINISHED)
            return self
        leg.add_close_listener(self._on_leg_closed)
        if self.barge_in:
            leg.add_dtmf_listener(self._on_digit)
        self.ticker.subscribe(self._tick)
        return self

    def cancel(self) -> None:
        self._finish(PlaybackEnd.CANCELLED)

    @property
    def finished(self) -> bool:
        return self.done.done()

    def __await__(self) -> Generator[object, None, PlaybackResult]:
        if not self._started:
            self.start()
        return asyncio.shield(self.done).__await__()

    def _encode_for(self, codec: Codec) -> None:
        self._codec = codec
        audio = b"".join(encode_cached(p, codec) for p in self.prompts)
        pad = -len(audio) % FRAME_SAMPLES  # last frame filled with the codec's silence
        self._audio = audio + bytes([g711.SILENCE[codec]]) * pad

    def _tick(self, tick: int) -> None:
        leg = self.leg
        codec = leg.codec
        if codec is not None:
            if codec is not self._codec:  # first frame, or a re-INVITE changed the codec
                self._encode_for(codec)
            start = self._position
            leg.send_audio(
                self._audio[start : start + FRAME_SAMPLES],
                encoded=True,
                marker=self._frames == 0,
                samples=FRAME_SAMPLES,
                owner=self,
            )
        self._position += FRAME_SAMPLES
        self._frames += 1
        if self._position >= self._total:
            self._finish(PlaybackEnd.FINISHED)

    def _on_digit(self, digit: str) -> None:
        self._finish(PlaybackEnd.BARGE_IN, digit)

    def _on_leg_closed(self, leg: MediaLeg) -> None:
        self._finish(PlaybackEnd.LEG_CLOSED)

    def _finish(self, reason: PlaybackEnd, digit: str | None = None) -> None:
        if self.done.done():
            return
        self.ticker.unsubscribe(self._tick)
        self.leg.remove_dtmf_listener(self._on_digit)
        self.leg.remove_close_listener(self._on_leg_closed)
        self.leg.release(self)
        self.done.set_result(PlaybackResult(reason, digit, self._frames))


async def play(leg: MediaLeg, prompts: Sequence[bytes], *, barge_in: bool = True) -> PlaybackResult:
    """Play and wait; cancelling the awaiting task cancels the playback."""
    player = Player(leg, prompts, barge_in=barge_in).start()
    try:
        return await player
    except asyncio.CancelledError:
        player.cancel()
        raise
