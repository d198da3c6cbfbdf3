"""The service side of bench/bench_sip_calls.py: its processes and their CPU, ports, the service
started as `helpline serve` with its volunteer accounts, and the volunteers' registrations."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.peers.sipp import render_scenario, scenario_defaults  # noqa: E402

TRUNK_IP = "127.0.0.1"  # the trusted trunk (the service's default trunk_sources)
HANDSET_IP = "127.0.0.2"  # the volunteers' handsets
SERVICE_NUMBER = "09000767"
CALLER = "0201234567"  # a made-up caller number, as a carrier would send one
PASSWORD = "bench-pass-word-7"
REALM = "helpline"
VOLUNTEER_SCENARIO = Path(__file__).with_name("sipp_volunteer_answer.xml")
# The trunk's call: its SDP names the media port sipp itself holds open, as a carrier's does.
TRUNK_SCENARIO = Path(__file__).with_name("sipp_trunk_call.xml")
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
HZ = os.sysconf("SC_CLK_TCK")


def trunk_scenario(run_dir: Path, hold_ms: int, template: Path = TRUNK_SCENARIO) -> Path:
    """``template`` with its ``{{hold_ms}}`` (and any other key, at its default) filled in,
    written into ``run_dir``: sipp reads a recv's timeout as it loads the scenario, where its
    ``-d`` does not apply."""
    text = template.read_text()
    path = run_dir / template.name
    path.write_text(render_scenario(text, {**scenario_defaults(text), "hold_ms": str(hold_ms)}))
    return path


# --- processes ------------------------------------------------------------------------------------
class Processes:
    """Every child this bench starts; all are ended on exit, whatever happens."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], log: Path, **kwargs: object) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(  # type: ignore[call-overload]
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs
            )
        self.children.append(proc)
        return proc  # type: ignore[no-any-return]

    def end(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def end_all(self) -> None:
        for proc in reversed(self.children):
            self.end(proc)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (all its threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / HZ  # utime, stime (fields 14, 15)


def runqueue_wait(pid: int) -> float:
    """Seconds the process's main thread (the event loop) waited for a CPU while runnable:
    other processes on its core. High under load: its calls are then slow through no cost
    of its own."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return math.nan


def loop_wakeups(pid: int) -> int:
    """Times the process's main thread (the event loop) went to sleep and was woken: its
    voluntary context switches (the loop's waits, and any other call that blocked). Each costs
    CPU beyond the work it wakes for (on this VM tens of microseconds, more after a longer
    sleep: ``bench/bench_wakeups.py``), so at a low rate, where every message wakes the loop
    alone, a call costs more than at a high one."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(status.split("\nvoluntary_ctxt_switches:", 1)[1].split()[0])
    except (OSError, IndexError, ValueError):
        return -1


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_port(host: str) -> int:
    """A port free for both UDP and TCP on `host`."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def _udp_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        try:
            u.bind((host, port))
        except OSError:
            return False
    return True


def media_port(host: str, calls: int) -> int:
    """A free even port low enough for sipp's [auto_media_port] (base + 4 per call) to stay
    below 65536 for all `calls`; the ephemeral range is too high for that."""
    top = max(1100, 65530 - 4 * calls) // 2
    for _ in range(200):
        port = random.randrange(min(5000, top - 50), top) * 2
        if all(_udp_free(host, port + i) for i in range(4)):  # sipp binds audio and video pairs
            return port
    raise RuntimeError("no free media port")


# --- the service ----------------------------------------------------------------------------------
async def _create_volunteers(url: str, state: Path, users: list[str]) -> None:
    from pbx.db.database import open_database
    from pbx.db.volunteers import VolunteerRepository

    db = await open_database(url, state)
    try:
        repo = VolunteerRepository(db.pool)
        for user in users:
            await repo.create(user, PASSWORD, REALM)
    finally:
        await db.close()


def whisper_seconds(enabled: bool) -> float:
    """Length of the prompt the service plays to a volunteer before connecting the caller."""
    if not enabled:
        return 0.0
    from pbx.config import load_settings
    from pbx.media.prompts import PromptLibrary

    settings = load_settings()
    if not settings.volunteer_whisper:
        return 0.0
    try:
        pcm = PromptLibrary(settings.recordings).get("nl", settings.volunteer_whisper)
    except (OSError, KeyError, ValueError):
        return 0.0
    return len(pcm) / 16000  # 8 kHz, 16-bit mono


def pin(cpu: int | None) -> set[int] | None:
    """With `cpu`, pins this process (and so every child it starts from now on: sipp, the
    database, the registering client) to the other cores and returns {cpu} for the service
    alone, so "on one core" is what a run measures. None: no pinning."""
    if cpu is None:
        return None
    cores = os.sched_getaffinity(0)
    if cpu not in cores or len(cores) < 2:
        raise SystemExit(f"--service-cpu {cpu}: needs that core and another (have {sorted(cores)})")
    os.sched_setaffinity(0, cores - {cpu})
    return {cpu}


def rtp_span(volunteers: int) -> int:
    """RTP ports the bench's service gets: two RTP/RTCP pairs per call, at most one call per
    volunteer, and 400 more (ports taken by others are skipped)."""
    return min(40000, max(2000, 4 * volunteers + 400))


def start_service(
    procs: Processes,
    state: Path,
    db_url: str,
    port: int,
    whisper: bool,
    volunteers: int,
    cpus: set[int] | None = None,
    rtp_low: int | None = None,
) -> subprocess.Popen[bytes]:
    """``rtp_low``: the first RTP port of the service's range (default: a random one)."""
    helpline = Path(sys.executable).with_name("helpline")
    cmd = [str(helpline)] if helpline.exists() else [sys.executable, "-m", "pbx.cli"]
    cmd += ["serve", "--sip-host", TRUNK_IP, "--sip-port", str(port), "--tls-port", "0"]
    cmd += ["--metrics-port", "0", "--state-dir", str(state), "--database-url", db_url]
    span = rtp_span(volunteers)
    rtp = random.randrange(20000, 65000 - span) // 2 * 2 if rtp_low is None else rtp_low
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),  # this checkout's code, whichever one the venv installed
        "HELPLINE_DIGEST_ALGORITHMS": "MD5",  # sipp only answers MD5, and only the first
        "HELPLINE_KEEPALIVE_INTERVAL": "3600",
        "HELPLINE_RTP_PORT_MIN": str(rtp),
        "HELPLINE_RTP_PORT_MAX": str(rtp + span - 1),
        "HELPLINE_LOG_FORMAT": "json",
        "HELPLINE_CALL_FLOW": "direct",  # measure SIP call setup, not the IVR's prompts
        # Stay the user this bench runs as: as root the service would become its own user,
        # which cannot reach this bench's database socket, and every call record would go to
        # the write-behind journal instead of the database.
        "HELPLINE_RUN_AS_USER": "",
        # Every handset here is one address (127.0.0.2), which per-source admission would ban
        # as a flood; real handsets each have their own.
        "HELPLINE_ADMISSION_REQUESTS_PER_SECOND": "1000000",
        "HELPLINE_ADMISSION_REQUEST_BURST": "1000000",
        "HELPLINE_ADMISSION_BYTES_PER_SECOND": "1000000000",
        "HELPLINE_ADMISSION_BYTE_BURST": "1000000000",
        # The tables are bounded for a helpline (20,000 transactions, 5,000 dialogs); a
        # finished call's transactions linger 32 s (RFC 3261 Timers J, L, M), so hundreds of
        # setups a second need bigger bounds, or the bench measures 503s instead of CPU.
        "HELPLINE_MAX_TRANSACTIONS": "400000",
        "HELPLINE_MAX_DIALOGS": "50000",
    }
    if not whisper:
        env["HELPLINE_VOLUNTEER_WHISPER"] = ""
    if cpus is None:
        return procs.start(cmd, state / "service.log", env=env, cwd=state)
    return procs.start(
        cmd, state / "service.log", env=env, cwd=state,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )  # fmt: skip


def _send(sock: socket.socket, text: str, target: tuple[str, int]) -> None:
    sock.sendto(text.replace("\n", "\r\n").encode(), target)


def _recv(sock: socket.socket, call_id: str, deadline: float) -> str:
    """The next response for `call_id` (anything else is dropped)."""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65535).decode("utf-8", "replace")
        final = data.startswith("SIP/2.0 ") and not data.startswith("SIP/2.0 1")
        if final and f"Call-ID: {call_id}" in data:
            return data


