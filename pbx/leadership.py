"""Which node distributes calls: a leadership lease, sans-IO.

Two (or more) `helpline serve` nodes share one PostgreSQL. Only the node holding a session
advisory lock on a dedicated connection (the lease) answers calls and offers them to
volunteers, so a volunteer is never offered two calls by two nodes. PostgreSQL ends the session
of a node that dies (its socket closes) and with it the lock, so a standby trying the lock every
`retry_interval` seconds takes over within about that long.

This module decides; `pbx.ha` does the I/O. Time is passed in, decisions come back as actions:

    STANDBY --TryLock--> lock_answered(acquired) --> LEADER (+ Lead: take over)
    LEADER  --CheckLease every check_interval--> check_answered(held)
    LEADER  --a check not held, failed, unanswered for check_timeout, or the connection
              closed--> STANDBY (+ StandDown first: stop offering calls at once,
              then DropConnection: the lock goes with the session)

A planned stop (drain) retires the lease: the leader stands down and gives the lock back at
once (Unlock) but keeps its session, so that the node taking over sees it still alive and
carrying calls; it tries no more.

Every try and check carries an attempt number; an answer to an attempt given up on (timed
out, or overtaken by a lost connection) counts for nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    STANDBY = "standby"
    LEADER = "leader"


@dataclass(frozen=True)
class LeaseTiming:
    retry_interval: float = 1.0  # a standby tries the lock this often
    check_interval: float = 1.0  # the leader confirms its connection (and lock) this often
    check_timeout: float = 1.0  # a try or a check unanswered this long counts as failed


@dataclass(frozen=True)
class TryLock:
    """Connect if not connected, then try the lock without waiting for it."""

    attempt: int


@dataclass(frozen=True)
class CheckLease:
    """A round trip on the dedicated connection: is the lock still ours?"""

    attempt: int


@dataclass(frozen=True)
class Lead:
    """The lease is ours: re-read the shared state, then answer and distribute calls."""


@dataclass(frozen=True)
class StandDown:
    """The lease is lost: offer no more calls, now, before anything else."""

    reason: str


@dataclass(frozen=True)
class DropConnection:
    """Close the dedicated connection (a lock it may still hold goes with the session)."""


@dataclass(frozen=True)
class Unlock:
    """Give the lock back, keep the session, say this node drains (it still carries calls)."""


Action = TryLock | CheckLease | Lead | StandDown | DropConnection | Unlock


class Lease:
    def __init__(self, timing: LeaseTiming, now: float) -> None:
        self.timing = timing
        self.role = Role.STANDBY
        self._due = now  # when the next try (standby) or check (leader) is due
        self._attempt = 0
        self._asked_at: float | None = None  # the outstanding try/check was sent then
        self._stopped = False

    @property
    def leading(self) -> bool:
        return self.role is Role.LEADER

    def next_wakeup(self) -> float | None:
        """When `poll` has something to do next (None: stopped)."""
        if self._stopped:
            return None
        if self._asked_at is not None:
            return self._asked_at + self.timing.check_timeout
        return self._due

    def poll(self, now: float) -> list[Action]:
        """What is due at `now`: a try, a check, or giving up on an unanswered one."""
        if self._stopped:
            return []
        if self._asked_at is not None:
            if now - self._asked_at >= self.timing.check_timeout:
                return self._lost(now, "check_timeout" if self.leading else "try_timeout")
            return []
        if now < self._due:
            return []
        self._attempt += 1
        self._asked_at = now
        if self.leading:
            return [CheckLease(self._attempt)]
        return [TryLock(self._attempt)]

    def lock_answered(self, attempt: int, acquired: bool, now: float) -> list[Action]:
        if not self._current(attempt) or self.leading:
            return []
        self._asked_at = None
        if not acquired:  # another node leads: try again later, on the same connection
            self._due = now + self.timing.retry_interval
            return []
        self.role = Role.LEADER
        self._due = now + self.timing.check_interval
        return [Lead()]

    def check_answered(self, attempt: int, held: bool, now: float) -> list[Action]:
        if not self._current(attempt) or not self.leading:
            return []
        if not held:
            return self._lost(now, "lock_gone")
        self._asked_at = None
        self._due = now + self.timing.check_interval
        return []

    def failed(self, attempt: int, reason: str, now: float) -> list[Action]:
        """The try or check raised (no connection, query error)."""
        if not self._current(attempt):
            return []
        return self._lost(now, reason)

    def connection_closed(self, now: float) -> list[Action]:
        """The dedicated connection ended (the server closed it, the network broke)."""
        if self._stopped:
            return []
        return self._lost(now, "connection_closed")

    def stop(self) -> list[Action]:
        """The node stops: give the lease up (the standby takes over) and try no more."""
        actions = self._lost(0.0, "stopping")
        self._stopped = True
        return actions

    def retire(self) -> list[Action]:
        """A planned stop with calls to finish: stand down and hand the lock over now, keep
        the connection, try no more."""
        if self._stopped:
            return []
        actions: list[Action] = []
        if self.leading:
            self.role = Role.STANDBY
            actions.append(StandDown("draining"))
        actions.append(Unlock())
        self._attempt += 1
        self._asked_at = None
        self._stopped = True
        return actions

    def _current(self, attempt: int) -> bool:
        return not self._stopped and self._asked_at is not None and attempt == self._attempt

    def _lost(self, now: float, reason: str) -> list[Action]:
        self._attempt += 1  # any answer still on its way is stale now
        self._asked_at = None
        self._due = now + self.timing.retry_interval
        actions: list[Action] = []
        if self.leading:
            self.role = Role.STANDBY
            actions.append(StandDown(reason))
        actions.append(DropConnection())
        return actions
