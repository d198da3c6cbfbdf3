"""The voicemail store: each message is an age-encrypted WAV plus a little metadata, on disk.

Encrypted at rest to the info-line staff's public key(s) (age X25519 recipients): the service
holds no private key, so nobody who can read the service's files (or a backup of them) can
listen to a message. The audio is encrypted in memory before anything touches the disk: no
plaintext file exists at any time, not even a temporary one. Files are created 0600.

Layout: `<dir>/<line>/<id>.age` (the WAV, encrypted) and `<id>.json` (id, line, received,
seconds). The metadata never identifies the caller: no number, only the time, the entry line
(the dialplan's mailbox) and the duration. A call-back number the caller speaks exists only
inside the encrypted audio. The id is the UTC time plus a random part, so the sweep that
enforces the retention period needs no metadata to know a file's age.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import secrets
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyrage
from pyrage import x25519

from pbx.private_files import private_dir, write_private

__all__ = [
    "Message",
    "VoicemailError",
    "VoicemailStore",
    "parse_identities",
    "parse_recipients",
]

RATE = 8000  # telephony PCM: 8 kHz mono 16-bit, as the recorder delivers it
_ID = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{12})$")
_STAMP = "%Y%m%dT%H%M%SZ"
# what write_private leaves behind when the process dies mid-write (ciphertext, never audio)
_LEFTOVER = re.compile(r"^\.(\d{8}T\d{6}Z-[0-9a-f]{12})\.(age|json)\.\d+\.tmp$")
_SAFE_LINE = re.compile(r"[^A-Za-z0-9_.-]")


class VoicemailError(ValueError):
    """A bad key, an unknown message, a message that cannot be decrypted."""


@dataclass(frozen=True)
class Message:
    id: str
    line: str  # the mailbox of the dialplan step (the entry line), never caller data
    received: datetime  # UTC
    seconds: float
    audio: Path  # the encrypted WAV

    @property
    def metadata(self) -> Path:
        return self.audio.with_suffix(".json")


def parse_recipients(keys: Iterable[str]) -> list[x25519.Recipient]:
    """age public keys (`age1...`); a private key given by mistake is refused by name."""
    recipients = []
    for key in keys:
        key = key.strip()
        if key.upper().startswith("AGE-SECRET-KEY-"):
            raise VoicemailError(
                "a private key (AGE-SECRET-KEY-...) was given as a voicemail recipient: the "
                "service must hold only the staff's public key (age1...)"
            )
        try:
            recipients.append(x25519.Recipient.from_str(key))
        except pyrage.RecipientError as exc:
            raise VoicemailError(f"{key[:12]}...: not an age public key (age1...): {exc}") from None
    return recipients


def parse_identities(text: str) -> list[x25519.Identity]:
    """The private keys of an age identity file (as written by age-keygen or
    `helpline voicemail keygen`): one AGE-SECRET-KEY-1... per line, # comments."""
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise VoicemailError(
                "the identity file holds a line that is not an age private key"
            ) from None
    if not identities:
        raise VoicemailError("the identity file holds no age private key (AGE-SECRET-KEY-1...)")
    return identities


def message_time(message_id: str) -> datetime | None:
    """When the message was received, from its id; None when it is not a message id."""
    match = _ID.match(message_id)
    if match is None:
        return None
    return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)


def wav_bytes(pcm: bytes) -> bytes:
    """A WAV file (8 kHz mono 16-bit) of `pcm`, built in memory."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)
    return buffer.getvalue()


class VoicemailStore:
    """Messages under `directory`, encrypted to `recipients` (public keys only)."""

    def __init__(self, directory: Path, recipients: Sequence[x25519.Recipient]) -> None:
        self.directory = Path(directory)
        self.recipients = list(recipients)

    @property
    def accepting(self) -> bool:
        """Whether messages can be kept: never in plaintext, so only with a recipient."""
        return bool(self.recipients)

    def save(self, line: str, pcm: bytes, received: datetime) -> Message:
        """Encrypt `pcm` (in memory) and write it with its metadata; returns the message."""
        if not self.recipients:
            raise VoicemailError("no voicemail recipient (public key) is configured")
        line = _SAFE_LINE.sub("_", line) or "mailbox"
        stamp = received.astimezone(UTC).replace(microsecond=0)
        message_id = f"{stamp.strftime(_STAMP)}-{secrets.token_hex(6)}"
        folder = private_dir(self.directory / line)
        sealed = pyrage.encrypt(wav_bytes(pcm), self.recipients)
        audio = folder / f"{message_id}.age"
        message = Message(message_id, line, stamp, len(pcm) / (2 * RATE), audio)
        write_private(message.audio, sealed)
        meta = {
            "id": message_id,
            "line": line,
            "received": stamp.isoformat(),
            "seconds": round(message.seconds, 1),
        }
        write_private(message.metadata, json.dumps(meta, indent=1) + "\n")
        return message

    def messages(self) -> list[Message]:
        """Every message, oldest first."""
        found = []
        if not self.directory.is_dir():
            return []
        for audio in self.directory.glob("*/*.age"):
            received = message_time(audio.stem)
            if received is None:
                continue
            seconds = 0.0  # the audio counts even if its metadata was lost
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                seconds = float(json.loads(audio.with_suffix(".json").read_text())["seconds"])
            found.append(Message(audio.stem, audio.parent.name, received, seconds, audio))
        return sorted(found, key=lambda m: (m.received, m.id))

    def find(self, message_id: str) -> Message:
        for message in self.messages():
            if message.id == message_id:
                return message
        raise VoicemailError(f"no voicemail message {message_id!r}")

    def decrypt(self, message_id: str, identities: Sequence[x25519.Identity]) -> bytes:
        """The WAV of a message, decrypted with the staff's private key(s)."""
        message = self.find(message_id)
        try:
            return pyrage.decrypt(message.audio.read_bytes(), list(identities))
        except pyrage.DecryptError as exc:
            raise VoicemailError(
                f"cannot decrypt {message_id}: not encrypted to this key, or damaged ({exc})"
            ) from None

    def delete(self, message_id: str) -> Message:
        message = self.find(message_id)
        self._remove(message.audio.parent, message.id)
        return message

    def sweep(self, now: datetime, retention: timedelta) -> list[str]:
        """Delete every message older than `retention` (metadata too); returns their ids.
        Orphan metadata (its audio gone) is removed with the same rule."""
        removed = []
        if not self.directory.is_dir():
            return []
        stems = {(p.parent, p.stem) for p in self.directory.glob("*/*.age")}
        stems |= {(p.parent, p.stem) for p in self.directory.glob("*/*.json")}
        for folder, stem in sorted(stems):
            received = message_time(stem)
            if received is not None and now - received >= retention:
                self._remove(folder, stem)
                removed.append(stem)
        for leftover in self.directory.glob("*/.*.tmp"):
            match = _LEFTOVER.match(leftover.name)
            received = message_time(match.group(1)) if match else None
            if received is not None and now - received >= retention:
                leftover.unlink(missing_ok=True)
        return removed

    @staticmethod
    def _remove(folder: Path, message_id: str) -> None:
        (folder / f"{message_id}.age").unlink(missing_ok=True)
        (folder / f"{message_id}.json").unlink(missing_ok=True)
