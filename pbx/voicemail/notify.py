"""The optional hook run when a voicemail message arrives (an e-mail or webhook script).

The configured command gets two arguments, the message id and the line (the mailbox), and
nothing else about the call: no number, no audio. It runs beside the call and never delays it;
at most MAX_RUNNING hooks run at once (a burst of messages must not fork without bound), each
for at most `timeout` seconds, without the service's HELPLINE_* settings in its environment. A
hook that fails, times out or cannot start is logged.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Sequence

import structlog

__all__ = ["Notifier"]

log = structlog.get_logger("pbx.voicemail.notify")

MAX_RUNNING = 8
_STDERR_KEPT = 300  # characters of a failing hook's stderr put in the log


class Notifier:
    def __init__(self, command: Sequence[str] | str, *, timeout: float = 30.0) -> None:
        self.command = shlex.split(command) if isinstance(command, str) else list(command)
        self.timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        return len(self._tasks)

    def notify(self, message_id: str, line: str) -> None:
        """Start the hook for a new message and return at once."""
        if not self.command:
            return
        if len(self._tasks) >= MAX_RUNNING:
            log.warning("voicemail_notify_skipped", message=message_id, running=len(self._tasks))
            return
        task = asyncio.get_running_loop().create_task(self._run(message_id, line))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Until every hook started so far has finished (a stopping service, tests)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _run(self, message_id: str, line: str) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command, message_id, line,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=_hook_environment(),
            )  # fmt: skip
        except OSError as exc:
            log.error("voicemail_notify_failed", message=message_id, error=str(exc)[:200])
            return
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.error("voicemail_notify_failed", message=message_id, error="timed out")
            return
        except asyncio.CancelledError:
            proc.kill()
            raise
        if proc.returncode != 0:
            log.error(
                "voicemail_notify_failed", message=message_id, status=proc.returncode,
                stderr=stderr.decode("utf-8", "replace")[-_STDERR_KEPT:].strip(),
            )  # fmt: skip
        else:
            log.info("voicemail_notified", message=message_id)


def _hook_environment() -> dict[str, str]:
    """The service's environment without its own settings (HELPLINE_*: database URL, trunk
    credentials): a mail script needs PATH and HOME, not the service's secrets."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
