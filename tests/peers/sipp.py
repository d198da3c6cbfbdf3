"""Runs sipp (SIPp 3.6.1, Debian package sip-tester) as a real SIP peer in tests.

Every run gets its own directory (``SippResult.run_dir``) holding the message trace, the
unexpected-message log, the statistics CSV, the final screen and the ``<log>`` action output,
and every run is bounded: ``-timeout`` with ``-timeout_error`` inside sipp, and a hard kill of
the process a few seconds later should sipp itself hang. The texts are loaded into the result;
the directory is deleted after a clean run (a failed run's stays, ``describe()`` names it),
unless ``HELPLINE_KEEP_PEER_LOGS=1`` is set.

Loopback only: sipp binds its SIP socket (``-i`` + ``-bind_local``), its media address
(``-mi``) and its control socket (``-ci``) to ``local_ip`` (127.0.0.1 or 127.0.0.2).

Scenarios live in ``tests/peers/scenarios``; pass a bare name (``"uac_call"``) or a path.
Custom keywords go through ``keys`` (``-key name value`` -> ``[name]`` in the scenario).
Files that a scenario loads by relative name (pcap files for ``play_pcap_audio``, which sipp
reads when it loads the scenario, so keywords cannot name them) go through ``files``: they are
copied into the run directory, which is sipp's working directory.

Media support in this sipp build (``SIPp v3.6.1-SCTP-PCAP-RTPSTREAM``), as tried here:
- ``play_pcap_audio="file.pcap"``: replays RTP from a pcap to the peer's SDP media address,
  with the recorded timing and RTP headers unchanged; needs a raw socket (root/CAP_NET_RAW).
  Tones and RFC 4733 digits: build the pcap with :mod:`tests.peers.rtp_pcap`.
- ``rtp_stream="file,loops,payload_type"``: streams a raw G.711 file (see uac_call_rtp.xml).
- ``-rtp_echo``: echoes RTP received on ``-mp`` back to its sender (start_sipp(rtp_echo=True)).

Retransmissions: over UDP sipp retransmits a request it sent with ``retrans="500"`` (or by
default T1=500 ms doubling) until it gets a response; ``SippResult.retransmissions`` counts
them. To provoke one, make the answering side slow: uas_answer.xml with
``keys={"first_response_delay_ms": "1200"}`` sends nothing for 1.2 s, so a UAC resends its
INVITE at 0.5 s (and 1.5 s): ``SippResult.retransmissions >= 1``. Any 1xx stops INVITE
retransmission; a request left unanswered for 64*T1 fails the call (FailedMaxUDPRetrans,
see ``stat()``). Retransmissions sipp *receives* are absorbed by sipp and not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tests.helpers.ports import free_port, worker_share

SCENARIOS = Path(__file__).with_name("scenarios")
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
Transport = Literal["u1", "un", "t1", "tn"]
_KILL_MARGIN_S = 10.0  # beyond sipp's own -timeout, before we kill it
KEEP_LOGS_ENV = "HELPLINE_KEEP_PEER_LOGS"  # set to keep every run directory
# Directories of runs that did not succeed, kept for the test's failure report. Many tests
# expect a run to fail (a refused registration, a peer stopped early); tests/conftest.py
# removes these when the test itself passes, so only a failed test leaves its traces in /tmp.
_kept_run_dirs: list[Path] = []


def find_free_media_ports(host: str = "127.0.0.1", count: int = 4) -> int:
    """An even port P with P..P+count-1 free for UDP (sipp binds audio RTP/RTCP and video
    RTP/RTCP there), below the kernel's ephemeral range and the services' RTP ranges
    (tests/helpers/service.py) so no socket bound to port 0 can take one of them meanwhile.
    Under pytest-xdist, from this worker's share of the range (tests/helpers/ports.py)."""
    rng = random.SystemRandom()
    bases = worker_share(range(10000, 20000 - count, 2), headroom=count)
    for _ in range(200):
        base = rng.choice(bases)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no free media ports found")


