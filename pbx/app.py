"""Assembles the service with its call application."""

from __future__ import annotations

from pbx.calls.direct import DirectRouter
from pbx.calls.media_session import MediaFactory
from pbx.config import Settings
from pbx.media.ports import PortPool
from pbx.media.prompts import PromptLibrary
from pbx.service import HelplineService


def build_service(settings: Settings) -> HelplineService:
    service = HelplineService(settings)
    rtp_host = settings.sip_host if settings.sip_host not in ("", "::") else "0.0.0.0"
    pool = PortPool(rtp_host, settings.rtp_port_min, settings.rtp_port_max)
    router = DirectRouter(
        service.switchboard, MediaFactory(pool, settings.public_host, settings.media_timeout)
    )
    router.on_outcome = lambda outcome: service.metrics.calls.labels(outcome=outcome).inc()
    service.switchboard.on_refused = lambda reason: service.metrics.invites_refused.labels(
        reason=reason
    ).inc()
    if settings.volunteer_whisper:
        prompts = PromptLibrary(settings.recordings)
        router.whisper = prompts.get("nl", settings.volunteer_whisper)
    service.switchboard.app = router
    service.app = router
    return service
