"""baresip (Debian's 1.0.0) as a volunteer's handset, headless.

Configuration as ../shared/PEERS.md found to work: no sound card (`alsa,null` player), a steady
sine from the `ausine` module as the microphone, `sndfile` writing what the phone hears and
sends to WAV files, `answermode=auto` on the account, commands over UDP to the `cons` module,
and the SIP trace (`-s`) on standard output, which goes to a file. TLS: the service's
certificate is self-signed, so server verification is off (`sip_verify_server no`).

    account = SipAccount("vera", PASSWORD, "127.0.0.1", 5060, "tcp")
    async with Baresip(account, bind=HANDSET_HOST, tone_hz=400) as phone:
        await phone.wait_registered()
        mark = await phone.dial("*1")
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.helpers.ports import free_port
from tests.peers.softphone import SipAccount, Softphone, SoftphoneError

MODULES = Path("/usr/lib/baresip/modules")


class Baresip(Softphone):
    kind = "baresip"

    def __init__(
        self,
        account: SipAccount,
        *,
        bind: str,
        tone_hz: int,
        max_life: float = 60.0,
        mediaenc: str | None = None,
    ) -> None:
        super().__init__(account, bind=bind, tone_hz=tone_hz, max_life=max_life)
        self.mediaenc = mediaenc  # e.g. "srtp-mand": SRTP (SDES) or no call, module srtp
        self.cons_port = free_port()
        self.stdout = self.dir / "stdout.log"
        self.snd = self.dir / "snd"
        self.rtp_ports = range(0)

    async def start(self) -> None:
        self.snd.mkdir()
        rtp = free_port(self.bind)
        # Where its RTP comes from (a capture filters on it). Its RTP port is even, RTCP the odd
        # one above: with an odd start it took the port below it (seen: RTP 42878 and RTCP
        # 42879 for rtp_ports 42879-42899).
        self.rtp_ports = range(rtp & ~1, rtp + 21)
        lines = {
            "sip_listen": f"{self.bind}:0",  # every transport on a port of its own choosing
            "net_interface": self.bind,  # SIP Via/Contact, SDP and RTP on this address alone
            "sip_verify_server": "no",
            "rtp_ports": f"{rtp}-{rtp + 20}",
            "audio_player": "alsa,null",
            "audio_alert": "alsa,null",
            "audio_source": f"ausine,{self.tone_hz}",
            "ausrc_srate": "48000",
            "ausrc_channels": "2",
            "module_path": str(MODULES),
            "cons_listen": f"127.0.0.1:{self.cons_port}",
            "snd_path": str(self.snd),
        }
        config = [f"{key} {value}" for key, value in lines.items()]
        modules = ["cons", "g711", "alsa", "ausine", "sndfile"]
        modules += ["srtp"] if self.mediaenc else []
        config += [f"module {m}.so" for m in modules]
        config += ["module_tmp uuid.so", "module_tmp account.so", "module_app menu.so"]
        (self.dir / "config").write_text("\n".join(config) + "\n")
        a = self.account
        enc = f";mediaenc={self.mediaenc}" if self.mediaenc else ""
        (self.dir / "accounts").write_text(
            f"<{a.uri()}>;auth_user={a.user};auth_pass={a.password};answermode=auto;regint=60"
            f"{enc}\n"
        )
        out = self.stdout.open("wb")
        try:
            self._spawn(
                ["baresip", "-f", str(self.dir), "-s", "-t", str(int(self.max_life))],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        finally:
            out.close()

    def output(self) -> str:
        try:
            return self.stdout.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def command(self, line: str) -> None:
        """One command for the `cons` module, e.g. ``/dial sip:...`` or ``/hangup``."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(line.encode() + b"\n", ("127.0.0.1", self.cons_port))

    def _quit(self) -> None:
        self.command("/quit")  # unregisters, then exits

    def _closed(self) -> None:
        """Nothing but the process to release."""

    async def wait_registered(self, timeout: float = 10.0) -> None:
        await self.wait_for(r"\{0/(UDP|TCP|TLS)/v4\} 200 OK", timeout)

    async def dial(self, user: str) -> int:
        mark = self.mark()
        self.command(f"/dial {self.account.uri(user)}")
        return mark

    async def wait_established(self, timeout: float = 15.0, *, after: int = 0) -> int:
        found = await self.wait_for(r"Call established:", timeout, after=after)
        return found.start()

    async def wait_ended(self, timeout: float = 15.0, *, after: int = 0) -> None:
        await self.wait_for(r"terminated \(duration", timeout, after=after)

    async def hangup(self) -> None:
        self.command("/hangup")

    def heard(self) -> Path:
        """The newest `-dec` dump: sndfile names them by the call's start, to the second."""
        dumps = sorted(self.snd.glob("dump-*-dec.wav"))
        if not dumps:
            raise SoftphoneError(f"baresip recorded nothing{self._tail()}")
        return dumps[-1]
