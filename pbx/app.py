"""Assembles the service with its call application."""

from __future__ import annotations

import time

from ivr.model import Dialplan
from pbx.calls.direct import DirectRouter
from pbx.calls.handsets import Handsets
from pbx.calls.inbound import HelplineCalls
from pbx.calls.media_session import MediaFactory
from pbx.calls.ringing import Ringer, Whisper
from pbx.calls.shift import ShiftDesk, pin_lockout
from pbx.calls.waiting import WaitingRoom
from pbx.config import Settings
from pbx.media.filler import LineFiller
from pbx.media.ports import PortPool
from pbx.media.prompts import PromptLibrary
from pbx.service import HelplineService
from pbx.switchboard import CallApplication


def build_service(settings: Settings) -> HelplineService:
    prompts = PromptLibrary(settings.recordings)
    service = HelplineService(settings, prompts)  # checks the dialplan's prompts against them
    rtp_host = settings.sip_host if settings.sip_host not in ("", "::") else "0.0.0.0"
    pool = PortPool(rtp_host, settings.rtp_port_min, settings.rtp_port_max)
    media = MediaFactory(pool, settings.public_host, settings.media_timeout, LineFiller())
    whisper = Whisper(
        prompts.get("nl", settings.volunteer_whisper) if settings.volunteer_whisper else b""
    )
    handsets = Handsets(service.registrar, settings.public_host)
    ringer = Ringer(service.legs)
    router = DirectRouter(handsets, ringer, media, whisper)
    service.metrics.live(
        "helpline_rtp_stray_packets", "RTP packets dropped: not from the call's signalled peer",
        lambda: media.strays, counter=True,
    )  # fmt: skip
    router.on_outcome = lambda outcome: service.metrics.calls.labels(outcome=outcome).inc()
    service.switchboard.on_refused = lambda reason: service.metrics.invites_refused.labels(
        reason=reason
    ).inc()
    app: CallApplication = router
    if settings.call_flow == "ivr":

        def plan_in_force() -> Dialplan:
            assert service.plan is not None, "the service loads its dialplan before taking calls"
            return service.plan

        # with the IVR, volunteers take calls only while logged in to a shift from the handset
        metrics = service.metrics
        waiting = WaitingRoom(
            service.dispatcher, handsets, media, ringer, prompts, whisper,
            comfort_interval=settings.comfort_interval,
            ringback=settings.ringback_while_ringing,
            on_abandon=lambda q, waited: metrics.abandoned_wait.labels(queue=q).observe(waited),
            on_answer=lambda q, waited: metrics.answered_wait.labels(queue=q).observe(waited),
        )  # fmt: skip
        calls = HelplineCalls(
            ringer, waiting, media, prompts, plan_in_force, settings.state_dir / "voicemail"
        )
        calls.on_outcome = router.on_outcome
        calls.backline = settings.backline_destination
        waiting.handover_keys = settings.backline_keys
        waiting.hand_over = calls.hand_over
        calls.shift_desk = ShiftDesk(
            service.roster, media, prompts, lambda: service.profiles, time.time,
            on_change=service.dispatcher.kick,
            pins=pin_lockout(settings.pin_failures, settings.pin_lockout, settings.pin_lockout_max),
        )  # fmt: skip
        calls.on_overflow = lambda queue: service.metrics.queue_overflows.labels(queue=queue).inc()
        app = calls
    service.switchboard.app = app
    service.app = app
    return service
