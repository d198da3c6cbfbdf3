"""A volunteer transfers a caller to a colleague of another queue (the queue's `volunteer_keys`,
or their handset's transfer key: REFER to `sip:queue-<name>@<service>`).

Warm (the default, with the keys): the caller holds (a short message, then music) while the
service rings a free volunteer of that queue, chosen by the queue's own rules (its language and
skill, longest idle first; never the volunteer who transfers, never anyone ringing, talking,
wrapping up or paused). The colleague's handset shows the queue, nothing of the caller. The two
volunteers talk first; then the volunteer completes (caller and colleague talk, the colleague's
wrap-up follows the call) or cancels. Nobody free, or a colleague who does not answer, returns
the volunteer to the caller with the reason spoken in the volunteer's language.

Blind (`handover_mode = "blind"`, or a REFER): the volunteer is free at once and the caller
joins the queue first in line (ahead of every caller waiting there, as a caller whose volunteer
vanished is), hearing their place and wait there like anyone; the queue's own max_wait and
overflow apply from then on. While nobody who serves the queue is on shift at all, a blind
transfer is refused (the volunteer stays with the caller and hears why; a REFER gets 480), so
no caller is sent to wait for nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from ivr.model import Queue
from pbx.calls.bridging import HandoverRequest
from pbx.calls.consultation import ColleagueCall, Consultation, InCall
from pbx.calls.handover import State
from pbx.calls.handsets import Handsets
from pbx.calls.media_session import MediaError, MediaFactory
from pbx.calls.transfers import queue_target
from pbx.media.player import play
from pbx.media.prompts import PromptLibrary
from pbx.profile import Profile
from queues.dispatcher import Dispatcher

log = structlog.get_logger("pbx.calls.colleagues")

NOBODY_AVAILABLE = "handover_nobody_available"  # said to the volunteer
TO_COLLEAGUE = "transfer_to_colleague"  # said to the caller of a blind transfer


@dataclass
class ColleagueQueues:
    dispatcher: Dispatcher  # who is free in which queue; the colleague's state while rung
    handsets: Handsets
    media: MediaFactory
    prompts: PromptLibrary
    consultation: Consultation | None  # None: blind transfers only (handover_mode = "blind")
    profiles: Callable[[], Mapping[str, Profile]] = dict  # the volunteers' languages

    async def hand_over(
        self,
        call: InCall,
        queue: Queue,
        request: HandoverRequest,
        language: str,
        volunteer_free: Callable[[], None],
    ) -> State:
        """Transfer `call`'s caller to a colleague of `queue`; the final state (QUEUED: the
        caller waits in `queue` now, the volunteer is gone)."""
        if request.by_refer or self.consultation is None:
            return await self._blind(call, queue, language, volunteer_free, request.by_refer)
        return await self._warm(call, queue, language, volunteer_free, self.consultation)

    def volunteer_language(self, call: InCall, fallback: str) -> str:
        """The first of the volunteer's languages that has prompts (else the call's)."""
        profile = self.profiles().get(call.volunteer or "")
        known = self.prompts.languages()
        return next((lang for lang in (profile.languages if profile else ()) if lang in known),
                    fallback)  # fmt: skip

    async def _blind(
        self,
        call: InCall,
        queue: Queue,
        language: str,
        volunteer_free: Callable[[], None],
        refer: bool,
    ) -> State:
        if not self.dispatcher.staffed(queue.name, exclude=call.volunteer):
            log.info("colleague_transfer_unstaffed", call=call.leg.ref, queue=queue.name)
            if refer:
                call.out.notify_refer("SIP/2.0 480 Temporarily Unavailable", final=True)
            await self._say_to_volunteer(call, language, NOBODY_AVAILABLE)
            return State.RETURNED
        if refer:
            call.out.notify_refer("SIP/2.0 200 OK", final=True)
        await call.out.hangup("handed_over")
        volunteer_free()
        log.info("transferred_to_queue", call=call.leg.ref, queue=queue.name, refer=refer)
        if call.leg.is_ended:
            return State.CALLER_LEFT
        await play(call.media.leg, [self.prompts.get(language, TO_COLLEAGUE)], barge_in=False)
        return State.CALLER_LEFT if call.leg.is_ended else State.QUEUED

    async def _warm(
        self,
        call: InCall,
        queue: Queue,
        language: str,
        volunteer_free: Callable[[], None],
        consultation: Consultation,
    ) -> State:
        handsets = self.handsets
        colleague = self.dispatcher.claim_colleague(
            queue.name, call.volunteer, lambda user: bool(handsets.ringable(user))
        )
        if colleague is None:
            log.info("colleague_nobody_free", call=call.leg.ref, queue=queue.name)
            await self._say_to_volunteer(call, language, NOBODY_AVAILABLE)
            return State.RETURNED
        bindings = handsets.ringable(colleague)
        try:
            media = await self.media.open_for_volunteer(
                colleague, [b.source.host for b in bindings]
            )
        except MediaError:
            self.dispatcher.colleague_withdrawn(colleague)
            await self._say_to_volunteer(call, language, "handover_unreachable")
            return State.RETURNED
        claim = _Claim(self.dispatcher, colleague, queue.name)
        log.info("colleague_ringing", call=call.leg.ref, queue=queue.name, colleague=colleague)
        rung = ColleagueCall(
            media, queue.shown_as, float(queue.ring_timeout),
            self.volunteer_language(call, language), claim.dialled,
        )  # fmt: skip
        state = State.RETURNED
        try:
            state = await consultation.run(
                call, [handsets.target(b) for b in bindings], queue_target(queue.name),
                language, volunteer_free, colleague=rung,
            )  # fmt: skip
        finally:
            claim.finish(state)
        return state

    async def _say_to_volunteer(self, call: InCall, language: str, prompt: str) -> None:
        lang = self.volunteer_language(call, language)
        await play(call.other.leg, [self.prompts.get(lang, prompt)], barge_in=False)


@dataclass
class _Claim:
    """The colleague rung for one transfer, from RINGING to free again: answered, then their
    call ends (with the queue's wrap-up if the caller became theirs); or missed, or withdrawn
    (given up). Ringing may settle after the transfer is over (its CANCEL under way): then
    withdrawn as it settles."""

    dispatcher: Dispatcher
    username: str
    queue: str
    answered: bool = False
    settled: bool = False  # ringing is over
    finished: bool = False  # the transfer is over

    def dialled(self, status: int, gave_up: bool) -> None:
        self.settled = True
        if self.finished or gave_up:
            self.dispatcher.colleague_withdrawn(self.username)  # a late answer is hung up
        elif status == 200:
            self.answered = True
            self.dispatcher.colleague_answered(self.username)
        else:
            self.dispatcher.colleague_missed(self.username)

    def finish(self, state: State) -> None:
        self.finished = True
        if self.answered:
            completed = state is State.COMPLETED
            self.dispatcher.colleague_done(self.username, self.queue if completed else None)
