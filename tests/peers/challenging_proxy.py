"""Kamailio as a carrier's proxy that challenges every call with 407 (RFC 3261 22.3) and
relays it to the callee behind it once the credentials are right: `challenging_proxy.cfg`.

The harness (start, the OPTIONS probe, the log, the bounded life) is `tests.peers.kamailio`'s;
only the configuration and its parameters differ.
"""

from __future__ import annotations

from pathlib import Path

from tests.peers.kamailio import Kamailio

CONFIG = Path(__file__).with_name("challenging_proxy.cfg")


class ChallengingProxy(Kamailio):
    def __init__(
        self, callee: tuple[str, int], *, realm: str, user: str, password: str,
        host: str = "127.0.0.1", max_life: float = 120.0,
    ) -> None:  # fmt: skip
        super().__init__([callee], trunk_nets=[], host=host, max_life=max_life)
        self.realm, self.user, self.password = realm, user, password

    def command(self) -> list[str]:
        ((callee_host, callee_port),) = self.nodes
        defines = {
            "LISTEN": f"udp:{self.host}:{self.port}",
            "NEXT_HOP": f'"sip:{callee_host}:{callee_port}"',
            "REALM": f'"{self.realm}"',
            "AUTH_USER": f'"{self.user}"',
            "AUTH_PASS": f'"{self.password}"',
        }
        return self.kamailio_args(CONFIG, defines, shared_mb=32, children=1)
