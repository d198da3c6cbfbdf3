"""State and recordings are private to the service: files 0600 and directories 0700 from the
moment they exist (created with that mode, never chmod-ed afterwards, so there is no window in
which another local user can open a voicemail, a snapshot of credential hashes or the TLS key).

A mode given to open()/mkdir() is still narrowed by the umask, never widened: these modes hold
whatever umask the process runs with. Existing files and directories are left as they are.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["DIR_MODE", "FILE_MODE", "open_private", "private_dir", "write_private"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """``mkdir -p`` creating every missing directory with mode 0700; returns ``path``."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            directory.mkdir(mode=DIR_MODE)
    return path


def open_private(path: Path) -> BinaryIO:
    """A new file (truncated if it exists), created 0600, open for binary writing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    return os.fdopen(fd, "wb")


def write_private(path: Path, data: bytes | str) -> None:
    """Replace ``path`` atomically with ``data`` in a file created 0600 (a reader sees the old
    or the new content, never half of it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crash: O_EXCL below must create it afresh
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())  # state that must survive a crash is on disk before it counts
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
