"""Start-up to answering calls: from `helpline serve` being spawned to the first trunk INVITE
answered (200 OK), with volunteers on shift to restore (issue 10: target under 3 s).

An embedded PostgreSQL (started once here, not counted) holds N volunteers, each with a shift
row (available) and a registration, as a restart at 03:00 would find them. Each run spawns
the service (IVR call flow, the default dialplan), and a trunk client on 127.0.0.1 sends the
same INVITE every 20 ms from the moment of the spawn until a 200 comes back. Printed per run
and as the median: time to the 200, and the phases from the service's own log (first log
line = Python and the imports are done; service_started = database, prompts, restore and
sockets ready). Also the import time of the service's modules alone. Asserts nothing; the
machine is shared, so figures are noisy.

    .venv/bin/python bench/bench_startup.py [--runs 5] [--volunteers 900] [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pbx import event_loop  # noqa: E402
from pbx.db.database import open_database  # noqa: E402
from pbx.sip.digest import Credential  # noqa: E402

HELPLINE = str(Path(sys.executable).with_name("helpline"))
PASSWORD = "bench-pass-word-7"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def populate(url: str, state: Path, volunteers: int) -> None:
    """N volunteers on shift with a live registration each (rows written directly: fast)."""
    db = await open_database(url, state)
    now = datetime.now(UTC)
    try:
        await db.pool.execute("TRUNCATE volunteers, registrations, shifts, events CASCADE")
        rows, shifts, regs = [], [], []
        for i in range(volunteers):
            user = f"vol{i:04d}"
            cred = Credential.from_password(user, "helpline", PASSWORD)
            rows.append((user, "helpline", cred.ha1_md5, cred.ha1_sha256, ["nl"]))
            shifts.append((user, "available", now, now, 0, now))
            contact = f"sip:{user}@127.0.0.2:{10000 + i}"
            regs.append(
                (user, contact, "127.0.0.2", 10000 + i, "udp", now + timedelta(hours=1),
                 str(uuid.uuid4()), 1, contact)
            )  # fmt: skip
        await db.pool.executemany(
            "INSERT INTO volunteers (username, realm, ha1_md5, ha1_sha256, languages)"
            " VALUES ($1, $2, $3, $4, $5)",
            rows,
        )
        await db.pool.executemany(
            "INSERT INTO shifts (username, state, state_since, idle_since, consecutive_misses,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
            shifts,
        )
        await db.pool.executemany(
            "INSERT INTO registrations (aor, binding_key, received_host, received_port, transport,"
            " expires_at, call_id, cseq, contact) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
            regs,
        )
    finally:
        await db.close()


def invite(port: int, local_port: int) -> bytes:
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        f"INVITE sip:09000767@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch};rport\r\n"
        f"From: <sip:anonymous@127.0.0.1:{local_port}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:09000767@127.0.0.1:{port}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@bench\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:anonymous@127.0.0.1:{local_port}>\r\nMax-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def one_run(url: str, state: Path, work: Path, run: int) -> dict[str, float]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    # PYTHONPATH: this checkout's code, whichever checkout the venv's `helpline` was installed from
    env.update(HELPLINE_DATABASE_URL=url, HELPLINE_KEEPALIVE_INTERVAL="3600", PYTHONPATH=str(REPO))
    log = work / f"serve-{run}.log"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client, log.open("wb") as out:
        client.bind(("127.0.0.1", 0))
        client.settimeout(0.02)
        message = invite(port, client.getsockname()[1])
        wall0, t0 = time.time(), time.monotonic()
        proc = subprocess.Popen(
            [HELPLINE, "serve", "--sip-host", "127.0.0.1", "--sip-port", str(port),
             "--tls-port", "0", "--metrics-port", "0", "--state-dir", str(state)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        answered = None
        try:
            while answered is None and time.monotonic() - t0 < 60:
                client.sendto(message, ("127.0.0.1", port))
                with contextlib.suppress(TimeoutError, ConnectionRefusedError):
                    data = client.recv(65535)
                    if data.startswith(b"SIP/2.0 200"):
                        answered = time.monotonic() - t0
            # The stack answers before the start is over (the web server, then service_started):
            # stopping at once would cut the line this run times.
            while (
                proc.poll() is None
                and b'"service_started"' not in log.read_bytes()
                and time.monotonic() - t0 < 60
            ):
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]

    def at(name: str) -> float:
        for e in events:
            if e["event"] == name:
                return datetime.fromisoformat(e["timestamp"]).timestamp() - wall0
        return float("nan")

    first = (
        datetime.fromisoformat(events[0]["timestamp"]).timestamp() - wall0
        if events
        else float("nan")
    )
    restored = sum(1 for e in events if e["event"] == "shift_restored")
    return {
        "answered": answered if answered is not None else float("nan"),
        "first_log": first,
        "started": at("service_started"),
        "restored": float(restored),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--volunteers", type=int, default=900)
    parser.add_argument("--database-url", help="an existing PostgreSQL (default: embedded)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    server = None
    try:
        url = args.database_url
        if url is None:
            from pbx.db.embedded import start_embedded

            pg = work / "pg"
            pg.mkdir()
            pg.chmod(0o755)
            server = start_embedded(pg)
            url = server.url
        state = work / "state"
        state.mkdir()
        event_loop.run(populate(url, state, args.volunteers))
        t = time.monotonic()
        # what `helpline serve` loads: the command line with every subcommand, then the service
        serve_imports = "from pbx.cli import build_parser; build_parser(); import pbx.app"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-c", serve_imports], check=True, env=env)
        imports = time.monotonic() - t
        load = os.getloadavg()
        print(f"machine: nproc={os.cpu_count()} load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(f"{args.volunteers} volunteers on shift to restore; python + imports alone "
              f"{imports:.2f} s")  # fmt: skip
        print("run  first-log  service_started  answered(200)  restored")
        results = []
        for run in range(1, args.runs + 1):
            # a restart finds the previous run's snapshots too, as a real one would
            r = one_run(url, state, work, run)
            results.append(r)
            print(
                f"{run:3d}  {r['first_log']:8.2f}s  {r['started']:14.2f}s  "
                f"{r['answered']:12.2f}s  {int(r['restored']):8d}"
            )
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(
            f"median: first log {med['first_log']:.2f} s, service_started {med['started']:.2f} s,"
            f" first trunk INVITE answered {med['answered']:.2f} s after the spawn (target < 3 s)"
        )
    finally:
        if server is not None:
            server.stop(force=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
