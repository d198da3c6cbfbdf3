"""Music on hold: one shared looping stream per class, fanned out to every listener.

The loop is encoded once per codec (lazily, the first time a listener with that codec
subscribes), so each tick costs one slice per codec plus one RTP header per listener:
no per-caller encoding. Every listener gets the frame with its own leg's RtpSender
(its own SSRC, sequence and timestamps), so a caller can switch from music to a prompt
(position announcement) and back without a stream discontinuity: while a prompt owns
the leg, the music is simply not sent to it, and it resumes at the shared position.
"""

from __future__ import annotations

from pbx.media import g711
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg
from pbx.media.ticker import FRAME_SAMPLES, Ticker, ticker_for

__all__ = ["MohLibrary", "MusicOnHold"]


class MusicOnHold:
    """One MOH class: a looping PCM source (16-bit 8 kHz mono) and its listeners."""

    def __init__(self, name: str, pcm: bytes, *, ticker: Ticker | None = None) -> None:
        if len(pcm) < 2:
            raise ValueError(f"music on hold {name!r} has no audio")
        self.name = name
        pcm = pcm[: len(pcm) & ~1]
        pad = -(len(pcm) // 2) % FRAME_SAMPLES  # loop on a frame boundary
        self._pcm = pcm + bytes(2 * pad)
        self._length = len(self._pcm) // 2  # samples
        self._encoded: dict[Codec, bytes] = {}
        self._listeners: dict[MediaLeg, bool] = {}  # leg -> next packet starts a talk-spurt
        self._ticker = ticker
        self._position = 0  # samples into the loop
        self._last_tick: int | None = None
        self.frames = 0

    @property
    def ticker(self) -> Ticker:
        if self._ticker is None:
            self._ticker = ticker_for()
        return self._ticker

    def __len__(self) -> int:
        return len(self._listeners)

    def __contains__(self, leg: object) -> bool:
        return leg in self._listeners

    def subscribe(self, leg: MediaLeg) -> None:
        """Start sending this class's music to ``leg`` (until unsubscribe or leg close)."""
        if leg in self._listeners or leg.closed:
            return
        self._listeners[leg] = True
        leg.add_close_listener(self.unsubscribe)
        if len(self._listeners) == 1:
            self._last_tick = None
            self.ticker.subscribe(self._tick)

    def unsubscribe(self, leg: MediaLeg) -> None:
        if leg not in self._listeners:
            return
        del self._listeners[leg]
        leg.remove_close_listener(self.unsubscribe)
        if not self._listeners:
            self.ticker.unsubscribe(self._tick)

    def _encoded_loop(self, codec: Codec) -> bytes:
        audio = self._encoded.get(codec)
        if audio is None:
            audio = self._encoded[codec] = g711.encode(codec, self._pcm)
        return audio

    def _tick(self, tick: int) -> None:
        # Skipped ticks (loop stalled) move the shared position on: music stays real-time.
        step = 1 if self._last_tick is None else max(1, tick - self._last_tick)
        self._last_tick = tick
        start = self._position
        self._position = (start + step * FRAME_SAMPLES) % self._length
        frames: dict[Codec | None, bytes] = {}
        listeners = self._listeners
        for leg, first in listeners.items():
            codec = leg.codec
            frame = frames.get(codec)
            if frame is None:
                if codec is None:
                    continue
                frame = frames[codec] = self._encoded_loop(codec)[start : start + FRAME_SAMPLES]
            if leg.send_audio(frame, encoded=True, samples=FRAME_SAMPLES, marker=first) and first:
                listeners[leg] = False
        self.frames += 1


class MohLibrary:
    """The configured MOH classes by name; unknown names fall back to the default class."""

    def __init__(self, default: str = "default", *, ticker: Ticker | None = None) -> None:
        self.default = default
        self._ticker = ticker
        self._classes: dict[str, MusicOnHold] = {}

    def add(self, name: str, pcm: bytes) -> MusicOnHold:
        moh = self._classes[name] = MusicOnHold(name, pcm, ticker=self._ticker)
        return moh

    def __getitem__(self, name: str) -> MusicOnHold:
        moh = self._classes.get(name) or self._classes.get(self.default)
        if moh is None:
            raise KeyError(f"no music on hold class {name!r} and no default {self.default!r}")
        return moh

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def start(self, leg: MediaLeg, name: str) -> MusicOnHold:
        """Move ``leg`` to class ``name`` (off any other class it listened to)."""
        target = self[name]
        for moh in self._classes.values():
            if moh is not target:
                moh.unsubscribe(leg)
        target.subscribe(leg)
        return target

    def stop(self, leg: MediaLeg) -> None:
        for moh in self._classes.values():
            moh.unsubscribe(leg)
