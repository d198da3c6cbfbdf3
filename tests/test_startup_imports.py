"""A restart puts the line back within seconds, so `helpline serve` loads only what the service
uses: not matplotlib (a second to import, for `helpline report --charts` alone), and no
password hash is computed while modules load (argon2's dummy hash, a third of a second, is
made at the first console login). Checked in a fresh interpreter, as the service starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# What `helpline serve` imports before it answers: the command line with every subcommand's
# parser, then the service itself (pbx/commands/serve.py imports pbx.app when it runs).
SERVE_IMPORTS = """
import sys
from pbx.cli import build_parser
build_parser()
import pbx.app
import pbx.web.accounts as accounts
print(sorted(m for m in ("matplotlib", "numpy", "pbx.report_charts") if m in sys.modules))
print(accounts._dummy_hash.cache_info().currsize)
"""


def test_serve_does_not_load_the_report_charts_or_hash_a_password_at_start() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE_IMPORTS], cwd=REPO, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    loaded, hashes = done.stdout.splitlines()
    assert loaded == "[]", f"the service's start loads {loaded}"
    assert hashes == "0", "a password hash was computed at import"


def test_unknown_and_known_console_names_are_verified_alike() -> None:
    """The dummy hash made on first use still stands in for an unknown name."""
    from pbx.web.accounts import hash_password, verify_password

    stored = hash_password("correct horse battery")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "wrong horse battery")
    assert not verify_password(None, "correct horse battery")
    assert not verify_password(None, "no such account, but the same work")
