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
from pbx.calls.legs import InboundLeg, LegState, OutboundLeg, watch_call_task
from pbx.calls.media_session import AnchoredMedia, MediaError, MediaFactory, reinvite_handler
from pbx.media.bridge import Bridge
from pbx.media.player import play
from pbx.sip.message import Response
from pbx.sip.peer import Peer
from pbx.sip.registrar import Binding
from pbx.sip.stack import failure_site
from pbx.sip.uri import SipUri
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
        watch_call_task(asyncio.create_task(self._run(leg, caller)), leg, self.tasks)

    def volunteer_call(self, leg: InboundLeg, username: str, dialed: str) -> None:
        leg.reject(404, "Not Found - No such feature code")

    def _candidates(self) -> list[str]:
        now = self.switchboard.wall_clock()
        users = self.switchboard.registrar.registered_users(now) - self.busy
        return sorted(users, key=lambda u: self.last_call_end.get(u, 0.0))  # longest idle first

    async def _run(self, leg: InboundLeg, caller: CallerContext) -> None:
        try:
            await self._connect(leg, caller)
        except Exception as exc:  # a bug must cost one call a clean ending, never leave it hanging
            log.error("call_failed", call=leg.ref, error=type(exc).__name__, at=failure_site(exc))
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
        offer = await self.offer_to_volunteers(leg, caller_media, caller_sdp, caller.call_ref)
        if offer is Offer.NO_ANSWER:
            leg.reject(480, "Temporarily Unavailable - No volunteer available")

    async def offer_to_volunteers(
        self, leg: InboundLeg, caller_media: AnchoredMedia, caller_sdp: bytes | None, ref: str
    ) -> Offer:
        """Ring each idle volunteer once (all their handsets at once), longest idle first,
        until one takes the call.

        Works for a caller still ringing and for one already answered (after the IVR).
        """
        for username in self._candidates():
            bindings = self.switchboard.volunteer_bindings(username)
            if not bindings:
                continue
            if leg.is_ended:
                return Offer.CALLER_LEFT
            attempt = _Attempt(leg, caller_media, caller_sdp, username, bindings)
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
        """Ring one volunteer; True when the call was connected (or the caller is gone)."""
        try:
            vol_media = await self.media.open({b.source.host for b in attempt.bindings})
        except MediaError as exc:
            attempt.leg.reject(exc.status, exc.reason)
            return True
        try:
            out = await self.ring(
                attempt.leg, vol_media, [self.volunteer_target(b) for b in attempt.bindings], ref,
                self.display_name, self.ring_timeout,
            )  # fmt: skip
            if out is None:
                return attempt.leg.is_ended
            if self.whisper and not await self.whisper_to(attempt.leg, out, vol_media):
                return attempt.leg.is_ended
            await self._talk(attempt, out, vol_media)
            return True
        finally:
            vol_media.close()

    def volunteer_target(self, binding: Binding) -> Target:
        """A registered handset, at the address its REGISTER came from (NAT), or through the
        edge proxy of its Path."""
        to = f"<sip:{binding.username}@{self.switchboard.stack.public_host}>"
        return Target(binding.contact, binding.next_hop, to, tuple(binding.routes))

    async def ring(
        self,
        leg: InboundLeg,
        media: AnchoredMedia,
        target: Target | list[Target],
        ref: str,
        display: str,
        timeout: float,
    ) -> OutboundLeg | None:
        """Call a handset or a configured destination showing `display` (never anything of
        the caller) for at most `timeout` s; the answered leg with its media negotiated, or
        None (no answer, refused, or the caller left meanwhile: then that leg is ended).
        Several targets (a volunteer's desk phone and softphone) ring at once: the first to
        answer takes the call, the others are CANCELled (or BYEd if they answered too)."""
        targets = target if isinstance(target, list) else [target]
        invites: dict[asyncio.Task[Response], OutboundLeg] = {}
        for t in targets:
            out, call_id, tag = self.switchboard.new_outbound_leg(t.peer, ref)
            out.on_reinvite = reinvite_handler(media)
            out.on_info = media.on_info
            call = out.call(
                t.uri, t.peer, from_user="hulplijn", from_display=display, to=t.to,
                sdp=media.offer(), call_id=call_id, local_tag=tag, extra_headers=list(t.routes),
            )  # fmt: skip
            invites[asyncio.create_task(call)] = out
        winner = await _first_answer(leg, invites, timeout)
        for task, out in invites.items():
            if out is not winner:
                # The other branches stop ringing without delaying the winner: CANCEL now, or
                # once a provisional arrives (RFC 3261 9.1); a late 2xx gets ACK then BYE.
                # A handset that vanished answers nothing and times out in the background.
                out.cancel()
                self._reap(task, out)
        if winner is None:
            statuses = [t.result().status for t in invites if t.done()]
            log.info("not_answering", call=ref, statuses=statuses)
            return None
        if leg.is_ended:
            await winner.hangup("caller_gone")
            return None
        try:
            media.accept_answer(winner.remote_sdp)
        except MediaError:
            await winner.hangup("bad_sdp")
            return None
        return winner

    def _reap(self, task: asyncio.Task[Response], out: OutboundLeg) -> None:
        """Let a cancelled branch finish on its own (487, a late 2xx BYEd, or Timer B)."""

        async def settle() -> None:
            try:
                await task
            except Exception:
                log.exception("branch_failed", call=out.ref)
            if not out.is_ended:  # e.g. a 2xx that came while the CANCEL was under way
                await out.hangup("answered_elsewhere")

        reaper = asyncio.create_task(settle())
        self.tasks.add(reaper)
        reaper.add_done_callback(self.tasks.discard)

    async def whisper_to(self, leg: InboundLeg, out: OutboundLeg, media: AnchoredMedia) -> bool:
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
            attempt.caller_media.keep_continuous()
        attempt.connected = True
        log.info("call_connected", call=leg.ref, volunteer=attempt.username)
        await bridge_until_end(leg, attempt.caller_media, out, vol_media)