def scenario_path(scenario: str | Path) -> Path:
    p = Path(scenario)
    if p.suffix != ".xml" and not p.is_absolute() and len(p.parts) == 1:
        p = SCENARIOS / f"{p}.xml"
    elif not p.is_absolute() and not p.exists():
        p = SCENARIOS / p
    if not p.exists():
        raise FileNotFoundError(p)
    return p.resolve()


@dataclass
class SippResult:
    """What one sipp run did. ``assert_ok()`` is what most tests want."""

    returncode: int
    successful: int
    failed: int
    retransmissions: int
    messages_log: str  # every SIP message sent and received (-trace_msg)
    errors: str  # unexpected messages and failures (-trace_err)
    stats: dict[str, str] = field(default_factory=dict)  # last row of the -trace_stat CSV
    logs: str = ""  # output of <log> actions (-trace_logs)
    screen: str = ""  # the final statistics screen
    stdout: str = ""
    stderr: str = ""
    command: list[str] = field(default_factory=list)
    run_dir: Path = Path()
    timed_out: bool = False  # we had to kill sipp (it ignored its own -timeout)
    expected_calls: int = 1

    def stat(self, name: str) -> int:
        """A cumulative counter from the statistics CSV, e.g. ``stat("FailedCallRejected")``."""
        raw = self.stats.get(f"{name}(C)", self.stats.get(name, "0"))
        try:
            return int(float(raw))
        except ValueError:
            return 0

    @property
    def ok(self) -> bool:
        return (
            self.returncode == 0
            and self.failed == 0
            and not self.timed_out
            and self.successful >= self.expected_calls
        )

    def received(self, first_line_prefix: str) -> list[str]:
        """Messages in the trace that sipp received whose first line starts with the prefix,
        e.g. ``received("SIP/2.0 200")`` or ``received("INVITE")``."""
        return [
            m
            for direction, m in self.messages()
            if direction == "received" and m.lstrip().startswith(first_line_prefix)
        ]

    def sent(self, first_line_prefix: str) -> list[str]:
        return [
            m
            for direction, m in self.messages()
            if direction == "sent" and m.lstrip().startswith(first_line_prefix)
        ]

    def messages(self) -> list[tuple[str, str]]:
        """(direction, message text) for every traced message, in order."""
        out: list[tuple[str, str]] = []
        for chunk in re.split(r"^-{20,} .*$", self.messages_log, flags=re.M)[1:]:
            head, _, body = chunk.lstrip("\n").partition("\n")
            if " message sent" in head or " message received" in head:
                direction = "sent" if " sent" in head else "received"
                out.append((direction, body.strip("\r\n")))
        return out

    def describe(self, limit: int = 12000) -> str:
        return (
            f"sipp exit {self.returncode}, successful={self.successful} failed={self.failed} "
            f"(wanted {self.expected_calls}) retrans={self.retransmissions}"
            f"{' KILLED (hung)' if self.timed_out else ''}\n"
            f"command: {' '.join(self.command)}\nrun dir: {self.run_dir}\n"
            f"--- stderr ---\n{self.stderr[-2000:]}\n"
            f"--- errors log ---\n{self.errors[-limit // 3 :]}\n"
            f"--- messages ---\n{self.messages_log[-limit:]}"
        )

    def assert_ok(self) -> SippResult:
        if not self.ok:
            raise AssertionError(self.describe())
        return self


