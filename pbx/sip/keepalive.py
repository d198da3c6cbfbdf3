"""Keepalive OPTIONS to every registered handset: the asyncio side of the registrar's
reachability (as Kamailio's usrloc keeps its NAT pings beside the location table).

Every `interval` seconds each live binding gets an OPTIONS over the transport it registered on
(UDP, TCP or TLS). It keeps a home NAT pinhole or the handset's connection open, and it proves the
handset is still there: any response counts as an answer, the transaction timing out (64*T1, a
408 made by our own stack) as a miss. The registrar decides what answers and misses mean. At most
one probe per binding is in flight, so the probes are bounded by the bindings.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from pbx.sip.dialog import new_call_id, new_tag
from pbx.sip.headers import Headers
from pbx.sip.message import Request
from pbx.sip.registrar import Binding, Registrar
from pbx.sip.stack import SipStack

log = structlog.get_logger("pbx.sip.keepalive")

NO_RESPONSE = 408  # what the stack reports when a client transaction times out


@dataclass
class Keepalive:
    stack: SipStack
    registrar: Registrar
    interval: float = 25.0
    clock: Callable[[], float] = time.time  # wall clock, as the registrar's expiry times
    _probes: dict[tuple[str, str], asyncio.Task[None]] = field(
        default_factory=dict, init=False, repr=False
    )  # (user, binding key) -> its probe in flight

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.interval)
                self.probe_all()
        finally:
            for task in list(self._probes.values()):
                task.cancel()

    def probe_all(self) -> None:
        """Send one OPTIONS to every live binding that has none in flight."""
        for binding in self.registrar.keepalive_targets(self.clock()):
            key = (binding.username, binding.key)
            if key in self._probes:
                continue
            task = asyncio.create_task(self._probe(binding))
            self._probes[key] = task
            task.add_done_callback(functools.partial(self._done, key))

    def _done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._probes.get(key) is task:
            del self._probes[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("keepalive_failed", error=repr(task.exception())[:200])

    async def _probe(self, binding: Binding) -> None:
        headers = Headers()
        for name, value in binding.routes:  # through the edge proxy of its Path, if any
            headers.add(name, value)
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:keepalive@{self.stack.public_host}>;tag={new_tag()}")
        headers.add("To", f"<{binding.contact}>")
        headers.add("Call-ID", new_call_id(self.stack.public_host))
        headers.add("CSeq", "1 OPTIONS")
        request = Request("OPTIONS", binding.contact, headers)
        response = await self.stack.request(request, binding.next_hop)
        now = self.clock()
        if response.status == NO_RESPONSE:
            self.registrar.keepalive_missed(binding, now)
        else:
            self.registrar.keepalive_answered(binding, now)
