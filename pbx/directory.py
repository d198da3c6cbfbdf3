"""Who the volunteers are, in memory: digest credentials (for the registrar and the switchboard)
and profiles (languages, skills, region, PIN hash, for the shift desk and the queues).

Loaded from the database at start and every refresh, and snapshotted to the state directory so
that the service can start, and volunteers log in and be rung, while the database is away.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from pbx.db.persistence import Persistence
from pbx.db.volunteers import VolunteerRepository
from pbx.private_files import write_private
from pbx.profile import Profile
from pbx.sip.digest import Credential
from queues.roster import Roster, VolunteerState

log = structlog.get_logger("pbx.directory")

CREDENTIALS_SNAPSHOT = "credentials.snapshot.json"
PROFILES_SNAPSHOT = "profiles.snapshot.json"  # languages, skills, region, PIN hash


@dataclass
class Directory:
    state_dir: Path
    # Replaced in place, never rebound: the registrar is built holding this very dict.
    credentials: dict[str, Credential] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    # What each snapshot file holds, as written: a refresh that changed nothing writes nothing.
    # Not derived from `credentials`/`profiles`: those are swapped in before the write, so a
    # write that failed would otherwise never be retried.
    _written: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict, repr=False)

    def current_profiles(self) -> dict[str, Profile]:
        return self.profiles

    async def load(self, pool: asyncpg.Pool) -> None:
        """Everything from the database; then snapshotted for a start without it."""
        repo = VolunteerRepository(pool)
        creds = await repo.load_credentials()
        profiles = await repo.load_profiles()
        self._swap(creds, profiles)
        self._write_snapshot(CREDENTIALS_SNAPSHOT, creds)
        self._write_snapshot(PROFILES_SNAPSHOT, profiles)

    def restore(self) -> None:
        """The last snapshots, for a start while the database is unreachable."""
        creds = self._read_snapshot(CREDENTIALS_SNAPSHOT)
        profiles = self._read_snapshot(PROFILES_SNAPSHOT)
        try:
            credentials = {u: Credential(**c) for u, c in creds.items()}
            self.credentials.clear()
            self.credentials.update(credentials)
            self.profiles = {
                u: Profile(
                    **{**p, "languages": tuple(p["languages"]), "skills": tuple(p["skills"])}
                )
                for u, p in profiles.items()
            }
        except (TypeError, KeyError) as exc:  # written by another version: start without
            log.error("snapshot_unreadable", error=str(exc)[:200])

    def _swap(self, creds: dict[str, Credential], profiles: dict[str, Profile]) -> None:
        self.credentials.clear()
        self.credentials.update(creds)
        self.profiles = profiles

    def _write_snapshot(self, name: str, records: Mapping[str, Credential | Profile]) -> None:
        """Written (and fsynced) only when it differs from what this process wrote last: the
        refresh runs every 15 s, and an unchanged file rewritten each time costs a blocking
        fsync of the event loop for nothing. The fields are strings, flags and tuples of
        strings, so a shallow copy of each record is its snapshot."""
        rows = {u: dict(vars(r)) for u, r in records.items()}
        path = self.state_dir / name
        if self._written.get(name) == rows and path.exists():
            return
        write_private(path, json.dumps(rows))  # created 0600: holds digest hashes
        self._written[name] = rows

    def _read_snapshot(self, name: str) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads((self.state_dir / name).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


LOGOUT_NOW = (VolunteerState.AVAILABLE, VolunteerState.WRAP_UP, VolunteerState.PAUSED)


async def refresh_directory(directory: Directory, persistence: Persistence, roster: Roster) -> None:
    """Credentials and profiles read again (connecting to the database if it was away); a
    volunteer an admin disabled (or removed) is logged out, one ringing or in a call finishes
    it first and is logged out at the next refresh."""
    db = await persistence.reconnect()
    if db is None:
        return
    await directory.load(db.pool)
    for v in list(roster.volunteers()):
        if v.username not in directory.profiles and v.state in LOGOUT_NOW:
            roster.logout(v.username, time.time(), reason="disabled")
