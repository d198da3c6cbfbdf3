"""The volunteer directory's snapshots (what a start without the database reads): rewritten when
the volunteers change, and left alone by the 15-second refresh when nothing did. Every rewrite
is an fsync on the event loop, so an unchanged one is skipped."""

from __future__ import annotations

import json
import os

from pbx.directory import CREDENTIALS_SNAPSHOT, PROFILES_SNAPSHOT
from tests.helpers.service import MakeHelpline

SNAPSHOTS = (CREDENTIALS_SNAPSHOT, PROFILES_SNAPSHOT)


async def test_refresh_rewrites_the_snapshots_only_when_the_volunteers_changed(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline() as helpline:
        state = helpline.settings.state_dir

        def files() -> dict[str, tuple[int, dict[str, object]]]:
            """Each snapshot's inode (a rewrite replaces the file) and content."""
            out = {}
            for name in SNAPSHOTS:
                path = state / name
                out[name] = (os.stat(path).st_ino, json.loads(path.read_text()))
            return out

        await helpline.add_volunteer("wim", "pass-word-mod")
        first = files()
        assert all(set(doc) == {"wim"} for _, doc in first.values())

        await helpline.service.reload_credentials()  # as the refresh does: nothing changed
        await helpline.service.reload_credentials()
        assert files() == first  # same files, not rewritten

        await helpline.add_volunteer("els", "pass-word-xyz", languages=["nl", "ar"])
        second = files()
        for name in SNAPSHOTS:
            assert second[name][0] != first[name][0], name  # rewritten
            assert set(second[name][1]) == {"wim", "els"}, name
        assert second[PROFILES_SNAPSHOT][1]["els"]["languages"] == ["nl", "ar"]

        (state / CREDENTIALS_SNAPSHOT).unlink()  # lost from the disk: the next refresh restores it
        await helpline.service.reload_credentials()
        assert files()[CREDENTIALS_SNAPSHOT][1] == second[CREDENTIALS_SNAPSHOT][1]
        assert files()[PROFILES_SNAPSHOT] == second[PROFILES_SNAPSHOT]
