"""Who may place calls into the helpline: configured carrier trunks only (toll-fraud guard).

A trunk is trusted by source address range, or by digest credentials (Proxy-Authorization) for
carriers that register or authenticate. Everything else gets 403 and places no call.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from pbx.sip.digest import (
    Algorithm,
    Credential,
    DigestError,
    NonceManager,
    challenge_headers,
    parse_authorization,
    verify,
)
from pbx.sip.message import Request, Response, make_response
from pbx.sip.peer import Peer


class TrunkVerdict(enum.Enum):
    TRUSTED = "trusted"
    CHALLENGED = "challenged"
    FORBIDDEN = "forbidden"


@dataclass
class TrunkPolicy:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    realm: str
    credentials: dict[str, Credential]
    nonces: NonceManager
    algorithms: tuple[Algorithm, ...] = (Algorithm.SHA256, Algorithm.MD5)

    @classmethod
    def build(
        cls, sources: list[str], realm: str, passwords: dict[str, str], nonces: NonceManager
    ) -> TrunkPolicy:
        nets = [ipaddress.ip_network(s, strict=False) for s in sources]
        creds = {u: Credential.from_password(u, realm, p) for u, p in passwords.items()}
        return cls(nets, realm, creds, nonces)

    def from_trusted_address(self, peer: Peer) -> bool:
        try:
            addr = ipaddress.ip_address(peer.host)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)

    def check(
        self, request: Request, peer: Peer, now: float
    ) -> tuple[TrunkVerdict, Response | None]:
        if self.from_trusted_address(peer):
            return TrunkVerdict.TRUSTED, None
        if not self.credentials:
            return TrunkVerdict.FORBIDDEN, make_response(request, 403, "Forbidden - Not a trunk")
        value = request.headers.get("Proxy-Authorization")
        if value is not None:
            try:
                resp = parse_authorization(value)
            except DigestError:
                return TrunkVerdict.FORBIDDEN, make_response(
                    request, 403, "Forbidden - Bad credentials"
                )
            result = verify(
                resp, request.method, self.credentials.get(resp.username), self.nonces, now
            )
            if result.ok:
                return TrunkVerdict.TRUSTED, None
            if not result.rechallenge_stale:
                return TrunkVerdict.FORBIDDEN, make_response(
                    request, 403, "Forbidden - Bad credentials"
                )
        response = make_response(request, 407)
        stale = value is not None
        for v in challenge_headers(self.realm, self.nonces.issue(now), stale, self.algorithms):
            response.headers.add("Proxy-Authenticate", v)
        return TrunkVerdict.CHALLENGED, response
