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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain

import structlog

from ivr.model import Dialplan
from pbx.anonymity import CallerContext
from pbx.call_records import CallRecords
from pbx.calls.bridging import bridge_until_end
from pbx.calls.handsets import Handsets
from pbx.calls.legs import InboundLeg, LegState, OutboundLeg, watch_call_task
from pbx.calls.media_session import AnchoredMedia, MediaError, MediaFactory
from pbx.calls.ringing import Ringer, Whisper
from pbx.sip.registrar import Binding
from pbx.sip.stack import failure_site

log = structlog.get_logger("pbx.calls.direct")


@dataclass
class DirectRouter:
    handsets: Handsets  # who is registered, and where their handsets are
    ringer: Ringer
    media: MediaFactory
    whisper: Whisper = Whisper()  # what the volunteer hears on answering
    ring_timeout: float = 20.0
    busy: set[str] = field(default_factory=set)
    last_call_end: dict[str, float] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    on_outcome: Callable[[str], None] = lambda outcome: None  # metrics: how each call ended
    records: CallRecords = field(default_factory=CallRecords)  # one record per call
    plan: Callable[[], Dialplan | None] = lambda: None  # names the entry line in the record
    _never: dict[str, None] = field(default_factory=dict, init=False)  # see _never_called
    _users_seen: int = field(default=-1, init=False)

    def inbound_call(self, leg: InboundLeg, caller: CallerContext) -> None:
        watch_call_task(asyncio.create_task(self._run(leg, caller)), leg, self.tasks)

    def volunteer_call(self, leg: InboundLeg, username: str, dialed: str) -> None:
        leg.reject(404, "Not Found - No such feature code")

    def candidates(self) -> Iterator[str]:
        """Longest idle first: volunteers never called yet (in the order they registered), then
        by their last call's end (``last_call_end`` is kept in that order, with those being rung
        or in a call at its back, so the scan from the front meets the idle first).

        One at a time, each the first in that order not busy and not yet offered this call:
        the order changes while a volunteer rings (other calls end), and a call costs the
        volunteers it passes over, not a copy of every one registered. Whether a handset is
        ringable is checked as each comes up: usually the first one takes the call."""
        offered: set[str] = set()
        while True:
            order = chain(self._never_called(), self.last_call_end)
            username = next((u for u in order if u not in offered and u not in self.busy), None)
            if username is None:
                return
            offered.add(username)
            yield username

    def _never_called(self) -> dict[str, None]:
        """Registered volunteers not in ``last_call_end`` (each leaves when first rung),
        rederived only when the registered users change. Then a volunteer no longer registered
        leaves ``last_call_end`` too, so a call passes over those on shift, not everyone who
        ever was; on registering again they count as never called, the longest idle."""
        version = self.handsets.users_version()
        if self._users_seen != version:
            self._users_seen = version
            known = self.handsets.known_users()
            ended = self.last_call_end
            for gone in [u for u in ended if u not in known]:
                del ended[gone]
            self._never = dict.fromkeys(u for u in known if u not in ended)
        return self._never

    def take(self, username: str) -> None:
        """Busy from now: rung, then perhaps in the call."""
        self.busy.add(username)
        self._never.pop(username, None)
        self.last_call_end[username] = self.last_call_end.pop(username, 0.0)  # to the back

    def rung(self, username: str) -> None:
        """Free again, at the end of the idle order, whether they answered or not."""
        self.busy.discard(username)
        self._never.pop(username, None)
        self.last_call_end.pop(username, None)
        self.last_call_end[username] = time.time()

    async def _run(self, leg: InboundLeg, caller: CallerContext) -> None:
        self.records.started(leg.ref, caller, self.plan())
        try:
            await self._connect(leg, caller)
        except Exception as exc:  # a bug must cost one call a clean ending, never leave it hanging
            log.error("call_failed", call=leg.ref, error=type(exc).__name__, at=failure_site(exc))
            if not leg.is_ended:
                await leg.hangup("internal_error")
        finally:  # however the call ends (also cancelled at shutdown), its record is written
            self.records.finished(leg.ref, _outcome(leg.end_reason) if leg.is_ended else "shutdown")
        self.on_outcome(_outcome(leg.end_reason))

    async def _connect(self, leg: InboundLeg, caller: CallerContext) -> None:
        anchored = await self.media.open_for(leg)
        if anchored is None:
            return
        caller_media, caller_sdp = anchored
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
        offer = await self._offer_to_volunteers(leg, caller_media, caller_sdp, caller.call_ref)
        if offer is Offer.NO_ANSWER:
            leg.reject(480, "Temporarily Unavailable - No volunteer available")

    async def _offer_to_volunteers(
        self, leg: InboundLeg, caller_media: AnchoredMedia, caller_sdp: bytes | None, ref: str
    ) -> Offer:
        """Ring each idle volunteer once (all their handsets at once), longest idle first,
        until one takes the call.

        Works for a caller still ringing and for one already answered (after the IVR).
        """
        for username in self.candidates():
            bindings = self.handsets.ringable(username)
            if not bindings:
                continue
            if leg.is_ended:
                return Offer.CALLER_LEFT
            attempt = _Attempt(leg, caller_media, caller_sdp, username, bindings)
            self.take(username)
            try:
                await self._try(attempt, ref)
            finally:
                self.rung(username)
            if attempt.connected:
                return Offer.CONNECTED
            if leg.is_ended:
                return Offer.CALLER_LEFT
        return Offer.CALLER_LEFT if leg.is_ended else Offer.NO_ANSWER

    async def _try(self, attempt: _Attempt, ref: str) -> bool:
        """Ring one volunteer; True when the call was connected (or the caller is gone)."""
        leg = attempt.leg
        try:
            vol_media = await self.media.open_for_volunteer(
                attempt.username, {b.source.host for b in attempt.bindings}
            )
        except MediaError as exc:
            leg.reject(exc.status, exc.reason)
            return True
        try:
            targets = [self.handsets.target(b) for b in attempt.bindings]
            out = await self.ringer.ring(leg, vol_media, targets, ref, self.ring_timeout)
            if out is None:
                return leg.is_ended
            if not await self.whisper.to(leg, out, vol_media):
                return leg.is_ended
            await self._talk(attempt, out, vol_media)
            return True
        finally:
            vol_media.close()

    async def _talk(self, attempt: _Attempt, out: OutboundLeg, vol_media: AnchoredMedia) -> None:
        leg, caller_media = attempt.leg, attempt.caller_media
        if leg.state in (LegState.NEW, LegState.RINGING):
            if not await leg.answer(attempt.caller_sdp or caller_media.offer()):
                await out.hangup("caller_no_ack")
                return
            caller_media.keep_continuous()
        attempt.connected = True
        self.records.answered(leg.ref, attempt.username, None)  # no queue: no wait to count
        log.info("call_connected", call=leg.ref, volunteer=attempt.username)
        try:
            await bridge_until_end(leg, caller_media, out, vol_media)
        finally:
            self.records.talk_ended(leg.ref, None)


@dataclass
class _Attempt:
    leg: InboundLeg
    caller_media: AnchoredMedia
    caller_sdp: bytes | None
    username: str
    bindings: list[Binding]  # every handset of the volunteer: they ring at once
    connected: bool = False


class Offer(enum.Enum):
    """How offering a caller to the volunteers went."""

    CONNECTED = "connected"  # a volunteer took the call (it has ended since)
    CALLER_LEFT = "caller_left"
    NO_ANSWER = "no_answer"  # nobody idle, or nobody picked up


def _outcome(reason: str) -> str:
    """How a direct call ended, from its leg's end reason."""
    if reason == "caller_cancel":
        return "abandoned"
    if reason.startswith("rejected_480"):
        return "no_volunteer"
    if reason.startswith("rejected_"):
        return "rejected"
    return "answered"
