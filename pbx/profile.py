"""A volunteer as a live call knows them (languages, skills, region, PIN), and PIN hashing.

Domain types with no database in sight: `pbx/db/volunteers.py` stores them, the shift desk
(`pbx/calls/shift.py`) checks PINs against them, the directory keeps them in memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

PIN_RE = re.compile(r"^[0-9]{4,12}$")  # typed on a handset keypad

# scrypt cost: ~16 MiB and tens of milliseconds per check; a PIN has little entropy.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class VolunteerError(Exception):
    """A volunteer operation that cannot be done; the message is meant for the admin."""


class InvalidValue(VolunteerError):
    pass


@dataclass(frozen=True)
class Profile:
    """What a live call needs to know of a volunteer, kept in memory (no DB on the call path)."""

    username: str
    languages: tuple[str, ...]
    skills: tuple[str, ...]
    region: str | None
    pin_hash: str | None


def check_pin(pin: str) -> None:
    if not PIN_RE.match(pin):
        raise InvalidValue("PIN must be 4 to 12 digits")


def hash_pin(pin: str) -> str:
    """Salted scrypt hash as 'scrypt$n$r$p$salt$hash' (base64)."""
    check_pin(pin)
    salt = os.urandom(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_pin(pin: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            pin.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p)
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
