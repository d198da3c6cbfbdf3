"""Inbound calls as the helpline runs them.

A caller is answered at once and walks the IVR of the dialplan in force when the call began (a
reload never changes a call in progress). Where the IVR ends decides what follows: waiting for a
volunteer in a language queue (`waiting.WaitingRoom`), a transfer to a configured destination,
voicemail, or goodbye.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from ivr.collect import DigitBuffer
from ivr.model import Destination, Dialplan, Queue
from ivr.runtime import IvrOutcome, IvrRuntime, Mailboxes, OutcomeKind
from pbx.anonymity import CallerContext
from pbx.call_records import CallRecords, ended_closed
from pbx.calls.bridging import HandoverRequest, Replaceable, bridge_until_end
from pbx.calls.colleagues import ColleagueQueues
from pbx.calls.consult_calls import ConsultCalls
from pbx.calls.consultation import Consultation, InCall
from pbx.calls.handover import State
from pbx.calls.legs import InboundLeg, watch_call_task
from pbx.calls.media_session import AnchoredMedia, MediaError, MediaFactory
from pbx.calls.ringing import Ringer, Target
from pbx.calls.shift import ShiftDesk
from pbx.calls.transfers import queue_of
from pbx.calls.waiting import WaitingRoom
from pbx.media.player import play
from pbx.media.prompts import PromptLibrary
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.stack import failure_site
from pbx.sip.uri import SipUri, parse_sip_uri

log = structlog.get_logger("pbx.calls.inbound")

TRANSFER_RING_TIMEOUT = 60.0  # seconds a destination may take to answer a transfer
MAX_CONTINUATIONS = 8  # overflow / failed-transfer hops one call may take through the plan


@dataclass
class HelplineCalls:
    ringer: Ringer  # rings configured destinations (transfers, the hand-over)
    waiting: WaitingRoom  # a caller's stay in a language queue
    media: MediaFactory
    prompts: PromptLibrary
    plan: Callable[[], Dialplan]  # the plan in force now
    mailboxes: Mailboxes  # voicemail messages, kept encrypted
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    on_outcome: Callable[[str], None] = lambda outcome: None  # metrics
    on_overflow: Callable[[str], None] = lambda queue: None  # metrics: a queue's max wait passed
    on_entry: Callable[[str], None] = lambda kind: None  # wallboard: the number's kind, "other"
    on_transfer: Callable[[str], None] = lambda dest: None  # wallboard: a destination answered
    shift_desk: ShiftDesk | None = None  # feature codes from volunteers' handsets
    backline: str = "backline_113"  # the destination a volunteer hands a caller over to
    records: CallRecords = field(default_factory=CallRecords)  # one record per call
    consultation: Consultation | None = None  # warm hand-over; None: blind
    consult_calls: ConsultCalls | None = None  # volunteers' own calls to allowed destinations
    colleagues: ColleagueQueues | None = None  # transfers to a colleague's queue
    # metrics: a volunteer's transfer by destination kind (backline, destination, queue) and
    # how it ended (completed, returned, failed, caller_left, queued)
    on_volunteer_transfer: Callable[[str, str], None] = lambda kind, result: None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def inbound_call(self, leg: InboundLeg, caller: CallerContext) -> None:
        watch_call_task(asyncio.create_task(self._run(leg, caller, self.plan())), leg, self.tasks)

    def volunteer_call(self, leg: InboundLeg, username: str, dialed: str) -> None:
        to = None if self.consult_calls is None else self.consult_calls.destination(dialed)
        if to is not None and self.consult_calls is not None:
            log.info("volunteer_dials_destination", call=leg.ref, to=to)
            self.consult_calls.start(leg, to)
        elif self.shift_desk is None:
            leg.reject(404, "Not Found - No such feature code")
        else:
            self.shift_desk.volunteer_call(leg, username, dialed)

    async def _run(self, leg: InboundLeg, caller: CallerContext, plan: Dialplan) -> None:
        self.records.started(leg.ref, caller, plan)
        outcome = "shutdown"  # the record's outcome if the task is cancelled (the service stops)
        try:
            outcome = await self._handle(leg, caller, plan)
        except Exception as exc:  # a bug must cost one call a clean ending, never leave it hanging
            log.error("call_failed", call=leg.ref, error=type(exc).__name__, at=failure_site(exc))
            outcome = "failed"
            if not leg.is_ended:
                await leg.hangup("internal_error")
        finally:
            self.records.finished(leg.ref, outcome)  # however the call ends: never lost
        log.info("call_finished", call=leg.ref, outcome=outcome)
        self.on_outcome(outcome)

    async def _handle(self, leg: InboundLeg, caller: CallerContext, plan: Dialplan) -> str:
        anchored = await self.media.open_for(leg)
        if anchored is None:
            return "rejected"
        media, sdp = anchored
        try:
            keys = DigitBuffer(media.leg).attach()  # a key pressed on answering is not lost
            # the caller hanging up ends whatever plays, listens or records on their media
            hung_up = asyncio.create_task(_close_when_ended(leg, media))
            try:
                if not await leg.answer(sdp or media.offer()):
                    return "abandoned"
                media.keep_continuous()  # no dead air for carriers and NAT boxes from now on
                return await self._follow_plan(leg, caller, plan, media, keys)
            finally:
                hung_up.cancel()
        finally:
            media.close()

    async def _follow_plan(
        self,
        leg: InboundLeg,
        caller: CallerContext,
        plan: Dialplan,
        media: AnchoredMedia,
        keys: DigitBuffer,
    ) -> str:
        node, number = plan.entry_for(caller.dialed)
        self.on_entry(number.kind.value if number else "other")
        language = plan.default_language
        for _ in range(MAX_CONTINUATIONS):
            outcome = await IvrRuntime(
                media.leg, plan, node, language=language, prompts=self.prompts, now=self.clock,
                mailboxes=self.mailboxes,
                region=number.region if number else None,
                partner=number.partner if number else None, digits=keys,
            ).run()  # fmt: skip
            log.info("ivr_outcome", call=leg.ref, outcome=outcome.describe(), path=outcome.path)
            language = outcome.language
            self.records.ivr(leg.ref, outcome.path, language)
            next_node = await self._act(
                leg, plan, media, outcome, number.region if number else None
            )
            if isinstance(next_node, _Done):
                return next_node.outcome
            node = next_node
        await leg.hangup("plan_loop")
        return "failed"

    async def _act(
        self,
        leg: InboundLeg,
        plan: Dialplan,
        media: AnchoredMedia,
        outcome: IvrOutcome,
        region: str | None,
    ) -> str | _Done:
        """Carry out where the IVR ended; a node name to continue there, or the call's end."""
        match outcome.kind:
            case OutcomeKind.ABANDONED:
                return _Done("closed" if ended_closed(plan, outcome.path) else "abandoned")
            case OutcomeKind.QUEUE:
                assert outcome.queue is not None
                queue = plan.queues[outcome.queue]
                self.records.queued(leg.ref, queue.name)
                result = await self.waiting.wait(leg, media, queue, outcome.language, region)
                if isinstance(result, Queue):  # waited its maximum: its overflow takes over
                    self.on_overflow(result.name)
                    self.records.overflowed(leg.ref)
                    return result.overflow or _Done("hangup")
                return _Done(result)
            case OutcomeKind.TRANSFER:
                assert outcome.destination is not None
                ok = await self._transfer(leg, media, plan.destinations[outcome.destination])
                self.records.transferred(leg.ref, outcome.destination, ok)
                if ok:
                    return _Done("transferred")
                if outcome.on_failure:
                    return outcome.on_failure
            case OutcomeKind.VOICEMAIL:
                await leg.hangup("voicemail_done")
                return _Done("voicemail")
        await leg.hangup("ivr_end")
        if outcome.kind is not OutcomeKind.HANGUP:
            return _Done("failed")
        return _Done("closed" if ended_closed(plan, outcome.path) else "ivr_hangup")

    async def hand_over(
        self,
        call: InCall,
        request: HandoverRequest,
        language: str,
        volunteer_free: Callable[[], None],
    ) -> State:
        """A volunteer pressed a destination's keys (or their handset sent a REFER): connect
        the caller there, after consulting it (warm), at once (blind), or as the REFER asked.
        COMPLETED once the caller's call there has ended; RETURNED: the volunteer is back with
        the caller; FAILED: the volunteer is gone and so is the destination (the caller has
        been told and waits on the line)."""
        if request.replaces is not None:
            state = await _replace(call, request.replaces, volunteer_free)
            self.on_volunteer_transfer("destination", state.value)
            return state
        destination = request.destination or ""
        queue_name = queue_of(destination)
        if queue_name is not None:
            queue = self.plan().queues.get(queue_name)
            if queue is None or self.colleagues is None:  # gone with a reload meanwhile
                if request.by_refer:
                    call.out.notify_refer("SIP/2.0 404 Not Found", final=True)
                await play(call.other.leg, [self.prompts.get(language, "handover_refused")],
                           barge_in=False)  # fmt: skip
                return State.RETURNED
            state = await self.colleagues.hand_over(call, queue, request, language, volunteer_free)
            if state is not State.QUEUED:  # a queued caller's record is noted once served
                self.records.transferred(call.leg.ref, destination, state is State.COMPLETED)
            self.on_volunteer_transfer("queue", state.value)
            return state
        state = await self._hand_over(call, destination, request.by_refer, language, volunteer_free)
        kind = "backline" if destination == self.backline else "destination"
        self.on_volunteer_transfer(kind, state.value)
        return state

    async def _hand_over(
        self,
        call: InCall,
        destination: str,
        refer: bool,
        language: str,
        volunteer_free: Callable[[], None],
    ) -> State:
        """A hand-over to a destination of the plan (113, the info line, ...)."""
        dest = self.plan().destinations.get(destination)
        if dest is None:
            log.error("handover_destination_not_configured", destination=destination)
            await play(call.other.leg, [self.prompts.get(language, "handover_refused")],
                       barge_in=False)  # fmt: skip
            return State.RETURNED
        if self.consultation is not None:
            uri = parse_sip_uri(dest.uri)
            target = Target(uri, await resolve_destination(uri), f"<{uri}>")
            state = await self.consultation.run(
                call, target, dest.name, language, volunteer_free, refer=refer
            )
            self.records.transferred(call.leg.ref, destination, state is State.COMPLETED)
            return state
        await call.out.hangup("handover")
        volunteer_free()
        leg, media = call.leg, call.media
        if destination == self.backline:
            await play(media.leg, [self.prompts.get(language, "transfer_113")], barge_in=False)
        ok = not leg.is_ended and await self._transfer(leg, media, dest)
        self.records.transferred(leg.ref, destination, ok)
        if ok:
            return State.COMPLETED
        if leg.is_ended:
            return State.CALLER_LEFT
        await play(media.leg, [self.prompts.get(language, "transfer_failed")], barge_in=False)
        return State.FAILED

    async def _transfer(self, leg: InboundLeg, media: AnchoredMedia, dest: Destination) -> bool:
        """Connect the caller to a configured destination (only those: no number a caller
        supplies is ever dialled). True when it answered."""
        uri = parse_sip_uri(dest.uri)
        peer = await resolve_destination(uri)
        try:
            other = await self.media.open([peer.host])
        except MediaError:
            return False
        try:
            target = Target(uri, peer, f"<{uri}>")
            out = await self.ringer.ring(leg, other, target, leg.ref, TRANSFER_RING_TIMEOUT)
            if out is None:
                log.info("transfer_failed", call=leg.ref, to=dest.name)
                return False
            log.info("transferred", call=leg.ref, to=dest.name)
            self.on_transfer(dest.name)
            await bridge_until_end(leg, media, out, other)
            return True
        finally:
            other.close()


