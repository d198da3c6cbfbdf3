"""Where responses go: received/rport stamping (RFC 3261 18.2.1, RFC 3581) and 18.2.2 routing.

A server stamps the top Via of each incoming request with the address it really came from, so
the responses (which copy the Via) carry it, and later sends those responses there rather than
to whatever the client claimed in sent-by: that is what makes NATed phones work.
"""

from __future__ import annotations

import functools
import ipaddress

from pbx.sip.grammar import split_outside_quotes
from pbx.sip.headers import Headers
from pbx.sip.message import Request
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.via import Via

DEFAULT_PORT = 5060
DEFAULT_TLS_PORT = 5061


def default_port(transport: str) -> int:
    """The port a sent-by without one means (RFC 3261 18.2.2 / 19.1.2)."""
    return DEFAULT_TLS_PORT if transport.upper() == "TLS" else DEFAULT_PORT


def bare_host(host: str) -> str:
    """A Via/URI host without IPv6 brackets, as sockets and Peer want it."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


@functools.lru_cache(maxsize=4096)  # hosts repeat; ipaddress parsing is the slow part
def normalize_host(host: str) -> str:
    """Canonical text for comparing hosts: lower case, no brackets, IPv6 compressed."""
    text = bare_host(host).lower()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def sent_by_key(via: Via) -> tuple[str, int]:
    """sent-by as compared by transaction matching: normalized host and explicit port."""
    return normalize_host(via.host), via.port if via.port is not None else default_port(
        via.transport
    )


def stamp_via(via: Via, source: Peer) -> Via:
    """The top Via as a server must pass it on: received= and rport= filled in.

    received is added when the source address differs from sent-by (always for a host name), or
    whenever rport was asked for (RFC 3581 section 4); rport then gets the source port.
    """
    wants_rport = "rport" in via.params
    forged = "received" in via.params  # only we stamp received: one a client sent is ignored
    if not wants_rport and not forged and normalize_host(via.host) == normalize_host(source.host):
        return via
    changes: dict[str, str | None] = {"received": bare_host(source.host)}
    if wants_rport:
        changes["rport"] = str(source.port)
    return via.with_params(**changes)


def replace_top_via(request: Request, via: Via) -> None:
    """Rewrite the first Via value in place, keeping every other field where it was."""
    fields = request.headers.fields("Via")
    if len(fields) == 1 and "," not in fields[0]:
        request.headers.set("Via", str(via))  # the usual single Via: replaced where it stands
        return
    items = list(request.headers)
    for index, (name, value) in enumerate(items):
        if name.lower() != "via":
            continue
        rest = split_outside_quotes(value, ",")[1:]
        items[index] = (name, ", ".join([str(via), *(part.strip() for part in rest)]))
        request.headers = Headers(items)
        return
    raise ValueError("request has no Via")


def response_peer(request_source: Peer, via: Via) -> Peer:
    """Where responses to a request go (RFC 3261 18.2.2 with RFC 3581).

    Reliable transports answer on the connection the request came in on. Over UDP an rport
    (with or without value) means "the source address and port"; otherwise the received address
    (or sent-by host) and the sent-by port. maddr is ignored on purpose: honouring it would let a
    forged request aim our responses at any address.
    """
    if request_source.reliable:
        return request_source
    if "rport" in via.params:
        return Peer(TransportKind.UDP, request_source.host, request_source.port)
    host = via.params.get("received") or via.host
    port = via.port if via.port is not None else DEFAULT_PORT
    return Peer(TransportKind.UDP, bare_host(host), port)
