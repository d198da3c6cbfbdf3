"""Line filler: the caller's stream never goes quiet, from answer to hang-up.

Carriers and NAT boxes drop a call, or lose its media path, when a leg carries no RTP for a
while: during a menu waiting for a key, between waiting messages, while a volunteer's handset
rings. Every round of the shared ticker, after all other sources had their turn (a ``late``
subscriber), the filler sends one frame on each kept leg that nothing else sent on since the
previous round: low-level comfort noise in the leg's codec, or the ringback tone while a
volunteer's handset rings. Prompts (which claim the leg) and the bridge always win; nothing
is ever mixed in.

G.711 noise rather than RFC 3389 CN packets: every carrier and handset plays G.711, while CN
support (and its SDP negotiation) varies, and a CN receiver generates its own noise anyway.

The bridge relays the volunteer's packets as they arrive, with jitter; the filler waits
``relay_holdoff`` quiet rounds after a relayed packet before filling (a volunteer's handset
suppressing silence), so jitter never doubles up packets. The leg moves the RTP timestamp of
its first frame on by the time that passed, so timestamps keep following the clock.

Per round: one pass over the kept legs; a leg that something else fed costs two attribute
reads. The frames are encoded once per codec and shared by every leg: a fill is an RTP
header and a send, as for a prompt.
"""

from __future__ import annotations

import random
import sys
from array import array

from pbx.media import g711
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg
from pbx.media.ticker import FRAME_SAMPLES, Ticker, ticker_for
from pbx.media.tones import sine

__all__ = ["LineFiller", "comfort_noise", "ringback_tone"]

NOISE_RMS = 18  # about -65 dBov: present for the network, inaudible to the caller
RELAY_HOLDOFF = 2  # quiet rounds after a relayed packet before filling (40-60 ms)
_NOISE_FRAMES = 50  # one second of noise, looped

_Frames = dict[Codec, tuple[bytes, ...]]  # 20 ms frames encoded once per codec


def comfort_noise(frames: int = _NOISE_FRAMES, rms: int = NOISE_RMS) -> bytes:
    """Low-level white noise as 16-bit PCM, the same every time (a fixed seed)."""
    rng = random.Random(3389)
    spread = rms * 3**0.5  # uniform in [-a, a] has rms a / sqrt(3)
    count = frames * FRAME_SAMPLES
    values = array("h", (round(rng.uniform(-spread, spread)) for _ in range(count)))
    if sys.byteorder == "big":  # pragma: no cover - PCM is little-endian
        values.byteswap()
    return values.tobytes()


def ringback_tone() -> bytes:
    """European ringback (ETSI ES 201 970, as in the Netherlands): 425 Hz, 1 s on, 4 s off;
    the off part carries the comfort noise."""
    return sine(425, 1000, 0.15) + comfort_noise(50) * 4


class _Line:
    __slots__ = ("seen", "idle", "ringback_at")

    def __init__(self) -> None:
        self.seen = -1  # the leg's sent count at the previous round (-1: never looked)
        self.idle = 0  # rounds in a row in which nothing else sent on the leg
        self.ringback_at: int | None = None  # tick the ringback cadence started at


class LineFiller:
    """Keeps the outgoing stream of each kept leg continuous (see the module docstring)."""

    def __init__(
        self,
        ticker: Ticker | None = None,
        *,
        noise: bytes | None = None,
        ringback: bytes | None = None,
        relay_holdoff: int = RELAY_HOLDOFF,
    ) -> None:
        self._ticker = ticker
        self._noise_pcm = comfort_noise() if noise is None else noise
        self._ringback_pcm = ringback_tone() if ringback is None else ringback
        self.relay_holdoff = max(1, relay_holdoff)
        self._noise: _Frames = {}
        self._ringback: _Frames = {}
        self._lines: dict[MediaLeg, _Line] = {}
        self.frames = 0  # frames sent by the filler (all legs)

    @property
    def ticker(self) -> Ticker:
        if self._ticker is None:
            self._ticker = ticker_for()
        return self._ticker

    def __len__(self) -> int:
        return len(self._lines)

    def __contains__(self, leg: object) -> bool:
        return leg in self._lines

    def keep(self, leg: MediaLeg) -> None:
        """Keep ``leg``'s stream continuous until ``release`` or the leg closes."""
        if leg in self._lines or leg.closed:
            return
        self._lines[leg] = _Line()
        leg.set_continuous(True)
        leg.add_close_listener(self.release)
        if len(self._lines) == 1:
            self.ticker.subscribe(self._tick, late=True)

    def release(self, leg: MediaLeg) -> None:
        if self._lines.pop(leg, None) is None:
            return
        leg.set_continuous(False)
        leg.remove_close_listener(self.release)
        if not self._lines:
            self.ticker.unsubscribe(self._tick)

    def ringback(self, leg: MediaLeg, on: bool) -> None:
        """Fill ``leg`` with ringback (from the start of its cadence) instead of noise."""
        line = self._lines.get(leg)
        if line is not None:
            line.ringback_at = None if not on else -1  # the cadence starts at the next round

    # ------------------------------------------------------------------ frames
    @staticmethod
    def _frames(cache: _Frames, pcm: bytes, codec: Codec) -> tuple[bytes, ...]:
        frames = cache.get(codec)
        if frames is None:
            audio = g711.encode(codec, pcm[: len(pcm) & ~1])
            audio += bytes([g711.SILENCE[codec]]) * (-len(audio) % FRAME_SAMPLES)
            frames = cache[codec] = tuple(
                audio[i : i + FRAME_SAMPLES] for i in range(0, len(audio), FRAME_SAMPLES)
            )
        return frames

    def _tick(self, tick: int) -> None:
        holdoff = self.relay_holdoff
        now = self.ticker.loop.time()
        for leg, line in self._lines.items():
            sent = leg.sent
            if sent != line.seen:  # another source fed the leg since the previous round
                line.seen = sent
                line.idle = 0
                continue
            line.idle += 1
            codec = leg.codec
            if codec is None or leg.claimant is not None or not leg.sending:
                continue
            if leg.last_relayed and line.idle < holdoff:
                continue  # the bridge's next packet may just be late
            if line.ringback_at is None:
                frames = self._noise.get(codec) or self._frames(self._noise, self._noise_pcm, codec)
                frame = frames[tick % len(frames)]
            else:
                if line.ringback_at < 0:
                    line.ringback_at = tick
                frames = self._ringback.get(codec) or self._frames(
                    self._ringback, self._ringback_pcm, codec
                )
                frame = frames[(tick - line.ringback_at) % len(frames)]
            if leg.send_fill(frame, tick, now):  # (its timestamp catches up after a wait)
                self.frames += 1
            line.idle = 0
            line.seen = leg.sent
