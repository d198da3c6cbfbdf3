"""Datagram I/O of the RTP sockets: one datagram in with its source, one out to a peer.

The relay reads and writes one datagram per packet, so this is the per-packet boundary with
the kernel. Sources and destinations are *peers*: opaque values that compare equal when they
name the same source. ``peer(family, address)`` makes one from an ``(host, port)`` address
(None when the host is not an address of that family), ``address(peer)`` gives the address
back in ``socket.recvfrom``'s form.

This module is the plain-Python reference: a peer is the address tuple itself, and receiving
and sending are the socket's own ``recvfrom`` and ``sendto``. With the compiled modules
(``pbx/native.py``) ``udp.c`` replaces it with the same functions, whose peers are the
kernel's socket addresses as bytes: no address text formatted for every packet received and
none parsed for every packet sent (``bench/README.md``, round nine). Neither ever blocks: the
compiled one passes MSG_DONTWAIT, and the endpoint's sockets are non-blocking here.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["address", "peer", "receiver", "sender"]  # all udp.c has: the types are for checking

Address = tuple[Any, ...]  # (host, port) for IPv4, (host, port, flow, scope) for IPv6
Peer = Hashable  # an Address here, the kernel's sockaddr bytes when compiled

Receive = Callable[[int], tuple[bytes, Peer]]  # (size) -> (datagram, its source)
Send = Callable[[bytes, Peer], int]  # (datagram, destination) -> bytes sent


def receiver(sock: socket.socket) -> Receive:
    """Reads one datagram of at most ``size`` bytes from ``sock`` (BlockingIOError: none)."""
    return sock.recvfrom


def sender(sock: socket.socket) -> Send:
    """Sends one datagram from ``sock`` (BlockingIOError: the socket buffer is full)."""
    return sock.sendto  # type: ignore[return-value]  # (its overload with flags is not used)


def peer(family: int, address: Address) -> Peer | None:
    """The peer for ``address`` (an IP literal and a port; for IPv6 optionally the flow label
    and scope) on a socket of ``family``, as a source from it would be received."""
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    host, port = address[0], address[1]
    if not isinstance(host, str) or not isinstance(port, int) or not 0 <= port <= 65535:
        return None
    try:
        text = socket.inet_ntop(family, socket.inet_pton(family, host))
    except (OSError, ValueError):
        return None
    if family != socket.AF_INET6:
        return (text, port)
    flow, scope = address[2:4] if len(address) >= 4 else (0, 0)
    if not (isinstance(flow, int) and 0 <= flow <= 0xFFFFF):
        return None
    if not (isinstance(scope, int) and 0 <= scope <= 0xFFFFFFFF):
        return None
    return (text, port, flow, scope)


def address(peer: Peer) -> Address:
    """``peer`` as ``socket.recvfrom`` gives a source address."""
    return peer  # type: ignore[return-value]
