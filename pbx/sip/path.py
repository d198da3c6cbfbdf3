"""RFC 3327 Path: the proxies a REGISTER passed through, to reach the handset back through them.

An edge proxy (Kamailio, `deploy/kamailio/`) puts its own URI, with the address the handset
really registered from, in a Path header. The registrar stores the Path with the binding; every
request sent to that handset later carries it as Route headers and goes to the first Path entry,
the proxy that holds the handset's NAT binding, whichever node sends it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pbx.sip.address import parse_address
from pbx.sip.errors import SipParseError
from pbx.sip.headers import split_list
from pbx.sip.message import Request
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.uri import SipUri

MAX_PATH_ENTRIES = 4  # one edge proxy, maybe two: anything longer is not ours


def request_path(request: Request) -> tuple[str, ...]:
    """The Path entries of a REGISTER, first (nearest to us) first; checked to be usable."""
    entries = tuple(split_list(request.headers.fields("Path")))
    if len(entries) > MAX_PATH_ENTRIES:
        raise SipParseError("Bad Request - Path too long")
    if entries:
        first_hop(entries)
    return entries


def first_hop(path: Sequence[str]) -> Peer:
    """Where a request routed by `path` is sent: the first entry's host, port and transport."""
    uri = parse_address(path[0]).uri
    if not isinstance(uri, SipUri):
        raise SipParseError("Bad Request - Path must be a SIP URI")
    try:
        transport = TransportKind.from_name(uri.params.get("transport") or "udp")
    except ValueError:
        raise SipParseError("Bad Request - Unknown transport in Path") from None
    if uri.scheme == "sips":
        transport = TransportKind.TLS
    port = uri.port or (5061 if transport is TransportKind.TLS else 5060)
    return Peer(transport, uri.host.strip("[]"), port)
