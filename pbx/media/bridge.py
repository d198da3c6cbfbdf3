"""Bridge: relay audio between two legs, anchored in the service.

Each side only ever talks RTP with our own port (the caller never learns the
volunteer's address and vice versa: anonymity by construction) and hears one
continuous stream from the leg's own RtpSender, whatever fed it before (prompts, music).
Audio is relayed packet by packet as it arrives (no added latency, no timer), with a
byte-table transcode when one side speaks PCMA and the other PCMU. The far side's
timing (timestamp gaps from loss, talk-spurt markers) is carried over.

DTMF is not relayed by default: the volunteer's keys are feature codes, and a caller's
keys are nobody's business but the IVR's. ``inject_tone`` plays a tone towards one side
only (the time-limit warning the volunteer alone hears); while it plays, that side's
stream is clocked by the ticker and carries the tone instead of (or mixed with) the
relayed audio.
"""

from __future__ import annotations

import asyncio
import enum
import sys
from array import array
from collections import deque
from dataclasses import dataclass
from functools import partial

from pbx.media import g711
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg
from pbx.media.ticker import FRAME_SAMPLES, Ticker

__all__ = ["Bridge", "BridgeEnd", "DirectionStats", "Side"]

_FRAME_BYTES = 2 * FRAME_SAMPLES
_BIG_ENDIAN = sys.byteorder == "big"


class Side(enum.Enum):
    A = "a"
    B = "b"


class BridgeEnd(enum.Enum):
    STOPPED = "stopped"
    LEG_CLOSED = "leg-closed"


@dataclass(slots=True)
class DirectionStats:
    packets: int = 0  # received from the source side
    relayed: int = 0  # sent on to the other side
    transcoded: int = 0
    dropped: int = 0  # not sent: other side on hold/not negotiated/owned by a prompt
    replaced: int = 0  # swallowed or mixed because a tone was playing towards the other side
    dtmf_relayed: int = 0


class _Tone:
    __slots__ = ("pcm", "mix", "future", "position", "pending")

    def __init__(self, pcm: bytes, mix: bool, future: asyncio.Future[None]) -> None:
        self.pcm = pcm
        self.mix = mix
        self.future = future
        self.position = 0
        self.pending: deque[tuple[bytes, Codec]] = deque(maxlen=3)  # relayed audio to mix


def _transcode_table(src: Codec, dst: Codec) -> bytes:
    # transcode() is a byte-wise table lookup; applying it to all 256 codes yields the
    # table itself, so the hot path is a single bytes.translate with no enum handling.
    return g711.transcode(bytes(range(256)), src, dst)


_TABLES = {(s, d): _transcode_table(s, d) for s in Codec for d in Codec if s is not d}


def _mix(tone: bytes, other: bytes) -> bytes:
    a = array("h", tone)
    b = array("h", other)
    if _BIG_ENDIAN:  # pragma: no cover - big-endian hosts only
        a.byteswap()
        b.byteswap()
    out = array("h", (max(-32768, min(32767, x + y)) for x, y in zip(a, b, strict=False)))
    if _BIG_ENDIAN:  # pragma: no cover
        out.byteswap()
    return out.tobytes()


def _relay(
    tones: dict[Side, _Tone],
    src: MediaLeg,
    dst: MediaLeg,
    dst_side: Side,
    stats: DirectionStats,
    payload: bytes,
    codec: Codec,
) -> None:
    """One received packet of ``src`` to ``dst``: replaced by a tone towards ``dst_side``,
    transcoded when the legs' codecs differ, or relayed as it is."""
    stats.packets += 1
    if tones:
        tone = tones.get(dst_side)
        if tone is not None:
            stats.replaced += 1
            if tone.mix:
                tone.pending.append((payload, codec))
            return
    dst_codec = dst.codec
    if dst_codec is not None and dst_codec != codec:
        payload = payload.translate(_TABLES[codec, dst_codec])
        stats.transcoded += 1
    if dst.relay_audio(payload, src.rx_samples, src.rx_marker):
        stats.relayed += 1
    else:
        stats.dropped += 1


