"""`helpline console-accounts` as a subprocess against the session's PostgreSQL: accounts with
roles, argon2id hashes (never the password), refusals with exit code 1."""

from __future__ import annotations

import os
import subprocess

import asyncpg

from pbx.web.accounts import AccountRepository, Role
from tests.helpers.served import HELPLINE
from tests.helpers.service import clean_database

PASSWORD = "staple-battery-horse-42"


def console_accounts(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    return subprocess.run(
        [HELPLINE, "console-accounts", *args, "--database-url", url],
        input=stdin, capture_output=True, text=True, env=environ, timeout=120,
    )  # fmt: skip


async def test_accounts_by_cli(pg_url: str) -> None:
    await clean_database(pg_url)
    added = console_accounts(pg_url, "add", "lotte", "--role", "admin", "--password-stdin",
                             stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    again = console_accounts(pg_url, "add", "lotte", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "exists" in again.stderr
    weak = console_accounts(pg_url, "add", "sam", "--password-stdin", stdin="short\n")
    assert weak.returncode == 1 and "at least 12 characters" in weak.stderr
    assert console_accounts(pg_url, "set-role", "lotte", "coordinator").returncode == 0
    listed = console_accounts(pg_url, "list")
    assert listed.stdout.splitlines() == ["lotte\tcoordinator\tenabled"]

    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=1)
    try:
        stored = await pool.fetchval("SELECT password_hash FROM console_accounts")
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
        accounts = AccountRepository(pool)
        account = await accounts.authenticate("lotte", PASSWORD)
        assert account is not None and account.role is Role.COORDINATOR
        assert await accounts.authenticate("lotte", PASSWORD + "x") is None
        assert await accounts.authenticate("nobody", PASSWORD) is None
        assert console_accounts(pg_url, "disable", "lotte").returncode == 0
        assert await accounts.authenticate("lotte", PASSWORD) is None
    finally:
        await pool.close()
