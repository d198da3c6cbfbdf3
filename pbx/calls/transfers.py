"""Where a volunteer may hand a caller over: the backline (its keys are a setting) and every
destination of the plan in force that has `volunteer_keys`. Nothing else: neither keys nor a
handset's transfer (SIP REFER) can reach a number the plan does not name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from ivr.model import Destination, Dialplan
from pbx.sip.address import parse_address
from pbx.sip.errors import SipParseError
from pbx.sip.uri import SipUri, parse_sip_uri


@dataclass(frozen=True)
class VolunteerTransfers:
    plan: Callable[[], Dialplan]  # the plan in force now
    backline: str = "backline_113"
    backline_keys: str = "*9"

    def allowed(self) -> dict[str, Destination]:
        """The destinations volunteers may transfer to, by name."""
        destinations = self.plan().destinations
        allowed = {n: d for n, d in destinations.items() if d.volunteer_keys}
        if self.backline in destinations:
            allowed[self.backline] = destinations[self.backline]
        return allowed

    def by_keys(self) -> dict[str, str]:
        """Keys -> destination name; the backline's keys are the setting's."""
        out = {d.volunteer_keys: n for n, d in self.allowed().items() if d.volunteer_keys}
        out = {k: n for k, n in out.items() if n != self.backline}
        if self.backline in self.allowed():
            out[self.backline_keys] = self.backline
        return out

    def for_refer(self, refer_to: str) -> str | None:
        """The destination a handset's REFER names (its Refer-To URI's user part is the
        destination's name, its keys, or the user part of its URI), or None: not allowed."""
        try:
            uri = parse_address(refer_to).uri
        except SipParseError:
            return None
        return self.by_user(uri) if isinstance(uri, SipUri) else None

    def by_user(self, uri: SipUri, *, keys: bool = True) -> str | None:
        """The allowed destination whose name, URI user part or (with `keys`) keys are
        `uri`'s user part."""
        user = (uri.user or "").replace("%2A", "*").lower()
        if not user:
            return None
        by_name = {n: k for k, n in self.by_keys().items()} if keys else {}
        for name, dest in self.allowed().items():
            names = {name.lower(), by_name.get(name, "")}
            with contextlib.suppress(SipParseError):
                names.add((parse_sip_uri(dest.uri).user or "").lower())
            if user in names - {""}:
                return name
        return None


def key_clashes(plan: Dialplan, in_call_keys: dict[str, str]) -> list[str]:
    """Destinations whose `volunteer_keys` are keys the settings give another meaning
    (`in_call_keys`: keys -> setting name, e.g. the handover's complete and cancel keys)."""
    return [
        f"`volunteer_keys` {d.volunteer_keys!r} of destination {n!r} are the setting "
        f"{in_call_keys[d.volunteer_keys]}'s keys; choose others"
        for n, d in plan.destinations.items()
        if d.volunteer_keys in in_call_keys
    ]
