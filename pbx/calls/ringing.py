"""Ringing: placing the outbound call that a caller is to be connected to.

One or several targets (a volunteer's desk phone and softphone, or a configured destination)
ring at once showing the helpline's name, never anything of the caller; the first to answer
takes the call and the others stop ringing. A volunteer who answers may first hear a short
whisper ("a helpline call") before the caller is connected. What happens once both sides are
up is `bridging`'s.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog

from pbx.calls.leg_table import LegTable
from pbx.calls.legs import InboundLeg, OutboundLeg
from pbx.calls.media_session import AnchoredMedia, MediaError, reinvite_handler
from pbx.media.player import play
from pbx.sip.client_auth import ClientCredentials
from pbx.sip.message import Response
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.uri import SipUri

log = structlog.get_logger("pbx.calls.ringing")


@dataclass(frozen=True)
class Target:
    """Where an outbound leg goes: request URI, the address to send to, the To header."""

    uri: SipUri
    peer: Peer
    to: str
    routes: tuple[tuple[str, str], ...] = ()  # Route headers (a handset's Path)


@dataclass(frozen=True)
class Dialled:
    """What ringing came to: the answered leg, or None and the final status (0: none)."""

    leg: OutboundLeg | None
    status: int


@dataclass
class Ringer:
    legs: LegTable  # where the outbound legs are tracked for in-dialog requests
    display_name: str = "Hulplijn"  # what a rung handset shows, unless the queue says otherwise
    auth: ClientCredentials | None = None  # our account, should a destination's trunk challenge
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # branches still settling

    async def ring(
        self,
        leg: InboundLeg,
        media: AnchoredMedia,
        target: Target | list[Target],
        ref: str,
        timeout: float,
        display: str | None = None,
    ) -> OutboundLeg | None:
        """See `dial`: the answered leg, or None."""
        return (await self.dial(leg, media, target, ref, timeout, display)).leg

    async def dial(
        self,
        leg: InboundLeg,
        media: AnchoredMedia,
        target: Target | list[Target],
        ref: str,
        timeout: float,
        display: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> Dialled:
        """Call a handset or a configured destination showing `display` (default: the
        helpline's name; never anything of the caller) for at most `timeout` s; the answered
        leg with its media negotiated, or None (no answer, refused, or the caller left
        meanwhile: then that leg is ended). Several targets (a volunteer's desk phone and
        softphone) ring at once: the first to answer takes the call, the others are CANCELled
        (or BYEd if they answered too). `stop` set: given up like a timeout. The final status
        says why there is no leg (0: none came, the time ran out or `stop` was set)."""
        targets = target if isinstance(target, list) else [target]
        shown = self.display_name if display is None else display
        invites: dict[asyncio.Task[Response], OutboundLeg] = {}
        secure: dict[int, bool] = {}  # by id(leg): signalled over TLS, SRTP keys may go there
        for t in targets:
            tls = t.peer.transport is TransportKind.TLS
            try:
                sdp = media.offer(secure=tls)
            except MediaError:  # SRTP required, and this handset is not on TLS
                log.warning("handset_not_rung", call=ref, reason="srtp_requires_tls")
                continue
            out, call_id, tag = self.legs.new_outbound(t.peer, ref)
            out.on_reinvite = reinvite_handler(media)
            out.on_info = media.on_info
            out.auth = self.auth
            call = out.call(
                t.uri, t.peer, from_user="hulplijn", from_display=shown, to=t.to,
                sdp=sdp, call_id=call_id, local_tag=tag, extra_headers=list(t.routes),
            )  # fmt: skip
            invites[asyncio.create_task(call)] = out
            secure[id(out)] = tls
        if not invites:
            return Dialled(None, 0)  # no handset could be rung (e.g. SRTP required, no TLS)
        winner = await _first_answer(leg, invites, timeout, stop)
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
            return Dialled(None, max(statuses, default=0))
        if leg.is_ended:
            await winner.hangup("caller_gone")
            return Dialled(None, 0)
        try:
            media.accept_answer(winner.remote_sdp, secure=secure[id(winner)])
        except MediaError:
            await winner.hangup("bad_sdp")
            return Dialled(None, 488)
        return Dialled(winner, 200)

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


@dataclass(frozen=True)
class Whisper:
    """What a volunteer hears on answering, before the caller is connected (empty: nothing)."""

    pcm: bytes = b""

    async def to(self, leg: InboundLeg, out: OutboundLeg, media: AnchoredMedia) -> bool:
        """Tell the volunteer a helpline call is coming; False if either side left meanwhile."""
        if not self.pcm:
            return True
        playing = asyncio.create_task(play(media.leg, [self.pcm], barge_in=False))
        gone = {leg.ended.waiter(), out.ended.waiter()}
        waits: set[asyncio.Future[Any]] = {playing, *gone}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in gone:
            task.cancel()
        if not playing.done():
            playing.cancel()
        if leg.is_ended or out.is_ended:
            if not out.is_ended:
                await out.hangup("caller_gone")
            return False
        return True


async def _first_answer(
    leg: InboundLeg,
    invites: dict[asyncio.Task[Response], OutboundLeg],
    timeout: float,
    stop: asyncio.Event | None = None,
) -> OutboundLeg | None:
    """The branch answered first with a 2xx, waiting until one is, all have failed, the
    caller left, `stop` was set or `timeout` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    caller_gone = leg.ended.waiter()
    # Without `stop` nothing can set it: a bare future, not a task per call waiting for nothing.
    stopped: asyncio.Future[Any] = (
        asyncio.create_task(stop.wait()) if stop is not None else loop.create_future()
    )
    pending: set[asyncio.Future[Any]] = {caller_gone, stopped, *invites}
    try:
        while not leg.is_ended and not stopped.done():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or pending <= {caller_gone, stopped}:
                return None
            done, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task in invites and 200 <= task.result().status < 300:
                    return invites[task]
        return None
    finally:
        caller_gone.cancel()
        stopped.cancel()
