"""The volunteers' registered handsets, as the call flows ring them.

Only what the registrar holds is ever rung: a handset at the address its REGISTER came from
(NAT), never a number or address a caller supplies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, KeysView
from dataclasses import dataclass

from pbx.calls.ringing import Target
from pbx.sip.registrar import Binding, Registrar


@dataclass
class Handsets:
    registrar: Registrar
    public_host: str  # our host in the To header the handset sees
    wall_clock: Callable[[], float] = time.time

    def registered_users(self) -> set[str]:
        """Volunteers with at least one live binding."""
        return self.registrar.registered_users(self.wall_clock())

    def known_users(self) -> KeysView[str]:
        """Every volunteer the registrar holds bindings for, live or not (cheap: no clock)."""
        return self.registrar.bindings.keys()

    def users_version(self) -> int:
        """Changes so far to ``known_users()``: equal numbers, the same users."""
        return self.registrar.users_version

    def ringable(self, username: str) -> list[Binding]:
        """A volunteer's handsets to ring: live and answering their keepalive."""
        return self.registrar.ringable(username, self.wall_clock())

    def target(self, binding: Binding) -> Target:
        """A registered handset, at the address its REGISTER came from (NAT), or through the
        edge proxy of its Path."""
        to = f"<sip:{binding.username}@{self.public_host}>"
        return Target(binding.contact, binding.next_hop, to, tuple(binding.routes))
