"""A state directory the embedded PostgreSQL can use from tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def pg_state_dir() -> Iterator[Path]:
    """A state dir outside pytest's private base (which other pytest runs keep chmod-ing 0700):
    as root, pgserver runs PostgreSQL as its own user, which must reach the data directory."""
    path = Path(tempfile.mkdtemp(prefix="helpline-dbtest-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
