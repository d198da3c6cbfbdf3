"""`helpline serve` as a real subprocess on loopback: for what only a process shows (being
killed, started again, draining on SIGTERM and exiting)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pbx.db.database import open_database
from pbx.db.volunteers import VolunteerRepository
from tests.helpers.service import clean_database, free_port

HELPLINE = str(Path(sys.executable).with_name("helpline"))


async def fresh_volunteers(pg_url: str, tmp: Path, *names: str, password: str) -> None:
    """An empty database with these volunteers (Dutch speakers, no PIN)."""
    await clean_database(pg_url)
    db = await open_database(pg_url, tmp)
    try:
        repo = VolunteerRepository(db.pool)
        for name in names:
            await repo.create(name, password, "helpline", languages=["nl"])
    finally:
        await db.close()


@dataclass
class Served:
    state_dir: Path
    dialplan: Path
    database_url: str
    sip_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)  # extra HELPLINE_* settings
    host: str = "127.0.0.1"  # SIP address (two nodes: one loopback address each)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    _log: IO[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.sip_port}"

    def log_path(self, run: int | None = None) -> Path:
        return self.state_dir.parent / f"serve-{self.runs if run is None else run}.log"

    def start(self, database_url: str | None = None) -> None:
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
        env["HELPLINE_DATABASE_URL"] = database_url or self.database_url
        # below the kernel's ephemeral ports, as tests/helpers/service.py does
        env["HELPLINE_RTP_PORT_MIN"] = str(20000 + (self.sip_port % 120) * 100)
        env["HELPLINE_RTP_PORT_MAX"] = str(20000 + (self.sip_port % 120) * 100 + 98)
        env["HELPLINE_WEB_PORT"] = "none"  # the wallboard's own tests give it a free port
        env["HELPLINE_RUN_AS_USER"] = ""  # stays root: dropping it is tests/test_privileges.py's
        env.update(self.env)
        self._log = self.log_path().open("wb")
        self.proc = subprocess.Popen(
            [
                HELPLINE, "serve", "--sip-host", self.host, "--sip-port", str(self.sip_port),
                "--tls-port", "0", "--metrics-port", str(self.metrics_port),
                "--state-dir", str(self.state_dir), "--dialplan", str(self.dialplan),
            ],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip

    def ready(self) -> int | None:
        """The status of GET /ready, None while nothing answers."""
        url = f"http://127.0.0.1:{self.metrics_port}/ready"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()

    def events(self, run: int | None = None) -> list[dict[str, Any]]:
        lines = self.log_path(run).read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def describe(self) -> str:
        return self.log_path().read_text(errors="replace")[-6000:]
