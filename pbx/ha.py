"""Active/standby: the asyncio side of the leadership lease (`pbx.leadership`).

With `ha_lease` on, every node runs the whole service (SIP, registrar, media) but only the node
holding the lease distributes calls. A standby answers new INVITEs and OPTIONS with 503 and
Retry-After (so the proxy in front, Kamailio's dispatcher, probes it as down and sends calls to
the leader), says "standby" on /ready, accepts REGISTERs and writes them through to the shared
database, and re-reads the shared picture (registrations, shifts) every `refresh_interval`.

On acquiring the lease `take_over` (`pbx.takeover.Takeover`) re-reads that picture and only
then does the node serve. Losing it (connection closed, a check failed or unanswered) calls
`stand_down` at once, before the dedicated connection is dropped and tried again. A planned
stop retires the lease (`retire`): the standby takes new calls within a retry while this node
finishes its own, and sees that it does (`pbx.takeover`: its volunteers are busy elsewhere,
not lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable

import structlog

from pbx.db.lease import LeaseConnection
from pbx.leadership import (
    Action,
    CheckLease,
    DropConnection,
    Lead,
    Lease,
    Role,
    StandDown,
    TryLock,
    Unlock,
)
from pbx.metrics import Metrics

log = structlog.get_logger("pbx.ha")

STANDBY_RETRY_AFTER = 5  # seconds, in the 503 a standby answers: the leader is elsewhere now


def node_name(configured: str) -> str:
    return configured or socket.gethostname()


class HighAvailability:
    def __init__(
        self,
        url: str,
        node: str,
        lease: Lease,  # the sans-IO core; `pbx.takeover` reads it too
        refresh_interval: float,
        *,
        take_over: Callable[[], Awaitable[None]],  # re-read the shared state; then we serve
        stand_down: Callable[[str], None],  # stop what only the leader does, now
        refresh: Callable[[bool], Awaitable[None]],  # periodic re-read (arg: leading)
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.refresh_interval = refresh_interval
        self.clock = clock
        self.lease = lease
        self.connection = LeaseConnection(url, node, on_closed=self._connection_closed)
        self._take_over = take_over
        self._stand_down = stand_down
        self._refresh = refresh
        self.serving = False  # leading and taken over: calls are answered and offered here
        self.takeovers = 0
        self.losses = 0
        self._wake = asyncio.Event()
        self._queued: list[Action] = []  # decided outside the loop, done by it (in order)
        self._leader_seen: str | None = None  # the other node leading, as last logged
        metrics.live("helpline_ha_leader", "1 while this node holds the lease and distributes "
                     "calls, 0 on standby", lambda: 1.0 if self.serving else 0.0)  # fmt: skip
        metrics.live("helpline_ha_takeovers", "Times this node took the lease over",
                     lambda: self.takeovers, counter=True)  # fmt: skip
        metrics.live("helpline_ha_lease_losses", "Times this node lost the lease while leading",
                     lambda: self.losses, counter=True)  # fmt: skip

    def refusing(self) -> int | None:
        """Retry-After for a new INVITE or an OPTIONS probe while not serving; None: serve."""
        return None if self.serving else STANDBY_RETRY_AFTER

    @property
    def role(self) -> Role:
        return self.lease.role

    async def run(self) -> None:
        refresher = asyncio.create_task(self._refresh_periodically())
        try:
            while True:
                queued, self._queued = self._queued, []
                await self._apply(queued + self.lease.poll(self.clock()))
                wake = self.lease.next_wakeup()
                timeout = None if wake is None else max(0.0, wake - self.clock())
                with contextlib.suppress(TimeoutError):  # retired: only queued work is left
                    await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
        finally:
            refresher.cancel()
            self.connection.drop()

    def stop(self) -> None:
        """Give the lease up (a planned stop): the standby takes over within a retry."""
        self._apply_now(self.lease.stop())
        self._wake.set()

    def retire(self) -> None:
        """A planned stop: hand the lease over now, keep the session while calls finish."""
        actions = self.lease.retire()
        self._apply_now([a for a in actions if isinstance(a, StandDown)])
        self._queued += [a for a in actions if not isinstance(a, StandDown)]
        self._wake.set()

    async def _apply(self, actions: list[Action]) -> None:
        timeout = self.lease.timing.check_timeout
        for action in actions:
            if isinstance(action, TryLock):
                try:
                    acquired = await asyncio.wait_for(self.connection.try_lock(timeout), timeout)
                except Exception as exc:
                    more = self.lease.failed(action.attempt, type(exc).__name__, self.clock())
                else:
                    more = self.lease.lock_answered(action.attempt, acquired, self.clock())
                    if not acquired:
                        await self._standing_by()
                await self._apply(more)
            elif isinstance(action, CheckLease):
                try:
                    held = await asyncio.wait_for(self.connection.held(timeout), timeout)
                except Exception as exc:
                    more = self.lease.failed(action.attempt, type(exc).__name__, self.clock())
                else:
                    more = self.lease.check_answered(action.attempt, held, self.clock())
                await self._apply(more)
            elif isinstance(action, Lead):
                await self._lead()
            elif isinstance(action, Unlock):
                try:
                    await asyncio.wait_for(self.connection.retire(timeout), timeout)
                    log.info("lease_handed_over", node=self.node)
                except Exception as exc:  # then the session goes, and the lock with it
                    log.warning("lease_release_failed", error=type(exc).__name__)
                    self.connection.drop()
            else:
                self._apply_now([action])

    def _apply_now(self, actions: list[Action]) -> None:
        """What never waits: standing down (first) and dropping the connection."""
        for action in actions:
            if isinstance(action, StandDown):
                self.serving = False
                if action.reason in ("stopping", "draining"):
                    log.info("lease_released", node=self.node, reason=action.reason)
                else:
                    self.losses += 1
                    log.warning("lease_lost", node=self.node, reason=action.reason)
                self._stand_down(action.reason)
            elif isinstance(action, DropConnection):
                self.connection.drop()

    async def _lead(self) -> None:
        started = time.monotonic()
        log.info("lease_acquired", node=self.node)
        try:
            await self._take_over()
        except Exception:  # what could be read is in place; serving beats a dead line
            log.exception("takeover_incomplete", node=self.node)
        if self.lease.leading:  # not lost meanwhile
            self._leader_seen = self.node
            self.serving = True
            self.takeovers += 1
            log.info("leading", node=self.node, seconds=round(time.monotonic() - started, 3))

    async def _standing_by(self) -> None:
        """Log once which node leads while this one stands by (and again when that changes)."""
        try:
            leader = await self.connection.leader(self.lease.timing.check_timeout)
        except Exception:
            return
        if leader != self._leader_seen:
            self._leader_seen = leader
            log.info("standby", node=self.node, leader=leader)

    def _connection_closed(self) -> None:
        self._apply_now(self.lease.connection_closed(self.clock()))
        self._wake.set()

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self._refresh(self.serving)
            except Exception as exc:
                log.warning("shared_state_refresh_failed", error=type(exc).__name__)
