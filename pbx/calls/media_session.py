"""SDP offer/answer for a call leg, bound to an anchored RTP endpoint of ours.

The service always puts its own address in the SDP it sends, so caller and volunteer only ever see
the service: neither learns the other's address.

SRTP (SDES) policy per leg: ``srtp`` (off, offer, require) and whether the leg's signalling is
TLS. Keys are offered or accepted only over TLS; a leg that requires SRTP refuses plain RTP (488)
and anything not signalled over TLS.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import structlog

from pbx.calls.legs import InboundLeg, OfferHandler
from pbx.calls.signal import Signal
from pbx.media.dtmf import parse_info_body
from pbx.media.filler import LineFiller
from pbx.media.leg import MediaLeg
from pbx.media.offer_answer import SrtpRequired, answer_offer, build_offer, parse_answer
from pbx.media.ports import PortPool, PortsExhausted
from pbx.media.sdp import NoCommonCodec, SdpError, SessionDescription, UnusableAddress
from pbx.media.srtp import DEFAULT_SUITES, LocalKeys, SrtpMode, Suite
from pbx.sip.message import Request
from pbx.sip.peer import TransportKind

log = structlog.get_logger("pbx.calls.media")

__all__ = ["MediaError", "MediaFactory", "NoCommonCodec", "PortsExhausted"]

_session_ids = itertools.count(1000)


class MediaError(Exception):
    """A media problem that maps to a SIP status (488 bad/unsupported SDP, 503 no ports)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(eq=False)  # identity, not value: one leg's media
class AnchoredMedia:
    leg: MediaLeg
    host: str
    dead: Signal = field(default_factory=Signal)  # no RTP for media_timeout
    session_id: int = field(default_factory=lambda: next(_session_ids))
    version: int = 0
    our_offer: SessionDescription | None = None
    filler: LineFiller | None = None  # keeps the stream towards the caller from going quiet
    srtp: SrtpMode = SrtpMode.OFF  # this leg's media protection policy
    secure_signalling: bool = False  # the leg's signalling is TLS: keys may be exchanged
    keys: LocalKeys = field(default_factory=LocalKeys)  # our SRTP master keys for this leg
    our_offers: dict[bool, SessionDescription] = field(default_factory=dict)  # by secure

    @property
    def protected(self) -> bool:
        """The media is SRTP (as last negotiated)."""
        return self.leg.protected

    def _mode(self, secure: bool) -> SrtpMode:
        """The policy as it applies over signalling that is (not) TLS: no keys in the clear."""
        if secure or self.srtp is SrtpMode.REQUIRE:
            return self.srtp
        return SrtpMode.OFF

    @property
    def is_dead(self) -> bool:
        return self.dead.is_set()

    async def wait_dead(self) -> None:
        await self.dead.wait()

    def add_dtmf_listener(self, listener: Callable[[str], None]) -> None:
        self.leg.add_dtmf_listener(listener)

    def remove_dtmf_listener(self, listener: Callable[[str], None]) -> None:
        self.leg.remove_dtmf_listener(listener)

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
        mode = self._mode(self.secure_signalling)
        if mode is SrtpMode.REQUIRE and not self.secure_signalling:
            log.warning("srtp_required_refused", reason="signalling_not_tls")
            raise MediaError(488, "Not Acceptable Here - SRTP over TLS required")
        try:
            offer = SessionDescription.parse(offer_body)
            self.version += 1
            answer, negotiated = answer_offer(
                offer, self.host, self.leg.local_address[1], session_id=self.session_id,
                version=self.version, srtp=mode, keys=self.keys,
            )  # fmt: skip
        except SrtpRequired as exc:
            log.warning("srtp_required_refused", reason="plain_rtp_offered")
            raise MediaError(488, "Not Acceptable Here - SRTP required") from exc
        except NoCommonCodec as exc:
            raise MediaError(488, "Not Acceptable Here - No common codec") from exc
        except UnusableAddress as exc:
            raise MediaError(488, f"Not Acceptable Here - {exc}"[:100]) from exc
        except SdpError as exc:
            raise MediaError(488, f"Not Acceptable Here - Bad SDP: {exc}"[:100]) from exc
        self.leg.update(negotiated)
        return answer.to_bytes()

    def offer(self, secure: bool | None = None) -> bytes:
        """Our offer, to a peer whose signalling is (not) TLS (default: this leg's). With
        ``offer`` the keys ride on RTP/AVP (best effort), with ``require`` on RTP/SAVP; a peer
        that must not get keys gets plain RTP, or MediaError (488) when SRTP is required."""
        secure = self.secure_signalling if secure is None else secure
        mode = self._mode(secure)
        if mode is SrtpMode.REQUIRE and not secure:
            raise MediaError(488, "Not Acceptable Here - SRTP over TLS required")
        self.version += 1
        crypto = self.keys.offer() if mode is not SrtpMode.OFF else []
        self.our_offer = build_offer(
            self.host, self.leg.local_address[1], session_id=self.session_id,
            version=self.version, crypto=crypto, savp=mode is SrtpMode.REQUIRE,
        )  # fmt: skip
        self.our_offers[secure] = self.our_offer
        return self.our_offer.to_bytes()

    def accept_answer(self, answer_body: bytes, secure: bool | None = None) -> None:
        """The answer of a peer we sent ``offer(secure)`` to."""
        if secure is not None:
            # the handset that answered is this leg's peer from now on: its re-INVITEs are
            # answered as its transport allows (keys only over TLS)
            self.secure_signalling = secure
        our_offer = self.our_offers.get(self.secure_signalling, self.our_offer)
        assert our_offer is not None
        try:
            negotiated = parse_answer(SessionDescription.parse(answer_body), our_offer)
        except SdpError as exc:
            raise MediaError(488, f"Not Acceptable Here - Bad SDP answer: {exc}"[:100]) from exc
        if negotiated.srtp is None and self.srtp is SrtpMode.REQUIRE:
            log.warning("srtp_required_refused", reason="plain_rtp_answered")
            raise MediaError(488, "Not Acceptable Here - SRTP required")
        self.leg.update(negotiated)

    def on_info(self, request: Request) -> None:
        """SIP INFO key presses (application/dtmf-relay, application/dtmf) join the RTP ones."""
        digit = parse_info_body(request.content_type, request.body)
        if digit is not None:
            self.leg.deliver_digit(digit)

    def close(self) -> None:
        self.leg.close()


