"""State written by the service is private to it: files 0600, directories 0700, from creation."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pbx.private_files import private_dir, write_private
from tests.helpers.service import MakeHelpline


def modes(root: Path) -> dict[str, int]:
    """Mode of everything under ``root`` (the embedded database's own directory aside)."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if relative.parts[0] != "pg":
            found[str(relative)] = stat.S_IMODE(path.lstat().st_mode)
    return found


async def test_the_service_creates_its_state_private(make_helpline: MakeHelpline) -> None:
    old = os.umask(0o022)  # the usual umask, which would leave new files world-readable
    try:
        async with make_helpline() as helpline:
            await helpline.add_volunteer("wim", "pass-word-mod")  # writes the snapshots
            state = modes(helpline.settings.state_dir)
    finally:
        os.umask(old)
    for name in ("helpline.pid", "tls/sip-selfsigned.key", "tls/sip-selfsigned.pem"):
        assert state.get(name) == 0o600, (name, state)
    assert any(name.endswith(".json") for name in state), state  # the credential snapshots
    for name in (".", "tls", "writebehind"):
        assert state.get(name) == 0o700, (name, state)
    for name, mode in state.items():
        assert mode in (0o600, 0o700), f"{name} has mode {mode:o}"
        assert mode & 0o077 == 0


def test_private_helpers_hold_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        folder = private_dir(tmp_path / "a" / "b")
        write_private(folder / "x.json", "{}")
        write_private(folder / "x.json", "[]")  # replaced atomically, still private
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "x.json").stat().st_mode) == 0o600
    assert (folder / "x.json").read_text() == "[]"
    assert sorted(p.name for p in folder.iterdir()) == ["x.json"]  # no temporary file left
