"""A caller in a language queue: from joining the line to the end of the conversation.

While waiting the caller hears their place in line and an honest estimated wait (every
`announce_every` seconds of the queue) with comfort messages between, and music on hold in
the pauses (a message claims the line, so the music pauses while it plays; without music, the
line filler's comfort noise). The dispatcher's offers ring one volunteer at a time; the caller
keeps hearing the waiting messages meanwhile (with ringback, if set, instead of the music). Once a
volunteer answers they hear the whisper, then both are bridged; at the queue's time limit the
volunteer alone hears a short tone. If the volunteer's handset vanishes mid-call the caller is
told, then is first in line again (or hears goodbye, as the queue is configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from ivr.model import Queue, VolunteerLost
from pbx.call_records import CallRecords
from pbx.calls.bridging import CallEnd, HandoverRequest, Replaceable, bridge_until_end
from pbx.calls.consultation import InCall
from pbx.calls.handover import State
from pbx.calls.handsets import Handsets
from pbx.calls.legs import InboundLeg, OutboundLeg
from pbx.calls.media_session import AnchoredMedia, MediaError, MediaFactory
from pbx.calls.ringing import Ringer, Whisper
from pbx.calls.transfers import VolunteerTransfers, queue_target
from pbx.media.moh import MusicOnHold
from pbx.media.player import play
from pbx.media.prompts import PromptLibrary
from pbx.media.tones import silence, sine
from queues.dispatcher import Dispatcher, Notice, Overflowed, QueueEvent
from queues.engine import Offer

log = structlog.get_logger("pbx.calls.waiting")

COMFORT = ("comfort_1", "comfort_2", "comfort_3")
MAX_SPOKEN = 20  # digit prompts go up to 20; beyond, no number is spoken
# Three short high beeps: noticeable over a conversation, too short to interrupt it.
TIME_LIMIT_TONE = b"".join([sine(1400, 150, 0.25), silence(150)] * 3)


# (the call, what the volunteer asked for, the caller's language, called once the volunteer
# is free) -> how it ended
HandOver = Callable[[InCall, HandoverRequest, str, Callable[[], None]], Awaitable[State]]


class _Next(enum.Enum):
    WAIT_ON = "wait_on"  # the offer did not connect: keep waiting
    REQUEUE = "requeue"  # the volunteer vanished: first in line again


@dataclass(frozen=True)
class _ToQueue:
    """A blind transfer to a colleague's queue: the caller is first in line there now."""

    queue: Queue


