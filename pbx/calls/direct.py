"""The core's own call application: a trunk call rings a registered volunteer handset.

It is what the service runs before the IVR and language queues take over routing, and the
reference for how they use the legs: the caller is answered only when a volunteer answers, media
is anchored in a bridge, and either side hanging up ends both. The volunteer's handset shows
"Hulplijn" and never anything of the caller.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from pbx.anonymity import CallerContext
from pbx.calls.legs import InboundLeg, LegState, OfferHandler, OutboundLeg
from pbx.calls.media_session import AnchoredMedia, MediaError, MediaFactory
from pbx.media.bridge import Bridge
from pbx.media.player import play
from pbx.sip.registrar import Binding
from pbx.switchboard import Switchboard

log = structlog.get_logger("pbx.calls.direct")


@dataclass
class DirectRouter:
    switchboard: Switchboard
    media: MediaFactory
    ring_timeout: float = 20.0
    display_name: str = "Hulplijn"
    whisper: bytes = b""  # PCM the volunteer hears on answering, before the caller is connected
    busy: set[str] = field(default_factory=set)
    last_call_end: dict[str, float] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    on_outcome: Callable[[str], None] = lambda outcome: None  # metrics: how each call ended

    def inbound_call(self, leg: InboundLeg, caller: CallerContext) -> None:
        task = asyncio.create_task(self._run(leg, caller))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def volunteer_call(self, leg: InboundLeg, username: str, dialed: str) -> None:
        leg.reject(404, "Not Found - No such feature code")

    def _candidates(self) -> list[str]:
        now = self.switchboard.wall_clock()
        users = self.switchboard.registrar.registered_users(now) - self.busy
        return sorted(users, key=lambda u: self.last_call_end.get(u, 0.0))  # longest idle first

    async def _run(self, leg: InboundLeg, caller: CallerContext) -> None:
        try:
            await self._connect(leg, caller)
        except Exception:  # a bug must cost one call a clean ending, never leave it hanging
            log.exception("call_failed", call=leg.ref)
            if not leg.is_ended:
                await leg.hangup("internal_error")
        reason = leg.end_reason
        if reason == "caller_cancel":
            outcome = "abandoned"
        elif reason.startswith("rejected_480"):
            outcome = "no_volunteer"
        elif reason.startswith("rejected_"):
            outcome = "rejected"
        else:
            outcome = "answered"
        self.on_outcome(outcome)

    async def _connect(self, leg: InboundLeg, caller: CallerContext) -> None:
        try:
            caller_media = await self.media.open()
        except MediaError as exc:
            leg.reject(exc.status, exc.reason)
            return
        try:
            caller_sdp = caller_media.answer(leg.remote_sdp) if leg.remote_sdp else None
        except MediaError as exc:
            caller_media.close()
            leg.reject(exc.status, exc.reason)
            return
        leg.on_reinvite = reinvite_handler(caller_media)
        leg.on_info = caller_media.on_info
        try:
            await self._ring_volunteers(leg, caller, caller_media, caller_sdp)
        finally:
            caller_media.close()

    async def _ring_volunteers(
        self,
        leg: InboundLeg,
        caller: CallerContext,
        caller_media: AnchoredMedia,
        caller_sdp: bytes | None,
    ) -> None:
        leg.ring()
        offer = await self.offer_to_volunteers(leg, caller_media, caller_sdp, caller.call_ref)
        if offer is Offer.NO_ANSWER:
            leg.reject(480, "Temporarily Unavailable - No volunteer available")

    async def offer_to_volunteers(
        self, leg: InboundLeg, caller_media: AnchoredMedia, caller_sdp: bytes | None, ref: str
    ) -> Offer:
        """Ring each idle volunteer once, longest idle first, until one takes the call.

        Works for a caller still ringing and for one already answered (after the IVR).
        """
        for username in self._candidates():
            for binding in self.switchboard.volunteer_bindings(username):
                if leg.is_ended:
                    return Offer.CALLER_LEFT
                attempt = _Attempt(leg, caller_media, caller_sdp, username, binding)
                self.busy.add(username)
                try:
                    await self._try(attempt, ref)
                finally:
                    self.busy.discard(username)
                    self.last_call_end[username] = time.time()
                if attempt.connected:
                    return Offer.CONNECTED
                if leg.is_ended:
                    return Offer.CALLER_LEFT
        return Offer.CALLER_LEFT if leg.is_ended else Offer.NO_ANSWER

    async def _try(self, attempt: _Attempt, ref: str) -> bool:
        """Ring one handset; True when the call was connected (or the caller is gone)."""
        try:
            vol_media = await self.media.open()
        except MediaError as exc:
            attempt.leg.reject(exc.status, exc.reason)
            return True
        out, call_id, tag = self.switchboard.new_outbound_leg(attempt.binding.source, ref)
        out.on_reinvite = reinvite_handler(vol_media)
        out.on_info = vol_media.on_info
        try:
            invite = asyncio.create_task(
                out.call(
                    attempt.binding.contact,
                    attempt.binding.source,
                    from_user="hulplijn",
                    from_display=self.display_name,
                    to=f"<sip:{attempt.username}@{self.switchboard.stack.public_host}>",
                    sdp=vol_media.offer(),
                    call_id=call_id,
                    local_tag=tag,
                )
            )
            caller_gone = asyncio.create_task(attempt.leg.ended.wait())
            done, _ = await asyncio.wait(
                {invite, caller_gone},
                timeout=self.ring_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            caller_gone.cancel()
            if invite not in done:
                out.cancel()  # the caller left, or nobody picked up in time
            response = await invite
            if not 200 <= response.status < 300:
                log.info("volunteer_not_answering", call=ref, status=response.status)
                return attempt.leg.is_ended
            if attempt.leg.is_ended:
                await out.hangup("caller_gone")
                return True
            try:
                vol_media.accept_answer(out.remote_sdp)
            except MediaError:
                await out.hangup("bad_sdp")
                return False
            if self.whisper and not await self._whisper(attempt.leg, out, vol_media):
                return attempt.leg.is_ended
            await self._talk(attempt, out, vol_media)
            return True
        finally:
            vol_media.close()

    async def _whisper(self, leg: InboundLeg, out: OutboundLeg, media: AnchoredMedia) -> bool:
        """Tell the volunteer a helpline call is coming; False if either side left meanwhile."""
        playing = asyncio.create_task(play(media.leg, [self.whisper], barge_in=False))
        gone = {asyncio.create_task(leg.ended.wait()), asyncio.create_task(out.ended.wait())}
        await asyncio.wait({playing, *gone}, return_when=asyncio.FIRST_COMPLETED)
        for task in gone:
            task.cancel()
        if not playing.done():
            playing.cancel()
        if leg.is_ended or out.is_ended:
            if not out.is_ended:
                await out.hangup("caller_gone")
            return False
        return True

    async def _talk(self, attempt: _Attempt, out: OutboundLeg, vol_media: AnchoredMedia) -> None:
        leg = attempt.leg
        if leg.state in (LegState.NEW, LegState.RINGING):
            caller_sdp = attempt.caller_sdp or attempt.caller_media.offer()
            if not await leg.answer(caller_sdp):
                await out.hangup("caller_no_ack")
                return
        attempt.connected = True
        log.info("call_connected", call=leg.ref, volunteer=attempt.username)
        await bridge_until_end(leg, attempt.caller_media, out, vol_media)


async def bridge_until_end(
    leg: InboundLeg, caller_media: AnchoredMedia, out: OutboundLeg, other_media: AnchoredMedia
) -> None:
    """Relay media between the caller and the other leg until either hangs up or goes silent
    (media timeout), then end both."""
    bridge = Bridge(caller_media.leg, other_media.leg).start()
    waits: set[asyncio.Future[Any]] = {
        asyncio.create_task(leg.ended.wait()),
        asyncio.create_task(out.ended.wait()),
        asyncio.ensure_future(bridge.done),
        asyncio.create_task(caller_media.dead.wait()),
        asyncio.create_task(other_media.dead.wait()),
    }
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    bridge.stop()
    if caller_media.dead.is_set() or other_media.dead.is_set():
        log.warning("media_timeout", call=leg.ref, caller_dead=caller_media.dead.is_set())
    if leg.state is not LegState.ENDED:
        await leg.hangup("other_side_hangup")
    if out.state is not LegState.ENDED:
        await out.hangup("caller_hangup")
    log.info("call_ended", call=leg.ref, reason=leg.end_reason)


@dataclass
class _Attempt:
    leg: InboundLeg
    caller_media: AnchoredMedia
    caller_sdp: bytes | None
    username: str
    binding: Binding
    connected: bool = False


class Offer(enum.Enum):
    """How offering a caller to the volunteers went."""

    CONNECTED = "connected"  # a volunteer took the call (it has ended since)
    CALLER_LEFT = "caller_left"
    NO_ANSWER = "no_answer"  # nobody idle, or nobody picked up


def reinvite_handler(media: AnchoredMedia) -> OfferHandler:
    async def handle(offer: bytes) -> bytes | None:
        try:
            return media.answer(offer)
        except MediaError:
            return None

    return handle
