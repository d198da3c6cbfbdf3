"""linphone-cli (Debian's linphonec 5.1) as a volunteer's handset, headless.

The rc file is the one ../shared/PEERS.md found to work (a `[storage]` database, or it does not
listen; files instead of a sound card: it plays a tone WAV and records what it hears). With a
self-signed service certificate, TLS verification is off (`verify_server_certs=0`).

linphonec handles events only in its own loop. Instead of `linphonecsh`, whose daemon socket is
one fixed path per user (/tmp/linphonec-UID: two phones, or two test runs on one machine, would
talk to each other's daemon), each phone gets its own pseudo-terminal: linphonec's readline loop
reads the commands and keeps processing events, and prints them ("Call 1 with ... connected.").
Its debug log (`-l`, SIP messages included) is in the phone's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import threading
from pathlib import Path

from tests.helpers.audio import write_tone_wav
from tests.helpers.ports import free_port
from tests.peers.softphone import SipAccount, Softphone, SoftphoneError

TONE_SECONDS = 60  # longer than any test call: what the phone sends


class Linphone(Softphone):
    kind = "linphone"

    def __init__(
        self, account: SipAccount, *, bind: str, tone_hz: int, max_life: float = 60.0
    ) -> None:
        super().__init__(account, bind=bind, tone_hz=tone_hz, max_life=max_life)
        self.log = self.dir / "linphone.log"
        self._console = bytearray()
        self._lock = threading.Lock()
        self._master: int | None = None
        self._reader: threading.Thread | None = None
        self._calls = 0  # recordings: heard-1.wav is the first call's
        self._last_heard: Path | None = None

    def _rc(self) -> str:
        a = self.account
        sip_port = free_port(self.bind)
        ports = {"udp": 0, "tcp": 0, "tls": 0} | {a.transport: sip_port}
        return f"""[sip]
sip_port={ports["udp"]}
sip_tcp_port={ports["tcp"]}
sip_tls_port={ports["tls"]}
default_proxy=0
guess_hostname=0
verify_server_certs=0
verify_server_cn=0
register_only_when_network_is_up=0
bind_address={self.bind}

[rtp]
audio_rtp_port={free_port(self.bind)}
bind_address={self.bind}

[video]
enabled=0
capture=0
display=0

[storage]
uri={self.dir / "storage.db"}

[audio_codec_0]
mime=PCMU
rate=8000
channels=1
enabled=1

[audio_codec_1]
mime=PCMA
rate=8000
channels=1
enabled=1

[proxy_0]
reg_proxy=<sip:{a.host}:{a.port};transport={a.transport}>
reg_identity=<sip:{a.user}@{a.host}>
reg_expires=60
reg_sendregister=1

[auth_info_0]
username={a.user}
passwd={a.password}
realm={a.realm}
domain={a.host}
"""

    async def start(self) -> None:
        (self.dir / "linphonerc").write_text(self._rc())
        write_tone_wav(self.dir / "tone.wav", self.tone_hz, TONE_SECONDS * 1000)
        master, slave = pty.openpty()
        self._master = master
        try:
            argv = ["linphonec", "-c", str(self.dir / "linphonerc"), "-a"]
            self._spawn(
                [*argv, "-d", "6", "-l", str(self.log)], stdin=slave, stdout=slave, stderr=slave
            )
        finally:
            os.close(slave)
        self._reader = threading.Thread(target=self._read, name="linphone-pty", daemon=True)
        self._reader.start()
        await self.wait_for(r"linphonec> ", 10.0)
        self.command("soundcard use files")
        self.command(f"play {self.dir / 'tone.wav'}")
        self._record_next()

    def _read(self) -> None:
        assert self._master is not None
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            with self._lock:
                self._console += data

    def command(self, line: str) -> None:
        if self._master is None:
            raise SoftphoneError("linphone is not running")
        os.write(self._master, line.encode() + b"\n")

    def _record_next(self) -> None:
        self._calls += 1
        self.command(f"record {self.dir / f'heard-{self._calls}.wav'}")

    def output(self) -> str:
        with self._lock:
            return self._console.decode("utf-8", "replace")

    def sip_log(self) -> str:
        """linphone's debug log: every SIP message it sent and received."""
        try:
            return self.log.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def trace(self) -> str:
        return self.output() + self.sip_log()

    def _quit(self) -> None:
        if self._master is not None:
            with contextlib.suppress(OSError):
                self.command("quit")

    def _closed(self) -> None:
        if self._master is not None:
            os.close(self._master)  # the reader thread sees EIO and ends
            self._master = None
        if self._reader is not None:
            self._reader.join(timeout=2.0)

    async def wait_registered(self, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            mark = self.mark()
            self.command("status register")
            await asyncio.sleep(0.3)
            if "registered, identity=" in self.output()[mark:]:
                return
        raise SoftphoneError(f"linphone: not registered in {timeout}s{self._tail()}")

    async def dial(self, user: str) -> int:
        mark = self.mark()
        self.command(f"call {self.account.uri(user)}")
        return mark

    async def wait_established(self, timeout: float = 15.0, *, after: int = 0) -> int:
        found = await self.wait_for(r"Call \d+ with .* connected\.", timeout, after=after)
        return found.start()

    async def wait_ended(self, timeout: float = 15.0, *, after: int = 0) -> None:
        await self.wait_for(r"Call \d+ with .* ended", timeout, after=after)
        self._last_heard = self.dir / f"heard-{self._calls}.wav"
        self._record_next()

    async def hangup(self) -> None:
        self.command("terminate")

    def heard(self) -> Path:
        if self._last_heard is None or not self._last_heard.exists():
            raise SoftphoneError(f"linphone recorded nothing{self._tail()}")
        return self._last_heard
