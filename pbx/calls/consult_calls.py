"""A volunteer's handset calling a destination itself, to consult it before an attended transfer.

The handset puts the caller on hold and dials a destination the plan allows volunteers (by its
name or the user part of its URI, e.g. `sip:info-line@service`); nothing else can be dialled.
The service rings it and bridges the two. The handset then sends a REFER on the caller's call
whose Refer-To carries `Replaces` naming this call (RFC 3891): the destination's leg is taken
over (`take`) and bridged to the caller, and both of the volunteer's calls end.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import structlog

from pbx.calls.bridging import HandoverRequest, bridge_until_end
from pbx.calls.legs import InboundLeg, OutboundLeg, watch_call_task
from pbx.calls.media_session import AnchoredMedia, MediaError, MediaFactory
from pbx.calls.ringing import Ringer, Target
from pbx.calls.transfers import VolunteerTransfers
from pbx.sip.address import parse_address
from pbx.sip.errors import SipParseError
from pbx.sip.peer import Peer
from pbx.sip.uri import SipUri, parse_sip_uri

log = structlog.get_logger("pbx.calls.consult_calls")

MAX_CONSULT_CALLS = 200  # bounded: older entries are forgotten (their calls still end normally)

DialogKey = tuple[str, frozenset[str]]  # Call-ID, {our tag, the handset's tag}


@dataclass
class ConsultCall:
    """A volunteer's call to a destination, until it is taken over by a transfer or ends."""

    volunteer: InboundLeg
    volunteer_media: AnchoredMedia
    out: OutboundLeg
    media: AnchoredMedia  # the destination's
    stop: HandoverRequest = field(default_factory=lambda: HandoverRequest({}))
    taken: bool = False

    def take(self) -> tuple[OutboundLeg, AnchoredMedia] | None:
        """The destination's leg and media, now the taker's (who closes the media); None if
        the call has ended or was taken already."""
        if self.taken or self.out.is_ended or self.volunteer.is_ended:
            return None
        self.taken = True
        self.stop.done.set()  # ends the bridge with the volunteer, both legs still up
        return self.out, self.media


@dataclass
class ConsultCalls:
    ringer: Ringer
    media: MediaFactory
    transfers: VolunteerTransfers
    resolve: Callable[[SipUri], Awaitable[Peer]]
    ring_timeout: float = 30.0
    calls: OrderedDict[DialogKey, ConsultCall] = field(default_factory=OrderedDict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def destination(self, dialed: str) -> str | None:
        """The allowed destination a handset dialled (by name or URI user part), or None."""
        return self.transfers.by_user(SipUri(host="x", user=dialed), keys=False)

    def start(self, leg: InboundLeg, name: str) -> None:
        watch_call_task(asyncio.create_task(self._run(leg, name)), leg, self.tasks)

    def replaced(self, refer_to: str) -> ConsultCall | None:
        """The consult call a Refer-To's Replaces names (RFC 3891), or None."""
        try:
            uri = parse_address(refer_to).uri
        except SipParseError:
            return None
        headers = uri.headers if isinstance(uri, SipUri) else None
        for part in (headers or "").split("&"):
            name, _, value = part.partition("=")
            if name.lower() != "replaces":
                continue
            call_id, *params = unquote(value).split(";")
            tags = {p.partition("=")[0].strip().lower(): p.partition("=")[2] for p in params}
            key = (call_id, frozenset({tags.get("to-tag", ""), tags.get("from-tag", "")}))
            return self.calls.get(key)
        return None

    async def _run(self, leg: InboundLeg, name: str) -> None:
        dest = self.transfers.allowed()[name]
        anchored = await self.media.open_for(leg)
        if anchored is None:
            return
        volunteer_media, sdp = anchored
        try:
            uri = parse_sip_uri(dest.uri)
            try:
                other = await self.media.open([(await self.resolve(uri)).host])
            except MediaError as exc:
                leg.reject(exc.status, exc.reason)
                return
            await self._connect(leg, volunteer_media, sdp, other, uri, name)
        finally:
            volunteer_media.close()

    async def _connect(
        self,
        leg: InboundLeg,
        volunteer_media: AnchoredMedia,
        sdp: bytes | None,
        other: AnchoredMedia,
        uri: SipUri,
        name: str,
    ) -> None:
        consult = None
        try:
            leg.ring()
            target = Target(uri, await self.resolve(uri), f"<{uri}>")
            dialled = await self.ringer.dial(leg, other, target, leg.ref, self.ring_timeout)
            if dialled.leg is None:
                status = dialled.status if dialled.status >= 300 else 480
                leg.reject(status)
                return
            out = dialled.leg
            if not await leg.answer(sdp or volunteer_media.offer()):
                await out.hangup("volunteer_gone")
                return
            consult = ConsultCall(leg, volunteer_media, out, other)
            assert leg.dialog is not None
            tags = frozenset({leg.dialog.local_tag, leg.dialog.remote.tag or ""})
            key = (leg.dialog.call_id, tags)
            self.calls[key] = consult
            while len(self.calls) > MAX_CONSULT_CALLS:
                self.calls.popitem(last=False)
            log.info("consult_call_connected", call=leg.ref, to=name)
            await bridge_until_end(leg, volunteer_media, out, other, handover=consult.stop)
            if consult.taken:
                await leg.hangup("replaced")  # the destination talks to the caller now
            elif not out.is_ended:
                await out.hangup("consult_ended")
        finally:
            if consult is not None:
                self.calls.pop(key, None)
            if consult is None or not consult.taken:
                other.close()