class CallEnd(enum.Enum):
    """How a bridged call ended."""

    CALLER_LEFT = "caller_left"  # the caller hung up (or their media went silent)
    OTHER_LEFT = "other_left"  # the volunteer or destination hung up
    OTHER_LOST = "other_lost"  # the other side's media went silent: their handset vanished
    HANDOVER = "handover"  # the other side pressed the hand-over keys (e.g. to 113)


async def bridge_until_end(
    leg: InboundLeg,
    caller_media: AnchoredMedia,
    out: OutboundLeg,
    other_media: AnchoredMedia,
    *,
    keep_caller_if_lost: bool = False,
    notice: tuple[float, bytes] | None = None,
    handover_keys: str = "",
) -> CallEnd:
    """Relay media between the caller and the other leg until either hangs up or goes silent
    (media timeout), then end both; with `keep_caller_if_lost` a caller whose other side
    vanished stays on the line (to be told and requeued). `notice` = (after seconds, PCM):
    a tone only the other side hears once the call has lasted that long (the time limit).
    `handover_keys` pressed on the other side end only that side (HANDOVER): the caller stays
    on the line to be connected elsewhere."""
    bridge = Bridge(caller_media.leg, other_media.leg).start()
    handover = _KeySequence(handover_keys)
    if handover_keys:
        other_media.leg.add_dtmf_listener(handover.press)
    timer = None
    if notice is not None:
        after, pcm = notice
        timer = asyncio.get_running_loop().call_later(
            after, lambda: _notify(bridge, other_media, pcm, leg.ref)
        )
    waits: set[asyncio.Future[Any]] = {
        asyncio.create_task(leg.ended.wait()),
        asyncio.create_task(out.ended.wait()),
        asyncio.ensure_future(bridge.done),
        asyncio.create_task(caller_media.dead.wait()),
        asyncio.create_task(other_media.dead.wait()),
        asyncio.create_task(handover.done.wait()),
    }
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if timer is not None:
        timer.cancel()
    if handover_keys:
        other_media.leg.remove_dtmf_listener(handover.press)
    bridge.stop()
    if caller_media.dead.is_set() or other_media.dead.is_set():
        log.warning("media_timeout", call=leg.ref, caller_dead=caller_media.dead.is_set())
    if leg.is_ended or caller_media.dead.is_set():
        end = CallEnd.CALLER_LEFT
    elif other_media.dead.is_set():
        end = CallEnd.OTHER_LOST
    elif handover.done.is_set() and not out.is_ended:
        end = CallEnd.HANDOVER
    else:
        end = CallEnd.OTHER_LEFT
    if out.state is not LegState.ENDED:
        await out.hangup(_OTHER_HANGUP_REASON[end])
    keep_caller = end is CallEnd.HANDOVER or (end is CallEnd.OTHER_LOST and keep_caller_if_lost)
    if leg.state is not LegState.ENDED and not keep_caller:
        await leg.hangup("other_side_hangup")
    log.info("call_ended", call=leg.ref, end=end.value)
    return end


_OTHER_HANGUP_REASON = {
    CallEnd.CALLER_LEFT: "caller_hangup",
    CallEnd.OTHER_LOST: "media_timeout",
    CallEnd.HANDOVER: "handover",
    CallEnd.OTHER_LEFT: "other_side_hangup",
}


class _KeySequence:
    """Watches key presses for one sequence (e.g. "*9"); `done` is set once it was pressed."""

    def __init__(self, keys: str) -> None:
        self.keys = keys
        self.pressed = ""
        self.done = asyncio.Event()

    def press(self, digit: str) -> None:
        self.pressed = (self.pressed + digit)[-len(self.keys) :]
        if self.keys and self.pressed == self.keys:
            self.done.set()


async def _first_answer(
    leg: InboundLeg, invites: dict[asyncio.Task[Response], OutboundLeg], timeout: float
) -> OutboundLeg | None:
    """The branch answered first with a 2xx, waiting until one is, all have failed, the
    caller left or `timeout` passed."""
    deadline = asyncio.get_running_loop().time() + timeout
    caller_gone = asyncio.create_task(leg.ended.wait())
    pending: set[asyncio.Future[Any]] = {caller_gone, *invites}
    try:
        while not leg.is_ended:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or pending == {caller_gone}:
                return None
            done, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not caller_gone and 200 <= task.result().status < 300:
                    return invites[task]  # type: ignore[index]
        return None
    finally:
        caller_gone.cancel()


def _notify(bridge: Bridge, other_media: AnchoredMedia, pcm: bytes, ref: str) -> None:
    log.info("time_limit_reached", call=ref)
    bridge.inject_tone(other_media.leg, pcm)


@dataclass(frozen=True)
class Target:
    """Where an outbound leg goes: request URI, the address to send to, the To header."""

    uri: SipUri
    peer: Peer
    to: str
    routes: tuple[tuple[str, str], ...] = ()  # Route headers (a handset's Path)


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
