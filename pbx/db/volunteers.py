"""Volunteer accounts: SIP digest credentials, handset PIN, languages/region/skills.

The registrar authenticates from an in-memory cache filled by `load_credentials()` at start;
this repository is for the admin CLI and that start-up load, never for a live call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from pbx.profile import (
    PIN_RE,
    InvalidValue,
    Profile,
    VolunteerError,
    check_pin,
    hash_pin,
    verify_pin,
)
from pbx.sip.digest import Credential

__all__ = [  # the domain types live in pbx.profile; re-exported for the admin CLI
    "PIN_RE", "InvalidValue", "Profile", "VolunteerError", "check_pin", "hash_pin", "verify_pin",
]  # fmt: skip

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")  # ISO 639 codes: nl, ar, fa, tr
SKILL_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MIN_PASSWORD_LENGTH = 10
PASSWORD_RULE = (
    f"a SIP password needs at least {MIN_PASSWORD_LENGTH} characters, at least 4 different"
    " ones, and must not contain the username"
)


class DuplicateUser(VolunteerError):
    pass


class UnknownUser(VolunteerError):
    pass


class WeakPassword(InvalidValue):
    """Says what is wrong and the whole rule, so the admin gets it right the second time."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem} ({PASSWORD_RULE})")


def check_username(username: str) -> None:
    if not USERNAME_RE.match(username):
        raise InvalidValue(
            f"invalid username {username!r}: use 1-64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )


def check_password(username: str, password: str) -> None:
    """Reject passwords a digest-capturing attacker could guess offline."""
    if not password:
        raise WeakPassword("password is empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"password is shorter than {MIN_PASSWORD_LENGTH} characters")
    if username.lower() in password.lower():
        raise WeakPassword("password contains the username")
    if len(set(password)) < 4:
        raise WeakPassword("password has too few different characters")


def _languages(values: Iterable[str]) -> list[str]:
    out = []
    for value in values:
        code = value.strip().lower()
        if not LANGUAGE_RE.match(code):
            raise InvalidValue(f"invalid language code {value!r} (expected e.g. nl, ar, fa, tr)")
        if code not in out:
            out.append(code)
    return out


def _skills(values: Iterable[str]) -> list[str]:
    out = []
    for value in values:
        skill = value.strip()
        if not SKILL_RE.match(skill):
            raise InvalidValue(f"invalid skill {value!r}")
        if skill not in out:
            out.append(skill)
    return out


def _region(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > 64:
        raise InvalidValue("region is longer than 64 characters")
    return value.strip()


@dataclass(frozen=True)
class Volunteer:
    id: int
    username: str
    display_name: str
    realm: str
    languages: tuple[str, ...]
    region: str | None
    skills: tuple[str, ...]
    disabled: bool
    created_at: datetime
    has_pin: bool
    digest_algorithm: str | None = None  # None: the service's default challenge

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Volunteer:
        return cls(
            id=row["id"],
            username=row["username"],
            display_name=row["display_name"],
            realm=row["realm"],
            languages=tuple(row["languages"]),
            region=row["region"],
            skills=tuple(row["skills"]),
            disabled=row["disabled"],
            created_at=row["created_at"],
            has_pin=row["pin_hash"] is not None,
            digest_algorithm=row["digest_algorithm"],
        )


_COLUMNS = (
    "id, username, display_name, realm, languages, region, skills, disabled, created_at, pin_hash,"
    " digest_algorithm"
)
DIGEST_ALGORITHMS = ("MD5", "SHA-256")
Handsets = list[tuple[str, str | None]]  # (user agent or contact, digest algorithm used)


class VolunteerRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self,
        username: str,
        password: str,
        realm: str,
        *,
        display_name: str = "",
        languages: Iterable[str] = ("nl",),  # every volunteer of the helpline speaks Dutch
        region: str | None = None,
        skills: Iterable[str] = (),
        pin: str | None = None,
    ) -> Volunteer:
        check_username(username)
        check_password(username, password)
        cred = Credential.from_password(username, realm, password)
        pin_hash = hash_pin(pin) if pin is not None else None
        try:
            row = await self.pool.fetchrow(
                f"""INSERT INTO volunteers (username, display_name, realm, ha1_md5, ha1_sha256,
                        pin_hash, languages, region, skills)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                    RETURNING {_COLUMNS}""",
                username,
                display_name,
                realm,
                cred.ha1_md5,
                cred.ha1_sha256,
                pin_hash,
                _languages(languages),
                _region(region),
                _skills(skills),
            )
        except asyncpg.UniqueViolationError:
            raise DuplicateUser(f"volunteer {username!r} already exists") from None
        assert row is not None
        return Volunteer.from_row(row)

    async def list(self, include_disabled: bool = True) -> list[Volunteer]:
        where = "" if include_disabled else "WHERE NOT disabled"
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM volunteers {where} ORDER BY username")
        return [Volunteer.from_row(r) for r in rows]

    async def get(self, username: str) -> Volunteer:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM volunteers WHERE username = $1", username
        )
        if row is None:
            raise UnknownUser(f"no volunteer {username!r}")
        return Volunteer.from_row(row)

    async def _update(self, username: str, assignments: str, *args: object) -> Volunteer:
        row = await self.pool.fetchrow(
            f"UPDATE volunteers SET {assignments} WHERE username = $1 RETURNING {_COLUMNS}",
            username,
            *args,
        )
        if row is None:
            raise UnknownUser(f"no volunteer {username!r}")
        return Volunteer.from_row(row)

    async def disable(self, username: str) -> Volunteer:
        return await self._update(username, "disabled = true")

    async def enable(self, username: str) -> Volunteer:
        return await self._update(username, "disabled = false")

    async def set_password(self, username: str, password: str, realm: str | None = None) -> None:
        """New password (and optionally realm: the stored hashes depend on it)."""
        check_password(username, password)
        if realm is None:
            realm = (await self.get(username)).realm
        cred = Credential.from_password(username, realm, password)
        await self._update(
            username,
            "realm = $2, ha1_md5 = $3, ha1_sha256 = $4",
            realm,
            cred.ha1_md5,
            cred.ha1_sha256,
        )

    async def set_pin(self, username: str, pin: str | None) -> None:
        """Set the handset login PIN; None removes it."""
        await self._update(username, "pin_hash = $2", hash_pin(pin) if pin is not None else None)

    async def check_pin(self, username: str, pin: str) -> bool:
        stored = await self.pool.fetchval(
            "SELECT pin_hash FROM volunteers WHERE username = $1 AND NOT disabled", username
        )
        return stored is not None and verify_pin(pin, stored)

    async def set_digest(self, username: str, algorithm: str | None) -> Volunteer:
        """Challenge this volunteer's handsets with `algorithm` only (None: the default)."""
        if algorithm is not None:
            wanted = algorithm.lower()
            algorithm = next((a for a in DIGEST_ALGORITHMS if a.lower() == wanted), "")
            if not algorithm:
                raise InvalidValue(f"digest algorithm must be one of {DIGEST_ALGORITHMS}")
        return await self._update(username, "digest_algorithm = $2", algorithm)

    async def handset_algorithms(self, now: datetime) -> dict[str, Handsets]:
        """Per volunteer, (user agent or contact, digest algorithm) of each live registration
        (as written behind by the service)."""
        rows = await self.pool.fetch(
            "SELECT aor, binding_key, user_agent, auth_algorithm FROM registrations"
            " WHERE expires_at > $1 ORDER BY aor, binding_key",
            now,
        )
        out: dict[str, Handsets] = {}
        for r in rows:
            out.setdefault(r["aor"], []).append(
                (r["user_agent"] or r["binding_key"], r["auth_algorithm"])
            )
        return out

    async def set_languages(self, username: str, languages: Iterable[str]) -> Volunteer:
        return await self._update(username, "languages = $2", _languages(languages))

    async def set_region(self, username: str, region: str | None) -> Volunteer:
        return await self._update(username, "region = $2", _region(region))

    async def set_skills(self, username: str, skills: Iterable[str]) -> Volunteer:
        return await self._update(username, "skills = $2", _skills(skills))

    async def set_display_name(self, username: str, display_name: str) -> Volunteer:
        return await self._update(username, "display_name = $2", display_name)

    async def load_profiles(self) -> dict[str, Profile]:
        """Languages, skills, region and PIN hash of every enabled volunteer."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "select username, languages, skills, region, pin_hash from volunteers"
                " where not disabled"
            )
        return {
            r["username"]: Profile(
                r["username"],
                tuple(r["languages"]),
                tuple(r["skills"]),
                r["region"],
                r["pin_hash"],
            )  # fmt: skip
            for r in rows
        }

    async def load_credentials(self) -> dict[str, Credential]:
        """Every account's digest credentials by username, disabled ones flagged."""
        rows = await self.pool.fetch(
            "SELECT username, realm, ha1_md5, ha1_sha256, disabled, digest_algorithm"
            " FROM volunteers"
        )
        return {
            r["username"]: Credential(
                username=r["username"],
                realm=r["realm"],
                ha1_md5=r["ha1_md5"],
                ha1_sha256=r["ha1_sha256"],
                disabled=r["disabled"],
                algorithm=r["digest_algorithm"],
            )
            for r in rows
        }
