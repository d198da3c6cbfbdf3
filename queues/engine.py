"""Matching waiting callers to volunteers: a sans-IO queue engine over a `Roster`.

Callers are known only by an opaque `call_ref` chosen by the call handler (never a number)
and the region of the local number they dialled (None for national/partner numbers).
Time is passed in; nothing here does I/O or knows the dialplan (settings arrive as
`QueueConfig`). Its one driver is `queues.dispatcher`, on behalf of each waiting caller:

    enqueue -> dispatch (-> Offer: ring that volunteer) -> connected | ring_no_answer
    connected -> call_ended | handset_lost (caller back at the front of the queue)
    abandon / remove / overflowed take a caller out of the queue.

Dispatch rules
--------------
* Only AVAILABLE volunteers with a registered handset are offered a call, one at a time; an
  offer marks them RINGING, so nobody gets a second call while ringing, talking, in wrap-up
  or paused.
* A volunteer serves a queue when they speak its language and have its skill (if any).
* Free volunteers are taken longest-idle first. Each is offered the most urgent caller among
  the queues they serve. Within a queue callers keep their order (FIFO; a caller whose offer
  rang out keeps their place). Across queues, urgency is the head caller's
  ``effective wait = waited * weight(priority)`` with ``weight = max(0.1, 1 + priority/10)``,
  ties to the higher priority then the earlier caller. A low-priority queue thus never
  starves: its head's effective wait keeps growing until it outranks fresher callers of the
  busier queue (a priority-10 queue counts waiting time double, not infinitely).
* Regional preference: while a caller from a local number has waited less than the queue's
  `local_wait` (and `prefer_local` is set), only volunteers of that region may take the call,
  provided at least one volunteer of that region who serves the queue is on shift (logged in,
  registered, not paused). Otherwise, and afterwards, the whole country. Regions compare
  case-insensitively ("utrecht" on a volunteer is the plan's "Utrecht").

Known simplification: the matching is greedy (a volunteer who speaks a rare language may be
given a Dutch caller while a Dutch-only colleague is also free); integration may refine this.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from queues.roster import Roster, Volunteer, VolunteerState

__all__ = [
    "DEFAULT_HANDLE_TIME",
    "HISTORY",
    "Offer",
    "QueueConfig",
    "QueueEngine",
    "QueueError",
    "priority_weight",
]

DEFAULT_HANDLE_TIME = 900.0  # seconds of talk + wrap-up assumed before any call is measured
HISTORY = 50  # recent calls per queue that estimates are based on


class QueueError(Exception):
    """Unknown queue or call_ref, or an event that does not fit the call's state."""


@dataclass(frozen=True, kw_only=True)
class QueueConfig:
    name: str
    language: str
    skill: str | None = None
    priority: int = 0
    max_wait: float | None = None  # seconds; None = wait on
    # seconds a caller waits while nobody who serves the queue is on shift (None: max_wait)
    unstaffed_wait: float | None = None
    ring_timeout: float = 20.0  # seconds an offer rings before it counts as missed
    wrap_up: float = 30.0  # seconds after a call before the volunteer is offered another
    prefer_local: bool = True
    local_wait: float = 30.0


@dataclass(frozen=True)
class Offer:
    call_ref: str
    username: str
    queue: str
    ring_until: float  # the handler reports ring_no_answer if not answered by then


def priority_weight(priority: int) -> float:
    return max(0.1, 1.0 + priority / 10.0)


@dataclass
class _Waiting:
    call_ref: str
    queue: str
    region: str | None
    joined_at: float  # when this stay in the queue began (abandon, overflow, answered waits)
    rank_since: float  # waiting time that orders callers (a front requeue ranks as the head)
    seq: int  # tie-breaker; negative for front requeues so they sort first
    ringing: str | None = None  # username currently being offered this caller

    def order(self) -> tuple[float, int]:
        return (self.rank_since, self.seq)


@dataclass
class _Active:
    queue: str
    username: str
    region: str | None
    connected_at: float


@dataclass
class _Stats:
    handle_times: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))


