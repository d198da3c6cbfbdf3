"""SDP offer/answer for a call leg, bound to an anchored RTP endpoint of ours.

The service always puts its own address in the SDP it sends, so caller and volunteer only ever see
the service: neither learns the other's address.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Collection
from dataclasses import dataclass, field

from pbx.calls.legs import InboundLeg, OfferHandler
from pbx.media.dtmf import parse_info_body
from pbx.media.filler import LineFiller
from pbx.media.leg import MediaLeg
from pbx.media.ports import PortPool, PortsExhausted
from pbx.media.sdp import (
    NoCommonCodec,
    SdpError,
    SessionDescription,
    UnusableAddress,
    answer_offer,
    build_offer,
    parse_answer,
)
from pbx.sip.message import Request

__all__ = ["MediaError", "MediaFactory", "NoCommonCodec", "PortsExhausted"]

_session_ids = itertools.count(1000)


class MediaError(Exception):
    """A media problem that maps to a SIP status (488 bad/unsupported SDP, 503 no ports)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class AnchoredMedia:
    leg: MediaLeg
    host: str
    dead: asyncio.Event = field(default_factory=asyncio.Event)  # no RTP for media_timeout
    session_id: int = field(default_factory=lambda: next(_session_ids))
    version: int = 0
    our_offer: SessionDescription | None = None
    filler: LineFiller | None = None  # keeps the stream towards the caller from going quiet

    def keep_continuous(self) -> None:
        """From now on (the call is answered) the caller's stream never goes quiet: comfort
        noise whenever nothing else plays, until the leg closes."""
        if self.filler is not None:
            self.filler.keep(self.leg)

    def ringback(self, on: bool) -> None:
        """Ringback instead of comfort noise while a volunteer's handset rings (a kept leg)."""
        if self.filler is not None:
            self.filler.ringback(self.leg, on)

    def answer(self, offer_body: bytes) -> bytes:
        """Answer an offer (INVITE or re-INVITE): updates the media leg, returns our SDP.

        An empty offer (a re-INVITE without SDP) is answered with a fresh offer of ours; the
        session does not change, so the answer in the ACK is not needed."""
        if not offer_body.strip():
            return self.offer()
        try:
            offer = SessionDescription.parse(offer_body)
            self.version += 1
            answer, negotiated = answer_offer(
                offer, self.host, self.leg.local_address[1], session_id=self.session_id,
                version=self.version,
            )  # fmt: skip
        except NoCommonCodec as exc:
            raise MediaError(488, "Not Acceptable Here - No common codec") from exc
        except UnusableAddress as exc:
            raise MediaError(488, f"Not Acceptable Here - {exc}"[:100]) from exc
        except SdpError as exc:
            raise MediaError(488, f"Not Acceptable Here - Bad SDP: {exc}"[:100]) from exc
        self.leg.update(negotiated)
        return answer.to_bytes()

    def offer(self) -> bytes:
        self.version += 1
        self.our_offer = build_offer(
            self.host, self.leg.local_address[1], session_id=self.session_id, version=self.version
        )
        return self.our_offer.to_bytes()

    def accept_answer(self, answer_body: bytes) -> None:
        assert self.our_offer is not None
        try:
            negotiated = parse_answer(SessionDescription.parse(answer_body), self.our_offer)
        except SdpError as exc:
            raise MediaError(488, f"Not Acceptable Here - Bad SDP answer: {exc}"[:100]) from exc
        self.leg.update(negotiated)

    def on_info(self, request: Request) -> None:
        """SIP INFO key presses (application/dtmf-relay, application/dtmf) join the RTP ones."""
        digit = parse_info_body(request.content_type, request.body)
        if digit is not None:
            self.leg.deliver_digit(digit)

    def close(self) -> None:
        self.leg.close()


@dataclass
class MediaFactory:
    pool: PortPool
    host: str  # the address we advertise in SDP
    media_timeout: float | None = 60.0
    filler: LineFiller | None = None  # see AnchoredMedia.keep_continuous
    strays: int = 0  # RTP packets dropped for coming from anybody but the signalled peer

    async def open(self, peer_hosts: Collection[str]) -> AnchoredMedia:
        """Media for a leg whose signalling comes from ``peer_hosts`` (IP addresses): besides
        the address its SDP names, only those may send it RTP (from any port: NAT)."""
        dead = asyncio.Event()
        try:
            leg = await MediaLeg.open(
                self.pool, media_timeout=self.media_timeout, on_timeout=lambda _: dead.set(),
                signalling_hosts=peer_hosts, on_foreign=self._stray,
            )  # fmt: skip
        except PortsExhausted as exc:
            raise MediaError(503, "Service Unavailable - No media ports") from exc
        return AnchoredMedia(leg, self.host, dead, filler=self.filler)

    def _stray(self) -> None:
        self.strays += 1

    async def open_for(self, leg: InboundLeg) -> tuple[AnchoredMedia, bytes | None] | None:
        """Anchor media for an inbound call: our answer to its SDP offer (None when the INVITE
        had none: we offer in the 200), with re-INVITEs and SIP INFO keys wired to it. On a
        media problem the leg is refused (503 no ports, 488 unusable SDP) and None returned."""
        try:
            media = await self.open([leg.incoming.real_source.host] if leg.incoming else [])
        except MediaError as exc:
            leg.reject(exc.status, exc.reason)
            return None
        try:
            sdp = media.answer(leg.remote_sdp) if leg.remote_sdp else None
        except MediaError as exc:
            media.close()
            leg.reject(exc.status, exc.reason)
            return None
        leg.on_reinvite = reinvite_handler(media)
        leg.on_info = media.on_info  # keys sent as SIP INFO count like RFC 4733 ones
        return media, sdp


def reinvite_handler(media: AnchoredMedia) -> OfferHandler:
    """Answer a re-INVITE (hold, resume, new address) on `media`; None refuses it (488)."""

    async def handle(offer: bytes) -> bytes | None:
        try:
            return media.answer(offer)
        except MediaError:
            return None

    return handle
