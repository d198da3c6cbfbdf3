"""Console accounts: username, role (coordinator or admin), argon2id password hash.

Managed by `helpline console-accounts` (pbx/commands/console_accounts.py); the console reads an
account at login only (a login is not a live call: the database may be asked then).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import re
from dataclasses import dataclass

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_PASSWORD_LENGTH = 12
# argon2-cffi's defaults (RFC 9106's second recommendation: 64 MiB, 3 passes): memory-hard
_HASHER = PasswordHasher()


class Role(enum.StrEnum):
    COORDINATOR = "coordinator"  # sees everything, pauses and logs out volunteers
    ADMIN = "admin"  # also edits volunteers and reloads the dialplan


class AccountError(Exception):
    pass


@dataclass(frozen=True)
class Account:
    username: str
    role: Role
    disabled: bool = False


def check_account(username: str, password: str) -> None:
    if not USERNAME_RE.match(username):
        raise AccountError(f"invalid username {username!r}: 1-64 letters, digits, '.', '_', '-'")
    if len(password) < MIN_PASSWORD_LENGTH or len(set(password)) < 4:
        raise AccountError(
            f"a console password needs at least {MIN_PASSWORD_LENGTH} characters, 4 different"
        )
    if username.lower() in password.lower():
        raise AccountError("the password must not contain the username")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the account does not exist, so timing does not tell which names
    exist. Made at the first verification (a third of a second), not at import, which every
    `helpline` command and the service's start would pay for."""
    return _HASHER.hash("no such account, but the same work")


def verify_password(stored: str | None, password: str) -> bool:
    dummy = _dummy_hash()  # first, for a known name too: the first attempt's timing tells nothing
    try:
        return _HASHER.verify(stored or dummy, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


class AccountRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, username: str, password: str, role: Role) -> Account:
        check_account(username, password)
        try:
            await self.pool.execute(
                "INSERT INTO console_accounts (username, password_hash, role) VALUES ($1, $2, $3)",
                username,
                hash_password(password),
                role.value,
            )
        except asyncpg.UniqueViolationError:
            raise AccountError(f"account {username!r} exists") from None
        return Account(username, role)

    async def set_password(self, username: str, password: str) -> None:
        check_account(username, password)
        await self._update(username, "password_hash = $2", hash_password(password))

    async def set_role(self, username: str, role: Role) -> None:
        await self._update(username, "role = $2", role.value)

    async def set_disabled(self, username: str, disabled: bool) -> None:
        await self._update(username, "disabled = $2", disabled)

    async def list(self) -> list[Account]:
        rows = await self.pool.fetch(
            "SELECT username, role, disabled FROM console_accounts ORDER BY username"
        )
        return [Account(r["username"], Role(r["role"]), r["disabled"]) for r in rows]

    async def authenticate(self, username: str, password: str) -> Account | None:
        """The account when the password is right and the account enabled; else None (the same
        argon2 work is done for an unknown name)."""
        row = await self.pool.fetchrow(
            "SELECT role, disabled, password_hash FROM console_accounts WHERE username = $1",
            username,
        )
        stored = None if row is None else row["password_hash"]
        # argon2 is memory-hard by design: off the event loop, which carries the calls
        if not await asyncio.to_thread(verify_password, stored, password):
            return None
        assert row is not None
        return None if row["disabled"] else Account(username, Role(row["role"]))

    async def _update(self, username: str, assignment: str, value: object) -> None:
        result = await self.pool.execute(
            f"UPDATE console_accounts SET {assignment} WHERE username = $1", username, value
        )
        if result.endswith(" 0"):
            raise AccountError(f"no account {username!r}")
