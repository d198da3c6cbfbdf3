"""A flood from one address while the carrier places real calls: what the flood costs the calls.

For each flood rate in turn a fresh service is started (`helpline serve` on its embedded
defaults, the IVR call flow, on an embedded PostgreSQL this script starts once), so every level
begins with no ban in force. Then, at the same time:

- the trunk, a sipp UAC on 127.0.0.1 (tests/peers/scenarios/uac_call_rtpstream.xml), places
  calls at --cps for the flood's duration: INVITE to 09000767 with SDP, the IVR answers, sipp
  streams a 1 s tone of G.711 RTP to the service's media port and hangs up after --hold-ms;
- the flooder (tests/peers/flooder.py, its own process) sends OPTIONS, INVITE and REGISTER
  without credentials and junk, each a new request, from 127.0.0.2 at the flood rate for
  --seconds.

Per flood rate it prints: the rate the flooder achieved; the trunk's calls attempted, succeeded
(answered and ended cleanly) and the success %; call setup p50/p95 (INVITE to 200, sipp's
-trace_rtt, whole ms) and the trunk's retransmissions (INVITE/BYE resent after 500 ms without
an answer: a datagram was lost or the service fell behind); the flooder's answered share
(distinct requests that got any response / requests sent) and response packets received
(retransmitted 4xx included: the reflection the flood earned); the time until the ban (the last
first answer the flooder got, from its first packet); and the service's average CPU over the
level in % of one core. Rate 0 is the baseline without a flood. Prints figures, asserts
nothing; the machine is shared, so figures are noisy.

    .venv/bin/python bench/flood.py [--rates 0 2000 5000 10000 20000] [--seconds 10]
        [--cps 5] [--hold-ms 2000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_sip_calls import (  # noqa: E402
    Processes,
    cpu_seconds,
    database,
    free_port,
    machine,
    media_port,
    number,
    percentile,
    rtt_samples,
    sipp_base,
    stats_rows,
)
from pbx.logs import configure_logging  # noqa: E402
from tests.peers.rtp_pcap import tone_samples, write_ulaw  # noqa: E402
from tests.peers.sipp import scenario_path  # noqa: E402

TRUNK_IP = "127.0.0.1"
FLOODER_IP = "127.0.0.2"
SERVICE_NUMBER = "09000767"


def start_service(procs: Processes, state: Path, db_url: str, port: int) -> subprocess.Popen[bytes]:
    state.mkdir(parents=True)
    state.chmod(0o755)
    helpline = Path(sys.executable).with_name("helpline")
    cmd = [str(helpline)] if helpline.exists() else [sys.executable, "-m", "pbx.cli"]
    cmd += ["serve", "--sip-host", TRUNK_IP, "--sip-port", str(port), "--tls-port", "0"]
    cmd += ["--metrics-port", "0", "--state-dir", str(state), "--database-url", db_url]
    rtp = random.randrange(20000, 60000) // 2 * 2
    env = {
        **os.environ,
        "HELPLINE_RTP_PORT_MIN": str(rtp),
        "HELPLINE_RTP_PORT_MAX": str(rtp + 2000),
        "HELPLINE_LOG_FORMAT": "json",
        "HELPLINE_LOG_LEVEL": "warning",  # a flood must not be measured as log writing
        "HELPLINE_CALL_FLOW": "ivr",
    }
    return procs.start(cmd, state / "service.log", env=env, cwd=state)


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 90) -> None:
    """OPTIONS from the trunk address until the service answers (it opens the database first)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((TRUNK_IP, 0))
        me = sock.getsockname()[1]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"service exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
                )
            call_id = secrets.token_hex(8)
            text = (
                f"OPTIONS sip:{TRUNK_IP}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {TRUNK_IP}:{me};branch=z9hG4bK{call_id};rport\r\n"
                f"From: <sip:probe@{TRUNK_IP}>;tag=p\r\nTo: <sip:{TRUNK_IP}>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(text.encode(), (TRUNK_IP, port))
            sock.settimeout(0.5)
            try:
                if call_id.encode() in sock.recv(65535):
                    return
            except TimeoutError:
                continue
    raise TimeoutError(f"service did not answer within {timeout:g} s")


@dataclass
class Level:
    rate: float
    flood: dict[str, float] = field(default_factory=dict)
    attempted: int = 0
    succeeded: int = 0
    retransmissions: int = 0
    setup_ms: tuple[float, float] = (math.nan, math.nan)
    service_cpu: float = math.nan  # share of one core over the level
    failures: list[str] = field(default_factory=list)

    @property
    def success(self) -> float:
        return 100 * self.succeeded / self.attempted if self.attempted else math.nan


def run_level(
    procs: Processes, work: Path, db_url: str, rate: float, args: argparse.Namespace, audio: Path
) -> Level:
    level_dir = work / f"rate{rate:g}"
    port = free_port(TRUNK_IP)
    service = start_service(procs, level_dir / "service", db_url, port)
    level = Level(rate)
    try:
        wait_ready(service, port, level_dir / "service" / "service.log")
        calls = max(1, round(args.cps * args.seconds))
        sipp_dir = level_dir / "trunk"
        sipp_dir.mkdir()
        shutil.copyfile(audio, sipp_dir / "audio.ulaw")
        timeout_s = args.seconds + args.hold_ms / 1000 + 30
        scenario = sipp_dir / "uac_call_rtpstream.xml"
        text = scenario_path("uac_call_rtpstream").read_text()
        scenario.write_text(text.replace("{{audio_file}}", "audio.ulaw").replace("{{loops}}", "1"))
        cmd = sipp_base(scenario, TRUNK_IP, free_port(TRUNK_IP), timeout_s, sipp_dir, calls)
        cmd[cmd.index("-mp") + 1] = str(media_port(TRUNK_IP, calls))
        cmd += ["-m", str(calls), "-r", f"{args.cps:g}", "-d", str(args.hold_ms)]
        cmd += ["-s", SERVICE_NUMBER, "-l", str(calls), "-trace_rtt", "-rtt_freq", "1"]
        cmd += ["-key", "caller", "0201234567", "-key", "caller_display", "Anonymous"]
        cmd += [f"{TRUNK_IP}:{port}"]
        cpu0, t0 = cpu_seconds(service.pid), time.monotonic()
        trunk = procs.start(cmd, sipp_dir / "sipp.log", cwd=sipp_dir)
        flooder = None
        if rate > 0:
            flood_cmd = [
                sys.executable, "-m", "tests.peers.flooder", "--source", FLOODER_IP,
                "--target", f"{TRUNK_IP}:{port}", "--rate", f"{rate:g}",
                "--seconds", f"{args.seconds:g}", "--drain", "1",
            ]  # fmt: skip
            flooder = subprocess.Popen(flood_cmd, cwd=REPO, stdout=subprocess.PIPE)
            procs.children.append(flooder)  # type: ignore[arg-type]
            out, _ = flooder.communicate(timeout=args.seconds + 60)
            level.flood = json.loads(out)
        try:
            trunk.wait(timeout=timeout_s + 15)
        except subprocess.TimeoutExpired:
            procs.end(trunk, signal.SIGKILL)
            level.failures.append("sipp hung")
        level.service_cpu = (cpu_seconds(service.pid) - cpu0) / (time.monotonic() - t0)
        rows = stats_rows(sipp_dir / "stats.csv")
        if rows:
            last = rows[-1]
            level.attempted = number(last, "OutgoingCall(C)")
            level.succeeded = number(last, "SuccessfulCall(C)")
            level.retransmissions = number(last, "Retransmissions(C)")
            level.failures += [
                f"{k[6:-3]}={v}" for k, v in last.items()
                if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)"
                and number(last, k)
            ]  # fmt: skip
        setup = [ms for _, ms in rtt_samples(sipp_dir)]
        level.setup_ms = (percentile(setup, 0.5), percentile(setup, 0.95))
    finally:
        procs.end(service)
    return level


