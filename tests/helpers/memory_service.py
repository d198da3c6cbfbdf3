"""The real call application on the in-memory network: `pbx.app.build_service` with its SIP stack
on `MemoryTransports`, for call-layer tests that run in seconds.

Everything above the transports is the service's own (stack, switchboard, registrar, IVR,
waiting room, dispatcher, ringing, bridging). Started here without the database (live calls
never need it: volunteers' credentials and profiles are put in the directory as a start from
its snapshot would), without metrics or TLS listeners, and with the IVR's clock on a Tuesday
afternoon (every queue open). Media stays real: RTP on 127.0.0.1 sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.loader import DEFAULT_PLAN
from pbx.app import build_service
from pbx.calls.inbound import HelplineCalls
from pbx.config import Settings
from pbx.drain import Readiness
from pbx.profile import Profile
from pbx.service import HelplineService
from pbx.sip.digest import Credential
from pbx.sip.peer import Peer, TransportKind
from tests.helpers.ivr_helpline import TUESDAY_1500, without_wrap_up
from tests.helpers.memory_network import Network
from tests.helpers.memory_stack import MemoryTransports, run_in_real_time
from tests.helpers.service import free_port

SERVICE_HOST, SERVICE_PORT = "127.0.0.1", 5060  # on the in-memory network only


@dataclass
class MemoryHelpline:
    service: HelplineService
    network: Network

    @property
    def peer(self) -> Peer:
        """Where phones send SIP to the service."""
        return Peer(TransportKind.UDP, SERVICE_HOST, SERVICE_PORT)


@contextlib.asynccontextmanager
async def memory_helpline(
    state_dir: Path, volunteers: dict[str, str], **overrides: Any
) -> AsyncIterator[MemoryHelpline]:
    """The service (IVR on the default plan, no wrap-up) with `volunteers` (name -> SIP
    password; each speaks Dutch) known to it, on an in-memory network run in real time."""
    base = 20000 + (free_port() % 120) * 100  # a private RTP range, as tests/helpers/service.py
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            sip_host=SERVICE_HOST, sip_port=SERVICE_PORT, tls_port=None, metrics_port=None,
            database_url=None, state_dir=state_dir, rtp_port_min=base, rtp_port_max=base + 98,
            log_format="console", sip_t1=0.1, call_flow="ivr", volunteer_whisper="",
            dialplan=without_wrap_up(DEFAULT_PLAN, Path(tmp) / "dialplan.yaml"),
        )  # fmt: skip
        for key, value in overrides.items():
            setattr(settings, key, value)
        network = Network(latency=0.001)
        service = build_service(settings, MemoryTransports(network))
        directory = service.directory
        for name, password in volunteers.items():
            directory.credentials[name] = Credential.from_password(name, settings.realm, password)
            directory.profiles[name] = Profile(name, ("nl",), (), None, None)
        app = service.switchboard.app
        if isinstance(app, HelplineCalls):
            app.clock = lambda: TUESDAY_1500  # as tests/helpers/ivr_helpline.py does
        service.plans.load()
        async with run_in_real_time(network):
            await service.stack.start(service.switchboard, SERVICE_HOST, SERVICE_PORT)
            service.drain.state = Readiness.SERVING
            dispatcher = asyncio.create_task(service.dispatcher.run())
            try:
                yield MemoryHelpline(service, network)
            finally:
                dispatcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await dispatcher
                await service.stack.close()
                await service.bookkeeping.close()
