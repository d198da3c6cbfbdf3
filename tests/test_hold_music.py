"""Music on hold: the shipped track is the generator's output, and a waiting caller (a PJSIP
phone) hears the music in the gaps between waiting messages, with a track an admin put in
place with `helpline prompts convert`."""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from ivr.loader import DEFAULT_PLAN
from pbx.app import hold_music
from pbx.calls.inbound import HelplineCalls
from pbx.config import Settings
from pbx.media.prompts import BYTES_PER_SECOND, read_telephony_wav
from tests.helpers.audio import read_wav, rms, sine, tone_share
from tests.helpers.callers import call_queue
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.polling import until
from tests.helpers.service import MakeHelpline
from tests.peers.pjsua_phone import AsyncPjsuaPhone

ROOT = Path(__file__).parents[1]
MUSIC_HZ = 520  # the admin's "music" in the call test: a tone, to tell it from speech
FRAME_MS = 20


def test_the_shipped_track_is_generated_reproducibly(tmp_path: Path) -> None:
    shipped = Settings().recordings / Settings().hold_music
    out = tmp_path / "hold_music.wav"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_hold_music.py"), str(out)], check=True
    )
    assert out.read_bytes() == shipped.read_bytes()
    pcm = read_telephony_wav(shipped)  # telephony format, or it raises
    assert len(pcm) / BYTES_PER_SECOND >= 30
    assert 0.6 < max(abs(int.from_bytes(pcm[i : i + 2], "little", signed=True))
                     for i in range(0, len(pcm), 2)) / 32768 < 0.75  # fmt: skip
    seconds = [pcm[i : i + BYTES_PER_SECOND] for i in range(0, len(pcm), BYTES_PER_SECOND)]
    assert min(rms(s) for s in seconds) > 500  # music all the way through, no silent stretch


def _admin_converts_a_track(tmp_path: Path) -> Path:
    """A 16 kHz stereo recording, converted into place as the README says."""
    src = tmp_path / "my-music.wav"
    with wave.open(str(src), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        mono = sine(MUSIC_HZ, 8000, 0.3, rate=16000)
        w.writeframes(b"".join(mono[i : i + 2] * 2 for i in range(0, len(mono), 2)))
    dst = tmp_path / "recordings" / "hold_music.wav"
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "helpline"), "prompts", "convert", str(src), str(dst),
         "--keep-silence"],
        check=True, capture_output=True,
    )  # fmt: skip
    return dst


def _labels(pcm: bytes, rate: int) -> str:
    """One letter per 20 ms: m(usic), s(peech: loud, not the tone) or q(uiet)."""
    step = 2 * rate * FRAME_MS // 1000
    out = []
    for i in range(0, len(pcm) - step + 1, step):
        frame = pcm[i : i + step]
        if rms(frame) < 300:
            out.append("q")
        else:
            out.append("m" if tone_share(frame, MUSIC_HZ, rate) > 0.9 else "s")
    return "".join(out)


def _gaps_between_messages(labels: str, min_frames: int) -> list[str]:
    """The stretches between two messages at least `min_frames` long. A message is a run of
    speech frames of 100 ms or more: a lone frame the network or a jitter buffer bent (a tone
    frame then no longer reads as the tone) is no message."""
    runs = [m.span() for m in re.finditer(r"s{5,}", labels)]
    return [
        labels[end:start]
        for (_, end), (start, _) in zip(runs, runs[1:], strict=False)
        if start - end >= min_frames
    ]


async def test_a_waiting_caller_hears_music_between_messages(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    music = _admin_converts_a_track(tmp_path)
    async with ivr_helpline(make_helpline, DEFAULT_PLAN, hold_music=str(music)) as helpline:
        app = helpline.service.switchboard.app
        assert isinstance(app, HelplineCalls)
        app.waiting.comfort_interval = 2.5  # seconds between messages (the helper's 0.5 is short)
        async with AsyncPjsuaPhone("caller") as caller:
            await call_queue(helpline, caller)  # nobody on shift: the caller waits
            await until(lambda: helpline.service.dispatcher.waiting("dutch") == 1)
            await caller.record(tmp_path / "caller.wav")
            await asyncio.sleep(11)
            heard = await caller.stop_record()
            await caller.hangup()
    pcm, rate = read_wav(heard)
    labels = _labels(pcm, rate)
    gaps = _gaps_between_messages(labels, min_frames=math.ceil(1500 / FRAME_MS))
    assert gaps, labels  # messages with a pause of seconds between them
    for gap in gaps:  # each pause is the music, not silence or comfort noise
        assert gap.count("m") >= 0.8 * len(gap), labels
    assert "s" in labels[labels.index("m") :]  # and a message after the music started


def test_hold_music_setting_none_or_a_missing_file_said_clearly(tmp_path: Path) -> None:
    assert hold_music(Settings(hold_music="")) is None  # comfort noise between messages
    assert hold_music(Settings()) is not None  # the shipped track
    with pytest.raises(ValueError, match=r"hold_music: .*nothing\.wav not found"):
        hold_music(Settings(recordings=tmp_path, hold_music="nothing.wav"))