def _build_command(
    scenario: Path,
    target: str | None,
    run_dir: Path,
    *,
    local_ip: str,
    local_port: int | None,
    transport: Transport,
    calls: int,
    rate: float,
    max_concurrent: int | None,
    timeout_s: float,
    extra: Sequence[str],
    keys: Mapping[str, str] | None,
    service: str | None,
    inf_file: Path | None,
    media_port: int | None,
    rtp_echo: bool,
    pause_ms: int | None,
) -> list[str]:
    cmd = [
        SIPP,
        "-sf",
        str(scenario),
        "-i",
        local_ip,
        "-bind_local",
        "-p",
        str(local_port if local_port is not None else free_port(local_ip)),
        "-t",
        transport,
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-timeout",
        f"{timeout_s:g}s",
        "-timeout_error",
        "-nostdin",
        "-mi",
        local_ip,
        "-mp",
        str(media_port or find_free_media_ports(local_ip)),
        "-ci",
        local_ip,
        "-cp",
        str(free_port(local_ip)),
        "-trace_stat",
        "-stf",
        str(run_dir / "stats.csv"),
        "-trace_err",
        "-error_file",
        str(run_dir / "errors.log"),
        "-trace_msg",
        "-message_file",
        str(run_dir / "messages.log"),
        "-trace_screen",
        "-screen_file",
        str(run_dir / "screen.log"),
        "-trace_logs",
        "-log_file",
        str(run_dir / "logs.log"),
    ]
    if max_concurrent is not None:
        cmd += ["-l", str(max_concurrent)]
    if service is not None:
        cmd += ["-s", service]
    if inf_file is not None:
        cmd += ["-inf", str(inf_file)]
    if rtp_echo:
        cmd += ["-rtp_echo"]
    if pause_ms is not None:
        cmd += ["-d", str(pause_ms)]
    for k, v in (keys or {}).items():
        cmd += ["-key", k, str(v)]
    cmd += list(extra)
    if target:
        cmd.append(target)
    return cmd


def _read(p: Path) -> str:
    return p.read_text(errors="replace") if p.exists() else ""


def _collect(
    cmd: list[str],
    run_dir: Path,
    returncode: int,
    stdout: str,
    stderr: str,
    timed_out: bool,
    calls: int,
) -> SippResult:
    stats: dict[str, str] = {}
    stat_file = run_dir / "stats.csv"
    if stat_file.exists():
        rows = [r for r in csv.reader(stat_file.open(newline=""), delimiter=";") if r]
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))

    def counter(name: str) -> int:
        try:
            return int(float(stats.get(f"{name}(C)", "0") or 0))
        except ValueError:
            return 0

    return SippResult(
        returncode=returncode,
        successful=counter("SuccessfulCall"),
        failed=counter("FailedCall"),
        retransmissions=counter("Retransmissions"),
        messages_log=_read(run_dir / "messages.log"),
        errors=_read(run_dir / "errors.log"),
        stats=stats,
        logs=_read(run_dir / "logs.log"),
        screen=_read(run_dir / "screen.log"),
        stdout=stdout,
        stderr=stderr,
        command=cmd,
        run_dir=run_dir,
        timed_out=timed_out,
        expected_calls=calls,
    )


_DEFAULT_KEY = re.compile(r"^\s*key\s+([A-Za-z_][\w-]*)\s*=\s*(.*?)\s*$", re.M)
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][\w-]*)\}\}")


def scenario_defaults(text: str) -> dict[str, str]:
    """The ``key name = value`` lines of a scenario's header comment."""
    return {m.group(1): m.group(2) for m in _DEFAULT_KEY.finditer(text.split("<scenario", 1)[0])}


