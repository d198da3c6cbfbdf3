"""Keeps a softphone's IPv4 sockets on the one loopback address it was given (see one_address.c).

baresip 1.0 binds RTP to the wildcard address, and both baresip and linphone-cli open SIP over
TCP/TLS from unbound sockets, so on loopback the kernel sends them from 127.0.0.1 (the carrier
trunk's address in the tests) whatever address SIP listens on and SDP advertises. The shim,
compiled with the system's C compiler into the phone's directory and preloaded, binds those
sockets to the phone's address instead, as on a real handset with a single address.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("one_address.c")
ADDRESS_VARIABLE = "HELPLINE_PEER_ADDR"


def one_address_env(address: str, directory: Path) -> dict[str, str]:
    """Environment variables that keep a child process's IPv4 sockets on ``address``."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler for the one-address shim (scripts/bootstrap.sh)")
    library = directory / "one_address.so"
    built = subprocess.run(  # noqa: S603 - fixed argv
        [cc, "-shared", "-fPIC", "-O2", "-o", str(library), str(SOURCE), "-ldl"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if built.returncode != 0:
        raise RuntimeError(f"one-address shim did not compile:\n{built.stderr}")
    return {"LD_PRELOAD": str(library), ADDRESS_VARIABLE: address}
