"""Voicemail kept safe: a real trunk caller (PJSIP) leaves a message on the info line after hours;
it is stored encrypted to the staff's public key, announced without caller data, opened only
with the staff's private key, and deleted after the retention period. The staff's commands
(`helpline voicemail ...`) are run as a user runs them, in a subprocess.

The IVR's clock is fixed at a Tuesday 15:00 in Amsterdam: the info line (weekdays 10:00-14:00) is
closed, so a caller reaches its voicemail.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pyrage import x25519

from ivr.loader import DEFAULT_PLAN
from pbx.config import ConfigError, load_settings
from pbx.media import g711, tones
from pbx.media.g711 import Codec
from pbx.media.prompts import PromptLibrary
from pbx.voicemail.notify import Notifier
from pbx.voicemail.store import VoicemailStore
from tests.helpers.audio import active_part, read_wav, tone_share
from tests.helpers.caller_number import DIGITS
from tests.helpers.ivr_helpline import ivr_helpline, ivr_paths
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.service import MakeHelpline, running_service
from tests.peers.pjsua_phone import AsyncPjsuaPhone

HELPLINE = [str(Path(sys.executable).parent / "helpline")]  # the installed command
SPOKEN_HZ = 700  # what the caller "says" (a tone stands in for a voice)
RETENTION = 6.0  # seconds, short for the test (the default is 7 days)
KEPT_NOTICE = ("voicemail_kept_intro", "digit_1", "day", "voicemail_kept_outro")


def helpline_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`helpline ARGS...` as a user runs it (its own process, its own settings)."""
    return subprocess.run(
        [*HELPLINE, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def staff_key(tmp_path: Path) -> tuple[Path, str]:
    """The staff make their key pair with `helpline voicemail keygen`: (identity file, public)."""
    identity = tmp_path / "staff.key"
    made = helpline_cli("voicemail", "keygen", "--output", str(identity))
    assert made.returncode == 0, made.stderr
    public = made.stdout.strip().rsplit(" ", 1)[-1]
    assert public.startswith("age1") and public not in identity.read_text().split("\n")[-2]
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    return identity, public


def intro_seconds(prompts: PromptLibrary) -> float:
    """What the info line's voicemail says before the beep (Dutch: the caller pressed nothing)."""
    names = ("info_line_closed", "voicemail_instructions", *KEPT_NOTICE)
    return sum(prompts.duration("nl", name) for name in names) + 0.25


def assert_no_audio_inside(sealed: bytes) -> None:
    """The stored file is no WAV and holds no audio anyone could play: no RIFF header, and the
    caller's tone is in none of the ways raw bytes could be read as telephony audio."""
    assert sealed.startswith(b"age-encryption.org/v1\n")
    assert b"RIFF" not in sealed and b"WAVE" not in sealed
    body = sealed[len(sealed) // 4 :]  # past the age header
    as_pcm = body[: len(body) // 2 * 2]
    for pcm in (as_pcm, g711.decode(Codec.PCMU, body), g711.decode(Codec.PCMA, body)):
        assert tone_share(pcm, SPOKEN_HZ) < 0.05


async def test_a_trunk_callers_message_is_kept_encrypted_told_and_deleted_after_retention(
    make_helpline: MakeHelpline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity, public = staff_key(tmp_path)
    hook_log = tmp_path / "hook.log"
    hook = tmp_path / "notify.sh"
    # the hook sees the id and the line, and none of the service's settings (secrets)
    hook.write_text(f'#!/bin/sh\necho "$@" $(env | grep -c ^HELPLINE_) >> {hook_log}\n')
    hook.chmod(0o700)
    monkeypatch.setenv("HELPLINE_TRUNK_CREDENTIALS", "carrier:secret")  # not for the hook
    async with captured_logs() as logs, ivr_helpline(
        make_helpline, DEFAULT_PLAN, voicemail_recipients=[public],
        voicemail_retention=RETENTION, voicemail_notify=str(hook),
    ) as helpline:  # fmt: skip
        store = helpline.service.voicemail.store
        intro = intro_seconds(PromptLibrary(helpline.settings.recordings))
        async with AsyncPjsuaPhone("caller") as caller:
            await caller.start(free_port(), user=f"0{DIGITS}")  # the carrier's From
            target = f"sip:0900-1234567@{helpline.host}:{helpline.port}"
            assert await caller.make_call(target) == 200
            await caller.play_tone(SPOKEN_HZ)
            await asyncio.sleep(intro + 2.5)  # the prompts, then about two seconds of message
            await caller.hangup()
        await until(lambda: len(store.messages()) == 1, timeout=5)
        (message,) = store.messages()
        sealed = message.audio.read_bytes()
        # the staff fetch the encrypted files to their own machine, and open them there
        staff_copy = tmp_path / "staff"
        shutil.copytree(helpline.settings.state_dir / "voicemail", staff_copy / "voicemail")
        metadata_text = message.metadata.read_text()
        metadata = json.loads(metadata_text)
        modes = {stat.S_IMODE(p.stat().st_mode) for p in (message.audio, message.metadata)}
        folders = {stat.S_IMODE(p.stat().st_mode) for p in (message.audio.parent, store.directory)}
        registry = helpline.service.metrics.registry
        counted = registry.get_sample_value(
            "helpline_voicemail_messages_total", {"line": "info_line"}
        )
        await until(lambda: hook_log.is_file() and hook_log.read_text() != "", timeout=5)
        hooked = hook_log.read_text()

        # after the retention period the message is gone, from the running service's disk
        files = (message.audio, message.metadata)
        await until(lambda: not any(p.exists() for p in files), timeout=RETENTION + 3)
        assert store.messages() == []
        gone_after = datetime.now(UTC) - message.received
        listed = helpline_cli("voicemail", "list", "--state-dir", str(helpline.settings.state_dir))
    assert ivr_paths(logs) == [["info_line", "info_line_voicemail"]]
    assert_no_audio_inside(sealed)
    assert modes == {0o600} and folders == {0o700}
    # the metadata says when, on which line and how long; nothing about who called
    assert set(metadata) == {"id", "line", "received", "seconds"}
    assert (metadata["id"], metadata["line"]) == (message.id, "info_line")
    assert metadata["seconds"] > 1.0
    assert DIGITS not in metadata_text and DIGITS not in message.id
    assert counted == 1
    assert hooked == f"{message.id} info_line 0\n"  # the id and the line, no caller data
    assert DIGITS not in logs.getvalue()
    assert log_events(logs, "voicemail_expired")[0]["message"] == message.id
    assert timedelta(seconds=RETENTION - 1) <= gone_after <= timedelta(seconds=RETENTION + 3)
    assert listed.returncode == 0 and listed.stdout.strip().endswith("0 message(s)")

    # the staff's key opens it: it is what the caller said
    out = tmp_path / "message.wav"
    exported = helpline_cli(
        "voicemail", "export", message.id, "--identity", str(identity),
        "--state-dir", str(staff_copy), "--output", str(out),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    pcm, rate = read_wav(out)
    assert rate == 8000 and len(pcm) > 16000  # over a second of message
    assert tone_share(active_part(pcm), SPOKEN_HZ) > 0.8


def left_message(store: VoicemailStore, received: datetime, line: str = "info_line") -> str:
    """A message as the service keeps it (the real store), of a 500 Hz tone for 1.5 s."""
    return store.save(line, tones.sine(500, 1500), received).id


def test_staff_list_export_and_delete_messages_with_the_cli(tmp_path: Path) -> None:
    identity, public = staff_key(tmp_path)
    state = tmp_path / "state"
    store = VoicemailStore(state / "voicemail", [x25519.Recipient.from_str(public)])
    now = datetime.now(UTC)
    first = left_message(store, now - timedelta(hours=2))
    second = left_message(store, now, line="helpline")

    listed = helpline_cli("voicemail", "list", "--state-dir", str(state))
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:-1]]
    assert [(r[0], r[1], r[4]) for r in rows] == [
        (first, "info_line", "1.5"),
        (second, "helpline", "1.5"),
    ]
    assert listed.stdout.splitlines()[-1] == "2 message(s)"

    # another key (not the staff's) opens nothing, and says why
    stranger = tmp_path / "stranger.key"
    stranger.write_text(f"{x25519.Identity.generate()}\n")
    refused = helpline_cli(
        "voicemail", "export", first, "--identity", str(stranger), "--state-dir", str(state)
    )
    assert refused.returncode == 1 and "cannot decrypt" in refused.stderr
    assert not (tmp_path / f"{first}.wav").exists()
    # a public key is no identity
    wrong = tmp_path / "public.txt"
    wrong.write_text(public + "\n")
    assert (
        helpline_cli(
            "voicemail", "export", first, "--identity", str(wrong), "--state-dir", str(state)
        ).returncode
        == 1
    )

    exported = helpline_cli(
        "voicemail", "export", first, "--identity", str(identity), "--state-dir", str(state),
        cwd=tmp_path,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    pcm, rate = read_wav(tmp_path / f"{first}.wav")  # default name: the id
    assert (rate, len(pcm)) == (8000, 24000)
    assert tone_share(pcm, 500) > 0.9

    deleted = helpline_cli("voicemail", "delete", first, "--state-dir", str(state))
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"deleted {first}"
    assert [m.id for m in store.messages()] == [second]
    unknown = helpline_cli("voicemail", "delete", first, "--state-dir", str(state))
    assert unknown.returncode == 1 and "no voicemail message" in unknown.stderr


async def test_messages_past_retention_are_deleted_when_the_service_starts(
    pg_url: str, tmp_path: Path
) -> None:
    staff = x25519.Identity.generate()
    state = tmp_path / "state-kept"
    store = VoicemailStore(state / "voicemail", [staff.to_public()])
    now = datetime.now(UTC)
    old = left_message(store, now - timedelta(days=8))
    recent = left_message(store, now - timedelta(days=6))
    # what a crash in the middle of writing a message leaves (ciphertext under a temporary name)
    leftover = store.directory / "info_line" / f".{old}.age.4242.tmp"
    leftover.write_bytes(b"age-encryption.org/v1\n")
    async with running_service(
        state, pg_url, voicemail_recipients=[str(staff.to_public())],
        voicemail_retention=7 * 86400.0,
    ):  # fmt: skip
        kept = [m.id for m in store.messages()]
    assert kept == [recent] and old not in kept
    assert not leftover.exists()


def test_the_service_is_given_only_a_public_key() -> None:
    staff = x25519.Identity.generate()
    with pytest.raises(ConfigError, match="private key"):
        load_settings(env={"HELPLINE_VOICEMAIL_RECIPIENTS": str(staff)})
    with pytest.raises(ConfigError, match="not an age public key"):
        load_settings(env={"HELPLINE_VOICEMAIL_RECIPIENTS": "age1notakey"})
    with pytest.raises(ConfigError, match="at most 20 days"):
        load_settings(env={"HELPLINE_VOICEMAIL_RETENTION": str(30 * 86400)})
    settings = load_settings(env={"HELPLINE_VOICEMAIL_RECIPIENTS": str(staff.to_public())})
    assert settings.voicemail_recipients == [str(staff.to_public())]


async def test_a_failing_or_hanging_hook_is_logged_and_blocks_nothing(tmp_path: Path) -> None:
    async with captured_logs() as logs:
        failing = Notifier(["sh", "-c", 'echo "no mail server" >&2; exit 3', "hook"])
        hanging = Notifier(["sh", "-c", "exec sleep 30", "hook"], timeout=0.5)
        missing = Notifier([str(tmp_path / "no-such-hook")])
        for notifier in (failing, hanging, missing):
            notifier.notify("20261126T141800Z-0a1b2c3d4e5f", "info_line")
        # notify() returned while the hooks run beside the call
        assert (failing.running, hanging.running, missing.running) == (1, 1, 1)
        for notifier in (failing, hanging, missing):
            await asyncio.wait_for(notifier.wait(), 10)
    failures = {
        (e.get("status"), e.get("stderr"), e.get("error") == "timed out")
        for e in log_events(logs, "voicemail_notify_failed")
    }
    assert (3, "no mail server", False) in failures
    assert (None, None, True) in failures
    assert len(failures) == 3
