"""Inbound calls as the helpline runs them.

A caller is answered at once and walks the IVR of the dialplan in force when the call began (a
reload never changes a call in progress). Where the IVR ends decides what follows: waiting for a
volunteer (the queue; language-aware queues are the queues module's job, here every idle
volunteer is rung), a transfer to a configured destination, voicemail, or goodbye.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from ivr.model import Destination, Dialplan, Queue
from ivr.runtime import IvrOutcome, IvrRuntime, OutcomeKind
from pbx.anonymity import CallerContext
from pbx.calls.direct import DirectRouter, Offer, bridge_until_end, reinvite_handler
from pbx.calls.legs import InboundLeg
from pbx.calls.media_session import AnchoredMedia, MediaError, MediaFactory
from pbx.media.player import play
from pbx.media.prompts import PromptLibrary
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.uri import SipUri, parse_sip_uri

log = structlog.get_logger("pbx.calls.inbound")

MAX_CONTINUATIONS = 8  # overflow / failed-transfer hops one call may take through the plan
COMFORT = ("comfort_1", "comfort_2", "comfort_3")


@dataclass
class HelplineCalls:
    router: DirectRouter  # rings volunteers
    media: MediaFactory
    prompts: PromptLibrary
    plan: Callable[[], Dialplan]  # the plan in force now
    voicemail_dir: Path
    retry_interval: float = 5.0  # seconds between rounds of ringing while a caller waits
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    on_outcome: Callable[[str], None] = lambda outcome: None  # metrics
    on_overflow: Callable[[str], None] = lambda queue: None  # metrics: a queue's max wait passed
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def inbound_call(self, leg: InboundLeg, caller: CallerContext) -> None:
        task = asyncio.create_task(self._run(leg, caller, self.plan()))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def volunteer_call(self, leg: InboundLeg, username: str, dialed: str) -> None:
        self.router.volunteer_call(leg, username, dialed)

    async def _run(self, leg: InboundLeg, caller: CallerContext, plan: Dialplan) -> None:
        try:
            outcome = await self._handle(leg, caller, plan)
        except Exception:  # a bug must cost one call a clean ending, never leave it hanging
            log.exception("call_failed", call=leg.ref)
            outcome = "failed"
            if not leg.is_ended:
                await leg.hangup("internal_error")
        log.info("call_finished", call=leg.ref, outcome=outcome)
        self.on_outcome(outcome)

    async def _handle(self, leg: InboundLeg, caller: CallerContext, plan: Dialplan) -> str:
        try:
            media = await self.media.open()
        except MediaError as exc:
            leg.reject(exc.status, exc.reason)
            return "rejected"
        try:
            try:
                sdp = media.answer(leg.remote_sdp) if leg.remote_sdp else media.offer()
            except MediaError as exc:
                leg.reject(exc.status, exc.reason)
                return "rejected"
            leg.on_reinvite = reinvite_handler(media)
            leg.on_info = media.on_info
            # the caller hanging up ends whatever plays, listens or records on their media
            hung_up = asyncio.create_task(_close_when_ended(leg, media))
            try:
                if not await leg.answer(sdp):
                    return "abandoned"
                return await self._follow_plan(leg, caller, plan, media)
            finally:
                hung_up.cancel()
        finally:
            media.close()

    async def _follow_plan(
        self, leg: InboundLeg, caller: CallerContext, plan: Dialplan, media: AnchoredMedia
    ) -> str:
        node, number = plan.entry_for(caller.dialed)
        language = plan.default_language
        for _ in range(MAX_CONTINUATIONS):
            outcome = await IvrRuntime(
                media.leg, plan, node, language=language, prompts=self.prompts, now=self.clock,
                voicemail_dir=self.voicemail_dir,
                region=number.region if number else None,
                partner=number.partner if number else None,
            ).run()  # fmt: skip
            log.info("ivr_outcome", call=leg.ref, outcome=outcome.describe(), path=outcome.path)
            language = outcome.language
            next_node = await self._act(leg, plan, media, outcome)
            if isinstance(next_node, _Done):
                return next_node.outcome
            node = next_node
        await leg.hangup("plan_loop")
        return "failed"

    async def _act(
        self, leg: InboundLeg, plan: Dialplan, media: AnchoredMedia, outcome: IvrOutcome
    ) -> str | _Done:
        """Carry out where the IVR ended; a node name to continue there, or the call's end."""
        match outcome.kind:
            case OutcomeKind.ABANDONED:
                return _Done("abandoned")
            case OutcomeKind.QUEUE:
                assert outcome.queue is not None
                queue = plan.queues[outcome.queue]
                result = await self._wait_for_volunteer(leg, media, queue, outcome.language)
                if result is None:  # waited the queue's maximum: its overflow takes over
                    self.on_overflow(queue.name)
                    return queue.overflow or _Done("hangup")
                return _Done(result)
            case OutcomeKind.TRANSFER:
                assert outcome.destination is not None
                if await self._transfer(leg, media, plan.destinations[outcome.destination]):
                    return _Done("transferred")
                if outcome.on_failure:
                    return outcome.on_failure
            case OutcomeKind.VOICEMAIL:
                await leg.hangup("voicemail_done")
                return _Done("voicemail")
        await leg.hangup("ivr_end")
        return _Done("ivr_hangup" if outcome.kind is OutcomeKind.HANGUP else "failed")

    async def _wait_for_volunteer(
        self, leg: InboundLeg, media: AnchoredMedia, queue: Queue, language: str
    ) -> str | None:
        """Ring volunteers in rounds, with comfort messages between; None after max_wait."""
        loop = asyncio.get_running_loop()
        deadline = None if queue.max_wait is None else loop.time() + queue.max_wait
        comfort = itertools.cycle(COMFORT)
        told_busy = False
        while True:
            offer = await self.router.offer_to_volunteers(leg, media, None, leg.ref)
            if offer is Offer.CONNECTED:
                return "answered"
            if offer is Offer.CALLER_LEFT or leg.is_ended:
                return "abandoned"
            if deadline is not None and loop.time() >= deadline:
                return None
            prompt = "all_busy_hold" if not told_busy else next(comfort)
            told_busy = True
            await play(media.leg, [self.prompts.get(language, prompt)], barge_in=False)
            if leg.is_ended:
                return "abandoned"
            await asyncio.sleep(self.retry_interval)

    async def _transfer(self, leg: InboundLeg, media: AnchoredMedia, dest: Destination) -> bool:
        """Connect the caller to a configured destination (only those: no number a caller
        supplies is ever dialled). True when it answered."""
        uri = parse_sip_uri(dest.uri)
        peer = await _resolve(uri)
        switchboard = self.router.switchboard
        try:
            other = await self.media.open()
        except MediaError:
            return False
        try:
            out, call_id, tag = switchboard.new_outbound_leg(peer, leg.ref)
            out.on_reinvite = reinvite_handler(other)
            response = await out.call(
                uri, peer, from_user="hulplijn", from_display=self.router.display_name,
                to=f"<{uri}>", sdp=other.offer(), call_id=call_id, local_tag=tag,
            )  # fmt: skip
            if not 200 <= response.status < 300:
                log.info("transfer_failed", call=leg.ref, to=dest.name, status=response.status)
                return False
            try:
                other.accept_answer(out.remote_sdp)
            except MediaError:
                await out.hangup("bad_sdp")
                return False
            log.info("transferred", call=leg.ref, to=dest.name)
            await bridge_until_end(leg, media, out, other)
            return True
        finally:
            other.close()


async def _close_when_ended(leg: InboundLeg, media: AnchoredMedia) -> None:
    await leg.ended.wait()
    media.close()


@dataclass(frozen=True)
class _Done:
    outcome: str  # for metrics: answered, abandoned, voicemail, transferred, ...


async def _resolve(uri: SipUri) -> Peer:
    transport = TransportKind.from_name(uri.transport)
    port = uri.port or (5061 if transport is TransportKind.TLS else 5060)
    host = uri.host_bare
    try:
        ipaddress.ip_address(host)
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
        host = str(infos[0][4][0])
    return Peer(transport, host, port)
