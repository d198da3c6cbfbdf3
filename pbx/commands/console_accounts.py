"""`helpline console-accounts`: accounts of the wallboard's console (coordinator or admin)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path

from pbx.db.database import open_database
from pbx.web.accounts import AccountError, AccountRepository, Role

EPILOG = """\
database: --database-url or $HELPLINE_DATABASE_URL; otherwise the embedded PostgreSQL under
--state-dir or $HELPLINE_STATE_DIR (default ./var). Passwords are read from standard input with
--password-stdin, otherwise asked for at the terminal; they are stored as argon2id hashes.
exit codes: 0 ok, 1 refused (exists, unknown, weak password), 6 database unavailable."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "console-accounts",
        help="manage the console's accounts",
        description="Accounts of the coordinators' console.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url")
    common.add_argument("--state-dir", type=Path)
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", parents=[common], help="add an account")
    add.add_argument("username")
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.COORDINATOR.value)
    add.add_argument("--password-stdin", action="store_true")
    setpw = sub.add_parser("set-password", parents=[common], help="set a new password")
    setpw.add_argument("username")
    setpw.add_argument("--password-stdin", action="store_true")
    role = sub.add_parser("set-role", parents=[common], help="change an account's role")
    role.add_argument("username")
    role.add_argument("role", choices=[r.value for r in Role])
    for name in ("disable", "enable"):
        p = sub.add_parser(name, parents=[common], help=f"{name} an account")
        p.add_argument("username")
    sub.add_parser("list", parents=[common], help="list the accounts")
    parser.set_defaults(func=lambda args: asyncio.run(_run(args)))


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass("password: ")


async def _run(args: argparse.Namespace) -> int:
    password = _password(args) if args.action in ("add", "set-password") else ""
    url = args.database_url or os.environ.get("HELPLINE_DATABASE_URL") or None
    state_dir = args.state_dir or Path(os.environ.get("HELPLINE_STATE_DIR") or "var")
    try:
        db = await open_database(url, state_dir)
    except Exception as exc:
        print(f"helpline console-accounts: database unavailable ({exc})", file=sys.stderr)
        return 6
    try:
        repo = AccountRepository(db.pool)
        if args.action == "add":
            await repo.create(args.username, password, Role(args.role))
        elif args.action == "set-password":
            await repo.set_password(args.username, password)
        elif args.action == "set-role":
            await repo.set_role(args.username, Role(args.role))
        elif args.action in ("disable", "enable"):
            await repo.set_disabled(args.username, args.action == "disable")
        else:
            for a in await repo.list():
                print(f"{a.username}\t{a.role.value}\t{'disabled' if a.disabled else 'enabled'}")
        return 0
    except AccountError as exc:
        print(f"helpline console-accounts: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.close()
