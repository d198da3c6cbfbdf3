"""A caller talking to a volunteer, ready to be handed over (tests of warm handover and
transfers): a PJSIP caller from the trunk address, a PJSIP volunteer on 127.0.0.2, and sipp as
the destination (113, the info line), talking a tone so who hears it when can be checked. The
service's hold music (`hold_music`, the one track for waiting callers and callers on hold) is a
tone too, so hearing it is checked by content."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.loader import DEFAULT_PLAN
from pbx.calls.inbound import HelplineCalls
from tests.helpers.audio import read_wav, write_tone_wav
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.service import MakeHelpline, Running
from tests.helpers.volunteers import on_shift
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.rtp_pcap import media_pcap
from tests.peers.sipp import SippProcess, start_sipp

CALLER_NUMBER = "0612345678"
PROFESSIONAL_HZ = 700  # what the destination says, as a tone
HOLD_HZ = 520  # the hold music an admin put in place, as a tone (the volunteer talks at 400)
BACKLINE_URI = '"sip:0800-0113@sip-trunk.example.nl"'
INFO_LINE_URI = '"sip:info-line@pbx.example.nl"'


@dataclass
class Call:
    helpline: Running
    logs: io.StringIO
    caller: AsyncPjsuaPhone
    volunteer: AsyncPjsuaPhone
    tmp: Path
    volunteer_call: int  # the volunteer's handle of the call with the caller

    def steps(self) -> list[tuple[str, str]]:
        """The handover's transitions: (event, new state)."""
        return [(e["by"], e["state"]) for e in log_events(self.logs, "handover_step")]

    async def until_step(self, state: str, timeout: float = 20.0) -> None:
        try:
            await until(lambda: any(s == state for _, s in self.steps()), timeout)
        except AssertionError:
            print(self.logs.getvalue()[-6000:])  # what the service did instead
            raise

    async def heard(self, phone: AsyncPjsuaPhone, name: str, seconds: float) -> Path:
        """Record what `phone` hears for `seconds` (read it once the call has ended: PJSIP
        completes the WAV file then)."""
        await phone.record(self.tmp / f"{name}.wav")
        await asyncio.sleep(seconds)
        path: Path = await phone.stop_record()
        return path

    def prompt_seconds(self, name: str) -> float:
        app = self.helpline.service.switchboard.app
        assert isinstance(app, HelplineCalls)
        return len(app.prompts.get("nl", name)) / 16000

    @property
    def service_uri(self) -> str:
        return f"{self.helpline.host}:{self.helpline.port}"


@asynccontextmanager
async def volunteer_talking(
    make_helpline: MakeHelpline, tmp_path: Path, port: int, *, at: str = BACKLINE_URI,
    **settings: Any,
) -> AsyncIterator[Call]:  # fmt: skip
    """A caller (from the trunk) talking to a volunteer; the destination whose URI in the
    default plan is `at` (113 by default) is at 127.0.0.1:`port`. The hold music is a HOLD_HZ
    tone unless `hold_music` is given."""
    if "hold_music" not in settings:  # 8 s, a whole number of periods: it loops seamlessly
        settings["hold_music"] = str(write_tone_wav(tmp_path / "hold_track.wav", HOLD_HZ, 8000))
    user = at.strip('"').split(":", 1)[1].split("@", 1)[0]
    plan = tmp_path / "dialplan.yaml"
    plan.write_text(DEFAULT_PLAN.read_text().replace(at, f'"sip:{user}@127.0.0.1:{port}"'))
    async with (
        captured_logs() as logs,
        ivr_helpline(make_helpline, plan, **settings) as helpline,
        AsyncPjsuaPhone("vera") as volunteer,
        AsyncPjsuaPhone("caller") as caller,
    ):
        await on_shift(helpline, volunteer, "vera")
        await caller.start(free_port())
        headers = {"P-Asserted-Identity": f"<sip:{CALLER_NUMBER}@127.0.0.1>"}
        uri = f"sip:0900-0767@{helpline.host}:{helpline.port}"
        assert await caller.make_call(uri, headers=headers) == 200
        await caller.send_dtmf("1")
        try:
            incoming = await volunteer.wait_incoming(timeout=15)
        except Exception:
            print(logs.getvalue()[-8000:])  # how far the caller got instead
            raise
        await volunteer.answer(200)
        await volunteer.play_tone(400)  # a talking volunteer: their media flows
        await asyncio.sleep(0.5)
        yield Call(helpline, logs, caller, volunteer, tmp_path, incoming.call)


def answering(
    port: int, tmp_path: Path, scenario: str = "uas_answer_play.xml", **kwargs: object
) -> SippProcess:
    """sipp as the destination: answers and talks (a tone, from a pcap) for 30 s."""
    pcap = media_pcap(tmp_path / "dest.pcap", tone_hz=PROFESSIONAL_HZ, tone_ms=30000)
    return start_sipp(
        scenario, local_ip="127.0.0.1", local_port=port, timeout_s=60,
        files={"media.pcap": pcap}, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def pcm(path: Path) -> bytes:
    return read_wav(path)[0]