def render_scenario(text: str, keys: Mapping[str, str]) -> str:
    """Fills ``{{name}}`` placeholders: sipp reads some attributes (response codes, pause
    lengths, pcap names) when it loads the scenario, where its own [keywords] do not apply."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in keys:
            raise KeyError(f"scenario needs key {m.group(1)!r} (pass keys={{...}})")
        return str(keys[m.group(1)])

    return _PLACEHOLDER.sub(sub, text)


def _prepare(
    scenario: str | Path,
    files: Mapping[str, Path | str] | None,
    run_dir: Path | None,
    keys: Mapping[str, str] | None,
) -> tuple[Path, Path, dict[str, str]]:
    sc = scenario_path(scenario)
    rd = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix=f"sipp-{sc.stem}-"))
    rd.mkdir(parents=True, exist_ok=True)
    for name, src in (files or {}).items():
        shutil.copyfile(src, rd / name)
    text = sc.read_text()
    all_keys = {**scenario_defaults(text), **{k: str(v) for k, v in (keys or {}).items()}}
    rendered = rd / sc.name
    rendered.write_text(render_scenario(text, all_keys))
    return rendered, rd, all_keys


class SippProcess:
    """A sipp running in the background (typically a UAS). ``wait()`` for its result,
    ``stop()`` to end it early (SIGUSR1 = sipp's soft quit, then kill)."""

    def __init__(
        self,
        cmd: list[str],
        run_dir: Path,
        timeout_s: float,
        calls: int,
        port: int,
        local_ip: str,
        cleanup: bool = False,
    ) -> None:
        self.cmd = cmd
        self.cleanup = cleanup
        self.run_dir = run_dir
        self.timeout_s = timeout_s
        self.calls = calls
        self.port = port
        self.local_ip = local_ip
        self._out = open(run_dir / "stdout.log", "w")  # noqa: SIM115
        self._err = open(run_dir / "stderr.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err
        )
        self.started = time.monotonic()
        self._result: SippResult | None = None

    @property
    def address(self) -> str:
        """``ip:port`` to send SIP to."""
        return f"{self.local_ip}:{self.port}"

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Waits until sipp's SIP socket is bound (so a UAC started next is not refused)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(self.wait().describe())
            if _port_bound(self.local_ip, self.port):
                return
            time.sleep(0.02)
        raise TimeoutError(f"sipp did not bind {self.address}")

    def wait(self, timeout: float | None = None) -> SippResult:
        if self._result is not None:
            return self._result
        budget = (
            timeout
            if timeout is not None
            else (self.timeout_s + _KILL_MARGIN_S - (time.monotonic() - self.started))
        )
        timed_out = False
        try:
            self.proc.wait(timeout=max(0.1, budget))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.proc.kill()
            self.proc.wait(timeout=5)
        return self._finish(timed_out)

    def stop(self) -> SippResult:
        if self._result is not None:
            return self._result
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGUSR1)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self._finish(False)

    def _finish(self, timed_out: bool) -> SippResult:
        self._out.close()
        self._err.close()
        self._result = _collect(
            self.cmd,
            self.run_dir,
            self.proc.returncode or 0,
            _read(self.run_dir / "stdout.log"),
            _read(self.run_dir / "stderr.log"),
            timed_out,
            self.calls,
        )
        if self.proc.returncode is not None and self.proc.returncode < 0:
            self._result.returncode = self.proc.returncode
        # A clean run's traces are already in the result; keep the directory only when
        # something failed (describe() names it) or when asked to.
        if self.cleanup and not os.environ.get(KEEP_LOGS_ENV):
            if self._result.ok:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            else:
                _kept_run_dirs.append(self.run_dir)
        return self._result

    def __enter__(self) -> SippProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_bound(ip: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((ip, port))
            except OSError:
                return True
    return False


def start_sipp(
    scenario: str | Path,
    target: str | None = None,
    *,
    local_ip: str = "127.0.0.1",
    local_port: int | None = None,
    transport: Transport = "u1",
    calls: int = 1,
    rate: float = 10,
    max_concurrent: int | None = None,
    timeout_s: float = 30,
    extra: Sequence[str] = (),
    keys: Mapping[str, str] | None = None,
    service: str | None = None,
    inf_file: Path | None = None,
    files: Mapping[str, Path | str] | None = None,
    media_port: int | None = None,
    rtp_echo: bool = False,
    pause_ms: int | None = None,
    run_dir: Path | None = None,
    wait_listening: bool = True,
) -> SippProcess:
    """Starts sipp in the background (a UAS, or a UAC to drive concurrently with other peers).
    Returns once its SIP socket is bound (``wait_listening``)."""
    sc, rd, all_keys = _prepare(scenario, files, run_dir, keys)
    port = local_port if local_port is not None else free_port(local_ip)
    cmd = _build_command(
        sc,
        target,
        rd,
        local_ip=local_ip,
        local_port=port,
        transport=transport,
        calls=calls,
        rate=rate,
        max_concurrent=max_concurrent,
        timeout_s=timeout_s,
        extra=extra,
        keys=all_keys,
        service=service,
        inf_file=inf_file,
        media_port=media_port,
        rtp_echo=rtp_echo,
        pause_ms=pause_ms,
    )
    proc = SippProcess(cmd, rd, timeout_s, calls, port, local_ip, cleanup=run_dir is None)
    if wait_listening:
        proc.wait_listening()
    return proc


def run_sipp(
    scenario: str | Path,
    target: str,
    *,
    local_ip: str = "127.0.0.1",
    local_port: int | None = None,
    transport: Transport = "u1",
    calls: int = 1,
    rate: float = 10,
    max_concurrent: int | None = None,
    timeout_s: float = 30,
    extra: Sequence[str] = (),
    keys: Mapping[str, str] | None = None,
    service: str | None = None,
    inf_file: Path | None = None,
    files: Mapping[str, Path | str] | None = None,
    media_port: int | None = None,
    rtp_echo: bool = False,
    pause_ms: int | None = None,
    run_dir: Path | None = None,
) -> SippResult:
    """Runs sipp to completion (``calls`` calls, at most ``timeout_s``) and parses its output.

    ``target`` is ``host:port`` of the peer. ``pause_ms`` sets ``-d`` (the length of a bare
    ``<pause/>`` in the scenario). ``service`` sets ``-s`` (``[service]``: the user part of
    the Request-URI). ``inf_file`` is a CSV for ``-inf`` (``[field0]``...; first line
    SEQUENTIAL/RANDOM/USER).
    """
    proc = start_sipp(
        scenario,
        target,
        local_ip=local_ip,
        local_port=local_port,
        transport=transport,
        calls=calls,
        rate=rate,
        max_concurrent=max_concurrent,
        timeout_s=timeout_s,
        extra=extra,
        keys=keys,
        service=service,
        inf_file=inf_file,
        files=files,
        media_port=media_port,
        rtp_echo=rtp_echo,
        pause_ms=pause_ms,
        run_dir=run_dir,
        wait_listening=False,
    )
    return proc.wait()


async def run_sipp_async(scenario: str | Path, target: str, **kwargs: object) -> SippResult:
    """``run_sipp`` for async tests: runs in a thread so an in-process asyncio service keeps
    serving while sipp talks to it."""
    return await asyncio.to_thread(run_sipp, scenario, target, **kwargs)  # type: ignore[arg-type]


def write_inf(path: Path, rows: Sequence[Sequence[str]], mode: str = "SEQUENTIAL") -> Path:
    """A -inf CSV: ``rows`` of fields, e.g. [("1001", "secret")] -> [field0]=1001 [field1]=..."""
    lines = [mode] + [";".join(r) + ";" for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def settle_kept_run_dirs(test_passed: bool) -> None:
    """At a test's end: the failed runs' directories it kept go if the test passed (it expected
    those failures), and stay for its report if it failed."""
    while _kept_run_dirs:
        run_dir = _kept_run_dirs.pop()
        if test_passed:
            shutil.rmtree(run_dir, ignore_errors=True)


__all__ = [
    "SCENARIOS",
    "SippProcess",
    "SippResult",
    "find_free_media_ports",
    "render_scenario",
    "run_sipp",
    "run_sipp_async",
    "scenario_path",
    "settle_kept_run_dirs",
    "start_sipp",
    "write_inf",
]
