"""`helpline volunteers`: manage volunteer accounts (SIP credentials, PIN, languages, skills).

Languages, skills and regions given to `add` and `set` are checked against the dialplan (a
region in any case is stored as the plan spells it): a volunteer whose profile fits no queue
would silently get no calls.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import structlog

from ivr.loader import DialplanError, load_dialplan
from ivr.volunteer_fit import PlanVocabulary, ProfileMismatch
from pbx.config import Settings
from pbx.db.database import open_database
from pbx.db.volunteers import (
    DuplicateUser,
    InvalidValue,
    UnknownUser,
    Volunteer,
    VolunteerError,
    VolunteerRepository,
    check_password,
    check_pin,
    check_username,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DUPLICATE = 3
EXIT_UNKNOWN = 4
EXIT_INVALID = 5
EXIT_DATABASE = 6

EPILOG = """\
database: --database-url or $HELPLINE_DATABASE_URL; otherwise the embedded PostgreSQL under
--state-dir or $HELPLINE_STATE_DIR (default ./var). Realm: --realm or $HELPLINE_SIP_REALM
(default "helpline"); it must match the service's realm, since passwords are stored hashed
with it. With --password-stdin and --pin-stdin together, the password is the first line of
standard input and the PIN the second.
exit codes: 0 ok, 1 other error, 2 usage, 3 volunteer exists, 4 no such volunteer,
5 invalid value (weak password, bad PIN, a language, skill or region the dialplan does not
have), 6 database unavailable. Languages, skills and regions are checked against --dialplan
or $HELPLINE_DIALPLAN (default ./dialplan.yaml); a changed profile counts from the
volunteer's next log-in (*1)."""


class UsageError(Exception):
    pass


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="PostgreSQL URL (default: embedded server)")
    common.add_argument("--state-dir", type=Path, help="state directory (default ./var)")
    common.add_argument("--realm", help='SIP digest realm (default "helpline")')
    return common