@dataclass
class WaitingRoom:
    dispatcher: Dispatcher  # the caller's place in line, offers, and what became of them
    handsets: Handsets  # where an offered volunteer's handsets are
    media: MediaFactory  # media for the volunteer's leg
    ringer: Ringer
    prompts: PromptLibrary
    whisper: Whisper = Whisper()  # what the volunteer hears on answering
    comfort_interval: float = 20.0  # seconds of quiet between waiting messages
    ringback: bool = True  # the caller hears ringback while a volunteer's handset rings
    time_limit_tone: bytes = TIME_LIMIT_TONE
    on_abandon: Callable[[str, float], None] = lambda queue, waited: None  # metrics
    on_answer: Callable[[str, float], None] = lambda queue, waited: None  # metrics
    # Where volunteers may hand a caller over, and with which keys (or their handset's REFER);
    # `hand_over` connects the caller there and says how it went.
    transfers: VolunteerTransfers | None = None
    hand_over: HandOver | None = None
    records: CallRecords = field(default_factory=CallRecords)  # what the call record notes
    # the volunteer's own call a REFER with Replaces names (attended transfer), if any
    replaced: Callable[[str], Replaceable | None] = lambda refer_to: None
    music: MusicOnHold | None = None  # heard between the waiting messages (None: comfort noise)

    async def wait(
        self,
        leg: InboundLeg,
        media: AnchoredMedia,
        queue: Queue,
        language: str,
        region: str | None,
    ) -> str | Queue:
        """Wait for and talk to a volunteer. The outcome (answered, abandoned, ...), or the
        queue whose maximum wait passed (its overflow follows): `queue`, or the colleague's
        queue a volunteer transferred the caller to."""
        inbox = self.dispatcher.inbox(leg.ref)
        transferred_to: str | None = None  # the queue of a blind transfer, until it ends
        try:
            self.dispatcher.join(leg.ref, queue.name, region)
            while True:
                result = await self._stay(leg, media, queue, language, inbox)
                if isinstance(result, _ToQueue):  # waits there now (first in line)
                    queue = result.queue
                    transferred_to = queue_target(queue.name)
                    continue
                if transferred_to is not None and not isinstance(result, _Next):
                    answered = result in ("answered", "handed_over", "handset_lost")
                    self.records.transferred(leg.ref, transferred_to, answered)
                if result is None:
                    return queue
                if not isinstance(result, _Next):
                    return result  # else first in line again: told why, then waits on
        finally:
            self.dispatcher.leave(leg.ref)

    async def _stay(
        self,
        leg: InboundLeg,
        media: AnchoredMedia,
        queue: Queue,
        language: str,
        inbox: asyncio.Queue[QueueEvent],
    ) -> str | None | _Next | _ToQueue:
        hold = asyncio.create_task(self._hold(leg, media, queue, language))
        self._music(media, True)
        try:
            while True:
                event = await _next_event(inbox, leg)
                if event is None:  # the caller hung up while waiting
                    waited = self.dispatcher.abandon(leg.ref)
                    log.info("caller_abandoned", call=leg.ref, queue=queue.name, waited=waited)
                    self.on_abandon(queue.name, waited)
                    self.records.abandoned(leg.ref, waited)
                    return "abandoned"
                if isinstance(event, Overflowed):
                    return None
                if isinstance(event, Notice):  # said over the waiting music, then on as before
                    log.info("waiting_notice", call=leg.ref, queue=queue.name, prompt=event.prompt)
                    hold.cancel()
                    await asyncio.gather(hold, return_exceptions=True)
                    await self._say(media, language, event.prompt)
                    hold = asyncio.create_task(self._hold(leg, media, queue, language))
                    continue
                step = await self._offer(leg, media, queue, language, event, hold)
                if step is not _Next.WAIT_ON:
                    return step
        finally:
            hold.cancel()
            self._music(media, False)

    async def _offer(
        self,
        leg: InboundLeg,
        media: AnchoredMedia,
        queue: Queue,
        language: str,
        offer: Offer,
        hold: asyncio.Task[None],
    ) -> str | _Next | _ToQueue:
        """Ring the offered volunteer; the call's outcome, or what the caller does next."""
        bindings = self.handsets.ringable(offer.username)
        self.records.offered(leg.ref)
        vol_media = None
        if bindings:
            with contextlib.suppress(MediaError):  # no media port free
                vol_media = await self.media.open_for_volunteer(
                    offer.username, [b.source.host for b in bindings]
                )
        if vol_media is None:  # the offer cannot ring: counted as a miss, the caller waits on
            log.warning("offer_not_rung", call=leg.ref, volunteer=offer.username)
            self.dispatcher.missed(leg.ref, offer.username)
            self.records.missed(leg.ref)
            return _Next.WAIT_ON
        try:
            timeout = max(1.0, offer.ring_until - self.dispatcher.now())
            targets = [self.handsets.target(b) for b in bindings]  # every handset
            media.ringback(self.ringback)
            self._music(media, not self.ringback)  # ringback, if heard, takes the music's place
            out: OutboundLeg | None = None
            try:
                out = await self.ringer.ring(
                    leg, vol_media, targets, leg.ref, timeout, queue.shown_as
                )
            finally:
                media.ringback(False)
                self._music(media, out is None)  # nobody answered: music again while waiting
            if out is None:
                if not leg.is_ended:  # the caller is still there: the volunteer missed it
                    self.dispatcher.missed(leg.ref, offer.username)
                    self.records.missed(leg.ref)
                return _Next.WAIT_ON  # a caller who left is counted as abandoned next
            waited = self.dispatcher.connected(leg.ref, offer.username)
            self.on_answer(queue.name, waited)
            self.records.answered(leg.ref, offer.username, waited)
            hold.cancel()
            await asyncio.gather(hold, return_exceptions=True)  # the line is quiet again
            if not await self.whisper.to(leg, out, vol_media):
                self.dispatcher.call_ended(leg.ref)
                if leg.is_ended:
                    return "answered"
                self.dispatcher.requeue_first(leg.ref, queue.name)
                await self._say(media, language, "volunteer_lost")
                return _Next.REQUEUE  # the volunteer hung up during the whisper
            log.info("call_connected", call=leg.ref, queue=queue.name, volunteer=offer.username)
            notice = None if queue.time_limit is None else (
                float(queue.time_limit), self.time_limit_tone
            )  # fmt: skip
            while True:
                request = None
                if self.transfers is not None and self.hand_over is not None:
                    request = HandoverRequest(
                        self.transfers.by_keys(), self.transfers.for_refer, self.replaced
                    )
                end = await bridge_until_end(
                    leg, media, out, vol_media, keep_caller_if_lost=True, notice=notice,
                    handover=request,
                )  # fmt: skip
                if end is not CallEnd.HANDOVER:
                    self.records.talk_ended(leg.ref, queue.time_limit)
                    break
                assert request is not None and request.destination is not None
                log.info("handing_over", call=leg.ref, volunteer=offer.username,
                         to=request.destination, refer=request.by_refer)  # fmt: skip
                call = InCall(leg, media, out, vol_media, offer.username)
                handed = await self._hand_over(call, request, language)
                if handed is not None:
                    self.records.talk_ended(leg.ref, queue.time_limit)
                    if handed is _Next.REQUEUE:
                        self.dispatcher.requeue_first(leg.ref, queue.name)
                    if isinstance(handed, _ToQueue):
                        self.dispatcher.requeue_first(leg.ref, handed.queue.name)
                    return handed  # else the volunteer is back with the caller
            if end is not CallEnd.OTHER_LOST:
                self.dispatcher.call_ended(leg.ref)
                return "answered"
            log.warning("volunteer_lost", call=leg.ref, volunteer=offer.username)
            self.dispatcher.handset_lost(leg.ref)  # back at the front of the line
            if queue.volunteer_lost is VolunteerLost.REQUEUE:
                await self._say(media, language, "volunteer_lost")
                return _Next.REQUEUE
            self.dispatcher.remove(leg.ref)
            await self._say(media, language, "volunteer_lost_goodbye")
            await leg.hangup("volunteer_lost")
            return "handset_lost"
        finally:
            vol_media.close()

    async def _hand_over(
        self, call: InCall, request: HandoverRequest, language: str
    ) -> str | _Next | _ToQueue | None:
        """The volunteer's hand-over; None when the volunteer is back with the caller."""
        assert self.hand_over is not None
        freed = False

        def volunteer_free() -> None:  # the volunteer's part is done: wrap-up
            nonlocal freed
            if not freed:
                freed = True
                self.records.talk_ended(call.leg.ref, None)  # the volunteer's talk ends here
                self.dispatcher.call_ended(call.leg.ref)

        state = await self.hand_over(call, request, language, volunteer_free)
        if state is State.RETURNED and not call.leg.is_ended and not call.out.is_ended:
            return None
        if state is State.RETURNED and not call.out.is_ended:  # the caller left meanwhile
            await call.out.hangup("caller_hangup")
        volunteer_free()
        if state is State.COMPLETED:
            return "handed_over"
        if state is State.QUEUED and self.transfers is not None:
            to = self.transfers.queue(request.destination or "")
            if to is not None and not call.leg.is_ended:
                return _ToQueue(to)
        if call.leg.is_ended:
            return "answered"
        return _Next.REQUEUE  # the hand-over failed: first in line for a volunteer

    def _music(self, media: AnchoredMedia, on: bool) -> None:
        if self.music is not None:
            if on:
                self.music.subscribe(media.leg)
            else:
                self.music.unsubscribe(media.leg)

    async def _say(self, media: AnchoredMedia, language: str, prompt: str) -> None:
        await play(media.leg, [self.prompts.get(language, prompt)], barge_in=False)

    async def _hold(
        self, leg: InboundLeg, media: AnchoredMedia, queue: Queue, language: str
    ) -> None:
        """What a waiting caller hears: place and wait at intervals, comfort between."""
        loop = asyncio.get_running_loop()
        comfort = itertools.cycle(COMFORT)
        next_announcement = loop.time()
        while not leg.is_ended:
            if loop.time() >= next_announcement:
                names = self._announcement(leg.ref, queue)
                next_announcement = loop.time() + queue.announce_every
            else:
                names = [next(comfort)]
            await play(media.leg, [self.prompts.get(language, n) for n in names], barge_in=False)
            await asyncio.sleep(self.comfort_interval)

    def _announcement(self, ref: str, queue: Queue) -> list[str]:
        """ "You are number 3 in line. The expected wait is about 4 minutes." as prompts."""
        place = self.dispatcher.place(ref)
        if place is None:
            return []
        position, estimate = place
        names: list[str] = []
        if position == 1:
            names.append("position_next")
        elif position <= MAX_SPOKEN:
            names += ["position_intro", f"digit_{position}", "position_outro"]
        minutes = None if estimate is None else math.ceil(estimate / 60)
        if minutes is None or minutes > MAX_SPOKEN:
            names.append("wait_unknown")  # nobody on shift for this queue, or a long wait
        elif minutes > 0:
            names += ["wait_intro", f"digit_{minutes}", "minute" if minutes == 1 else "minutes"]
        log.info("queue_announcement", call=ref, queue=queue.name, position=position,
                 minutes=minutes)  # fmt: skip
        return names


async def _next_event(inbox: asyncio.Queue[QueueEvent], leg: InboundLeg) -> QueueEvent | None:
    """The next offer or overflow for this caller; None once the caller has hung up."""
    if leg.is_ended:
        return None
    get = asyncio.ensure_future(inbox.get())
    gone = leg.ended.waiter()
    waits: set[asyncio.Future[Any]] = {get, gone}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if get.done():
        event = get.result()
        if leg.is_ended and isinstance(event, Offer):
            return None  # too late to ring anyone
        return event
    get.cancel()
    return None
