"""Kamailio (the Debian package) as the SIP edge in front of helpline nodes, for tests.

Runs the shipped `deploy/kamailio/kamailio.cfg` itself, its parameters given with `-A` (listen
address, node list, trunk addresses), in the foreground on loopback, with its own runtime
directory and a generated dispatcher list. `start()` returns once it answers an OPTIONS;
`close()` ends it (it also has a maximum life of its own, so a test process that dies leaves
nothing behind). Its log (stderr) is kept in the directory for `describe()` on failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.helpers.ports import free_port

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "kamailio" / "kamailio.cfg"
KAMAILIO = "/usr/sbin/kamailio"


PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:
    """In the child: SIGTERM when the test process dies (`timeout` passes it to Kamailio)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class KamailioError(RuntimeError):
    """Kamailio did not start or answer in time; carries the tail of its log."""


class Kamailio:
    def __init__(
        self,
        nodes: Sequence[tuple[str, int]],
        *,
        trunk_nets: Sequence[str],
        host: str = "127.0.0.1",
        port: int | None = None,
        max_life: float = 300.0,
    ) -> None:
        """nodes: (host, port) of the helpline nodes, the first the preferred (active) one."""
        for h in [host, *(n[0] for n in nodes)]:
            if not ipaddress.ip_address(h).is_loopback:
                raise ValueError(f"{h} is not a loopback address: test peers stay on loopback")
        self.nodes = list(nodes)
        self.trunk_nets = list(trunk_nets)
        self.host = host
        self.port = port or free_port(host)
        self.max_life = max_life
        self.dir = Path(tempfile.mkdtemp(prefix="kamailio-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        ds_list = self.dir / "dispatcher.list"
        rows = [
            f"1 sip:{h}:{p} 0 {100 - i}" for i, (h, p) in enumerate(self.nodes)
        ]  # the first node has the highest priority
        ds_list.write_text("\n".join(rows) + "\n")
        defines = {
            "LISTEN": f"udp:{self.host}:{self.port}",
            "LISTEN_TCP": f"tcp:{self.host}:{self.port}",
            "DISPATCHER_LIST": f'"{ds_list}"',
            "TRUNK_NETS": f'"{",".join(self.trunk_nets)}"',
        }
        return self.kamailio_args(CONFIG, defines, shared_mb=64, children=2)

    def kamailio_args(
        self, config: Path, defines: dict[str, str], *, shared_mb: int, children: int
    ) -> list[str]:
        """Kamailio in the foreground on `config`, its files in our directory, bounded in life."""
        args = [
            "timeout", "-k", "5", str(int(self.max_life)),
            KAMAILIO, "-f", str(config), "-DD", "-E", "-Y", str(self.dir), "-w", str(self.dir),
            "-P", str(self.dir / "kamailio.pid"), "-m", str(shared_mb), "-M", "8",
            "-n", str(children),
        ]  # fmt: skip
        for name, value in defines.items():
            args += ["-A", f"{name}={value}"]
        return args

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        log = (self.dir / "kamailio.log").open("wb")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_end_with_parent,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KamailioError(f"kamailio exited ({self.proc.returncode})\n{self.describe()}")
            if self.answers_options():
                return
            time.sleep(0.1)
        self.close()
        raise KamailioError(f"kamailio did not answer within {timeout} s\n{self.describe()}")

    def answers_options(self) -> bool:
        """An OPTIONS to the proxy itself is answered (200) by Kamailio alone."""
        call_id = uuid.uuid4().hex
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((self.host, 0))
            port = s.getsockname()[1]
            s.settimeout(0.3)
            msg = (
                f"OPTIONS sip:{self.host}:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.host}:{port};branch=z9hG4bK{call_id[:16]};rport\r\n"
                f"From: <sip:probe@{self.host}>;tag={call_id[:8]}\r\n"
                f"To: <sip:{self.host}:{self.port}>\r\nCall-ID: {call_id}\r\n"
                "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            try:
                s.sendto(msg.encode(), (self.host, self.port))
                data = s.recv(4096)
            except OSError:
                return False
        return data.startswith(b"SIP/2.0 200")

    def log_text(self, tail: int = 12000) -> str:
        try:
            return (self.dir / "kamailio.log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def describe(self) -> str:
        return f"--- kamailio log ({self.dir}) ---\n{self.log_text()}"

    def close(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.proc = None
        if os.environ.get("HELPLINE_KEEP_PEER_LOGS") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is not None:
            print(self.describe())  # shown by pytest with the failure
        self.close()
