"""The asyncio driver of a warm handover (`handover.py` holds its states and transitions).

The caller hears a short message, then music on hold, for as long as the volunteer consults;
the destination is rung with the caller's media untouched (nothing of the caller reaches it).
Events (the destination's answer or final status, the volunteer's keys or hang-up, either side
hanging up) go through `handover.step`; the actions it returns are carried out here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from pbx.calls.bridging import KeySequence, bridge_until_end
from pbx.calls.handover import FINAL, Action, Event, State, status_event, step
from pbx.calls.legs import InboundLeg, OutboundLeg
from pbx.calls.media_session import AnchoredMedia, MediaError, MediaFactory
from pbx.calls.ringing import Dialled, Ringer, Target
from pbx.media.bridge import Bridge
from pbx.media.moh import MusicOnHold
from pbx.media.player import play
from pbx.media.prompts import PromptLibrary

log = structlog.get_logger("pbx.calls.consultation")

# what the volunteer hears when the destination failed
REASON_PROMPTS = {
    Event.BUSY: "handover_busy",
    Event.UNREACHABLE: "handover_unreachable",
    Event.NO_ANSWER: "handover_no_answer",
    Event.REFUSED: "handover_refused",
}


_REASONS = {200: "OK", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
            480: "Temporarily Unavailable", 486: "Busy Here", 487: "Request Terminated",
            503: "Service Unavailable", 603: "Decline"}  # fmt: skip


@dataclass(frozen=True)
class InCall:
    """A caller talking to a volunteer (or a colleague): both legs and their media."""

    leg: InboundLeg
    media: AnchoredMedia
    out: OutboundLeg
    other: AnchoredMedia


@dataclass
class Consultation:
    ringer: Ringer
    media: MediaFactory
    prompts: PromptLibrary
    hold_music: MusicOnHold | None = None  # what the caller hears on hold (None: comfort noise)
    complete_keys: str = "*1"  # the volunteer hands the caller over to whom they consulted
    cancel_keys: str = "*0"  # the volunteer goes back to the caller
    ring_timeout: float = 30.0  # seconds the destination may ring before "no answer"
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def run(
        self,
        call: InCall,
        target: Target,
        name: str,
        language: str,
        volunteer_free: Callable[[], None],
        *,
        refer: bool = False,
    ) -> State:
        """Consult `target` for `call`; the final state. COMPLETED returns once the caller's
        call with the destination has ended; `volunteer_free` is called as soon as the
        volunteer's part is over (completed, or hung up and nobody took the caller). With
        `refer` (the volunteer's handset asked by REFER) there is no consultation: the caller
        is connected once the destination answers, and the handset is told by NOTIFY."""
        try:
            other = await self.media.open([target.peer.host])
        except MediaError:
            await self._say(call.other, language, "handover_unreachable")
            return State.RETURNED
        run = _Run(self, call, other, language, refer)
        try:
            return await run.drive(target, name, volunteer_free)
        finally:
            await run.cleanup()
            other.close()

    async def _say(self, media: AnchoredMedia, language: str, prompt: str) -> None:
        await play(media.leg, [self.prompts.get(language, prompt)], barge_in=False)


class _Run:
    """One consultation: the event queue, the legs and what was started for them."""

    def __init__(
        self, owner: Consultation, call: InCall, other: AnchoredMedia, language: str, refer: bool
    ) -> None:
        self.refer = refer
        self.owner = owner
        self.call = call
        self.other = other  # the destination's media
        self.language = language
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.stop_ringing = asyncio.Event()
        self.professional: OutboundLeg | None = None
        self.bridge: Bridge | None = None
        self.watchers: list[asyncio.Task[Any]] = []
        self.dialling: asyncio.Task[None] | None = None
        self.hold: asyncio.Task[Any] | None = None
        self.complete = KeySequence(owner.complete_keys, lambda: self.events.put_nowait(
            Event.COMPLETE_KEY))  # fmt: skip
        self.cancel = KeySequence(owner.cancel_keys, lambda: self.events.put_nowait(
            Event.CANCEL_KEY))  # fmt: skip

    def _watch(self, awaitable: Any, event: Event) -> None:
        async def watch() -> None:
            await awaitable
            self.events.put_nowait(event)

        self.watchers.append(asyncio.create_task(watch()))

    async def drive(self, target: Target, name: str, volunteer_free: Callable[[], None]) -> State:
        call, owner = self.call, self.owner
        self.hold = asyncio.create_task(self._hold())
        call.other.add_dtmf_listener(self.complete.press)
        call.other.add_dtmf_listener(self.cancel.press)
        self._watch(call.leg.wait_ended(), Event.CALLER_HUNG_UP)
        self._watch(call.media.wait_dead(), Event.CALLER_HUNG_UP)
        self._watch(call.out.wait_ended(), Event.VOLUNTEER_HUNG_UP)
        dial = asyncio.create_task(owner.ringer.dial(
            call.leg, self.other, target, call.leg.ref, owner.ring_timeout, stop=self.stop_ringing,
        ))  # fmt: skip
        self.dialling = asyncio.create_task(self._dialled(dial))
        log.info("handover_dialling", call=call.leg.ref, to=name, refer=self.refer)
        state = State.TRANSFERRING if self.refer else State.DIALLING
        if self.refer:
            call.out.notify_refer("SIP/2.0 100 Trying", final=False)
        while state not in FINAL:
            event = await self.events.get()
            transition = step(state, event)
            if transition.state is not state:
                log.info("handover_step", call=call.leg.ref, by=event.value,
                         state=transition.state.value)  # fmt: skip
            state = transition.state
            if state in (State.COMPLETED, State.FAILED):
                self._stop_volunteer_keys()
            for action in transition.actions:
                await self._act(action, event)
            if state in (State.COMPLETED, State.FAILED):
                volunteer_free()
        if state is State.COMPLETED:
            assert self.professional is not None
            await self._unhold()
            log.info("handed_over", call=call.leg.ref, to=name)
            await bridge_until_end(call.leg, call.media, self.professional, self.other)
        return state

    async def _dialled(self, dial: asyncio.Task[Dialled]) -> None:
        dialled = await dial
        if dialled.leg is not None and self.stop_ringing.is_set():
            await dialled.leg.hangup("handover_cancelled")  # answered as we gave up
            return
        self.professional = dialled.leg
        status = dialled.status if dialled.leg is None else 200
        if self.refer:  # the handset learns the outcome before anything else happens
            final = status if status >= 200 else 408
            self.call.out.notify_refer(f"SIP/2.0 {final} {_REASONS.get(final, 'Failed')}", True)
        self.events.put_nowait(status_event(status))
        if dialled.leg is not None:
            self._watch(dialled.leg.wait_ended(), Event.PROFESSIONAL_HUNG_UP)

    async def _act(self, action: Action, event: Event) -> None:
        call = self.call
        match action:
            case Action.STOP_RINGING:
                self.stop_ringing.set()
            case Action.CONNECT_VOLUNTEER:
                assert self.professional is not None
                self.bridge = Bridge(call.other.leg, self.other.leg).start()
            case Action.TELL_REASON:
                await self.owner._say(call.other, self.language, REASON_PROMPTS[event])
            case Action.HANG_UP_VOLUNTEER:
                self._stop_bridge()
                if not call.out.is_ended:
                    await call.out.hangup("handed_over")
            case Action.HANG_UP_PROFESSIONAL:
                self._stop_bridge()
                if self.professional is not None and not self.professional.is_ended:
                    await self.professional.hangup("handover_cancelled")
            case Action.HANG_UP_ALL:
                self._stop_bridge()
                for leg in (self.professional, call.out):
                    if leg is not None and not leg.is_ended:
                        await leg.hangup("caller_hangup")
            case Action.CONNECT_CALLER:
                self._stop_bridge()
            case Action.TELL_CALLER_FAILED:
                await self._unhold()
                await self.owner._say(call.media, self.language, "transfer_failed")

    async def _hold(self) -> None:
        """The caller is told to hold on, then hears music until taken off hold."""
        media = self.call.media
        music = self.owner.hold_music
        await self.owner._say(media, self.language, "handover_hold")
        if music is not None:
            music.subscribe(media.leg)

    async def _unhold(self) -> None:
        if self.hold is not None:
            self.hold.cancel()
            await asyncio.gather(self.hold, return_exceptions=True)
        if self.owner.hold_music is not None:
            self.owner.hold_music.unsubscribe(self.call.media.leg)

    def _stop_bridge(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
            to_other, back = self.bridge.a_to_b, self.bridge.b_to_a
            log.info("consultation_media", call=self.call.leg.ref, to_destination=to_other.relayed,
                     from_destination=back.packets, to_volunteer=back.relayed,
                     dropped=back.dropped)  # fmt: skip
            self.bridge = None

    def _stop_volunteer_keys(self) -> None:
        with contextlib.suppress(ValueError, KeyError):
            self.call.other.remove_dtmf_listener(self.complete.press)
            self.call.other.remove_dtmf_listener(self.cancel.press)

    async def cleanup(self) -> None:
        self.stop_ringing.set()  # a destination still ringing stops (the caller left, ...)
        self._stop_volunteer_keys()
        self._stop_bridge()
        await self._unhold()
        for task in self.watchers:
            task.cancel()
        if self.dialling is not None and not self.dialling.done():
            # it settles on its own (CANCEL, or a late answer BYEd): never cancelled, since
            # that would abandon the INVITE transaction with the destination still ringing
            self.owner.tasks.add(self.dialling)
            self.dialling.add_done_callback(self.owner.tasks.discard)
        professional = self.professional
        if professional is not None and not professional.is_ended:
            await professional.hangup("handover_cancelled")  # e.g. answered as we returned