def wait_ready(
    proc: subprocess.Popen[bytes], target: tuple[str, int], log: Path, timeout: float = 90
) -> None:
    """Polls the service with OPTIONS until it answers (it opens the database first)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HANDSET_IP, 0))
        me = sock.getsockname()[1]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"service exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
                )
            call_id = secrets.token_hex(8)
            _send(
                sock,
                f"OPTIONS sip:{target[0]}:{target[1]} SIP/2.0\n"
                f"Via: SIP/2.0/UDP {HANDSET_IP}:{me};branch=z9hG4bK{secrets.token_hex(6)};rport\n"
                f"From: <sip:probe@{HANDSET_IP}>;tag=p\nTo: <sip:{target[0]}>\n"
                f"Call-ID: {call_id}\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n",
                target,
            )
            try:
                _recv(sock, call_id, time.monotonic() + 0.5)
                return
            except TimeoutError:
                continue
    raise TimeoutError(f"service did not answer within {timeout:g} s:\n{log.read_text()[-3000:]}")


def _digest(challenge: str, user: str, uri: str) -> str:
    header = next(
        line for line in challenge.split("\r\n") if line.lower().startswith("www-authenticate")
    )
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', header.split(" ", 2)[-1]))
    ha1 = hashlib.md5(f"{user}:{params.get('realm', REALM)}:{PASSWORD}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
    nonce = params["nonce"]
    auth = f'Digest username="{user}", realm="{params.get("realm", REALM)}", nonce="{nonce}", '
    auth += f'uri="{uri}", algorithm=MD5'
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(4), "00000001"
        resp = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        auth += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        resp = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    if "opaque" in params:
        auth += f', opaque="{params["opaque"]}"'
    return auth + f', response="{resp}"'


def register_all(users: list[str], target: tuple[str, int], port: int) -> None:
    """REGISTERs every user from HANDSET_IP:port, so the service sends their calls there."""
    uri = f"sip:{target[0]}:{target[1]}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HANDSET_IP, port))
        for user in users:
            call_id = secrets.token_hex(8)
            base = (
                f"REGISTER {uri} SIP/2.0\n"
                f"Via: SIP/2.0/UDP {HANDSET_IP}:{port};branch=z9hG4bK{{branch}};rport\n"
                f"From: <sip:{user}@{target[0]}>;tag={secrets.token_hex(4)}\n"
                f"To: <sip:{user}@{target[0]}>\nCall-ID: {call_id}\nCSeq: {{cseq}} REGISTER\n"
                f"Contact: <sip:{user}@{HANDSET_IP}:{port}>\nExpires: 3600\n"
                "Max-Forwards: 70\n{auth}Content-Length: 0\n\n"
            )
            final = ""
            for cseq, auth in ((1, ""), (2, None)):
                if auth is None:
                    auth = f"Authorization: {_digest(final, user, uri)}\n"
                msg = base.format(branch=secrets.token_hex(6), cseq=cseq, auth=auth)
                for _ in range(4):  # UDP: resend on loss
                    _send(sock, msg, target)
                    try:
                        final = _recv(sock, call_id, time.monotonic() + 2)
                        break
                    except TimeoutError:
                        continue
            if not final.startswith("SIP/2.0 200"):
                raise RuntimeError(f"REGISTER {user} failed: {final.splitlines()[:1]}")