def _add_profile_options(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    parser.add_argument(
        "--languages",
        default="nl" if adding else None,
        help="comma-separated codes, e.g. nl,ar" + (" (default nl)" if adding else ""),
    )
    region = parser.add_mutually_exclusive_group()
    region.add_argument("--region", help="home region, one of the dialplan's (any case)")
    if not adding:
        region.add_argument("--no-region", action="store_true", help="no home region")
    parser.add_argument(
        "--skills",
        default="" if adding else None,
        help="comma-separated skills, e.g. 113" + ("" if adding else " ('' for none)"),
    )
    parser.add_argument(
        "--dialplan", type=Path, help="the plan to check against (default: the service's)"
    )


def _add_password_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    group.add_argument(
        "--password", help="the password (visible to other local users: prefer --password-stdin)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "volunteers",
        help="manage volunteer accounts",
        description="Manage volunteer accounts: SIP credentials, PIN, languages, skills.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=lambda args: _usage(parser))
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    common = _common()

    add = sub.add_parser("add", parents=[common], help="create a volunteer account")
    add.add_argument("username")
    _add_password_options(add)
    add.add_argument("--name", default="", help="display name")
    _add_profile_options(add, adding=True)
    add.add_argument("--pin-stdin", action="store_true", help="read a handset PIN from stdin")
    add.set_defaults(func=_handler(_add))

    change = sub.add_parser(
        "set",
        parents=[common],
        help="change a volunteer's name, languages, skills or region",
        description="Change what is given; the rest stays. Languages, skills and the region "
        "must be the dialplan's. Example: helpline volunteers set anna --languages nl,tr "
        "--region utrecht",
    )
    change.add_argument("username")
    change.add_argument("--name", help="display name")
    _add_profile_options(change, adding=False)
    change.set_defaults(func=_handler(_set))

    lst = sub.add_parser("list", parents=[common], help="list volunteer accounts")
    lst.add_argument("--json", action="store_true", help="one JSON object per line")
    lst.set_defaults(func=_handler(_list))

    for name, action, text in (
        ("disable", _disable, "disable an account (registrations are refused)"),
        ("enable", _enable, "enable a disabled account"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("username")
        p.set_defaults(func=_handler(action))

    setpw = sub.add_parser("set-password", parents=[common], help="set a new SIP password")
    setpw.add_argument("username")
    _add_password_options(setpw)
    setpw.set_defaults(func=_handler(_set_password))

    setdigest = sub.add_parser(
        "set-digest",
        parents=[common],
        help="the digest algorithm to challenge this volunteer's handsets with",
        description="MD5 works with every handset; SHA-256 only for handsets known to support"
        " it (PJSIP, linphone; not baresip 1.0). 'default' returns to the service's"
        " digest_algorithms setting.",
    )
    setdigest.add_argument("username")
    setdigest.add_argument("algorithm", choices=["MD5", "SHA-256", "default"])
    setdigest.set_defaults(func=_handler(_set_digest))

    setpin = sub.add_parser("set-pin", parents=[common], help="set or clear the handset PIN")
    setpin.add_argument("username")
    pin_group = setpin.add_mutually_exclusive_group()
    pin_group.add_argument("--pin-stdin", action="store_true", help="read the PIN from stdin")
    pin_group.add_argument("--clear", action="store_true", help="remove the PIN")
    setpin.set_defaults(func=_handler(_set_pin))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


Action = Callable[[argparse.Namespace, VolunteerRepository, TextIO], Awaitable[None]]


def _handler(action: Action) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        _quiet_logs()
        try:
            return asyncio.run(_run(action, args))
        except UsageError as exc:
            print(f"helpline volunteers: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return handle


def _quiet_logs() -> None:
    # Command output goes to stdout; only warnings and errors from the library, on stderr.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _realm(args: argparse.Namespace) -> str:
    return str(args.realm or os.environ.get("HELPLINE_SIP_REALM") or "helpline")


async def _run(action: Action, args: argparse.Namespace) -> int:
    url = args.database_url or os.environ.get("HELPLINE_DATABASE_URL") or None
    state_dir = args.state_dir or Path(os.environ.get("HELPLINE_STATE_DIR") or "var")
    # Read secrets before touching the database, so a usage error costs no server start.
    args.stdin_lines = _stdin_lines(args)
    _check_secrets_given(args)
    try:
        _precheck(args)
    except InvalidValue as exc:
        return _fail(exc, EXIT_INVALID)
    try:
        db = await open_database(url, state_dir)
    except Exception as exc:
        print(
            f"helpline volunteers: database unavailable ({type(exc).__name__}: {exc})",
            file=sys.stderr,
        )
        return EXIT_DATABASE
    try:
        await action(args, VolunteerRepository(db.pool), sys.stdout)
    except DuplicateUser as exc:
        return _fail(exc, EXIT_DUPLICATE)
    except UnknownUser as exc:
        return _fail(exc, EXIT_UNKNOWN)
    except InvalidValue as exc:
        return _fail(exc, EXIT_INVALID)
    except VolunteerError as exc:
        return _fail(exc, EXIT_ERROR)
    finally:
        await db.close()
    return EXIT_OK


def _fail(exc: Exception, code: int) -> int:
    print(f"helpline volunteers: {exc}", file=sys.stderr)
    return code


def _stdin_lines(args: argparse.Namespace) -> list[str]:
    wanted = int(bool(getattr(args, "password_stdin", False)))
    wanted += int(bool(getattr(args, "pin_stdin", False)))
    if wanted == 0:
        return []
    lines = [line.rstrip("\r\n") for line in sys.stdin.read().splitlines()]
    if len(lines) < wanted:
        raise UsageError(f"expected {wanted} line(s) on standard input, got {len(lines)}")
    return lines[:wanted]


def _check_secrets_given(args: argparse.Namespace) -> None:
    if args.action in ("add", "set-password"):
        given = args.password_stdin or args.password is not None
        if not given and not sys.stdin.isatty():
            raise UsageError("give the password with --password-stdin (or --password)")
    if args.action == "set-pin" and not (args.pin_stdin or args.clear):
        raise UsageError("give the PIN with --pin-stdin, or --clear")


def _precheck(args: argparse.Namespace) -> None:
    """Refuse bad input before starting a database server for it."""
    if args.action in ("add", "set-password") and (
        args.password_stdin or args.password is not None
    ):
        check_password(args.username, _password(args))
    if args.action == "add":
        check_username(args.username)
    if getattr(args, "pin_stdin", False):
        check_pin(str(_pin(args)))
    changes = ("name", "languages", "skills", "region", "no_region")
    if args.action == "set" and all(getattr(args, k) in (None, False) for k in changes):
        raise UsageError("nothing to change: give --name, --languages, --skills or --region")
    if args.action in ("add", "set"):
        _fit_the_plan(args)


def _fit_the_plan(args: argparse.Namespace) -> None:
    """Check languages, skills and region against the dialplan; the region as it spells it."""
    given = (args.languages, args.skills, args.region)
    if all(v is None for v in given):
        return
    path = args.dialplan or Path(os.environ.get("HELPLINE_DIALPLAN") or Settings().dialplan)
    try:
        plan = load_dialplan(path, prompts=_AnyPrompts())
    except DialplanError as exc:
        raise InvalidValue(
            f"cannot check the profile against {path}: the dialplan is invalid "
            f"(see `helpline check`): {exc.problems[0]}"
        ) from None
    vocabulary = PlanVocabulary.of(plan)
    try:
        if args.languages is not None:
            vocabulary.check_languages(_languages_of(args.languages))
        if args.skills is not None:
            vocabulary.check_skills(_split(args.skills))
        if args.region is not None:
            args.region = vocabulary.region(args.region)
    except ProfileMismatch as exc:
        raise InvalidValue(str(exc)) from None


class _AnyPrompts:
    """Prompts are not what a volunteer's profile is checked for: take every one as there."""

    def has(self, lang: str, name: str, *, fallback: bool = True) -> bool:
        return True


def _languages_of(value: str) -> list[str]:
    return [v.lower() for v in _split(value)]


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return str(args.stdin_lines[0])
    if args.password is not None:
        return str(args.password)
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise InvalidValue("passwords do not match")
        return first
    raise UsageError("give the password with --password-stdin (or --password)")


def _pin(args: argparse.Namespace) -> str | None:
    if not args.pin_stdin:
        return None
    return str(args.stdin_lines[-1])


def _split(value: str) -> list[str]:
    return [part for part in (p.strip() for p in value.split(",")) if part]


async def _add(args: argparse.Namespace, repo: VolunteerRepository, out: TextIO) -> None:
    volunteer = await repo.create(
        args.username,
        _password(args),
        _realm(args),
        display_name=args.name,
        languages=_split(args.languages),
        region=args.region,
        skills=_split(args.skills),
        pin=_pin(args),
    )
    print(f"added {volunteer.username}", file=out)


async def _set(args: argparse.Namespace, repo: VolunteerRepository, out: TextIO) -> None:
    await repo.get(args.username)  # an unknown volunteer is said before anything changes
    if args.name is not None:
        await repo.set_display_name(args.username, args.name)
    if args.languages is not None:
        if not _split(args.languages):
            raise InvalidValue("a volunteer needs at least one language")
        await repo.set_languages(args.username, _split(args.languages))
    if args.skills is not None:
        await repo.set_skills(args.username, _split(args.skills))
    if args.region is not None or args.no_region:
        await repo.set_region(args.username, None if args.no_region else args.region)
    v = await repo.get(args.username)
    print(
        f"{v.username}: languages {','.join(v.languages) or '-'}, skills "
        f"{','.join(v.skills) or '-'}, region {v.region or '-'}",
        file=out,
    )


def _handsets(found: list[tuple[str, str | None]]) -> str:
    return ", ".join(f"{agent[:24]}:{alg or '?'}" for agent, alg in found) or "-"


def _row(v: Volunteer, handsets: list[tuple[str, str | None]]) -> list[str]:
    return [
        v.username,
        v.display_name or "-",
        ",".join(v.languages) or "-",
        v.region or "-",
        ",".join(v.skills) or "-",
        "disabled" if v.disabled else "enabled",
        "yes" if v.has_pin else "no",
        v.digest_algorithm or "default",
        _handsets(handsets),
    ]


async def _list(args: argparse.Namespace, repo: VolunteerRepository, out: TextIO) -> None:
    volunteers = await repo.list()
    handsets = await repo.handset_algorithms(datetime.now(UTC))
    if args.json:
        for v in volunteers:
            doc = {
                "username": v.username,
                "name": v.display_name,
                "realm": v.realm,
                "languages": list(v.languages),
                "region": v.region,
                "skills": list(v.skills),
                "disabled": v.disabled,
                "pin": v.has_pin,
                "created_at": v.created_at.isoformat(),
                "digest": v.digest_algorithm,
                "handsets": [
                    {"user_agent": agent, "algorithm": alg}
                    for agent, alg in handsets.get(v.username, [])
                ],
            }
            print(json.dumps(doc, ensure_ascii=False), file=out)
        return
    # DIGEST: the algorithm this volunteer is challenged with; HANDSETS: each live registration
    # (user agent) with the algorithm it authenticated with
    header = ["USERNAME", "NAME", "LANGUAGES", "REGION", "SKILLS", "STATUS", "PIN", "DIGEST"]
    header.append("HANDSETS")
    rows = [header, *(_row(v, handsets.get(v.username, [])) for v in volunteers)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip(), file=out
        )


async def _disable(args: argparse.Namespace, repo: VolunteerRepository, out: TextIO) -> None:
    await repo.disable(args.username)
    print(f"disabled {args.username}", file=out)


async def _enable(args: argparse.Namespace, repo: VolunteerRepository, out: TextIO) -> None:
    await repo.enable(args.username)
    print(f"enabled {args.username}", file=out)


async def _set_password(args: argparse.Namespace, repo: VolunteerRepository, out: TextIO) -> None:
    await repo.set_password(args.username, _password(args), _realm(args))
    print(f"password set for {args.username}", file=out)


async def _set_digest(args: argparse.Namespace, repo: VolunteerRepository, out: TextIO) -> None:
    algorithm = None if args.algorithm == "default" else args.algorithm
    await repo.set_digest(args.username, algorithm)
    print(f"digest for {args.username}: {algorithm or 'default'}", file=out)


async def _set_pin(args: argparse.Namespace, repo: VolunteerRepository, out: TextIO) -> None:
    if args.clear:
        await repo.set_pin(args.username, None)
        print(f"PIN cleared for {args.username}", file=out)
        return
    if not args.pin_stdin:
        raise UsageError("give the PIN with --pin-stdin, or --clear")
    await repo.set_pin(args.username, _pin(args))
    print(f"PIN set for {args.username}", file=out)
