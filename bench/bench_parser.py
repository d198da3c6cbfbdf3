"""How fast the SIP syntax layer parses: messages/second for typical traffic, and long inputs.

Run: .venv/bin/python bench/bench_parser.py [--seconds N]
Prints figures only; nothing here asserts a speed. The long-input lines show whether time grows
linearly with size (a 4x larger input should take about 4x as long, not 16x).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from pbx.sip.message import Request
from pbx.sip.parser import StreamFramer, parse_message

INVITE = (
    b"INVITE sip:helpline@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.2:5062;rport;branch=z9hG4bKPj3f1c2b7a9e\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=8d6e5c1f\r\n'
    b"To: <sip:helpline@127.0.0.1>\r\n"
    b"Contact: <sip:caller@127.0.0.2:5062;ob>\r\n"
    b"Call-ID: 5b1c9a4e-0f2d-4c8e-9b7a-1d2e3f4a5b6c\r\n"
    b"CSeq: 4711 INVITE\r\n"
    b"Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, OPTIONS\r\n"
    b"Supported: replaces, 100rel, timer, norefersub\r\n"
    b"Session-Expires: 1800\r\n"
    b"Min-SE: 90\r\n"
    b"User-Agent: bench/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 208\r\n"
    b"\r\n"
    b"v=0\r\no=- 3916 3916 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)
OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-524287-1---b6b6a5c1;rport=5060\r\n"
    b"Record-Route: <sip:127.0.0.1;lr>\r\n"
    b"Contact: <sip:volunteer@127.0.0.2:5070>\r\n"
    b"To: <sip:volunteer@127.0.0.2>;tag=as5f3e1a2b\r\n"
    b"From: <sip:helpline@127.0.0.1>;tag=b9c8d7e6\r\n"
    b"Call-ID: 0f9e8d7c-6b5a-4938-2716-05f4e3d2c1b0\r\n"
    b"CSeq: 2 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
LONGREQ = Path(__file__).parent.parent / "tests" / "data" / "sip-torture" / "longreq.dat"


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of fn over about `seconds`."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            fn()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def with_long_header(size: int) -> bytes:
    """An INVITE with a header of about size/2 bytes and a body of about size/2 bytes."""
    value = ("a" * 60 + ",") * (size // 2 // 61)
    body = b"a=x-pad:" + b"p" * (size // 2) + b"\r\n"
    head = INVITE.split(b"Content-Length:")[0]
    return (
        head
        + b"Supported: "
        + value.encode()
        + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per figure")
    args = parser.parse_args()
    s = args.seconds

    def invite_and_read() -> None:
        m = parse_message(INVITE)
        assert isinstance(m, Request)
        m.top_via, m.from_, m.to, m.cseq, m.contacts  # noqa: B018 - what a UAS reads

    invite = rate(lambda: parse_message(INVITE), s)
    print(f"INVITE parse_message:             {invite:10,.0f} msg/s")
    print(f"INVITE parse + core accessors:    {rate(invite_and_read, s):10,.0f} msg/s")
    print(f"200 OK parse_message:             {rate(lambda: parse_message(OK), s):10,.0f} msg/s")
    framer = StreamFramer()
    pipelined = (INVITE + OK) * 20
    stream = rate(lambda: framer.feed(pipelined), s) * 40
    print(f"StreamFramer, 40 pipelined msgs:  {stream:10,.0f} msg/s")
    longreq = LONGREQ.read_bytes()
    long_rate = rate(lambda: parse_message(longreq), s)
    print(f"longreq.dat (RFC 4475 3.1.1.7):   {long_rate:10,.0f} msg/s")

    print("long inputs (time should grow linearly with size):")
    for size in (15_000, 30_000, 60_000):
        data = with_long_header(size)
        t_parse = min(once(lambda d=data: parse_message(d)) for _ in range(5))  # type: ignore[misc]

        def bytewise(d: bytes = data) -> None:
            f = StreamFramer()
            for i in range(len(d)):
                f.feed(d[i : i + 1])

        t_feed = once(bytewise)
        print(
            f"  {len(data):6} B (half header, half body): parse {t_parse * 1000:6.2f} ms,"
            f" framer fed 1 byte at a time {t_feed * 1000:8.1f} ms"
        )


if __name__ == "__main__":
    main()
