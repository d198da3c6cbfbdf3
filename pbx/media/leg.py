"""MediaLeg: one call party's media as the rest of the service sees it.

A leg binds an RtpEndpoint to what SDP negotiated: codec, telephone-event payload
type, hold state. It owns the outgoing RTP stream (one SSRC, contiguous sequence
numbers and timestamps whatever feeds it: prompts, music on hold, the bridge, DTMF),
turns RFC 4733 events into digits and hands received audio to listeners.

Who may send: at most one *claimant* (a prompt player) owns the leg at a time; while
a leg is claimed, audio from anybody else (music on hold, the bridge) is dropped, and
the first packet after every change of source carries the marker bit, so the far
end's jitter buffer resynchronises on the new talk-spurt. A *continuous* leg (kept by the
line filler, ``filler.py``, so that it never goes quiet) is one stream whatever feeds it:
its marker bit is set only on the first packet and after a real gap in what it sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from pbx.media import g711
from pbx.media.dtmf import DtmfDetector, dtmf_packets
from pbx.media.endpoint import RtpEndpoint
from pbx.media.g711 import Codec
from pbx.media.offer_answer import NegotiatedMedia
from pbx.media.ports import PortPool
from pbx.media.rtp import RtpPacket, RtpSender
from pbx.media.srtp import SrtpSession
from pbx.media.ticker import FRAME_SAMPLES, Ticker, ticker_for

__all__ = ["AudioListener", "DtmfListener", "MediaLeg"]

AudioListener = Callable[[bytes, Codec], None]
DtmfListener = Callable[[str], None]
CloseListener = Callable[["MediaLeg"], None]

COMFORT_NOISE_PT = 13  # RFC 3389: accepted and ignored
_MAX_TS_GAP = 8000  # a timestamp jump above 1 s is a new stream, not lost packets
_REAL_GAP = 0.05  # s without a packet on a continuous leg that count as a gap (marker bit)
_MAX_CATCH_UP = 50  # ticks: a longer pause is a new talk-spurt, not a stall to account for

log = structlog.get_logger("pbx.media.leg")


class MediaLeg:
    """Endpoint + negotiated codec + RtpSender + DtmfDetector + hold state."""

    def __init__(
        self,
        endpoint: RtpEndpoint,
        media: NegotiatedMedia | None = None,
        *,
        on_dtmf: DtmfListener | None = None,
        ticker: Ticker | None = None,
        sender: RtpSender | None = None,
        on_srtp_failure: Callable[[], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.on_srtp_failure = on_srtp_failure  # a packet failed SRTP authentication
        self.sender = sender or RtpSender()
        self.ticker = ticker or ticker_for()
        self.on_dtmf = on_dtmf
        self.media: NegotiatedMedia | None = None
        self.codec: Codec | None = None
        self.telephone_event_pt: int | None = None
        # Timing of the audio packet being delivered to listeners (valid during the call):
        # samples since the previous packet, and whether it starts a talk-spurt.
        self.rx_samples = 160
        self.rx_marker = False
        self.suppressed = 0  # audio frames dropped because another source owned the leg
        self.sent = 0  # packets handed to the endpoint (audio and DTMF, every source)
        self._continuous = False
        self._last_tx = 0.0  # loop.time() of the last packet (continuous legs only)
        self._last_tick: int | None = None  # ticker round of the last ticker-paced packet
        self._relayed = False  # the last packet came from the bridge (its timing is jittery)
        self._filled = False  # the last packet came from the line filler
        self._media_timeout = endpoint.media_timeout  # restored when a held peer resumes
        self._sending = False
        self._audio_listeners: list[AudioListener] = []
        self._dtmf_listeners: list[DtmfListener] = []
        self._close_listeners: list[CloseListener] = []
        self._detector = DtmfDetector()
        self._claimant: object | None = None
        self._need_marker = True
        self._rx_ssrc = -1
        self._rx_ts = 0
        self._dtmf_out: deque[tuple[RtpPacket, asyncio.Future[bool] | None]] = deque()
        self._closed = False
        endpoint.on_packet = self._on_packet
        endpoint.on_closed = self._on_endpoint_closed
        if media is not None:
            self.update(media)

    @classmethod
    async def open(
        cls,
        pool: PortPool,
        media: NegotiatedMedia | None = None,
        *,
        media_timeout: float | None = 30.0,
        on_timeout: Callable[[RtpEndpoint], None] | None = None,
        on_dtmf: DtmfListener | None = None,
        on_srtp_failure: Callable[[], None] | None = None,
        **endpoint_options: Any,
    ) -> MediaLeg:
        """Allocate a port and create a leg; pass ``media`` now or ``update`` it later."""
        endpoint = await RtpEndpoint.open(
            pool, media_timeout=media_timeout, on_timeout=on_timeout, **endpoint_options
        )
        return cls(endpoint, media, on_dtmf=on_dtmf, on_srtp_failure=on_srtp_failure)

    # --------------------------------------------------------------- negotiation
    @property
    def local_address(self) -> tuple[str, int]:
        return self.endpoint.local_address

    @property
    def on_hold(self) -> bool:
        """The remote holds us (sendonly/inactive): we send nothing to it."""
        return self.media is not None and self.media.on_hold

    @property
    def protected(self) -> bool:
        """Media is SRTP (encrypted and authenticated both ways)."""
        return self.endpoint.protection is not None

    @property
    def sending(self) -> bool:
        return self._sending

    @property
    def closed(self) -> bool:
        return self._closed

    def update(self, media: NegotiatedMedia) -> None:
        """Apply a (re)negotiation: INVITE answer, re-INVITE for hold/resume or a new address."""
        previous = self.media
        self.media = media
        self.codec = media.codec
        self.telephone_event_pt = media.telephone_event_pt
        was_sending = self._sending
        self._sending = media.direction.receives and media.remote_port != 0
        if self._sending and not was_sending:
            self._need_marker = True
        pts = {int(media.codec), COMFORT_NOISE_PT}
        if media.telephone_event_pt is not None:
            pts.add(media.telephone_event_pt)
        if previous is None or (previous.remote_host, previous.remote_port) != (
            media.remote_host,
            media.remote_port,
        ):
            # New address: a new negotiation, latch anew. A pure hold/resume keeps the latch
            # (no fresh window for a hijacker every time a NAT'd handset puts us on hold).
            self.endpoint.set_remote(media.remote_host, media.remote_port, pts)
        else:
            self.endpoint.set_payload_types(pts)
        self._apply_srtp(media)
        self.endpoint.packet_time = media.ptime / 1000
        # A peer that does not send (inactive/recvonly) must not trip the media timeout.
        if previous is None or previous.direction.sends != media.direction.sends:
            self.endpoint.set_media_timeout(self._media_timeout if media.direction.sends else None)

    def _apply_srtp(self, media: NegotiatedMedia) -> None:
        current = self.endpoint.protection
        if media.srtp is None:
            self.endpoint.set_protection(None)
        elif current is None:
            self.endpoint.set_protection(SrtpSession(media.srtp, self.on_srtp_failure))
        else:
            current.rekey(media.srtp)  # same keys: the contexts (and their indexes) go on

    # ----------------------------------------------------------------- listeners
    def add_audio_listener(self, listener: AudioListener) -> None:
        """``listener(payload, codec)`` for every received audio packet (bridge, recorder)."""
        self._audio_listeners.append(listener)

    def remove_audio_listener(self, listener: AudioListener) -> None:
        if listener in self._audio_listeners:
            self._audio_listeners.remove(listener)

    def add_dtmf_listener(self, listener: DtmfListener) -> None:
        self._dtmf_listeners.append(listener)

    def remove_dtmf_listener(self, listener: DtmfListener) -> None:
        if listener in self._dtmf_listeners:
            self._dtmf_listeners.remove(listener)

    def add_close_listener(self, listener: CloseListener) -> None:
        self._close_listeners.append(listener)

    def remove_close_listener(self, listener: CloseListener) -> None:
        if listener in self._close_listeners:
            self._close_listeners.remove(listener)

    # ------------------------------------------------------------------- receive
    def _on_packet(self, packet: RtpPacket) -> None:
        pt = packet.payload_type
        codec = self.codec
        if codec is not None and pt == codec:
            payload = packet.payload
            delta = (packet.timestamp - self._rx_ts) & 0xFFFFFFFF
            self.rx_samples = (
                delta if packet.ssrc == self._rx_ssrc and 0 < delta <= _MAX_TS_GAP else len(payload)
            )
            self.rx_marker = packet.marker or packet.ssrc != self._rx_ssrc
            self._rx_ts = packet.timestamp
            self._rx_ssrc = packet.ssrc
            for listener in self._audio_listeners:
                listener(payload, codec)
        elif pt == self.telephone_event_pt and pt is not None:
            digit = self._detector.feed(packet)
            if digit is not None:
                self._dispatch_digit(digit)

    def deliver_digit(self, digit: str) -> None:
        """A key press that arrived by signalling (SIP INFO) rather than in the RTP stream."""
        self._dispatch_digit(digit)

    def _dispatch_digit(self, digit: str) -> None:
        # Listeners (a player doing barge-in) first, so they stop before the owner reacts.
        for listener in tuple(self._dtmf_listeners):
            listener(digit)
        if self.on_dtmf is not None:
            self.on_dtmf(digit)

    # ---------------------------------------------------------------------- send
    def claim(self, owner: object) -> object | None:
        """Make ``owner`` the only source of audio; returns the previous claimant."""
        previous, self._claimant = self._claimant, owner
        if not self._continuous:
            self._need_marker = True
        return previous

    def release(self, owner: object) -> None:
        """Give the leg back to background sources (music on hold, the bridge)."""
        if self._claimant is owner:
            self._claimant = None
            if not self._continuous:
                self._need_marker = True

    def set_continuous(self, on: bool) -> None:
        """Mark the stream as kept continuous (by the line filler): markers only after gaps."""
        self._continuous = on

    @property
    def last_relayed(self) -> bool:
        """The last packet sent was relayed by the bridge."""
        return self._relayed

    @property
    def claimant(self) -> object | None:
        return self._claimant

    def send_audio(
        self,
        data: bytes,
        *,
        encoded: bool = False,
        marker: bool = False,
        samples: int | None = None,
        owner: object | None = None,
        relayed: bool = False,
    ) -> bool:
        """Send one packet of audio: 16-bit PCM, or ``encoded`` bytes in the leg's codec.

        ``samples`` is the timestamp advance (default: the packet's length). Dropped
        (False) before negotiation, on hold, while sending DTMF or when the leg is
        claimed by somebody other than ``owner``. ``relayed``: from the bridge, paced
        by the other side's packets rather than by the ticker.
        """
        if relayed and owner is None:
            return self.relay_audio(
                data if encoded or self.codec is None else g711.encode(self.codec, data),
                samples or 0,
                marker,
            )
        codec = self.codec
        if not self._sending or codec is None or self._closed:
            return False
        if (self._claimant is not None and owner is not self._claimant) or self._dtmf_out:
            self.suppressed += 1
            return False
        payload = data if encoded else g711.encode(codec, data)
        if self._continuous:
            now = self.ticker.loop.time()
            marker = self._need_marker or now - self._last_tx > _REAL_GAP
            self._catch_up(now)
            self._last_tx = now
        elif self._need_marker:
            marker = True
        self._need_marker = False
        self._relayed = False
        self._filled = False
        self.sent += 1
        return self.endpoint.send(
            self.sender.packet_bytes(payload, codec, samples or len(payload), marker)
        )

    def relay_audio(self, payload: bytes, samples: int, marker: bool) -> bool:
        """The bridge's path: one packet in the leg's codec, relayed from the other side
        (paced by its packets rather than by the ticker), ``samples`` since the previous one
        (0: the payload's length). The rules of ``send_audio`` without its keyword arguments
        and branches for other sources: this runs for every relayed packet."""
        codec = self.codec
        if not self._sending or codec is None or self._closed:
            return False
        if self._claimant is not None or self._dtmf_out:
            self.suppressed += 1
            return False
        if self._continuous:
            now = self.ticker.loop.time()
            marker = self._need_marker or now - self._last_tx > _REAL_GAP
            self._last_tick = None
            if self._filled:  # the filler already covered the other side's pause
                samples = 0
            self._last_tx = now
        elif self._need_marker:
            marker = True
        self._need_marker = False
        self._relayed = True
        self._filled = False
        self.sent += 1
        return self.endpoint.send(
            self.sender.packet_bytes(payload, codec, samples or len(payload), marker)
        )

    def _catch_up(self, now: float) -> None:
        """Keep a continuous leg's timestamps on the clock: a ticker-paced packet after
        missed rounds (the loop stalled, or the bridge went quiet before the filler took
        over) skips the timestamp by the frames that were never sent."""
        tick = self.ticker.tick
        if self._last_tick is not None:
            missed = tick - self._last_tick - 1
        elif self._relayed:  # after the bridge's packets: by the time that passed
            missed = round((now - self._last_tx) / self.ticker.period) - 1
        else:
            missed = 0
        if 0 < missed <= _MAX_CATCH_UP:
            self.sender.skip(missed * FRAME_SAMPLES)
        self._last_tick = tick

    def send_fill(self, frame: bytes, tick: int, now: float) -> bool:
        """One frame of the line filler (encoded, 20 ms) when no other source owns the leg.

        The rules of ``send_audio`` for an unclaimed leg, without its branches for other
        sources: the filler runs this for every quiet kept leg in every round. ``tick`` and
        ``now`` are the round's (the filler reads them once for all legs)."""
        if self._claimant is not None or self._dtmf_out:
            return False
        codec = self.codec
        if not self._sending or codec is None or self._closed:
            self._filled = False
            return False
        marker = self._need_marker
        if self._continuous:
            marker = marker or now - self._last_tx > _REAL_GAP
            if self._last_tick != tick - 1:  # not straight after the previous round's packet
                self._catch_up(now)
            self._last_tick = tick
            self._last_tx = now
        self._need_marker = False
        self._relayed = False
        self.sent += 1
        sent = self._filled = self.endpoint.send(
            self.sender.packet_bytes(frame, codec, len(frame), marker)
        )
        return sent

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> asyncio.Future[bool]:
        """Send an RFC 4733 key press, paced at 20 ms, instead of audio while it lasts.

        The future resolves True when all packets went out, False if the peer did not
        negotiate telephone-event or we may not send. Raises ValueError for a non-digit.
        """
        future: asyncio.Future[bool] = self.ticker.loop.create_future()
        pt = self.telephone_event_pt
        if pt is None or not self._sending or self._closed:
            packets = dtmf_packets(digit, RtpSender(), 101, duration_ms)  # validates the digit
            future.set_result(False)
            return future
        packets = dtmf_packets(digit, self.sender, pt, duration_ms)
        if not self._dtmf_out:
            self.ticker.subscribe(self._dtmf_tick)
        for index, packet in enumerate(packets):
            self._dtmf_out.append((packet, future if index == len(packets) - 1 else None))
        return future

    def _dtmf_tick(self, tick: int) -> None:
        packet, future = self._dtmf_out.popleft()
        self.sent += 1
        self.endpoint.send(packet)
        if future is not None and not future.done():
            future.set_result(True)
        if not self._dtmf_out:
            self.ticker.unsubscribe(self._dtmf_tick)
            self._need_marker = True

    # -------------------------------------------------------------------- close
    def close(self) -> None:
        """Release the port and tell every listener (players, bridge, recorder)."""
        if self._closed:
            return
        self._closed = True
        self._sending = False
        if self._dtmf_out:
            self.ticker.unsubscribe(self._dtmf_tick)
            for _, future in self._dtmf_out:
                if future is not None and not future.done():
                    future.set_result(False)
            self._dtmf_out.clear()
        self.endpoint.close()
        for listener in tuple(self._close_listeners):
            try:
                listener(self)
            except Exception:
                log.exception("media leg close listener failed")
        self._close_listeners.clear()
        self._audio_listeners.clear()
        self._dtmf_listeners.clear()

    def _on_endpoint_closed(self, endpoint: RtpEndpoint) -> None:
        self.close()

    async def wait_closed(self) -> None:
        await self.endpoint.wait_closed()
