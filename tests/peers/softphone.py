"""What the Debian softphones used as volunteer handsets (baresip, linphone-cli) share.

Each runs headless (no sound card) as a child process in its own session and temporary
directory: it sends a steady tone, answers incoming calls by itself and records what it hears to
a WAV file. It listens, sends SIP and RTP, and puts in its SDP only the loopback address it is
given (``bind``): a volunteer's handset is never on the carrier trunk's address, which the
service refuses REGISTERs from (tests use ``HANDSET_HOST``). Every wait on it is bounded;
``close()`` (also on failure, via ``async with``) ends the whole process group and deletes the
directory unless ``HELPLINE_KEEP_PEER_LOGS=1``. The child also gets a maximum life of its own,
so a test process that dies leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from tests.peers.one_address import one_address_env

Transport = Literal["udp", "tcp", "tls"]


class SoftphoneError(RuntimeError):
    """The softphone did not do what was asked in time; carries the tail of its output."""


@dataclass(frozen=True)
class SipAccount:
    """A volunteer's handset settings, as typed into a phone's account screen."""

    user: str
    password: str
    host: str  # the service's address (registrar, proxy and domain)
    port: int  # the service's port for this transport (5060, or 5061 for TLS)
    transport: Transport = "udp"
    realm: str = "helpline"

    def uri(self, user: str | None = None) -> str:
        """sip:USER@host:port;transport=..., as the phone addresses the service."""
        params = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{user or self.user}@{self.host}:{self.port}{params}"


class Softphone(ABC):
    """A softphone process with its output as text, bounded waits on it, and cleanup."""

    kind = "softphone"

    def __init__(
        self, account: SipAccount, *, bind: str, tone_hz: int, max_life: float = 60.0
    ) -> None:
        if not ipaddress.ip_address(bind).is_loopback:
            raise ValueError(f"{bind} is not a loopback address: test peers stay on loopback")
        self.account = account
        self.bind = bind  # the phone's own address: SIP, RTP and SDP
        self.tone_hz = tone_hz
        self.max_life = max_life
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.kind}-{account.user}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    async def start(self) -> None:
        """Write the configuration and spawn the process (it registers by itself)."""

    def _spawn(self, argv: list[str], **kwargs: object) -> None:
        # `timeout` bounds the child's life even if this process is killed before close()
        cmd = ["timeout", "-k", "3", str(int(self.max_life)), *argv]
        # its sockets all on `bind`: both phones open some on the wildcard address (RTP,
        # SIP over TCP/TLS), which the kernel sends from 127.0.0.1, the trunk's address
        env = {**os.environ, "HOME": str(self.dir), **one_address_env(self.bind, self.dir)}
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv of a Debian tool
            cmd,
            cwd=self.dir,
            env=env,
            start_new_session=True,
            **kwargs,  # type: ignore[call-overload]
        )

    def close(self) -> None:
        """End the process group (politely, then by force) and remove the directory."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            self._quit()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2.0)
        if proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=2.0)
                    # the group may outlive its leader for a moment
                except subprocess.TimeoutExpired:
                    continue
        self._closed()
        if os.environ.get("HELPLINE_KEEP_PEER_LOGS") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    @abstractmethod
    def _quit(self) -> None:
        """Ask the phone to unregister and exit (best effort, no waiting)."""

    @abstractmethod
    def _closed(self) -> None:
        """Release what the subclass holds besides the process."""

    # -- output ------------------------------------------------------------------------------
    @abstractmethod
    def output(self) -> str:
        """Everything the phone printed or logged so far, its SIP trace included."""

    def trace(self) -> str:
        """All the phone received and printed: what a test checks for the caller's number."""
        return self.output()

    def mark(self) -> int:
        """A position in the output: waits with ``after=mark`` see only what comes later."""
        return len(self.output())

    async def wait_for(self, pattern: str, timeout: float, *, after: int = 0) -> re.Match[str]:
        regex = re.compile(pattern, re.MULTILINE)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = regex.search(self.output(), after)
            if found:
                return found
            if self.proc is None or self.proc.poll() is not None:
                raise SoftphoneError(f"{self.kind} exited waiting for {pattern!r}{self._tail()}")
            if loop.time() > deadline:
                raise SoftphoneError(f"{self.kind}: no {pattern!r} in {timeout}s{self._tail()}")
            await asyncio.sleep(0.05)

    def _tail(self, size: int = 6000) -> str:
        return "\n--- output tail ---\n" + self.output()[-size:]

    # -- what a test does with a handset -------------------------------------------------------
    @abstractmethod
    async def wait_registered(self, timeout: float = 10.0) -> None:
        """Until the service accepted the phone's REGISTER."""

    @abstractmethod
    async def dial(self, user: str) -> int:
        """Calls sip:USER@service (e.g. a feature code); returns a mark for the call's waits."""

    @abstractmethod
    async def wait_established(self, timeout: float = 15.0, *, after: int = 0) -> int:
        """Until a call (dialled, or incoming and answered by the phone) has media; returns a
        mark to pass to :meth:`wait_ended`."""

    @abstractmethod
    async def wait_ended(self, timeout: float = 15.0, *, after: int = 0) -> None:
        """Until the call established after ``after`` is over."""

    @abstractmethod
    async def hangup(self) -> None:
        """Ends the current call from the phone."""

    @abstractmethod
    def heard(self) -> Path:
        """WAV of what the phone heard in its last call (read it after the call ended)."""
