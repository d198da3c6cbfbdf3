"""Instructions per piece of a call setup, counted by valgrind: figures that do not drift.

This machine's speed drifts by a quarter within an hour and by half between days, so a change
of a few percent to a setup's CPU cannot be seen in timed runs. Counting the instructions a
piece executes (valgrind's callgrind) gives the same figure on every run, whatever the machine
is doing. What it does not count: system calls' kernel work, cache misses and wake-ups, so it
shows what a change saves in Python and C code, not the whole of a setup (`bench_sip_calls.py`
and `compare.py` measure that, with their noise).

Each piece runs N times in a fresh process under callgrind, and once with N = 0 for start-up
and set-up; the difference over N is the figure. To compare two commits, run this script from
each checkout (it measures the code next to it).

Pieces (``--pieces``, all by default):
- ``parse``: the INVITE of ``bench_parser.py`` and a volunteer's 200 OK parsed, with the
  accessors the call layer reads (Via, Call-ID, CSeq, From, To, Contact);
- ``transactions``: the sans-IO transaction layer for one UAS call, parse included (the flow of
  ``bench_transactions.py``);
- ``sdp``: a handset's SDP parsed and its rtpmaps read;
- ``log``: one JSON log line (``call_ended``) as the service writes it, to /dev/null;
- ``pick``: the direct call flow picking the longest-idle volunteer, 1,500 registered and 100
  in calls;
- ``ack_wait``: an answered leg's wait for its ACK (a signal set at once), on uvloop.
- ``relay``: one RTP packet relayed by a bridge, same codec (``bench_relay_cpu.py``'s loop: 10
  bridged calls on uvloop, a packet into each of their 20 ports per round, N in all).

Needs valgrind (``apt-get install valgrind``). Two to four minutes. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_instructions.py [--pieces parse sdp] [--n 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PIECES = ("parse", "transactions", "sdp", "log", "pick", "ack_wait", "relay")

VOLUNTEER_OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport=5060\r\n"
    b"Record-Route: <sip:127.0.0.3;lr>\r\n"
    b"From: <sip:helpline@127.0.0.1>;tag=abc\r\n"
    b"To: <sip:vol0001@127.0.0.1>;tag=1234SIPpTag01\r\n"
    b"Call-ID: abcdef@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:volunteer@127.0.0.2:5070;transport=UDP>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 0\r\n\r\n"
)
HANDSET_SDP = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)


def parse(n: int) -> None:
    from bench_parser import INVITE

    from pbx.sip.parser import parse_message

    for _ in range(n):
        for data in (INVITE, VOLUNTEER_OK):
            m = parse_message(data)
            _ = m.top_via, m.call_id, m.cseq, m.from_, m.to, m.contacts


def transactions(n: int) -> None:
    from bench_transactions import run

    if n:
        run(n, True)


def sdp(n: int) -> None:
    from pbx.media.sdp import SessionDescription

    for _ in range(n):
        SessionDescription.parse(HANDSET_SDP).media[0].rtpmaps()


def log(n: int) -> None:
    import structlog

    from pbx.logs import configure_logging

    with open("/dev/null", "w") as sink:
        configure_logging("info", "json", stream=sink)
        logger = structlog.get_logger("pbx.calls.direct")
        for _ in range(n):
            logger.info("call_ended", call="d7d94bc5a5984828", end="caller_left")


def pick(n: int) -> None:
    from pbx.calls.direct import DirectRouter
    from pbx.calls.handsets import Handsets
    from pbx.calls.leg_table import LegTable
    from pbx.calls.media_session import MediaFactory
    from pbx.calls.ringing import Ringer
    from pbx.media.ports import PortPool
    from pbx.sip.auth_guard import AuthGuard
    from pbx.sip.digest import NonceManager
    from pbx.sip.peer import Peer, TransportKind
    from pbx.sip.registrar import Binding, Registrar, RegistrarConfig
    from pbx.sip.stack import SipStack
    from pbx.sip.transport import SipTransports
    from pbx.sip.uri import SipUri

    registrar = Registrar(
        RegistrarConfig(), credentials={}, guard=AuthGuard("helpline", NonceManager(b"k" * 32))
    )
    users = [f"vol{i:04d}" for i in range(1500)]
    for user in users:
        handset = Peer(TransportKind.UDP, "127.0.0.2", 5070)
        contact = SipUri(host="127.0.0.2", port=5070, user=user)
        registrar.restore(Binding(user, contact, handset, 4e9, f"c-{user}", 1))
    router = DirectRouter(
        Handsets(registrar, "helpline"),
        Ringer(LegTable(SipStack(SipTransports()))),
        MediaFactory(PortPool("127.0.0.1", 40000, 40100), "127.0.0.1"),
    )
    for user in users:  # everyone has had a call: the idle order is by the end of their last
        router.rung(user)
    in_calls: list[str] = []
    for _ in range(100 + n):  # 100 in calls all along: each new call frees the oldest
        user = next(router.candidates())
        router.take(user)
        in_calls.append(user)
        if len(in_calls) > 100:
            router.rung(in_calls.pop(0))


def relay(n: int) -> None:
    from bench_relay_cpu import CODECS, measure

    from pbx.event_loop import run
    from pbx.media.ports import PortPool

    pool = PortPool("127.0.0.1", 30000, 39999)
    # 10 bridged calls, one packet into each of their 20 ports per round: n relayed packets
    run(measure(pool, 10, n // 20, CODECS["same"], 20), choice="auto")


def ack_wait(n: int) -> None:
    from pbx.calls.signal import Signal
    from pbx.event_loop import run

    async def waits() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            acked = Signal()
            loop.call_soon(acked.set)
            await acked.wait_for(0.5)

    run(waits(), choice="auto")


RUNNERS: dict[str, Callable[[int], None]] = {
    "parse": parse, "transactions": transactions, "sdp": sdp, "log": log, "pick": pick,
    "ack_wait": ack_wait, "relay": relay,
}  # fmt: skip


def instructions(piece: str, n: int) -> int:
    """Instructions callgrind counts for a fresh process running ``piece`` ``n`` times."""
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--run", piece, "--n", str(n),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pieces", nargs="+", choices=PIECES, default=list(PIECES))
    parser.add_argument("--n", type=int, default=1000, help="repetitions per piece")
    parser.add_argument("--run", choices=PIECES, help=argparse.SUPPRESS)  # the measured child
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "bench"))
    if args.run:
        RUNNERS[args.run](args.n)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is missing: apt-get install valgrind")
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    print(f"instructions per piece (callgrind), {args.n} repetitions, at {commit or '?'}")
    for piece in args.pieces:
        per = (instructions(piece, args.n) - instructions(piece, 0)) / args.n
        print(f"  {piece:13s} {per:12,.0f}", flush=True)


if __name__ == "__main__":
    main()
