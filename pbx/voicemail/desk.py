"""The running service's voicemail: takes a caller's message from the IVR, keeps it encrypted,
counts it, runs the notification hook, and deletes messages after the retention period (at
start and periodically while running).

Encryption and writing run in a worker thread: a long message never stalls the event loop
that carries every other call's audio.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from pbx.voicemail.notify import Notifier
from pbx.voicemail.store import VoicemailStore

__all__ = ["VoicemailDesk", "sweep_interval"]

log = structlog.get_logger("pbx.voicemail")

DAY = 86400.0


def sweep_interval(retention: float) -> float:
    """How often the retention sweep runs: a tenth of the period, between 0.5 s and an hour
    (a message outlives its period by at most this much)."""
    return min(max(retention / 10, 0.5), 3600.0)


class VoicemailDesk:
    """What the IVR's voicemail step (`ivr.runtime.Mailboxes`) deposits messages into."""

    def __init__(
        self,
        store: VoicemailStore,
        retention: float,
        *,
        notifier: Notifier | None = None,
        on_received: Callable[[str], None] = lambda line: None,  # metrics
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.retention = timedelta(seconds=retention)
        self.notifier = notifier or Notifier(())
        self.on_received = on_received
        self.clock = clock

    @property
    def accepting(self) -> bool:
        return self.store.accepting

    @property
    def retention_days(self) -> int:
        """The retention period as callers are told it: whole days, at least one."""
        return max(1, math.ceil(self.retention.total_seconds() / DAY - 1e-9))

    async def deposit(self, line: str, pcm: bytes) -> str:
        """Keep a message (encrypted); returns its id. Raises when it could not be kept."""
        message = await asyncio.to_thread(self.store.save, line, pcm, self.clock())
        log.info(
            "voicemail_received", message=message.id, line=message.line,
            seconds=round(message.seconds, 1),
        )  # fmt: skip
        self.on_received(message.line)
        self.notifier.notify(message.id, message.line)
        return message.id

    def sweep(self) -> int:
        """Delete the messages older than the retention period now; how many."""
        try:
            removed = self.store.sweep(self.clock(), self.retention)
        except OSError as exc:
            log.error("voicemail_sweep_failed", error=str(exc)[:200])
            return 0
        for message_id in removed:
            log.info("voicemail_expired", message=message_id)
        return len(removed)

    async def keep_retention(self) -> None:
        """Sweep every `sweep_interval` for as long as the service runs (the service sweeps
        once itself at start, before it takes calls)."""
        interval = sweep_interval(self.retention.total_seconds())
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.sweep)