async def _replace(
    call: InCall, consulted: Replaceable, volunteer_free: Callable[[], None]
) -> State:
    """An attended transfer (REFER with Replaces): the destination the volunteer consulted on
    their own call talks to the caller from now on; both of the volunteer's calls end."""
    taken = consulted.take()
    if taken is None:  # it ended meanwhile
        call.out.notify_refer("SIP/2.0 481 Call/Transaction Does Not Exist", final=True)
        return State.RETURNED
    out, media = taken
    try:
        call.out.notify_refer("SIP/2.0 200 OK", final=True)
        await call.out.hangup("transferred")
        volunteer_free()
        log.info("handed_over", call=call.leg.ref, attended=True)
        await bridge_until_end(call.leg, call.media, out, media)
        return State.COMPLETED
    finally:
        media.close()


async def _close_when_ended(leg: InboundLeg, media: AnchoredMedia) -> None:
    """The caller hanging up, or their media going silent for media_timeout (a caller who
    vanished without a BYE), ends whatever plays, listens or records on the call."""
    ended = leg.ended.waiter()
    dead = media.dead.waiter()
    try:
        await asyncio.wait({ended, dead}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
        dead.cancel()
    if not leg.is_ended:
        log.warning("media_timeout", call=leg.ref, caller_dead=True)
        await leg.hangup("media_timeout")
    media.close()


@dataclass(frozen=True)
class _Done:
    outcome: str  # for metrics: answered, abandoned, voicemail, transferred, ...


async def resolve_destination(uri: SipUri) -> Peer:
    """Where to send a request for a destination's URI (its host looked up once)."""
    transport = TransportKind.from_name(uri.transport)
    port = uri.port or (5061 if transport is TransportKind.TLS else 5060)
    host = uri.host_bare
    try:
        ipaddress.ip_address(host)
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
        host = str(infos[0][4][0])
    return Peer(transport, host, port)
