"""Bridging: the caller and the other side talking, until one of them ends it.

Media of both legs is relayed through the anchored bridge (either side hanging up, or its media
going silent, ends the call); the other side may be told by a tone that the time limit is near,
and may press keys that hand the caller over elsewhere (in-call keys).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from pbx.calls.legs import InboundLeg, LegState, OutboundLeg
from pbx.calls.media_session import AnchoredMedia
from pbx.calls.signal import Signal
from pbx.media.bridge import Bridge
from pbx.sip.stack import IncomingRequest

log = structlog.get_logger("pbx.calls.bridging")


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
    handover: HandoverRequest | None = None,
) -> CallEnd:
    """Relay media between the caller and the other leg until either hangs up or goes silent
    (media timeout), then end both; with `keep_caller_if_lost` a caller whose other side
    vanished stays on the line (to be told and requeued). `notice` = (after seconds, PCM):
    a tone only the other side hears once the call has lasted that long (the time limit).
    A `handover` asked for on the other side (keys, or a REFER from its handset) ends the
    bridge (HANDOVER) with both legs up: the hand-over decides what becomes of them (a warm one
    consults first, a blind one hangs the other side up)."""
    bridge = Bridge(caller_media.leg, other_media.leg).start()
    handover = handover or HandoverRequest({})
    other_media.add_dtmf_listener(handover.press)
    out.on_refer = handover.refer
    timer = None
    if notice is not None:
        after, pcm = notice
        timer = asyncio.get_running_loop().call_later(
            after, lambda: _notify(bridge, other_media, pcm, leg.ref)
        )
    waits: set[asyncio.Future[Any]] = {
        leg.ended.waiter(),
        out.ended.waiter(),
        asyncio.shield(bridge.done),  # cancelling the wait must not cancel the bridge's end:
        # a cancelled `done` would make `stop` a no-op and leave the relay running
        caller_media.dead.waiter(),
        other_media.dead.waiter(),
        handover.done.waiter(),
    }
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if timer is not None:
        timer.cancel()
    other_media.remove_dtmf_listener(handover.press)
    out.on_refer = None
    bridge.stop()
    if caller_media.is_dead or other_media.is_dead:
        log.warning("media_timeout", call=leg.ref, caller_dead=caller_media.is_dead)
    if leg.is_ended or caller_media.is_dead:
        end = CallEnd.CALLER_LEFT
    elif other_media.is_dead:
        end = CallEnd.OTHER_LOST
    elif handover.done.is_set() and not out.is_ended:
        end = CallEnd.HANDOVER
    else:
        end = CallEnd.OTHER_LEFT
    if out.state is not LegState.ENDED and end is not CallEnd.HANDOVER:
        await out.hangup(_OTHER_HANGUP_REASON[end])
    keep_caller = end is CallEnd.HANDOVER or (end is CallEnd.OTHER_LOST and keep_caller_if_lost)
    if leg.state is not LegState.ENDED and not keep_caller:
        await leg.hangup("other_side_hangup")
    log.info("call_ended", call=leg.ref, end=end.value)
    return end


_OTHER_HANGUP_REASON: dict[CallEnd, str] = {
    CallEnd.CALLER_LEFT: "caller_hangup",
    CallEnd.OTHER_LOST: "media_timeout",
    CallEnd.OTHER_LEFT: "other_side_hangup",
}


class KeySequence:
    """Watches key presses for one sequence (e.g. "*9"); `done` is set (and `on_done` called)
    each time it was pressed."""

    def __init__(self, keys: str, on_done: Callable[[], None] | None = None) -> None:
        self.keys = keys
        self.pressed = ""
        self.done = Signal()
        self.on_done = on_done

    def press(self, digit: str) -> None:
        self.pressed = (self.pressed + digit)[-len(self.keys) :]
        if self.keys and self.pressed == self.keys:
            self.pressed = ""
            self.done.set()
            if self.on_done is not None:
                self.on_done()


class Replaceable(Protocol):
    """A call a REFER with Replaces names (a volunteer's own call to a destination)."""

    def take(self) -> tuple[OutboundLeg, AnchoredMedia] | None: ...


class HandoverRequest:
    """How the other side asks to hand the caller over: one of `keys` (keys -> destination)
    pressed, or a REFER from its handset naming a destination `refer_target` allows (any
    other REFER gets 403). `done` is set once asked; `destination` says where to."""

    def __init__(
        self,
        keys: Mapping[str, str],
        refer_target: Callable[[str], str | None] = lambda refer_to: None,
        replaced: Callable[[str], Replaceable | None] = lambda refer_to: None,
    ) -> None:
        self.replaced = replaced
        self.replaces: Replaceable | None = None  # an attended transfer: the call it names
        self.sequences = [KeySequence(k, self._chose(name)) for k, name in keys.items()]
        self.refer_target = refer_target
        self.destination: str | None = None
        self.by_refer = False  # asked by REFER: its sender is told how it went (NOTIFY)
        self.done = Signal()

    def _chose(self, name: str) -> Callable[[], None]:
        def chose() -> None:
            if not self.done.is_set():
                self.destination = name
                self.done.set()

        return chose

    def press(self, digit: str) -> None:
        for sequence in self.sequences:
            sequence.press(digit)

    def refer(self, incoming: IncomingRequest) -> None:
        refer_to = incoming.request.headers.get("Refer-To")
        if refer_to is None:
            incoming.respond(400, "Bad Request - Missing Refer-To")
            return
        target = None
        if self.done.is_set():
            pass
        elif "replaces=" in refer_to.lower():  # attended: to the call the handset consulted
            self.replaces = self.replaced(refer_to)
            target = "replaces" if self.replaces is not None else None
        else:
            target = self.refer_target(refer_to)
        if target is None:
            log.info("refer_refused")  # what it named stays out of the logs
            incoming.respond(403, "Forbidden - Not a destination for volunteers")
            return
        incoming.respond(202)
        self.destination = target
        self.by_refer = True
        self.done.set()


def _notify(bridge: Bridge, other_media: AnchoredMedia, pcm: bytes, ref: str) -> None:
    log.info("time_limit_reached", call=ref)
    bridge.inject_tone(other_media.leg, pcm)
