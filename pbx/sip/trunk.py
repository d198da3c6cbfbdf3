"""Who may place calls into the helpline: configured carrier trunks only (toll-fraud guard).

A trunk is trusted by source address range, or by digest credentials (Proxy-Authorization,
checked by the shared `AuthGuard`) for carriers that authenticate. A trunk address is never a
handset: a REGISTER from it is refused and an INVITE from it is a carrier call, decided before
any handset lookup.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from pbx.sip.digest import Credential
from pbx.sip.peer import Peer


@dataclass
class TrunkPolicy:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    credentials: dict[str, Credential]

    @classmethod
    def build(cls, sources: list[str], realm: str, passwords: dict[str, str]) -> TrunkPolicy:
        nets = [ipaddress.ip_network(s, strict=False) for s in sources]
        creds = {u: Credential.from_password(u, realm, p) for u, p in passwords.items()}
        return cls(nets, creds)

    def from_trusted_address(self, peer: Peer) -> bool:
        addr = _address(peer.host)
        return addr is not None and any(addr in net for net in self.networks)


@lru_cache(maxsize=4096)  # asked a few times per call, mostly about the same trunk addresses
def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
