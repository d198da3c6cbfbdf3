"""Where a message came from or goes to: transport, address and (for streams) the connection."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TransportKind(enum.StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"

    @property
    def reliable(self) -> bool:
        return self is not TransportKind.UDP

    @property
    def via_name(self) -> str:
        return self.value.upper()

    @classmethod
    def from_name(cls, name: str) -> TransportKind:
        """From a Via transport or a transport= URI parameter (unknown names raise ValueError)."""
        return cls(name.lower())


@dataclass(frozen=True, slots=True)
class Peer:
    """A remote address as seen on the wire. connection_id names the TCP/TLS connection it used."""

    transport: TransportKind
    host: str
    port: int
    connection_id: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport.reliable

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport.value}:{host}:{self.port}"