class Bridge:
    """Relays media between legs ``a`` and ``b`` until stopped or either leg closes."""

    def __init__(
        self,
        a: MediaLeg,
        b: MediaLeg,
        *,
        relay_dtmf: bool = False,
        ticker: Ticker | None = None,
    ) -> None:
        if a is b:
            raise ValueError("cannot bridge a leg with itself")
        self.a = a
        self.b = b
        self.relay_dtmf = relay_dtmf
        self.ticker = ticker or a.ticker
        self.a_to_b = DirectionStats()
        self.b_to_a = DirectionStats()
        self.done: asyncio.Future[BridgeEnd] = self.ticker.loop.create_future()
        self._tones: dict[Side, _Tone] = {}
        self._started = False
        # The audio listeners, one per direction: the leg calls _relay with no hop between.
        # They hold the tones, not the bridge, so a bridge is no cycle of its own and goes by
        # reference counting once its legs drop it.
        self._from_a = partial(_relay, self._tones, self.a, self.b, Side.B, self.a_to_b)
        self._from_b = partial(_relay, self._tones, self.b, self.a, Side.A, self.b_to_a)

    # ------------------------------------------------------------------ control
    def start(self) -> Bridge:
        if self._started:
            return self
        self._started = True
        if self.a.closed or self.b.closed:
            self._finish(BridgeEnd.LEG_CLOSED)
            return self
        self.a.add_audio_listener(self._from_a)
        self.b.add_audio_listener(self._from_b)
        self.a.add_close_listener(self._on_leg_closed)
        self.b.add_close_listener(self._on_leg_closed)
        if self.relay_dtmf:
            self.a.add_dtmf_listener(self._dtmf_from_a)
            self.b.add_dtmf_listener(self._dtmf_from_b)
        return self

    def stop(self) -> None:
        """Stop relaying; both legs stay open (e.g. the caller goes back to the queue)."""
        self._finish(BridgeEnd.STOPPED)

    @property
    def active(self) -> bool:
        return self._started and not self.done.done()

    def leg(self, side: Side) -> MediaLeg:
        return self.a if side is Side.A else self.b

    def inject_tone(
        self, side: Side | MediaLeg, pcm: bytes, *, mix: bool = False
    ) -> asyncio.Future[None]:
        """Play ``pcm`` towards ``side`` only, replacing (or ``mix``-ing with) the relayed
        audio for the tone's duration. Resolves when the tone has been sent (or the
        bridge stopped); a new tone towards the same side replaces the previous one."""
        side = self._side(side)
        future: asyncio.Future[None] = self.ticker.loop.create_future()
        if not self.active or not pcm:
            future.set_result(None)
            return future
        old = self._tones.get(side)
        if old is not None and not old.future.done():
            old.future.set_result(None)
        was_idle = not self._tones
        self._tones[side] = _Tone(pcm[: len(pcm) & ~1], mix, future)
        if was_idle:
            self.ticker.subscribe(self._tone_tick)
        return future

    def _side(self, side: Side | MediaLeg) -> Side:
        if isinstance(side, Side):
            return side
        if side is self.a:
            return Side.A
        if side is self.b:
            return Side.B
        raise ValueError("leg is not part of this bridge")

    # -------------------------------------------------------------------- relay
    def _tone_tick(self, tick: int) -> None:
        for side, tone in tuple(self._tones.items()):
            if tone.future.done():  # replaced by a newer tone or abandoned
                if self._tones.get(side) is tone:
                    del self._tones[side]
                continue
            dst = self.leg(side)
            codec = dst.codec
            chunk = tone.pcm[tone.position : tone.position + _FRAME_BYTES]
            tone.position += _FRAME_BYTES
            if len(chunk) < _FRAME_BYTES:
                chunk += bytes(_FRAME_BYTES - len(chunk))
            if tone.mix and tone.pending:
                other, other_codec = tone.pending.popleft()
                chunk = _mix(chunk, g711.decode(other_codec, other))
            if codec is not None:
                dst.send_audio(chunk, samples=FRAME_SAMPLES)
            if tone.position >= len(tone.pcm):
                del self._tones[side]
                tone.future.set_result(None)
        if not self._tones:
            self.ticker.unsubscribe(self._tone_tick)

    # --------------------------------------------------------------------- dtmf
    def _dtmf_from_a(self, digit: str) -> None:
        self.b.send_dtmf(digit)
        self.a_to_b.dtmf_relayed += 1

    def _dtmf_from_b(self, digit: str) -> None:
        self.a.send_dtmf(digit)
        self.b_to_a.dtmf_relayed += 1

    # -------------------------------------------------------------------- close
    def _on_leg_closed(self, leg: MediaLeg) -> None:
        self._finish(BridgeEnd.LEG_CLOSED)

    def _finish(self, reason: BridgeEnd) -> None:
        if self.done.done():
            return
        for leg, listener in ((self.a, self._from_a), (self.b, self._from_b)):
            leg.remove_audio_listener(listener)
            leg.remove_close_listener(self._on_leg_closed)
        self.a.remove_dtmf_listener(self._dtmf_from_a)
        self.b.remove_dtmf_listener(self._dtmf_from_b)
        if self._tones:
            self.ticker.unsubscribe(self._tone_tick)
            for tone in self._tones.values():
                if not tone.future.done():
                    tone.future.set_result(None)
            self._tones.clear()
        self.done.set_result(reason)