@dataclass(frozen=True)
class SrtpPolicy:
    """SRTP for volunteers' legs: the global mode, a volunteer's own (None: the global one)."""

    mode: SrtpMode = SrtpMode.OFFER
    suites: tuple[Suite, ...] = DEFAULT_SUITES  # offered in this order; answered if offered
    of_volunteer: Callable[[str], SrtpMode | None] = lambda username: None

    def for_volunteer(self, username: str) -> SrtpMode:
        return self.of_volunteer(username) or self.mode


@dataclass
class MediaFactory:
    pool: PortPool
    host: str  # the address we advertise in SDP
    media_timeout: float | None = 60.0
    filler: LineFiller | None = None  # see AnchoredMedia.keep_continuous
    srtp: SrtpPolicy = field(default_factory=SrtpPolicy)
    strays: int = 0  # RTP packets dropped for coming from anybody but the signalled peer
    srtp_auth_failures: int = 0  # SRTP packets dropped for failing authentication
    # open legs by id, for the metrics (read from the scraping thread: copied in one C call)
    live: dict[int, AnchoredMedia] = field(default_factory=dict)

    async def open(
        self,
        peer_hosts: Collection[str],
        *,
        srtp: SrtpMode = SrtpMode.OFFER,
        secure_signalling: bool = False,
    ) -> AnchoredMedia:
        """Media for a leg whose signalling comes from ``peer_hosts`` (IP addresses): besides
        the address its SDP names, only those may send it RTP (from any port: NAT). ``srtp``
        and ``secure_signalling`` (TLS) decide whether it is SRTP (see AnchoredMedia)."""
        dead = Signal()
        try:
            leg = await MediaLeg.open(
                self.pool, media_timeout=self.media_timeout, on_timeout=lambda _: dead.set(),
                signalling_hosts=peer_hosts, on_foreign=self._stray,
                on_srtp_failure=self._srtp_failed,
            )  # fmt: skip
        except PortsExhausted as exc:
            raise MediaError(503, "Service Unavailable - No media ports") from exc
        media = AnchoredMedia(
            leg, self.host, dead, filler=self.filler, srtp=srtp,
            secure_signalling=secure_signalling, keys=LocalKeys(self.srtp.suites),
        )  # fmt: skip
        key = id(media)
        self.live[key] = media

        def closed(_: MediaLeg) -> None:
            self.live.pop(key, None)

        leg.add_close_listener(closed)
        return media

    async def open_for_volunteer(self, username: str, peer_hosts: Collection[str]) -> AnchoredMedia:
        """Media for ringing a volunteer's handsets, under the volunteer's SRTP policy (each
        handset is offered keys only if its signalling is TLS: ``offer(secure=...)``)."""
        return await self.open(peer_hosts, srtp=self.srtp.for_volunteer(username))

    def legs_by_protection(self) -> dict[str, int]:
        """Live media legs that negotiated media, by protection (metrics)."""
        counts = {"plain": 0, "srtp": 0}
        for media in list(self.live.values()):
            if not media.leg.closed and media.leg.media is not None:
                counts["srtp" if media.protected else "plain"] += 1
        return counts

    def _stray(self) -> None:
        self.strays += 1

    def _srtp_failed(self) -> None:
        self.srtp_auth_failures += 1

    async def open_for(
        self, leg: InboundLeg, srtp: SrtpMode = SrtpMode.OFFER
    ) -> tuple[AnchoredMedia, bytes | None] | None:
        """Anchor media for an inbound call: our answer to its SDP offer (None when the INVITE
        had none: we offer in the 200), with re-INVITEs and SIP INFO keys wired to it. On a
        media problem the leg is refused (503 no ports, 488 unusable SDP) and None returned.

        A trunk's call gets the default ``offer``: SRTP only if the trunk offers it over TLS;
        a volunteer's own call (feature codes) gets the volunteer's policy."""
        try:
            host = leg.caller_host
            media = await self.open(
                [] if host is None else [host], srtp=srtp,
                secure_signalling=leg.transport is TransportKind.TLS,
            )  # fmt: skip
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
