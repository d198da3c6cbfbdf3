"""Requests relayed by a trusted SIP edge proxy (Kamailio in front of active/standby nodes).

Behind the edge every request seems to come from the proxy's address. The proxy says who really
sent it in `X-Helpline-Source: <transport>:<address>:<port>;trunk=<0|1>` (it removes any copy a
sender put there). That is believed only from a configured edge address (`edge_proxies`): from
anywhere else the header, and a Path (which would make us route a handset's calls through a
host of the sender's choosing), are removed before anything reads the request. The real source
then decides trunk or handset, binds the digest nonce, keys authentication lockouts and stores
a REGISTER's binding; the per-source admission limits, which the edge itself is exempt from
before parsing, are applied to it here.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from pbx.sip.admission import Admission, Verdict
from pbx.sip.message import make_response
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.stack import IncomingRequest

log = structlog.get_logger("pbx.sip.edge")

SOURCE_HEADER = "X-Helpline-Source"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_source(value: str) -> Peer | None:
    """`udp:192.0.2.7:5060;trunk=0` -> Peer(UDP, 192.0.2.7, 5060); None if unreadable."""
    where = value.split(";", 1)[0].strip()
    kind, _, rest = where.partition(":")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        transport = TransportKind.from_name(kind)
    except ValueError:
        return None
    if not 0 < number < 65536:
        return None
    return Peer(transport, host, number)


@dataclass(frozen=True)
class EdgeProxies:
    networks: tuple[Network, ...]
    admission: Admission | None = None  # per-source limits for the real sources
    clock: Callable[[], float] = time.monotonic  # the admission's clock (the loop's time)

    @classmethod
    def build(
        cls, sources: Sequence[str], admission: Admission | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> EdgeProxies:  # fmt: skip
        return cls(tuple(ipaddress.ip_network(s, strict=False) for s in sources), admission, clock)

    def is_edge(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.networks)

    def resolve(self, incoming: IncomingRequest) -> bool:
        """Set the request's real source (`incoming.origin`); False if it was answered here
        (its real source is over the admission limits)."""
        headers = incoming.request.headers
        claimed = headers.fields(SOURCE_HEADER)
        headers.remove(SOURCE_HEADER)  # nothing above reads it: the origin says it all
        if not self.is_edge(incoming.source.host):
            if claimed or headers.get("Path") is not None:
                log.info("edge_headers_ignored", source=incoming.source.host)
            headers.remove("Path")
            return True
        if len(claimed) != 1:
            return True  # the edge's own request (its OPTIONS probe): from the edge itself
        origin = parse_source(claimed[0])
        if origin is None:
            log.warning("edge_source_unreadable", edge=incoming.source.host)
            return True
        incoming.origin = origin
        return self._admit(incoming, origin)

    def _admit(self, incoming: IncomingRequest, origin: Peer) -> bool:
        if self.admission is None:
            return True
        request = incoming.request
        verdict = self.admission.admit(origin.host, len(request.body) + 500, self.clock())
        if verdict is Verdict.ADMIT:
            return True
        for ban in self.admission.take_bans():
            log.warning("source_banned", source=ban.host, seconds=ban.seconds,
                        offence=ban.offence, reason=ban.reason.value, via="edge")  # fmt: skip
        if request.method != "ACK":
            response = make_response(
                request, 503, "Service Unavailable - Too many requests", to_tag=secrets.token_hex(6)
            )
            response.headers.add("Retry-After", str(int(self.admission.config.ban_seconds)))
            incoming.stack.respond_once(incoming, response)
        return False
