"""Dropping root: the internet-facing service runs as an unprivileged user once its sockets
are bound (a bug in the SIP parser must not hand an attacker the machine).

`helpline serve` started as root binds SIP, TLS and metrics, opens the database, then calls
`drop_root`: the state directory is handed to the service user (`run_as_user`, created by
scripts/bootstrap.sh), and the process takes that user's uid, gid and groups for good. The
embedded PostgreSQL runs as pgserver's own user; the service keeps that user's group so it can
still reach the server's socket inside the data directory (made group-traversable, 0750, a mode
PostgreSQL accepts). Before anything changes, every path the service reads later (state,
dialplan, prompts, the Python installation) is checked to be reachable by the user: a service
that would break on its first lazy import or reload refuses to start instead.
"""

from __future__ import annotations

import os
import pwd
import stat
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

__all__ = ["PrivilegeError", "ServiceUser", "drop_root", "service_user", "unreachable"]

log = structlog.get_logger()


class PrivilegeError(RuntimeError):
    """Root cannot be dropped safely: the service must not start."""


@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, the primary one included


def service_user(name: str, extra_groups: Iterable[int] = ()) -> ServiceUser:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(
            f"run_as_user {name!r} does not exist: create it (scripts/bootstrap.sh does: "
            f"useradd --system {name}) or set run_as_user to '' to keep running as root"
        ) from None
    if entry.pw_uid == 0:
        raise PrivilegeError(f"run_as_user {name!r} is root: pick an unprivileged user")
    groups = {entry.pw_gid, *os.getgrouplist(name, entry.pw_gid), *extra_groups}
    return ServiceUser(name, entry.pw_uid, entry.pw_gid, tuple(sorted(groups)))


def _allows(st: os.stat_result, user: ServiceUser, bits: int) -> bool:
    """Whether the mode bits of ``st`` give ``user`` every permission in ``bits`` (rwx as 0o7)."""
    if st.st_uid == user.uid:
        shift = 6
    elif st.st_gid in user.groups:
        shift = 3
    else:
        shift = 0
    return (st.st_mode >> shift) & bits == bits


def unreachable(path: Path, user: ServiceUser, bits: int) -> Path | None:
    """The first component of ``path`` that ``user`` cannot pass (x on every parent directory,
    ``bits`` on ``path`` itself), or None when the user can use it. A missing path is judged
    by its nearest existing parent."""
    path = path.resolve()
    while not path.exists() and path.parent != path:
        path, bits = path.parent, 0o3  # it will be created in here: w+x
    for parent in reversed(path.parents):
        if not _allows(parent.stat(), user, 0o1):
            return parent
    return None if _allows(path.stat(), user, bits) else path


def _hand_over(state_dir: Path, user: ServiceUser, skip: Path | None) -> None:
    """Make the service user own its state (created as root before the drop), not the embedded
    database's directory, which belongs to PostgreSQL's own user."""
    for root, dirs, files in os.walk(state_dir):
        here = Path(root)
        if skip is not None and skip in (here / d for d in dirs):
            dirs.remove(skip.name)
        os.chown(here, user.uid, user.gid)
        for name in files:
            os.chown(here / name, user.uid, user.gid, follow_symlinks=False)


def drop_root(
    user_name: str,
    state_dir: Path,
    reads: Iterable[Path],
    pgdata: Path | None = None,
) -> ServiceUser | None:
    """Become ``user_name`` for good when running as root; None (nothing done) otherwise.

    ``reads`` are paths the service reads later (dialplan, prompts); ``pgdata`` the embedded
    database's directory, if one runs. Raises PrivilegeError, changing nothing, when a path
    would be out of the user's reach."""
    if os.geteuid() != 0 or not user_name:
        return None
    extra: list[int] = []
    if pgdata is not None:
        extra.append(pgdata.stat().st_gid)
    user = service_user(user_name, extra)
    python = {Path(p) for k, p in sysconfig.get_paths().items() if k in ("stdlib", "purelib")}
    state_dir = state_dir.resolve()
    checks = [(state_dir, 0o0)]  # handed over below: only its parents must let the user pass
    checks += [(p, 0o5 if p.is_dir() else 0o4) for p in (*reads, *sorted(python))]
    if pgdata is not None:
        checks.append((pgdata.parent, 0o1))
    for path, bits in checks:
        blocked = unreachable(path, user, bits)
        if blocked is not None:
            raise PrivilegeError(
                f"user {user.name!r} cannot reach {path} (blocked at {blocked}): give it access "
                "or set run_as_user to '' to keep running as root"
            )
    _hand_over(state_dir, user, pgdata.resolve() if pgdata is not None else None)
    if pgdata is not None and stat.S_IMODE(pgdata.stat().st_mode) == 0o700:
        # The group may enter to reach the socket; PostgreSQL accepts 0750 on its data dir.
        pgdata.chmod(0o750)
    os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)  # real, effective and saved uid: there is no way back
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - the kernel did not drop root
        raise PrivilegeError("still able to regain root after setuid")
    log.info("privileges_dropped", user=user.name, uid=user.uid, gid=user.gid)
    return user