HEADER = (
    f"{'flood/s':>7} {'sent/s':>7} {'calls':>5} {'ok':>4} {'ok %':>6} {'setup p50':>9} "
    f"{'p95':>7} {'retr':>4} {'answered':>8} {'share':>7} {'resp pkts':>9} {'ban after':>9} "
    f"{'svc CPU':>7}"
)


def line(lv: Level) -> str:
    f = lv.flood
    sent_rate = f["sent"] / f["seconds"] if f.get("seconds") else 0.0
    ban = f.get("last_answer")
    ban_text = f"{ban:>8.3f}s" if ban is not None else f"{'-':>9}"
    share = 100 * f.get("answered_share", 0.0)
    p50, p95 = lv.setup_ms
    text = (
        f"{lv.rate:>7g} {sent_rate:>7.0f} {lv.attempted:>5} {lv.succeeded:>4} {lv.success:>5.1f}% "
        f"{p50:>7.0f}ms {p95:>5.0f}ms {lv.retransmissions:>4} {int(f.get('answered', 0)):>8} "
        f"{share:>6.2f}% {int(f.get('responses', 0)):>9} {ban_text} {100 * lv.service_cpu:>6.0f}%"
    )
    if lv.failures:
        text += f"  failures: {', '.join(lv.failures)}"
    return text


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0, 2000, 5000, 10000, 20000])
    parser.add_argument("--seconds", type=float, default=10.0, help="flood duration per rate")
    parser.add_argument("--cps", type=float, default=5.0, help="trunk calls per second")
    parser.add_argument("--hold-ms", type=int, default=2000, help="call length after answer")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # ends like Ctrl-C, so the cleanup still runs
    configure_logging("warning", "console")
    print(machine(), flush=True)
    print(
        f"flood from {FLOODER_IP} for {args.seconds:g} s per rate; trunk {TRUNK_IP}: "
        f"{args.cps:g} calls/s with RTP, hold {args.hold_ms} ms; fresh service per rate",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="helpline-bench-flood-"))
    work.chmod(0o755)
    procs = Processes()
    audio = write_ulaw(work / "audio.ulaw", tone_samples(700, 1000))
    try:
        with database(work / "db") as db:
            print(HEADER, flush=True)
            for rate in args.rates:
                level = run_level(procs, work, db.url, rate, args, audio)
                print(line(level), flush=True)
                if level.failures:
                    args.keep = True
    except KeyboardInterrupt:
        print("interrupted")
        args.keep = True
    finally:
        procs.end_all()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
