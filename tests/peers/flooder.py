"""A hostile SIP peer: floods a target over UDP from one loopback address at a set rate.

It sends a mix of OPTIONS, INVITE (no credentials), REGISTER (no credentials) and junk that
only looks like SIP, each with its own Call-ID and branch, paced to `rate` per second for
`seconds`, and counts what comes back: response packets (retransmissions included: the
reflection the flood earns) and distinct requests answered. A single process with one
non-blocking socket; run it as its own process (``python -m tests.peers.flooder``, which prints
the result as JSON) so that it does not share a GIL with the service under test.

Loopback only: the source address must be in 127.0.0.0/8, and so must the target.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_TEMPLATES = (
    "OPTIONS sip:{th}:{tp} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {me}:{mp};branch=z9hG4bKfl{n};rport\r\n"
    "From: <sip:scan@{me}>;tag=f{n}\r\nTo: <sip:100@{th}>\r\nCall-ID: fl{n}\r\n"
    "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    "INVITE sip:00442012345678@{th}:{tp} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {me}:{mp};branch=z9hG4bKfl{n};rport\r\n"
    "From: <sip:1000@{me}>;tag=f{n}\r\nTo: <sip:00442012345678@{th}>\r\nCall-ID: fl{n}\r\n"
    "CSeq: 1 INVITE\r\nContact: <sip:1000@{me}:{mp}>\r\nMax-Forwards: 70\r\n"
    "Content-Length: 0\r\n\r\n",
    "REGISTER sip:{th}:{tp} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {me}:{mp};branch=z9hG4bKfl{n};rport\r\n"
    "From: <sip:{n}@{th}>;tag=f{n}\r\nTo: <sip:{n}@{th}>\r\nCall-ID: fl{n}\r\n"
    "CSeq: 1 REGISTER\r\nContact: <sip:{n}@{me}:{mp}>\r\nExpires: 60\r\nMax-Forwards: 70\r\n"
    "Content-Length: 0\r\n\r\n",
    "INVITE sip:{th} SIP/2.0\r\nVia: SIP/2.0/UDP {me}:{mp};branch=z9hG4bKfl{n}\r\n"
    "From: <sip:x@{me}>;tag=f{n}\r\nTo: sip:@@\r\nCall-ID: fl{n}\r\nCSeq: x INVITE\r\n"
    "Content-Length: 99999\r\n\r\njunk",
)


@dataclass
class FloodResult:
    sent: int = 0
    seconds: float = 0.0  # how long sending took
    responses: int = 0  # response packets received (retransmissions included)
    answered: int = 0  # distinct requests (Call-IDs) that got any response
    first_answer: float | None = None  # seconds after the first packet
    last_answer: float | None = None  # last first-response to a request: the ban took hold

    @property
    def answered_share(self) -> float:
        return self.answered / self.sent if self.sent else 0.0


def _loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{host} is not a loopback address: floods stay on loopback")


def flood(
    source: str, target: tuple[str, int], rate: float, seconds: float, drain: float = 1.0
) -> FloodResult:
    """Sends `rate` requests/s for `seconds` from `source`, then listens `drain` seconds more."""
    _loopback(source)
    _loopback(target[0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((source, 0))
    sock.setblocking(False)
    me, mp = sock.getsockname()
    templates = [t.replace("{th}", target[0]).replace("{tp}", str(target[1])) for t in _TEMPLATES]
    templates = [t.replace("{me}", me).replace("{mp}", str(mp)) for t in templates]
    result = FloodResult()
    seen: set[bytes] = set()
    start = time.monotonic()
    end = start + seconds

    def receive(now: float) -> None:
        while True:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable once the target is gone
                return
            result.responses += 1
            at = data.find(b"\r\nCall-ID: ")
            call_id = data[at + 11 : data.find(b"\r\n", at + 11)] if at >= 0 else b""
            if call_id not in seen:
                seen.add(call_id)
                result.answered += 1
                offset = now - start
                if result.first_answer is None:
                    result.first_answer = offset
                result.last_answer = offset

    total = round(seconds * rate)
    try:
        while result.sent < total:
            now = time.monotonic()
            if now >= end + 1.0:
                break  # the sender cannot keep up: stop on time (sent says how far it got)
            due = min(int((now - start) * rate) + 1, total)
            while result.sent < due:
                n = result.sent
                text = templates[n % len(templates)].replace("{n}", str(n))
                try:
                    sock.sendto(text.encode(), target)
                except (BlockingIOError, InterruptedError):
                    break  # our own send buffer is full: try again on the next round
                except OSError:
                    pass  # ICMP errors reported on a later send: not ours to handle
                result.sent += 1
            receive(now)
            time.sleep(0.0005)
        result.seconds = time.monotonic() - start
        stop = time.monotonic() + drain
        while time.monotonic() < stop:
            receive(time.monotonic())
            time.sleep(0.005)
    finally:
        sock.close()
    return result


async def flood_in_process(
    source: str, target: tuple[str, int], rate: float, seconds: float, drain: float = 1.0
) -> FloodResult:
    """`flood` in a child process (its own GIL and CPU), for an asyncio service under test."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.peers.flooder", "--source", source,
        "--target", f"{target[0]}:{target[1]}", "--rate", str(rate), "--seconds", str(seconds),
        "--drain", str(drain), cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + drain + 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"flooder exited {proc.returncode}")
    data = json.loads(out)
    return FloodResult(**{f.name: data[f.name] for f in fields(FloodResult)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--drain", type=float, default=1.0)
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    result = flood(args.source, (host, int(port)), args.rate, args.seconds, args.drain)
    json.dump({**asdict(result), "answered_share": result.answered_share}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