class QueueEngine:
    def __init__(self, queues: Mapping[str, QueueConfig], roster: Roster) -> None:
        self.queues = dict(queues)
        self.roster = roster
        self._waiting: dict[str, _Waiting] = {}
        self._active: dict[str, _Active] = {}
        self._stats = {name: _Stats() for name in self.queues}
        self._seq = itertools.count(1)
        self._front_seq = itertools.count(-1, -1)

    def configure(self, queues: Mapping[str, QueueConfig]) -> None:
        """Take a reloaded dialplan's queues. Statistics carry over by name; a queue that is
        gone keeps its old settings for the callers still waiting in it."""
        self.queues.update(queues)
        for name in queues:
            self._stats.setdefault(name, _Stats())

    def waiting_calls(self) -> list[str]:
        """Every caller in line (ringing or not), longest waiting first."""
        return [w.call_ref for w in sorted(self._waiting.values(), key=_Waiting.order)]

    def is_waiting(self, call_ref: str) -> bool:
        return call_ref in self._waiting

    def joined_at(self, call_ref: str) -> float:
        """When the caller's current stay in the queue began."""
        return self._get(call_ref).joined_at

    # --- callers ---------------------------------------------------------------------

    def enqueue(
        self, call_ref: str, queue: str, region: str | None, now: float, front: bool = False
    ) -> None:
        """Add a caller; `front` puts them ahead of everyone (their volunteer vanished)."""
        if queue not in self.queues:
            raise QueueError(f"unknown queue {queue!r}")
        if call_ref in self._waiting or call_ref in self._active:
            raise QueueError(f"call {call_ref!r} is already queued or connected")
        rank_since = now
        seq = next(self._seq)
        if front:
            rank_since = min([now, *(w.rank_since for w in self._in_queue(queue))])
            seq = next(self._front_seq)
        region = _region_key(region)
        self._waiting[call_ref] = _Waiting(call_ref, queue, region, now, rank_since, seq)

    def abandon(self, call_ref: str, now: float) -> float:
        """The caller hung up while waiting; returns how long they waited (this stay)."""
        w = self._take(call_ref, now)
        return now - w.joined_at

    def remove(self, call_ref: str, now: float) -> None:
        """Take a caller out without counting anything (e.g. they pressed a key to leave)."""
        self._take(call_ref, now)

    def overflowed(self, now: float, everyone: bool = False) -> list[tuple[str, str]]:
        """Callers past their queue's max_wait, or its unstaffed_wait while nobody who serves
        it is on shift (or all, when `everyone`: the service is
        draining), removed from the queue, as (call_ref, queue). A caller whose offer is
        ringing is left to ring; they overflow after a miss."""
        out: list[tuple[str, str]] = []
        staffed = {name for name, regions in self._regions_on_shift().items() if regions}
        for w in sorted(self._waiting.values(), key=_Waiting.order):
            limit = 0.0 if everyone else self._limit(self.queues[w.queue], staffed)
            if limit is not None and w.ringing is None and now - w.joined_at >= limit:
                del self._waiting[w.call_ref]
                out.append((w.call_ref, w.queue))
        return out

    @staticmethod
    def _limit(q: QueueConfig, staffed: set[str]) -> float | None:
        """How long a caller may wait now: max_wait, or less while nobody serves the queue."""
        if q.unstaffed_wait is None or q.name in staffed:
            return q.max_wait
        return q.unstaffed_wait if q.max_wait is None else min(q.max_wait, q.unstaffed_wait)

    # --- offers ----------------------------------------------------------------------

    def dispatch(self, now: float) -> list[Offer]:
        """Apply the roster's timers, then offer waiting callers to free volunteers."""
        self.roster.tick(now)
        offers: list[Offer] = []
        # Computed once per step (not per volunteer): the steps run on the event loop that
        # also paces media, so they must stay in the low milliseconds at helpline scale.
        lines = {name: self._line(name) for name in self.queues}
        if not any(lines.values()):
            return offers
        regions = self._regions_on_shift()
        free = sorted(
            (v for v in self.roster.volunteers() if v.offerable),
            key=lambda v: (v.idle_since, v.username),
        )
        for v in free:
            chosen = self._best_for(v, now, lines, regions)
            if chosen is None:
                continue
            self.roster.offer(v.username, now)
            chosen.ringing = v.username
            lines[chosen.queue].remove(chosen)
            ring_until = now + self.queues[chosen.queue].ring_timeout
            offers.append(Offer(chosen.call_ref, v.username, chosen.queue, ring_until))
        return offers

    def ring_no_answer(self, call_ref: str, username: str, now: float) -> None:
        """The offer rang out: the caller keeps their place, the volunteer has missed."""
        w = self._ringing(call_ref, username)
        self.roster.missed(username, now)
        w.ringing = None

    def connected(self, call_ref: str, username: str, now: float) -> None:
        w = self._ringing(call_ref, username)
        self.roster.answered(username, now)
        del self._waiting[call_ref]
        self._active[call_ref] = _Active(w.queue, username, w.region, now)

    def call_ended(self, call_ref: str, now: float) -> None:
        """A connected call ended normally; the volunteer goes into the queue's wrap-up."""
        a = self._active.pop(call_ref, None)
        if a is None:
            raise QueueError(f"call {call_ref!r} is not connected")
        wrap_up = self.queues[a.queue].wrap_up
        self._stats[a.queue].handle_times.append(now - a.connected_at + max(0.0, wrap_up))
        self.roster.call_ended(a.username, now, wrap_up)

    def handset_lost(self, call_ref: str, now: float) -> None:
        """The volunteer's handset vanished mid-call: the caller goes back to the front of
        their queue, the volunteer is freed at once but not offered calls (lapsed
        registration) until the handset registers again or the grace period logs them out."""
        a = self._active.pop(call_ref, None)
        if a is None:
            raise QueueError(f"call {call_ref!r} is not connected")
        self.roster.call_ended(a.username, now, 0.0)
        if self.roster.get(a.username).registered:
            self.roster.registration_lapsed(a.username, now)
        self.enqueue(call_ref, a.queue, a.region, now, front=True)

    # --- what a caller is told -------------------------------------------------------

    def position(self, call_ref: str) -> int:
        """1-based place in line among the callers of the same queue."""
        w = self._get(call_ref)
        return 1 + sum(1 for o in self._in_queue(w.queue) if o.order() < w.order())

    def estimated_wait(self, call_ref: str, now: float) -> float | None:
        """Seconds until this caller is likely offered to a volunteer; None if nobody on
        shift serves the queue.

        Method: `servers` = volunteers on shift who serve the queue; `free` = those of them
        available now; `H` = mean handle time (talk + wrap-up) of the queue's last `HISTORY`
        calls (DEFAULT_HANDLE_TIME before any). The first `free` callers are offered at once;
        past them, one of the `servers` frees up every H / servers seconds on average, so the
        caller with n callers ahead waits about (n - free + 1) * H / servers. Deliberately
        simple: volunteers shared with other queues make it optimistic under mixed load.
        `now` is accepted for future refinement (e.g. subtracting elapsed call time)."""
        w = self._get(call_ref)
        if w.ringing is not None:
            return 0.0
        q = self.queues[w.queue]
        serving = [v for v in self.roster.volunteers() if v.on_shift and self._serves(v, q)]
        if not serving:
            return None
        free = sum(1 for v in serving if v.offerable)
        ahead = sum(
            1 for o in self._in_queue(w.queue) if o.order() < w.order() and o.ringing is None
        )
        if ahead < free:
            return 0.0
        handle = self._stats[w.queue].handle_times
        mean = sum(handle) / len(handle) if handle else DEFAULT_HANDLE_TIME
        return (ahead - free + 1) * mean / len(serving)

    def waiting(self, queue: str) -> int:
        return sum(1 for _ in self._in_queue(queue))

    def longest_wait(self, queue: str, now: float) -> float:
        """Seconds the queue's longest-waiting caller has waited (this stay); 0 if none."""
        return max((now - w.joined_at for w in self._in_queue(queue)), default=0.0)

    # --- internals -------------------------------------------------------------------

    @staticmethod
    def _serves(v: Volunteer, q: QueueConfig) -> bool:
        return v.serves(q.language, q.skill)

    def _in_queue(self, queue: str) -> list[_Waiting]:
        return [w for w in self._waiting.values() if w.queue == queue]

    def _get(self, call_ref: str) -> _Waiting:
        w = self._waiting.get(call_ref)
        if w is None:
            raise QueueError(f"call {call_ref!r} is not waiting")
        return w

    def _ringing(self, call_ref: str, username: str) -> _Waiting:
        w = self._get(call_ref)
        if w.ringing != username:
            raise QueueError(f"call {call_ref!r} is not being offered to {username!r}")
        return w

    def _take(self, call_ref: str, now: float) -> _Waiting:
        w = self._get(call_ref)
        del self._waiting[call_ref]
        # the volunteer may already have left RINGING through the roster directly
        if w.ringing is not None and self.roster.get(w.ringing).state is VolunteerState.RINGING:
            self.roster.withdraw(w.ringing, now)
        return w

    def _line(self, queue: str) -> list[_Waiting]:
        """The queue's callers not being offered right now, in their order."""
        return sorted((w for w in self._in_queue(queue) if w.ringing is None), key=_Waiting.order)

    def _regions_on_shift(self) -> dict[str, set[str | None]]:
        """Per queue: the regions with a volunteer on shift (logged in, reachable, not
        paused) who serves it."""
        on_shift = [v for v in self.roster.volunteers() if v.on_shift]
        return {
            name: {_region_key(v.region) for v in on_shift if self._serves(v, q)}
            for name, q in self.queues.items()
        }

    def _local_only(
        self, w: _Waiting, q: QueueConfig, now: float, regions: set[str | None]
    ) -> bool:
        if w.region is None or not q.prefer_local or now - w.joined_at >= q.local_wait:
            return False
        return w.region in regions

    def _best_for(
        self,
        v: Volunteer,
        now: float,
        lines: Mapping[str, list[_Waiting]],
        regions: Mapping[str, set[str | None]],
    ) -> _Waiting | None:
        best: _Waiting | None = None
        best_key: tuple[float, int, float, int] | None = None
        for name, q in self.queues.items():
            if not self._serves(v, q):
                continue
            for w in lines[name]:
                local_only = self._local_only(w, q, now, regions[name])
                if local_only and _region_key(v.region) != w.region:
                    continue
                waited = now - w.rank_since
                key = (-waited * priority_weight(q.priority), -q.priority, *w.order())
                if best_key is None or key < best_key:
                    best, best_key = w, key
                break  # only the first caller this volunteer may take counts per queue
        return best


def _region_key(region: str | None) -> str | None:
    """Regions compare case-insensitively: a volunteer's "utrecht" is the plan's "Utrecht"."""
    if region is None:
        return None
    return " ".join(region.split()).casefold() or None
