"""Where a volunteer may hand a caller over: the backline (its keys are a setting), every
destination of the plan in force that has `volunteer_keys`, and every queue that has them (a
colleague's queue, named `queue:<name>` in a hand-over request). Nothing else: neither keys nor
a handset's transfer (SIP REFER) can reach a number the plan does not name.

A REFER names a queue as `sip:queue-<name>@<service>` (or by its keys, `sip:%231@...`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from ivr.model import Destination, Dialplan, Queue, keys_overlap
from pbx.sip.address import parse_address
from pbx.sip.errors import SipParseError
from pbx.sip.uri import SipUri, parse_sip_uri

QUEUE_TARGET = "queue:"  # a hand-over request's target that is a colleague's queue
REFER_QUEUE_USER = "queue-"  # a REFER's Refer-To user part naming a queue


def queue_target(name: str) -> str:
    return QUEUE_TARGET + name


def queue_of(target: str) -> str | None:
    """The queue a hand-over target names, or None (a destination)."""
    return target.removeprefix(QUEUE_TARGET) if target.startswith(QUEUE_TARGET) else None


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

    def queues(self) -> dict[str, Queue]:
        """The queues volunteers may transfer a caller to (a colleague's), by name."""
        return {n: q for n, q in self.plan().queues.items() if q.volunteer_keys}

    def queue(self, target: str) -> Queue | None:
        """The allowed queue a hand-over target (`queue:<name>`) names, or None."""
        name = queue_of(target)
        return None if name is None else self.queues().get(name)

    def by_keys(self) -> dict[str, str]:
        """Keys -> destination name (or `queue:<name>`); the backline's keys are the
        setting's."""
        out = {d.volunteer_keys: n for n, d in self.allowed().items() if d.volunteer_keys}
        out = {k: n for k, n in out.items() if n != self.backline}
        out |= {q.volunteer_keys: queue_target(n) for n, q in self.queues().items()}
        if self.backline in self.allowed():
            out[self.backline_keys] = self.backline
        return out

    def for_refer(self, refer_to: str) -> str | None:
        """The destination a handset's REFER names (its Refer-To URI's user part is the
        destination's name, its keys, or the user part of its URI), `queue:<name>` for an
        allowed queue (`queue-<name>` or its keys), or None: not allowed."""
        try:
            uri = parse_address(refer_to).uri
        except SipParseError:
            return None
        if not isinstance(uri, SipUri):
            return None
        return self.by_user(uri) or self._queue_by_user(uri)

    def _queue_by_user(self, uri: SipUri) -> str | None:
        user = (uri.user or "").replace("%2A", "*").replace("%23", "#").lower()
        for name, queue in self.queues().items():
            if user in (REFER_QUEUE_USER + name.lower(), queue.volunteer_keys):
                return queue_target(name)
        return None

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
    """Destinations and queues whose `volunteer_keys` are keys the settings give another
    meaning (`in_call_keys`: keys -> setting name, e.g. the handover's complete and cancel
    keys), or overlap the backline's keys (pressed in the same calls)."""
    owners = [(f"destination {n!r}", d.volunteer_keys) for n, d in plan.destinations.items()]
    owners += [(f"queue {n!r}", q.volunteer_keys) for n, q in plan.queues.items()]
    backline = [k for k, setting in in_call_keys.items() if setting == "backline_keys"]
    out = []
    for owner, keys in owners:
        if not keys:
            continue
        if keys in in_call_keys:
            setting = in_call_keys[keys]
            out.append(f"`volunteer_keys` {keys!r} of {owner} are the setting {setting}'s keys; "
                       "choose others")  # fmt: skip
        elif any(keys_overlap(keys, b) for b in backline):
            out.append(f"`volunteer_keys` {keys!r} of {owner} overlap the setting backline_keys "
                       "(pressing one presses the other first); choose others")  # fmt: skip
    return out
